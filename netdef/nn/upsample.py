"""Upsample: F.interpolate as a module (nearest, nearest-exact, bilinear, bicubic, as torch.nn.Upsample)."""
from __future__ import annotations

from typing import Any

import netdef.functional as F
from netdef.functional.core import pair
from netdef.module import Module


class Upsample(Module):
    def __init__(self, size: Any = None, scale_factor: Any = None, mode: str = "nearest",
                 align_corners: bool | None = None) -> None:
        super().__init__()
        if mode not in ("nearest", "nearest-exact", "bilinear", "bicubic"):
            raise ValueError(f"Upsample(mode={mode!r}): supported modes are nearest, nearest-exact, bilinear, bicubic")
        if (size is None) == (scale_factor is None):
            raise ValueError("Upsample: give exactly one of size and scale_factor")
        self.size = pair(size) if size is not None else None
        if scale_factor is not None:
            sf = scale_factor if isinstance(scale_factor, (tuple, list)) else (scale_factor, scale_factor)
            self.scale_factor = (float(sf[0]), float(sf[1]))
        else:
            self.scale_factor = None
        self.mode, self.align_corners = mode, align_corners

    def forward(self, x: Any) -> Any:
        return F.interpolate(x, self.size, self.scale_factor, self.mode, self.align_corners, op=None)
