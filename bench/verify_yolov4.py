"""`netdef verify` on a full-size YOLOv4 in FP32: passes with well-conditioned random weights, fails with one
deliberately wrong layer.

    python bench/verify_yolov4.py [--size 608] [--width-div 1] [--seed 0] [--wrong layers.60.conv]
                                  [--json bench/results/verify_yolov4_cpu.json]

The network is the YOLOv4 structure (weights_export.darknet_synth: CSPDarknet53, SPP, PANet, three heads,
162 cfg layers) with random Darknet weights whose kernels are scaled by 1/sqrt(fan-in) and realistic
BatchNorm statistics. Each layer is judged against PyTorch float32's own error at that layer (netdef.verify);
the table shows, per run, the worst netdef error, the worst PyTorch float32 error, and the largest ratio
of netdef's error to PyTorch's (the limit is FP32_FACTOR = 4). The wrong layer's kernel is scaled by
1 + 1e-3: a plausible bug (an eps or scale off by a little), three orders above float32 rounding.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from netdef import trt as shim  # noqa: E402
from netdef.atomic import write_text_atomic  # noqa: E402
from netdef.verify import FP32_FACTOR, VerifyReport, verify_network  # noqa: E402


def yolov4_model(size: int, width_div: int, seed: int, work: Path) -> Any:
    from networks.yolov4 import YOLOv4
    from weights_export.darknet_synth import write_darknet_weights, yolov4_cfg

    cfg = work / "yolov4.cfg"
    cfg.write_text(yolov4_cfg(size, size, width_div=width_div, classes=80))
    write_darknet_weights(cfg.read_text(), work / "yolov4.weights", seed=seed)
    return YOLOv4.from_darknet(cfg, work / "yolov4.weights")


def break_layer(net: Any, name: str, factor: float = 1 + 1e-3) -> str:
    """Scale the kernel of the first convolution whose name starts with `name`; returns its name."""
    trt = shim.binding()
    for i in range(net.definition.num_layers):
        layer = net.definition.get_layer(i)
        if layer.type == trt.LayerType.CONVOLUTION and layer.name.startswith(name):
            shim.downcast(layer)
            layer.kernel = trt.Weights(net.keep(layer.kernel * np.float32(factor)))
            return layer.name
    raise ValueError(f"no convolution named {name}*")


def summary(report: VerifyReport, seconds: float) -> dict[str, Any]:
    ratios = [c.rel / c.reference_rel for c in report.layers if c.reference_rel]
    worst = max(report.layers, key=lambda c: c.rel / c.tolerance)
    first = report.first_failure
    return {"ok": report.ok, "layers": len(report.layers), "max_rel": max(c.rel for c in report.layers),
            "max_torch_f32_rel": max(c.reference_rel or 0.0 for c in report.layers),
            "max_ratio": max(ratios), "median_ratio": float(np.median(ratios)),
            "closest_to_limit": worst.name, "closest_rel": worst.rel, "closest_limit": worst.tolerance,
            "first_failure": first.name if first else None, "first_failure_rel": first.rel if first else None,
            "outputs": {c.name: {"rel": c.rel, "torch_f32_rel": c.reference_rel, "limit": c.tolerance}
                        for c in report.outputs}, "seconds": round(seconds, 1)}


def run(size: int, width_div: int, seed: int, wrong: str | None) -> dict[str, Any]:
    import torch

    with tempfile.TemporaryDirectory(prefix="verify-yolov4-") as tmp:
        model = yolov4_model(size, width_div, seed, Path(tmp))
        x = model.sample_input(1, seed=seed)
        results: dict[str, Any] = {"size": size, "width_div": width_div, "seed": seed, "factor": FP32_FACTOR,
                                   "torch_threads": torch.get_num_threads()}
        cases = [("correct", None)] + ([("one wrong layer", wrong)] if wrong else [])
        for label, layer in cases:
            net = model.define("fp32", nms="raw")
            broken = break_layer(net, layer) if layer else None
            start = time.perf_counter()
            report = verify_network(net, model.reference(nms="raw"), x)
            results[label] = {**summary(report, time.perf_counter() - start), "broken_layer": broken}
    return results


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=608)
    ap.add_argument("--width-div", type=int, default=1, help="channel widths divided by this (1: full size)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--wrong", default="layers.60.conv", help="the convolution to break in the second run")
    ap.add_argument("--json", help="also write the numbers here")
    args = ap.parse_args()
    results = run(args.size, args.width_div, args.seed, args.wrong)
    print(f"YOLOv4 {args.size}x{args.size}, width/{args.width_div}, FP32, limit {FP32_FACTOR:g} x PyTorch float32's "
          "own error per layer")
    print(f"{'case':<16} {'verdict':<7} {'layers':>6} {'max rel':>10} {'torch f32':>10} {'max ratio':>9} "
          f"{'first failure':<22} {'seconds':>7}")
    for label in ("correct", "one wrong layer"):
        r = results.get(label)
        if r:
            print(f"{label:<16} {'PASS' if r['ok'] else 'FAIL':<7} {r['layers']:>6} {r['max_rel']:>10.2e} "
                  f"{r['max_torch_f32_rel']:>10.2e} {r['max_ratio']:>9.2f} {str(r['first_failure']):<22} "
                  f"{r['seconds']:>7}")
    if args.json:
        write_text_atomic(args.json, json.dumps(results, indent=2) + "\n")
    wrong_ok = results.get("one wrong layer", {}).get("ok", False)
    return 0 if results["correct"]["ok"] and not wrong_ok else 1


if __name__ == "__main__":
    sys.exit(main())
