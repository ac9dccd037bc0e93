"""Execute a TensorRT INetworkDefinition layer by layer with torch, on CPU or CUDA.

Every layer's type, parameters and weights are read back through the TensorRT API, so what is checked is
exactly what TensorRT receives. `compile(definition, device)` gives a reusable `Executor`;
`execute(...)` is the one-shot form. Verification and INT8 calibration are built on it.
"""
from netdef.executor.core import Executor, Step, compile, execute
from netdef.executor.errors import ExecutorError, UnsupportedLayerError

__all__ = ["Executor", "ExecutorError", "Step", "UnsupportedLayerError", "compile", "execute"]
