"""Conv2d: one convolution layer, named after the module path.

Each convolution is remembered on the network being built (`conv_producers`) with its kernel and bias
in full precision, so a BatchNorm2d that directly follows can fold into it (`fold_into_conv`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from netdef.module import Module, Parameter
from netdef.network import current


def pair(v: int | tuple[int, int]) -> tuple[int, int]:
    """torch.nn's int-or-pair arguments (kernel_size, stride, ...) as a pair."""
    return (v, v) if isinstance(v, int) else (int(v[0]), int(v[1]))


class Conv2d(Module):
    def __init__(self, in_channels: int, out_channels: int, kernel_size: int | tuple[int, int], stride: Any = 1,
                 padding: Any = 0, dilation: Any = 1, groups: int = 1, bias: bool = True) -> None:
        super().__init__()
        self.in_channels, self.out_channels, self.groups = in_channels, out_channels, groups
        self.kernel_size, self.stride = pair(kernel_size), pair(stride)
        self.padding, self.dilation = pair(padding), pair(dilation)
        self.weight = Parameter(out_channels, in_channels // groups, *self.kernel_size)
        self.bias = Parameter(out_channels) if bias else None

    def forward(self, x: Any) -> Any:
        net = current()
        shape = tuple(x.shape)
        if len(shape) != 4 or shape[1] != self.in_channels:
            raise ValueError(f"{self.path}: Conv2d({self.in_channels}, {self.out_channels}) got tensor {x.name!r} of "
                             f"shape {shape} (expected N,{self.in_channels},H,W)")
        x = net.to_compute(x)
        bias = self.bias.data if self.bias is not None else None
        layer = net.definition.add_convolution_nd(x, self.out_channels, self.kernel_size,
                                                  net.weights(self.weight.data), net.weights(bias))
        layer.stride_nd = self.stride
        layer.padding_nd = self.padding
        layer.dilation_nd = self.dilation
        layer.num_groups = self.groups
        net.name_layer(layer)
        conv_producers(net).append(ConvRecord(layer, net.definition.num_layers - 1, self.weight.data, bias))
        return layer.get_output(0)


@dataclass
class ConvRecord:
    """A convolution layer with its kernel/bias as loaded (FP32), so a fold rounds to FP16 only once."""

    layer: Any
    index: int  # layer index in the definition, to look for consumers added after it
    kernel: np.ndarray
    bias: np.ndarray | None
    folded: bool = False  # one fold per conv: after it the output tensor already means "conv + norm"


def conv_producers(net: Any) -> list[ConvRecord]:
    """The convolutions added to `net` so far (kept on the Network instance, in creation order)."""
    return net.__dict__.setdefault("_netdef_conv_records", [])


def foldable_conv(net: Any, tensor: Any) -> ConvRecord | None:
    """The convolution that produced `tensor` if nothing consumes or outputs that tensor yet, else None.

    Folding rewrites what the conv's output tensor means, so a forward that later reuses the raw conv
    output (`c = conv(x); y = bn(c); z = f(c)`) would see the normalized values; torch-style forwards
    (ResNet, Darknet) never do, and a second norm on the same conv gets a scale layer instead.
    """
    name = tensor.name
    record = next((r for r in reversed(conv_producers(net)) if r.layer.get_output(0).name == name), None)
    if record is None or record.folded:
        return None
    definition = net.definition
    for i in range(record.index + 1, definition.num_layers):
        layer = definition.get_layer(i)
        if any(layer.get_input(j) is not None and layer.get_input(j).name == name for j in range(layer.num_inputs)):
            return None
    if any(definition.get_output(i).name == name for i in range(definition.num_outputs)):
        return None
    return record


def fold_into_conv(layer: Any, scale: np.ndarray, shift: np.ndarray, record: ConvRecord | None = None) -> None:
    """Rewrite a convolution's kernel and bias so it also applies y*scale + shift per output channel.

    With `record` the fold starts from its FP32 kernel/bias (not the layer's possibly FP16 copy) and
    updates it, so FP16 weights are rounded once. The product is taken in FP32: float64 would cost
    a quarter second on ResNet-50 for an error (~1e-7) far below any tolerance.
    """
    net = current()
    if record is not None:
        kernel = record.kernel.reshape(layer.num_output_maps, -1)
        bias = record.bias if record.bias is not None else np.zeros(layer.num_output_maps)
    else:
        kernel = np.asarray(layer.kernel, dtype=np.float32).reshape(layer.num_output_maps, -1)
        bias = np.asarray(layer.bias, dtype=np.float64) if layer.bias.size else np.zeros(layer.num_output_maps)
    kernel = kernel.astype(np.float32, copy=False) * np.asarray(scale, dtype=np.float32)[:, None]
    bias = np.asarray(bias, dtype=np.float64) * scale + shift
    if record is not None:
        record.kernel, record.bias, record.folded = kernel.reshape(record.kernel.shape), bias, True
    layer.kernel = net.weights(kernel.reshape(-1))
    layer.bias = net.weights(bias)
