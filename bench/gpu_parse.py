"""The HigherHRNet parse alone on the GPU (issue 17: parsed outputs cost <= 10% over raw), in a minute where a whole
parsed engine takes two to build: each form of the parse (parse() options, e.g. tile=1; 'default': none) built as its
own engine on the raw outputs (networks.higherhrnet.parse_network, FP16 build flags as in a parsed FP16 engine, the
parse in FP32), fed the float64 references' raw maps (bench/gpu_pose_prepare.py --stage files), checked against
their float64 parse (bench/gpu_pose.py's parsed_check) and timed at batch 1 and 8 (bench/gpu.py's evaluate: GPU time
between CUDA events, layer list, per-layer profile at batch 8). Run in /tmp/gpu-trt/python (TensorRT 8.6, no torch).

    PYTHONPATH=. /tmp/gpu-trt/python bench/gpu_parse.py --work /tmp/gs/pose --sizes 512,256 \
        --out /tmp/gs/pose/parse.json
"""
from __future__ import annotations

import argparse
import datetime
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

ARCH = "higherhrnet-w32"
BATCHES = (1, 8)
RAW = ("output0", "output1")


def form_options(form: str) -> dict[str, int | str]:
    """'default' -> {}; 'tile=1:nms_kernel=3' -> {'tile': 1, 'nms_kernel': 3} (integers where they parse)."""
    if form == "default":
        return {}
    options = dict(kv.split("=", 1) for kv in form.split(":"))
    return {k: int(v) if v.lstrip("-").isdigit() else v for k, v in options.items()}


def run(args: argparse.Namespace) -> int:
    from implicit_int8 import with_layer_lists

    return with_layer_lists(_run, args)


def _run(args: argparse.Namespace) -> int:
    from gpu import evaluate, read_prepared, write_results
    from gpu_pose import parsed_check

    from netdef import trt as shim
    from netdef.engine import BuildSettings
    from networks.higherhrnet import parse_network

    work, feat = Path(args.work), shim.features()
    results = {"date": datetime.date.today().isoformat(), "trt": f"{feat.flavor} {feat.version}", "model": ARCH,
               "level": args.opt_level, "rows": []}
    sizes = [int(s) for s in args.sizes.split(",")]
    for size in sizes:
        _, refs = read_prepared(work, f"{ARCH}-{size}")
        inputs = {f"b{b}": {n: refs[f"b{b}_{n}"].astype(np.float32) for n in RAW} for b in BATCHES}
        joints = int(refs["b1_output1"].shape[1])
        for form in args.forms.split(","):
            row: dict = {"size": size, "form": form}
            t0 = time.perf_counter()
            try:
                net = parse_network(joints, (size, size), "fp16", **form_options(form))
                settings = BuildSettings(precision="fp16", batch=(1, 8, 8), optimization_level=args.opt_level,
                                         progress=False)
                engine = work / f"parse-{size}-{form.replace(':', '-').replace('=', '-')}.engine"
                row.update(evaluate(net.build(settings), engine, inputs, refs, args.iters, args.warmup,
                                    batches=BATCHES, check=parsed_check, profile=[(8, args.profile_iters)]))
            except Exception as exc:  # one form that fails to build must not lose the others
                row["error"] = f"{type(exc).__name__}: {exc}"[:2000]
            row["wall_s"] = round(time.perf_counter() - t0, 1)
            results["rows"].append(row)
            print(json.dumps(row), flush=True)
            write_results(Path(args.out), results)
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", default="/tmp/ndpose", help="where bench/gpu_pose_prepare.py wrote the references")
    ap.add_argument("--sizes", default="512,256")
    ap.add_argument("--forms", default="default",
                    help="parse() options per form, OPTION=VALUE[:OPTION=VALUE] ('default': none), comma-separated")
    ap.add_argument("--opt-level", type=int, default=1, help="as the pose engines (bench/gpu_pose.py)")
    ap.add_argument("--iters", type=int, default=100)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--profile-iters", type=int, default=10)
    ap.add_argument("--out", required=True)
    return run(ap.parse_args())


if __name__ == "__main__":
    sys.exit(main())
