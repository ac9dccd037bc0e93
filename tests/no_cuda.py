"""A pytest plugin that runs the suite as if the optional `cuda` extra (cuda-python) were not installed:

    python -m pytest -q -p tests.no_cuda

Every import of `cuda` or `cuda.*` raises ModuleNotFoundError, as on a machine without the package; tests
that need it must skip, everything else must pass. tests/test_no_cuda.py runs the runtime tests this way.
"""
from __future__ import annotations

import importlib.abc
import sys
from typing import Any


class BlockCuda(importlib.abc.MetaPathFinder):
    def find_spec(self, name: str, path: Any = None, target: Any = None) -> None:
        if name == "cuda" or name.startswith("cuda."):
            raise ModuleNotFoundError(f"No module named {name!r} (blocked by tests.no_cuda)", name=name)
        return None


def block() -> None:
    for name in [n for n in sys.modules if n == "cuda" or n.startswith("cuda.")]:
        del sys.modules[name]
    if not any(isinstance(f, BlockCuda) for f in sys.meta_path):
        sys.meta_path.insert(0, BlockCuda())


block()
