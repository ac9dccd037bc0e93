"""Conv2d: one convolution layer, named after the module path."""
from __future__ import annotations

from typing import Any

import numpy as np

from netdef.module import Module, Parameter
from netdef.network import current


def _pair(v: int | tuple[int, int]) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else (int(v[0]), int(v[1]))


class Conv2d(Module):
    def __init__(self, in_channels: int, out_channels: int, kernel_size: int | tuple[int, int], stride: Any = 1,
                 padding: Any = 0, dilation: Any = 1, groups: int = 1, bias: bool = True) -> None:
        super().__init__()
        self.in_channels, self.out_channels, self.groups = in_channels, out_channels, groups
        self.kernel_size, self.stride = _pair(kernel_size), _pair(stride)
        self.padding, self.dilation = _pair(padding), _pair(dilation)
        self.weight = Parameter(out_channels, in_channels // groups, *self.kernel_size)
        self.bias = Parameter(out_channels) if bias else None

    def forward(self, x: Any) -> Any:
        net = current()
        x = net.to_compute(x)
        bias = self.bias.data if self.bias is not None else None
        layer = net.definition.add_convolution_nd(x, self.out_channels, self.kernel_size,
                                                  net.weights(self.weight.data), net.weights(bias))
        layer.stride_nd = self.stride
        layer.padding_nd = self.padding
        layer.dilation_nd = self.dilation
        layer.num_groups = self.groups
        net.name_layer(layer)
        return layer.get_output(0)


def fold_into_conv(layer: Any, scale: np.ndarray, shift: np.ndarray) -> None:
    """Rewrite a convolution's kernel and bias so it also applies y*scale + shift per output channel."""
    net = current()
    kernel = np.asarray(layer.kernel, dtype=np.float64).reshape(layer.num_output_maps, -1)
    bias = np.asarray(layer.bias, dtype=np.float64) if layer.bias.size else np.zeros(layer.num_output_maps)
    kernel = kernel * scale[:, None]
    bias = bias * scale + shift
    layer.kernel = net.weights(kernel.reshape(-1))
    layer.bias = net.weights(bias)
