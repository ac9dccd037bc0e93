"""Reductions over dims (sum, mean, amax, amin) and softmax."""
from __future__ import annotations

import builtins
from typing import Any, Iterable

from netdef.functional.core import axes, axis, out, rank, require, site
from netdef.network import current


def _reduce(x: Any, kind: str, dim: int | Iterable[int] | None, keepdim: bool, op: str | None, kinds: str) -> Any:
    net = current()
    require(x, kinds, op)
    mask = builtins.sum(1 << a for a in axes(dim, rank(x), site(op)))
    return out(net.definition.add_reduce(x, getattr(net.trt.ReduceOperation, kind), mask, bool(keepdim)), op)


def sum(x: Any, dim: int | Iterable[int] | None = None, keepdim: bool = False, op: str | None = "sum") -> Any:
    """torch.sum over `dim` (an int, several, or None for all); floating or int32 tensors."""
    return _reduce(x, "SUM", dim, keepdim, op, "fi")


def mean(x: Any, dim: int | Iterable[int] | None = None, keepdim: bool = False, op: str | None = "mean") -> Any:
    return _reduce(x, "AVG", dim, keepdim, op, "f")


def amax(x: Any, dim: int | Iterable[int] | None = None, keepdim: bool = False, op: str | None = "amax") -> Any:
    """torch.amax: the maximum over `dim` (values only; F.topk(x, 1, dim) gives the index too)."""
    return _reduce(x, "MAX", dim, keepdim, op, "fi")


def amin(x: Any, dim: int | Iterable[int] | None = None, keepdim: bool = False, op: str | None = "amin") -> Any:
    return _reduce(x, "MIN", dim, keepdim, op, "fi")


def softmax(x: Any, dim: int, op: str | None = "softmax") -> Any:
    net = current()
    require(x, "f", op)
    layer = net.definition.add_softmax(x)
    layer.axes = 1 << axis(dim, rank(x), site(op or "softmax"))
    return out(layer, op)
