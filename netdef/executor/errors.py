"""Errors of the definition executor: they always name the layer, its type and what went wrong."""
from __future__ import annotations


class ExecutorError(RuntimeError):
    """A definition could not be executed (bad inputs, a cycle, a runtime failure inside a layer)."""


class UnsupportedLayerError(ExecutorError):
    """A layer type or parameter value the executor does not implement (never computed approximately)."""

    def __init__(self, layer: str, layer_type: str, parameter: str | None = None, value: object = None) -> None:
        self.layer, self.layer_type, self.parameter, self.value = layer, layer_type, parameter, value
        what = f"layer type {layer_type}" if parameter is None else f"{parameter}={value}"
        super().__init__(f"layer '{layer}' ({layer_type}): unsupported {what}")
