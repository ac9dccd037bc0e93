"""Matrix multiply with TensorRT's per-operand NONE / TRANSPOSE / VECTOR operations (batched, broadcast)."""
from __future__ import annotations

from typing import Any

import torch

from netdef.executor.context import LayerContext, enum_name
from netdef.executor.registry import handles


@handles("MATRIX_MULTIPLY")
def matrix_multiply(layer: Any, ctx: LayerContext) -> Any:
    op0, op1 = enum_name(layer.op0), enum_name(layer.op1)
    for name, op in (("op0", op0), ("op1", op1)):
        ctx.require(op in ("NONE", "TRANSPOSE", "VECTOR"), name, op)

    def run(inputs: list) -> torch.Tensor:
        a, b = inputs[0], inputs[1]
        if op0 == "TRANSPOSE":
            a = a.transpose(-1, -2)
        if op1 == "TRANSPOSE":
            b = b.transpose(-1, -2)
        if op0 == "VECTOR":
            a = a.unsqueeze(-2)  # a row vector per batch item
        if op1 == "VECTOR":
            b = b.unsqueeze(-1)
        out = torch.matmul(a, b)
        if op1 == "VECTOR":
            out = out.squeeze(-1)
        if op0 == "VECTOR":
            out = out.squeeze(-2 if op1 != "VECTOR" else -1)
        return out

    return run
