"""Elementwise (binary, broadcasting), unary and select layers."""
from __future__ import annotations

from typing import Any, Callable

import torch

from netdef.executor.context import LayerContext, enum_name
from netdef.executor.registry import handles


def _div(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    # integer DIV truncates toward zero in TensorRT
    return torch.div(a, b) if a.is_floating_point() else torch.div(a, b, rounding_mode="trunc")


_BINARY: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "SUM": torch.add,
    "PROD": torch.mul,
    "MAX": torch.maximum,
    "MIN": torch.minimum,
    "SUB": torch.sub,
    "DIV": _div,
    "POW": torch.pow,
    "FLOOR_DIV": lambda a, b: torch.div(a, b, rounding_mode="floor"),
    "AND": torch.logical_and,
    "OR": torch.logical_or,
    "XOR": torch.logical_xor,
    "EQUAL": torch.eq,
    "GREATER": torch.gt,
    "LESS": torch.lt,
}

_UNARY: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "EXP": torch.exp, "LOG": torch.log, "SQRT": torch.sqrt, "RECIP": torch.reciprocal, "ABS": torch.abs,
    "NEG": torch.neg, "SIN": torch.sin, "COS": torch.cos, "TAN": torch.tan, "SINH": torch.sinh,
    "COSH": torch.cosh, "ASIN": torch.asin, "ACOS": torch.acos, "ATAN": torch.atan, "ASINH": torch.asinh,
    "ACOSH": torch.acosh, "ATANH": torch.atanh, "CEIL": torch.ceil, "FLOOR": torch.floor, "ERF": torch.erf,
    "NOT": torch.logical_not, "SIGN": torch.sign, "ROUND": torch.round,  # torch.round: half to even, as TensorRT
    "ISINF": torch.isinf, "ISNAN": torch.isnan,
}


@handles("ELEMENTWISE")
def elementwise(layer: Any, ctx: LayerContext) -> Any:
    op = enum_name(layer.op)
    fn = _BINARY.get(op)
    if fn is None:
        ctx.unsupported("op", op)
    ctx.require(ctx.input_rank(0) == ctx.input_rank(1), "input ranks", (ctx.input_rank(0), ctx.input_rank(1)))

    def run(inputs: list) -> torch.Tensor:
        return fn(inputs[0], inputs[1])

    method = _INPLACE.get(op)
    if method is not None:
        def run_inplace(inputs: list) -> torch.Tensor:
            a, b = inputs
            # only where the result has a's shape and type (no broadcasting into a, no type promotion)
            if a.is_floating_point() and a.dtype == b.dtype and b.dim() == a.dim() and all(
                    db in (1, da) for da, db in zip(a.shape, b.shape)):
                return getattr(a, method)(b)
            return fn(a, b)

        run.inplace = run_inplace  # type: ignore[attr-defined]
    return run


_INPLACE = {"SUM": "add_", "PROD": "mul_", "SUB": "sub_", "DIV": "div_"}


@handles("UNARY")
def unary(layer: Any, ctx: LayerContext) -> Any:
    op = enum_name(layer.op)
    fn = _UNARY.get(op)
    if fn is None:
        ctx.unsupported("op", op)
    return lambda inputs: fn(inputs[0])


@handles("SELECT")
def select(layer: Any, ctx: LayerContext) -> Any:
    return lambda inputs: torch.where(inputs[0], inputs[1], inputs[2])
