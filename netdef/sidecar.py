"""The engine sidecar (`<engine>.json`): what it must hold, and the checks that keep it from being trusted blindly.

The runtime and the executor take arch, precision, input size, batch range and NMS settings from the
sidecar, so a wrong field would change results silently. Every field is therefore checked before use:

- `seal` adds `sidecar_sha256`, a checksum over every other field (canonical JSON): a hand edit is refused.
- `check_fields`: a JSON object whose known fields have the right types and agree with each other
  (batch = the inputs' profile, input_size = the input's H, W, output_order = the outputs).
- `check_engine`: the deserialized engine's I/O names, dtypes, shapes and profile are the recorded ones (a
  dynamic dim whose profile allows one value may come back as that value, as TensorRT 8.6 reports it).
- `check_definition`: the same for a definition the executor rebuilt from weights, plus the digest of its
  layers (names, types, output dtypes and shapes) recorded at build time, which also covers precision.
- `weights_for_engine`: the weights the executor is given must be the ones the engine was built from.
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import re
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

log = logging.getLogger("netdef.sidecar")

SEAL = "sidecar_sha256"
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


class SidecarError(RuntimeError):
    """A sidecar that is malformed, edited, or does not describe the engine/definition/weights at hand."""


# --- the seal ----------------------------------------------------------------------------------------------

def _canonical(meta: Mapping[str, Any]) -> bytes:
    return json.dumps({k: v for k, v in meta.items() if k != SEAL}, sort_keys=True, separators=(",", ":"),
                      allow_nan=False).encode()


def seal(meta: dict[str, Any]) -> dict[str, Any]:
    """`meta` with `sidecar_sha256` set over its other fields."""
    return {**{k: v for k, v in meta.items() if k != SEAL}, SEAL: hashlib.sha256(_canonical(meta)).hexdigest()}


def recorded_plan_sha256(data: bytes) -> str | None:
    """The plan sha256 a sidecar's bytes name (None when they are not a sidecar object)."""
    meta = json.loads(data)
    return meta.get("plan_sha256") if isinstance(meta, dict) else None


# --- field types -------------------------------------------------------------------------------------------

def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return (_is_int(v) or isinstance(v, float)) and math.isfinite(v)


def _ints(n: int | None = None, positive: bool = False, dynamic: bool = False) -> Callable[[Any], bool]:
    """A list of `n` ints; `positive`: each >= 1, or -1 where `dynamic`."""
    def ok(v: Any) -> bool:
        if not isinstance(v, list) or (n is not None and len(v) != n) or not all(_is_int(d) for d in v):
            return False
        return all(d >= 1 or (dynamic and d == -1) for d in v) if positive else True
    return ok


def _spec(v: Any) -> bool:
    return (isinstance(v, dict) and isinstance(v.get("name"), str) and isinstance(v.get("dtype"), str)
            and _ints(positive=True, dynamic=True)(v.get("shape"))
            and all(_ints(len(v["shape"]), positive=True)(v.get(k)) for k in ("min", "opt", "max")))


def _unit(v: Any) -> bool:
    return _is_number(v) and 0 <= v <= 1


def _pixels(v: Any) -> bool:
    """netdef.preprocess.PixelNormalization.as_meta(): what a uint8 input's first layers compute."""
    return (isinstance(v, dict) and all(isinstance(v.get(k), list) and len(v[k]) >= 1 for k in ("mean", "std"))
            and all(_is_number(x) for x in v["mean"]) and all(_is_number(x) and x > 0 for x in v["std"])
            and _is_number(v.get("divisor")) and v["divisor"] > 0 and v.get("channels") in ("RGB", "BGR"))


INPUT_DTYPES = {"float32": "FLOAT", "uint8": "UINT8"}  # define(input_dtype=...) -> the image input's TensorRT type


FIELDS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "plan_sha256": (lambda v: isinstance(v, str) and bool(_HEX64.match(v)), "a sha256 hex string"),
    "plan_bytes": (lambda v: _is_int(v) and v > 0, "a positive integer"),
    "trt_flavor": (lambda v: isinstance(v, str), "a string"),
    "trt_version": (lambda v: isinstance(v, str), "a string"),
    "precision": (lambda v: v in ("fp32", "fp16", "int8"), "fp32, fp16 or int8"),
    "batch": (lambda v: _ints(3, positive=True)(v) and v[0] <= v[1] <= v[2], "[min, opt, max] with 1 <= min <= opt <= max"),
    "input_size": (_ints(2, positive=True), "[H, W] of positive integers"),
    "inputs": (lambda v: isinstance(v, list) and bool(v) and all(_spec(s) for s in v),
               "a non-empty list of {name, dtype, shape, min, opt, max}"),
    "outputs": (lambda v: isinstance(v, list) and bool(v) and all(_spec(s) for s in v),
                "a non-empty list of {name, dtype, shape, min, opt, max}"),
    "output_order": (lambda v: isinstance(v, list) and all(isinstance(s, str) for s in v), "a list of names"),
    "plugins": (lambda v: isinstance(v, list) and all(isinstance(p, dict) for p in v), "a list of objects"),
    "define_options": (lambda v: isinstance(v, dict) and all(isinstance(k, str) for k in v),
                       "an object of define() options"),
    "arch": (lambda v: isinstance(v, str) and bool(v), "a non-empty string"),
    "network": (lambda v: isinstance(v, str), "a string"),
    "weights_file": (lambda v: isinstance(v, str) and bool(v) and os.path.basename(v) == v, "a file name"),
    "weights_sha256": (lambda v: isinstance(v, str) and bool(_HEX64.match(v)), "a sha256 hex string"),
    "definition_sha256": (lambda v: isinstance(v, str) and bool(_HEX64.match(v)), "a sha256 hex string"),
    SEAL: (lambda v: isinstance(v, str) and bool(_HEX64.match(v)), "a sha256 hex string"),
    "optimization_level": (lambda v: v is None or (_is_int(v) and 0 <= v <= 5), "null or 0..5"),
    "nms": (lambda v: v in ("engine", "raw"), "engine or raw"),
    "max_detections": (lambda v: _is_int(v) and v >= 1, "a positive integer"),
    "topk": (lambda v: _is_int(v) and v >= 1, "a positive integer"),
    "score_threshold": (_unit, "a number in 0..1"),
    "iou_threshold": (_unit, "a number in 0..1"),
    "mean": (lambda v: isinstance(v, list) and all(_is_number(x) for x in v), "a list of numbers"),
    "std": (lambda v: isinstance(v, list) and all(_is_number(x) and x > 0 for x in v), "a list of positive numbers"),
    "input_dtype": (lambda v: v in INPUT_DTYPES, " or ".join(INPUT_DTYPES)),
    "pixels": (_pixels, "{mean, std, divisor, channels: RGB|BGR}"),
}
REQUIRED = ("plan_sha256", "plan_bytes", "trt_flavor", "trt_version")


def check_fields(meta: Any, origin: str) -> dict[str, Any]:
    """Refuse a sidecar that is not an object, lacks a required field, has a field of the wrong type,
    contradicts itself, or was edited after it was sealed. Returns `meta`."""
    if not isinstance(meta, dict):
        raise SidecarError(f"{origin}: not a sidecar: expected a JSON object, got {type(meta).__name__}")
    problems = [f"missing field {k!r}" for k in REQUIRED if k not in meta]
    problems += [f"field {k!r} is {meta[k]!r}, expected {what}" for k, (ok, what) in FIELDS.items()
                 if k in meta and not ok(meta[k])]
    if not problems:
        problems += _contradictions(meta)
    if SEAL in meta and not problems and seal(meta)[SEAL] != meta[SEAL]:
        problems.append(f"its fields do not match its checksum {SEAL} (edited after the build?)")
    if problems:
        raise SidecarError(f"{origin}: refusing the sidecar: " + "; ".join(problems))
    return meta


def _contradictions(meta: Mapping[str, Any]) -> list[str]:
    problems = []
    inputs = meta.get("inputs") or []
    if "batch" in meta:
        for spec in inputs:
            if spec["shape"] and spec["shape"][0] == -1:
                profile = [spec["min"][0], spec["opt"][0], spec["max"][0]]
                if profile != list(meta["batch"]):
                    problems.append(f"batch {meta['batch']} but input '{spec['name']}' has the batch profile {profile}")
    if "input_size" in meta and inputs and len(inputs[0]["shape"]) == 4:
        hw = inputs[0]["shape"][2:4]
        if hw != list(meta["input_size"]):
            problems.append(f"input_size {meta['input_size']} but input '{inputs[0]['name']}' is {hw}")
    if "input_dtype" in meta and inputs:
        want = INPUT_DTYPES[meta["input_dtype"]]
        if inputs[0]["dtype"] not in (want, "HALF" if want == "FLOAT" else want):
            problems.append(f"input_dtype {meta['input_dtype']} but input '{inputs[0]['name']}' is "
                            f"{inputs[0]['dtype']}")
        if meta["input_dtype"] == "uint8" and "pixels" not in meta:
            problems.append("input_dtype uint8 without 'pixels' (the normalization the engine applies)")
    if "output_order" in meta and "outputs" in meta:
        names = [s["name"] for s in meta["outputs"]]
        if sorted(names) != sorted(meta["output_order"]):
            problems.append(f"output_order {meta['output_order']} but the outputs are {names}")
    return problems


# --- against the engine and the rebuilt definition ---------------------------------------------------------

def enum_name(value: Any) -> str:
    """A TensorRT enum member's name ("FLOAT", "CONVOLUTION"), as the sidecar records it."""
    return getattr(value, "name", str(value)).split(".")[-1]


def _same_shape(spec: Mapping[str, Any], shape: list[int]) -> bool:
    """`shape` is the recorded one, where a dynamic dim (-1) may come back as the one value its profile allows
    (min == max): TensorRT 8.6 reports such a dim of a batch (1, 1, 1) engine as static."""
    recorded = list(spec["shape"])
    if len(recorded) != len(shape):
        return False
    return all(r == d or (r == -1 and spec["min"][i] == spec["max"][i] == d)
               for i, (r, d) in enumerate(zip(recorded, shape)))


def _compare_io(meta: Mapping[str, Any], actual: list[dict[str, Any]], what: str, origin: str) -> None:
    recorded = {s["name"]: (s, io) for io in ("inputs", "outputs") for s in meta.get(io) or []}
    if not recorded:
        return
    problems = []
    seen = set()
    for t in actual:
        name = t["name"]
        seen.add(name)
        if name not in recorded:
            problems.append(f"{what} has {t['io'][:-1]} '{name}', the sidecar does not")
            continue
        spec, io = recorded[name]
        if io != t["io"]:
            problems.append(f"'{name}' is an {t['io'][:-1]} of the {what}, the sidecar says {io[:-1]}")
        if spec["dtype"] != t["dtype"]:
            problems.append(f"'{name}' is {t['dtype']} in the {what}, {spec['dtype']} in the sidecar")
        if not _same_shape(spec, t["shape"]):
            problems.append(f"'{name}' has shape {list(t['shape'])} in the {what}, {spec['shape']} in the sidecar")
        for key in ("min", "opt", "max"):
            if key in t and list(spec[key]) != list(t[key]):
                problems.append(f"'{name}' profile {key} is {list(t[key])} in the {what}, {spec[key]} in the sidecar")
    problems += [f"the sidecar has '{n}', the {what} does not" for n in recorded if n not in seen]
    if problems:
        raise SidecarError(f"{origin}: the sidecar does not describe this {what}: " + "; ".join(problems))


def check_engine(meta: Mapping[str, Any], engine: Any, origin: str) -> None:
    """The deserialized ICudaEngine's I/O (names, dtypes, shapes, profile 0) must be the sidecar's."""
    from netdef import trt as shim

    trt = shim.binding()
    actual = []
    for i in range(engine.num_io_tensors):
        name = engine.get_tensor_name(i)
        is_input = engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT
        shape = [int(d) for d in engine.get_tensor_shape(name)]
        t = {"name": name, "io": "inputs" if is_input else "outputs", "dtype": enum_name(engine.get_tensor_dtype(name)),
             "shape": shape}
        if is_input and -1 in shape:
            t.update(zip(("min", "opt", "max"), ([int(d) for d in s] for s in engine.get_tensor_profile_shape(name, 0))))
        actual.append(t)
    _compare_io(meta, actual, "engine", origin)


def definition_digest(definition: Any, skip_types: Iterable[Any] = (), names_and_dtypes: bool = True,
                      skip_names: Iterable[str] = ()) -> str:
    """sha256 over the definition's inputs and layers: layer name, type, and its outputs' names, dtypes and shapes.

    `skip_types`, `skip_names`: layer types and layers left out; `names_and_dtypes=False`: output shapes only
    (the calibration cache compares the FP32 definition it was made on with the INT8 one being built:
    netdef.quantize.cache)."""
    skip, skip_layers = set(skip_types), set(skip_names)

    def tensor(t: Any) -> str:
        return f"{t.name} {enum_name(t.dtype)} {tuple(t.shape)}" if names_and_dtypes else str(tuple(t.shape))

    h = hashlib.sha256()
    for i in range(definition.num_inputs):
        t = definition.get_input(i)
        h.update(f"input {t.name} {tensor(t)}\n".encode())
    for i in range(definition.num_layers):
        layer = definition.get_layer(i)
        if layer.type not in skip and layer.name not in skip_layers:
            outs = [tensor(layer.get_output(k)) for k in range(layer.num_outputs)]
            h.update(f"{layer.name} {enum_name(layer.type)} {outs}\n".encode())
    return h.hexdigest()


def check_definition(meta: Mapping[str, Any], definition: Any, origin: str, same_precision: bool = True) -> None:
    """A definition rebuilt for the executor must be the one the engine was built from: its I/O as recorded
    and, where the sidecar was written by this binding and the precision is the recorded one, the same
    layers (digest)."""
    from netdef import trt as shim

    definition = getattr(definition, "definition", definition)
    actual = []
    for tensors, io in (([definition.get_input(i) for i in range(definition.num_inputs)], "inputs"),
                        ([definition.get_output(i) for i in range(definition.num_outputs)], "outputs")):
        actual += [{"name": t.name, "io": io, "dtype": enum_name(t.dtype), "shape": [int(d) for d in t.shape]}
                   for t in tensors]
    _compare_io(meta, actual, "rebuilt definition", origin)
    feat = shim.features()
    recorded = meta.get("definition_sha256")
    if (recorded and same_precision and meta.get("trt_flavor") == feat.flavor
            and meta.get("trt_version") == feat.version and definition_digest(definition) != recorded):
        raise SidecarError(f"{origin}: the rebuilt definition differs from the one the engine was built from "
                           "(layers, precision or input size): the sidecar or the weights do not belong to it")


# --- the weights an engine was built from ------------------------------------------------------------------

def weights_for_engine(engine: str | os.PathLike, meta: Mapping[str, Any],
                       weights: str | os.PathLike | None) -> str | os.PathLike | None:
    """The weights the executor may rebuild `engine` from.

    Given weights must have the sha256 the sidecar records; without them, the recorded file beside the
    engine (or in the current folder) is used when its sha256 matches, and its absence is an error.
    Sidecars without a weights sha256 (engines saved without a weights file) leave `weights` as given.
    """
    from netdef.engine import sha256_file

    recorded, name = meta.get("weights_sha256"), meta.get("weights_file")
    if not recorded:
        return weights
    if weights is not None:
        actual = sha256_file(weights)
        if actual != recorded:
            raise SidecarError(
                f"{os.fspath(weights)}: these are not the weights {os.fspath(engine)} was built from (sha256 "
                f"{actual[:12]}..., the sidecar records {name or 'a file'} with {recorded[:12]}...): the executor "
                "would run a different model. Pass the weights file the engine was built from")
        return weights
    candidates = [Path(engine).parent / name, Path(name)] if name else []
    for path in candidates:
        if path.is_file():
            if sha256_file(path) == recorded:
                log.info("%s: using the weights it was built from, %s", engine, path)
                return path
            raise SidecarError(f"{path}: has another sha256 than the weights {os.fspath(engine)} was built from; "
                               "pass --weights with the right file")
    raise SidecarError(f"--executor netdef needs --weights W.h5: {os.fspath(engine)} was built from "
                       f"{name or 'a weights file'} (sha256 {recorded[:12]}...), found neither beside it nor in the "
                       "current folder")
