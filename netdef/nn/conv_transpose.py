"""ConvTranspose2d: one deconvolution layer named after the module path, with a paired BatchNorm folded in."""
from __future__ import annotations

from typing import Any

import numpy as np

import netdef.functional as F
from netdef.functional.core import pair
from netdef.module import Parameter
from netdef.nn.fold import ConvLike


class ConvTranspose2d(ConvLike):
    def __init__(self, in_channels: int, out_channels: int, kernel_size: int | tuple[int, int], stride: Any = 1,
                 padding: Any = 0, output_padding: Any = 0, groups: int = 1, bias: bool = True,
                 dilation: Any = 1) -> None:
        super().__init__()
        self.in_channels, self.out_channels, self.groups = in_channels, out_channels, groups
        self.kernel_size, self.stride = pair(kernel_size), pair(stride)
        self.padding, self.output_padding, self.dilation = pair(padding), pair(output_padding), pair(dilation)
        for op, s, d in zip(self.output_padding, self.stride, self.dilation):
            if op >= max(s, d):
                raise ValueError(f"ConvTranspose2d: output_padding {self.output_padding} must be smaller than "
                                 f"stride {self.stride} or dilation {self.dilation} (as torch requires)")
        if any(op > p for op, p in zip(self.output_padding, self.padding)):
            raise ValueError(f"ConvTranspose2d: output_padding {self.output_padding} larger than padding "
                             f"{self.padding} has no TensorRT deconvolution equivalent")
        # (in, out / groups, kH, kW): torch's layout, and TensorRT's
        self.weight = Parameter(in_channels, out_channels // groups, *self.kernel_size)
        self.bias = Parameter(out_channels) if bias else None

    def fold_norm(self, weight: np.ndarray, bias: np.ndarray | None, scale: np.ndarray,
                  shift: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Output channel o = g * out/groups + j lives on axis 2 of the kernel viewed as (groups, in/groups,
        out/groups, kh, kw)."""
        g = self.groups
        view = weight.astype(np.float32, copy=False).reshape(g, self.in_channels // g, self.out_channels // g, -1)
        kernel = (view * scale.astype(np.float32).reshape(g, 1, -1, 1)).reshape(weight.shape)
        base = np.asarray(bias, dtype=np.float64) if bias is not None else 0.0
        return kernel, base * scale + shift

    def forward(self, x: Any) -> Any:
        weight, bias = self.weights_with_norm(self.weight.data, self.bias.data if self.bias is not None else None)
        y = F.conv_transpose2d(x, weight, bias, self.stride, self.padding, self.output_padding, self.groups,
                               self.dilation, op=None)
        return self.hand_to_norm(y)
