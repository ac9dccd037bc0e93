"""The calibration cache: JSON with tensor name -> amax, scale groups, the method, sample count and a fingerprint.

`tensors` holds each observed tensor's own amax; `groups` the scale groups of the definition (tensors TensorRT
moves one quantize across: concatenation, max pooling, ... docs/int8.md R4-R6), each with the amax of its
members' merged histogram. An INT8 definition takes a grouped tensor's group amax (`resolved_amax`).
Two digests guard it:
- the identity ties a cache to one network definition and one weights file: sha256 over the definition's
  layers (name, type, output shapes; casts, identities, constants and Q/DQ skipped so the FP32 definition
  that was calibrated and the INT8 one being built agree) plus the weights' sha256 (`check`);
- the fingerprint covers the identity and every value (method, sample count, each amax and group exactly), so
  a cache whose ranges were edited is refused on load.
Every amax must be finite and positive (a tensor that was all zeros is stored as the smallest range,
MIN_AMAX, which gives the scale TensorRT accepts) and give a float32 scale.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from netdef import trt as shim
from netdef.atomic import write_text_atomic

FORMAT = "netdef-calibration"
# 2: the fingerprint covers the values; 3: scale groups; 4: the digest left out the inside of Mish (two forms then);
# 5: it covers it again (one form)
VERSION = 5
MIN_AMAX = 127 * 1e-12  # the range of an all-zero tensor (netdef.quantize.calibrators.scale_from_amax's floor)
MAX_AMAX = float(np.finfo(np.float32).max)


class CalibrationCacheError(ValueError):
    """A cache that cannot be read or does not belong to this network/weights."""


@dataclass
class CalibrationCache:
    amax: dict[str, float]
    algorithm: str
    num_samples: int
    definition_sha256: str
    weights_sha256: str | None = None
    arch: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    groups: list[dict[str, Any]] = field(default_factory=list)  # {"members": [names], "amax": group amax}

    @property
    def identity(self) -> str:
        """What the cache belongs to: the definition and the weights."""
        return identity(self.definition_sha256, self.weights_sha256)

    @property
    def fingerprint(self) -> str:
        """The identity and every value of the cache."""
        h = hashlib.sha256(f"{self.identity}:{self.algorithm}:{self.num_samples}\n".encode())
        for name in sorted(self.amax):
            h.update(f"{name}={float(self.amax[name]).hex()}\n".encode())
        for group in self.groups:
            h.update(f"group {','.join(group['members'])}={float(group['amax']).hex()}\n".encode())
        return h.hexdigest()

    def resolved_amax(self) -> dict[str, float]:
        """amax per tensor as an INT8 definition quantizes it: a grouped tensor takes its group's amax."""
        table = dict(self.amax)
        for group in self.groups:
            table.update(dict.fromkeys(group["members"], float(group["amax"])))
        return table

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d = {"format": FORMAT, "version": VERSION, "fingerprint": self.fingerprint, **d}
        d["tensors"] = d.pop("amax")
        return d

    def save(self, path: str | os.PathLike) -> None:
        write_text_atomic(path, json.dumps(self.to_json(), indent=1, sort_keys=False) + "\n")

    def check(self, definition_sha256: str, weights_sha256: str | None, origin: str = "calibration cache") -> None:
        """Refuse a cache made for another definition or other weights."""
        problems = []
        if self.definition_sha256 != definition_sha256:
            problems.append("the network definition differs (architecture, input size or layer names changed)")
        if weights_sha256 and self.weights_sha256 and self.weights_sha256 != weights_sha256:
            problems.append("the weights differ")
        if problems:
            raise CalibrationCacheError(
                f"{origin}: does not match this network: {'; '.join(problems)} (cache made for "
                f"{self.identity[:12]}, network {identity(definition_sha256, weights_sha256)[:12]}). "
                "Recalibrate: `netdef calibrate ... --recalibrate` or calibrate(..., recalibrate=True).")


def load_cache(path: str | os.PathLike) -> CalibrationCache:
    path = Path(path)
    try:
        d = json.loads(path.read_text())
    except FileNotFoundError:
        raise CalibrationCacheError(f"{path}: calibration cache not found") from None
    except (OSError, ValueError) as exc:
        raise CalibrationCacheError(f"{path}: not a readable calibration cache ({exc})") from None
    if not isinstance(d, dict) or d.get("format") != FORMAT:
        raise CalibrationCacheError(f"{path}: not a netdef calibration cache (format {d.get('format')!r})"
                                    if isinstance(d, dict) else f"{path}: not a netdef calibration cache")
    if d.get("version") != VERSION:
        raise CalibrationCacheError(f"{path}: cache version {d.get('version')}, this netdef reads {VERSION}: "
                                    "calibrate again (`netdef calibrate ... --recalibrate`)")
    try:
        tensors = {str(k): _number(v) for k, v in d["tensors"].items()}
        groups = [{"members": [str(m) for m in g["members"]], "amax": _number(g["amax"])} for g in d.get("groups", [])]
        cache = CalibrationCache(tensors, str(d["algorithm"]), int(d["num_samples"]), str(d["definition_sha256"]),
                                 d.get("weights_sha256"), d.get("arch"), dict(d.get("meta") or {}), groups)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise CalibrationCacheError(f"{path}: malformed calibration cache ({exc!r})") from None
    check_amax(tensors, str(path))
    check_amax({"+".join(g["members"]): g["amax"] for g in groups}, f"{path} (scale groups)")
    if d.get("fingerprint") != cache.fingerprint:
        raise CalibrationCacheError(f"{path}: fingerprint field does not match its contents (edited by hand?): "
                                    "calibrate again (`netdef calibrate ... --recalibrate`)")
    return cache


def _number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"amax {value!r} is not a number")
    return float(value)


def check_amax(amax: Mapping[str, float], origin: str) -> None:
    """Refuse ranges that are not finite, not positive, or too large for a float32 scale (names them)."""
    bad = {k: v for k, v in amax.items() if not (math.isfinite(v) and MIN_AMAX <= v <= MAX_AMAX)}
    if bad:
        shown = ", ".join(f"{k}={v!r}" for k, v in list(bad.items())[:5])
        raise CalibrationCacheError(f"{origin}: invalid amax for {len(bad)} tensor(s): {shown} (expected finite "
                                    f"ranges in [{MIN_AMAX:g}, {MAX_AMAX:g}])")


def identity(definition_sha256: str, weights_sha256: str | None) -> str:
    return hashlib.sha256(f"{definition_sha256}:{weights_sha256 or '-'}".encode()).hexdigest()


def definition_digest(definition: Any) -> str:
    """sha256 over names and output shapes of the definition's layers; casts, identities, Q/DQ and constants (the
    kernels and scales quantization adds, a matrix multiply's weights) and a uint8 input's normalization left out,
    so the FP32 float-input definition that was calibrated and the INT8 one being built agree.
    `definition`: a netdef Network or a TensorRT definition."""
    from netdef.quantize.placement import Graph
    from netdef.sidecar import definition_digest as digest

    trt = shim.binding()
    graph = Graph(definition)
    skip_types = (trt.LayerType.CAST, trt.LayerType.IDENTITY, trt.LayerType.QUANTIZE, trt.LayerType.DEQUANTIZE,
                  trt.LayerType.CONSTANT)
    return digest(graph.definition, skip_types=skip_types, names_and_dtypes=False,
                  skip_names={graph.layers[i].name for i in graph.pixel_layers})


def weights_digest(weights: Any) -> str | None:
    """sha256 of a weights file (a path or an object with `.path`), or of an in-memory mapping's arrays."""
    from netdef.engine import sha256_file

    if weights is None:
        return None
    if isinstance(weights, (str, os.PathLike)):
        return sha256_file(weights)
    path = getattr(weights, "path", None)
    if path is not None and os.path.exists(path):
        return sha256_file(path)
    if isinstance(weights, Mapping):
        h = hashlib.sha256()
        for key in sorted(weights):
            arr = np.ascontiguousarray(np.asarray(weights[key]))
            h.update(f"{key} {arr.dtype} {arr.shape}\n".encode())
            h.update(arr.tobytes())
        return h.hexdigest()
    raise TypeError(f"weights: expected a path or a mapping, got {type(weights).__name__}")


def new_cache(amax: Mapping[str, float], algorithm: str, num_samples: int, definition: Any,
              weights_sha256: str | None = None, arch: str | None = None,
              groups: Sequence[tuple[Sequence[str], float]] = (), **meta: Any) -> CalibrationCache:
    """A cache for `definition` (the FP32 Network or TensorRT definition that was calibrated); `weights_sha256`
    from `weights_digest`; `groups`: (members, group amax) per scale group.

    Ranges of all-zero tensors (amax 0) are stored as MIN_AMAX, which quantizes the same way."""
    def stored(v: float) -> float:
        return max(float(v), MIN_AMAX) if float(v) == 0 else float(v)

    table = {k: stored(v) for k, v in amax.items()}
    check_amax(table, "calibration")
    grouped = [{"members": sorted(members), "amax": stored(value)} for members, value in groups]
    check_amax({"+".join(g["members"]): g["amax"] for g in grouped}, "calibration (scale groups)")
    return CalibrationCache(table, algorithm, int(num_samples),
                            definition_digest(definition), weights_sha256, arch,
                            {"created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **meta}, grouped)
