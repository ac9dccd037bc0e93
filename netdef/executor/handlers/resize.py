"""Resize (nearest / linear / cubic) with TensorRT's coordinate transformations, rounding and single-pixel selector.

Computed separably per resized dim from explicit source coordinates, so each mode is exactly the formula
TensorRT documents rather than whichever torch interpolate mode is closest.
"""
from __future__ import annotations

import math
from typing import Any

import torch

from netdef.executor.context import LayerContext, enum_name
from netdef.executor.registry import handles

_ROUNDING = {
    "FLOOR": torch.floor,
    "CEIL": torch.ceil,
    "HALF_UP": lambda x: torch.floor(x + 0.5),
    "HALF_DOWN": lambda x: torch.ceil(x - 0.5),
}


def _source_coords(out_size: int, in_size: int, scale: float, transform: str, selector: str,
                   device: torch.device) -> torch.Tensor:
    o = torch.arange(out_size, dtype=torch.float64, device=device)
    if out_size == 1 and selector == "UPPER":
        return torch.zeros(1, dtype=torch.float64, device=device)
    if transform == "ALIGN_CORNERS":
        return o * ((in_size - 1) / (out_size - 1)) if out_size > 1 else torch.zeros_like(o)
    if transform == "ASYMMETRIC":
        return o / scale
    return (o + 0.5) / scale - 0.5  # HALF_PIXEL


@handles("RESIZE", interface="IResizeLayer")
def resize(layer: Any, ctx: LayerContext) -> Any:
    mode = enum_name(layer.resize_mode)
    transform = enum_name(layer.coordinate_transformation)
    rounding = enum_name(layer.nearest_rounding)
    selector = enum_name(layer.selector_for_single_pixel)
    ctx.require(mode in ("NEAREST", "LINEAR", "CUBIC"), "resize_mode", mode)
    ctx.require(transform in ("ALIGN_CORNERS", "ASYMMETRIC", "HALF_PIXEL"), "coordinate_transformation", transform)
    ctx.require(rounding in _ROUNDING, "nearest_rounding", rounding)
    dynamic = ctx.has_input(1)
    scales_attr = [] if dynamic else list(layer.scales or [])
    shape_attr = None if dynamic or scales_attr else list(layer.get_output(0).shape)
    round_fn = _ROUNDING[rounding]
    if mode == "CUBIC":
        ctx.require(not bool(layer.exclude_outside), "exclude_outside", True)
    cubic_a = float(layer.cubic_coeff) if mode == "CUBIC" else 0.0

    def sizes_and_scales(x: torch.Tensor, spec: torch.Tensor | None) -> tuple[list[int], list[float]]:
        if spec is not None and spec.is_floating_point():
            scales = spec.reshape(-1).tolist()
        elif spec is not None:
            sizes = spec.reshape(-1).tolist()
            return sizes, [o / i for o, i in zip(sizes, x.shape)]
        elif scales_attr:
            scales = scales_attr
        else:
            sizes = [s if s >= 0 else x.shape[d] for d, s in enumerate(shape_attr)]
            return sizes, [o / i for o, i in zip(sizes, x.shape)]
        return [int(math.floor(i * s)) for i, s in zip(x.shape, scales)], scales

    def run(inputs: list) -> torch.Tensor:
        x = inputs[0]
        sizes, scales = sizes_and_scales(x, inputs[1] if dynamic else None)
        for d, (out_size, in_size, scale) in enumerate(zip(sizes, x.shape, scales)):
            if out_size == in_size and scale == 1:
                continue
            coords = _source_coords(out_size, in_size, scale, transform, selector, x.device)
            if mode == "NEAREST":
                idx = round_fn(coords).clamp(0, in_size - 1).long()
                x = x.index_select(d, idx)
                continue
            view = [1] * x.dim()
            view[d] = out_size
            if mode == "CUBIC":
                x = _cubic(x, d, coords, in_size, cubic_a, view)
                continue
            coords = coords.clamp(0, in_size - 1)
            lo = coords.floor().long()
            hi = (lo + 1).clamp(max=in_size - 1)
            w = (coords - lo).to(x.dtype).reshape(view)
            x = x.index_select(d, lo) * (1 - w) + x.index_select(d, hi) * w
        return x

    return run


def _cubic_weight(distance: torch.Tensor, a: float) -> torch.Tensor:
    """Keys' cubic convolution kernel with parameter a (TensorRT's cubic_coeff; torch uses -0.75)."""
    d = distance.abs()
    near = ((a + 2) * d - (a + 3)) * d * d + 1
    far = ((a * d - 5 * a) * d + 8 * a) * d - 4 * a
    return torch.where(d <= 1, near, torch.where(d < 2, far, torch.zeros_like(d)))


def _cubic(x: torch.Tensor, d: int, coords: torch.Tensor, in_size: int, a: float, view: list[int]) -> torch.Tensor:
    """Four taps around each source coordinate (not clamped), reading clamped indices: the border repeats."""
    base = coords.floor()
    result = None
    for k in (-1, 0, 1, 2):
        tap = base + k
        w = _cubic_weight(coords - tap, a).to(x.dtype).reshape(view)
        term = x.index_select(d, tap.clamp(0, in_size - 1).long()) * w
        result = term if result is None else result + term
    return result
