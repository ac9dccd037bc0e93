"""`netdef bench ENGINE`: latency p50/p90/p99, throughput and device memory of the runtime, with the
PyTorch eager baseline and the ratio when `--compare-torch ARCH --weights W.h5` is given.

Latency is measured per `infer` call, host arrays in and out (copies included), as an application sees it.
"""
from __future__ import annotations

import argparse
import json
import logging
from typing import Any

import numpy as np

from netdef.commands.arguments import non_negative_int, positive_int, refuse_same_files
from netdef.commands.infer import add_session_arguments, engine_sidecar_input, open_from_args
from netdef.runtime.timing import LatencyStats, format_table, measure

log = logging.getLogger("netdef.bench")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="latency, throughput and memory of an engine (optionally vs PyTorch)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_session_arguments(p)
    p.add_argument("--batch", type=positive_int, default=1, help="batch size (within the engine's profile)")
    p.add_argument("--iterations", type=positive_int, default=100)
    p.add_argument("--warmup", type=non_negative_int, default=10)
    p.add_argument("--graph", action="store_true", help="replay the inference as a CUDA graph (tensorrt)")
    p.add_argument("--compare-torch", metavar="ARCH", help="also time the PyTorch eager reference of ARCH "
                   "(weights from --weights)")
    p.add_argument("--json", dest="json_out", help="also write the numbers as JSON here")
    p.set_defaults(func=run)


def random_inputs(session: Any, batch: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Inputs of the session's dtypes and shapes at `batch` (dynamic dims take the batch)."""
    from netdef.runtime.inputs import random_array

    rng = np.random.default_rng(seed)
    return {spec.name: random_array([batch if d < 0 else d for d in spec.shape], spec.dtype, rng)
            for spec in session.inputs}


def device_memory(session: Any) -> dict[str, int]:
    """Device bytes the session holds (context scratch + I/O buffers), and what the GPU reports in use."""
    mem = dict(session.memory())
    if session.kind == "tensorrt":
        from netdef.runtime import cuda

        free, total = cuda.mem_info()
        mem["gpu_used"] = total - free
    return mem


def torch_baseline(arch: str, weights: str, batch: int, precision: str, device: str | None,
                   iterations: int, warmup: int, input_shape: tuple[int, ...]) -> tuple[LatencyStats, str]:
    """The PyTorch eager reference with the same weights, host input in and host output out (like `infer`)."""
    import torch

    import networks

    dev = device if device in ("cpu", "cuda") else ("cuda" if torch.cuda.is_available() else "cpu")
    model = networks.get(arch).from_hdf5(weights).reference().to(dev).eval()
    dtype = torch.float16 if precision in ("fp16", "int8") and dev == "cuda" else torch.float32
    model = model.to(dtype)
    x = np.random.default_rng(0).standard_normal((batch,) + tuple(input_shape[1:])).astype(np.float32)
    sync = torch.cuda.synchronize if dev == "cuda" else None

    def step() -> Any:
        with torch.inference_mode():
            out = model(torch.from_numpy(x).to(dev, dtype))
        return out.float().cpu().numpy() if isinstance(out, torch.Tensor) else out

    return measure(step, batch, iterations, warmup, sync), f"torch eager {dev} {str(dtype).split('.')[-1]}"


def run(args: argparse.Namespace) -> int:
    refuse_same_files(args, ["json_out"], ["engine", "weights"], extra_inputs=engine_sidecar_input(args.engine))
    report: dict[str, Any] = {}
    with open_from_args(args, graph=args.graph) as session:
        feeds = random_inputs(session, args.batch)
        session.infer(feeds)  # shape check before timing: a wrong batch fails here with a clear message
        stats = measure(lambda: session.infer(feeds), args.batch, args.iterations, args.warmup)
        memory = device_memory(session)
        precision = session.meta.get("precision", "fp32")
        label = f"netdef {session.kind} {precision}" + (" graph" if args.graph else "")
        input_shape = session.inputs[0].shape
        arch = session.arch or args.arch
    rows = [[label, *_numbers(stats)]]
    report.update(engine=args.engine, arch=arch, batch=args.batch, netdef=stats.as_dict(), memory=memory)
    if args.compare_torch:
        if not args.weights:
            raise ValueError("--compare-torch needs --weights W.h5")
        tstats, tlabel = torch_baseline(args.compare_torch, args.weights, args.batch, precision, args.device,
                                        args.iterations, args.warmup, input_shape)
        rows.append([tlabel, *_numbers(tstats)])
        report.update(torch=tstats.as_dict(), speedup_p50=tstats.p50_ms / stats.p50_ms)
    print(format_table(rows, ["runner", "batch", "p50 ms", "p90 ms", "p99 ms", "mean ms", "items/s"]))
    if "speedup_p50" in report:
        print(f"speedup over PyTorch eager (p50): {report['speedup_p50']:.2f}x")
    print("device memory: " + (", ".join(f"{k} {v / 2**20:.1f} MiB" for k, v in memory.items()) or "n/a (host executor)"))
    if args.json_out:
        from netdef.atomic import write_text_atomic

        write_text_atomic(args.json_out, json.dumps(report, indent=2) + "\n")
    return 0


def _numbers(s: LatencyStats) -> list[Any]:
    return [s.batch, s.p50_ms, s.p90_ms, s.p99_ms, s.mean_ms, round(s.throughput, 1)]
