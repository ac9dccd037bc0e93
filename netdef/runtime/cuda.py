"""Thin wrappers over the CUDA runtime API of cuda-python (`cuda.bindings.runtime`).

cuda-python functions return tuples `(error, value...)` instead of raising; `check` turns a failed
call into `CudaError` naming the call and the CUDA error (`cudaMalloc(4096): cudaErrorMemoryAllocation`).
The runtime module is imported on first use, and tests may swap it (`use_cudart`) for a host-memory fake
so every code path above this file runs in CI without a GPU.
"""
from __future__ import annotations

import ctypes
import logging
from typing import Any

import numpy as np

log = logging.getLogger("netdef.runtime.cuda")
_cudart: Any = None


class CudaError(RuntimeError):
    """A CUDA runtime call failed; `.call` is the call, `.error` the CUDA error name."""

    def __init__(self, call: str, error: str, description: str = "") -> None:
        self.call, self.error = call, error
        detail = f" ({description})" if description else ""
        super().__init__(f"CUDA call {call} failed: {error}{detail}")


def cudart() -> Any:
    """The cuda-python runtime module (`cuda.bindings.runtime`; `cuda.cudart` in cuda-python < 12.6)."""
    global _cudart
    if _cudart is None:
        try:
            from cuda.bindings import runtime as module
        except ImportError:
            try:
                from cuda import cudart as module  # type: ignore[no-redef]
            except ImportError as exc:
                raise CudaError("import cuda.bindings.runtime", "ModuleNotFound",
                                "install cuda-python: `pip install cuda-python`") from exc
        _cudart = module
    return _cudart


def use_cudart(module: Any) -> Any:
    """Swap the runtime module (tests pass a host-memory fake); returns the previous one."""
    global _cudart
    previous, _cudart = _cudart, module
    return previous


def _error_text(rt: Any, err: Any) -> tuple[str, str]:
    name = getattr(err, "name", str(err))
    try:
        described = rt.cudaGetErrorString(err)
        text = described[1] if isinstance(described, tuple) else described
        text = text.decode() if isinstance(text, bytes) else str(text)
    except Exception:  # the description is a courtesy; never hide the original error behind a second one
        text = ""
    return name, text


def check(result: Any, call: str) -> Any:
    """Unpack a cuda-python result: raise CudaError on failure, else return None, the value, or a tuple."""
    err, *values = result if isinstance(result, tuple) else (result,)
    if int(err) != 0:
        name, text = _error_text(cudart(), err)
        raise CudaError(call, name, text)
    if not values:
        return None
    return values[0] if len(values) == 1 else tuple(values)


def device_count() -> int:
    return int(check(cudart().cudaGetDeviceCount(), "cudaGetDeviceCount()"))


def set_device(device: int) -> None:
    check(cudart().cudaSetDevice(device), f"cudaSetDevice({device})")


def mem_info() -> tuple[int, int]:
    """(free, total) bytes of the current device."""
    free, total = check(cudart().cudaMemGetInfo(), "cudaMemGetInfo()")
    return int(free), int(total)


def clear_last_error() -> None:
    """Reset the sticky-free error state after a failure we recovered from (e.g. a refused graph capture)."""
    cudart().cudaGetLastError()


class DeviceBuffer:
    """`nbytes` of device memory from cudaMalloc; `free()` is idempotent."""

    def __init__(self, nbytes: int) -> None:
        self.nbytes = int(nbytes)
        self.ptr = int(check(cudart().cudaMalloc(max(self.nbytes, 1)), f"cudaMalloc({self.nbytes})"))

    def free(self) -> None:
        if self.ptr:
            ptr, self.ptr = self.ptr, 0
            check(cudart().cudaFree(ptr), f"cudaFree({ptr:#x})")


class PinnedBuffer:
    """`nbytes` of page-locked host memory (cudaMallocHost), viewable as numpy arrays."""

    def __init__(self, nbytes: int) -> None:
        self.nbytes = int(nbytes)
        self.ptr = int(check(cudart().cudaMallocHost(max(self.nbytes, 1)), f"cudaMallocHost({self.nbytes})"))
        self._bytes = np.frombuffer((ctypes.c_ubyte * max(self.nbytes, 1)).from_address(self.ptr), dtype=np.uint8)

    def view(self, dtype: Any, shape: tuple[int, ...]) -> np.ndarray:
        """A numpy array over the first bytes of the buffer (no copy)."""
        dtype = np.dtype(dtype)
        count = int(np.prod(shape, dtype=np.int64))
        if count * dtype.itemsize > self.nbytes:
            raise ValueError(f"shape {tuple(shape)} of {dtype} needs {count * dtype.itemsize} bytes, "
                             f"the pinned buffer holds {self.nbytes}")
        return self._bytes[: count * dtype.itemsize].view(dtype).reshape(shape)

    def free(self) -> None:
        if self.ptr:
            ptr, self.ptr = self.ptr, 0
            self._bytes = np.empty(0, np.uint8)  # no view may outlive the memory
            check(cudart().cudaFreeHost(ptr), f"cudaFreeHost({ptr:#x})")


class Stream:
    """A CUDA stream. Blocking (the default flags) so it orders after work on the legacy default
    stream, which is where torch and most libraries write the device arrays we read in place."""

    def __init__(self, non_blocking: bool = False) -> None:
        rt = cudart()
        flags = int(rt.cudaStreamNonBlocking) if non_blocking else int(rt.cudaStreamDefault)
        self.handle = check(rt.cudaStreamCreateWithFlags(flags), "cudaStreamCreateWithFlags()")

    @property
    def ptr(self) -> int:
        return int(self.handle)

    def synchronize(self) -> None:
        check(cudart().cudaStreamSynchronize(self.handle), f"cudaStreamSynchronize({self.ptr:#x})")

    def destroy(self) -> None:
        if self.handle is not None:
            handle, self.handle = self.handle, None
            check(cudart().cudaStreamDestroy(handle), "cudaStreamDestroy()")


def _kind(name: str) -> Any:
    return getattr(cudart().cudaMemcpyKind, f"cudaMemcpy{name}")


def copy_host_to_device(dst: int, src: int, nbytes: int, stream: Stream) -> None:
    check(cudart().cudaMemcpyAsync(dst, src, nbytes, _kind("HostToDevice"), stream.handle),
          f"cudaMemcpyAsync(HostToDevice, {nbytes} bytes)")


def copy_device_to_host(dst: int, src: int, nbytes: int, stream: Stream) -> None:
    check(cudart().cudaMemcpyAsync(dst, src, nbytes, _kind("DeviceToHost"), stream.handle),
          f"cudaMemcpyAsync(DeviceToHost, {nbytes} bytes)")


def copy_device_to_device(dst: int, src: int, nbytes: int, stream: Stream) -> None:
    check(cudart().cudaMemcpyAsync(dst, src, nbytes, _kind("DeviceToDevice"), stream.handle),
          f"cudaMemcpyAsync(DeviceToDevice, {nbytes} bytes)")


class Event:
    """A CUDA event, for timing on a stream and for waiting on one piece of work."""

    def __init__(self) -> None:
        self.handle = check(cudart().cudaEventCreate(), "cudaEventCreate()")

    def record(self, stream: Stream) -> None:
        check(cudart().cudaEventRecord(self.handle, stream.handle), "cudaEventRecord()")

    def synchronize(self) -> None:
        check(cudart().cudaEventSynchronize(self.handle), "cudaEventSynchronize()")

    def elapsed_ms(self, start: "Event") -> float:
        return float(check(cudart().cudaEventElapsedTime(start.handle, self.handle), "cudaEventElapsedTime()"))

    def destroy(self) -> None:
        if self.handle is not None:
            handle, self.handle = self.handle, None
            check(cudart().cudaEventDestroy(handle), "cudaEventDestroy()")


class CapturedGraph:
    """Work captured on a stream (cudaStreamBeginCapture .. EndCapture) and instantiated for replay."""

    def __init__(self, graph: Any, exec_graph: Any) -> None:
        self.graph, self.exec_graph = graph, exec_graph

    def launch(self, stream: Stream) -> None:
        check(cudart().cudaGraphLaunch(self.exec_graph, stream.handle), "cudaGraphLaunch()")

    def destroy(self) -> None:
        rt = cudart()
        if self.exec_graph is not None:
            check(rt.cudaGraphExecDestroy(self.exec_graph), "cudaGraphExecDestroy()")
            self.exec_graph = None
        if self.graph is not None:
            check(rt.cudaGraphDestroy(self.graph), "cudaGraphDestroy()")
            self.graph = None


def capture_graph(stream: Stream, enqueue: Any) -> CapturedGraph:
    """Capture what `enqueue()` puts on `stream` into an executable graph.

    The capture is always ended, also when `enqueue` fails, so the stream is usable afterwards; a
    failure raises (CudaError, or RuntimeError from `enqueue`) and the caller falls back to plain launches.
    """
    rt = cudart()
    mode = rt.cudaStreamCaptureMode.cudaStreamCaptureModeThreadLocal
    check(rt.cudaStreamBeginCapture(stream.handle, mode), "cudaStreamBeginCapture()")
    try:
        enqueue()
    except BaseException:
        ended = rt.cudaStreamEndCapture(stream.handle)
        if int(ended[0]) == 0 and ended[1] is not None:
            rt.cudaGraphDestroy(ended[1])
        raise
    graph = check(rt.cudaStreamEndCapture(stream.handle), "cudaStreamEndCapture()")
    try:
        exec_graph = check(rt.cudaGraphInstantiate(graph, 0), "cudaGraphInstantiate()")
    except CudaError:
        rt.cudaGraphDestroy(graph)
        raise
    return CapturedGraph(graph, exec_graph)
