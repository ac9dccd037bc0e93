"""Opening a session the way the CLI asks for one: an engine file on TensorRT, or the same network
rebuilt from its HDF5 weights and run by netdef's executor (where TensorRT cannot run)."""
from __future__ import annotations

import os
from typing import Any

from netdef.runtime.session import InferenceSession

EXECUTORS = ("tensorrt", "netdef")
DEFINITION_OPTIONS = ("nms", "max_detections", "score_threshold", "iou_threshold", "topk")


def engine_meta(engine: str | os.PathLike | None) -> dict[str, Any]:
    """The engine's sidecar without binding checks (the netdef executor only borrows arch, precision, sizes)."""
    if engine is None or not os.path.exists(os.fspath(engine)):
        return {}
    from netdef.engine import read_sidecar

    return read_sidecar(engine, check_binding=False)


def open_session(engine: str | os.PathLike | None = None, executor: str = "tensorrt", arch: str | None = None,
                 weights: str | os.PathLike | None = None, device: str | None = None, graph: bool = False,
                 precision: str | None = None) -> InferenceSession:
    """A session for `netdef infer`/`netdef bench`.

    tensorrt: the engine file (sidecar checked). netdef: `weights` (HDF5) defined as `arch` (or the arch the
    engine's sidecar or the HDF5 records), with the engine's precision, input size and batch range when known.
    """
    if executor not in EXECUTORS:
        raise ValueError(f"executor {executor!r}: expected one of {', '.join(EXECUTORS)}")
    if executor == "tensorrt":
        if engine is None:
            raise ValueError("the tensorrt executor needs an ENGINE file (or use --executor netdef --arch A --weights W.h5)")
        return InferenceSession.from_engine(engine, graph=graph, device=_gpu_index(device))
    from netdef.sidecar import check_definition, weights_for_engine

    meta = engine_meta(engine)
    if meta:  # the weights must be the engine's (default: the recorded file, when it is found and matches)
        weights = weights_for_engine(engine, meta, weights)  # type: ignore[arg-type]
    if weights is None:
        raise ValueError("--executor netdef needs --weights W.h5 (and --arch unless the engine sidecar or the "
                         "weights file records it)")
    import networks

    model_cls = networks.get(arch or meta.get("arch") or _hdf5_arch(weights))
    model = model_cls.from_hdf5(weights)
    input_size = meta.get("input_size")
    if input_size is None and meta.get("inputs"):
        input_size = meta["inputs"][0]["shape"][2:4]
    # the definition options the engine was built with (YOLO's NMS settings) travel in its sidecar
    options = {k: meta[k] for k in DEFINITION_OPTIONS if k in meta}
    net = model.define(precision=precision or meta.get("precision", "fp32"),
                       input_size=tuple(input_size) if input_size else None, **options)
    if meta:
        check_definition(meta, net, os.fspath(engine), same_precision=precision in (None, meta.get("precision")))
    batch = tuple(meta["batch"]) if meta.get("batch") else None
    info = {**meta, **net.meta, "weights_file": os.path.basename(os.fspath(weights))}
    return InferenceSession.from_definition(net, device=device or "cpu", batch=batch, meta=info)


def _hdf5_arch(weights: str | os.PathLike) -> str:
    from weights_export.hdf5 import WeightsFile

    with WeightsFile(weights) as f:
        arch = f.attrs.get("arch")
    if not arch:
        raise ValueError(f"{os.fspath(weights)}: no arch attribute; pass --arch")
    return str(arch)


def _gpu_index(device: str | None) -> int | None:
    """"1", "cuda:1" -> 1; "cuda" or nothing -> None (the current device)."""
    if not device or device == "cuda":
        return None
    text = device.split(":", 1)[1] if device.startswith("cuda:") else device
    if not text.isdigit():
        raise ValueError(f"--device {device!r}: the tensorrt executor takes a GPU index (0, 1, ... or cuda:N)")
    return int(text)
