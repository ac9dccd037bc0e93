"""Max and average pooling (1-3 spatial dims) with TensorRT's padding modes."""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from netdef.executor.context import LayerContext, enum_name
from netdef.executor.handlers.spatial import flat_pad, is_symmetric, window_padding
from netdef.executor.registry import handles

_MAX = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}
_AVG = {1: F.avg_pool1d, 2: F.avg_pool2d, 3: F.avg_pool3d}


@handles("POOLING")
def pooling(layer: Any, ctx: LayerContext) -> Any:
    kind = enum_name(layer.type)  # on the downcast layer `type` is the PoolingType
    window = tuple(layer.window_size_nd)
    nd = len(window)
    ctx.require(nd in _MAX, "window_size_nd", window)
    ctx.require(ctx.input_rank(0) == nd + 2, "input rank", ctx.input_rank(0))
    stride = tuple(layer.stride_nd)
    pads_for = window_padding(ctx, layer, window, stride)
    mode = enum_name(layer.padding_mode)
    exclude_pad = bool(layer.average_count_excludes_padding)
    if kind == "MAX":
        pool = _MAX[nd]

        def run_max(inputs: list) -> torch.Tensor:
            x = inputs[0]
            pads = pads_for(x.shape[2:])
            if is_symmetric(pads) and all(2 * p <= w for (p, _), w in zip(pads, window)):
                return pool(x, window, stride, [p for p, _ in pads])
            return pool(F.pad(x, flat_pad(pads), value=float("-inf")), window, stride)

        return run_max
    if kind == "AVERAGE":
        ctx.require(exclude_pad or mode != "EXPLICIT_ROUND_UP", "average_count_excludes_padding with padding_mode",
                    f"{exclude_pad} with {mode}")
        pool = _AVG[nd]
        area = 1
        for w in window:
            area *= w

        def run_avg(inputs: list) -> torch.Tensor:
            x = inputs[0]
            pads = pads_for(x.shape[2:])
            if is_symmetric(pads) and all(2 * p <= w for (p, _), w in zip(pads, window)):
                return pool(x, window, stride, [p for p, _ in pads], count_include_pad=not exclude_pad)
            flat = flat_pad(pads)
            total = pool(F.pad(x, flat), window, stride)
            if not exclude_pad:
                return total
            # divide window sums by the number of real (unpadded) elements in each window
            ones = torch.ones((1, 1) + tuple(x.shape[2:]), dtype=x.dtype, device=x.device)
            count = pool(F.pad(ones, flat), window, stride)
            return total / count

        return run_avg
    ctx.unsupported("pooling type", kind)
