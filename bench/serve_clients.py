"""Load generation for the serving benchmarks (bench/serve.py, bench/serve_overhead.py): closed-loop clients in
separate processes, each client sending its next request when its last one answered.

Modes per process (its share of the clients):
- async (default): the clients' requests go through gRPC's own threads (`async_infer`, the next request sent
  from the completion callback) over a few channels, so one process drives many clients at ~0.3-0.5 ms of its
  CPU per request instead of one Python thread blocked per client.
- sync: one thread and one channel per client calling `infer` (what simple clients do; ~2x the CPU per request).
Inputs either travel in each request (`grpc`), or once into a system shared-memory region that every request
of that process names (`shm`), which takes the 0.6 MB image tensors off the client and off gRPC; measures what
the server can do when clients are cheap.
Each process reports its latencies, errors and CPU seconds over the measuring window; `server_cpu` gives the
CPU seconds of the serving side (tritonserver, the backend stubs running the instances, the rest) to match.
"""
from __future__ import annotations

import multiprocessing as mp
import os
import threading
import time
from functools import partial
from pathlib import Path
from typing import Any, Callable

import numpy as np

TOKEN_HEADER = "triton-grpc-protocol-triton-access-token"  # PyTriton's token on the gRPC shared-memory endpoints


def client_process(conn: Any, url: str) -> None:
    """A worker process: runs load jobs sent over `conn` until it receives None."""
    while True:
        job = conn.recv()
        if job is None:
            return
        try:
            conn.send(run_clients(url, job))
        except Exception as exc:  # the row fails with the reason, the pool stays usable
            conn.send({"latencies": [], "errors": [f"{type(exc).__name__}: {exc}"[:300]], "cpu_s": 0.0})


def _inputs(module: Any, client: Any, job: dict[str, Any]) -> tuple[list[Any], Any]:
    """The request's input (random, seeded) and a cleanup for a shared-memory region."""
    from netdef.runtime.inputs import random_array

    x = random_array(job["shape"], job["dtype"], np.random.default_rng(job["seed"]))
    inp = module.InferInput(job["input"], list(x.shape), job["triton_type"])
    if job.get("inputs", "grpc") != "shm":
        inp.set_data_from_numpy(x)  # serialized once, copied into every request
        return [inp], lambda: None
    import tritonclient.utils.shared_memory as shm

    region = f"netdef_bench_{os.getpid()}"
    handle = shm.create_shared_memory_region(region, "/" + region, x.nbytes)
    shm.set_shared_memory_region(handle, [x])
    headers = {TOKEN_HEADER: job.get("token") or ""}
    client.register_system_shared_memory(region, "/" + region, x.nbytes, headers=headers)
    inp.set_shared_memory(region, x.nbytes)

    def cleanup() -> None:
        try:
            client.unregister_system_shared_memory(region, headers=headers)
        finally:
            shm.destroy_shared_memory_region(handle)

    return [inp], cleanup


def _window_cpu(job: dict[str, Any]) -> float:
    """This process's CPU seconds between measure_from and measure_to (sampled by the calling thread)."""
    time.sleep(max(0.0, job["measure_from"] - time.time()))
    c0 = time.process_time()
    time.sleep(max(0.0, job["measure_to"] - time.time()))
    return time.process_time() - c0


def run_clients(url: str, job: dict[str, Any]) -> dict[str, Any]:
    import tritonclient.grpc as module

    n = job["clients"]
    mode = job.get("mode", "async")
    channels = n if mode == "sync" else max(1, min(n, job.get("channels", 4)))
    clients = [module.InferenceServerClient(url) for _ in range(channels)]
    inputs, cleanup = _inputs(module, clients[0], job)
    outputs = [module.InferRequestedOutput(name) for name in job["outputs"]]
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    try:
        if mode == "sync":
            cpu = _run_sync(clients, inputs, outputs, job, latencies, errors, lock)
        else:
            cpu = _run_async(clients, inputs, outputs, job, latencies, errors, lock)
    finally:
        cleanup()
        for client in clients:
            client.close()
    return {"latencies": latencies, "errors": errors, "cpu_s": cpu}


def _run_sync(clients: list[Any], inputs: list[Any], outputs: list[Any], job: dict[str, Any], latencies: list[float],
              errors: list[str], lock: threading.Lock) -> float:
    def one_client(client: Any) -> None:
        mine = []
        time.sleep(max(0.0, job["start_at"] - time.time()))
        try:
            while True:
                t0 = time.time()
                if t0 >= job["measure_to"]:
                    break
                client.infer(job["model"], inputs, outputs=outputs, client_timeout=60.0)
                t1 = time.time()
                if job["measure_from"] <= t1 <= job["measure_to"]:  # completed in the window
                    mine.append(t1 - t0)
        except Exception as exc:
            with lock:
                errors.append(str(exc)[:300])
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=one_client, args=(c,)) for c in clients]
    for t in threads:
        t.start()
    cpu = _window_cpu(job)
    for t in threads:
        t.join()
    return cpu


def _run_async(clients: list[Any], inputs: list[Any], outputs: list[Any], job: dict[str, Any],
               latencies: list[float], errors: list[str], lock: threading.Lock) -> float:
    n = job["clients"]
    active = [n]
    finished = threading.Event()

    def send(i: int) -> None:
        clients[i % len(clients)].async_infer(job["model"], inputs, partial(answered, i, time.time()),
                                              outputs=outputs, client_timeout=60.0)

    def answered(i: int, t0: float, result: Any, error: Any) -> None:
        t1 = time.time()
        with lock:
            if error is not None:
                errors.append(str(error)[:300])
            elif job["measure_from"] <= t1 <= job["measure_to"]:
                latencies.append(t1 - t0)
        if error is None and t1 < job["measure_to"]:
            try:
                send(i)  # from gRPC's completion thread: the client's next request
                return
            except Exception as exc:
                with lock:
                    errors.append(str(exc)[:300])
        with lock:
            active[0] -= 1
            if active[0] == 0:
                finished.set()

    time.sleep(max(0.0, job["start_at"] - time.time()))
    for i in range(n):
        send(i)
    cpu = _window_cpu(job)
    if not finished.wait(90.0):
        errors.append(f"{active[0]} of {n} clients still waiting for an answer 90 s after the window")
    return cpu


class ClientPool:
    """`procs` client processes; a load of C clients spreads them evenly over the processes."""

    def __init__(self, procs: int, url: str) -> None:
        ctx = mp.get_context("spawn")
        self.conns, self.procs = [], []
        for _ in range(procs):
            parent, child = ctx.Pipe()
            p = ctx.Process(target=client_process, args=(child, url), daemon=True)
            p.start()
            self.conns.append(parent)
            self.procs.append(p)

    def run(self, job: dict[str, Any], clients: int) -> dict[str, Any]:
        """Send `job` with `clients` clients in all; merged latencies (s), errors and client CPU seconds."""
        n = min(clients, len(self.conns))
        shares = [clients // n + (1 if i < clients % n else 0) for i in range(n)]
        for i, (conn, share) in enumerate(zip(self.conns, shares)):
            conn.send({**job, "clients": share, "seed": job.get("seed", 0) + 1000 * i})
        parts = [conn.recv() for conn in self.conns[:n]]
        return {"latencies": [v for p in parts for v in p["latencies"]],
                "errors": [e for p in parts for e in p["errors"]], "cpu_s": sum(p["cpu_s"] for p in parts),
                "procs": n}

    def close(self) -> None:
        for conn in self.conns:
            conn.send(None)
        for p in self.procs:
            p.join(10)


# --- one measured load -------------------------------------------------------------------------------------------

def timed_job(model: str, tensor: Any, request_batch: int, outputs: list[str], warmup: float, duration: float,
              **extra: Any) -> dict[str, Any]:
    """A load job for `model` whose requests carry `request_batch` items of input `tensor` (a TensorSignature):
    load starts 0.3 s from now (the client processes receive it first), measured after `warmup` for `duration`."""
    start = time.time() + 0.3
    return {"model": model, "input": tensor.name, "triton_type": tensor.triton_type, "dtype": tensor.dtype.str,
            "shape": (request_batch, *tensor.dims), "outputs": outputs, "start_at": start,
            "measure_from": start + warmup, "measure_to": start + warmup + duration, **extra}


def run_measured(pool: ClientPool, job: dict[str, Any], clients: int,
                 sample: Callable[[], dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """Run `job` with `clients` clients and call `sample()` (the serving side's counters) as the measuring window
    opens and as it closes; returns the load's result (ClientPool.run) and the two samples."""
    samples: list[dict[str, Any]] = []

    def sampler() -> None:
        for moment in (job["measure_from"], job["measure_to"]):
            time.sleep(max(0.0, moment - time.time()))
            samples.append(sample())

    thread = threading.Thread(target=sampler)
    thread.start()
    result = pool.run(job, clients)
    thread.join()
    return result, samples[0], samples[1]


# --- CPU of the serving processes ----------------------------------------------------------------------------

def _descendants(root: int) -> dict[int, str]:
    found: dict[int, str] = {}
    todo = [root]
    while todo:
        pid = todo.pop()
        for task in Path(f"/proc/{pid}/task").glob("*"):
            try:
                kids = [int(k) for k in (task / "children").read_text().split()]
            except OSError:
                continue
            for kid in kids:
                if kid not in found:
                    try:
                        found[kid] = Path(f"/proc/{kid}/comm").read_text().strip()
                    except OSError:
                        continue
                    todo.append(kid)
    return found


def _cpu_s(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def server_cpu(exclude: set[int]) -> dict[str, float]:
    """CPU seconds so far of this process and its non-client descendants, by kind."""
    kinds = {"this process": _cpu_s(os.getpid()), "tritonserver": 0.0, "backend stubs": 0.0, "helpers": 0.0}
    for pid, comm in _descendants(os.getpid()).items():
        if pid in exclude:
            continue
        kind = "tritonserver" if comm == "tritonserver" else \
            "backend stubs" if comm.startswith("triton_python") else "helpers"
        kinds[kind] += _cpu_s(pid)
    return kinds
