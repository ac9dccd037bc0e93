"""Elementwise ops: arithmetic, comparisons, logic, select, activations, unary math, constants and casts.

Binary ops take tensors, Python numbers or numpy arrays (numbers/arrays become constants in the other
operand's dtype) and broadcast like numpy; both operands must have one dtype (cast first: F.cast).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from netdef.functional.core import (Operand, broadcast_rank, constant_like, is_tensor, join, out, require,
                                    same_dtype, site)
from netdef.network import current


# --- constants and casts -------------------------------------------------------------------------------
def constant(array: Any, dtype: Any = None, op: str | None = "const") -> Any:
    """A constant tensor; floating arrays take the compute dtype unless `dtype` says otherwise."""
    return current().constant(np.asarray(array), dtype=dtype, op=op or "const")


def cast(x: Any, dtype: Any, op: str | None = "cast") -> Any:
    """Cast to a numpy dtype (or TensorRT DataType); no layer when `x` already has it."""
    return current().cast(x, dtype, op or "cast")


# --- binary arithmetic -----------------------------------------------------------------------------------
def _operands(a: Operand, b: Operand, op: str | None) -> tuple[Any, Any]:
    if not is_tensor(a):
        if not is_tensor(b):
            raise TypeError(f"{site(op)}: at least one operand must be a tensor")
        a = constant_like(a, b, op)
    b = constant_like(b, a, op)
    a, b = broadcast_rank([a, b], op)
    same_dtype([a, b], op)
    return a, b


def _elementwise(a: Operand, b: Operand, kind: str, op: str | None) -> Any:
    net = current()
    a, b = _operands(a, b, op)
    return out(net.definition.add_elementwise(a, b, getattr(net.trt.ElementWiseOperation, kind)), op)


def add(a: Operand, b: Operand, op: str | None = "add", skip: int | None = None, quantize_branch: bool = False) -> Any:
    """a + b. `skip` (0 or 1) names the input that is a residual's skip (the identity, a Darknet shortcut's
    `from`): INT8 reads it through its shared Q/DQ and the other input, the branch, stays float so the
    convolution producing it fuses the add (netdef.quantize.policy). `quantize_branch`: the branch ends in an
    activation of a conv (conv -> activation -> add) whose output went through `quant.preactivation`:
    the add runs in INT8 with the activation (R3c) or reads the branch quantized (R3b; docs/int8.md 2)."""
    net = current()
    both = is_tensor(a) and is_tensor(b)
    a, b = _operands(a, b, op)
    if both:
        a, b = net.quant.summands([a, b], skip, quantize_branch)
    elif skip is not None:
        raise ValueError(f"{site(op)}: skip={skip} needs two tensors (a residual's branch and skip)")
    y = out(net.definition.add_elementwise(a, b, net.trt.ElementWiseOperation.SUM), op)
    return net.quant.summed(y, [a, b]) if both else y


def sub(a: Operand, b: Operand, op: str | None = "sub") -> Any:
    return _elementwise(a, b, "SUB", op)


def mul(a: Operand, b: Operand, op: str | None = "mul") -> Any:
    return _elementwise(a, b, "PROD", op)


def div(a: Operand, b: Operand, op: str | None = "div") -> Any:
    """a / b; integer tensors divide truncating toward zero (TensorRT's DIV), not flooring as torch's //."""
    return _elementwise(a, b, "DIV", op)


def pow(a: Operand, b: Operand, op: str | None = "pow") -> Any:
    return _elementwise(a, b, "POW", op)


def maximum(a: Operand, b: Operand, op: str | None = "max") -> Any:
    return _elementwise(a, b, "MAX", op)


def minimum(a: Operand, b: Operand, op: str | None = "min") -> Any:
    return _elementwise(a, b, "MIN", op)


# --- comparisons and logic: BOOL results ---------------------------------------------------------------------
def eq(a: Operand, b: Operand, op: str | None = "eq") -> Any:
    return _elementwise(a, b, "EQUAL", op)


def gt(a: Operand, b: Operand, op: str | None = "gt") -> Any:
    return _elementwise(a, b, "GREATER", op)


def lt(a: Operand, b: Operand, op: str | None = "lt") -> Any:
    return _elementwise(a, b, "LESS", op)


def ge(a: Operand, b: Operand, op: str | None = "ge") -> Any:
    """a >= b as not(a < b) (TensorRT has no GREATER_EQUAL; differs from torch only where a or b is NaN)."""
    return logical_not(lt(a, b, op=join(op, "lt")), op=join(op, "not") if op else None)


def le(a: Operand, b: Operand, op: str | None = "le") -> Any:
    """a <= b as not(a > b)."""
    return logical_not(gt(a, b, op=join(op, "gt")), op=join(op, "not") if op else None)


def _logical(a: Operand, b: Operand, kind: str, op: str | None) -> Any:
    net = current()
    a, b = _operands(a, b, op)
    require(a, "b", op, "operand")
    return out(net.definition.add_elementwise(a, b, getattr(net.trt.ElementWiseOperation, kind)), op)


def logical_and(a: Operand, b: Operand, op: str | None = "and") -> Any:
    return _logical(a, b, "AND", op)


def logical_or(a: Operand, b: Operand, op: str | None = "or") -> Any:
    return _logical(a, b, "OR", op)


def logical_xor(a: Operand, b: Operand, op: str | None = "xor") -> Any:
    return _logical(a, b, "XOR", op)


def logical_not(x: Any, op: str | None = "not") -> Any:
    require(x, "b", op)
    return unary(x, "NOT", op)


def where(condition: Any, a: Operand, b: Operand, op: str | None = "where") -> Any:
    """torch.where(condition, a, b): a BOOL condition selects between a and b (numbers take the tensor's dtype)."""
    net = current()
    require(condition, "b", op, "condition")
    if not is_tensor(a) and not is_tensor(b):
        raise TypeError(f"{site(op)}: a or b must be a tensor (the other may be a number)")
    a = constant_like(a, b, op) if is_tensor(b) else a
    b = constant_like(b, a, op)
    condition, a, b = broadcast_rank([condition, a, b], op)
    same_dtype([a, b], op)
    return out(net.definition.add_select(condition, a, b), op)


# --- activations -------------------------------------------------------------------------------------
def activation(x: Any, kind: str, op: str | None, alpha: float | None = None, beta: float | None = None) -> Any:
    """One IActivationLayer of `ActivationType.<kind>` (alpha/beta as TensorRT defines them for it)."""
    net = current()
    require(x, "f", op)
    layer = net.definition.add_activation(x, getattr(net.trt.ActivationType, kind))
    if alpha is not None:
        layer.alpha = float(alpha)
    if beta is not None:
        layer.beta = float(beta)
    return net.quant.activated(x, out(layer, op))


def relu(x: Any, op: str | None = "relu") -> Any:
    return activation(x, "RELU", op)


def leaky_relu(x: Any, negative_slope: float = 0.01, op: str | None = "leaky_relu") -> Any:
    return activation(x, "LEAKY_RELU", op, alpha=negative_slope)


def sigmoid(x: Any, op: str | None = "sigmoid") -> Any:
    return activation(x, "SIGMOID", op)


def tanh(x: Any, op: str | None = "tanh") -> Any:
    return activation(x, "TANH", op)


def softplus(x: Any, op: str | None = "softplus") -> Any:
    """log(1 + exp(x)): TensorRT's SOFTPLUS is alpha*log(exp(beta*x) + 1)."""
    return activation(x, "SOFTPLUS", op, alpha=1.0, beta=1.0)


def silu(x: Any, op: str | None = "silu") -> Any:
    """x * sigmoid(x) (no native SiLU activation)."""
    return mul(x, sigmoid(x, op=join(op, "sigmoid")), op=join(op, "mul"))


def mish(x: Any, op: str | None = "mish") -> Any:
    """x * tanh(softplus(x)), exact; for large x softplus -> x (or inf in FP16) and tanh -> 1, so it stays finite."""
    t = tanh(softplus(x, op=join(op, "softplus")), op=join(op, "tanh"))
    return mul(x, t, op=join(op, "mul"))


def hardswish(x: Any, op: str | None = "hardswish") -> Any:
    """x * clip(x + 3, 0, 6) / 6, with TensorRT's HARD_SIGMOID max(0, min(1, x/6 + 1/2))."""
    gate = activation(x, "HARD_SIGMOID", join(op, "hard_sigmoid"), alpha=1.0 / 6.0, beta=0.5)
    return mul(x, gate, op=join(op, "mul"))


def clamp(x: Any, min: float, max: float, op: str | None = "clamp") -> Any:
    """torch.clamp with both bounds (TensorRT's CLIP activation)."""
    return activation(x, "CLIP", op, alpha=min, beta=max)


# --- unary math ------------------------------------------------------------------------------------
def unary(x: Any, kind: str, op: str | None) -> Any:
    """One IUnaryLayer of `UnaryOperation.<kind>`."""
    net = current()
    return out(net.definition.add_unary(x, getattr(net.trt.UnaryOperation, kind)), op)


def exp(x: Any, op: str | None = "exp") -> Any:
    return unary(x, "EXP", op)


def log(x: Any, op: str | None = "log") -> Any:
    return unary(x, "LOG", op)


def sqrt(x: Any, op: str | None = "sqrt") -> Any:
    return unary(x, "SQRT", op)


def abs(x: Any, op: str | None = "abs") -> Any:
    return unary(x, "ABS", op)


def neg(x: Any, op: str | None = "neg") -> Any:
    return unary(x, "NEG", op)
