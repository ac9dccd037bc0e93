"""Reduce, softmax and top-k over TensorRT axes bitmasks."""
from __future__ import annotations

from typing import Any

import torch

from netdef.executor.context import LayerContext, axes_from_mask, enum_name
from netdef.executor.registry import handles


@handles("REDUCE")
def reduce(layer: Any, ctx: LayerContext) -> Any:
    op = enum_name(layer.op)
    dims = axes_from_mask(int(layer.axes), ctx.input_rank(0))
    keep = bool(layer.keep_dims)
    ctx.require(op in ("SUM", "PROD", "MAX", "MIN", "AVG"), "op", op)

    def run(inputs: list) -> torch.Tensor:
        x = inputs[0]
        if op == "SUM":
            return x.sum(dims, keepdim=keep)
        if op == "AVG":
            return x.mean(dims, keepdim=keep)
        if op == "MAX":
            return x.amax(dims, keepdim=keep)
        if op == "MIN":
            return x.amin(dims, keepdim=keep)
        for d in sorted(dims, reverse=True):
            x = x.prod(d, keepdim=keep)
        return x

    return run


@handles("SOFTMAX")
def softmax(layer: Any, ctx: LayerContext) -> Any:
    dims = axes_from_mask(int(layer.axes), ctx.input_rank(0))
    ctx.require(len(dims) == 1, "axes", int(layer.axes))
    dim = dims[0]
    return lambda inputs: torch.softmax(inputs[0], dim)


@handles("TOPK")
def topk(layer: Any, ctx: LayerContext) -> Any:
    op = enum_name(layer.op)
    dims = axes_from_mask(int(layer.axes), ctx.input_rank(0))
    ctx.require(len(dims) == 1, "axes", int(layer.axes))
    static_k = int(layer.k)
    dim = dims[0]

    def run(inputs: list) -> list:
        k = int(inputs[1].reshape(())) if len(inputs) > 1 and inputs[1] is not None else static_k
        values, indices = torch.topk(inputs[0], k, dim, largest=op == "MAX", sorted=True)
        return [values, indices]

    return run
