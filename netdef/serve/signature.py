"""A served model's signature in Triton's terms: tensors with their dims after the batch dim, and the batch range.

Triton describes a batching model by a batch limit > 0 (its config's field, `batch_limit` here; see
repository.BATCH_LIMIT_FIELD) and per-tensor dims without the batch dim; a model without a batch dim has limit 0
and full dims. netdef engines carry a dynamic batch dim on every input and output (the optimization profile
gives its range), which maps onto the first form. The same signature serves `netdef serve` (from a session's
specs) and `netdef triton-repo` (from the engine's sidecar).
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from netdef.runtime.buffers import TensorSpec

# Triton's data type names (the model config's TYPE_* without the prefix; the protocol's datatype strings)
TRITON_TYPES = {"float32": "FP32", "float16": "FP16", "int32": "INT32", "int64": "INT64", "int8": "INT8",
                "uint8": "UINT8", "bool": "BOOL"}
UNBOUNDED_BATCH = 2**31 - 1  # what a definition without a recorded batch range allows
DEFAULT_MAX_BATCH = 32  # the cap for such a definition unless the caller gives one


class SignatureError(ValueError):
    """An engine whose I/O Triton cannot serve as asked; the message names the model and the tensor."""


@dataclass(frozen=True)
class TensorSignature:
    name: str
    dtype: np.dtype
    dims: tuple[int, ...]  # after the batch dim when the model batches; -1 = variable

    @property
    def triton_type(self) -> str:
        return TRITON_TYPES[self.dtype.name]


@dataclass(frozen=True)
class ModelSignature:
    name: str
    inputs: tuple[TensorSignature, ...]
    outputs: tuple[TensorSignature, ...]
    batch_limit: int  # 0: no batch dim, requests go to the model as they are
    opt_batch: int = 1

    @property
    def batched(self) -> bool:
        return self.batch_limit > 0

    def preferred_batch_sizes(self) -> list[int]:
        """The batches the dynamic batcher should aim for: the profile's opt (when above 1) and its max."""
        return sorted({b for b in (self.opt_batch, self.batch_limit) if 1 < b <= self.batch_limit}) \
            or [self.batch_limit]

    @classmethod
    def from_specs(cls, name: str, specs: Sequence[TensorSpec], opt_batch: int | None = None,
                   max_batch: int | None = None) -> "ModelSignature":
        """From runtime specs (an InferenceSession's `inputs + outputs`); `max_batch` caps the profile's max."""
        inputs = [s for s in specs if s.is_input]
        outputs = [s for s in specs if not s.is_input]
        unsupported = [f"'{s.name}' ({s.dtype.name})" for s in specs if s.dtype.name not in TRITON_TYPES]
        if unsupported:
            raise SignatureError(f"{name}: Triton has no data type for {', '.join(unsupported)}")
        dynamic = [s.shape[:1] == (-1,) for s in inputs]
        if not inputs or not any(dynamic):
            if max_batch:
                raise SignatureError(f"{name}: --max-batch {max_batch} given, but no input has a dynamic batch dim")
            return cls(name, _sigs(inputs, 0), _sigs(outputs, 0), 0)
        if not all(dynamic):
            fixed = [s.name for s, d in zip(inputs, dynamic) if not d]
            raise SignatureError(f"{name}: inputs {fixed} have no dynamic batch dim while others do; Triton batches "
                                 "every input alike")
        unsplittable = [s.name for s in outputs if s.shape[:1] != (-1,)]
        if unsplittable:
            raise SignatureError(f"{name}: outputs {unsplittable} have no batch dim, so a batch of requests cannot be "
                                 "split back into responses")
        lo = max(s.min_shape[0] for s in inputs)
        hi = min(s.max_shape[0] for s in inputs)
        if lo > 1:
            raise SignatureError(f"{name}: the batch range starts at {lo}; Triton sends batches from 1 (build the "
                                 "engine with a profile from batch 1, e.g. --batch 1:8:32)")
        if hi >= UNBOUNDED_BATCH and max_batch is None:
            hi = DEFAULT_MAX_BATCH
        if max_batch is not None:
            if not 1 <= max_batch <= hi:
                raise SignatureError(f"{name}: --max-batch {max_batch} is outside the engine's batch range 1..{hi}")
            hi = max_batch
        opt = min(max(opt_batch or 1, 1), hi)
        return cls(name, _sigs(inputs, 1), _sigs(outputs, 1), hi, opt)

    @classmethod
    def from_sidecar(cls, name: str, meta: Mapping[str, Any], max_batch: int | None = None) -> "ModelSignature":
        """From an engine's sidecar (inputs/outputs with name, TensorRT dtype, shape, min/opt/max)."""
        from netdef.network import np_dtype

        specs = []
        for key, is_input in (("inputs", True), ("outputs", False)):
            for t in meta.get(key) or []:
                shape = tuple(int(d) for d in t["shape"])
                specs.append(TensorSpec(t["name"], is_input, np_dtype(t["dtype"]), shape,
                                        tuple(t.get("min") or shape), tuple(t.get("max") or shape)))
        if not any(s.is_input for s in specs):
            raise SignatureError(f"{name}: the sidecar lists no inputs")
        return cls.from_specs(name, specs, opt_batch=_opt_batch(meta), max_batch=max_batch)

    @classmethod
    def from_session(cls, name: str, session: Any, max_batch: int | None = None) -> "ModelSignature":
        """From an open InferenceSession: its specs, and the profile's opt batch its meta records."""
        return cls.from_specs(name, session.inputs + session.outputs, opt_batch=_opt_batch(session.meta),
                              max_batch=max_batch)

    def as_dict(self) -> dict[str, Any]:
        """JSON-able form (what a model instance process receives in its Triton config's parameters)."""
        def tensors(items: Sequence[TensorSignature]) -> list[list[Any]]:
            return [[t.name, t.dtype.str, list(t.dims)] for t in items]

        return {"name": self.name, "inputs": tensors(self.inputs), "outputs": tensors(self.outputs),
                "batch_limit": self.batch_limit, "opt_batch": self.opt_batch}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "ModelSignature":
        def tensors(items: Sequence[Sequence[Any]]) -> tuple[TensorSignature, ...]:
            return tuple(TensorSignature(name, np.dtype(dtype), tuple(int(d) for d in dims)) for name, dtype, dims in items)

        return cls(data["name"], tensors(data["inputs"]), tensors(data["outputs"]), int(data["batch_limit"]),
                   int(data.get("opt_batch", 1)))


def _opt_batch(meta: Mapping[str, Any]) -> int:
    """The profile's opt batch from an engine's meta ([min, opt, max]; 1 when none is recorded)."""
    return int((meta.get("batch") or [1, 1, 1])[1])


def _sigs(specs: Sequence[TensorSpec], drop: int) -> tuple[TensorSignature, ...]:
    return tuple(TensorSignature(s.name, np.dtype(s.dtype), tuple(int(d) for d in s.shape[drop:])) for s in specs)


_VALID_NAME = re.compile(r"^[A-Za-z0-9._-]+$")


def model_name(engine: str | os.PathLike | None, given: str | None = None, fallback: str = "model") -> str:
    """The Triton model name: `given` (checked), else the engine file's stem with other characters as '_'."""
    if given is not None:
        if not _VALID_NAME.match(given):
            raise SignatureError(f"model name {given!r}: Triton allows letters, digits, '.', '_' and '-' only")
        return given
    stem = Path(os.fspath(engine)).stem if engine is not None else fallback
    return re.sub(r"[^A-Za-z0-9._-]", "_", stem) or fallback
