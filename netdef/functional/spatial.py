"""Spatial ops on (N, C, H, W) tensors: conv2d / conv_transpose2d with constant weights, max/avg pooling,
interpolate.

INT8 (the network's quantizer, netdef.quantize.policy): convolutions read their input per tensor and their
kernel per channel quantized, average pooling its input; max pooling and nearest resizing share their input's
scale and emit no Q/DQ.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from netdef.functional.core import out, padding_pairs, pair, rank, require, site
from netdef.network import current

Padding = Any  # p | (ph, pw) | ((top, bottom), (left, right))
DECONV_WEIGHT_AXIS = 0  # (in, out/groups, kh, kw): TensorRT quantizes deconvolution kernels per input channel


def _set_padding(layer: Any, padding: Padding, what: str) -> None:
    """Symmetric padding as padding_nd, asymmetric as pre/post padding."""
    (top, bottom), (left, right) = padding_pairs(padding, what)
    if min(top, bottom, left, right) < 0:
        raise ValueError(f"{what}: negative padding {padding!r}")
    if (top, left) == (bottom, right):
        layer.padding_nd = (top, left)
    else:
        layer.pre_padding = (top, left)
        layer.post_padding = (bottom, right)


def _check_4d(x: Any, what: str, channels: int | None = None) -> None:
    shape = tuple(x.shape)
    if len(shape) != 4 or (channels is not None and shape[1] != channels):
        expected = f"N,{channels},H,W" if channels is not None else "N,C,H,W"
        raise ValueError(f"{what} got tensor {x.name!r} of shape {shape} (expected {expected})")


def conv2d(x: Any, weight: np.ndarray, bias: np.ndarray | None = None, stride: Any = 1, padding: Padding = 0,
           dilation: Any = 1, groups: int = 1, op: str | None = "conv2d") -> Any:
    """torch.nn.functional.conv2d with constant numpy weights (out, in/groups, kh, kw), stored in the compute
    dtype (rounded once); depthwise when groups == in channels. Asymmetric padding as ((t, b), (l, r))."""
    net = current()
    weight = np.asarray(weight)
    what = site(op)
    if weight.ndim != 4:
        raise ValueError(f"{what}: weight must be (out, in/groups, kh, kw), got shape {weight.shape}")
    out_channels = int(weight.shape[0])
    _check_4d(x, f"{what}: conv2d with weight {weight.shape} (groups={groups})", weight.shape[1] * groups)
    if out_channels % groups:
        raise ValueError(f"{what}: groups={groups} does not divide the {out_channels} output channels")
    if bias is not None and np.shape(bias) != (out_channels,):
        raise ValueError(f"{what}: bias must have shape ({out_channels},), got {np.shape(bias)}")
    x, kernel = net.quant.weighted(net.to_compute(x), weight, 0, what)  # per output channel
    layer = net.definition.add_convolution_nd(x, out_channels, tuple(weight.shape[2:]),
                                              net.weights(weight if kernel is None else None), net.weights(bias))
    if kernel is not None:  # tensor weights only on a convolution created with an empty kernel
        layer.set_input(1, kernel)
    layer.stride_nd = pair(stride, f"{what} stride")
    _set_padding(layer, padding, what)
    layer.dilation_nd = pair(dilation, f"{what} dilation")
    layer.num_groups = int(groups)
    return net.quant.weighted_output(out(layer, op))


def conv_transpose2d(x: Any, weight: np.ndarray, bias: np.ndarray | None = None, stride: Any = 1, padding: Any = 0,
                     output_padding: Any = 0, groups: int = 1, dilation: Any = 1,
                     op: str | None = "conv_transpose2d") -> Any:
    """torch.nn.functional.conv_transpose2d with constant numpy weights (in, out/groups, kh, kw).

    torch's output size is (in - 1) * stride - 2 * padding + dilation * (kernel - 1) + output_padding + 1;
    TensorRT's deconvolution crops its full output by pre/post padding, so `padding` goes before and
    `padding - output_padding` after (output padding is a crop left undone at the bottom/right end).
    """
    net = current()
    weight = np.asarray(weight)
    what = site(op)
    if weight.ndim != 4:
        raise ValueError(f"{what}: weight must be (in, out/groups, kh, kw), got shape {weight.shape}")
    _check_4d(x, f"{what}: conv_transpose2d with weight {weight.shape}", int(weight.shape[0]))
    out_channels = int(weight.shape[1]) * groups
    if bias is not None and np.shape(bias) != (out_channels,):
        raise ValueError(f"{what}: bias must have shape ({out_channels},), got {np.shape(bias)}")
    pad, extra = pair(padding, f"{what} padding"), pair(output_padding, f"{what} output_padding")
    if any(e > p for e, p in zip(extra, pad)):
        # the extra rows would lie beyond TensorRT's full deconvolution output (zeros + bias in torch)
        raise ValueError(f"{what}: output_padding {extra} larger than padding {pad} has no TensorRT "
                         "deconvolution equivalent")
    # INT8 kernels per input channel (axis 0): what TensorRT's deconvolution kernels take (NVIDIA/TensorRT#2380)
    x, kernel = net.quant.weighted(net.to_compute(x), weight, DECONV_WEIGHT_AXIS, what)
    layer = net.definition.add_deconvolution_nd(x, out_channels, tuple(weight.shape[2:]),
                                                net.weights(weight if kernel is None else None), net.weights(bias))
    if kernel is not None:
        layer.set_input(1, kernel)
    layer.stride_nd = pair(stride, f"{what} stride")
    layer.dilation_nd = pair(dilation, f"{what} dilation")
    layer.num_groups = int(groups)
    layer.pre_padding = pad
    layer.post_padding = tuple(p - e for p, e in zip(pad, extra))
    return net.quant.weighted_output(out(layer, op))


def _pool(x: Any, kind: str, kernel_size: Any, stride: Any, padding: Padding, ceil_mode: bool, op: str | None) -> Any:
    net = current()
    what = site(op)
    require(x, "f", op)
    if rank(x) != 4:
        raise ValueError(f"{what}: pooling needs an (N, C, H, W) tensor, got {x.name!r} {tuple(x.shape)}")
    kernel = pair(kernel_size, f"{what} kernel_size")
    layer = net.definition.add_pooling_nd(x, getattr(net.trt.PoolingType, kind), kernel)
    layer.stride_nd = pair(stride, f"{what} stride") if stride is not None else kernel
    _set_padding(layer, padding, what)
    if ceil_mode:
        layer.padding_mode = net.trt.PaddingMode.EXPLICIT_ROUND_UP
    return layer


def max_pool2d(x: Any, kernel_size: Any, stride: Any = None, padding: Padding = 0, ceil_mode: bool = False,
               op: str | None = "max_pool2d") -> Any:
    """torch.nn.functional.max_pool2d (padding never wins a max); asymmetric padding as ((t, b), (l, r))."""
    y = out(_pool(x, "MAX", kernel_size, stride, padding, ceil_mode, op), op)
    current().quant.share_scale(x, y)
    return y


def avg_pool2d(x: Any, kernel_size: Any, stride: Any = None, padding: Padding = 0, ceil_mode: bool = False,
               count_include_pad: bool = True, op: str | None = "avg_pool2d") -> Any:
    """torch.nn.functional.avg_pool2d; asymmetric padding as ((t, b), (l, r)). INT8: the input is quantized."""
    layer = _pool(current().quant.input(x), "AVERAGE", kernel_size, stride, padding, ceil_mode, op)
    layer.average_count_excludes_padding = not count_include_pad
    return out(layer, op)


# torch mode -> (TensorRT InterpolationMode, coordinate transform without align_corners, nearest rounding)
_RESIZE = {
    "nearest": ("NEAREST", "ASYMMETRIC", "FLOOR"),  # src = floor(dst * in / out), torch's 'nearest'
    "nearest-exact": ("NEAREST", "HALF_PIXEL", "HALF_UP"),  # src = floor((dst + 0.5) * in / out)
    "bilinear": ("LINEAR", "HALF_PIXEL", "FLOOR"),
    "bicubic": ("CUBIC", "HALF_PIXEL", "FLOOR"),
}
TORCH_CUBIC_COEFF = -0.75  # torch's bicubic kernel parameter A (TensorRT's cubic_coeff)


def interpolate(x: Any, size: Any = None, scale_factor: Any = None, mode: str = "nearest",
                align_corners: bool | None = None, op: str | None = "interpolate") -> Any:
    """torch.nn.functional.interpolate on the spatial dims (all but N, C) as one IResizeLayer.

    Modes nearest, nearest-exact, bilinear and bicubic (4-D inputs), with torch's coordinate rules: a scale
    factor is used as given (output = floor(in * scale)), a size gives scale out/in; bicubic uses A = -0.75 and
    replicates the border, as torch does.
    """
    net = current()
    trt = net.trt
    what = site(op)
    if mode not in _RESIZE:
        raise ValueError(f"{what}: mode {mode!r}: expected one of {', '.join(_RESIZE)}")
    require(x, "f", op)
    shape = tuple(x.shape)
    spatial = len(shape) - 2
    if mode in ("bilinear", "bicubic") and spatial != 2:
        raise ValueError(f"{what}: {mode} needs an (N, C, H, W) tensor, got {x.name!r} {shape}")
    if mode.startswith("nearest") and align_corners is not None:
        raise ValueError(f"{what}: align_corners only applies to bilinear and bicubic (torch refuses it for {mode})")
    if (size is None) == (scale_factor is None):
        raise ValueError(f"{what}: give exactly one of size and scale_factor")
    sizes = _per_dim(size, spatial, int, what) if size is not None else None
    scales = _per_dim(scale_factor, spatial, float, what) if scale_factor is not None else None
    dynamic = None  # an output-shape tensor (made before the resize: layers stay in topological order)
    if sizes is not None and any(d < 0 for d in shape):
        from netdef.functional.shape import shape_with

        dynamic = shape_with(x, {2 + i: s for i, s in enumerate(sizes)}, f"{op or 'interpolate'}/shape")
    layer = net.definition.add_resize(x)
    if dynamic is not None:
        layer.set_input(1, dynamic)
    elif sizes is not None:  # a shape, not scales: TensorRT then derives the exact ratio itself
        layer.shape = shape[:2] + tuple(sizes)
    else:
        layer.scales = [1.0, 1.0] + list(scales)
    interpolation, transform, rounding = _RESIZE[mode]
    layer.resize_mode = getattr(trt.InterpolationMode, interpolation)
    layer.coordinate_transformation = getattr(trt.ResizeCoordinateTransformation,
                                              "ALIGN_CORNERS" if align_corners else transform)
    layer.selector_for_single_pixel = trt.ResizeSelector.FORMULA
    layer.nearest_rounding = getattr(trt.ResizeRoundMode, rounding)
    if interpolation == "CUBIC":
        layer.cubic_coeff = TORCH_CUBIC_COEFF
        layer.exclude_outside = False
    y = out(layer, op)
    if interpolation == "NEAREST":  # copies values: shares the input's scale
        net.quant.share_scale(x, y)
    return y


def _per_dim(value: Any, count: int, kind: type, what: str) -> list[Any]:
    values = [value] * count if isinstance(value, (int, float, np.number)) else list(value)
    if len(values) != count or any(v <= 0 for v in values):
        raise ValueError(f"{what}: expected {count} positive value(s), got {value!r}")
    return [kind(v) for v in values]
