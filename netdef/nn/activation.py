"""Activation modules: native IActivationLayers, or short compositions where TensorRT has none."""
from __future__ import annotations

from typing import Any

import netdef.functional as F
from netdef.module import Module


class ReLU(Module):
    def __init__(self, inplace: bool = False) -> None:
        super().__init__()

    def forward(self, x: Any) -> Any:
        return F.relu(x, op=None)


class LeakyReLU(Module):
    def __init__(self, negative_slope: float = 0.01, inplace: bool = False) -> None:
        super().__init__()
        self.negative_slope = negative_slope

    def forward(self, x: Any) -> Any:
        return F.leaky_relu(x, self.negative_slope, op=None)


class Sigmoid(Module):
    def forward(self, x: Any) -> Any:
        return F.sigmoid(x, op=None)


class Tanh(Module):
    def forward(self, x: Any) -> Any:
        return F.tanh(x, op=None)


class SiLU(Module):
    def __init__(self, inplace: bool = False) -> None:
        super().__init__()

    def forward(self, x: Any) -> Any:
        return F.silu(x, op=None)


class Mish(Module):
    def __init__(self, inplace: bool = False) -> None:
        super().__init__()

    def forward(self, x: Any) -> Any:
        return F.mish(x, op=None)


class Hardswish(Module):
    def __init__(self, inplace: bool = False) -> None:
        super().__init__()

    def forward(self, x: Any) -> Any:
        return F.hardswish(x, op=None)
