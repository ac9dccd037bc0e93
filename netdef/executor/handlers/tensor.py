"""Layers that make or relabel tensors: constant, identity, cast, shape, fill, assertion."""
from __future__ import annotations

from typing import Any

import torch

from netdef.executor.context import LayerContext, enum_name
from netdef.executor.registry import handles


@handles("CONSTANT", interface="IConstantLayer")
def constant(layer: Any, ctx: LayerContext) -> Any:
    shape = tuple(layer.shape)
    values = ctx.tensor(layer.weights, shape, dtype=ctx.output_dtypes[0])
    return lambda inputs: values


@handles("IDENTITY", interface="IIdentityLayer")
def identity(layer: Any, ctx: LayerContext) -> Any:
    return lambda inputs: inputs[0]  # the executor converts to the output's data type


@handles("CAST", interface="ICastLayer")
def cast(layer: Any, ctx: LayerContext) -> Any:
    target = ctx.output_dtypes[0]
    # float -> integer truncates toward zero, as TensorRT's cast does
    return lambda inputs: inputs[0].to(target)


@handles("SHAPE", interface="IShapeLayer")
def shape(layer: Any, ctx: LayerContext) -> Any:
    return lambda inputs: torch.tensor(tuple(inputs[0].shape), dtype=torch.int64, device=ctx.device)


@handles("FILL", interface="IFillLayer")
def fill(layer: Any, ctx: LayerContext) -> Any:
    """LINSPACE: out[i0, .., ik] = alpha + sum_j beta[j] * i_j (beta: one delta per dim when given as input 2;
    the scalar attribute is only defined for 1-D outputs). Random fills cannot be reproduced: unsupported."""
    op = enum_name(layer.operation)
    ctx.require(op == "LINSPACE", "operation", op)
    static_shape = None if ctx.has_input(0) else list(layer.shape)
    beta_input = ctx.has_input(2)
    if not beta_input:
        rank = len(static_shape) if static_shape is not None else len(tuple(layer.get_output(0).shape))
        ctx.require(rank == 1, "LINSPACE with a scalar beta on output rank", rank)
    # alpha/beta are read only where no input replaces them (TensorRT logs an error for dynamic ones)
    alpha = 0.0 if ctx.has_input(1) else float(layer.alpha)
    beta = 0.0 if beta_input else float(layer.beta)
    dtype = ctx.output_dtypes[0]

    def run(inputs: list) -> torch.Tensor:
        shape = inputs[0].reshape(-1).tolist() if inputs and inputs[0] is not None else static_shape
        start = float(inputs[1].reshape(())) if len(inputs) > 1 and inputs[1] is not None else alpha
        deltas = inputs[2].reshape(-1).tolist() if beta_input else [beta]
        out = torch.full(shape, start, dtype=torch.float64, device=ctx.device)
        for d, delta in enumerate(deltas):
            view = [1] * len(shape)
            view[d] = shape[d]
            out = out + torch.arange(shape[d], device=ctx.device, dtype=torch.float64).reshape(view) * float(delta)
        return out.to(dtype)

    return run


@handles("ASSERTION", interface="IAssertionLayer")
def assertion(layer: Any, ctx: LayerContext) -> Any:
    message = layer.message

    def run(inputs: list) -> list:
        if not bool(inputs[0].all()):
            raise AssertionError(f"assertion failed: {message}")
        return []

    return run
