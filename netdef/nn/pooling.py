"""Pooling modules over F.max_pool2d / F.avg_pool2d; AdaptiveAvgPool2d(1) is a pooling over the whole map."""
from __future__ import annotations

from typing import Any

import netdef.functional as F
from netdef.functional.core import pair
from netdef.module import Module


class MaxPool2d(Module):
    def __init__(self, kernel_size: Any, stride: Any = None, padding: Any = 0, dilation: Any = 1,
                 ceil_mode: bool = False) -> None:
        super().__init__()
        if pair(dilation) != (1, 1):
            raise ValueError("MaxPool2d: dilation other than 1 has no TensorRT pooling equivalent")
        self.kernel_size = pair(kernel_size)
        self.stride = pair(stride) if stride is not None else self.kernel_size
        self.padding, self.ceil_mode = pair(padding), ceil_mode

    def forward(self, x: Any) -> Any:
        return F.max_pool2d(x, self.kernel_size, self.stride, self.padding, self.ceil_mode, op=None)


class AvgPool2d(Module):
    def __init__(self, kernel_size: Any, stride: Any = None, padding: Any = 0, ceil_mode: bool = False,
                 count_include_pad: bool = True) -> None:
        super().__init__()
        self.kernel_size = pair(kernel_size)
        self.stride = pair(stride) if stride is not None else self.kernel_size
        self.padding, self.ceil_mode, self.count_include_pad = pair(padding), ceil_mode, count_include_pad

    def forward(self, x: Any) -> Any:
        return F.avg_pool2d(x, self.kernel_size, self.stride, self.padding, self.ceil_mode, self.count_include_pad,
                            op=None)


class AdaptiveAvgPool2d(Module):
    """Only output size 1 (global average pooling), which is what classification heads use."""

    def __init__(self, output_size: Any = 1) -> None:
        super().__init__()
        if pair(output_size) != (1, 1):
            raise ValueError(f"AdaptiveAvgPool2d({output_size!r}): only output size 1 is supported")
        self.output_size = (1, 1)

    def forward(self, x: Any) -> Any:
        # An average pooling over the whole (static) map rather than a mean reduction: pooling has INT8
        # kernels, so TensorRT can move an FC input's quantize across it (a reduce makes 8.6's builder fail).
        h, w = (int(d) for d in tuple(x.shape)[-2:])
        if h < 0 or w < 0:
            raise ValueError(f"{self.path}: AdaptiveAvgPool2d needs a static spatial size, got {tuple(x.shape)}")
        return F.avg_pool2d(x, (h, w), op=None)
