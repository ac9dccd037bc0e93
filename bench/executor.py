"""netdef's definition executor against PyTorch eager on ResNet-50.

    python bench/executor.py [--batch 8] [--cuda-batch 32] [--size 224] [--repeat 5]
                             [--json bench/results/executor.json]

Runs the executor on netdef's own ResNet-50 definition (fp32, parameters read back through the TensorRT
API) and the torch reference module on the same input; CPU at `--batch`, and CUDA at `--cuda-batch`
when torch sees a GPU. Prints the median of `--repeat` runs of each and the ratio, measured in this run.
Targets: executor <= 1.5x eager on CPU, <= 1.3x on CUDA.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from netdef.atomic import write_text_atomic  # noqa: E402
from netdef.executor import compile  # noqa: E402
from networks.resnet import ResNet, random_bn_init, resnet50_reference  # noqa: E402

TARGETS = {"cpu": 1.5, "cuda": 1.3}


def interleaved_medians(repeat: int, fns: list[Callable[[], Any]], sync: Callable[[], None]) -> list[float]:
    """Median time of each function, runs alternating so load changes on the machine hit both alike."""
    for fn in fns:  # warm-up: allocator, kernels, lazy init
        fn()
    sync()
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(repeat):
        for fn, bucket in zip(fns, times):
            start = time.perf_counter()
            fn()
            sync()
            bucket.append(time.perf_counter() - start)
    return [statistics.median(t) for t in times]


def measure(device: str, batch: int, size: int, repeat: int) -> dict[str, Any]:
    reference = random_bn_init(resnet50_reference(seed=0), seed=1).eval()
    model = ResNet({k: v.numpy() for k, v in reference.state_dict().items()})
    net = model.define("fp32", input_size=(size, size))
    executor = compile(net.definition, device)
    eager = reference.to(device)
    x = torch.from_numpy(model.sample_input(batch, (size, size))).to(device)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)

    def run_eager() -> Any:
        with torch.inference_mode():
            return eager(x)

    eager_s, executor_s = interleaved_medians(repeat, [run_eager, lambda: executor({"input": x})], sync)
    out = executor({"input": x})["logits"].double()
    ref = run_eager().double()
    rel = float((out - ref).norm() / ref.norm())
    ratio = executor_s / eager_s
    return {"device": device, "gpu": torch.cuda.get_device_name() if device == "cuda" else "",
            "threads": torch.get_num_threads(), "batch": batch, "size": size, "eager_ms": eager_s * 1e3,
            "executor_ms": executor_s * 1e3, "ratio": ratio, "target": TARGETS[device],
            "meets_target": ratio <= TARGETS[device], "rel_err": rel}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=8, help="CPU batch")
    parser.add_argument("--cuda-batch", type=int, default=32)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--no-cpu", action="store_true", help="only the CUDA case")
    parser.add_argument("--json", help="also write the rows as JSON")
    args = parser.parse_args()
    rows = []
    if not args.no_cpu:
        rows.append(measure("cpu", args.batch, args.size, args.repeat))
    if torch.cuda.is_available():
        rows.append(measure("cuda", args.cuda_batch, args.size, args.repeat))
    print(f"ResNet-50 {args.size}x{args.size} fp32: netdef executor vs PyTorch eager "
          f"(median of {args.repeat}, interleaved)")
    print(f"{'device':<6} {'batch':>5} {'eager ms':>10} {'executor ms':>12} {'ratio':>7} {'target':>7}  "
          f"{'rel err':>9}  note")
    for r in rows:
        note = (r["gpu"] or f"{r['threads']} threads") + ("" if r["meets_target"] else "  MISSES TARGET")
        print(f"{r['device']:<6} {r['batch']:>5} {r['eager_ms']:>10.1f} {r['executor_ms']:>12.1f} {r['ratio']:>7.2f} "
              f"{r['target']:>7.2f}  {r['rel_err']:>9.2e}  {note}")
    if args.json:
        write_text_atomic(args.json, json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
