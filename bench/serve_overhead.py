"""Where the time of a served request goes, without a GPU: Triton serving a model that computes nothing.

The model is `NoopSession`, a stand-in InferenceSession with ResNet-50's I/O (input 3x224x224 float32, 0.6 MB;
logits 1000 float32) that joins the requests into a staging buffer like the TensorRT session's pinned one and
answers zeros. So every millisecond measured is serving overhead:
1. batching: netdef's instance function alone (BatchedInfer: join the requests into the staging buffer, run,
   cut per request), per batch of 1, 8, 32 requests, in this process.
2. paths: the same model served two ways, each with 1 client in flight and then --clients in flight:
   - pytriton: PyTriton's `Triton.bind` of the instance function (what `netdef serve` did before): the backend
     stub forwards every batch to this process over ZeroMQ, inputs and outputs through PyTriton's shared-memory
     tensor store (a manager process allocates and frees every tensor's block), JSON in between;
   - backend: `netdef.serve` now: the instance runs inside Triton's Python-backend stub process.
   Per row: requests/s, latency, Triton's mean batch and time per execution (compute_infer: the model's
   execute() as Triton sees it, i.e. the whole hop to the function and back), and the CPU milliseconds per
   request of every process involved (clients, tritonserver, backend stubs, PyTriton's helpers, this process).
3. clients: the same counts for the client modes of bench/serve_clients.py (sync/async, inputs grpc/shm),
   to size the client side of bench/serve.py.
With --phases, each backend instance also times its execute() (netdef/serve/phases.py: inputs, join, infer,
responses; wall and CPU, page faults) and every backend row gets a line of ms per batch and per MB of input.
On a busy 2-core machine throughput is bounded by the cores; the CPU per request and the per-execution
times are the numbers that carry over. Writes JSON (--out) and prints a table.

    python bench/serve_overhead.py --out bench/results/serve_overhead_cpu.json
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.serve_clients import ClientPool, run_measured, server_cpu, timed_job  # noqa: E402
from netdef.serve.phases import PROFILE_ENV, format_phases, phase_offsets, phase_summary  # noqa: E402
from netdef.serve.server import ms_per_request  # noqa: E402

PAYLOADS = {"resnet": ((3, 224, 224), 1000), "tiny": ((4,), 4)}


class NoopSession:
    """An InferenceSession stand-in that computes nothing, with a staging buffer like the TensorRT session's
    pinned one (the requests are joined into it) and zero outputs. A session factory for served instances too:
    NoopSession(device, payload=...) with a payload of PAYLOADS, or signature=ModelSignature.as_dict() to take
    an engine's I/O (bench/serve.py: the serving stack and the clients alone, without the engine)."""

    def __init__(self, device: str | None = None, payload: str = "resnet", signature: dict[str, Any] | None = None,
                 max_batch: int = 32) -> None:
        from netdef.runtime.buffers import TensorSpec
        from netdef.serve.signature import ModelSignature

        if signature is None:
            shape, k = PAYLOADS[payload]
            signature = {"name": payload, "inputs": [["input", "<f4", list(shape)]], "outputs": [["logits", "<f4", [k]]],
                         "batch_limit": max_batch, "opt_batch": max_batch}
        sig = ModelSignature.from_dict(signature)
        n = sig.batch_limit

        def spec(t: Any, is_input: bool) -> TensorSpec:
            return TensorSpec(t.name, is_input, t.dtype, (-1, *t.dims), (1, *t.dims), (n, *t.dims))

        self.inputs = [spec(t, True) for t in sig.inputs]
        self.outputs = [spec(t, False) for t in sig.outputs]
        self.meta = {"batch": [1, sig.opt_batch, n]}
        self.staging = {t.name: np.empty((n, *t.dims), t.dtype) for t in sig.inputs}
        self.zeros = {t.name: np.zeros((n, *t.dims), t.dtype) for t in sig.outputs}

    def input_buffer(self, name: str, shape: tuple[int, ...]) -> np.ndarray:
        return self.staging[name][:shape[0]]

    def infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        n = len(next(iter(feeds.values())))
        return {name: z[:n] for name, z in self.zeros.items()}

    def close(self) -> None:
        pass


# --- 1. the instance function alone ------------------------------------------------------------------------------

def batching_costs(payload: str, seconds: float = 0.5) -> list[dict[str, Any]]:
    from netdef.serve.batching import BatchedInfer
    from netdef.serve.signature import ModelSignature

    session = NoopSession(None, payload)
    batched = BatchedInfer(session, ModelSignature.from_specs("noop", session.inputs + session.outputs))
    shape = session.inputs[0].shape[1:]
    rows = []
    for n in (1, 8, 32):
        requests = [{"input": np.random.default_rng(i).standard_normal((1, *shape)).astype(np.float32)}
                    for i in range(n)]
        batched(requests)
        count, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            batched(requests)
            count += 1
        per_batch = (time.perf_counter() - t0) / count
        rows.append({"payload": payload, "requests": n, "ms_per_batch": 1e3 * per_batch,
                     "us_per_request": 1e6 * per_batch / n})
    return rows


# --- 2. served: processes and their CPU ---------------------------------------------------------------------------

class Served:
    """The no-op model served one way; `stats()` from Triton, `token` for its protected endpoints."""

    def __init__(self, path: str, payload: str, instances: int, ports: list[int], log_file: str) -> None:
        from netdef.serve.server import ModelServer, ServedModel, ServerConfig

        self.path, self.name, self.http_port = path, f"noop_{payload}", ports[0]
        config = ServerConfig("127.0.0.1", *ports, log_file=log_file)
        if path == "backend":
            model = ServedModel(self.name, "bench.serve_overhead:NoopSession", {"payload": payload},
                                [None] * instances, max_queue_delay_us=0)
            self.server = ModelServer([model], config).start()
            self.signature = model.signature
        else:
            self.server = None
            self._start_pytriton(payload, instances, config)

    def _start_pytriton(self, payload: str, instances: int, c: Any) -> None:
        from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor
        from pytriton.triton import Triton, TritonConfig

        from netdef.serve.batching import BatchedInfer
        from netdef.serve.environment import prepare_server_environment
        from netdef.serve.signature import ModelSignature

        prepare_server_environment()
        sessions = [NoopSession(None, payload) for _ in range(instances)]
        sig = ModelSignature.from_session(self.name, sessions[0])  # opt batch 32, as its meta says
        self.signature = sig
        self.triton = Triton(config=TritonConfig(http_address=c.host, http_port=c.http_port, grpc_address=c.host,
                                                 grpc_port=c.grpc_port, metrics_port=c.metrics_port,
                                                 log_file=c.log_file))

        def tensors(items: Any) -> list[Any]:
            return [Tensor(name=t.name, dtype=t.dtype.type, shape=t.dims) for t in items]

        self.triton.bind(model_name=self.name, infer_func=[BatchedInfer(s, sig) for s in sessions],
                         inputs=tensors(sig.inputs), outputs=tensors(sig.outputs), strict=False,
                         config=ModelConfig(batching=True, max_batch_size=sig.batch_limit,
                                            batcher=DynamicBatcher(max_queue_delay_microseconds=0,
                                                                   preferred_batch_size=sig.preferred_batch_sizes())))
        self.triton.run()

    @property
    def token(self) -> str:
        return self.server.access_token if self.server else self.triton.get_access_token()

    def stats(self) -> dict[str, int]:
        if self.server:
            return self.server.stats()[self.name]
        import tritonclient.http as http

        from netdef.serve.server import inference_stats

        client = http.InferenceServerClient(f"127.0.0.1:{self.http_port}")
        try:
            return inference_stats(client, self.name, {"triton-access-token": self.token})
        finally:
            client.close()

    def stop(self) -> None:
        if self.server:
            self.server.stop()
        else:
            self.triton.stop()


def measure(served: Served, pool: ClientPool, clients: int, args: argparse.Namespace, mode: str = "async",
            inputs: str = "grpc") -> dict[str, Any]:
    sig = served.signature
    job = timed_job(served.name, sig.inputs[0], 1, [sig.outputs[0].name], args.warmup, args.duration, mode=mode,
                    inputs=inputs, token=served.token, channels=args.channels)
    exclude = {p.pid for p in pool.procs}

    def phases() -> dict[str, int]:
        return phase_offsets(os.environ[PROFILE_ENV]) if PROFILE_ENV in os.environ else {}

    load, w0, w1 = run_measured(pool, job, clients,
                                lambda: {"cpu": server_cpu(exclude), "stats": served.stats(), "phases": phases()})
    lat = np.array(load["latencies"]) * 1e3
    n = max(1, lat.size)
    st0, st1 = w0["stats"], w1["stats"]
    execs = max(1, st1["executions"] - st0["executions"])
    per_exec = ms_per_request(st0, st1)
    cpu = {k: 1e3 * (w1["cpu"][k] - w0["cpu"][k]) / n for k in w0["cpu"]}
    cpu["clients"] = 1e3 * load["cpu_s"] / n
    return {"path": served.path, "payload": served.name.split("_", 1)[1], "clients": clients, "mode": mode,
            "inputs": inputs, "requests_per_s": lat.size / args.duration,
            "p50_ms": float(np.percentile(lat, 50)) if lat.size else float("nan"),
            "mean_batch": (st1["items"] - st0["items"]) / execs, "ms_per_execution": per_exec,
            "cpu_ms_per_request": cpu, "errors": len(load["errors"]), "first_error": (load["errors"] or [""])[0],
            "phases": phase_summary(w0["phases"], w1["phases"])}


def format_row(r: dict[str, Any]) -> str:
    cpu = r["cpu_ms_per_request"]
    e = r["ms_per_execution"]
    return (f"{r['path']:<9}{r['payload']:<7}{r['mode']:<6}{r['inputs']:<5}{r['clients']:>4} {r['requests_per_s']:>7.0f} "
            f"{r['p50_ms']:>7.2f} {r['mean_batch']:>5.1f} {e['compute_infer']:>7.2f} {e['compute_input']:>6.2f} "
            f"{e['compute_output']:>6.2f} | {cpu['clients']:>6.3f} {cpu['tritonserver']:>6.3f} {cpu['backend stubs']:>6.3f} "
            f"{cpu['helpers']:>6.3f} {cpu['this process']:>6.3f} {r['errors']:>3}")


HEADER = (f"{'path':<9}{'data':<7}{'mode':<6}{'in':<5}{'cli':>4} {'req/s':>7} {'p50 ms':>7} {'batch':>5} "
          f"{'exec ms':>7} {'in ms':>6} {'out ms':>6} | CPU ms per request: {'client':>6} {'triton':>6} {'stubs':>6} "
          f"{'helper':>6} {'self':>6} err")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", help="JSON results")
    p.add_argument("--payloads", default="resnet,tiny")
    p.add_argument("--paths", default="pytriton,backend")
    p.add_argument("--clients", type=int, default=32, help="clients in flight for the loaded rows")
    p.add_argument("--client-procs", type=int, default=2)
    p.add_argument("--channels", type=int, default=4, help="gRPC channels per client process (async mode)")
    p.add_argument("--instances", type=int, default=1)
    p.add_argument("--duration", type=float, default=3.0)
    p.add_argument("--warmup", type=float, default=1.0)
    p.add_argument("--client-modes", default="sync/grpc,async/grpc,async/shm",
                   help="client modes measured against the backend path (mode/inputs)")
    p.add_argument("--port-base", type=int, default=18800)
    p.add_argument("--work", default="/tmp/netdef-serve-overhead")
    p.add_argument("--phases", action="store_true", help="time the backend instances' execute() phases")
    args = p.parse_args(argv)
    Path(args.work).mkdir(parents=True, exist_ok=True)
    if args.phases:  # the backend's stubs inherit it
        os.environ[PROFILE_ENV] = f"{args.work}/phases-{os.getpid()}"
    report: dict[str, Any] = {"date": time.strftime("%Y-%m-%d %H:%M"), "cpus": len(os.sched_getaffinity(0)),
                              "loadavg_at_start": os.getloadavg(), "python": sys.version.split()[0],
                              "settings": vars(args), "batching": [], "rows": []}
    print(f"{report['cpus']} CPUs, load average {report['loadavg_at_start']}", flush=True)
    print("1. netdef's instance function alone (join into the staging buffer, no-op, cut):")
    for payload in args.payloads.split(","):
        for row in batching_costs(payload):
            report["batching"].append(row)
            print(f"   {payload:<7} {row['requests']:>3} requests: {row['ms_per_batch']:.3f} ms per batch, "
                  f"{row['us_per_request']:.1f} us per request", flush=True)
    print("2./3. served (ms per execution from Triton's statistics; CPU per request by process):")
    print(HEADER, flush=True)
    ports = [args.port_base, args.port_base + 1, args.port_base + 2]
    pool = ClientPool(args.client_procs, f"127.0.0.1:{ports[1]}")
    try:
        for payload in args.payloads.split(","):
            for path in args.paths.split(","):
                served = Served(path, payload, args.instances, ports, f"{args.work}/triton-{path}-{payload}.log")
                try:
                    loads = [(1, "async", "grpc"), (args.clients, "async", "grpc")]
                    if path == "backend" and payload == "resnet":
                        loads += [(args.clients, *m.split("/")) for m in args.client_modes.split(",")
                                  if m != "async/grpc"]
                    for clients, mode, inputs in loads:
                        row = measure(served, pool, clients, args, mode, inputs)
                        report["rows"].append(row)
                        print(format_row(row), flush=True)
                        if row["phases"]:
                            print(format_phases(row["phases"]), flush=True)
                        if args.out:
                            from netdef.atomic import write_text_atomic

                            write_text_atomic(args.out, json.dumps(report, indent=2) + "\n")
                finally:
                    served.stop()
    finally:
        pool.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
