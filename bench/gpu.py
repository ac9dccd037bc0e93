"""GPU benchmark, step 2 of 2: run in /tmp/gpu-trt/python (TensorRT 8.6, Python 3.10, no torch).

For each model prepared by `bench/gpu_prepare.py` (HDF5, ONNX, inputs, float64 references, torch timings,
INT8 calibration data and caches) and each precision: build the netdef engine and the ONNX-parsed engine on
the same builder with the same optimization level and a shared timing cache, run both through netdef's
runtime, compare with the float64 reference and time them with device-resident I/O. Writes JSON (`--out`).

Path kinds: `netdef`, `onnx` (the ONNX-parsed model) and `implicit` (the ONNX-parsed model with TensorRT's
own implicit INT8: IInt8EntropyCalibrator2 on `<model>_calib.npy`, the array netdef calibrated on, INT8+FP16
flags). Every engine is built with DETAILED profiling verbosity; its layer list (engine inspector) and its
full per-layer profile are saved beside it (`.layers.json.gz`, `.profile.json.gz`) and counted in the row
(reformats, INT8 convolutions, merged convolutions); netdef INT8 rows also carry the placement report of
their definition (netdef.quantize.placement). With INT8 rows the run ends with the INT8 table
(bench/gpu_table.py --int8).

Nothing after a build can lose it: the engine is saved first, then timed, and a failed check, layer list or
profile is recorded in the row's `analysis_errors` beside the timings. Outputs are matched to the references by
name, else by their position among the network's declared outputs (the sidecar's order: TensorRT 8.6 lists an
engine's I/O tensors in its own order). An implicit-INT8 engine saved by an earlier run from the same ONNX file
and calibration array with the same settings is reused (`--rebuild` builds anew); its calibration cache is kept
beside the array too. Each engine has its own timing cache (WORK/timing/<engine>.cache): TensorRT 8.6 refused
every cache another network had written.

    PYTHONPATH=.:bench /tmp/gpu-trt/python bench/gpu.py --work /tmp/nd --out results.json
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime
import functools
import gzip
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from device_array import CudaArray  # noqa: E402
from engine_layers import engine_layers, layer_counts  # noqa: E402
from implicit_int8 import builder_config, calibrator, implicit_int8, with_layer_lists  # noqa: E402

from netdef import trt as shim  # noqa: E402
from netdef.atomic import sha256_file, write_bytes_atomic, write_text_atomic  # noqa: E402
from netdef.engine import (BuildSettings, EngineFileError, Plan, build_engine, create_builder,  # noqa: E402
                           create_network, read_sidecar, save_engine)
from netdef.runtime import cuda  # noqa: E402
from netdef.runtime.session import InferenceSession  # noqa: E402
from netdef.verify import cosine_similarity as cosine  # noqa: E402
from netdef.verify import relative_error as rel_err  # noqa: E402
from networks.base import non_default_choices  # noqa: E402
from networks.yolov4 import HEAD_Q, INT8_PLACEMENTS, PREACT_Q, SHORTCUT_Q  # noqa: E402

# Most important first: the FP16 comparison, then INT8 and FP32, YOLOv4 after ResNet-50. The ONNX model carries
# no Q/DQ, so INT8 is compared with the FP16 ONNX-path engine.
DEFAULT_PLAN = ",".join([
    "resnet50:fp16:netdef", "resnet50:fp16:onnx", "resnet50:int8:netdef", "resnet50:fp32:netdef",
    "resnet50:fp32:onnx", "yolov4:fp16:netdef", "yolov4:fp16:onnx", "yolov4:int8:netdef", "yolov4:fp32:netdef",
    "yolov4:fp32:onnx"])
INT8_SKIP: list[str] = []  # --int8-skip: module paths kept in float in INT8 builds
CALIB_BATCH = 32  # TensorRT's implicit calibration: batches of this size (the calibration profile)
HEADS_FOR: set[str] = set()  # --yolo-heads: precisions whose YOLOv4 netdef engine also outputs the raw heads
# YOLOv4 INT8 placements (define options, default first), set by --yolo-shortcut-q, --yolo-preact-q, --yolo-head-q
YOLO_INT8 = {k: v[0] for k, v in INT8_PLACEMENTS.items()}
INPUT_SIZE = {"resnet18": (224, 224), "resnet50": (224, 224), "yolov4": (416, 416)}


def variant_suffix(options: dict[str, str]) -> str:
    """What define options add to an engine's name: "-preact-stem" for preact_q="stem" ("_q" dropped)."""
    return "".join(f"-{k.removesuffix('_q')}-{v}" for k, v in options.items())


def yolo_int8_options() -> dict[str, str]:
    """The YOLOv4 INT8 placement options that differ from the defaults (they name the engine and label the row)."""
    return non_default_choices("bench/gpu.py", INT8_PLACEMENTS, **YOLO_INT8)


def parse_onnx(path: Path):
    trt = shim.binding()
    builder = create_builder()
    network = create_network(builder)
    parser = trt.OnnxParser(network, shim.logger())
    if not parser.parse(path.read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f"{path}: ONNX parse failed: {errors}")
    network.name = path.stem + "-onnx"
    return builder, network, parser


def onnx_plan(path: Path, settings: BuildSettings):
    builder, network, _parser = parse_onnx(path)
    return build_engine(network, settings, builder, {"arch": path.stem, "path": "onnx"})


def onnx_model(name: str, work: Path, heads: bool) -> Path:
    """The ONNX file of a model: with the raw YOLO heads as outputs where prepared and asked for."""
    with_heads = work / f"{name}_heads.onnx"
    return with_heads if heads and with_heads.exists() else work / f"{name}.onnx"


def reusable_engine(path: Path, precision: str, settings: BuildSettings, sources: dict[str, str]) -> Plan | None:
    """The engine an earlier run saved at `path`, when it was built by this TensorRT from the same files
    (`sources`: their sha256) with the same precision, level and batch profile; else None."""
    if not path.exists():
        return None
    try:
        meta = read_sidecar(path)  # plan checksum, TensorRT flavor and version
    except EngineFileError as exc:
        print(f"{path.name}: not reused ({exc})", flush=True)
        return None
    want = {"precision": precision, "optimization_level": settings.optimization_level,
            "batch": list(settings.batch), "sources": sources}
    differs = [k for k, v in want.items() if meta.get(k) != v]
    if differs:
        print(f"{path.name}: not reused ({', '.join(differs)} differ)", flush=True)
        return None
    print(f"{path.name}: reusing the engine built {meta.get('build_seconds')} s long by an earlier run", flush=True)
    return Plan(path.read_bytes(), {**meta, "reused": True})


def implicit_plan(name: str, work: Path, settings: BuildSettings, engine_path: Path, rebuild: bool = False):
    """The ONNX model (with the raw YOLO heads as outputs where prepared) and TensorRT's implicit INT8:
    FP16 settings (the FP16 flag) plus the INT8 flag and the entropy calibrator on netdef's calibration array.
    An engine saved from the same files and settings is reused unless `rebuild`."""
    onnx, data = onnx_model(name, work, heads=True), work / f"{name}_calib.npy"
    sources = {"onnx": sha256_file(onnx), "calibration_data": sha256_file(data)}
    plan = None if rebuild else reusable_engine(engine_path, "int8", settings, sources)
    if plan is not None:
        return plan
    builder, network, _parser = parse_onnx(onnx)
    cache = work / f"{name}_trt_entropy.cache"
    cached = cache.exists()
    calib = calibrator(np.load(data, mmap_mode="r"), CALIB_BATCH, cache)
    fp16 = dataclasses.replace(settings, precision="fp16")
    with builder_config(implicit_int8(calib)):
        plan = build_engine(network, fp16, builder, {"arch": name, "path": "implicit"})
    plan.meta.update(precision="int8", sources=sources,
                     calibration={"algorithm": "IInt8EntropyCalibrator2", "batches": calib.batches,
                                  "seconds": calib.seconds, "cache_reused": cached and calib.batches == 0})
    return plan


def netdef_plan(name: str, work: Path, settings: BuildSettings, engine_path: Path):
    """Define (INT8: write the placement report beside the engine), then build."""
    import networks
    from netdef.quantize.placement import check_placement

    model = networks.get(name).from_hdf5(work / f"{name}.h5")
    options = {"input_size": INPUT_SIZE[name]}
    if name == "yolov4":
        options["nms"] = "raw"
        options["heads"] = settings.precision in HEADS_FOR
        if settings.precision == "int8":
            options.update(yolo_int8_options())
    if settings.precision == "int8":
        options["calibration"] = str(work / f"{name}_calib.json")
        options["skip"] = tuple(INT8_SKIP)
    net = model.define(precision=settings.precision, **options)
    placement = None
    if settings.precision == "int8":
        report = check_placement(net)
        placement = report.summary()
        write_gz(Path(f"{engine_path}.placement.json.gz"), json.dumps(report.to_json()))
        print(report.format(), flush=True)
    plan = net.build(settings, arch=model.arch)
    if placement is not None:
        plan.meta["placement"] = placement
    return plan


def read_prepared(work: Path, stem: str) -> tuple[dict, dict]:
    """The preparation's inputs and float64 references (<stem>_inputs.npz, <stem>_refs.npz) as dicts."""
    return dict(np.load(work / f"{stem}_inputs.npz")), dict(np.load(work / f"{stem}_refs.npz"))


def write_results(path: Path, results: dict) -> None:
    """A result file, rewritten after every row: atomically, as the session's hard stop may kill any moment."""
    write_text_atomic(path, json.dumps(results, indent=1))


def write_gz(path: Path, text: str) -> None:
    write_bytes_atomic(path, gzip.compress(text.encode()))


def feeds_of(session: InferenceSession, x: np.ndarray | dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """A batch's inputs: the first input's array, or arrays by input name (the HigherHRNet parse takes two)."""
    return dict(x) if isinstance(x, dict) else {session.input_names[0]: x}


def time_session(session: InferenceSession, x: np.ndarray | dict[str, np.ndarray], iters: int,
                 warmup: int) -> dict[str, float]:
    """Latency with device-resident inputs and outputs (no host copies): wall clock of `infer` (Python included)
    and GPU time of the enqueue alone (CUDA events around execute_async_v3, what trtexec calls GPU compute)."""
    host = feeds_of(session, x)
    feed = {name: CudaArray.from_host(a) for name, a in host.items()}
    batch = next(iter(host.values())).shape[0]
    outs = {s.name: CudaArray((batch,) + tuple(s.shape[1:]), s.dtype) for s in session.outputs}
    for _ in range(warmup):
        session.infer(feed, out=outs)
    times = []
    for _ in range(iters):
        t0 = time.perf_counter()
        session.infer(feed, out=outs)
        times.append((time.perf_counter() - t0) * 1e3)
    backend = session.backend  # addresses and shapes stay set from the last infer
    start, end = cuda.Event(), cuda.Event()
    gpu = []
    for _ in range(iters):
        start.record(backend.stream)
        backend.context.execute_async_v3(backend.stream.ptr)
        end.record(backend.stream)
        end.synchronize()
        gpu.append(end.elapsed_ms(start))
    start.destroy()
    end.destroy()
    for a in [*feed.values(), *outs.values()]:
        a.buf.free()
    return {"median_ms": float(np.median(times)), "p90_ms": float(np.percentile(times, 90)),
            "gpu_median_ms": float(np.median(gpu)), "gpu_p90_ms": float(np.percentile(gpu, 90))}


def layer_profile(session: InferenceSession, x: np.ndarray | dict[str, np.ndarray], iters: int,
                  top: int = 30) -> tuple[dict, dict]:
    """Per-layer GPU time (TensorRT's IProfiler, fused layers as the engine runs them), mean over `iters`:
    (summary with the `top` slowest layers, every layer's mean ms)."""
    trt = shim.binding()

    class LayerTimes(trt.IProfiler):
        def __init__(self) -> None:
            trt.IProfiler.__init__(self)
            self.ms: dict[str, float] = {}

        def report_layer_time(self, layer_name: str, ms: float) -> None:
            self.ms[layer_name] = self.ms.get(layer_name, 0.0) + ms

    profiler = LayerTimes()
    session.backend.context.profiler = profiler
    feed = feeds_of(session, x)
    for _ in range(iters):
        session.infer(feed)
    mean = {name: ms / iters for name, ms in profiler.ms.items()}
    ranked = sorted(mean.items(), key=lambda kv: -kv[1])
    return {"total_ms": round(sum(mean.values()), 4), "layers": len(mean),
            "top": [[name[:160], round(ms, 4)] for name, ms in ranked[:top]]}, mean


def compare(outputs: dict, refs: dict, batch: int, order: list[str] | None = None) -> dict:
    """Error of each output against its float64 reference: by name (`b1_head0`), else by the output's position
    in `order`, the network's declared outputs as the reference lists them (`b1_out0`). Never by the engine's
    own I/O order: TensorRT 8.6 listed the YOLOv4 heads model's outputs otherwise. Outputs without a reference
    are named in `no_reference`."""
    order = list(order or outputs)
    per = {}
    for name, value in outputs.items():
        ref = refs.get(f"b{batch}_{name}")
        if ref is None and name in order:
            ref = refs.get(f"b{batch}_out{order.index(name)}")
        if ref is not None:
            per[name] = {"rel_err": rel_err(value, ref), "cosine": cosine(value, ref)}
    main = {k: v for k, v in per.items() if not k.startswith("head")}
    heads = {k: v for k, v in per.items() if k.startswith("head")}
    result: dict = {"outputs": per}
    if main:
        result.update(rel_err=max(v["rel_err"] for v in main.values()), cosine=min(v["cosine"] for v in main.values()))
    if heads:
        result["heads_cosine"] = min(v["cosine"] for v in heads.values())
    missing = [name for name in outputs if name not in per]
    if missing:
        result["no_reference"] = missing
    return result


def declared_outputs(session: InferenceSession) -> list[str]:
    """The network's outputs in their declared order (the sidecar's), not the engine's I/O order."""
    return [s["name"] for s in session.meta.get("outputs") or []] or session.output_names


def attempt(errors: dict, key: str, fn, *args):
    """fn(*args), or None with the error recorded under `key`: analysis after a build never loses the row."""
    try:
        return fn(*args)
    except Exception as exc:
        errors[key] = f"{type(exc).__name__}: {exc}"[:1000]
        return None


Profile = tuple[int, int]  # (batch, iterations) of a per-layer profile


def evaluate(plan, path: Path, inputs: dict, refs: dict, iters: int, warmup: int, *, batches=(1, 32),
             check=compare, layers: bool = True, profile: Profile | list[Profile] | None = None) -> dict:
    """Save the engine (unless it is the saved one, reused), then per batch `check(outputs, refs, batch, order)`
    on `inputs["b<batch>"]` (feeds_of) and time it, then its layer list and per-layer profiles (`profile`: (batch,
    iterations), or a list of them; the first goes to `.profile.json.gz`, others to `.profile-b<batch>.json.gz`).
    Whatever fails after the save is recorded in `analysis_errors`; the rest of the row is kept (an engine that does
    not open: `error`, beside its build time)."""
    if not plan.meta.get("reused"):
        save_engine(plan, path)
    result: dict = {"build_s": plan.meta.get("build_seconds"), "engine_mb": round(len(plan.data) / 1e6, 1),
                    "engine": path.name}
    for key in ("placement", "calibration", "timing_cache", "reused"):
        if key in plan.meta:
            result[key] = plan.meta[key]
    errors: dict = {}
    try:
        session = InferenceSession.from_engine(path)
    except Exception as exc:  # the row keeps the build's numbers
        result["error"] = f"built and saved, but it did not open: {type(exc).__name__}: {exc}"[:2000]
        return result
    with session:
        order = declared_outputs(session)
        for b in batches:
            x = inputs[f"b{b}"]
            y = attempt(errors, f"b{b} infer", session.infer, feeds_of(session, x))
            checked = attempt(errors, f"b{b} check", check, y, refs, b, order) if y is not None else None
            timing = attempt(errors, f"b{b} timing", time_session, session, x, iters, warmup)
            result[f"b{b}"] = {**(checked or {}), **(timing or {})}
        # the context's shapes are the last batch's now: the layer list resolves each tensor's format and data type
        listed = attempt(errors, "layers", engine_layers, session.backend.engine, session.backend.context) \
            if layers else None
        if listed is not None:
            text, found = listed
            write_gz(Path(f"{path}.layers.json.gz"), text)
            result["engine_layers"] = attempt(errors, "layer counts", layer_counts, found)
        profiles = [profile] if isinstance(profile, tuple) else list(profile or [])
        for i, (b, n) in enumerate(p for p in profiles if p[1]):  # last: the profiler stays attached to the context
            profiled = attempt(errors, f"profile b{b}", layer_profile, session, inputs[f"b{b}"], n)
            if profiled is not None:
                result[f"profile_b{b}"], every = profiled
                write_gz(Path(f"{path}.profile{'' if i == 0 else f'-b{b}'}.json.gz"), json.dumps(every))
    if errors:
        result["analysis_errors"] = errors
    return result


def evaluate_outputs(plan, path: Path, inputs: dict, refs: dict, *, outputs: str, parsed_check, iters: int,
                     warmup: int, batches: tuple[int, ...], profile: Profile | list[Profile] | None = None) -> dict:
    """`evaluate` for the pose benchmarks (bench/gpu_pose.py, bench/gpu_openpose.py): raw outputs compared with
    the float64 maps (`compare`), parsed ones by the benchmark's `parsed_check`."""
    return evaluate(plan, path, inputs, refs, iters, warmup, batches=batches,
                    check=compare if outputs == "raw" else parsed_check, profile=profile)


def timing_cache_for(work: Path, engine: Path, base: Path | None = None) -> Path:
    """One timing cache per engine (WORK/timing/<engine stem>.cache): TensorRT 8.6 on the H200 refused every
    cache another network's build had written, so sharing one across networks only cost the log errors. A variant
    of a network (`base`: the engine it varies) starts from a copy of the base's cache where it has none: most
    of its layers are the base's (the row's `timing_cache` says whether TensorRT took it)."""
    folder = work / "timing"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{engine.stem}.cache"
    seed = folder / f"{base.stem}.cache" if base is not None else None
    if seed is not None and seed != path and seed.exists() and not path.exists():
        shutil.copyfile(seed, path)
    return path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", default="/tmp/nd")
    ap.add_argument("--plan", default=DEFAULT_PLAN,
                    help="MODEL:PRECISION:PATH[:OPT_LEVEL] items in the order to run (most important first)")
    ap.add_argument("--opt-level", type=int, default=3, help="builder optimization level, same for both paths")
    ap.add_argument("--int8-skip", default="", help="comma list of module paths kept in float in INT8 builds")
    ap.add_argument("--iters", type=int, default=100)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--out", default="gpu_results.json")
    ap.add_argument("--rebuild", action="store_true", help="build implicit-INT8 engines even where one is saved")
    ap.add_argument("--deadline-at", type=float, default=float("inf"),
                    help="start no row after this time (seconds since the epoch: the session queue's deadline)")
    ap.add_argument("--yolo-heads", default="int8",
                    help="precisions whose YOLOv4 netdef engine also outputs head0..2 (INT8 is judged on them)")
    ap.add_argument("--yolo-shortcut-q", default=SHORTCUT_Q[0], choices=SHORTCUT_Q,
                    help="where YOLOv4's netdef INT8 quantizes a shortcut's branch (define(shortcut_q=...): R3c, the "
                         "default, or R3b; docs/int8.md 2)")
    ap.add_argument("--yolo-preact-q", default=PREACT_Q[0], choices=PREACT_Q,
                    help="which other convs YOLOv4's netdef INT8 quantizes at their raw output, before the "
                         "activation (define(preact_q=...): the stem and every leaky conv, the default; the stem; "
                         "none; every Mish conv)")
    ap.add_argument("--yolo-head-q", default=HEAD_Q[0], choices=HEAD_Q,
                    help="YOLOv4's head convs in netdef INT8: floating point (R9, the default) or INT8 "
                         "(define(head_q=...))")
    ap.add_argument("--profile-iters", type=int, default=10, help="per-layer profile at batch 32 (0: none)")
    return with_layer_lists(run, ap.parse_args())


def run(args: argparse.Namespace) -> int:
    work = Path(args.work)
    INT8_SKIP[:] = [s for s in args.int8_skip.split(",") if s]
    HEADS_FOR.update(p for p in args.yolo_heads.split(",") if p)
    YOLO_INT8.update(shortcut_q=args.yolo_shortcut_q, preact_q=args.yolo_preact_q, head_q=args.yolo_head_q)
    feat = shim.features()
    results = {"date": datetime.date.today().isoformat(), "trt": f"{feat.flavor} {feat.version}",
               "typing": feat.typing, "opt_level": args.opt_level, "rows": []}
    out_path = Path(args.out)
    prepared = functools.cache(functools.partial(read_prepared, work))  # once per model, not per row
    for item in args.plan.split(","):
        name, precision, path_kind, *level = item.split(":")
        opt_level = int(level[0]) if level else args.opt_level
        skip = INT8_SKIP if precision == "int8" else []
        placement = yolo_int8_options() if (name, path_kind, precision) == ("yolov4", "netdef", "int8") else {}
        variant = (f"-float-{'+'.join(skip)}" if skip else "") + variant_suffix(placement)
        engine_path = work / f"{name}-{path_kind}-{precision}{variant}-level{opt_level}.engine"
        base_path = work / f"{name}-{path_kind}-{precision}-level{opt_level}.engine"
        if time.time() > args.deadline_at:  # the session's queue moved on: say so in the results
            row = {"skipped": "deadline", "model": name, "precision": precision, "path": path_kind,
                   "opt_level": opt_level}
            results["rows"].append(row)
            print(json.dumps(row), flush=True)
            write_results(out_path, results)
            continue
        settings = BuildSettings(precision=precision, batch=(1, 32, 32), optimization_level=opt_level,
                                 timing_cache=timing_cache_for(work, engine_path, base_path), progress=False)
        t0 = time.perf_counter()
        plan = None
        try:
            inputs, refs = prepared(name)  # a failed preparation fails its rows, not the run
            if path_kind == "netdef":
                plan = netdef_plan(name, work, settings, engine_path)
            elif path_kind == "implicit":
                if precision != "int8":
                    raise ValueError(f"{item}: the implicit path is INT8 only")
                plan = implicit_plan(name, work, settings, engine_path, args.rebuild)
            else:
                plan = onnx_plan(onnx_model(name, work, heads=precision in HEADS_FOR), settings)
            row = evaluate(plan, engine_path, inputs, refs, args.iters, args.warmup, profile=(32, args.profile_iters))
        except Exception as exc:  # keep going: one failed build must not lose the other numbers
            row = {"error": f"{type(exc).__name__}: {exc}"[:2000]}
            if plan is not None:  # built (and saved, unless the save itself failed): say so
                row.update(build_s=plan.meta.get("build_seconds"), engine=engine_path.name,
                           saved=engine_path.exists())
        row.update(model=name, precision=precision, path=path_kind, opt_level=opt_level,
                   wall_s=round(time.perf_counter() - t0, 1))
        if skip:
            row["int8_skip"] = list(skip)
        row.update(placement)
        results["rows"].append(row)
        print(json.dumps({k: v for k, v in row.items() if k != "profile_b32"}), flush=True)
        write_results(out_path, results)
    if any(r["precision"] == "int8" for r in results["rows"]):
        from gpu_table import int8_table

        print(int8_table(results["rows"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
