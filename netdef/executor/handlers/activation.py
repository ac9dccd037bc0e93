"""Activation and parametric ReLU layers."""
from __future__ import annotations

import math
from typing import Any, Callable

import torch
import torch.nn.functional as F

from netdef.executor.context import LayerContext, enum_name
from netdef.executor.registry import handles


def _activation(kind: str, a: float, b: float) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """TensorRT's ActivationType formulas with alpha `a` and beta `b`."""
    return {
        "RELU": torch.relu,
        "SIGMOID": torch.sigmoid,
        "TANH": torch.tanh,
        "LEAKY_RELU": lambda x: F.leaky_relu(x, a),
        "ELU": lambda x: torch.where(x >= 0, x, a * torch.expm1(x)),
        "SELU": lambda x: b * torch.where(x >= 0, x, a * torch.expm1(x)),
        "SOFTSIGN": lambda x: x / (1 + x.abs()),
        "SOFTPLUS": lambda x: a * F.softplus(b * x),
        "CLIP": lambda x: x.clamp(a, b),
        "HARD_SIGMOID": lambda x: (a * x + b).clamp(0, 1),
        "SCALED_TANH": lambda x: a * torch.tanh(b * x),
        "THRESHOLDED_RELU": lambda x: torch.where(x > a, x, torch.zeros_like(x)),
        "GELU_ERF": lambda x: 0.5 * x * (1 + torch.erf(x / math.sqrt(2))),
        "GELU_TANH": lambda x: 0.5 * x * (1 + torch.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3))),
    }.get(kind)


@handles("ACTIVATION")
def activation(layer: Any, ctx: LayerContext) -> Any:
    kind = enum_name(layer.type)  # on the downcast layer `type` is the ActivationType
    alpha, beta = float(layer.alpha), float(layer.beta)
    fn = _activation(kind, alpha, beta)
    if fn is None:
        ctx.unsupported("activation type", kind)

    def run(inputs: list) -> torch.Tensor:
        return fn(inputs[0])

    fn_ = _INPLACE.get(kind)
    if fn_ is not None:
        run.inplace = lambda inputs: fn_(inputs[0], alpha, beta)  # type: ignore[attr-defined]
    return run


_INPLACE = {  # the common activations written into their input (the executor decides when that is safe)
    "RELU": lambda x, a, b: x.relu_(),
    "SIGMOID": lambda x, a, b: x.sigmoid_(),
    "TANH": lambda x, a, b: x.tanh_(),
    "LEAKY_RELU": lambda x, a, b: F.leaky_relu_(x, a),
    "CLIP": lambda x, a, b: x.clamp_(a, b),
}


@handles("PARAMETRIC_RELU")
def parametric_relu(layer: Any, ctx: LayerContext) -> Any:
    return lambda inputs: torch.where(inputs[0] >= 0, inputs[0], inputs[0] * inputs[1])
