"""Scale layer: (x * scale + shift) ** power per tensor, per channel or per element."""
from __future__ import annotations

from typing import Any

import torch

from netdef.executor.context import LayerContext, enum_name
from netdef.executor.registry import handles


@handles("SCALE")
def scale(layer: Any, ctx: LayerContext) -> Any:
    mode = enum_name(layer.mode)
    axis = int(layer.channel_axis)
    rank = ctx.input_rank(0)
    ctx.require(mode in ("UNIFORM", "CHANNEL", "ELEMENTWISE"), "mode", mode)
    in_shape = tuple(ctx.input(0).shape)

    def param(values: Any) -> torch.Tensor | None:
        if values is None or values.size == 0:
            return None
        if mode == "UNIFORM":
            ctx.require(values.size == 1, "UNIFORM weights count", values.size)
            return ctx.tensor(values, ())
        if mode == "CHANNEL":
            # channels sit on channel_axis; every later dim broadcasts
            return ctx.tensor(values, (values.size,) + (1,) * (rank - axis - 1))
        per_element = in_shape[axis:]
        ctx.require(all(d > 0 for d in per_element), "ELEMENTWISE on dynamic dims", per_element)
        return ctx.tensor(values, per_element)

    s, b, p = param(layer.scale), param(layer.shift), param(layer.power)

    def run(inputs: list) -> torch.Tensor:
        x = inputs[0]
        if s is not None:
            x = x * s
        if b is not None:
            x = x + b
        if p is not None:
            x = x ** p
        return x

    return run
