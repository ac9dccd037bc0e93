"""Errors raised while exporting or reading weights; each names the file, and where known the layer and tensor."""
from __future__ import annotations

import os

from netdef.darknet_cfg import DarknetCfgError  # noqa: F401  (re-exported: cfg errors are export errors too)


class WeightsExportError(ValueError):
    """Base class of every weights_export error."""


class WeightsFileError(WeightsExportError):
    """An HDF5 weights file (or a Darknet .weights file) that is missing, corrupt, truncated or does not match
    what the caller expects. `path`, `layer` and `tensor` are kept for programs; the message names them too."""

    def __init__(self, path: str | os.PathLike | None, message: str, layer: str | None = None,
                 tensor: str | None = None) -> None:
        self.path = os.fspath(path) if path is not None else None
        self.layer = layer
        self.tensor = tensor
        self.detail = message
        where = [f"layer {layer!r}" if layer else "", f"tensor {tensor!r}" if tensor else ""]
        where_text = ", ".join(w for w in where if w)
        prefix = f"{self.path}: " if self.path else ""
        super().__init__(f"{prefix}{where_text + ': ' if where_text else ''}{message}")


class DarknetWeightsError(WeightsFileError):
    """A Darknet .weights file whose size or header does not match its cfg."""


class CheckpointError(WeightsExportError):
    """A PyTorch checkpoint that cannot be read as a state dict."""
