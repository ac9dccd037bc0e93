"""Slice (all sample modes), gather (default/element/ND) and padding."""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from netdef.executor.context import LayerContext, enum_name
from netdef.executor.registry import handles


def _index(start: int, size: int, stride: int, dim: int, mode: str,
           device: torch.device) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Source indices along one dim for the slice's sample mode, plus an in-bounds mask for FILL."""
    idx = start + torch.arange(size, device=device) * stride
    if mode == "WRAP":
        return idx % dim, None
    if mode == "CLAMP":
        return idx.clamp(0, dim - 1), None
    if mode == "REFLECT":
        period = 2 * (dim - 1) if dim > 1 else 1
        r = idx % period
        return torch.where(r >= dim, period - r, r), None
    inside = (idx >= 0) & (idx < dim)
    if mode == "FILL":
        return idx.clamp(0, dim - 1), inside
    if not bool(inside.all()):
        raise IndexError(f"STRICT_BOUNDS slice reads outside a dim of size {dim} "
                         f"(start {start}, size {size}, stride {stride})")
    return idx, None


@handles("SLICE")
def slice_layer(layer: Any, ctx: LayerContext) -> Any:
    mode = enum_name(layer.mode)
    ctx.require(mode in ("STRICT_BOUNDS", "WRAP", "CLAMP", "FILL", "REFLECT"), "mode", mode)
    dynamic = {k: ctx.has_input(i) for i, k in ((1, "start"), (2, "shape"), (3, "stride"), (5, "axes"))}
    # a parameter given as an input tensor reads back as None from the layer
    static = {k: None if dynamic[k] else list(getattr(layer, k) or ()) for k in ("start", "shape", "stride")}
    axes_attr = None if dynamic["axes"] else getattr(layer, "axes", None)
    static_axes = None if axes_attr is None else list(axes_attr)
    has_fill = ctx.has_input(4)

    def run(inputs: list) -> torch.Tensor:
        x = inputs[0]

        def pick(key: str, index: int) -> list[int]:
            return inputs[index].reshape(-1).tolist() if dynamic[key] else static[key]

        start, size, stride = pick("start", 1), pick("shape", 2), pick("stride", 3)
        axes = inputs[5].reshape(-1).tolist() if dynamic["axes"] else static_axes
        axes = list(range(x.dim())) if axes is None else [a % x.dim() for a in axes]
        fill = inputs[4].reshape(()) if has_fill else 0
        for a, s0, n, st in zip(axes, start, size, stride):
            dim = x.shape[a]
            if mode == "STRICT_BOUNDS" and st > 0 and n > 0 and 0 <= s0 and s0 + (n - 1) * st < dim:
                x = x[(slice(None),) * a + (slice(s0, s0 + (n - 1) * st + 1, st),)]  # a view, no copy
                continue
            idx, inside = _index(s0, n, st, dim, mode, x.device)
            x = x.index_select(a, idx)
            if inside is not None:
                shape = [1] * x.dim()
                shape[a] = n
                x = torch.where(inside.reshape(shape), x, torch.as_tensor(fill, dtype=x.dtype, device=x.device))
        return x

    return run


@handles("GATHER")
def gather(layer: Any, ctx: LayerContext) -> Any:
    mode = enum_name(layer.mode)
    axis = int(layer.axis)
    batch_dims = int(layer.num_elementwise_dims)
    if mode == "DEFAULT":
        ctx.require(batch_dims == 0, "num_elementwise_dims", batch_dims)

        def run_default(inputs: list) -> torch.Tensor:
            data, idx = inputs[0], inputs[1].long()
            a = axis % data.dim()
            idx = torch.where(idx < 0, idx + data.shape[a], idx)  # negative indices count from the end
            out = data.index_select(a, idx.reshape(-1))
            return out.reshape(tuple(data.shape[:a]) + tuple(idx.shape) + tuple(data.shape[a + 1:]))

        return run_default
    if mode == "ELEMENT":
        def run_element(inputs: list) -> torch.Tensor:
            data, idx = inputs[0], inputs[1].long()
            a = axis % data.dim()
            return torch.gather(data, a, torch.where(idx < 0, idx + data.shape[a], idx))

        return run_element
    if mode == "ND":
        def run_nd(inputs: list) -> torch.Tensor:
            data, idx = inputs[0], inputs[1].long()
            b = batch_dims
            k = idx.shape[-1]
            lead = tuple(idx.shape[:-1])
            flat_idx = idx.reshape(-1, k) if b == 0 else idx.reshape(-1, *idx.shape[b:]).reshape(-1, k)
            if b == 0:
                sel = data[tuple(flat_idx[:, j] for j in range(k))]
                return sel.reshape(lead + tuple(data.shape[k:]))
            nb = 1
            for d in data.shape[:b]:
                nb *= d
            per_batch = idx.reshape(nb, -1, k)
            flat_data = data.reshape((nb,) + tuple(data.shape[b:]))
            batch_index = torch.arange(nb, device=data.device).unsqueeze(1).expand(nb, per_batch.shape[1])
            sel = flat_data[(batch_index,) + tuple(per_batch[..., j] for j in range(k))]
            return sel.reshape(lead + tuple(data.shape[b + k:]))

        return run_nd
    ctx.unsupported("mode", mode)


@handles("PADDING")
def padding(layer: Any, ctx: LayerContext) -> Any:
    pre, post = list(layer.pre_padding_nd), list(layer.post_padding_nd)
    flat: list[int] = []
    for b, a in zip(reversed(pre), reversed(post)):
        flat += [b, a]  # negative values crop, as in TensorRT
    return lambda inputs: F.pad(inputs[0], flat)
