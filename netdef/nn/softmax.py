"""Softmax over one dimension (ISoftMaxLayer)."""
from __future__ import annotations

from typing import Any

import netdef.functional as F
from netdef.module import Module


class Softmax(Module):
    def __init__(self, dim: int | None = None) -> None:
        super().__init__()
        if dim is None:
            raise ValueError("Softmax: give dim explicitly (PyTorch's implicit dim is deprecated)")
        self.dim = dim

    def forward(self, x: Any) -> Any:
        return F.softmax(x, self.dim, op=None)
