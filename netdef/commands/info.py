"""`netdef info`: TensorRT flavor/version and features, library versions, CUDA visibility."""
from __future__ import annotations

import argparse
import importlib
import json


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("info", help="show the TensorRT binding, its features and library versions")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=run)


def _version(module: str) -> str:
    try:
        return str(importlib.import_module(module).__version__)
    except Exception as exc:
        return f"not available ({type(exc).__name__})"


def cuda_devices() -> str:
    """CUDA devices as cuda-python sees them (no torch needed), else torch's view."""
    try:
        from cuda.bindings import runtime as cudart

        err, count = cudart.cudaGetDeviceCount()
        if int(err) != 0:
            return f"none ({cudart.cudaGetErrorName(err)[1].decode()})"
        names = []
        for i in range(count):
            err, prop = cudart.cudaGetDeviceProperties(i)
            names.append(f"{prop.name.decode(errors='replace').strip(chr(0))} (sm_{prop.major}{prop.minor})")
        return ", ".join(names) or "none"
    except ImportError:
        pass
    try:
        import torch

        if torch.cuda.is_available():
            return ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))
        return "none (torch sees no CUDA device)"
    except ImportError:
        return "unknown (neither cuda-python nor torch installed)"


def run(args: argparse.Namespace) -> int:
    from netdef import __version__
    from netdef import trt as shim

    info: dict = {"netdef": __version__}
    try:
        feat = shim.features()
        info["tensorrt"] = f"{feat.flavor} {feat.version}"
        info["features"] = feat.as_dict()
    except shim.TensorRTNotFound as exc:
        info["tensorrt"] = f"not installed: {exc}"
    for name in ("torch", "h5py", "numpy"):
        info[name] = _version(name)
    info["cuda"] = cuda_devices()
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    print(f"netdef     {info['netdef']}")
    print(f"TensorRT   {info['tensorrt']}")
    for name in ("torch", "h5py", "numpy"):
        print(f"{name:<10} {info[name]}")
    print(f"CUDA       {info['cuda']}")
    if "features" in info:
        print("features:")
        for key, value in info["features"].items():
            if key not in ("flavor", "version"):
                print(f"  {key:<24} {value}")
    return 0
