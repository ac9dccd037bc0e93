"""Shared pieces for the runtime tests: a tiny two-input network with its float64 torch reference, and
host-memory stand-ins for cuda-python and for a TensorRT engine, so the TensorRT backend's own code
(buffers, set_input_shape, set_tensor_address, execute_async_v3, graph capture) runs in CI without a GPU.
"""
from __future__ import annotations

import ctypes
import enum
import types
import weakref
from typing import Any

import numpy as np

from netdef.verify import relative_error as rel_err  # noqa: F401  (used by the runtime tests)
from netdef import functional as F
from netdef import trt as shim
from netdef.module import Module
from netdef.network import Network, np_dtype
from netdef.nn import AdaptiveAvgPool2d, Conv2d, ReLU

C_IN, C_OUT, SIZE = 3, 4, 8


class Tiny(Module):
    """pooled = mean(relu(conv(x))) (N, 4); sum = relu(conv(x)) + y (N, 4, 8, 8)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = Conv2d(C_IN, C_OUT, 3, padding=1)
        self.relu = ReLU()
        self.pool = AdaptiveAvgPool2d(1)

    def forward(self, x: Any, y: Any) -> tuple[Any, Any]:
        a = self.relu(self.conv(x))
        return F.flatten(self.pool(a), 1), F.add(a, y)


def tiny_weights(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"conv.weight": rng.standard_normal((C_OUT, C_IN, 3, 3)).astype(np.float32) * 0.5,
            "conv.bias": rng.standard_normal(C_OUT).astype(np.float32) * 0.1}


def tiny_network(weights: dict[str, np.ndarray], precision: str = "fp32") -> Network:
    """Outputs declared in the order ("sum", "pooled"), unlike the order the layers are created in."""
    model = Tiny()
    model.load_weights(weights, origin="test")
    with Network("tiny", precision) as net:
        x = net.add_input("x", (-1, C_IN, SIZE, SIZE))
        y = net.add_input("y", (-1, C_OUT, SIZE, SIZE))
        pooled, summed = model(x, y)
        net.mark_output(summed, "sum")
        net.mark_output(pooled, "pooled")
    return net


def tiny_reference(weights: dict[str, np.ndarray], x: np.ndarray, y: np.ndarray) -> dict[str, np.ndarray]:
    import torch

    w = torch.from_numpy(weights["conv.weight"]).double()
    b = torch.from_numpy(weights["conv.bias"]).double()
    a = torch.relu(torch.nn.functional.conv2d(torch.from_numpy(x).double(), w, b, padding=1))
    return {"sum": (a + torch.from_numpy(y).double()).numpy(), "pooled": a.mean(dim=(2, 3)).numpy()}


def int_network() -> Network:
    """ids (N, 5) int32 -> shifted = ids + 7 (int32): a network whose I/O is not floating point."""
    with Network("ints") as net:
        ids = net.add_input("ids", (-1, 5), dtype=np.int32)
        shifted = F.add(ids, F.constant(np.full((1, 5), 7, np.int32)))
        net.mark_output(shifted, "shifted")
    return net


# --- cuda-python stand-in over host memory ---------------------------------------------------------------

class FakeError(enum.IntEnum):
    cudaSuccess = 0
    cudaErrorMemoryAllocation = 2
    cudaErrorStreamCaptureUnsupported = 900


class FakeGraph:
    def __init__(self) -> None:
        self.ops: list[Any] = []


class FakeCudart(types.SimpleNamespace):
    """The slice of cuda.bindings.runtime the runtime uses; memory is host memory, copies are immediate."""

    cudaStreamDefault = 0
    cudaStreamNonBlocking = 1
    cudaMemcpyKind = types.SimpleNamespace(cudaMemcpyHostToDevice="HtoD", cudaMemcpyDeviceToHost="DtoH",
                                           cudaMemcpyDeviceToDevice="DtoD")
    cudaStreamCaptureMode = types.SimpleNamespace(cudaStreamCaptureModeThreadLocal=1)

    def __init__(self, refuse_capture: bool = False, fail_malloc_after: int | None = None) -> None:
        super().__init__()
        self.memory: dict[int, Any] = {}
        self.pinned: set[int] = set()
        self.copies: list[tuple[str, int]] = []
        self.capturing: dict[int, FakeGraph] = {}
        self.graph_launches = 0
        self.streams: set[int] = set()
        self.refuse_capture = refuse_capture
        self.fail_malloc_after = fail_malloc_after
        self._next_stream = 100

    def cudaGetErrorString(self, err: Any) -> tuple[Any, bytes]:
        return FakeError.cudaSuccess, f"fake {FakeError(err).name}".encode()

    def cudaGetLastError(self) -> tuple[Any]:
        return (FakeError.cudaSuccess,)

    def cudaSetDevice(self, device: int) -> tuple[Any]:
        return (FakeError.cudaSuccess,)

    def _alloc(self, size: int) -> tuple[Any, int | None]:
        if self.fail_malloc_after is not None and len(self.memory) >= self.fail_malloc_after:
            return FakeError.cudaErrorMemoryAllocation, None
        buf = ctypes.create_string_buffer(size)
        self.memory[ctypes.addressof(buf)] = buf
        return FakeError.cudaSuccess, ctypes.addressof(buf)

    def cudaMalloc(self, size: int) -> tuple[Any, int | None]:
        return self._alloc(size)

    def cudaMallocHost(self, size: int) -> tuple[Any, int | None]:
        err, ptr = self._alloc(size)
        if ptr:
            self.pinned.add(ptr)
        return err, ptr

    def cudaFree(self, ptr: int) -> tuple[Any]:
        del self.memory[ptr]
        return (FakeError.cudaSuccess,)

    def cudaFreeHost(self, ptr: int) -> tuple[Any]:
        self.pinned.discard(ptr)
        return self.cudaFree(ptr)

    def cudaMemGetInfo(self) -> tuple[Any, int, int]:
        return FakeError.cudaSuccess, 1 << 30, 2 << 30

    def cudaStreamCreateWithFlags(self, flags: int) -> tuple[Any, int]:
        self._next_stream += 1
        self.streams.add(self._next_stream)
        return FakeError.cudaSuccess, self._next_stream

    def cudaStreamDestroy(self, stream: int) -> tuple[Any]:
        self.streams.remove(stream)
        return (FakeError.cudaSuccess,)

    def cudaStreamSynchronize(self, stream: int) -> tuple[Any]:
        return (FakeError.cudaSuccess,)

    def cudaMemcpyAsync(self, dst: int, src: int, count: int, kind: str, stream: int) -> tuple[Any]:
        self.run_or_capture(stream, lambda: ctypes.memmove(dst, src, count))
        self.copies.append((kind, count))
        return (FakeError.cudaSuccess,)

    def run_or_capture(self, stream: int, op: Any) -> None:
        if stream in self.capturing:
            self.capturing[stream].ops.append(op)
        else:
            op()

    def cudaStreamBeginCapture(self, stream: int, mode: Any) -> tuple[Any]:
        if self.refuse_capture:
            return (FakeError.cudaErrorStreamCaptureUnsupported,)
        self.capturing[stream] = FakeGraph()
        return (FakeError.cudaSuccess,)

    def cudaStreamEndCapture(self, stream: int) -> tuple[Any, FakeGraph]:
        return FakeError.cudaSuccess, self.capturing.pop(stream)

    def cudaGraphInstantiate(self, graph: FakeGraph, flags: int) -> tuple[Any, FakeGraph]:
        return FakeError.cudaSuccess, graph

    def cudaGraphLaunch(self, graph: FakeGraph, stream: int) -> tuple[Any]:
        self.graph_launches += 1
        for op in graph.ops:
            op()
        return (FakeError.cudaSuccess,)

    def cudaGraphExecDestroy(self, graph: FakeGraph) -> tuple[Any]:
        return (FakeError.cudaSuccess,)

    def cudaGraphDestroy(self, graph: FakeGraph) -> tuple[Any]:
        return (FakeError.cudaSuccess,)


class FakeDeviceArray:
    """A minimal device array over fake device memory, exposing __cuda_array_interface__ (v3)."""

    def __init__(self, cudart: FakeCudart, shape: tuple[int, ...], dtype: Any, data: np.ndarray | None = None) -> None:
        self.dtype, self.shape = np.dtype(dtype), tuple(shape)
        self.nbytes = int(np.prod(shape)) * self.dtype.itemsize
        _, self.ptr = cudart.cudaMalloc(self.nbytes)
        if data is not None:
            src = np.ascontiguousarray(data, dtype=self.dtype)
            ctypes.memmove(self.ptr, src.ctypes.data, self.nbytes)

    @property
    def __cuda_array_interface__(self) -> dict[str, Any]:
        return {"shape": self.shape, "typestr": self.dtype.str, "data": (self.ptr, False), "strides": None,
                "version": 3}

    def to_host(self) -> np.ndarray:
        return read_memory(self.ptr, self.dtype, self.shape)


def read_memory(ptr: int, dtype: Any, shape: tuple[int, ...]) -> np.ndarray:
    dtype = np.dtype(dtype)
    n = int(np.prod(shape)) * dtype.itemsize
    return np.frombuffer(ctypes.string_at(ptr, n), dtype=dtype).reshape(shape).copy()


# --- TensorRT engine stand-in: the definition run by netdef's executor on fake device memory ---------------

class FakeEngine:
    """ICudaEngine's by-name I/O API over a Network; outputs computed with netdef's executor."""

    def __init__(self, net: Network, batch: tuple[int, int, int], cudart: FakeCudart) -> None:
        from netdef.executor import compile

        self.trt = shim.binding()
        self.definition, self.batch, self.cudart = net.definition, batch, cudart
        d = self.definition
        self.io = [d.get_input(i) for i in range(d.num_inputs)] + [d.get_output(i) for i in range(d.num_outputs)]
        self.inputs = {d.get_input(i).name for i in range(d.num_inputs)}
        self.executor = compile(d)
        self.device_memory_size = 12345
        self.num_optimization_profiles = 1
        self.contexts: weakref.WeakSet[FakeContext] = weakref.WeakSet()
        self.created_contexts = 0

    @property
    def profiles_in_use(self) -> set[int]:
        return {c.active_optimization_profile for c in self.contexts} - {-1}

    num_io_tensors = property(lambda self: len(self.io))

    def _tensor(self, name: str) -> Any:
        return next(t for t in self.io if t.name == name)

    def get_tensor_name(self, i: int) -> str:
        return self.io[i].name

    def get_tensor_mode(self, name: str) -> Any:
        mode = self.trt.TensorIOMode
        return mode.INPUT if name in self.inputs else mode.OUTPUT

    def get_tensor_dtype(self, name: str) -> Any:
        return self._tensor(name).dtype

    def get_tensor_shape(self, name: str) -> tuple[int, ...]:
        return tuple(self._tensor(name).shape)

    def get_tensor_profile_shape(self, name: str, profile: int) -> list[tuple[int, ...]]:
        shape = self.get_tensor_shape(name)
        return [tuple(b if d < 0 else d for d in shape) for b in self.batch]

    def create_execution_context(self) -> "FakeContext":
        return FakeContext(self)


class FakeContext:
    def __init__(self, engine: FakeEngine) -> None:
        self.engine = engine
        # as TensorRT: the engine's first context takes profile 0, later ones none until they pick a free one
        self.active_optimization_profile = -1 if engine.created_contexts else 0
        engine.created_contexts += 1
        engine.contexts.add(self)
        self.shapes: dict[str, tuple[int, ...]] = {}
        self.addresses: dict[str, int] = {}
        self.launches = 0  # executions, also those replayed from a captured graph
        self.direct_launches = 0  # execute_async_v3 calls outside a graph capture

    def set_optimization_profile_async(self, profile: int, stream: int) -> bool:
        if profile in self.engine.profiles_in_use or profile >= self.engine.num_optimization_profiles:
            return False
        self.active_optimization_profile = profile
        return True

    def set_input_shape(self, name: str, shape: tuple[int, ...]) -> bool:
        lo, _, hi = self.engine.get_tensor_profile_shape(name, 0)
        if not all(a <= s <= b for a, s, b in zip(lo, shape, hi)):
            return False
        self.shapes[name] = tuple(shape)
        return True

    def _run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {n: t.numpy() for n, t in self.engine.executor(feeds).items()}

    def get_tensor_shape(self, name: str) -> tuple[int, ...]:
        if name in self.engine.inputs:
            return self.shapes[name]
        feeds = {n: np.zeros(s, np_dtype(self.engine.get_tensor_dtype(n))) for n, s in self.shapes.items()}
        return tuple(self._run(feeds)[name].shape)

    def set_tensor_address(self, name: str, ptr: int) -> bool:
        self.addresses[name] = ptr
        return True

    def execute_async_v3(self, stream: int) -> bool:
        shapes, addresses = dict(self.shapes), dict(self.addresses)
        self.direct_launches += stream not in self.engine.cudart.capturing

        def run() -> None:
            self.launches += 1
            feeds = {n: read_memory(addresses[n], np_dtype(self.engine.get_tensor_dtype(n)), s)
                     for n, s in shapes.items()}
            for name, value in self._run(feeds).items():
                value = np.ascontiguousarray(value, dtype=np_dtype(self.engine.get_tensor_dtype(name)))
                ctypes.memmove(addresses[name], value.ctypes.data, value.nbytes)

        self.engine.cudart.run_or_capture(stream, run)
        return True
