"""Pooling: MaxPool2d, AvgPool2d (IPoolingLayer) and AdaptiveAvgPool2d(1) (a mean reduction over H, W)."""
from __future__ import annotations

from typing import Any

from netdef.module import Module
from netdef.network import current
from netdef.nn.conv import pair


def _pool(x: Any, kind: str, kernel: tuple[int, int], stride: tuple[int, int], padding: tuple[int, int],
          ceil_mode: bool) -> Any:
    net = current()
    layer = net.definition.add_pooling_nd(x, getattr(net.trt.PoolingType, kind), kernel)
    layer.stride_nd = stride
    layer.padding_nd = padding
    if ceil_mode:
        layer.padding_mode = net.trt.PaddingMode.EXPLICIT_ROUND_UP
    return layer


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
        layer = _pool(x, "MAX", self.kernel_size, self.stride, self.padding, self.ceil_mode)
        return current().name_layer(layer).get_output(0)


class AvgPool2d(Module):
    def __init__(self, kernel_size: Any, stride: Any = None, padding: Any = 0, ceil_mode: bool = False,
                 count_include_pad: bool = True) -> None:
        super().__init__()
        self.kernel_size = pair(kernel_size)
        self.stride = pair(stride) if stride is not None else self.kernel_size
        self.padding, self.ceil_mode, self.count_include_pad = pair(padding), ceil_mode, count_include_pad

    def forward(self, x: Any) -> Any:
        layer = _pool(x, "AVERAGE", self.kernel_size, self.stride, self.padding, self.ceil_mode)
        layer.average_count_excludes_padding = not self.count_include_pad
        return current().name_layer(layer).get_output(0)


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
        net = current()
        h, w = (int(d) for d in tuple(x.shape)[-2:])
        if h < 0 or w < 0:
            raise ValueError(f"{net.path}: AdaptiveAvgPool2d needs a static spatial size, got {tuple(x.shape)}")
        layer = net.definition.add_pooling_nd(x, net.trt.PoolingType.AVERAGE, (h, w))
        return net.name_layer(layer).get_output(0)
