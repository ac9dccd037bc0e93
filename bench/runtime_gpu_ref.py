"""The PyTorch side of bench/runtime_gpu.py: input images and float64 ResNet-18 reference logits (.npz).

Runs in a Python with torch (the GPU machine's own python3). Reads the weights from a netdef HDF5 file
(needs h5py) or an .npz state dict; `--random-weights W.npz` first writes a seeded random ResNet-18 with
realistic BatchNorm statistics there (for machines where no trained weights are at hand).

    python3 bench/runtime_gpu_ref.py --random-weights r18.npz ref.npz
    python3 bench/runtime_gpu_ref.py --weights r18.h5 ref.npz
"""
from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # runnable as `python bench/runtime_gpu_ref.py`

import numpy as np  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out", help="output .npz: input (N,3,224,224) float32, logits (N,1000) float64")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--weights", help="ResNet-18 weights: netdef HDF5 (.h5) or state dict (.npz)")
    src.add_argument("--random-weights", metavar="W.npz", help="write seeded random ResNet-18 weights here and use them")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


def load_weights(path: str) -> dict[str, np.ndarray]:
    if path.endswith(".npz"):
        with np.load(path) as z:
            return {k: z[k] for k in z.files}
    from weights_export.hdf5 import WeightsFile

    with WeightsFile(path) as f:
        return {k: np.asarray(f[k]) for k in f}


def random_weights(path: str, seed: int) -> dict[str, np.ndarray]:
    from netdef.atomic import write_bytes_atomic
    from networks.resnet import random_bn_init, torch_resnet

    model = random_bn_init(torch_resnet("resnet18", seed=seed), seed=seed + 1)
    state = {k: v.detach().cpu().numpy() for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
    buf = io.BytesIO()
    np.savez(buf, **state)
    write_bytes_atomic(path, buf.getvalue())
    return state


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import torch

    from netdef.atomic import write_bytes_atomic
    from networks.resnet import ResNet

    state = random_weights(args.random_weights, args.seed) if args.random_weights else load_weights(args.weights)
    model = ResNet(state, path=args.weights or args.random_weights, arch="resnet18").reference().double()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = model.to(device)
    x = np.random.default_rng(args.seed).standard_normal((args.batch, 3, args.size, args.size)).astype(np.float32)
    with torch.no_grad():
        logits = model(torch.from_numpy(x).double().to(device)).cpu().numpy()
    buf = io.BytesIO()
    np.savez(buf, input=x, logits=logits)
    write_bytes_atomic(args.out, buf.getvalue())
    print(f"wrote {args.out}: input {x.shape} float32, logits {logits.shape} float64 (torch {torch.__version__}, {device})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
