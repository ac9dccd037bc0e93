"""Padding of convolution and pooling windows as TensorRT defines it (explicit, rounded, or SAME_*)."""
from __future__ import annotations

import math
from typing import Callable, Sequence

from netdef.executor.context import LayerContext, enum_name

Pads = list[tuple[int, int]]  # (before, after) per spatial dim


def window_padding(ctx: LayerContext, layer: object, kernel: Sequence[int], stride: Sequence[int],
                   dilation: Sequence[int] | None = None) -> Callable[[Sequence[int]], Pads]:
    """A function from input spatial sizes to (before, after) padding per dim.

    EXPLICIT_ROUND_DOWN uses pre/post padding as set; EXPLICIT_ROUND_UP adds what the ceil-rounded output
    size needs at the end; SAME_UPPER/SAME_LOWER pad so out = ceil(in / stride), the odd pixel after/before.
    """
    mode = enum_name(layer.padding_mode)
    n = len(kernel)
    pre = list(layer.pre_padding)[-n:] if len(tuple(layer.pre_padding)) else [0] * n
    post = list(layer.post_padding)[-n:] if len(tuple(layer.post_padding)) else [0] * n
    dilation = list(dilation or [1] * n)
    span = [(k - 1) * d + 1 for k, d in zip(kernel, dilation)]
    if mode == "EXPLICIT_ROUND_DOWN":
        static = list(zip(pre, post))
        return lambda sizes: static
    if mode == "EXPLICIT_ROUND_UP":
        def round_up(sizes: Sequence[int]) -> Pads:
            pads = []
            for size, b, a, w, s in zip(sizes, pre, post, span, stride):
                out = math.ceil((size + b + a - w) / s) + 1
                pads.append((b, a + max(0, (out - 1) * s + w - (size + b + a))))
            return pads
        return round_up
    if mode in ("SAME_UPPER", "SAME_LOWER"):
        def same(sizes: Sequence[int]) -> Pads:
            pads = []
            for size, w, s in zip(sizes, span, stride):
                total = max(0, (math.ceil(size / s) - 1) * s + w - size)
                small, big = total // 2, total - total // 2
                pads.append((small, big) if mode == "SAME_UPPER" else (big, small))
            return pads
        return same
    ctx.unsupported("padding_mode", mode)


def flat_pad(pads: Pads) -> list[int]:
    """(before, after) per dim -> F.pad's order (last dim first)."""
    out: list[int] = []
    for b, a in reversed(pads):
        out += [b, a]
    return out


def is_symmetric(pads: Pads) -> bool:
    return all(b == a for b, a in pads)
