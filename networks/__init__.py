"""Network classes (netdef definitions beside their PyTorch references) and the arch registry.

`networks.get(arch)` returns the user-facing class for an architecture name (`resnet50`, `yolov4`, ...);
each class registers itself in its module with `@register("name", ...)`.
"""
from __future__ import annotations

import importlib
from typing import Any, Callable

_REGISTRY: dict[str, Any] = {}
# Modules that register architectures; imported on first lookup so `import networks` stays light.
_MODULES = ("networks.resnet", "networks.yolov4", "networks.openpose", "networks.higherhrnet")


def register(*names: str) -> Callable[[Any], Any]:
    def deco(cls: Any) -> Any:
        for name in names:
            _REGISTRY[name] = cls
        return cls

    return deco


def _load_all() -> None:
    for module in _MODULES:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise


def get(arch: str) -> Any:
    _load_all()
    try:
        return _REGISTRY[arch]
    except KeyError:
        raise KeyError(f"unknown architecture {arch!r}; known: {', '.join(sorted(_REGISTRY))}") from None


def names() -> list[str]:
    _load_all()
    return sorted(_REGISTRY)
