"""Shape ops: reshape, flatten, permute, concat, slice, split, pad, and shape tensors for a dynamic batch.

INT8: reshapes, slices and concatenations move values without changing them, so TensorRT moves quantization
across them; they declare that their inputs and output share one scale (netdef.quantize.policy) and emit no Q/DQ.
"""
from __future__ import annotations

import builtins
from typing import Any, Sequence

import numpy as np

from netdef import trt as shim
from netdef.functional.core import axis, join, out, rank, require, same_dtype, site
from netdef.network import current, np_dtype


def reshape(x: Any, shape: Sequence[int], op: str | None = "reshape") -> Any:
    """Reshape; 0 copies the input's dimension (keeps a dynamic batch), one -1 is inferred."""
    net = current()
    layer = net.definition.add_shuffle(x)
    layer.reshape_dims = tuple(int(s) for s in shape)
    net.quant.share_scale(x, layer.get_output(0))
    return out(layer, op)


def flatten(x: Any, start_dim: int = 1, end_dim: int = -1, op: str | None = "flatten") -> Any:
    """torch.flatten: dims start_dim..end_dim become one (dims before it are copied, so batch stays dynamic)."""
    r = rank(x)
    what = site(op or "flatten")
    start, end = axis(start_dim, r, what), axis(end_dim, r, what)
    dims = list(x.shape)
    if any(d < 0 for d in dims[start:]) and end != r - 1:
        raise ValueError(f"{what}: cannot flatten dims {start}..{end} of {x.name!r} {tuple(dims)}: "
                         "a dynamic dimension would have to be inferred twice")
    # Leading dims are copied (0 keeps a dynamic batch); the merged one is inferred when it is the last.
    merged = -1 if end == r - 1 else int(np.prod(dims[start:end + 1]))
    return reshape(x, [0] * start + [merged] + [int(d) for d in dims[end + 1:]], op=op)


def permute(x: Any, dims: Sequence[int], op: str | None = "permute") -> Any:
    net = current()
    layer = net.definition.add_shuffle(x)
    layer.first_transpose = tuple(axis(d, rank(x), site(op or "permute")) for d in dims)
    net.quant.share_scale(x, layer.get_output(0))
    return out(layer, op)


def transpose(x: Any, dim0: int, dim1: int, op: str | None = "transpose") -> Any:
    r = rank(x)
    perm = list(range(r))
    a, b = axis(dim0, r, site(op or "transpose")), axis(dim1, r, site(op or "transpose"))
    perm[a], perm[b] = perm[b], perm[a]
    return permute(x, perm, op=op)


def concat(tensors: Sequence[Any], dim: int = 1, op: str | None = "concat") -> Any:
    net = current()
    tensors = list(tensors)
    if not tensors:
        raise ValueError(f"{site(op or 'concat')}: no tensors to concatenate")
    same_dtype(tensors, op or "concat")
    layer = net.definition.add_concatenation(tensors)
    layer.axis = axis(dim, rank(tensors[0]), site(op or "concat"))
    net.quant.share_scale(*tensors, layer.get_output(0))
    return out(layer, op)


def _static(x: Any, a: int, what: str) -> int:
    size = int(tuple(x.shape)[a])
    if size < 0:
        raise ValueError(f"{what}: dimension {a} of tensor {x.name!r} {tuple(x.shape)} is dynamic; this op needs "
                         "its size at definition time")
    return size


def _slice_layer(x: Any, starts: Sequence[int], shape: Sequence[int], strides: Sequence[int], op: str | None) -> Any:
    """add_slice with the output shape as a tensor when x has a dynamic dim (made first: layers stay in order)."""
    net = current()
    dims = tuple(x.shape)
    dynamic = None
    if any(d < 0 for d in dims):
        dynamic = shape_with(x, {a: s for a, (s, d) in enumerate(zip(shape, dims)) if d >= 0 and s != d},
                             join(op, "shape"))
    layer = net.definition.add_slice(x, tuple(starts), tuple(max(s, 0) for s in shape), tuple(strides))
    if dynamic is not None:
        layer.set_input(2, dynamic)
    net.quant.share_scale(x, layer.get_output(0))
    return layer


def slice(x: Any, dim: int, start: int, stop: int | None = None, step: int = 1, op: str | None = "slice") -> Any:
    """x[..., start:stop:step, ...] along `dim` (a non-dynamic dimension); other dims whole."""
    what = site(op or "slice")
    a = axis(dim, rank(x), what)
    size = _static(x, a, what)
    begin, end, stride = builtins.slice(start, stop, step).indices(size)
    count = len(range(begin, end, stride))
    if count <= 0:
        raise ValueError(f"{what}: empty slice {start}:{stop}:{step} of dim {dim} (size {size}) of tensor {x.name!r}")
    starts, strides, shape = [0] * rank(x), [1] * rank(x), list(x.shape)
    starts[a], strides[a], shape[a] = begin, stride, count
    return out(_slice_layer(x, starts, shape, strides, op), op)


def shape_with(x: Any, sizes: dict[int, int], op: str = "shape") -> Any:
    """shape(x) as a shape tensor with the dimensions in `sizes` replaced (static sizes beside a dynamic batch)."""
    from netdef.functional.elementwise import add, mul

    net = current()
    shape = net.name_layer(net.definition.add_shape(x), op).get_output(0)
    int_dtype = np_dtype(shape.dtype)
    keep = np.ones(rank(x), dtype=int_dtype)
    put = np.zeros(rank(x), dtype=int_dtype)
    for a, size in sizes.items():
        keep[a], put[a] = 0, size
    kept = mul(shape, net.constant(keep, dtype=int_dtype, op=f"{op}/keep"), op=f"{op}/mul")
    return add(kept, net.constant(put, dtype=int_dtype, op=f"{op}/size"), op=f"{op}/add")


def size(x: Any, dim: int, op: str = "size") -> Any:
    """x.shape[dim] as a 1-element shape tensor (the binding's shape dtype), read at run time."""
    net = current()
    a = axis(dim, rank(x), site(op))
    shape = net.name_layer(net.definition.add_shape(x), f"{op}/shape").get_output(0)
    return slice(shape, 0, a, a + 1, op=op)


def split(x: Any, split_size_or_sections: int | Sequence[int], dim: int = 1, op: str | None = "split") -> list[Any]:
    """torch.split: equal chunks of `split_size` (last one smaller) or explicit section sizes."""
    what = site(op or "split")
    total = _static(x, axis(dim, rank(x), what), what)
    if isinstance(split_size_or_sections, int):
        n = split_size_or_sections
        sections = [min(n, total - s) for s in range(0, total, n)]
    else:
        sections = [int(s) for s in split_size_or_sections]
    if builtins.sum(sections) != total:
        raise ValueError(f"{what}: sections {sections} do not add up to dim {dim} size {total}")
    parts, begin = [], 0
    for i, n in enumerate(sections):
        parts.append(slice(x, dim, begin, begin + n, op=join(op, str(i))))
        begin += n
    return parts


_PAD_MODES = {"constant": "FILL", "reflect": "REFLECT", "replicate": "CLAMP", "circular": "WRAP"}


def pad(x: Any, pad: Sequence[int], mode: str = "constant", value: float = 0.0, op: str | None = "pad") -> Any:
    """torch.nn.functional.pad: `pad` = (before, after) pairs from the last dim backwards; negative values crop.

    One slice layer reading outside the input with the binding's sample mode: constant = FILL with `value`,
    reflect = REFLECT (edge not repeated), replicate = CLAMP, circular = WRAP. Padded dims must be static.
    symmetric (numpy's name; scipy.ndimage's "reflect"): the edge repeated, as reversed slices concatenated
    around each padded dim (no sample mode does it), at most the dim's size on each side.
    """
    what = site(op or "pad")
    if mode not in _PAD_MODES and mode != "symmetric":
        raise ValueError(f"{what}: mode {mode!r}: expected one of {', '.join(_PAD_MODES)}, symmetric")
    pad = [int(p) for p in pad]
    r = rank(x)
    if len(pad) % 2 or len(pad) // 2 > r:
        raise ValueError(f"{what}: pad {tuple(pad)} must hold (before, after) pairs for at most {r} dims")
    if mode == "symmetric":
        return _pad_symmetric(x, pad, what, op)
    starts, shape = [0] * r, list(tuple(x.shape))
    for a, before, after, n in _padded_dims(x, pad, what):
        if mode in ("reflect", "circular") and builtins.max(before, after) >= n + (mode == "circular"):
            raise ValueError(f"{what}: {mode} padding ({before}, {after}) of dim {a} must be smaller than its size {n}")
        starts[a], shape[a] = -before, n + before + after
        if shape[a] <= 0:
            raise ValueError(f"{what}: pad ({before}, {after}) leaves dim {a} of size {n} empty")
    layer = _slice_layer(x, starts, shape, [1] * r, op)
    layer.mode = shim.sample_mode(_PAD_MODES[mode])
    if mode == "constant":
        require(x, "fi", op)
        layer.set_input(4, current().constant(np.array(value, dtype=np_dtype(x.dtype)), dtype=np_dtype(x.dtype),
                                              op=join(op, "value")))
    return out(layer, op)


def _padded_dims(x: Any, pad: list[int], what: str) -> list[tuple[int, int, int, int]]:
    """(dim, before, after, size) of each dim `pad` changes, from the last dim backwards (torch's order)."""
    r = rank(x)
    dims = []
    for k in range(len(pad) // 2):
        before, after = pad[2 * k], pad[2 * k + 1]
        if before or after:
            dims.append((r - 1 - k, before, after, _static(x, r - 1 - k, what)))
    return dims


def _pad_symmetric(x: Any, pad: list[int], what: str, op: str | None) -> Any:
    """numpy.pad(mode="symmetric"), one dim at a time from the last: [x[b-1::-1], x, x[n-1:n-1-a:-1]]."""
    dims = _padded_dims(x, pad, what)
    for i, (a, before, after, n) in enumerate(dims):
        if not (0 <= before <= n and 0 <= after <= n):
            raise ValueError(f"{what}: symmetric padding ({before}, {after}) of dim {a} must be in 0..{n}")
        parts = [slice(x, a, before - 1, None, -1, op=join(op, f"dim{a}/before"))] if before else []
        parts.append(x)
        if after:
            parts.append(slice(x, a, n - 1, n - 1 - after if after < n else None, -1, op=join(op, f"dim{a}/after")))
        x = concat(parts, dim=a, op=join(op, f"dim{a}") if i < len(dims) - 1 else op)
    return x
