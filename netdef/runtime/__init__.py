"""The shared runtime: buffers by tensor name, infer with real output shapes, on TensorRT or netdef's executor.

Only numpy, TensorRT and cuda-python are needed (torch only inside the netdef-executor backend).
"""
from netdef.runtime.backends import Backend, NetdefExecutorBackend, TensorRTBackend
from netdef.runtime.buffers import DeviceArray, TensorSpec
from netdef.runtime.cuda import CudaError
from netdef.runtime.inputs import InputError
from netdef.runtime.session import InferenceSession, InferHandle, SessionClosedError

__all__ = ["Backend", "CudaError", "DeviceArray", "InferHandle", "InferenceSession", "InputError",
           "NetdefExecutorBackend", "SessionClosedError", "TensorRTBackend", "TensorSpec"]
