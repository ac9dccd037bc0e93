"""Serving benchmark: netdef engines on Triton Inference Server (PyTriton, `netdef.serve`) under concurrent load,
against the same engine's raw batch throughput measured in the same run.

Per model (ResNet-50 FP16 224, YOLOv4 FP16 416 with NMS in the engine where the binding builds it): the raw
runtime throughput (one InferenceSession, host batch of --raw-batch in and out, as a server instance runs it),
then one Triton server with every variant bound at once (dynamic batching on/off x 1 and 2 instances on GPU 0,
and 2 instances on 2 GPUs when two are visible), loaded by 1, 16 and 64 concurrent gRPC clients (threads in
--client-procs separate processes, so no client shares the server's interpreter) sending batch-1 requests.
Throughput counts responses completed in the measuring window (after --warmup of load), latency is theirs
at the client. The target: >= 80% of raw throughput at 64 clients with dynamic batching. Prints a table,
writes JSON after every row (--out), so a run cut short keeps what it measured.

GPU machine (Python 3.10 + TensorRT 8.6 bundle with the serve wheels, see README "Serving"):
    PYTHONPATH=. /tmp/gpu-trt/python bench/serve.py --work /tmp/sb --build-only       # engines (cached in --work)
    PYTHONPATH=. /tmp/gpu-trt/python bench/serve.py --work /tmp/sb --out /tmp/sb/serve.json
Check PyTriton under this Python without a GPU or an engine (a numpy model served, HTTP and gRPC answers checked):
    python bench/serve.py --check-env
CPU rehearsal of the whole flow (netdef's executor, a small model):
    python bench/serve.py --executor netdef --models resnet18 --size 64 --raw-batch 8 --clients 1,4 \
        --duration 1 --warmup 0.3 --work /tmp/sb-cpu
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SIZES = {"resnet18": 224, "resnet50": 224, "yolov4": 416}
# Builder optimization levels that fit the ~5-minute budget: a YOLOv4 FP16 build took 204 s at level 1 on the H100
# (no timing cache); the serving-to-raw ratio compares the same engine either way. --level overrides both.
LEVELS = {"resnet18": 1, "resnet50": 1, "yolov4": 0}


# --- engines -------------------------------------------------------------------------------------------------

def build_engine(name: str, args: argparse.Namespace) -> dict[str, Any]:
    """Build (or reuse from --work) the engine of `name` from random weights; returns paths and build time."""
    from netdef.engine import BuildSettings, save_engine

    size = args.size or SIZES[name]
    level = LEVELS[name] if args.level is None else args.level
    batch = (1, args.raw_batch, args.raw_batch)
    stem = f"{name}-{args.precision}-{size}-b{args.raw_batch}-l{level}" + (f"-{args.yolo_nms}" if name == "yolov4" else "")
    work = Path(args.work)
    engine, h5 = work / f"{stem}.engine", work / f"{name}-{size}.h5"
    if engine.exists() and Path(f"{engine}.json").exists() and h5.exists():
        return {"engine": str(engine), "weights": str(h5), "level": level, "build_s": 0.0, "reused": True}
    work.mkdir(parents=True, exist_ok=True)
    model = random_model(name, size, h5)
    settings = BuildSettings(precision=args.precision, batch=batch, optimization_level=level,
                             timing_cache=work / "timing.cache", progress=False)
    options: dict[str, Any] = {"input_size": (size, size)}
    if name == "yolov4":
        options["nms"] = args.yolo_nms  # auto: NMS in the engine where the binding builds it (small outputs)
    t0 = time.perf_counter()
    plan = model.build(settings=settings, **options)
    build_s = time.perf_counter() - t0
    save_engine(plan, engine, weights=h5)
    return {"engine": str(engine), "weights": str(h5), "level": level, "build_s": round(build_s, 1), "reused": False}


def random_model(name: str, size: int, h5: Path) -> Any:
    """A network with seeded random weights (no torch), kept as HDF5 for the executor."""
    if name.startswith("resnet"):
        from networks.resnet import ResNet, random_weights
        from weights_export.hdf5 import write_weights

        if not h5.exists():
            write_weights(h5, random_weights(name), root_attrs={"arch": name})
        return ResNet.from_hdf5(h5)
    if name == "yolov4":
        from networks.yolov4 import YOLOv4
        from weights_export.darknet_synth import write_darknet_weights, yolov4_cfg

        if not h5.exists():
            cfg_text = yolov4_cfg(width=size, height=size, width_div=1, classes=80)
            cfg = h5.with_suffix(".cfg")
            cfg.write_text(cfg_text)
            weights = write_darknet_weights(cfg_text, h5.with_suffix(".weights"), seed=0)
            return YOLOv4.from_darknet(cfg, weights, out=h5)
        return YOLOv4.from_hdf5(h5)
    raise ValueError(f"unknown model {name!r} (resnet18, resnet50, yolov4)")


def opener(executor: str, engine: str, weights: str | None) -> Any:
    """open_session(device) for the server's instances and the raw measurement, as `netdef serve` opens them."""
    from netdef.cli import make_parser
    from netdef.commands.serve import session_opener

    argv = ["serve", engine, "--executor", executor] + (["--weights", weights] if executor == "netdef" else [])
    return session_opener(make_parser().parse_args(argv), engine)


def raw_throughput(open_session: Any, device: str | None, batch: int, seconds: float) -> dict[str, float]:
    """Items/s of back-to-back session.infer on a host batch (copies in and out included, as an instance runs)."""
    with open_session(device) as session:
        spec = session.inputs[0]
        x = np.random.default_rng(0).standard_normal((batch, *spec.shape[1:])).astype(spec.dtype)
        for _ in range(3):
            session.infer(x)
        times = []
        t_end = time.perf_counter() + seconds
        while time.perf_counter() < t_end or len(times) < 5:
            t0 = time.perf_counter()
            session.infer(x)
            times.append(time.perf_counter() - t0)
    return {"batch": batch, "items_per_s": batch * len(times) / sum(times),
            "p50_ms": 1e3 * float(np.median(times)), "iterations": len(times)}


# --- load generation (client processes) -----------------------------------------------------------------------

def client_process(conn: Any, url: str, protocol: str) -> None:
    """A worker process: runs load jobs (N client threads each) sent over `conn` until it receives None."""
    while True:
        job = conn.recv()
        if job is None:
            return
        conn.send(run_clients(url, protocol, job))


def run_clients(url: str, protocol: str, job: dict[str, Any]) -> dict[str, Any]:
    if protocol == "grpc":
        import tritonclient.grpc as module
    else:
        import tritonclient.http as module
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()

    timeout = {"client_timeout": 60.0} if protocol == "grpc" else {}  # a stuck server fails the row, not the run

    def one_client(seed: int) -> None:
        client = module.InferenceServerClient(url) if protocol == "grpc" else \
            module.InferenceServerClient(url, network_timeout=60.0)
        x = np.random.default_rng(seed).standard_normal(job["shape"]).astype(job["dtype"])
        inp = module.InferInput(job["input"], list(x.shape), job["triton_type"])
        inp.set_data_from_numpy(x)  # serialized once, sent with every request
        outputs = [module.InferRequestedOutput(n) for n in job["outputs"]]
        mine = []
        while time.time() < job["start_at"]:
            time.sleep(0.001)
        try:
            while True:
                t0 = time.time()
                if t0 >= job["measure_to"]:
                    break
                client.infer(job["model"], [inp], outputs=outputs, **timeout)
                t1 = time.time()
                if job["measure_from"] <= t1 <= job["measure_to"]:  # completed in the window: throughput, latency
                    mine.append(t1 - t0)
        except Exception as exc:
            with lock:
                errors.append(str(exc)[:300])
        finally:
            client.close()
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=one_client, args=(job["seed"] + i,)) for i in range(job["threads"])]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return {"latencies": latencies, "errors": errors}


class ClientPool:
    """--client-procs processes; a load of C clients puts C threads across them."""

    def __init__(self, procs: int, url: str, protocol: str) -> None:
        ctx = mp.get_context("spawn")
        self.conns, self.procs = [], []
        for _ in range(procs):
            parent, child = ctx.Pipe()
            p = ctx.Process(target=client_process, args=(child, url, protocol), daemon=True)
            p.start()
            self.conns.append(parent)
            self.procs.append(p)

    def run(self, job: dict[str, Any], clients: int) -> dict[str, Any]:
        n = min(clients, len(self.conns))
        shares = [clients // n + (1 if i < clients % n else 0) for i in range(n)]
        for i, (conn, threads) in enumerate(zip(self.conns, shares)):
            conn.send({**job, "threads": threads, "seed": 1000 * i})
        parts = [conn.recv() for conn in self.conns[:n]]
        return {"latencies": [v for p in parts for v in p["latencies"]], "errors": [e for p in parts for e in p["errors"]]}

    def close(self) -> None:
        for conn in self.conns:
            conn.send(None)
        for p in self.procs:
            p.join(10)


# --- the benchmark --------------------------------------------------------------------------------------------

@dataclass
class Variant:
    name: str
    devices: list[str | None]
    dynamic_batching: bool
    label: str = field(default="")


def first_device(args: argparse.Namespace) -> str | None:
    return "0" if args.executor == "tensorrt" else None  # the executor runs on the CPU


def variants(args: argparse.Namespace, gpus: int) -> list[Variant]:
    out = []
    where = "GPU0" if args.executor == "tensorrt" else "CPU"
    for dyn in args.batching:
        for n in args.instances:
            out.append(Variant(f"{'dyn' if dyn else 'nodyn'}_i{n}", [first_device(args)] * n, dyn,
                               f"{n} inst {where}, {'dyn batching' if dyn else 'no batching'}"))
    if gpus >= 2 and args.executor == "tensorrt":
        out.append(Variant("dyn_2gpu", ["0", "1"], True, "2 inst on GPU0+GPU1, dyn batching"))
    return out


def bench_model(name: str, built: dict[str, Any], args: argparse.Namespace, gpus: int, report: dict[str, Any],
                rows: list[dict[str, Any]]) -> None:
    from netdef.serve.server import ModelServer, ServedModel, ServerConfig

    open_session = opener(args.executor, built["engine"], built["weights"])
    raw = raw_throughput(open_session, first_device(args), args.raw_batch, args.raw_seconds)
    report["models"][name] = {**built, "raw": raw}
    print(f"{name}: raw runtime throughput at batch {args.raw_batch}: {raw['items_per_s']:.1f} items/s "
          f"(p50 {raw['p50_ms']:.2f} ms)", flush=True)
    models = [ServedModel(f"{name}_{v.name}", open_session, v.devices, v.dynamic_batching, args.max_queue_delay_us)
              for v in variants(args, gpus)]
    ports = [args.port_base, args.port_base + 1, args.port_base + 2]
    config = ServerConfig("127.0.0.1", *ports, log_file=str(Path(args.work) / f"triton-{name}.log"))
    t0 = time.perf_counter()
    with ModelServer(models, config) as server:
        print(f"{name}: server with {len(models)} models ready in {time.perf_counter() - t0:.1f} s", flush=True)
        print(HEADER, flush=True)
        sig = models[0].signature
        url = f"127.0.0.1:{ports[1]}" if args.protocol == "grpc" else f"127.0.0.1:{ports[0]}"
        pool = ClientPool(args.client_procs, url, args.protocol)
        try:
            for variant, model in zip(variants(args, gpus), models):
                for clients in args.clients:
                    row = measure(pool, server, model, variant, clients, sig, args)
                    row.update(model=name, raw_items_per_s=raw["items_per_s"],
                               ratio_to_raw=row["items_per_s"] / raw["items_per_s"])
                    rows.append(row)
                    print(format_row(row), flush=True)
                    write_report(args.out, report, rows)
        finally:
            pool.close()


def measure(pool: ClientPool, server: Any, model: Any, variant: Variant, clients: int, sig: Any,
            args: argparse.Namespace) -> dict[str, Any]:
    before = {k: sum(i[k] for i in server.stats()[model.name]) for k in ("calls", "items")}
    start = time.time() + 0.3
    job = {"model": model.name, "input": sig.inputs[0].name, "triton_type": sig.inputs[0].triton_type,
           "dtype": sig.inputs[0].dtype.str, "shape": (args.request_batch, *sig.inputs[0].dims),
           "outputs": [t.name for t in sig.outputs], "start_at": start, "measure_from": start + args.warmup,
           "measure_to": start + args.warmup + args.duration}
    result = pool.run(job, clients)
    after = {k: sum(i[k] for i in server.stats()[model.name]) for k in ("calls", "items")}
    lat = np.array(result["latencies"]) * 1e3
    calls = after["calls"] - before["calls"]
    return {"variant": variant.name, "label": variant.label, "instances": len(variant.devices),
            "devices": variant.devices, "dynamic_batching": variant.dynamic_batching, "clients": clients,
            "request_batch": args.request_batch, "requests": int(lat.size),
            "items_per_s": lat.size * args.request_batch / args.duration,
            "p50_ms": float(np.percentile(lat, 50)) if lat.size else float("nan"),
            "p99_ms": float(np.percentile(lat, 99)) if lat.size else float("nan"),
            "mean_server_batch": (after["items"] - before["items"]) / calls if calls else 0.0,
            "errors": len(result["errors"]), "first_error": (result["errors"] or [""])[0]}


HEADER = f"{'model':<9} {'variant':<36} {'clients':>7} {'items/s':>9} {'p50 ms':>8} {'p99 ms':>8} " \
         f"{'batch':>6} {'vs raw':>7} {'errors':>6}"


def format_row(r: dict[str, Any]) -> str:
    return (f"{r['model']:<9} {r['label']:<36} {r['clients']:>7} {r['items_per_s']:>9.1f} {r['p50_ms']:>8.2f} "
            f"{r['p99_ms']:>8.2f} {r['mean_server_batch']:>6.1f} {r['ratio_to_raw']:>7.2f} {r['errors']:>6}")


def write_report(path: str | None, report: dict[str, Any], rows: list[dict[str, Any]]) -> None:
    if path:
        from netdef.atomic import write_text_atomic

        write_text_atomic(path, json.dumps({**report, "rows": rows}, indent=2) + "\n")


def verdicts(report: dict[str, Any], rows: list[dict[str, Any]], target: float) -> list[str]:
    lines = []
    for name, info in report["models"].items():
        best = [r for r in rows if r["model"] == name and r["dynamic_batching"] and r["clients"] == max(
            x["clients"] for x in rows)]
        if not best:
            continue
        top = max(best, key=lambda r: r["items_per_s"])
        ratio = top["items_per_s"] / info["raw"]["items_per_s"]
        lines.append(f"{name}: best at {top['clients']} clients with dynamic batching: {top['items_per_s']:.1f} items/s "
                     f"({top['label']}) = {ratio:.2f}x raw {info['raw']['items_per_s']:.1f}; target >= {target:.2f}: "
                     f"{'met' if ratio >= target else 'NOT met'}")
    return lines


# --- environment check -----------------------------------------------------------------------------------------

class NumpySession:
    """A stand-in InferenceSession without TensorRT or torch: y = 2 x + item index offset (batch dim N)."""

    def __init__(self, device: str | None) -> None:
        from netdef.runtime.buffers import TensorSpec

        f32 = np.dtype(np.float32)
        self.inputs = [TensorSpec("x", True, f32, (-1, 4), (1, 4), (8, 4))]
        self.outputs = [TensorSpec("y", False, f32, (-1, 4), (1, 4), (8, 4))]
        self.meta = {"batch": [1, 4, 8]}
        self.closed = False

    def input_buffer(self, name: str, shape: tuple[int, ...]) -> None:
        return None

    def infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {"y": feeds["x"] * 2 + 1}

    def close(self) -> None:
        self.closed = True


def check_env(args: argparse.Namespace) -> int:
    """Serve a numpy model through netdef.serve (2 instances) and a plain PyTriton callable; check the answers."""
    import tritonclient.grpc as grpcclient
    import tritonclient.http as httpclient

    from netdef.serve.server import ModelServer, ServedModel, ServerConfig

    print(f"Python {sys.version.split()[0]} at {sys.executable}", flush=True)
    ports = [args.port_base, args.port_base + 1, args.port_base + 2]
    sessions: list[NumpySession] = []

    def open_numpy(device: str | None) -> NumpySession:
        sessions.append(NumpySession(device))
        return sessions[-1]

    t0 = time.perf_counter()
    config = ServerConfig("127.0.0.1", *ports, log_file=args.log_file)
    with ModelServer([ServedModel("numpy_model", open_numpy, [None, None])], config) as server:
        from pytriton.decorators import batch
        from pytriton.model_config import ModelConfig, Tensor

        @batch
        def plain(x: np.ndarray) -> dict[str, np.ndarray]:
            return {"y": x - 1}

        server.triton.bind("plain_callable", plain, inputs=[Tensor(name="x", dtype=np.float32, shape=(4,))],
                           outputs=[Tensor(name="y", dtype=np.float32, shape=(4,))], config=ModelConfig(max_batch_size=8))
        print(f"server ready in {time.perf_counter() - t0:.1f} s; environment: {server.environment}", flush=True)
        x = np.arange(12, dtype=np.float32).reshape(3, 4)
        for module, url in ((httpclient, f"127.0.0.1:{ports[0]}"), (grpcclient, f"127.0.0.1:{ports[1]}")):
            client = module.InferenceServerClient(url)
            for model, expected in (("numpy_model", x * 2 + 1), ("plain_callable", x - 1)):
                client.is_model_ready(model) or _fail(f"{model} not ready")
                inp = module.InferInput("x", list(x.shape), "FP32")
                inp.set_data_from_numpy(x)
                got = client.infer(model, [inp]).as_numpy("y")
                if not np.array_equal(got, expected):
                    _fail(f"{module.__name__} {model}: {got} != {expected}")
                print(f"ok: {module.__name__.split('.')[-1]} {model}", flush=True)
            client.close()
    if not all(s.closed for s in sessions) or len(sessions) != 2:
        _fail("the server did not close its 2 sessions")
    print("check-env: PyTriton serves netdef.serve models and plain callables here; stopped cleanly", flush=True)
    return 0


def _fail(message: str) -> None:
    raise SystemExit(f"check-env FAILED: {message}")


# --- main -----------------------------------------------------------------------------------------------------

def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ints = lambda s: [int(v) for v in s.split(",")]  # noqa: E731
    p.add_argument("--check-env", action="store_true", help="only check that PyTriton serves under this Python")
    p.add_argument("--log-file", help="--check-env: Triton's log goes here (default: standard output)")
    p.add_argument("--work", default="/tmp/netdef-serve-bench", help="engines, weights, timing cache, Triton logs")
    p.add_argument("--out", help="JSON results (written after every row)")
    p.add_argument("--models", default="resnet50,yolov4")
    p.add_argument("--executor", choices=("tensorrt", "netdef"), default="tensorrt")
    p.add_argument("--precision", default="fp16")
    p.add_argument("--level", type=int, help="builder optimization level for every model (default: ResNet 1, "
                   "YOLOv4 0; 3 is TensorRT's default)")
    p.add_argument("--size", type=int, help="input size (default: 224 ResNet, 416 YOLOv4)")
    p.add_argument("--engine", action="append", default=[], metavar="MODEL=PATH",
                   help="use a prebuilt engine (its sidecar beside it; HDF5 weights only for --executor netdef)")
    p.add_argument("--yolo-nms", choices=("auto", "engine", "raw"), default="auto",
                   help="YOLOv4 outputs: NMS in the engine (auto: where the binding builds it) or raw boxes/scores")
    p.add_argument("--build-only", action="store_true")
    p.add_argument("--raw-batch", type=int, default=32, help="raw throughput batch and the engines' max batch")
    p.add_argument("--raw-seconds", type=float, default=2.0)
    p.add_argument("--clients", type=ints, default=[1, 16, 64])
    p.add_argument("--instances", type=ints, default=[1, 2])
    p.add_argument("--batching", default="on,off", help="dynamic batching variants: on,off")
    p.add_argument("--request-batch", type=int, default=1, help="items per client request")
    p.add_argument("--max-queue-delay-us", type=int, default=0)
    p.add_argument("--duration", type=float, default=2.5, help="measuring window per row, seconds")
    p.add_argument("--warmup", type=float, default=0.7, help="load before the window, seconds")
    p.add_argument("--client-procs", type=int, default=max(1, min(8, (os.cpu_count() or 2) // 2)))
    p.add_argument("--protocol", choices=("grpc", "http"), default="grpc")
    p.add_argument("--port-base", type=int, default=18600, help="HTTP, gRPC, metrics on this port and the next two")
    p.add_argument("--target", type=float, default=0.8)
    args = p.parse_args(argv)
    args.batching = [{"on": True, "off": False}[v] for v in args.batching.split(",")]
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.check_env:
        return check_env(args)
    from netdef import trt as shim

    feat = shim.features()
    gpus = 0
    if args.executor == "tensorrt":
        from netdef.runtime import cuda

        try:
            gpus = cuda.device_count()
        except cuda.CudaError as exc:  # no driver here: engines can still be built (--build-only)
            print(f"no CUDA GPU: {exc}", flush=True)
    shm = os.statvfs("/dev/shm")
    report: dict[str, Any] = {"date": time.strftime("%Y-%m-%d %H:%M"), "binding": f"{feat.flavor} {feat.version}",
                              "gpus": gpus, "executor": args.executor, "python": sys.version.split()[0],
                              "dev_shm_free_gb": round(shm.f_bavail * shm.f_frsize / 2**30, 1),
                              "settings": {k: v for k, v in vars(args).items() if k not in ("out",)}, "models": {}}
    print(f"{feat.flavor} {feat.version}, {gpus} GPU(s), /dev/shm free {report['dev_shm_free_gb']} GB", flush=True)
    prebuilt = dict(e.split("=", 1) for e in args.engine)
    built = {}
    for name in args.models.split(","):
        if name in prebuilt:
            built[name] = {"engine": prebuilt[name], "weights": None, "build_s": 0.0, "reused": True}
        else:
            built[name] = build_engine(name, args)
        meta = json.loads(Path(f"{built[name]['engine']}.json").read_text())
        built[name]["outputs"] = {o["name"]: o["shape"] for o in meta.get("outputs", [])}
        print(f"{name}: engine {built[name]['engine']} (build {built[name]['build_s']} s"
              f"{', reused' if built[name]['reused'] else ''}; outputs {built[name]['outputs']})", flush=True)
    if args.build_only:
        return 0
    rows: list[dict[str, Any]] = []
    for name, info in built.items():
        try:
            bench_model(name, info, args, gpus, report, rows)
        except Exception as exc:  # the next model still runs; the error is in the report
            report["models"].setdefault(name, {})["error"] = f"{type(exc).__name__}: {exc}"
            print(f"{name}: FAILED: {type(exc).__name__}: {exc}", flush=True)
            write_report(args.out, report, rows)
    print()
    print(HEADER)
    for row in rows:
        print(format_row(row))
    for line in verdicts(report, rows, args.target):
        print(line)
    report["verdicts"] = verdicts(report, rows, args.target)
    write_report(args.out, report, rows)
    return 0 if rows and not any(r["errors"] for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
