"""`netdef serve ENGINE [ENGINE ...]`: serve engines with NVIDIA Triton Inference Server (through PyTriton).

One Triton model per engine (name: the file stem, or --name), inputs/outputs and the batch range from the
engine, dynamic batching toward the profile's opt and max batch, N instances each with its own session in
its own process (Triton's Python backend; on TensorRT its own execution context and stream, spread over the
visible GPUs or --gpus). The model function is netdef's runtime: TensorRT on a GPU, or `--executor netdef`
where TensorRT cannot run.
HTTP, gRPC and Prometheus metrics listen on --host (default 127.0.0.1 only; 0.0.0.0 to expose them).
Ctrl+C or SIGTERM stops the server cleanly. Needs the `serve` extra: pip install 'netdef-trt[serve]'.
--mps runs a private CUDA MPS daemon meanwhile (netdef.serve.mps): the instances' processes then share a GPU at
once rather than in turns.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import signal
import threading
from typing import Any

from netdef.commands.infer import add_session_arguments, open_from_args


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="serve engines with Triton Inference Server (HTTP/gRPC, dynamic batching)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_session_arguments(p)
    p.add_argument("more_engines", nargs="*", metavar="ENGINE", help="more engines, one Triton model each")
    p.add_argument("--name", action="append", help="Triton model name, once per engine in order (default: file stem)")
    p.add_argument("--instances", type=int, default=1, help="model instances per engine (default 1)")
    p.add_argument("--gpus", help="tensorrt: GPU indices to spread the instances over, e.g. 0,1 (default: all visible)")
    p.add_argument("--max-batch", type=int, help="largest batch Triton forms (default: the engine profile's max)")
    p.add_argument("--no-dynamic-batching", dest="dynamic_batching", action="store_false",
                   help="run each request on its own (default: Triton's dynamic batcher joins requests)")
    p.add_argument("--max-queue-delay-us", type=int, default=0,
                   help="how long the dynamic batcher may hold a request to form a larger batch (default 0)")
    p.add_argument("--host", default="127.0.0.1", help="address the endpoints listen on (default 127.0.0.1)")
    p.add_argument("--http-port", type=int, default=8000)
    p.add_argument("--grpc-port", type=int, default=8001)
    p.add_argument("--metrics-port", type=int, default=8002)
    p.add_argument("--log-file", help="Triton's own log goes here (default: standard output)")
    p.add_argument("--exit-timeout", type=int, default=30, help="seconds to let requests in flight finish on stop")
    p.add_argument("--mps", action="store_true",
                   help="run a private CUDA MPS daemon while serving, so the instances' processes share a GPU at "
                        "once instead of in turns (needs nvidia-cuda-mps-control, which comes with the driver)")
    p.set_defaults(func=run)


INSTANCE_FACTORY = "netdef.commands.serve:open_instance"


def instance_options(args: argparse.Namespace, engine: str | None, instances: int = 1) -> dict[str, Any]:
    """What each instance process needs to open its session the way `netdef infer` opens one (JSON-able)."""
    options: dict[str, Any] = {"engine": engine, "executor": args.executor, "arch": args.arch,
                               "weights": args.weights, "precision": args.precision}
    if args.executor == "netdef" and args.device in (None, "cpu"):
        # CPU executor instances run side by side: each its share of the cores, not a full pool each
        # (oversubscribed pools slow every instance down many times over on busy machines)
        options["torch_threads"] = max(1, len(os.sched_getaffinity(0)) // instances)
    return options


def open_instance(device: str | None, engine: str | None, executor: str, arch: str | None = None,
                  weights: str | None = None, precision: str | None = None, torch_threads: int | None = None) -> Any:
    """One instance's session (called in the instance's own process, see netdef.serve.instance)."""
    if torch_threads:
        import torch

        torch.set_num_threads(torch_threads)
    return open_from_args(argparse.Namespace(engine=engine, executor=executor, arch=arch, weights=weights,
                                             precision=precision, device=device))


def engine_signature(name: str, engine: str | None, executor: str, max_batch: int | None) -> Any:
    """TensorRT: the signature from the engine's sidecar (no GPU needed here); None for the executor, whose
    session is opened once to read it (its definition decides the I/O)."""
    if executor != "tensorrt" or engine is None:
        return None
    from netdef.engine import read_sidecar
    from netdef.serve.signature import ModelSignature

    return ModelSignature.from_sidecar(name, read_sidecar(engine, check_binding=False), max_batch)


def build_models(args: argparse.Namespace) -> list[Any]:
    from netdef.serve.placement import instance_devices, parse_gpus
    from netdef.serve.server import ServedModel
    from netdef.serve.signature import model_name

    engines = ([args.engine] if args.engine else []) + list(args.more_engines)
    if not engines:
        engines = [None]  # --executor netdef --arch A --weights W.h5 without an engine file
    if args.executor == "netdef" and len(engines) > 1:
        raise ValueError("--executor netdef serves one network (its --weights); give one ENGINE")
    names = args.name or [None] * len(engines)
    if len(names) != len(engines):
        raise ValueError(f"{len(names)} --name for {len(engines)} engines: give one per engine, in order")
    devices = instance_devices(args.executor, args.instances, parse_gpus(args.gpus), args.device)
    models = []
    for engine, name in zip(engines, names):
        name = model_name(engine, name, fallback=args.arch or "model")
        models.append(ServedModel(name, INSTANCE_FACTORY, instance_options(args, engine, len(devices)), devices,
                                  args.dynamic_batching, args.max_queue_delay_us, args.max_batch,
                                  engine_signature(name, engine, args.executor, args.max_batch)))
    return models


def run(args: argparse.Namespace) -> int:
    from netdef.serve.mps import mps_daemon

    with mps_daemon() if args.mps else contextlib.nullcontext():  # before any CUDA call (build_models opens one)
        return _serve(args)


def _serve(args: argparse.Namespace) -> int:
    from netdef.serve.server import ModelServer, ServerConfig

    config = ServerConfig(args.host, args.http_port, args.grpc_port, args.metrics_port, args.log_file,
                          exit_timeout_s=args.exit_timeout)
    server = ModelServer(build_models(args), config)
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        server.start()
        for line in server.describe():
            print(line)
        print("ready; stop with Ctrl+C or SIGTERM", flush=True)
        clean = server.wait(stop)
    finally:
        server.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    print("stopped" if clean else "stopped: the server or a model instance died (see the log above)", flush=True)
    return 0 if clean else 1
