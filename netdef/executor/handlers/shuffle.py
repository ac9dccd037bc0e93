"""Shuffle (transpose, reshape, transpose), squeeze, unsqueeze and concatenation."""
from __future__ import annotations

from typing import Any

import torch

from netdef.executor.context import LayerContext
from netdef.executor.registry import handles


def _reshape_target(dims: list[int], shape: tuple[int, ...], zero_is_placeholder: bool) -> list[int]:
    """TensorRT reshape dims: 0 copies the input dim (when placeholders are on), -1 is inferred."""
    return [shape[i] if d == 0 and zero_is_placeholder else d for i, d in enumerate(dims)]


@handles("SHUFFLE")
def shuffle(layer: Any, ctx: LayerContext) -> Any:
    rank = ctx.input_rank(0)
    first = list(layer.first_transpose)[:rank]  # the binding returns all 8 slots of the permutation
    first = None if first == list(range(rank)) else first
    dynamic_dims = ctx.has_input(1)
    static_dims = None if dynamic_dims or layer.reshape_dims is None else list(layer.reshape_dims)
    out_rank = len(tuple(layer.get_output(0).shape))
    second = list(layer.second_transpose)[:out_rank]
    second = None if second == list(range(out_rank)) else second
    placeholder = bool(layer.zero_is_placeholder)

    def run(inputs: list) -> torch.Tensor:
        x = inputs[0]
        if first is not None:
            x = x.permute(first)
        dims = inputs[1].tolist() if dynamic_dims else static_dims
        if dims is not None:
            x = x.reshape(_reshape_target(dims, tuple(x.shape), placeholder))
        if second is not None:
            x = x.permute(second)
        return x

    return run


def _axes(t: torch.Tensor, rank: int) -> list[int]:
    return sorted(a % rank for a in t.reshape(-1).tolist())


@handles("SQUEEZE")
def squeeze(layer: Any, ctx: LayerContext) -> Any:
    def run(inputs: list) -> torch.Tensor:
        x = inputs[0]
        for a in reversed(_axes(inputs[1], x.dim())):
            x = x.squeeze(a)
        return x

    return run


@handles("UNSQUEEZE")
def unsqueeze(layer: Any, ctx: LayerContext) -> Any:
    def run(inputs: list) -> torch.Tensor:
        x = inputs[0]
        out_rank = x.dim() + inputs[1].numel()
        for a in _axes(inputs[1], out_rank):
            x = x.unsqueeze(a)
        return x

    return run


@handles("CONCATENATION")
def concatenation(layer: Any, ctx: LayerContext) -> Any:
    axis = int(layer.axis)
    return lambda inputs: torch.cat(inputs, axis)
