"""INT8 quantize / dequantize with TensorRT's exact semantics.

quantize:   q = clamp(round_half_to_even(x / scale) + zero_point, -128, 127)
dequantize: x = (q - zero_point) * scale
`scale` is a scalar (per tensor) or a 1-D tensor along `axis` (per channel). Block quantization and
FP8/INT4 targets are reported as unsupported.
"""
from __future__ import annotations

from typing import Any

import torch

from netdef.executor.context import LayerContext, enum_name
from netdef.executor.registry import handles

_INT8_RANGE = (-128, 127)


def _check(layer: Any, ctx: LayerContext, int_side: str) -> int:
    try:
        block = getattr(layer, "block_shape", None)
    except RuntimeError:  # RTX raises "Could not get block_shape" when no block quantization is set
        block = None
    if block is not None and len(tuple(block)) and any(int(b) not in (0, 1) for b in tuple(block)):
        ctx.unsupported("block_shape", tuple(block))
    t = ctx.input(0) if int_side == "input" else layer.get_output(0)
    ctx.require(enum_name(t.dtype) == "INT8", f"{int_side} data type", enum_name(t.dtype))
    return int(layer.axis)


def _broadcast(param: torch.Tensor | None, x: torch.Tensor, axis: int) -> torch.Tensor | None:
    """A scalar stays a scalar; a per-channel vector is shaped to broadcast along `axis`."""
    if param is None or param.numel() == 1:
        return None if param is None else param.reshape(())
    shape = [1] * x.dim()
    shape[axis % x.dim()] = param.numel()
    return param.reshape(shape)


@handles("QUANTIZE")
def quantize(layer: Any, ctx: LayerContext) -> Any:
    axis = _check(layer, ctx, "output")
    lo, hi = _INT8_RANGE

    def run(inputs: list) -> torch.Tensor:
        x = inputs[0]
        scale = _broadcast(inputs[1].to(x.dtype), x, axis)
        zero = _broadcast(inputs[2] if len(inputs) > 2 else None, x, axis)
        q = torch.round(x / scale)  # torch.round rounds half to even
        if zero is not None:
            q = q + zero.to(q.dtype)
        return q.clamp(lo, hi).to(torch.int8)

    return run


@handles("DEQUANTIZE")
def dequantize(layer: Any, ctx: LayerContext) -> Any:
    axis = _check(layer, ctx, "input")
    dtype = ctx.compute_dtype

    def run(inputs: list) -> torch.Tensor:
        q = inputs[0].to(dtype)
        scale = _broadcast(inputs[1].to(dtype), q, axis)
        zero = _broadcast(inputs[2] if len(inputs) > 2 else None, q, axis)
        if zero is not None:
            q = q - zero.to(dtype)
        return q * scale

    return run
