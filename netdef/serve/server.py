"""Triton Inference Server serving netdef sessions: PyTriton starts the server, Triton's Python backend runs
the models.

PyTriton brings and launches a real `tritonserver` (HTTP, gRPC, metrics, dynamic batching). Its own way of
serving a Python callable (`Triton.bind`) sends every batch from the backend's stub process to the callable's
process through a second hop (ZeroMQ messages, a shared-memory tensor store with a manager process, JSON), and
runs every instance's callable under that process's one GIL: measured here (bench/serve_overhead.py), 2-3 ms
per batch plus 0.3-0.7 ms per request before the model runs. So each model is written into a model repository
for Triton's Python backend instead (instance.py): every instance is a stub process of its own that opens its
session there (on TensorRT its own execution context and stream on the GPU `placement` chose) and receives its
batches straight from Triton's shared memory.

    with ModelServer([ServedModel("r50", "netdef.commands.serve:open_instance", options, ["0", "1"])],
                     ServerConfig(http_port=8000)) as server:
        server.wait(stop_event)
"""
from __future__ import annotations

import contextlib
import logging
import shutil
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from netdef.serve.environment import prepare_server_environment
from netdef.serve.instance import resolve, write_model_folder
from netdef.serve.signature import ModelSignature

log = logging.getLogger("netdef.serve")


STAT_STEPS = ("queue", "compute_input", "compute_infer", "compute_output")  # Triton's timed steps of a request


def inference_stats(client: Any, name: str, headers: dict[str, str]) -> dict[str, int]:
    """One model's counts from Triton's statistics endpoint (a tritonclient HTTP client): executions (batches
    run), requests, items, and the summed nanoseconds requests spent in each of STAT_STEPS."""
    (st,) = client.get_inference_statistics(name, headers=headers)["model_stats"]
    inf = st["inference_stats"]
    return {"executions": int(st["execution_count"]), "items": int(st["inference_count"]),
            "requests": int(inf["success"]["count"]), **{f"{k}_ns": int(inf[k]["ns"]) for k in STAT_STEPS}}


def ms_per_request(before: dict[str, int], after: dict[str, int]) -> dict[str, float]:
    """Mean ms per request in each of STAT_STEPS between two inference_stats of one model."""
    requests = max(1, after["requests"] - before["requests"])
    return {k: (after[f"{k}_ns"] - before[f"{k}_ns"]) / requests / 1e6 for k in STAT_STEPS}


class ServeError(RuntimeError):
    """The server or a model could not start; the message says which and why (Triton's own words)."""


@dataclass
class ServedModel:
    """One Triton model. Each instance opens its session in its own process as `factory(device, **options)`
    ("module:callable", JSON-able options), one instance per entry of `devices`."""

    name: str
    factory: str
    options: dict[str, Any] = field(default_factory=dict)
    devices: list[str | None] = field(default_factory=lambda: [None])
    dynamic_batching: bool = True
    max_queue_delay_us: int = 0
    max_batch: int | None = None
    signature: ModelSignature | None = None  # None: read from a session opened here once, before serving


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
    """Start Triton with one model per ServedModel and load each (its instances open their sessions); `stop()`
    stops the server, which finalizes the instances (closing their sessions), also when starting failed half way."""

    def __init__(self, models: Sequence[ServedModel], config: ServerConfig | None = None) -> None:
        names = [m.name for m in models]
        if not models:
            raise ValueError("nothing to serve: no models")
        if len(set(names)) != len(names):
            raise ValueError(f"model names must differ, got {names} (use --name)")
        self.models = list(models)
        self.config = config or ServerConfig()
        self.triton: Any = None
        self.repository: Path | None = None
        self.environment: dict[str, str] = {}

    # --- lifetime ---
    def start(self) -> "ModelServer":
        self.environment = prepare_server_environment()
        from pytriton.triton import Triton, TritonConfig

        try:
            for model in self.models:
                self._describe(model)
            self.repository = Path(tempfile.mkdtemp(prefix="netdef-serve-"))
            c = self.config
            self.triton = Triton(config=TritonConfig(
                model_repository=self.repository, http_address=c.host, http_port=c.http_port, grpc_address=c.host,
                grpc_port=c.grpc_port, metrics_address=c.host, metrics_port=c.metrics_port, log_file=c.log_file,
                log_verbose=c.log_verbose, exit_timeout_secs=c.exit_timeout_s))
            self.triton.run()  # returns once the server is ready (the repository is still empty)
            for model in self.models:
                assert model.signature is not None
                write_model_folder(self.repository, model.signature, model.factory, model.options, model.devices,
                                   model.dynamic_batching, model.max_queue_delay_us)
                self._load(model.name)
        except BaseException:
            self.stop()
            raise
        return self

    def wait(self, stop: threading.Event, poll_s: float = 1.0) -> bool:
        """Block until `stop` is set (True) or the server dies (False)."""
        while not stop.wait(poll_s):
            if not self.triton.is_alive():
                log.error("the Triton server stopped unexpectedly")
                return False
        return True

    def stop(self) -> None:
        """Stop Triton (it finishes requests in flight, then finalizes every instance, which closes its session),
        then remove the model repository. Idempotent."""
        try:
            if self.triton is not None:
                triton, self.triton = self.triton, None
                triton.stop()
        finally:
            if self.repository is not None:
                shutil.rmtree(self.repository, ignore_errors=True)
                self.repository = None

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
            batching = (f"batch up to {sig.batch_limit}, " + (f"dynamic batching (preferred "
                        f"{sig.preferred_batch_sizes()}, max queue delay {m.max_queue_delay_us} us)"
                        if m.dynamic_batching else "no dynamic batching")) if sig.batched else "no batch dim"
            devices = ", ".join(f"GPU {d}" if str(d).isdigit() else str(d or "cpu") for d in m.devices)
            lines.append(f"{m.name}: {len(m.devices)} instance(s) on {devices}; {batching}; "
                         f"{self.urls()['http']}/v2/models/{m.name}")
        lines += [f"{kind:<8}{url}" for kind, url in self.urls().items()]
        return lines

    def stats(self) -> dict[str, dict[str, int]]:
        """Per model, Triton's own counts since it loaded (see inference_stats)."""
        with self._client() as client:
            return {m.name: inference_stats(client, m.name, self._headers()) for m in self.models}

    # --- internals ---
    def _describe(self, model: ServedModel) -> None:
        """The model's signature, from a session opened here with the first instance's device when not given."""
        if model.signature is not None:
            return
        session = resolve(model.factory)(model.devices[0], **model.options)
        try:
            model.signature = ModelSignature.from_session(model.name, session, model.max_batch)
        finally:
            session.close()

    def _headers(self) -> dict[str, str]:
        return {"triton-access-token": self.access_token or ""}

    def _client(self) -> Any:
        import tritonclient.http as http

        host = "127.0.0.1" if self.config.host in ("0.0.0.0", "") else self.config.host
        return contextlib.closing(http.InferenceServerClient(f"{host}:{self.config.http_port}", network_timeout=600.0))

    def _load(self, name: str) -> None:
        """Load one model (its instances start and open their sessions); Triton's reason when that fails."""
        from tritonclient.utils import InferenceServerException

        with self._client() as client:
            try:
                client.load_model(name, headers=self._headers())
            except InferenceServerException as exc:
                raise ServeError(f"{name}: Triton could not load the model: {exc.message()}") from None
        log.info("%s: loaded", name)

