"""`netdef verify ARCH --weights W.h5`: execute the definition layer by layer and compare with PyTorch.

Exit code 0 only when every network output is within tolerance: in FP32, by default, as close to float64 as
PyTorch's own float32 run is, layer by layer (netdef.verify); 5e-3 FP16 and 1e-1 INT8; or --tolerance.
"""
from __future__ import annotations

import argparse
import logging
from typing import Any

from netdef.commands.arguments import add_calib_cache_argument, float_in, positive_int, refuse_same_files

log = logging.getLogger("netdef.verify")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("verify", help="compare a network definition layer by layer with PyTorch",
                       description="Execute the TensorRT network definition with torch (no GPU needed) and "
                       "compare every module's output with the PyTorch reference, or with the activations "
                       "stored in the weights file.")
    p.add_argument("arch", help="architecture name (see `netdef info`), e.g. resnet50, yolov4")
    p.add_argument("--weights", required=True, help="netdef HDF5 weights file")
    p.add_argument("--precision", choices=("fp32", "fp16", "int8"), default="fp32")
    p.add_argument("--device", default="cpu",
                   help="torch device of the executor: cpu or cuda (the float64 reference runs on the CPU)")
    p.add_argument("--batch", type=positive_int, default=1)
    p.add_argument("--input-size", type=positive_int, nargs=2, metavar=("H", "W"), help="input height and width")
    p.add_argument("--seed", type=int, default=0, help="seed of the random sample input")
    p.add_argument("--tolerance", type=float_in(0, 1e30, low_open=True),
                   help="relative error allowed for every layer (default fp32: 4x PyTorch float32's own error "
                        "at that layer, at least 1e-6; fp16 5e-3; int8 1e-1)")
    p.add_argument("--activations", action="store_true",
                   help="compare with the /activations stored in the weights file instead of running PyTorch")
    add_calib_cache_argument(p, "INT8 calibration cache or data, passed to the network class "
                                "(--calibration is the same option)")
    p.add_argument("-O", "--option", action="append", default=[], metavar="KEY=VALUE",
                   help="extra option for the network class's define() (repeatable)")
    p.add_argument("--report", help="write the per-layer report as JSON")
    p.add_argument("--plot", help="write a PNG plot of relative error per layer")
    p.set_defaults(func=run)


def _options(args: argparse.Namespace) -> dict[str, Any]:
    options: dict[str, Any] = {}
    for item in args.option:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--option {item!r}: expected KEY=VALUE")
        options[key.replace("-", "_")] = _literal(value)
    if args.calib_cache:
        options["calibration"] = args.calib_cache
    return options


def reference_options(model: Any, meta: dict[str, Any]) -> dict[str, Any]:
    """The define() options a definition recorded (networks.base.DEFINE_OPTIONS) that the model's `reference`
    takes (YOLO's NMS settings, the pose networks' outputs and parsing), so both sides compute the same outputs."""
    import inspect

    from networks.base import DEFINE_OPTIONS

    accepted = inspect.signature(model.reference).parameters
    return {k: v for k, v in meta.get(DEFINE_OPTIONS, {}).items() if k in accepted}


def _literal(text: str) -> Any:
    import ast

    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def run(args: argparse.Namespace) -> int:
    import networks
    from netdef.verify import verify_activations, verify_network

    refuse_same_files(args, ["report", "plot"], ["weights", "calib_cache"])
    model = networks.get(args.arch).from_hdf5(args.weights)
    size = tuple(args.input_size) if args.input_size else None
    stored = None
    if args.activations:
        stored = model.weights.activations
        if stored is None:
            raise ValueError(f"{args.weights}: no /activations stored (export with activations to use --activations)")
        if size is None and "input" in stored:
            size = tuple(int(d) for d in stored["input"].shape[-2:])  # define for the recorded input's size
    net = model.define(precision=args.precision, input_size=size, **_options(args))
    if stored is not None:
        report = verify_activations(net, stored, device=args.device, tolerance=args.tolerance)
    else:
        inputs, reference_inputs = model.sample_input(args.batch, size, args.seed), None
        if net.meta.get("input_dtype") == "uint8":  # the sample's pixels in, the reference reads them normalized
            norm = model.normalization()
            inputs = norm.pixels(inputs)
            reference_inputs = norm.exact(inputs)
        report = verify_network(net, model.reference(**reference_options(model, net.meta)), inputs,
                                device=args.device, tolerance=args.tolerance, reference_inputs=reference_inputs)
    print(report.table())
    if args.report:
        report.write_json(args.report)
    if args.plot:
        report.plot(args.plot)
    return 0 if report.ok else 1
