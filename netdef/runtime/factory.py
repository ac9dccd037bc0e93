"""Opening a session the way the CLI asks for one: an engine file on TensorRT, or the same network's definition
run by netdef's executor (where TensorRT cannot run). The definition comes from a builder the caller passes
(the CLI makes one from --arch/--weights: the runtime never imports the model zoo)."""
from __future__ import annotations

import os
from typing import Any, Callable

from netdef.runtime.session import InferenceSession

EXECUTORS = ("tensorrt", "netdef")
DefinitionBuilder = Callable[[dict[str, Any]], Any]  # an engine's sidecar (or {}) -> a netdef Network


def engine_meta(engine: str | os.PathLike | None) -> dict[str, Any]:
    """The engine's sidecar without binding checks (the netdef executor only borrows arch, precision, sizes)."""
    if engine is None or not os.path.exists(os.fspath(engine)):
        return {}
    from netdef.engine import read_sidecar

    return read_sidecar(engine, check_binding=False)


def open_session(engine: str | os.PathLike | None = None, executor: str = "tensorrt",
                 define: DefinitionBuilder | None = None, device: str | None = None,
                 graph: bool = False) -> InferenceSession:
    """A session for `netdef infer`/`netdef bench`.

    tensorrt: the engine file (sidecar checked). netdef: `define(meta)` with the engine's sidecar (empty without
    one) gives the Network to run, with the engine's batch range when known.
    """
    if executor not in EXECUTORS:
        raise ValueError(f"executor {executor!r}: expected one of {', '.join(EXECUTORS)}")
    if executor == "tensorrt":
        if engine is None:
            raise ValueError("the tensorrt executor needs an ENGINE file (or use --executor netdef --arch A --weights W.h5)")
        return InferenceSession.from_engine(engine, graph=graph, device=_gpu_index(device))
    if define is None:
        raise ValueError("the netdef executor needs a definition (--executor netdef needs --weights W.h5)")
    meta = engine_meta(engine)
    net = define(meta)
    if meta:  # the rebuilt definition must be the one the engine was built from
        from netdef.sidecar import check_definition

        check_definition(meta, net, os.fspath(engine), same_precision=net.policy.name == meta.get("precision"))
    batch = tuple(meta["batch"]) if meta.get("batch") else None
    return InferenceSession.from_definition(net, device=device or "cpu", batch=batch, meta={**meta, **net.meta})


def _gpu_index(device: str | None) -> int | None:
    """"1", "cuda:1" -> 1; "cuda" or nothing -> None (the current device)."""
    if not device or device == "cuda":
        return None
    text = device.split(":", 1)[1] if device.startswith("cuda:") else device
    if not text.isdigit():
        raise ValueError(f"--device {device!r}: the tensorrt executor takes a GPU index (0, 1, ... or cuda:N)")
    return int(text)
