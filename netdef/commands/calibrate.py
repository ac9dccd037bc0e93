"""`netdef calibrate ARCH --weights W.h5 --data DIR_OR_NPY --out calib.json`: INT8 calibration cache.

Runs the calibration data through ARCH's FP32 definition with netdef's executor and writes the amax of
every tensor the INT8 build quantizes; `netdef build ... --precision int8 --calib-cache calib.json` uses it.
`--sensitivity K` also ranks the quantization sites (residual blocks / layers) by the output error quantizing
each alone causes and keeps the worst K in FP16; the ranking goes into the cache and is printed (and written
with `--sensitivity-report`).
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from netdef.commands.arguments import float_in, parse_size, positive_int, refuse_same_files


def add_parser(sub: argparse._SubParsersAction) -> None:
    from netdef.quantize.calibrators import DEFAULT_PERCENTILE, METHODS

    p = sub.add_parser("calibrate", help="compute an INT8 calibration cache (JSON) for a network",
                       description="Run calibration images/arrays through ARCH's FP32 definition and write one "
                                   "amax per quantized tensor (keyed by tensor name) with a fingerprint of the "
                                   "definition and weights.")
    p.add_argument("arch", help="architecture (resnet50, yolov4-tiny, ...)")
    p.add_argument("--weights", required=True, type=Path, help="HDF5 weights file from `netdef export`")
    p.add_argument("--data", required=True, type=Path,
                   help="image folder (JPEG/PNG, the network's preprocessing) or .npy/.npz array (N,C,H,W)")
    p.add_argument("--out", "--calib-cache", dest="out", required=True, type=Path,
                   help="calibration cache to write (JSON); --calib-cache is the same option")
    p.add_argument("--method", choices=METHODS, default="entropy")
    p.add_argument("--percentile", type=float_in(0, 100, low_open=True), default=DEFAULT_PERCENTILE,
                   help="for --method percentile, in (0, 100]")
    p.add_argument("--samples", type=positive_int, default=256, help="number of calibration samples (default 256)")
    p.add_argument("--batch", type=positive_int, default=32, help="calibration batch size")
    p.add_argument("--device", default="cpu", help="executor device: cpu or cuda")
    p.add_argument("--input-size", type=parse_size, default=None, help="H,W (default: the network's own)")
    p.add_argument("--recalibrate", action="store_true", help="replace an existing cache that does not match")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--sensitivity", type=int, default=None, metavar="K",
                   help="rank quantization sites by the output error of quantizing each alone; keep the worst K in FP16")
    p.add_argument("--sensitivity-samples", type=int, default=8, help="samples the ranking runs on (default 8)")
    p.add_argument("--sensitivity-depth", type=int, default=2,
                   help="a site is a module path cut to this many components (2: `layer1.0`, `layers.5`)")
    p.add_argument("--sensitivity-report", type=Path, default=None, help="write the ranking as JSON here")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import networks
    from netdef.quantize import calibrate

    if not args.weights.exists():
        raise FileNotFoundError(f"{args.weights}: weights file not found (make one with `netdef export`)")
    if not args.data.exists():
        raise FileNotFoundError(f"{args.data}: calibration data not found")
    refuse_same_files(args, ["out"], ["weights", "data"])
    model = networks.get(args.arch).from_hdf5(args.weights)
    reuse = args.out.exists() and not args.recalibrate  # calibrate() reuses it or refuses it
    t0 = time.perf_counter()
    cache = calibrate(model, args.data, method=args.method, samples=args.samples, batch=args.batch,
                      device=args.device, input_size=args.input_size, out=args.out, recalibrate=args.recalibrate,
                      percentile=args.percentile, progress=not args.no_progress, sensitivity=args.sensitivity,
                      sensitivity_samples=args.sensitivity_samples, sensitivity_depth=args.sensitivity_depth)
    if args.sensitivity is not None:
        _report_sensitivity(cache, args.sensitivity_report)
    if reuse:
        print(f"{args.arch}: {args.out} matches this network and weights (fingerprint {cache.fingerprint[:12]}): "
              "reused; pass --recalibrate to compute it again")
        return 0
    print(f"{args.arch}: {len(cache.amax)} tensors calibrated ({cache.algorithm}, {cache.num_samples} samples) "
          f"-> {args.out} in {time.perf_counter() - t0:.1f} s (fingerprint {cache.fingerprint[:12]})")
    return 0


def _report_sensitivity(cache: Any, report: Path | None) -> None:
    import json

    from netdef.atomic import write_text_atomic
    from netdef.quantize.sensitivity import SensitivityResult

    stored = cache.meta["sensitivity"]
    print(SensitivityResult.from_json(stored).format())
    if report is not None:
        write_text_atomic(report, json.dumps(stored, indent=1) + "\n")
