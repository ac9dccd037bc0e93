"""Arithmetic operators on netdef tensors, so a forward reads like its PyTorch twin: `out + identity`.

Installed once on the binding's ITensor class (pybind11 classes accept new attributes, on every binding):
+, -, *, / and unary - call F.add, F.sub, F.mul, F.div and F.neg, with their checks and names (`<path>/add`).
Comparisons are left alone: `==` must keep meaning identity for tensors in lists and dicts.
"""
from __future__ import annotations

from typing import Any

_INSTALLED: set[int] = set()


def install(tensor_class: Any) -> None:
    """Give `tensor_class` (the binding's ITensor) the arithmetic operators; idempotent."""
    if id(tensor_class) in _INSTALLED:
        return
    from netdef.functional import elementwise as E

    operators = {
        "__add__": lambda a, b: E.add(a, b), "__radd__": lambda a, b: E.add(b, a),
        "__sub__": lambda a, b: E.sub(a, b), "__rsub__": lambda a, b: E.sub(b, a),
        "__mul__": lambda a, b: E.mul(a, b), "__rmul__": lambda a, b: E.mul(b, a),
        "__truediv__": lambda a, b: E.div(a, b), "__rtruediv__": lambda a, b: E.div(b, a),
        "__neg__": lambda a: E.neg(a),
    }
    for name, fn in operators.items():
        if name not in vars(tensor_class):  # never replace an operator the binding defines itself
            setattr(tensor_class, name, fn)
    _INSTALLED.add(id(tensor_class))
