"""netdef: rebuild PyTorch networks layer by layer with the TensorRT network-definition API."""
from __future__ import annotations

__version__ = "0.1.0"

# Light imports only: `import netdef` must work without TensorRT or torch installed.
from netdef.engine import BuildSettings, build_engine, load_engine, save_engine  # noqa: E402

__all__ = ["__version__", "BuildSettings", "build_engine", "save_engine", "load_engine"]
