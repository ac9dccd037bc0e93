"""Convolution and deconvolution; kernel and bias from the layer, or from inputs 1 and 2 when set."""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from netdef.executor.context import LayerContext, enum_name
from netdef.executor.handlers.spatial import flat_pad, is_symmetric, window_padding
from netdef.executor.registry import handles

_CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}
_DECONV = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}


def _weights(layer: Any, ctx: LayerContext,
             kernel_shape: tuple[int, ...]) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """Kernel and bias stored on the layer (None where they come from an input tensor instead)."""
    kernel = None
    if not ctx.has_input(1):
        values = layer.kernel
        ctx.require(values is not None and values.size == _prod(kernel_shape), "kernel size",
                    None if values is None else values.size)
        kernel = ctx.tensor(values, kernel_shape)
    bias = None
    if not ctx.has_input(2):
        values = layer.bias
        if values is not None and values.size:
            ctx.require(values.size == layer.num_output_maps, "bias size", values.size)
            bias = ctx.tensor(values, (values.size,))
    return kernel, bias


def _prod(shape: tuple[int, ...]) -> int:
    p = 1
    for s in shape:
        p *= s
    return p


def _geometry(layer: Any, ctx: LayerContext, ops: dict) -> tuple[tuple[int, ...], int, int, int]:
    """(kernel size, spatial rank, groups, input channels) of a (de)convolution, checked against `ops`."""
    ksize = tuple(layer.kernel_size_nd)
    nd = len(ksize)
    ctx.require(nd in ops, "kernel_size_nd", ksize)
    ctx.require(ctx.input_rank(0) == nd + 2, "input rank", ctx.input_rank(0))
    in_channels = tuple(ctx.input(0).shape)[1]
    ctx.require(in_channels > 0, "dynamic channel dim", in_channels)
    return ksize, nd, layer.num_groups, in_channels


@handles("CONVOLUTION")
def convolution(layer: Any, ctx: LayerContext) -> Any:
    ksize, nd, groups, in_channels = _geometry(layer, ctx, _CONV)
    kernel_shape = (layer.num_output_maps, in_channels // groups) + ksize
    kernel, bias = _weights(layer, ctx, kernel_shape)
    stride, dilation = tuple(layer.stride_nd), tuple(layer.dilation_nd)
    pads_for = window_padding(ctx, layer, ksize, stride, dilation)
    conv = _CONV[nd]

    def run(inputs: list) -> torch.Tensor:
        x = inputs[0]
        w = kernel if kernel is not None else inputs[1].reshape(kernel_shape)
        b = inputs[2].reshape(-1) if len(inputs) > 2 and inputs[2] is not None else bias
        pads = pads_for(x.shape[2:])
        if is_symmetric(pads):
            return conv(x, w, b, stride, [p for p, _ in pads], dilation, groups)
        return conv(F.pad(x, flat_pad(pads)), w, b, stride, 0, dilation, groups)

    return run


@handles("DECONVOLUTION")
def deconvolution(layer: Any, ctx: LayerContext) -> Any:
    ksize, nd, groups, in_channels = _geometry(layer, ctx, _DECONV)
    mode = enum_name(layer.padding_mode)
    ctx.require(mode == "EXPLICIT_ROUND_DOWN", "padding_mode", mode)
    # TensorRT's deconvolution kernel is laid out (C_in, K / groups, *kernel), as torch's conv_transpose.
    kernel_shape = (in_channels, layer.num_output_maps // groups) + ksize
    kernel, bias = _weights(layer, ctx, kernel_shape)
    stride, dilation = tuple(layer.stride_nd), tuple(layer.dilation_nd)
    pre = list(layer.pre_padding)[-nd:] if len(tuple(layer.pre_padding)) else [0] * nd
    post = list(layer.post_padding)[-nd:] if len(tuple(layer.post_padding)) else [0] * nd
    deconv = _DECONV[nd]

    def run(inputs: list) -> torch.Tensor:
        w = inputs[1].reshape(kernel_shape) if kernel is None else kernel
        b = inputs[2].reshape(-1) if len(inputs) > 2 and inputs[2] is not None else bias
        if pre == post:
            return deconv(inputs[0], w, b, stride, pre, 0, groups, dilation)
        y = deconv(inputs[0], w, b, stride, 0, 0, groups, dilation)
        # padding crops the full transposed-convolution output, possibly unevenly
        index = [slice(None), slice(None)] + [slice(p, y.shape[2 + i] - q) for i, (p, q) in enumerate(zip(pre, post))]
        return y[tuple(index)]

    return run
