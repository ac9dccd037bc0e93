"""The calibration cache: JSON with tensor name -> amax, the method, sample count and a fingerprint.

The fingerprint ties a cache to one network definition and one weights file:
sha256 over the definition's layers (name, type, output shapes; casts and identities skipped so
the FP32 definition that was calibrated and the INT8 one being built agree) plus the weights' sha256.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from netdef import trt as shim
from netdef.atomic import write_text_atomic

FORMAT = "netdef-calibration"
VERSION = 1


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

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.definition_sha256, self.weights_sha256)

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
                f"{origin}: does not match this network: {'; '.join(problems)} (cache fingerprint "
                f"{self.fingerprint[:12]}, network {fingerprint(definition_sha256, weights_sha256)[:12]}). "
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
        raise CalibrationCacheError(f"{path}: cache version {d.get('version')}, this netdef reads {VERSION}")
    try:
        tensors = {str(k): float(v) for k, v in d["tensors"].items()}
        cache = CalibrationCache(tensors, str(d["algorithm"]), int(d["num_samples"]), str(d["definition_sha256"]),
                                 d.get("weights_sha256"), d.get("arch"), dict(d.get("meta") or {}))
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise CalibrationCacheError(f"{path}: malformed calibration cache ({exc!r})") from None
    bad = [k for k, v in tensors.items() if not np.isfinite(v) or v < 0]
    if bad:
        raise CalibrationCacheError(f"{path}: invalid amax for tensor(s) {bad[:5]}")
    if d.get("fingerprint") not in (None, cache.fingerprint):
        raise CalibrationCacheError(f"{path}: fingerprint field does not match its contents (edited by hand?)")
    return cache


def fingerprint(definition_sha256: str, weights_sha256: str | None) -> str:
    return hashlib.sha256(f"{definition_sha256}:{weights_sha256 or '-'}".encode()).hexdigest()


def definition_digest(definition: Any) -> str:
    """sha256 over (name, type, output shapes) of every layer but casts, identities and Q/DQ."""
    trt = shim.binding()
    ignored = {trt.LayerType.CAST, trt.LayerType.IDENTITY, trt.LayerType.QUANTIZE, trt.LayerType.DEQUANTIZE}
    h = hashlib.sha256()
    for i in range(definition.num_inputs):
        t = definition.get_input(i)
        h.update(f"input {t.name} {tuple(t.shape)}\n".encode())
    for i in range(definition.num_layers):
        layer = definition.get_layer(i)
        if layer.type in ignored:
            continue
        shapes = [tuple(layer.get_output(k).shape) for k in range(layer.num_outputs)]
        h.update(f"{layer.name} {layer.type.name} {shapes}\n".encode())
    return h.hexdigest()


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
              weights_sha256: str | None = None, arch: str | None = None, **meta: Any) -> CalibrationCache:
    """A cache for `definition` (the FP32 one that was calibrated); `weights_sha256` from `weights_digest`."""
    return CalibrationCache({k: float(v) for k, v in amax.items()}, algorithm, int(num_samples),
                            definition_digest(definition), weights_sha256, arch,
                            {"created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **meta})
