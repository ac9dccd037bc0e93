"""Conv2d: one convolution layer named after the module path, with a paired BatchNorm folded in (netdef.nn.fold)."""
from __future__ import annotations

from typing import Any

import numpy as np

import netdef.functional as F
from netdef.functional.core import pair
from netdef.module import Parameter
from netdef.nn.fold import ConvLike

__all__ = ["Conv2d", "pair"]


class Conv2d(ConvLike):
    def __init__(self, in_channels: int, out_channels: int, kernel_size: int | tuple[int, int], stride: Any = 1,
                 padding: Any = 0, dilation: Any = 1, groups: int = 1, bias: bool = True) -> None:
        super().__init__()
        self.in_channels, self.out_channels, self.groups = in_channels, out_channels, groups
        self.kernel_size, self.stride = pair(kernel_size), pair(stride)
        self.padding, self.dilation = pair(padding), pair(dilation)
        self.weight = Parameter(out_channels, in_channels // groups, *self.kernel_size)
        self.bias = Parameter(out_channels) if bias else None

    def fold_norm(self, weight: np.ndarray, bias: np.ndarray | None, scale: np.ndarray,
                  shift: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Output channels are the kernel's axis 0. The kernel product is taken in FP32 (float64 would cost a
        quarter second on ResNet-50 for an error far below any tolerance), the bias in float64."""
        rows = weight.astype(np.float32, copy=False).reshape(self.out_channels, -1)  # 2-D: numpy broadcasts fast
        kernel = (rows * scale.astype(np.float32)[:, None]).reshape(weight.shape)
        base = np.asarray(bias, dtype=np.float64) if bias is not None else 0.0
        return kernel, base * scale + shift

    def forward(self, x: Any) -> Any:
        shape = tuple(x.shape)
        if len(shape) != 4 or shape[1] != self.in_channels:
            raise ValueError(f"{self.path}: Conv2d({self.in_channels}, {self.out_channels}) got tensor {x.name!r} of "
                             f"shape {shape} (expected N,{self.in_channels},H,W)")
        weight, bias = self.weights_with_norm(self.weight.data, self.bias.data if self.bias is not None else None)
        y = F.conv2d(x, weight, bias, self.stride, self.padding, self.dilation, self.groups, op=None)
        return self.hand_to_norm(y)
