"""Shape-only modules: Flatten (a reshape) and Identity (no layer)."""
from __future__ import annotations

from typing import Any

import netdef.functional as F
from netdef.module import Module


class Flatten(Module):
    def __init__(self, start_dim: int = 1, end_dim: int = -1) -> None:
        super().__init__()
        self.start_dim, self.end_dim = start_dim, end_dim

    def forward(self, x: Any) -> Any:
        return F.flatten(x, self.start_dim, self.end_dim, op=None)


class Identity(Module):
    """Returns its input; no layer is added (like torch.nn.Identity)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__()

    def forward(self, x: Any) -> Any:
        return x
