"""`netdef build ARCH --weights W.h5 --out E.engine`: define any registered network from its HDF5 weights,
build an engine with the TensorRT binding at hand, save it with its JSON sidecar."""
from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path
from typing import Any

from netdef.commands.arguments import (add_calib_cache_argument, add_nms_arguments, int_in, parse_size,
                                      positive_int, refuse_same_files)
from netdef.engine import PRECISIONS, BuildSettings, parse_batch, save_engine, sidecar_path
from netdef.sidecar import INPUT_DTYPES

log = logging.getLogger("netdef.build")
__all__ = ["add_parser", "build_options", "parse_size", "run"]


def _batch(text: str) -> tuple[int, int, int]:
    try:
        return parse_batch(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("build", help="build a TensorRT engine from an HDF5 weights file",
                       description="Define ARCH layer by layer from its HDF5 weights (netdef export) and build "
                                   "a TensorRT engine; writes ENGINE and ENGINE.json (sidecar).")
    p.add_argument("arch", help="architecture (resnet18..resnet152, yolov4, ...; `netdef info` lists them)")
    p.add_argument("--weights", required=True, type=Path, help="HDF5 weights file from `netdef export`")
    p.add_argument("--out", required=True, type=Path, help="engine file to write")
    p.add_argument("--precision", choices=PRECISIONS, default="fp32")
    p.add_argument("--batch", type=_batch, default=(1, 1, 1), help="N or MIN:OPT:MAX (default 1)")
    p.add_argument("--input-size", type=parse_size, default=None, help="H,W (default: the network's own)")
    p.add_argument("--opt-level", type=int_in(0, 5), default=None, help="builder optimization level, 0..5")
    p.add_argument("--timing-cache", type=Path, default=None,
                   help="timing cache file (read and updated; a file that is not a timing cache is refused)")
    p.add_argument("--workspace", type=positive_int, default=None, metavar="MIB", help="workspace limit in MiB")
    p.add_argument("--fp16-io", action="store_true", help="FP16 network inputs/outputs (fp16/int8 only)")
    p.add_argument("--input-dtype", choices=tuple(INPUT_DTYPES), default="float32",
                   help="uint8: the input takes RGB pixels 0..255 (resized/letterboxed) and the engine normalizes "
                        "them itself, 4x fewer bytes per image than float32 (serving); INT8 calibration is unchanged")
    add_calib_cache_argument(p, "INT8 calibration cache (JSON, netdef calibrate)", type=Path, default=None)
    p.add_argument("--no-progress", action="store_true", help="no builder progress bars")
    detection = p.add_argument_group("detection networks (yolov4, yolov4-tiny, darknet)")
    detection.add_argument("--nms", choices=("auto", "engine", "raw"), default=None,
                           help="NMS inside the engine, or raw boxes/scores for host NMS (default auto: engine "
                                "where the binding can build TensorRT's NMS layer)")
    add_nms_arguments(detection, "engine NMS, or recorded for the host NMS of raw outputs")
    pose = p.add_argument_group("pose networks (higherhrnet-w32, higherhrnet-w48)")
    pose.add_argument("--outputs", choices=("parsed", "raw"), default=None,
                      help="parsed (default): keypoint candidates from the engine for host grouping; raw: the "
                           "network's own output maps")
    p.set_defaults(func=run)


def build_options(args: argparse.Namespace) -> dict[str, Any]:
    """Network-class options from the command line (only those given, so each class sees what it knows)."""
    options: dict[str, Any] = {}
    if args.fp16_io:
        if args.precision == "fp32":
            raise ValueError("--fp16-io needs --precision fp16 or int8")
        options["fp16_io"] = True
    if args.precision == "int8":
        if args.calib_cache is None:
            raise ValueError("--precision int8 needs --calib-cache (make one with `netdef calibrate`)")
        if not args.calib_cache.exists():
            raise FileNotFoundError(f"{args.calib_cache}: calibration cache not found")
        options["calibration"] = args.calib_cache
    elif args.calib_cache is not None:
        raise ValueError("--calib-cache is only used with --precision int8")
    if args.input_dtype != "float32":
        options["input_dtype"] = args.input_dtype
    for key in ("nms", "max_detections", "score_threshold", "iou_threshold", "outputs"):
        if getattr(args, key, None) is not None:
            options[key] = getattr(args, key)
    return options


def run(args: argparse.Namespace) -> int:
    import networks

    if not args.weights.exists():
        raise FileNotFoundError(f"{args.weights}: weights file not found (make one with `netdef export`)")
    sidecar = {"the sidecar of --out": sidecar_path(args.out)}
    refuse_same_files(args, ["out", "timing_cache"], ["weights", "calib_cache"], extra_outputs=sidecar)
    refuse_same_files(args, ["out"], ["timing_cache"], extra_outputs=sidecar)
    cls = networks.get(args.arch)
    options = build_options(args)
    model = cls.from_hdf5(args.weights)
    model_arch = getattr(model, "arch", args.arch)
    if model_arch != args.arch and model_arch in networks.names():
        raise ValueError(f"{args.weights}: weights are for {model_arch}, not {args.arch}")
    settings = BuildSettings(precision=args.precision, batch=args.batch, workspace_mib=args.workspace,
                             optimization_level=args.opt_level, timing_cache=args.timing_cache,
                             progress=not args.no_progress)
    t0 = time.perf_counter()
    plan = model.build(precision=args.precision, batch=args.batch, input_size=args.input_size, settings=settings,
                       **options)
    seconds = time.perf_counter() - t0
    path = save_engine(plan, args.out, weights=args.weights)
    outputs = ", ".join(o["name"] for o in plan.meta.get("outputs", []))
    print(f"{args.arch} {args.precision} batch {':'.join(map(str, settings.batch))}: {path} "
          f"({len(plan.data) / 1e6:.1f} MB, defined and built in {seconds:.1f} s; outputs: {outputs})")
    return 0
