"""Checking what a caller passes to `infer` against the I/O specs, the same way for every backend.

All problems of one call (missing, unexpected, wrong dtype, wrong shape, batch outside the profile) are
reported together in one `InputError`, each naming the input.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from netdef.runtime.buffers import DeviceArray, TensorSpec


class InputError(ValueError):
    """Inputs that do not fit the engine/definition; the message names every offending input."""


def _shape_problem(spec: TensorSpec, shape: tuple[int, ...]) -> str | None:
    expected = "[" + ",".join("N" if d < 0 else str(d) for d in spec.shape) + "]"
    if len(shape) != len(spec.shape):
        return f"input '{spec.name}': shape {shape} has rank {len(shape)}, expected {expected}"
    for axis, (got, want) in enumerate(zip(shape, spec.shape)):
        if want >= 0 and got != want:
            return f"input '{spec.name}': shape {shape} does not match {expected} (dim {axis} is {got}, expected {want})"
        if want < 0 and not spec.min_shape[axis] <= got <= spec.max_shape[axis]:
            return (f"input '{spec.name}': dim {axis} is {got}, outside the profile range "
                    f"{spec.min_shape[axis]}..{spec.max_shape[axis]} (shape {shape})")
    return None


def _uint8_hint(spec: TensorSpec, dtype: np.dtype) -> str:
    """Why float never goes into a uint8 input: it holds raw pixels the engine normalizes (input_dtype="uint8")."""
    if spec.dtype != np.uint8 or dtype.kind != "f":
        return ""
    return (": it takes raw 8-bit pixels 0..255 that the engine normalizes itself; pass the uint8 image, not the "
            "normalized float input")


def _host_array(spec: TensorSpec, value: Any) -> tuple[np.ndarray | None, str | None]:
    try:
        array = np.asarray(value)
    except Exception as exc:  # e.g. a CUDA torch tensor without the interface, a ragged list
        return None, f"input '{spec.name}': cannot be read as an array ({exc})"
    want = spec.dtype
    if array.dtype == want:
        return np.ascontiguousarray(array), None
    if want.kind == "f" and array.dtype.kind == "f":
        return np.ascontiguousarray(array, dtype=want), None  # float64 -> float32/16 is what callers mean
    if want.kind in "iu" and array.dtype.kind in "iub":
        info = np.iinfo(want)
        if array.size and (array.min() < info.min or array.max() > info.max):
            return None, f"input '{spec.name}': values exceed the range of {want.name}"
        return np.ascontiguousarray(array, dtype=want), None
    if want.kind == "b" and array.dtype.kind == "b":
        return np.ascontiguousarray(array, dtype=want), None
    return None, (f"input '{spec.name}': dtype {array.dtype.name} cannot be fed to a {want.name} input"
                  + (_uint8_hint(spec, array.dtype) or " (convert it explicitly)"))


def check_inputs(specs: Sequence[TensorSpec], inputs: Any, where: str) -> dict[str, np.ndarray | DeviceArray]:
    """{input name: contiguous host array in the spec dtype | DeviceArray}, in spec order.

    `inputs` is a mapping by name, or one array when there is exactly one input.
    """
    names = [s.name for s in specs]
    if not isinstance(inputs, Mapping):
        if len(specs) != 1:
            raise InputError(f"{where} has {len(specs)} inputs ({', '.join(names)}): pass a dict by input name")
        inputs = {specs[0].name: inputs}
    problems = [f"missing input '{s.name}' ({s.describe()})" for s in specs if s.name not in inputs]
    problems += [f"unexpected input '{n}' (inputs are: {', '.join(names)})" for n in inputs if n not in names]
    checked: dict[str, np.ndarray | DeviceArray] = {}
    for spec in specs:
        if spec.name not in inputs:
            continue
        value = inputs[spec.name]
        device = DeviceArray.wrap(value)
        if device is not None:
            if device.dtype != spec.dtype:
                problems.append(f"input '{spec.name}': device array dtype {device.dtype.name}, expected "
                                f"{spec.dtype.name} (device arrays are used in place, never converted)"
                                + _uint8_hint(spec, device.dtype))
                continue
            shape, array = device.shape, device
        else:
            host, problem = _host_array(spec, value)
            if problem:
                problems.append(problem)
                continue
            shape, array = host.shape, host
        problem = _shape_problem(spec, tuple(shape))
        if problem:
            problems.append(problem)
        else:
            checked[spec.name] = array
    if problems:
        raise InputError(f"{where}: " + "; ".join(problems))
    return checked


def random_array(shape: Sequence[int], dtype: Any, rng: np.random.Generator) -> np.ndarray:
    """Benchmark data for an input: standard normal floats, pixels 0..255 for uint8 (an image input), else 0/1."""
    dtype = np.dtype(dtype)
    if dtype.kind == "f":
        return rng.standard_normal(tuple(shape)).astype(dtype)
    return rng.integers(0, 256 if dtype == np.uint8 else 2, tuple(shape)).astype(dtype)


def check_output_array(spec: TensorSpec, value: Any, shape: tuple[int, ...], where: str) -> Any:
    """A caller-provided output array must have the output's real shape and dtype."""
    device = DeviceArray.wrap(value)
    got_shape = device.shape if device is not None else tuple(np.shape(value))
    got_dtype = device.dtype if device is not None else np.asarray(value).dtype
    if got_shape != tuple(shape) or got_dtype != spec.dtype:
        raise InputError(f"{where}: out['{spec.name}'] is {got_dtype.name}{list(got_shape)}, "
                         f"the output is {spec.dtype.name}{list(shape)}")
    return device if device is not None else value
