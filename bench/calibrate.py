"""INT8 calibration time: ResNet-50 (random init, realistic BatchNorm statistics) on N images at 224,
on this CPU and, when torch sees one, on CUDA.

    python bench/calibrate.py [--samples 256] [--batch 32] [--size 224] [--methods entropy,minmax]
                              [--threads 2] [--devices cpu,cuda] [--json bench/results/calibrate.json]

Calibration = the FP32 definition run through netdef's executor with the statistics observer (every
tensor the INT8 definition quantizes and the members of their scale groups: max |x| and a 2048-bin
histogram), then one calibrator over the histograms. The statistics are collected once per device and
every calibrator is timed on them.
Columns: statistics time, calibrator time, total, images/s, total relative to the first row (CPU
entropy), and the same batches through the executor without the observer (compile included, as in the
statistics time) with the ratio total / forward-only, all from this one run. Target: <= 30 s on an H100 for 256 images at 224.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from netdef.atomic import write_text_atomic  # noqa: E402
from netdef.quantize import collect_statistics  # noqa: E402
from netdef.quantize.calibrators import METHODS  # noqa: E402


def resnet50(size: int):
    from networks.resnet import ResNet, random_bn_init, torch_resnet

    module = random_bn_init(torch_resnet("resnet50", seed=0), seed=0)
    model = ResNet({k: v.numpy() for k, v in module.state_dict().items()}, arch="resnet50")
    return model.define("fp32", input_size=(size, size))


def images(n: int, size: int) -> np.ndarray:
    """Normalized-image-like calibration inputs (smooth random fields)."""
    noise = np.random.default_rng(0).standard_normal((n, 3, size // 16, size // 16)).astype(np.float32)
    coarse = torch.from_numpy(noise)
    return torch.nn.functional.interpolate(coarse, size=(size, size), mode="bilinear").numpy()


def forward_time(definition, batches, device: str) -> float:
    """The same batches through the compiled executor without the observer (what statistics add to)."""
    from netdef.executor import compile as compile_definition

    start = time.perf_counter()
    executor = compile_definition(definition, device=device)
    name = definition.get_input(0).name
    for batch in batches:
        executor({name: batch})
    if device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--samples", type=int, default=256)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--methods", default=",".join(METHODS), help="calibrators, timed on the same statistics")
    parser.add_argument("--devices", default=None, help="comma list (default: cpu, and cuda when visible)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--no-forward", action="store_true", help="skip the forward-only baseline")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    if args.threads:
        torch.set_num_threads(args.threads)
    devices = args.devices.split(",") if args.devices else ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    net = resnet50(args.size)
    data = images(args.samples, args.size)
    names = net.quant.calibration_names()
    rows = []
    for device in devices:
        # warm-up (imports, allocator, CUDA context and kernels): not part of either timing
        collect_statistics(net.definition, [data[: args.batch]], names, device, progress=False)
        if device == "cuda":
            torch.cuda.synchronize()
        batches = [data[i:i + args.batch] for i in range(0, len(data), args.batch)]
        start = time.perf_counter()
        stats = collect_statistics(net.definition, batches, names, device, progress=False)
        statistics_s = time.perf_counter() - start
        forward_s = None if args.no_forward else forward_time(net.definition, batches, device)
        name = torch.cuda.get_device_name() if device == "cuda" else f"cpu x{torch.get_num_threads()} threads"
        for method in args.methods.split(","):  # every calibrator on the same histograms
            start = time.perf_counter()
            for s in stats.values():
                s.amax(method)
            amax_s = time.perf_counter() - start
            total = statistics_s + amax_s
            rows.append({"device": device, "device_name": name, "method": method, "samples": len(data),
                         "batch": args.batch, "size": args.size, "tensors": len(stats),
                         "statistics_s": statistics_s, "forward_only_s": forward_s, "amax_s": amax_s,
                         "total_s": total,
                         "images_per_s": len(data) / total})
    base = rows[0]["total_s"]
    print(f"ResNet-50 INT8 calibration, {args.samples} images at {args.size}x{args.size}, batch {args.batch}")
    print(f"{'device':<28} {'method':<10} {'tensors':>7} {'stats s':>8} {'amax s':>7} {'total s':>8} "
          f"{'img/s':>7} {'vs row 1':>8} {'fwd-only s':>10} {'total/fwd':>9}")
    for r in rows:
        fwd = r["forward_only_s"]
        print(f"{r['device_name']:<28} {r['method']:<10} {r['tensors']:>7} {r['statistics_s']:>8.2f} "
              f"{r['amax_s']:>7.2f} {r['total_s']:>8.2f} {r['images_per_s']:>7.1f} {r['total_s'] / base:>8.3f} "
              + (f"{fwd:>10.2f} {r['total_s'] / fwd:>9.2f}" if fwd else f"{'-':>10} {'-':>9}"))
    if args.json:
        write_text_atomic(args.json, json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
