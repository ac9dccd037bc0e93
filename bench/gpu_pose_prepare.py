"""HigherHRNet GPU benchmark, the torch side: run in the GPU machine's own python3 (torch + CUDA; TensorRT-RTX
from /tmp/rtx/site for the calibration's network definition).

--stage files: the W32 model (seeded random init, realistic BatchNorm statistics) as a netdef HDF5 file, one ONNX
  file per input size (raw outputs, dynamic batch), inputs at batch 1 and 8 with their float64 references (raw
  outputs and the parsed ones: networks.higherhrnet_torch.torch_parse), netdef's INT8 calibration on CUDA; then
  WORK/files.done. Step 2 (`bench/gpu_pose.py`, TensorRT 8.6) needs these.
--stage torch: PyTorch timings: eager FP32/FP16 at every size and batch, torch.compile (reduce-overhead, FP16,
  channels-last) at --compile-sizes and --compile-batches; WORK/torch_pose.json.

    PYTHONPATH=/tmp/rtx/site:. python3 bench/gpu_pose_prepare.py --work /tmp/ndpose --stage files
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gpu_prepare import cuda_time, export_onnx  # noqa: E402

from netdef.atomic import write_text_atomic  # noqa: E402

ARCH = "higherhrnet-w32"
BATCHES = (1, 8)
RAW, PARSED = ("output0", "output1"), ("scores", "keypoints", "tags")


def make_model(work: Path) -> torch.nn.Module:
    from networks.higherhrnet import torch_higherhrnet
    from networks.resnet import random_bn_init
    from weights_export.pytorch import export_module

    model = random_bn_init(torch_higherhrnet(ARCH, seed=0), seed=1).eval()
    export_module(model, work / f"{ARCH}.h5", ARCH, input_shape=(1, 3, 512, 512),
                  mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
    return model


def inputs_for(size: int) -> dict[int, np.ndarray]:
    rng = np.random.default_rng(123 + size)
    return {b: rng.standard_normal((b, 3, size, size)).astype(np.float32) for b in BATCHES}


def references(model: torch.nn.Module, inputs: dict[int, np.ndarray], device: str) -> dict[str, np.ndarray]:
    """float64 raw outputs and parsed candidates per batch (keys b1_output0 ... b8_tags)."""
    from networks.higherhrnet_torch import torch_parse

    refs = {}
    with torch.inference_mode():
        m = model.to(device, torch.float64)
        for b, x in inputs.items():
            raw = m(torch.from_numpy(x).to(device, torch.float64))
            for name, t in zip(RAW + PARSED, (*raw, *torch_parse(*raw))):
                refs[f"b{b}_{name}"] = t.cpu().numpy()
    model.to("cpu", torch.float32)
    return refs


def stage_files(work: Path, sizes: list[int], calib_samples: int, calib_size: int, device: str) -> dict:
    t0 = time.perf_counter()
    model = make_model(work)
    for size in sizes:
        inputs = inputs_for(size)
        export_onnx(model, torch.from_numpy(inputs[1]), work / f"{ARCH}-{size}.onnx", list(RAW))
        np.savez(work / f"{ARCH}-{size}_inputs.npz", **{f"b{b}": x for b, x in inputs.items()})
        np.savez(work / f"{ARCH}-{size}_refs.npz", **references(model, inputs, device))
    report: dict = {"files_s": round(time.perf_counter() - t0, 1)}
    # INT8: netdef's calibration (entropy) on the FP32 definition, executed on CUDA; the amax table serves every
    # size and output kind (tensor names are the same), so bench/gpu_pose.py passes it as a mapping.
    data = work / f"{ARCH}_calib.npy"
    np.save(data, np.random.default_rng(7).standard_normal((calib_samples, 3, calib_size, calib_size))
            .astype(np.float32))
    t0 = time.perf_counter()
    cmd = [sys.executable, "-m", "netdef", "calibrate", ARCH, "--weights", str(work / f"{ARCH}.h5"), "--data",
           str(data), "--method", "entropy", "--out", str(work / f"{ARCH}_calib.json"), "--device", device,
           "--batch", "16", "--samples", str(calib_samples), "--input-size", f"{calib_size},{calib_size}",
           "--no-progress", "--recalibrate"]
    report["calibration"] = {"rc": subprocess.run(cmd).returncode, "seconds": round(time.perf_counter() - t0, 1),
                             "samples": calib_samples, "size": calib_size, "method": "entropy", "device": device}
    data.unlink()
    return report


def stage_torch(sizes: list[int], compile_sizes: list[int], compile_batches: list[int]) -> dict:
    """Eager FP32/FP16 (NCHW) and torch.compile FP16 (reduce-overhead, channels-last), CUDA-event medians."""
    from networks.higherhrnet import torch_higherhrnet

    model = torch_higherhrnet(ARCH, seed=0).eval()  # timings do not depend on the values
    out: dict = {}
    dev = torch.device("cuda")
    with torch.inference_mode():
        for dtype, name in ((torch.float32, "fp32"), (torch.float16, "fp16")):
            m = model.to(dev, dtype)
            for size in sizes:
                for b in BATCHES:
                    x = torch.randn(b, 3, size, size, device=dev, dtype=dtype)
                    out[f"eager_{name}_{size}_b{b}"] = cuda_time(lambda: m(x))
                    print(name, size, b, out[f"eager_{name}_{size}_b{b}"], flush=True)
        m = model.to(dev, torch.float16).to(memory_format=torch.channels_last)
        compiled = torch.compile(m, mode="reduce-overhead")
        for size in compile_sizes:
            for b in compile_batches:
                x = torch.randn(b, 3, size, size, device=dev, dtype=torch.float16).contiguous(
                    memory_format=torch.channels_last)
                t0 = time.perf_counter()
                compiled(x)
                compiled(x)
                torch.cuda.synchronize()
                key = f"compile_fp16_{size}_b{b}"
                out[key] = {**cuda_time(lambda: compiled(x)), "compile_s": round(time.perf_counter() - t0, 1)}
                print(key, out[key], flush=True)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", default="/tmp/ndpose")
    ap.add_argument("--stage", choices=("files", "torch"), required=True)
    ap.add_argument("--sizes", default="256,512", help="input sizes (square)")
    ap.add_argument("--device", default="cuda", help="references and calibration (cpu: a dry run of --stage files)")
    ap.add_argument("--calib-samples", type=int, default=64)
    ap.add_argument("--calib-size", type=int, default=512)
    ap.add_argument("--compile-sizes", default="512", help="sizes timed with torch.compile too (comma list; '' none)")
    ap.add_argument("--compile-batches", default="8", help="batches timed with torch.compile (each compiles minutes)")
    args = ap.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    sizes = [int(s) for s in args.sizes.split(",")]
    info = {"torch": torch.__version__, "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none",
            "cudnn_benchmark": True}  # gpu_prepare.cuda_time
    if args.stage == "files":
        report = {**info, **stage_files(work, sizes, args.calib_samples, args.calib_size, args.device)}
        write_text_atomic(work / "files.json", json.dumps(report, indent=1))
        (work / "files.done").touch()
    else:
        compile_sizes = [int(s) for s in args.compile_sizes.split(",") if s.strip()]
        compile_batches = [int(b) for b in args.compile_batches.split(",") if b.strip()]
        report = {**info, "model": ARCH, "torch_timings": stage_torch(sizes, compile_sizes, compile_batches)}
        write_text_atomic(work / "torch_pose.json", json.dumps(report, indent=1))
    print(json.dumps(report, indent=1), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
