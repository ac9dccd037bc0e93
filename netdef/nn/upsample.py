"""Upsample (nearest) as an IResizeLayer with PyTorch's 'nearest' rule: src = floor(dst / scale)."""
from __future__ import annotations

from typing import Any

import netdef.functional as F
from netdef.module import Module
from netdef.network import current
from netdef.nn.conv import pair


class Upsample(Module):
    def __init__(self, size: Any = None, scale_factor: Any = None, mode: str = "nearest",
                 align_corners: bool | None = None) -> None:
        super().__init__()
        if mode != "nearest":
            raise ValueError(f"Upsample(mode={mode!r}): only 'nearest' is supported")
        if (size is None) == (scale_factor is None):
            raise ValueError("Upsample: give exactly one of size and scale_factor")
        self.size = pair(size) if size is not None else None
        if scale_factor is not None:
            sf = scale_factor if isinstance(scale_factor, (tuple, list)) else (scale_factor, scale_factor)
            self.scale_factor = (float(sf[0]), float(sf[1]))
        else:
            self.scale_factor = None
        self.mode = mode

    def forward(self, x: Any) -> Any:
        net = current()
        trt = net.trt
        shape = tuple(x.shape)
        rank = len(shape)
        dynamic = None  # an output-shape tensor (made before the resize: layers stay in topological order)
        if self.size is not None and any(d < 0 for d in shape):
            dynamic = F.shape_with(x, {rank - 2: self.size[0], rank - 1: self.size[1]}, "shape")
        layer = net.definition.add_resize(x)
        if dynamic is not None:
            layer.set_input(1, dynamic)
        elif self.size is not None:  # a shape, not scales: TensorRT then derives the exact ratio itself
            layer.shape = shape[:-2] + self.size
        else:
            layer.scales = [1.0] * (rank - 2) + list(self.scale_factor)
        layer.resize_mode = trt.InterpolationMode.NEAREST
        layer.coordinate_transformation = trt.ResizeCoordinateTransformation.ASYMMETRIC
        layer.nearest_rounding = trt.ResizeRoundMode.FLOOR
        return net.name_layer(layer).get_output(0)
