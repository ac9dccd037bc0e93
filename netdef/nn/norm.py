"""BatchNorm2d: folded into the convolution it is paired with (netdef.nn.fold), else one per-channel scale layer."""
from __future__ import annotations

from typing import Any

import numpy as np

from netdef.module import Module, Parameter
from netdef.network import current
from netdef.nn.fold import folded_into, take_folded


class BatchNorm2d(Module):
    """Inference BatchNorm: y = (x - running_mean) / sqrt(running_var + eps) * weight + bias."""

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float = 0.1, affine: bool = True,
                 track_running_stats: bool = True) -> None:
        super().__init__()
        if not track_running_stats:
            raise ValueError("BatchNorm2d without running statistics cannot be turned into inference layers")
        self.num_features, self.eps = num_features, eps
        self.weight = Parameter(num_features) if affine else None
        self.bias = Parameter(num_features) if affine else None
        self.running_mean = Parameter(num_features)
        self.running_var = Parameter(num_features)

    def scale_shift(self) -> tuple[np.ndarray, np.ndarray]:
        """Per-channel (scale, shift) in float64 so that y = x * scale + shift."""
        mean = np.asarray(self.running_mean.data, dtype=np.float64)
        var = np.asarray(self.running_var.data, dtype=np.float64)
        gamma = np.asarray(self.weight.data, dtype=np.float64) if self.weight is not None else 1.0
        beta = np.asarray(self.bias.data, dtype=np.float64) if self.bias is not None else 0.0
        with np.errstate(divide="ignore", invalid="ignore"):  # check_loaded reports what this would break
            scale = gamma / np.sqrt(var + self.eps)
        return scale * np.ones(self.num_features), beta - mean * scale

    def check_loaded(self) -> list[str]:
        """A negative variance (or a zero one with eps 0) would fold into NaN/Inf weights: name the tensor."""
        prefix = f"{self.path}." if self.path else ""
        negative = int((np.asarray(self.running_var.data) < 0).sum())
        if negative:
            return [f"{prefix}running_var has {negative} negative value{'s' if negative > 1 else ''}"]
        scale, shift = self.scale_shift()
        bad = int((~(np.isfinite(scale) & np.isfinite(shift))).sum())
        if bad:
            return [f"{prefix}running_var: {bad} channel(s) give a non-finite scale weight / sqrt(running_var + eps) "
                    f"(eps={self.eps})"]
        return []

    def forward(self, x: Any) -> Any:
        net = current()
        channels = tuple(x.shape)[1] if len(tuple(x.shape)) > 1 else None
        if channels != self.num_features:
            raise ValueError(f"{self.path}: BatchNorm2d({self.num_features}) got tensor {x.name!r} of shape "
                             f"{tuple(x.shape)} (channel dim 1 must be {self.num_features})")
        if folded_into(self) is not None:
            take_folded(net, x, self)
            return x  # the conv emitted conv+norm; this path names that tensor now
        scale, shift = self.scale_shift()
        return channel_scale(x, scale, shift)


def channel_scale(x: Any, scale: np.ndarray, shift: np.ndarray, op: str | None = None) -> Any:
    """y = x * scale[c] + shift[c] over channel axis 1, as one IScaleLayer."""
    net = current()
    x = net.to_compute(x)
    mode = net.trt.ScaleMode.CHANNEL
    layer = net.definition.add_scale_nd(x, mode, net.weights(shift), net.weights(scale), net.weights(None), 1)
    return net.name_layer(layer, op).get_output(0)
