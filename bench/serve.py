"""Serving benchmark: netdef engines on Triton Inference Server (PyTriton, `netdef.serve`) under concurrent load,
against the same engine's raw batch throughput measured in the same run.

Per model (ResNet-50 FP16 224, YOLOv4 FP16 416 with NMS in the engine where the binding builds it): the raw
runtime throughput (one InferenceSession, host batch of --raw-batch in and out, as a server instance runs it; ms
per batch at smaller batches too), then one Triton server with every variant loaded at once (dynamic batching
on/off x 1 and 2 instances on GPU 0, and 2 and 4 instances spread over the GPUs when two are visible; each
instance a Triton Python-backend process with its own session), loaded by 1, 16 and 64 concurrent gRPC clients
sending batch-1 requests. The clients live in --client-procs processes (bench/serve_clients.py: closed loop,
async gRPC, a few channels per process), so no client shares the server's interpreter. --inputs shm puts each
client process's input tensor in system shared memory once instead of in every request (no image bytes on gRPC).

Where the time goes, per row: Triton's statistics per request (queue, inputs into the instance, the instance's
execute(), outputs back) beside the raw session's ms at the batch Triton formed (`engine`: what execute() would
take with no serving around it), and the CPU ms per item of the clients, tritonserver, the backend stubs and the
rest, with the share of all cores they keep busy. The NO-OP variant serves a model with the engine's I/O that
computes nothing (bench/serve_overhead.py:NoopSession, joined into a staging buffer like the real one) under
the same clients: the ceiling of serving plus clients on this machine. When that ceiling is below the target
the verdict says so: the engine is then not what limits the served throughput.
Throughput counts responses completed in the measuring window (after --warmup of load), latency is theirs at
the client. The target: >= 80% of raw throughput at 64 clients with dynamic batching. Prints a table, writes
JSON after every row (--out), so a run cut short keeps what it measured. bench/serve_overhead.py measures the
serving overhead without a GPU.

GPU machine (Python 3.10 + TensorRT 8.6 bundle with the serve wheels, see README "Serving"):
    PYTHONPATH=. /tmp/gpu-trt/python bench/serve.py --work /tmp/sb --build-only       # engines (cached in --work)
    PYTHONPATH=. /tmp/gpu-trt/python bench/serve.py --work /tmp/sb --out /tmp/sb/serve.json
Check PyTriton under this Python without a GPU or an engine (a numpy model served, HTTP and gRPC answers checked):
    python bench/serve.py --check-env
The same with engines taking 8-bit pixels (normalized in the engine: 150 KB per 224x224 image instead of 600 KB):
    PYTHONPATH=. /tmp/gpu-trt/python bench/serve.py --work /tmp/sb --input-dtype uint8 --out /tmp/sb/serve-uint8.json
CPU rehearsal of the whole flow (netdef's executor, a small model):
    python bench/serve.py --executor netdef --models resnet18 --size 64 --raw-batch 8 --clients 1,4 \
        --duration 1 --warmup 0.3 --work /tmp/sb-cpu
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.serve_clients import ClientPool, run_measured, server_cpu, timed_job  # noqa: E402
from netdef.serve.phases import PROFILE_ENV, format_phases, phase_offsets, phase_summary  # noqa: E402
from netdef.serve.server import ms_per_request  # noqa: E402

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
    opt = args.opt_batch or args.raw_batch
    batch = (1, opt, args.raw_batch)
    stem = f"{name}-{args.precision}-{size}-b{args.raw_batch}-l{level}" + (f"-{args.yolo_nms}" if name == "yolov4" else "")
    stem += ("-uint8" if args.input_dtype == "uint8" else "") + (f"-opt{opt}" if opt != args.raw_batch else "")
    work = Path(args.work)
    engine, h5 = work / f"{stem}.engine", work / f"{name}-{size}.h5"
    tuned = {"opt_batch": opt, "raw_batch": args.raw_batch}
    if engine.exists() and Path(f"{engine}.json").exists() and h5.exists():
        return {"engine": str(engine), "weights": str(h5), "level": level, "build_s": 0.0, "reused": True, **tuned}
    work.mkdir(parents=True, exist_ok=True)
    model = random_model(name, size, h5)
    settings = BuildSettings(precision=args.precision, batch=batch, optimization_level=level,
                             timing_cache=work / "timing.cache", progress=False)
    options: dict[str, Any] = {"input_size": (size, size)}
    if args.input_dtype != "float32":
        options["input_dtype"] = args.input_dtype  # 8-bit pixels in, normalized by the engine: 4x fewer bytes
    if name == "yolov4":
        options["nms"] = args.yolo_nms  # auto: NMS in the engine where the binding builds it (small outputs)
    t0 = time.perf_counter()
    plan = model.build(settings=settings, **options)
    build_s = time.perf_counter() - t0
    save_engine(plan, engine, weights=h5)
    return {"engine": str(engine), "weights": str(h5), "level": level, "build_s": round(build_s, 1), "reused": False,
            **tuned}


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


def instance_setup(executor: str, engine: str, weights: str | None, instances: int = 1) -> dict[str, Any]:
    """The options each of `instances` served instances opens its session with, as `netdef serve` gives them."""
    from netdef.cli import make_parser
    from netdef.commands.serve import instance_options

    argv = ["serve", engine, "--executor", executor] + (["--weights", weights] if executor == "netdef" else [])
    return instance_options(make_parser().parse_args(argv), engine, instances)


def raw_throughput(name: str, options: dict[str, Any], device: str | None, batch: int,
                   seconds: float) -> tuple[dict[str, Any], Any]:
    """Back-to-back session.infer on host batches (copies in and out included, as an instance runs them): items/s
    at `batch` for `seconds` (the reference), and ms per batch at smaller batches for a quarter of that each (the
    engine's share of an execution at the batch Triton formed). Also the model's signature, from that session,
    batching up to `batch`."""
    from netdef.commands.serve import open_instance
    from netdef.runtime.inputs import random_array
    from netdef.serve.signature import ModelSignature

    with open_instance(device, **options) as session:
        # Triton batches up to the raw batch (the engine may allow more): the same work as the reference
        signature = ModelSignature.from_session(name, session, max_batch=batch)
        rng = np.random.default_rng(0)
        ms_per_batch: dict[int, float] = {}
        for b in sorted({n for n in (1, 4, 8, 16) if n < batch} | {batch}):
            feeds = {s.name: random_array((b, *s.shape[1:]), s.dtype, rng) for s in session.inputs}
            for _ in range(3):
                session.infer(feeds)
            times: list[float] = []
            t_end = time.perf_counter() + (seconds if b == batch else seconds / 4)
            while time.perf_counter() < t_end or len(times) < 5:
                t0 = time.perf_counter()
                session.infer(feeds)
                times.append(time.perf_counter() - t0)
            ms_per_batch[b] = 1e3 * float(np.median(times))
            if b == batch:
                reference = {"batch": batch, "items_per_s": batch * len(times) / sum(times),
                             "p50_ms": ms_per_batch[b], "iterations": len(times)}
    return {**reference, "ms_per_batch": ms_per_batch}, signature


def engine_ms(raw: dict[str, Any], batch: float) -> float:
    """The raw session's ms per batch at a (mean) batch size, interpolated between the measured ones."""
    sizes = sorted(raw["ms_per_batch"])
    return float(np.interp(batch, sizes, [raw["ms_per_batch"][b] for b in sizes]))


# --- the benchmark --------------------------------------------------------------------------------------------

NOOP_FACTORY = "bench.serve_overhead:NoopSession"  # the engine's I/O, no work: the serving stack and clients alone


@dataclass
class Variant:
    name: str
    devices: list[str | None]
    dynamic_batching: bool
    label: str = field(default="")
    noop: bool = False


STARTED = time.monotonic()


def out_of_time(args: argparse.Namespace) -> bool:
    """Past --deadline (seconds since start): no new model or row is started, what was measured is reported."""
    return args.deadline is not None and time.monotonic() - STARTED > args.deadline


def first_device(args: argparse.Namespace) -> str | None:
    return "0" if args.executor == "tensorrt" else None  # the executor runs on the CPU


def variants(args: argparse.Namespace, gpus: int) -> list[Variant]:
    out = []
    where = "GPU0" if args.executor == "tensorrt" else "CPU"
    if args.noop:
        n = max(args.instances)
        out.append(Variant(f"noop_i{n}", [None] * n, True, f"NO-OP {n} inst, dyn batching", noop=True))
    for dyn in args.batching:
        for n in args.instances:
            out.append(Variant(f"{'dyn' if dyn else 'nodyn'}_i{n}", [first_device(args)] * n, dyn,
                               f"{n} inst {where}, {'dyn batching' if dyn else 'no batching'}"))
    if gpus >= 2 and args.executor == "tensorrt":
        for n in args.gpu_instances:
            out.append(Variant(f"dyn_{gpus}gpu_i{n}", [str(i % gpus) for i in range(n)], True,
                               f"{n} inst on {gpus} GPUs, dyn batching"))
    return out


def bench_model(name: str, built: dict[str, Any], args: argparse.Namespace, gpus: int, report: dict[str, Any],
                rows: list[dict[str, Any]]) -> None:
    from netdef.commands.serve import INSTANCE_FACTORY
    from netdef.serve.server import ModelServer, ServedModel, ServerConfig

    options = instance_setup(args.executor, built["engine"], built["weights"])
    raw, signature = raw_throughput(name, options, first_device(args), args.raw_batch, args.raw_seconds)
    report["models"][name] = {**built, "raw": raw}
    print(f"{name}: raw runtime throughput at batch {args.raw_batch}: {raw['items_per_s']:.1f} items/s "
          f"(p50 {raw['p50_ms']:.2f} ms); ms per batch " +
          ", ".join(f"{b}: {ms:.2f}" for b, ms in raw["ms_per_batch"].items()), flush=True)
    print(f"{name}: bytes per item in {sum(int(np.prod(t.dims)) * t.dtype.itemsize for t in signature.inputs)}, out "
          f"{sum(int(np.prod(t.dims)) * t.dtype.itemsize for t in signature.outputs)}", flush=True)
    models = []
    for v in variants(args, gpus):
        served = f"{name}_{v.name}"
        if v.noop:
            factory, opts = NOOP_FACTORY, {"signature": {**signature.as_dict(), "name": served}}
        else:
            factory, opts = INSTANCE_FACTORY, instance_setup(args.executor, built["engine"], built["weights"],
                                                             len(v.devices))
        models.append(ServedModel(served, factory, opts, v.devices, v.dynamic_batching, args.max_queue_delay_us,
                                  signature=dataclasses.replace(signature, name=served)))
    ports = [args.port_base, args.port_base + 1, args.port_base + 2]
    config = ServerConfig("127.0.0.1", *ports, log_file=str(Path(args.work) / f"triton-{name}.log"))
    t0 = time.perf_counter()
    with ModelServer(models, config) as server:
        print(f"{name}: server with {len(models)} models ready in {time.perf_counter() - t0:.1f} s", flush=True)
        print(HEADER, flush=True)
        pool = ClientPool(args.client_procs, f"127.0.0.1:{ports[1]}")
        try:
            for variant, model in zip(variants(args, gpus), models):
                for clients in args.clients:
                    for inputs in args.inputs:
                        if inputs == "shm" and clients != max(args.clients) and len(args.inputs) > 1:
                            continue  # the shm contrast matters under full load only
                        if out_of_time(args):
                            report["cut"] = f"--deadline {args.deadline} s reached in {name}"
                            print(f"{name}: {report['cut']}; the rows left are skipped", flush=True)
                            return
                        row = measure(pool, server, model, variant, clients, inputs, args)
                        gpus_used = len({d for d in variant.devices if d is not None}) or 1
                        row.update(model=name, gpus_used=gpus_used, raw_items_per_s=raw["items_per_s"] * gpus_used,
                                   ratio_to_raw=row["items_per_s"] / (raw["items_per_s"] * gpus_used),
                                   engine_ms=0.0 if variant.noop else engine_ms(raw, max(1.0, row["mean_server_batch"])))
                        rows.append(row)
                        print(format_row(row), flush=True)
                        if row.get("phases"):
                            print(format_phases(row["phases"]), flush=True)
                        write_report(args.out, report, rows)
        finally:
            pool.close()


def measure(pool: ClientPool, server: Any, model: Any, variant: Variant, clients: int, inputs: str,
            args: argparse.Namespace) -> dict[str, Any]:
    sig = model.signature
    job = timed_job(model.name, sig.inputs[0], args.request_batch, [t.name for t in sig.outputs], args.warmup,
                    args.duration, mode=args.client_mode, inputs=inputs, token=server.access_token,
                    channels=args.channels)
    exclude = {p.pid for p in pool.procs}
    # Triton's counts, the serving processes' CPU and (--phases) the instances' phase files over the window
    result, w0, w1 = run_measured(pool, job, clients,
                                  lambda: {"stats": server.stats()[model.name], "cpu": server_cpu(exclude),
                                           "phases": phase_offsets(os.environ[PROFILE_ENV]) if args.phases else {}})
    before, after = w0["stats"], w1["stats"]
    lat = np.array(result["latencies"]) * 1e3
    items = max(1, lat.size * args.request_batch)
    executions = after["executions"] - before["executions"]
    per_request = ms_per_request(before, after)
    cpu_s = {k: w1["cpu"][k] - w0["cpu"][k] for k in w0["cpu"]}
    cpu_s["clients"] = result["cpu_s"]
    cores = len(os.sched_getaffinity(0))
    return {"variant": variant.name, "label": variant.label, "instances": len(variant.devices),
            "devices": variant.devices, "dynamic_batching": variant.dynamic_batching, "noop": variant.noop,
            "clients": clients, "client_mode": args.client_mode, "inputs": inputs, "request_batch": args.request_batch,
            "requests": int(lat.size), "items_per_s": lat.size * args.request_batch / args.duration,
            "p50_ms": float(np.percentile(lat, 50)) if lat.size else float("nan"),
            "p99_ms": float(np.percentile(lat, 99)) if lat.size else float("nan"),
            "mean_server_batch": (after["items"] - before["items"]) / executions if executions else 0.0,
            # Triton's, per request (each sees its batch's): queued, inputs into the instance, its execute()
            # (the batch's join, engine and cut, the stub's hand-over), outputs back
            "ms_per_request": per_request,
            "cpu_ms_per_item": {k: 1e3 * v / items for k, v in cpu_s.items()},
            "cpu_busy": sum(cpu_s.values()) / (args.duration * cores), "cores": cores,
            "client_cpu_ms_per_request": 1e3 * result["cpu_s"] / max(1, lat.size),
            "errors": len(result["errors"]), "first_error": (result["errors"] or [""])[0],
            **({"phases": phase_summary(w0["phases"], w1["phases"])} if args.phases else {})}


# ms per request (Triton's statistics): queue, in (inputs into the instance), exec (its execute()), engine (the raw
# session at that mean batch: the part of exec that is not serving), out; CPU ms per item of the client processes,
# tritonserver, the backend stubs (the instances), the rest; busy: all of it over the machine's cores
HEADER = (f"{'model':<9} {'variant':<30} {'in':<4} {'cli':>4} {'items/s':>8} {'p50 ms':>7} {'p99 ms':>7} "
          f"{'batch':>5} {'queue':>6} {'in':>5} {'exec':>6} {'engine':>6} {'out':>5} | {'client':>6} {'triton':>6} "
          f"{'stubs':>6} {'other':>6} {'busy':>5} | {'vs raw':>6} {'err':>4}")


def format_row(r: dict[str, Any]) -> str:
    t, c = r["ms_per_request"], r["cpu_ms_per_item"]
    return (f"{r['model']:<9} {r['label']:<30} {r['inputs']:<4} {r['clients']:>4} {r['items_per_s']:>8.1f} "
            f"{r['p50_ms']:>7.2f} {r['p99_ms']:>7.2f} {r['mean_server_batch']:>5.1f} {t['queue']:>6.2f} "
            f"{t['compute_input']:>5.2f} {t['compute_infer']:>6.2f} {r['engine_ms']:>6.2f} {t['compute_output']:>5.2f}"
            f" | {c['clients']:>6.3f} {c['tritonserver']:>6.3f} {c['backend stubs']:>6.3f} "
            f"{c['helpers'] + c['this process']:>6.3f} {100 * r['cpu_busy']:>4.0f}% | {r['ratio_to_raw']:>6.2f} "
            f"{r['errors']:>4}")


def write_report(path: str | None, report: dict[str, Any], rows: list[dict[str, Any]]) -> None:
    if path:
        from netdef.atomic import write_text_atomic

        write_text_atomic(path, json.dumps({**report, "rows": rows}, indent=2) + "\n")


def verdicts(report: dict[str, Any], rows: list[dict[str, Any]], target: float) -> list[str]:
    lines = []
    for name, info in report["models"].items():
        mine = [r for r in rows if r["model"] == name and r["dynamic_batching"]]
        if not mine:
            continue
        most = max(r["clients"] for r in mine)
        for noop in (False, True):
            best = [r for r in mine if r["clients"] == most and r["noop"] == noop]
            if not best:
                continue
            # against the raw throughput of as many GPUs as the row's instances use (one GPU's raw x GPUs)
            top = max(best, key=lambda r: r["items_per_s"] / r.get("gpus_used", 1))
            raw = info["raw"]["items_per_s"] * top.get("gpus_used", 1)
            ratio = top["items_per_s"] / raw
            if noop:  # what serving and these clients reach with no engine at all: the ceiling of this machine
                lines.append(f"{name}: ceiling without the engine (no-op model, same clients, {top['inputs']} inputs): "
                             f"{top['items_per_s']:.1f} items/s = {ratio:.2f}x raw" +
                             ("" if ratio >= target else f"; below the target {target:.2f}: the serving stack and "
                              "clients on this machine cannot carry it, whatever the engine"))
            else:
                # an engine tuned for another batch has a lower raw throughput than the engine the target means
                opt = info.get("opt_batch", info.get("raw_batch"))
                judged = (f"not judged: the engine is tuned for batch {opt}, the target compares with one tuned "
                          f"for the raw batch {info['raw_batch']}" if opt != info.get("raw_batch") else
                          "met" if ratio >= target else "NOT met")
                lines.append(f"{name}: best at {most} clients with dynamic batching: {top['items_per_s']:.1f} items/s "
                             f"({top['label']}, {top['inputs']} inputs) = {ratio:.2f}x raw {raw:.1f}"
                             f"{' (%d GPUs)' % top['gpus_used'] if top.get('gpus_used', 1) > 1 else ''}; target >= "
                             f"{target:.2f}: {judged}")
    return lines


# --- environment check -----------------------------------------------------------------------------------------

class NumpySession:
    """A stand-in InferenceSession without TensorRT or torch: y = 2 x + 1 (batch dim N). A session factory for
    served instances too; `marker`: a folder where close() leaves a file, so the server's stop is visible."""

    def __init__(self, device: str | None, marker: str | None = None) -> None:
        from netdef.runtime.buffers import TensorSpec

        f32 = np.dtype(np.float32)
        self.inputs = [TensorSpec("x", True, f32, (-1, 4), (1, 4), (8, 4))]
        self.outputs = [TensorSpec("y", False, f32, (-1, 4), (1, 4), (8, 4))]
        self.meta = {"batch": [1, 4, 8]}
        self.marker = marker

    def input_buffer(self, name: str, shape: tuple[int, ...]) -> None:
        return None

    def infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {"y": feeds["x"] * 2 + 1}

    def close(self) -> None:
        if self.marker:
            Path(self.marker, f"closed-{os.getpid()}").touch()


def check_env(args: argparse.Namespace) -> int:
    """Serve a numpy model through netdef.serve (2 instances, each in a backend process) and a plain PyTriton
    callable; check the answers and that the instances closed their sessions."""
    import tempfile

    import tritonclient.grpc as grpcclient
    import tritonclient.http as httpclient

    from netdef.serve.server import ModelServer, ServedModel, ServerConfig

    print(f"Python {sys.version.split()[0]} at {sys.executable}", flush=True)
    ports = [args.port_base, args.port_base + 1, args.port_base + 2]
    marker = tempfile.mkdtemp(prefix="netdef-check-env-")
    t0 = time.perf_counter()
    config = ServerConfig("127.0.0.1", *ports, log_file=args.log_file)
    model = ServedModel("numpy_model", "bench.serve:NumpySession", {"marker": marker}, [None, None])
    with ModelServer([model], config) as server:
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
            for name, expected in (("numpy_model", x * 2 + 1), ("plain_callable", x - 1)):
                client.is_model_ready(name) or _fail(f"{name} not ready")
                inp = module.InferInput("x", list(x.shape), "FP32")
                inp.set_data_from_numpy(x)
                got = client.infer(name, [inp]).as_numpy("y")
                if not np.array_equal(got, expected):
                    _fail(f"{module.__name__} {name}: {got} != {expected}")
                print(f"ok: {module.__name__.split('.')[-1]} {name}", flush=True)
            client.close()
    closed = list(Path(marker).glob("closed-*"))
    if len(closed) != 3:  # the 2 instances and the session netdef.serve opened once for the signature
        _fail(f"expected 3 sessions closed (2 instances and the signature's), found {len(closed)}")
    print("check-env: Triton serves netdef.serve models (Python backend) and PyTriton callables here; "
          "stopped cleanly", flush=True)
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
    p.add_argument("--input-dtype", choices=("float32", "uint8"), default="float32",
                   help="uint8: engines take 8-bit RGB pixels and normalize them themselves (bytes per item / 4)")
    p.add_argument("--build-only", action="store_true")
    p.add_argument("--raw-batch", type=int, default=32, help="raw throughput batch and the engines' max batch")
    p.add_argument("--opt-batch", type=int, help="the engines' profile opt batch, which TensorRT picks kernels for "
                   "(default: --raw-batch); many instances leave each small batches")
    p.add_argument("--raw-seconds", type=float, default=2.0)
    p.add_argument("--clients", type=ints, default=[1, 16, 64])
    p.add_argument("--instances", type=ints, default=[1, 2])
    p.add_argument("--batching", default="on,off", help="dynamic batching variants: on,off")
    p.add_argument("--no-noop", dest="noop", action="store_false",
                   help="skip the no-op model (the engine's I/O, no work: what serving and the clients reach alone)")
    p.add_argument("--request-batch", type=int, default=1, help="items per client request")
    p.add_argument("--max-queue-delay-us", type=int, default=0)
    p.add_argument("--duration", type=float, default=2.5, help="measuring window per row, seconds")
    p.add_argument("--warmup", type=float, default=0.7, help="load before the window, seconds")
    p.add_argument("--gpu-instances", type=ints, default=[2, 4],
                   help="instances spread over the GPUs when two or more are visible")
    p.add_argument("--client-procs", type=int, default=max(1, min(16, (os.cpu_count() or 2) // 2)),
                   help="client processes (default: half the cores, at most 16)")
    p.add_argument("--client-mode", choices=("async", "sync"), default="async",
                   help="async: gRPC's own threads carry the requests; sync: a thread per client")
    p.add_argument("--channels", type=int, default=4, help="gRPC channels per client process (async)")
    p.add_argument("--inputs", default="grpc,shm", help="grpc (tensor in each request), shm (system shared memory), "
                   "or grpc,shm: grpc rows at every client count, shm rows at the largest")
    p.add_argument("--port-base", type=int, default=18600, help="HTTP, gRPC, metrics on this port and the next two")
    p.add_argument("--phases", action="store_true", help="time the instances' execute() phases (inputs, join, "
                   "infer, responses; netdef/serve/phases.py) in every row")
    p.add_argument("--target", type=float, default=0.8)
    p.add_argument("--mps", action="store_true", help="every row under a private CUDA MPS daemon (netdef serve --mps)")
    p.add_argument("--deadline", type=float, help="seconds from start after which no new model or row starts "
                   "(a row takes ~4 s, a server start ~1 min, a YOLOv4 build ~2 min); the report says what was cut")
    args = p.parse_args(argv)
    args.batching = [{"on": True, "off": False}[v] for v in args.batching.split(",")]
    args.inputs = args.inputs.split(",")
    if not set(args.inputs) <= {"grpc", "shm"}:
        p.error(f"--inputs {','.join(args.inputs)}: grpc, shm or grpc,shm")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.check_env:
        return check_env(args)
    from netdef.serve.mps import mps_daemon

    with mps_daemon() if args.mps else contextlib.nullcontext():  # before the first CUDA call, as netdef serve
        return run(args)


def run(args: argparse.Namespace) -> int:
    if args.phases:  # the instances' stub processes inherit it
        os.makedirs(args.work, exist_ok=True)
        os.environ[PROFILE_ENV] = f"{args.work}/phases-{os.getpid()}"
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
                              "gpus": gpus, "executor": args.executor, "input_dtype": args.input_dtype,
                              "python": sys.version.split()[0],
                              "dev_shm_free_gb": round(shm.f_bavail * shm.f_frsize / 2**30, 1),
                              "settings": {k: v for k, v in vars(args).items() if k not in ("out",)}, "models": {}}
    print(f"{feat.flavor} {feat.version}, {gpus} GPU(s), /dev/shm free {report['dev_shm_free_gb']} GB"
          f"{', CUDA MPS' if args.mps else ''}", flush=True)
    prebuilt = dict(e.split("=", 1) for e in args.engine)
    rows: list[dict[str, Any]] = []
    for name in args.models.split(","):  # each model built and measured before the next is built
        if out_of_time(args):
            report["cut"] = f"--deadline {args.deadline} s reached before {name}"
            print(f"{name}: skipped, {report['cut']}", flush=True)
            break
        if name in prebuilt:
            info = {"engine": prebuilt[name], "weights": None, "build_s": 0.0, "reused": True}
        else:
            info = build_engine(name, args)
        meta = json.loads(Path(f"{info['engine']}.json").read_text())
        info["outputs"] = {o["name"]: o["shape"] for o in meta.get("outputs", [])}
        print(f"{name}: engine {info['engine']} (build {info['build_s']} s"
              f"{', reused' if info['reused'] else ''}; outputs {info['outputs']})", flush=True)
        if args.build_only:
            continue
        try:
            bench_model(name, info, args, gpus, report, rows)
        except Exception as exc:  # the next model still runs; the error is in the report
            report["models"].setdefault(name, {})["error"] = f"{type(exc).__name__}: {exc}"
            print(f"{name}: FAILED: {type(exc).__name__}: {exc}", flush=True)
            write_report(args.out, report, rows)
    if args.build_only:
        return 0
    print()
    print(HEADER)
    for row in rows:
        print(format_row(row))
    report["verdicts"] = verdicts(report, rows, args.target) + ([f"CUT: {report['cut']}"] if "cut" in report else [])
    for line in report["verdicts"]:
        print(line)
    write_report(args.out, report, rows)
    return 0 if rows and not any(r["errors"] for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
