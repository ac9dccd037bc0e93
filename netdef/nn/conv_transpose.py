"""ConvTranspose2d: one deconvolution layer, named after the module path.

torch's output size is (in - 1) * stride - 2 * padding + dilation * (kernel - 1) + output_padding + 1.
TensorRT's deconvolution crops its full output by pre/post padding, so padding goes before and
padding - output_padding after: output padding is a crop left undone at the bottom/right end.
"""
from __future__ import annotations

from typing import Any

from netdef.module import Module, Parameter
from netdef.network import current
from netdef.nn.conv import pair


class ConvTranspose2d(Module):
    def __init__(self, in_channels: int, out_channels: int, kernel_size: int | tuple[int, int], stride: Any = 1,
                 padding: Any = 0, output_padding: Any = 0, groups: int = 1, bias: bool = True,
                 dilation: Any = 1) -> None:
        super().__init__()
        self.in_channels, self.out_channels, self.groups = in_channels, out_channels, groups
        self.kernel_size, self.stride = pair(kernel_size), pair(stride)
        self.padding, self.output_padding, self.dilation = pair(padding), pair(output_padding), pair(dilation)
        for op, p, s, d in zip(self.output_padding, self.padding, self.stride, self.dilation):
            if op >= max(s, d):
                raise ValueError(f"ConvTranspose2d: output_padding {self.output_padding} must be smaller than "
                                 f"stride {self.stride} or dilation {self.dilation} (as torch requires)")
            if op > p:
                # the extra rows would lie beyond TensorRT's full deconvolution output (zeros + bias in torch)
                raise ValueError(f"ConvTranspose2d: output_padding {self.output_padding} larger than padding "
                                 f"{self.padding} has no TensorRT deconvolution equivalent")
        # (in, out / groups, kH, kW): torch's layout, and TensorRT's
        self.weight = Parameter(in_channels, out_channels // groups, *self.kernel_size)
        self.bias = Parameter(out_channels) if bias else None

    def forward(self, x: Any) -> Any:
        net = current()
        shape = tuple(x.shape)
        if len(shape) != 4 or shape[1] != self.in_channels:
            raise ValueError(f"{self.path}: ConvTranspose2d({self.in_channels}, {self.out_channels}) got tensor "
                             f"{x.name!r} of shape {shape} (expected N,{self.in_channels},H,W)")
        x = net.to_compute(x)
        bias = self.bias.data if self.bias is not None else None
        layer = net.definition.add_deconvolution_nd(x, self.out_channels, self.kernel_size,
                                                    net.weights(self.weight.data), net.weights(bias))
        layer.stride_nd = self.stride
        layer.dilation_nd = self.dilation
        layer.num_groups = self.groups
        layer.pre_padding = self.padding
        layer.post_padding = tuple(p - op for p, op in zip(self.padding, self.output_padding))
        return net.name_layer(layer).get_output(0)
