"""The executor seam: one interface over a TensorRT execution context and netdef's executor.

A backend knows its I/O (`specs`, in engine I/O order: inputs, then outputs in declared order) and
`enqueue`s one inference on checked inputs, returning a function that waits for it and returns the
outputs by name. `InferenceSession` does the checking and the bookkeeping, so both backends behave alike.
"""
from __future__ import annotations

import logging
from typing import Any, Callable, Mapping

import numpy as np

from netdef import trt as shim
from netdef.runtime import cuda
from netdef.runtime.buffers import DeviceArray, TensorSpec, allocate, free_all, total_bytes
from netdef.runtime.inputs import check_output_array

log = logging.getLogger("netdef.runtime")

Finisher = Callable[[], dict[str, Any]]
MAX_GRAPHS = 8  # captured graphs kept per context (one per shape/address combination)


class Backend:
    """What InferenceSession needs from an executor of a network."""

    kind: str = ""
    name: str = ""
    specs: list[TensorSpec]

    def enqueue(self, inputs: Mapping[str, np.ndarray | DeviceArray], out: Mapping[str, Any]) -> Finisher:
        raise NotImplementedError

    def input_buffer(self, name: str, shape: tuple[int, ...]) -> np.ndarray | None:
        """A host array of `shape` that the next enqueue reads without copying (None: this backend has none)."""
        return None

    def memory(self) -> dict[str, int]:
        """Bytes of device memory this backend holds, by purpose."""
        return {}

    def close(self) -> None:
        pass


def _dims(dims: Any) -> tuple[int, ...]:
    return tuple(int(d) for d in dims)


def _np_dtype(trt_dtype: Any) -> np.dtype:
    from netdef.network import np_dtype

    return np_dtype(trt_dtype)


# --- TensorRT -------------------------------------------------------------------------------------------

def engine_specs(engine: Any, context: Any, profile: int = 0) -> list[TensorSpec]:
    """I/O specs of an engine by name; output max shapes come from the context with every input at its max."""
    trt = shim.binding()
    names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
    inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
    ranges: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = {}
    for name in inputs:
        shape = _dims(engine.get_tensor_shape(name))
        if -1 in shape:
            lo, _opt, hi = (_dims(s) for s in engine.get_tensor_profile_shape(name, profile))
        else:
            lo = hi = shape
        ranges[name] = (lo, hi)
        if not context.set_input_shape(name, hi):
            raise RuntimeError(f"TensorRT refused the profile's max shape {hi} for input '{name}'")
    for name in names:
        if name not in inputs:
            hi = _dims(context.get_tensor_shape(name))
            if any(d < 0 for d in hi):
                raise RuntimeError(f"output '{name}' has a data-dependent shape {hi}; the runtime needs shapes "
                                   "that follow from the input shapes")
            lo = hi
            ranges[name] = (lo, hi)
    return [TensorSpec(n, n in inputs, _np_dtype(engine.get_tensor_dtype(n)), _dims(engine.get_tensor_shape(n)),
                       *ranges[n]) for n in names]


# Optimization profiles taken by live contexts, per engine. With dynamic shapes TensorRT lets one context use
# a profile at a time (the first context takes profile 0 implicitly); asking it for a taken profile logs an
# error and has crashed TensorRT 8.6 afterwards, so the runtime never asks for one it knows is taken.
# Keyed by id(engine); the engine is held with its set so the id cannot be reused while profiles are taken.
_profiles_in_use: dict[int, tuple[Any, set[int]]] = {}


def _has_dynamic_shapes(engine: Any) -> bool:
    return any(-1 in _dims(engine.get_tensor_shape(engine.get_tensor_name(i))) for i in range(engine.num_io_tensors))


def _claim_profile(engine: Any, name: str) -> int | None:
    """A free optimization profile for a new context (None: static shapes, no profile to share)."""
    if not _has_dynamic_shapes(engine):
        return None
    taken = _profiles_in_use.setdefault(id(engine), (engine, set()))[1]
    count = int(getattr(engine, "num_optimization_profiles", 1))
    free = [k for k in range(count) if k not in taken]
    if not free:
        raise RuntimeError(
            f"{name}: every optimization profile of this engine ({count}) is in use by another execution context, "
            "and TensorRT lets a context with dynamic shapes use a profile only when no other does. For concurrent "
            "sessions, open each from the engine file (InferenceSession.from_engine(path) deserializes its own "
            "engine) or close the other session first")
    taken.add(free[0])
    return free[0]


def _release_profile(engine: Any, profile: int | None) -> None:
    if profile is None:
        return
    taken = _profiles_in_use.get(id(engine), (engine, set()))[1]
    taken.discard(profile)
    if not taken:
        _profiles_in_use.pop(id(engine), None)


class TensorRTBackend(Backend):
    """An ICudaEngine's execution context with per-tensor pinned/device buffers and its own stream.

    Inputs are copied host-to-device (or used in place when they are device arrays), shapes are set by
    name, `execute_async_v3` runs on the stream, outputs are copied back (or written into the caller's
    device arrays). With `graph=True` the enqueue is captured into a CUDA graph per shape/address
    combination and replayed; where capture fails the backend logs why and launches normally.
    With `device`, every call makes that GPU current first: the current device is per thread, and a
    server calls a session from its own worker thread, not the one that opened it.
    """

    kind = "tensorrt"

    def __init__(self, engine: Any, name: str = "engine", graph: bool = False, device: int | None = None) -> None:
        self.engine, self.name, self.device = engine, name, device
        self._use_device()
        self.profile = _claim_profile(engine, name)
        try:
            self.stream = cuda.Stream()
        except BaseException:
            _release_profile(engine, self.profile)
            raise
        try:
            self.context = engine.create_execution_context()
            if self.context is None:
                raise RuntimeError(f"{name}: TensorRT could not create an execution context (out of device memory?)")
            active = getattr(self.context, "active_optimization_profile", self.profile)
            if self.profile is not None and active != self.profile \
                    and not self.context.set_optimization_profile_async(self.profile, self.stream.ptr):
                raise RuntimeError(f"{name}: TensorRT refused optimization profile {self.profile} for a new context")
            self.specs = engine_specs(engine, self.context, self.profile or 0)
            self.buffers = allocate(self.specs)
        except BaseException:
            self.context = None
            self.stream.destroy()
            _release_profile(engine, self.profile)
            raise
        self.graph = graph
        self.graph_fallback: str | None = None  # why capture was given up, when it was
        self.graphs: dict[tuple, cuda.CapturedGraph] = {}
        self.graph_launches = 0
        self.tensor_addresses: dict[str, int] = {}  # what the last enqueue bound, by name (zero-copy checks)

    def _use_device(self) -> None:
        if self.device is not None:
            cuda.set_device(self.device)

    # --- one inference ---
    def enqueue(self, inputs: Mapping[str, np.ndarray | DeviceArray], out: Mapping[str, Any]) -> Finisher:
        self._use_device()
        ctx, stream = self.context, self.stream
        addresses: dict[str, int] = {}
        for spec in self.specs:
            if not spec.is_input:
                continue
            value = inputs[spec.name]
            buf = self.buffers[spec.name]
            if isinstance(value, DeviceArray):
                addresses[spec.name] = value.ptr  # zero copy: TensorRT reads the caller's memory
            else:
                staged = buf.host_view(value.shape)
                if value.ctypes.data != staged.ctypes.data:  # else filled in place (input_buffer): no copy
                    np.copyto(staged, value)
                cuda.copy_host_to_device(buf.device.ptr, buf.host.ptr, value.nbytes, stream)
                addresses[spec.name] = buf.device.ptr
            if not ctx.set_input_shape(spec.name, tuple(value.shape)):
                raise RuntimeError(f"{self.name}: TensorRT refused shape {tuple(value.shape)} for input '{spec.name}'")
        results: dict[str, Any] = {}
        copies: list[tuple[str, tuple[int, ...]]] = []
        for spec in self.specs:
            if spec.is_input:
                continue
            shape = _dims(ctx.get_tensor_shape(spec.name))
            if spec.name in out:
                target = check_output_array(spec, out[spec.name], shape, self.name)
                if not isinstance(target, DeviceArray):
                    raise TypeError(f"{self.name}: out['{spec.name}'] must be a device array "
                                    "(__cuda_array_interface__) for the TensorRT backend")
                addresses[spec.name] = target.ptr
                results[spec.name] = target.obj
            else:
                addresses[spec.name] = self.buffers[spec.name].device.ptr
                copies.append((spec.name, shape))
        for name, ptr in addresses.items():
            if not ctx.set_tensor_address(name, ptr):
                raise RuntimeError(f"{self.name}: TensorRT refused the address of tensor '{name}'")
        self.tensor_addresses = addresses
        shapes = tuple((n, _dims(ctx.get_tensor_shape(n))) for n in addresses)
        self._execute((shapes, tuple(addresses.items())))
        for name, shape in copies:
            buf = self.buffers[name]
            view = buf.host_view(shape)
            cuda.copy_device_to_host(buf.host.ptr, buf.device.ptr, view.nbytes, stream)

        def finish() -> dict[str, Any]:
            stream.synchronize()
            # copies: the pinned buffers are reused by the next inference
            host = {name: self.buffers[name].host_view(shape).copy() for name, shape in copies}
            return {s.name: host.get(s.name, results.get(s.name)) for s in self.specs if not s.is_input}

        return finish

    def input_buffer(self, name: str, shape: tuple[int, ...]) -> np.ndarray | None:
        """The input's pinned staging buffer viewed as `shape` (within the profile's max)."""
        spec = next((s for s in self.specs if s.is_input and s.name == name), None)
        if spec is None:
            raise KeyError(f"{self.name}: no input '{name}' (inputs: {', '.join(s.name for s in self.specs if s.is_input)})")
        return self.buffers[name].host_view(tuple(shape))

    def _launch(self) -> None:
        if not self.context.execute_async_v3(self.stream.ptr):
            said = "\n".join(list(shim.logger().recent)[-5:]) or "(TensorRT logged nothing)"
            raise RuntimeError(f"{self.name}: execute_async_v3 failed. TensorRT said:\n{said}")

    def _execute(self, key: tuple) -> None:
        if not self.graph or self.graph_fallback:
            self._launch()
            return
        graph = self.graphs.get(key)
        if graph is not None:
            graph.launch(self.stream)
            self.graph_launches += 1
            return
        # A plain launch first: TensorRT does deferred, non-capturable work on the first enqueue after a
        # shape change. It also computes this call's outputs, so the graph is first replayed next call.
        self._launch()
        try:
            graph = cuda.capture_graph(self.stream, self._launch)
        except (cuda.CudaError, RuntimeError) as exc:
            cuda.clear_last_error()
            self.graph_fallback = str(exc)
            log.warning("%s: CUDA graph capture is not possible here, launching without graphs: %s", self.name, exc)
            return
        if len(self.graphs) >= MAX_GRAPHS:
            self._drop_graphs()
        self.graphs[key] = graph

    def _drop_graphs(self) -> None:
        for graph in self.graphs.values():
            graph.destroy()
        self.graphs.clear()

    def memory(self) -> dict[str, int]:
        size = getattr(self.engine, "device_memory_size_v2", None)
        if size is None:
            size = getattr(self.engine, "device_memory_size", 0)
        return {"context": int(size), "io_buffers": total_bytes(self.buffers)}

    def close(self) -> None:
        if self.stream.handle is not None:
            self._use_device()
            try:
                self.stream.synchronize()
            finally:
                self._drop_graphs()
                free_all(self.buffers)
                self.stream.destroy()
                self.context = None  # the context goes before its profile is offered to another one
                _release_profile(self.engine, self.profile)


# --- netdef executor --------------------------------------------------------------------------------------

def definition_specs(definition: Any, batch: tuple[int, int, int] | None) -> list[TensorSpec]:
    """I/O specs of a network definition; dynamic dims range over `batch` (min, opt, max) or 1..any."""
    lo_b, hi_b = (batch[0], batch[2]) if batch else (1, 2**31 - 1)
    specs = []
    tensors = [(definition.get_input(i), True) for i in range(definition.num_inputs)]
    tensors += [(definition.get_output(i), False) for i in range(definition.num_outputs)]
    for t, is_input in tensors:
        shape = _dims(t.shape)
        lo = tuple(lo_b if d < 0 else d for d in shape)
        hi = tuple(hi_b if d < 0 else d for d in shape)
        specs.append(TensorSpec(t.name, is_input, _np_dtype(t.dtype), shape, lo, hi))
    return specs


class NetdefExecutorBackend(Backend):
    """netdef's torch executor of the network definition, on "cpu" or "cuda" (torch imported lazily)."""

    kind = "netdef"

    def __init__(self, definition: Any, device: str = "cpu", batch: tuple[int, int, int] | None = None,
                 name: str | None = None) -> None:
        from netdef.executor import compile

        self.definition = definition
        self.name = name or definition.name
        self.device = device
        self.specs = definition_specs(definition, batch)
        self.executor = compile(definition, device=device, keep="outputs")

    def enqueue(self, inputs: Mapping[str, np.ndarray | DeviceArray], out: Mapping[str, Any]) -> Finisher:
        import torch

        feed = {n: torch.as_tensor(v.obj, device=self.device) if isinstance(v, DeviceArray) else v
                for n, v in inputs.items()}
        produced = self.executor(feed)
        results: dict[str, Any] = {}
        for spec in self.specs:
            if spec.is_input:
                continue
            tensor = produced[spec.name]
            if spec.name in out:
                target = out[spec.name]
                check_output_array(spec, target, tuple(tensor.shape), self.name)
                dest = torch.as_tensor(target, device=tensor.device) if DeviceArray.wrap(target) else \
                    torch.from_numpy(np.asarray(target))
                dest.copy_(tensor)
                results[spec.name] = target
            else:
                results[spec.name] = tensor.detach().cpu().numpy().astype(spec.dtype, copy=False)
        return lambda: results  # the executor is synchronous: the work is already done

    def memory(self) -> dict[str, int]:
        if not str(self.device).startswith("cuda"):
            return {}
        import torch

        return {"torch_allocated": int(torch.cuda.memory_allocated()),
                "torch_peak": int(torch.cuda.max_memory_allocated())}
