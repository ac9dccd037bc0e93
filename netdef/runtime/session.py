"""InferenceSession: infer by tensor name, outputs in their real shapes, on any backend.

    with InferenceSession.from_engine("resnet18.engine") as session:
        logits = session.infer(images)["logits"]            # (N, 1000) for any N in the profile

`from_definition(net)` runs the same API through netdef's executor (CPU or CUDA), which is how CI,
without a GPU, exercises every runtime path.
"""
from __future__ import annotations

import os
from typing import Any, Mapping

from netdef.runtime.backends import Backend, Finisher, NetdefExecutorBackend, TensorRTBackend
from netdef.runtime.buffers import TensorSpec
from netdef.runtime.inputs import check_inputs


class SessionClosedError(RuntimeError):
    pass


class InferHandle:
    """One inference in flight; `wait()` blocks until it is done and returns its outputs (once computed, kept)."""

    def __init__(self, finish: Finisher) -> None:
        self._finish: Finisher | None = finish
        self._outputs: dict[str, Any] | None = None

    @property
    def done(self) -> bool:
        return self._finish is None

    def wait(self) -> dict[str, Any]:
        if self._finish is not None:
            finish, self._finish = self._finish, None
            self._outputs = finish()
        assert self._outputs is not None
        return self._outputs


def _register_plugins(records: list[dict[str, Any]]) -> None:
    """The plugin creators of an engine's custom layers (netdef.plugins imported only for such engines)."""
    from netdef.plugins import register_for_engine

    register_for_engine(records)


class InferenceSession:
    """I/O by name over one backend: `infer`, `infer_async`, specs, and a clean `close()`."""

    def __init__(self, backend: Backend, meta: Mapping[str, Any] | None = None, owner: Any = None) -> None:
        self.backend = backend
        self.meta = dict(meta or {})
        self._owner = owner  # keeps a LoadedEngine (runtime + engine) alive as long as the session
        self._pending: InferHandle | None = None
        self._closed = False

    # --- construction ---
    @classmethod
    def from_engine(cls, engine: str | os.PathLike | Any, graph: bool = False, device: int | None = None,
                    check_binding: bool = True) -> "InferenceSession":
        """A TensorRT session on an engine file (sidecar checked, plugins registered) or a LoadedEngine.

        Sessions on one LoadedEngine share the engine, each with its own context and stream; with dynamic
        shapes each needs an optimization profile no other context uses, so for concurrent sessions on a
        one-profile engine open each from the file (each deserializes its own engine).
        """
        from netdef.engine import LoadedEngine, load_engine
        from netdef.runtime import cuda

        if device is not None:
            cuda.set_device(device)  # an engine belongs to the GPU current when it is deserialized
        loaded = engine if isinstance(engine, LoadedEngine) else load_engine(engine, check_binding,
                                                                             register_plugins=_register_plugins)
        backend = TensorRTBackend(loaded.engine, name=str(loaded.path), graph=graph, device=device)
        return cls(backend, loaded.meta, owner=loaded)

    @classmethod
    def from_definition(cls, network: Any, device: str = "cpu", batch: tuple[int, int, int] | None = None,
                        meta: Mapping[str, Any] | None = None) -> "InferenceSession":
        """A session that runs a netdef Network (or a bare INetworkDefinition) with netdef's executor."""
        definition = getattr(network, "definition", network)
        merged = dict(getattr(network, "meta", None) or {})
        merged.update(meta or {})
        return cls(NetdefExecutorBackend(definition, device=device, batch=batch), merged, owner=network)

    # --- description ---
    @property
    def kind(self) -> str:
        return self.backend.kind

    @property
    def name(self) -> str:
        return self.backend.name

    @property
    def arch(self) -> str | None:
        return self.meta.get("arch")

    @property
    def inputs(self) -> list[TensorSpec]:
        return [s for s in self.backend.specs if s.is_input]

    @property
    def outputs(self) -> list[TensorSpec]:
        return [s for s in self.backend.specs if not s.is_input]

    @property
    def input_names(self) -> list[str]:
        return [s.name for s in self.inputs]

    @property
    def output_names(self) -> list[str]:
        return [s.name for s in self.outputs]

    def memory(self) -> dict[str, int]:
        return self.backend.memory()

    # --- inference ---
    def infer_async(self, inputs: Any, out: Mapping[str, Any] | None = None) -> InferHandle:
        """Start one inference; the handle's `wait()` returns {output name: array} in declared order.

        `inputs`: {name: array} (or one array for a single-input network); host arrays are copied, device
        arrays (`__cuda_array_interface__`) are read in place. `out`: {output name: array} to write into
        (device arrays on TensorRT); those outputs are returned as the given objects.
        """
        if self._closed:
            raise SessionClosedError(f"{self.name}: the session is closed")
        checked = check_inputs(self.inputs, inputs, f"{self.kind} session {self.name}")
        out = dict(out or {})
        unknown = [n for n in out if n not in self.output_names]
        if unknown:
            raise KeyError(f"{self.name}: out names {unknown} are not outputs (outputs: {', '.join(self.output_names)})")
        if self._pending is not None:  # its results live in buffers the next inference reuses
            self._pending.wait()
        self._pending = InferHandle(self.backend.enqueue(checked, out))
        return self._pending

    def input_buffer(self, name: str, shape: tuple[int, ...]) -> Any:
        """A host array to fill in place and pass as input `name` of the next inference, which then skips its
        host-side copy (on TensorRT: the input's pinned staging buffer); None where the backend has none.

        It waits for the inference in flight first, whose copy may still read that memory. A server joining
        requests into one batch writes them straight into it.
        """
        if self._closed:
            raise SessionClosedError(f"{self.name}: the session is closed")
        if self._pending is not None:
            self._pending.wait()
        return self.backend.input_buffer(name, tuple(int(d) for d in shape))

    def infer(self, inputs: Any, out: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Run one inference and return {output name: numpy array in its real shape} (or the `out` arrays)."""
        return self.infer_async(inputs, out).wait()

    __call__ = infer

    # --- lifetime ---
    def close(self) -> None:
        """Wait for work in flight, then free the context, device and pinned memory (idempotent)."""
        if self._closed:
            return
        self._closed = True
        try:
            if self._pending is not None:
                self._pending.wait()
        finally:
            self._pending = None
            self.backend.close()

    def __enter__(self) -> "InferenceSession":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        io = ", ".join(s.describe() for s in self.backend.specs)
        return f"InferenceSession({self.kind}: {self.name}; {io})"
