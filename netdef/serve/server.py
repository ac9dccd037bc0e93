"""Triton Inference Server serving netdef sessions, through PyTriton.

PyTriton starts a real `tritonserver` (HTTP, gRPC, metrics, dynamic batching) whose Python backend forwards
each model instance's batches to a function in this process: here a `BatchedInfer` over one
InferenceSession, so N instances are N sessions (on TensorRT, N execution contexts with their own streams,
on the GPUs `placement` chose), each called from its own thread.

    with ModelServer([ServedModel("r50", open_session, ["0", "1"])], ServerConfig(http_port=8000)) as server:
        server.wait(stop_event)
"""
from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from netdef.serve.batching import BatchedInfer
from netdef.serve.environment import prepare_server_environment
from netdef.serve.signature import ModelSignature, SignatureError

log = logging.getLogger("netdef.serve")


@dataclass
class ServedModel:
    """One Triton model: `open_session(device)` is called once per instance, with that instance's device."""

    name: str
    open_session: Callable[[str | None], Any]
    devices: list[str | None] = field(default_factory=lambda: [None])
    dynamic_batching: bool = True
    max_queue_delay_us: int = 0
    max_batch: int | None = None
    # filled by the server while it runs
    signature: ModelSignature | None = None
    instances: list[BatchedInfer] = field(default_factory=list)


@dataclass
class ServerConfig:
    host: str = "127.0.0.1"
    http_port: int = 8000
    grpc_port: int = 8001
    metrics_port: int = 8002
    log_file: str | None = None  # Triton's own log; None: PyTriton passes it to stdout
    log_verbose: int = 0
    exit_timeout_s: int = 30  # how long Triton waits for requests in flight when stopping


class ModelServer:
    """Open the sessions, start Triton with one model per ServedModel, wait until every model is ready; `stop()`
    stops the server and closes the sessions (also when starting failed half way)."""

    def __init__(self, models: Sequence[ServedModel], config: ServerConfig | None = None) -> None:
        names = [m.name for m in models]
        if not models:
            raise ValueError("nothing to serve: no models")
        if len(set(names)) != len(names):
            raise ValueError(f"model names must differ, got {names} (use --name)")
        self.models = list(models)
        self.config = config or ServerConfig()
        self.triton: Any = None
        self.environment: dict[str, str] = {}

    # --- lifetime ---
    def start(self) -> "ModelServer":
        self.environment = prepare_server_environment()
        from pytriton.triton import Triton, TritonConfig

        try:
            for model in self.models:
                self._open(model)
            c = self.config
            self.triton = Triton(config=TritonConfig(
                http_address=c.host, http_port=c.http_port, grpc_address=c.host, grpc_port=c.grpc_port,
                metrics_address=c.host, metrics_port=c.metrics_port, log_file=c.log_file, log_verbose=c.log_verbose,
                exit_timeout_secs=c.exit_timeout_s))
            for model in self.models:
                self._bind(model)
            self.triton.run()  # returns once the server and every model are ready
        except BaseException:
            self.stop()
            raise
        return self

    def wait(self, stop: threading.Event, poll_s: float = 1.0) -> bool:
        """Block until `stop` is set (True) or the server or a model instance dies (False)."""
        while not stop.wait(poll_s):
            if not self.triton.is_alive():
                log.error("the Triton server or a model instance stopped unexpectedly")
                return False
        return True

    def stop(self) -> None:
        """Stop Triton (it finishes requests in flight first), then close every session. Idempotent."""
        try:
            if self.triton is not None:
                triton, self.triton = self.triton, None
                triton.stop()
        finally:
            for model in self.models:
                instances, model.instances = model.instances, []
                for instance in instances:
                    instance.session.close()

    def __enter__(self) -> "ModelServer":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # --- description ---
    def urls(self) -> dict[str, str]:
        c = self.config
        return {"http": f"http://{c.host}:{c.http_port}", "grpc": f"{c.host}:{c.grpc_port}",
                "metrics": f"http://{c.host}:{c.metrics_port}/metrics"}

    @property
    def access_token(self) -> str | None:
        """PyTriton's token for the endpoints it protects (shared memory, statistics, repository, ...)."""
        return self.triton.get_access_token() if self.triton is not None else None

    def describe(self) -> list[str]:
        lines = []
        for m in self.models:
            sig = m.signature
            assert sig is not None
            batching = (f"batch up to {sig.max_batch_size}, " + (f"dynamic batching (preferred "
                        f"{sig.preferred_batch_sizes()}, max queue delay {m.max_queue_delay_us} us)"
                        if m.dynamic_batching else "no dynamic batching")) if sig.batched else "no batch dim"
            devices = ", ".join(f"GPU {d}" if str(d).isdigit() else str(d or "cpu") for d in m.devices)
            lines.append(f"{m.name}: {len(m.devices)} instance(s) on {devices}; {batching}; "
                         f"{self.urls()['http']}/v2/models/{m.name}")
        lines += [f"{kind:<8}{url}" for kind, url in self.urls().items()]
        return lines

    def stats(self) -> dict[str, list[dict[str, float]]]:
        """Per model, per instance: calls, requests, items, mean batch (what the instances saw)."""
        return {m.name: [i.stats() for i in m.instances] for m in self.models}

    # --- internals ---
    def _open(self, model: ServedModel) -> None:
        for device in model.devices:
            session = model.open_session(device)
            try:
                if model.signature is None:
                    opt = (session.meta.get("batch") or [1, 1, 1])[1]
                    model.signature = ModelSignature.from_specs(model.name, session.inputs + session.outputs,
                                                                opt_batch=int(opt), max_batch=model.max_batch)
                elif ModelSignature.from_specs(model.name, session.inputs + session.outputs, max_batch=model.max_batch
                                               ).inputs != model.signature.inputs:
                    raise SignatureError(f"{model.name}: instance on {device} has other inputs than the first")
            except BaseException:
                session.close()
                raise
            model.instances.append(BatchedInfer(session, model.signature))

    def _bind(self, model: ServedModel) -> None:
        import numpy as np
        from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor

        sig = model.signature
        assert sig is not None

        def tensors(items: Sequence[Any]) -> list[Any]:
            return [Tensor(name=t.name, dtype=np.dtype(t.dtype).type, shape=t.dims) for t in items]

        if sig.batched:
            batcher = DynamicBatcher(max_queue_delay_microseconds=model.max_queue_delay_us,
                                     preferred_batch_size=sig.preferred_batch_sizes()) if model.dynamic_batching else None
            config = ModelConfig(batching=True, max_batch_size=sig.max_batch_size, batcher=batcher)
        else:
            config = ModelConfig(batching=False)
        self.triton.bind(model_name=model.name, infer_func=list(model.instances), inputs=tensors(sig.inputs),
                         outputs=tensors(sig.outputs), config=config, strict=False)
