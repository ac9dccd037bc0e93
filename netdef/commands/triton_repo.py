"""`netdef triton-repo ENGINE --out DIR`: a model repository for Triton's own TensorRT backend.

Writes DIR/NAME/config.pbtxt (platform tensorrt_plan; I/O names, types and dims; batch range from the
engine's profile; dynamic batching; instance group with the optimization profile) and DIR/NAME/1/model.plan,
for running `tritonserver --model-repository DIR` yourself. The plan runs only on the TensorRT version it was
built with (see `netdef info` and the sidecar), so pick the Triton release that carries it.
"""
from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("triton-repo", help="write a Triton model repository (model.plan + config.pbtxt) for an engine",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("engine", help="engine file with its .json sidecar")
    p.add_argument("--out", required=True, help="model repository folder (created; the model goes in OUT/NAME)")
    p.add_argument("--name", help="model name (default: the engine file's stem)")
    p.add_argument("--instances", type=int, default=1, help="instances per GPU (Triton's instance_group count)")
    p.add_argument("--gpus", help="GPU indices for the instances, e.g. 0,1 (default: every GPU Triton sees)")
    p.add_argument("--max-batch", type=int, help="largest batch Triton forms (default: the engine profile's max)")
    p.add_argument("--no-dynamic-batching", dest="dynamic_batching", action="store_false")
    p.add_argument("--max-queue-delay-us", type=int, default=0)
    p.add_argument("--version", type=int, default=1, help="model version folder (default 1)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from netdef.serve.placement import parse_gpus
    from netdef.serve.repository import RepositoryOptions, write_repository
    from netdef.serve.signature import model_name

    options = RepositoryOptions(model_name(args.engine, args.name), args.instances, parse_gpus(args.gpus),
                                args.dynamic_batching, args.max_queue_delay_us, args.max_batch, args.version)
    folder = write_repository(args.engine, args.out, options)
    print(f"wrote {folder / 'config.pbtxt'} and {folder / str(args.version) / 'model.plan'}")
    print(f"run: tritonserver --model-repository {args.out}")
    return 0
