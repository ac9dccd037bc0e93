"""HigherHRNet GPU benchmark, the TensorRT side: run in /tmp/gpu-trt/python (TensorRT 8.6, Python 3.10, no torch)
after `bench/gpu_pose_prepare.py --stage files`. Reuses bench/gpu.py's ONNX-path build, timing and comparison.

Each plan item SIZE:PRECISION:PATH:OUTPUTS[:LEVEL[:OPTION=VALUE...]] (path netdef or onnx; outputs raw or parsed;
the ONNX model is the raw one; options go to HigherHRNet.define, e.g. upsample_q=conv, and name the engine and the
row) is built with batch 1..8 (opt 8) at one optimization level (netdef and ONNX path alike; one timing
cache per engine), saved, checked against the float64 references and timed at batch 1 and 8 with device-resident
I/O (bench/gpu.py's evaluate). Items are run in order until --deadline-s has passed since the start or the clock
passes --deadline-at (later ones are recorded as skipped, and the result file is written after every item).
`--table` prints the merged markdown table from result files (no GPU needed).

    PYTHONPATH=. /tmp/gpu-trt/python bench/gpu_pose.py --work /tmp/ndpose --sizes 512 --out /tmp/ndpose/trt_512.json
    python3 bench/gpu_pose.py --table /tmp/ndpose/torch_pose.json /tmp/ndpose/trt_*.json
"""
from __future__ import annotations

import argparse
import datetime
import functools
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

ARCH = "higherhrnet-w32"
BATCHES = (1, 8)
# FP16 first (the headline ratios), then INT8 and FP32; one level for all (--opt-level, default 1: a level-3 FP16
# build at 512 took 377 s on the H200).
DEFAULT_ITEMS = ("fp16:netdef:raw", "fp16:onnx:raw", "fp16:netdef:parsed", "int8:netdef:raw", "fp32:netdef:raw",
                 "fp32:onnx:raw", "int8:netdef:parsed")


def default_plan(sizes: list[int], items: tuple[str, ...] | list[str] = DEFAULT_ITEMS) -> str:
    """SIZE:ITEM for every size in order, each size's items in order."""
    return ",".join(f"{size}:{item}" for size in sizes for item in items)


def plan_row(item: str, default_level: int) -> dict:
    """A plan item SIZE:PRECISION:PATH:OUTPUTS[:LEVEL[:OPTION=VALUE...]] as the start of its result row."""
    size, precision, path_kind, outputs, *rest = item.split(":")
    options = dict(kv.split("=", 1) for kv in rest[1:])
    return {"size": int(size), "precision": precision, "path": path_kind, "outputs": outputs,
            "opt_level": int(rest[0]) if rest and rest[0] else default_level,
            **({"define_options": options} if options else {})}


def netdef_plan(work: Path, size: int, outputs: str, settings, define_options: dict | None = None):
    from networks.higherhrnet import HigherHRNet

    options = dict(define_options or {})
    if settings.precision == "int8":
        from netdef.quantize import load_cache

        # the amax table with its scale groups' ranges (tensor names are shared by every size and output kind),
        # not the fingerprinted cache
        options["calibration"] = load_cache(work / f"{ARCH}_calib.json").resolved_amax()
    return HigherHRNet.from_hdf5(work / f"{ARCH}.h5").build(settings=settings, input_size=(size, size),
                                                            outputs=outputs, **options)


def parsed_check(outputs: dict, refs: dict, batch: int, order: list[str] | None = None) -> dict:
    """Candidates against the float64 parse: top-k scores (sorted, so near-ties that swap places do not count),
    the share of candidate positions the reference also has, tags at the shared positions. A position is shared
    when a reference candidate of the same joint lies within half a pixel on both axes: the sub-pixel refinement
    moves a peak a quarter pixel towards its larger neighbour, and on near-equal neighbours the two parses may
    move the same peak opposite ways."""
    from netdef.verify import relative_error as rel_err

    scores, keypoints, tags = (np.asarray(outputs[n], np.float64) for n in ("scores", "keypoints", "tags"))
    r_scores, r_keypoints, r_tags = (np.asarray(refs[f"b{batch}_{n}"], np.float64) for n in ("scores", "keypoints", "tags"))
    shared, total, ours, theirs = 0, 0, [], []
    for b in range(scores.shape[0]):
        for j in range(scores.shape[1]):
            apart = np.abs(keypoints[b, j][:, None, :] - r_keypoints[b, j][None, :, :]).max(axis=-1)  # (ours, refs)
            nearest = apart.argmin(axis=1)
            hit = apart[np.arange(len(nearest)), nearest] <= 0.5 + 1e-6
            total += len(hit)
            shared += int(hit.sum())
            ours += list(tags[b, j][hit])
            theirs += list(r_tags[b, j][nearest[hit]])
    tag_err = rel_err(np.array(ours), np.array(theirs)) if ours else rel_err(np.zeros(1), np.ones(1))
    return {"scores_rel_err": rel_err(scores, r_scores), "positions_shared": round(shared / max(total, 1), 4),
            "tags_rel_err": tag_err}


def run_plan(args: argparse.Namespace) -> int:
    from implicit_int8 import with_layer_lists

    return with_layer_lists(_run_plan, args)


def _run_plan(args: argparse.Namespace) -> int:
    from gpu import evaluate_outputs, onnx_plan, read_prepared, timing_cache_for, variant_suffix, write_results

    from netdef import trt as shim
    from netdef.engine import BuildSettings

    work, start = Path(args.work), time.perf_counter()
    feat = shim.features()
    results = {"date": datetime.date.today().isoformat(), "trt": f"{feat.flavor} {feat.version}", "model": ARCH,
               "rows": []}
    out = Path(args.out)
    prepared = functools.cache(functools.partial(read_prepared, work))  # once per size, not per row
    plan_text = args.plan or default_plan([int(s) for s in args.sizes.split(",")], args.items.split(","))
    for item in plan_text.split(","):
        row = plan_row(item, args.opt_level)
        size, precision, path_kind, outputs, opt_level = (row[k] for k in ("size", "precision", "path", "outputs",
                                                                           "opt_level"))
        options = row.get("define_options", {})
        if time.perf_counter() - start > args.deadline_s or time.time() > args.deadline_at:
            row["skipped"] = "deadline"
        else:
            t0 = time.perf_counter()
            try:
                if path_kind == "onnx" and (outputs != "raw" or options):
                    raise ValueError("the ONNX model has the raw outputs only, and no define options")
                inputs, refs = prepared(f"{ARCH}-{size}")
                variant = f"{precision}{variant_suffix(options)}"
                engine = work / f"{ARCH}-{size}-{path_kind}-{outputs}-{variant}-{opt_level}.engine"
                settings = BuildSettings(precision=precision, batch=(1, 8, 8), optimization_level=opt_level,
                                         timing_cache=timing_cache_for(work, engine), progress=False)
                plan = (netdef_plan(work, size, outputs, settings, options) if path_kind == "netdef"
                        else onnx_plan(work / f"{ARCH}-{size}.onnx", settings))
                row.update(evaluate_outputs(plan, engine, inputs, refs, outputs=outputs, parsed_check=parsed_check,
                                            iters=args.iters, warmup=args.warmup, batches=BATCHES,
                                            profile=[(8, args.profile_iters)]
                                            + ([(1, args.profile_iters)] if outputs == "parsed" else [])))
            except Exception as exc:  # keep going: one failed build must not lose the other numbers
                row["error"] = f"{type(exc).__name__}: {exc}"[:2000]
            row["wall_s"] = round(time.perf_counter() - t0, 1)
        results["rows"].append(row)
        print(json.dumps(row), flush=True)
        write_results(out, results)
    return 0


# --- the table --------------------------------------------------------------------------------------------------
def table(paths: list[str]) -> str:
    """Markdown rows per size, precision, level and batch: netdef raw vs ONNX path, parsed vs raw, vs PyTorch."""
    torch_times: dict = {}
    rows: list[dict] = []
    missing = [p for p in paths if not Path(p).is_file()]  # a lane or stage that never wrote its file
    for p in (p for p in paths if p not in missing):
        data = json.loads(Path(p).read_text())
        torch_times.update(data.get("torch_timings", {}))
        rows += data.get("rows", [])
    index = {(r["size"], _label(r), r["path"], r["outputs"], r["opt_level"]): r for r in rows}

    def ms(row: dict | None, b: int, key: str = "median_ms") -> float | None:
        return ((row or {}).get(f"b{b}") or {}).get(key)

    def fmt(v: float | None, spec: str = ".3f") -> str:
        return "-" if v is None else format(v, spec)

    def ratio(a: float | None, b: float | None, unit: str = "") -> str:
        return "-" if a is None or b is None or b == 0 else f"{a / b:.2f}{unit}"

    lines = ["| size | prec | lvl | batch | netdef raw ms (GPU) | ONNX-path ms (GPU) | netdef/ONNX (GPU) | parsed ms | "
             "parsed/raw | eager ms | eager/netdef | compile ms | compile/netdef | accuracy vs float64 |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for (size, precision, path, outputs, level), r in sorted(index.items()):
        if path != "netdef" or outputs != "raw":
            continue
        onnx = index.get((size, precision.split()[0], "onnx", "raw", level)) or index.get(
            (size, "fp16", "onnx", "raw", level))
        parsed = index.get((size, precision, "netdef", "parsed", level))
        eager_kind = "fp32" if precision.startswith("fp32") else "fp16"
        for b in BATCHES:
            nd = ms(r, b)
            eager = (torch_times.get(f"eager_{eager_kind}_{size}_b{b}") or {}).get("median_ms")
            comp = (torch_times.get(f"compile_fp16_{size}_b{b}") or {}).get("median_ms") if eager_kind != "fp32" \
                else None
            check = (r.get(f"b{b}") or {})
            accuracy = f"rel {check['rel_err']:.1e}, cos {check['cosine']:.5f}" if "rel_err" in check else \
                r.get("error", r.get("skipped", "-"))[:60]
            p_check = (parsed or {}).get(f"b{b}") or {}
            if "scores_rel_err" in p_check:
                accuracy += (f"; parsed: scores {p_check['scores_rel_err']:.1e}, "
                             f"positions {p_check['positions_shared']:.3f}")
            lines.append(
                f"| {size} | {precision} | {level} | {b} | {fmt(nd)} ({fmt(ms(r, b, 'gpu_median_ms'))}) | "
                f"{fmt(ms(onnx, b))} ({fmt(ms(onnx, b, 'gpu_median_ms'))}) | {ratio(nd, ms(onnx, b))} "
                f"({ratio(ms(r, b, 'gpu_median_ms'), ms(onnx, b, 'gpu_median_ms'))}) | {fmt(ms(parsed, b))} | "
                f"{ratio(ms(parsed, b), nd)} | {fmt(eager, '.2f')} | {ratio(eager, nd, 'x')} | {fmt(comp)} | "
                f"{ratio(comp, nd)} | {accuracy} |")
    lines += [f"\nno results in {p} (its stage did not run or did not finish: see the log beside it)" for p in missing]
    return "\n".join(lines)


def _label(row: dict) -> str:
    """The precision column: the precision, then any define options of the row ("int8 upsample_q=conv")."""
    return " ".join([row["precision"], *(f"{k}={v}" for k, v in (row.get("define_options") or {}).items())])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", default="/tmp/ndpose")
    ap.add_argument("--sizes", default="512,256", help="sizes of the default plan, in order")
    ap.add_argument("--plan", default=None, help="SIZE:PRECISION:PATH:OUTPUTS[:LEVEL[:OPTION=VALUE...]] items "
                                                 "(default: every size's "
                                                 f"{', '.join(DEFAULT_ITEMS)})")
    ap.add_argument("--items", default=",".join(DEFAULT_ITEMS),
                    help="PRECISION:PATH:OUTPUTS[:LEVEL[:OPTION=VALUE...]] items of the default plan, per size, "
                         "most important first")
    ap.add_argument("--opt-level", type=int, default=1, help="builder optimization level of items without one")
    ap.add_argument("--deadline-s", type=float, default=330.0, help="start no item after this many seconds")
    ap.add_argument("--deadline-at", type=float, default=float("inf"),
                    help="start no item after this time (seconds since the epoch: the session queue's deadline)")
    ap.add_argument("--iters", type=int, default=100)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--profile-iters", type=int, default=10,
                    help="per-layer profile at batch 8, and at batch 1 for parsed engines (0: none), where the "
                         "parse's and INT8's costs show")
    ap.add_argument("--out", default="gpu_pose.json")
    ap.add_argument("--table", nargs="+", metavar="JSON", help="print the table from torch_pose.json and result files")
    args = ap.parse_args()
    if args.table:
        print(table(args.table))
        return 0
    return run_plan(args)


if __name__ == "__main__":
    raise SystemExit(main())
