"""GPU benchmark, step 2 of 2: run in /tmp/gpu-trt/python (TensorRT 8.6, Python 3.10, no torch).

For each model prepared by `bench/gpu_prepare.py` (HDF5, ONNX, inputs, float64 references, torch timings,
INT8 calibration caches) and each precision: build the netdef engine and the ONNX-parsed engine on the same
builder with the same optimization level and a shared timing cache, run both through netdef's runtime,
compare with the float64 reference and time them with device-resident I/O. Prints one table and writes
JSON (`--out`).

    PYTHONPATH=. /tmp/gpu-trt/python bench/gpu.py --work /tmp/nd --out results.json
"""
from __future__ import annotations

import argparse
import datetime
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from netdef import trt as shim  # noqa: E402
from netdef.engine import BuildSettings, build_engine, create_builder, create_network, save_engine  # noqa: E402
from netdef.runtime import cuda  # noqa: E402
from netdef.runtime.session import InferenceSession  # noqa: E402
from netdef.verify import cosine_similarity as cosine  # noqa: E402
from netdef.verify import relative_error as rel_err  # noqa: E402

# Most important first: the FP16 comparison, then INT8 and FP32, YOLOv4 after ResNet-50. The ONNX model carries
# no Q/DQ, so INT8 is compared with the FP16 ONNX-path engine.
DEFAULT_PLAN = ",".join([
    "resnet50:fp16:netdef", "resnet50:fp16:onnx", "resnet50:int8:netdef", "resnet50:fp32:netdef",
    "resnet50:fp32:onnx", "yolov4:fp16:netdef", "yolov4:fp16:onnx", "yolov4:int8:netdef", "yolov4:fp32:netdef",
    "yolov4:fp32:onnx"])
INT8_SKIP: list[str] = []  # --int8-skip: layers kept in float in INT8 builds
HEADS_FOR: set[str] = set()  # --yolo-heads: precisions whose YOLOv4 netdef engine also outputs the raw heads
INPUT_SIZE = {"resnet18": (224, 224), "resnet50": (224, 224), "yolov4": (416, 416)}


class CudaArray:
    """A device array (cudaMalloc) exposing __cuda_array_interface__, so the runtime reads/writes it in place."""

    def __init__(self, shape: tuple[int, ...], dtype: object) -> None:
        self.shape, self.dtype = tuple(shape), np.dtype(dtype)
        self.buf = cuda.DeviceBuffer(int(np.prod(shape)) * self.dtype.itemsize)

    @property
    def __cuda_array_interface__(self) -> dict:
        return {"shape": self.shape, "typestr": self.dtype.str, "data": (self.buf.ptr, False), "version": 3}

    @classmethod
    def from_host(cls, array: np.ndarray) -> "CudaArray":
        dev = cls(array.shape, array.dtype)
        host = np.ascontiguousarray(array)
        rt = cuda.cudart()
        cuda.check(rt.cudaMemcpy(dev.buf.ptr, host.ctypes.data, host.nbytes, rt.cudaMemcpyKind.cudaMemcpyHostToDevice),
                   "cudaMemcpy(HostToDevice)")
        return dev


def onnx_plan(path: Path, settings: BuildSettings):
    trt = shim.binding()
    builder = create_builder()
    network = create_network(builder)
    parser = trt.OnnxParser(network, shim.logger())
    if not parser.parse(path.read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f"{path}: ONNX parse failed: {errors}")
    network.name = path.stem + "-onnx"
    return build_engine(network, settings, builder, {"arch": path.stem, "path": "onnx"})


def netdef_plan(name: str, work: Path, settings: BuildSettings):
    import networks

    model = networks.get(name).from_hdf5(work / f"{name}.h5")
    options = {"input_size": INPUT_SIZE[name]}
    if name == "yolov4":
        options["nms"] = "raw"
        options["heads"] = settings.precision in HEADS_FOR
    if settings.precision == "int8":
        options["calibration"] = str(work / f"{name}_calib.json")
        options["skip"] = tuple(s for s in INT8_SKIP if s)
    return model.build(settings=settings, **options)


def time_session(session: InferenceSession, x: np.ndarray, iters: int, warmup: int) -> dict[str, float]:
    """Latency with device-resident input and outputs (no host copies): wall clock of `infer` (Python included)
    and GPU time of the enqueue alone (CUDA events around execute_async_v3, what trtexec calls GPU compute)."""
    dev_in = CudaArray.from_host(x)
    outs = {s.name: CudaArray((x.shape[0],) + tuple(s.shape[1:]), s.dtype) for s in session.outputs}
    feed = {session.input_names[0]: dev_in}
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
    for a in [dev_in, *outs.values()]:
        a.buf.free()
    return {"median_ms": float(np.median(times)), "p90_ms": float(np.percentile(times, 90)),
            "gpu_median_ms": float(np.median(gpu)), "gpu_p90_ms": float(np.percentile(gpu, 90))}


def layer_profile(session: InferenceSession, x: np.ndarray, iters: int, top: int = 30) -> dict:
    """Per-layer GPU time (TensorRT's IProfiler, fused layers as the engine runs them), mean over `iters`."""
    trt = shim.binding()

    class LayerTimes(trt.IProfiler):
        def __init__(self) -> None:
            trt.IProfiler.__init__(self)
            self.ms: dict[str, float] = {}

        def report_layer_time(self, layer_name: str, ms: float) -> None:
            self.ms[layer_name] = self.ms.get(layer_name, 0.0) + ms

    profiler = LayerTimes()
    session.backend.context.profiler = profiler
    for _ in range(iters):
        session.infer({session.input_names[0]: x})
    mean = {name: ms / iters for name, ms in profiler.ms.items()}
    ranked = sorted(mean.items(), key=lambda kv: -kv[1])
    return {"total_ms": round(sum(mean.values()), 4), "layers": len(mean),
            "top": [[name[:160], round(ms, 4)] for name, ms in ranked[:top]]}


def compare(outputs: dict, refs: dict, batch: int) -> dict:
    """Error of each output against its float64 reference, by name (`b1_head0`) or else by position (`b1_out0`)."""
    per = {}
    for i, (name, value) in enumerate(outputs.items()):
        ref = refs.get(f"b{batch}_{name}", refs.get(f"b{batch}_out{i}"))
        if ref is not None:
            per[name] = {"rel_err": rel_err(value, ref), "cosine": cosine(value, ref)}
    main = {k: v for k, v in per.items() if not k.startswith("head")}
    heads = {k: v for k, v in per.items() if k.startswith("head")}
    result = {"rel_err": max(v["rel_err"] for v in main.values()),
              "cosine": min(v["cosine"] for v in main.values()), "outputs": per}
    if heads:
        result["heads_cosine"] = min(v["cosine"] for v in heads.values())
    return result


def evaluate(plan, path: Path, inputs, refs, iters: int, warmup: int, profile_iters: int) -> dict:
    save_engine(plan, path)
    result: dict = {"build_s": plan.meta.get("build_seconds"), "engine_mb": round(len(plan.data) / 1e6, 1)}
    with InferenceSession.from_engine(path) as session:
        for b in (1, 32):
            y = session.infer({session.input_names[0]: inputs[f"b{b}"]})
            result[f"b{b}"] = {**compare(y, refs, b), **time_session(session, inputs[f"b{b}"], iters, warmup)}
        if profile_iters:  # last: the profiler stays attached to this context
            result["profile_b32"] = layer_profile(session, inputs["b32"], profile_iters)
    return result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", default="/tmp/nd")
    ap.add_argument("--plan", default=DEFAULT_PLAN,
                    help="MODEL:PRECISION:PATH[:OPT_LEVEL] items in the order to run (most important first)")
    ap.add_argument("--opt-level", type=int, default=3, help="builder optimization level, same for both paths")
    ap.add_argument("--int8-skip", default="", help="comma list of layer names kept in float in INT8 builds")
    ap.add_argument("--iters", type=int, default=100)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--out", default="gpu_results.json")
    ap.add_argument("--timing-cache", default=None, help="timing cache file (default WORK/timing.cache)")
    ap.add_argument("--yolo-heads", default="int8",
                    help="precisions whose YOLOv4 netdef engine also outputs head0..2 (INT8 is judged on them)")
    ap.add_argument("--profile-iters", type=int, default=10, help="per-layer profile at batch 32 (0: none)")
    args = ap.parse_args()
    work = Path(args.work)
    INT8_SKIP[:] = args.int8_skip.split(",")
    HEADS_FOR.update(p for p in args.yolo_heads.split(",") if p)
    timing_cache = Path(args.timing_cache) if args.timing_cache else work / "timing.cache"
    feat = shim.features()
    results = {"date": datetime.date.today().isoformat(), "trt": f"{feat.flavor} {feat.version}",
               "typing": feat.typing, "opt_level": args.opt_level, "rows": []}
    out_path = Path(args.out)
    loaded: dict[str, tuple[dict, dict]] = {}
    for item in args.plan.split(","):
        name, precision, path_kind, *level = item.split(":")
        opt_level = int(level[0]) if level else args.opt_level
        if name not in loaded:
            loaded[name] = (dict(np.load(work / f"{name}_inputs.npz")), dict(np.load(work / f"{name}_refs.npz")))
        inputs, refs = loaded[name]
        settings = BuildSettings(precision=precision, batch=(1, 32, 32), optimization_level=opt_level,
                                 timing_cache=timing_cache, progress=False)
        t0 = time.perf_counter()
        try:
            plan = (netdef_plan(name, work, settings) if path_kind == "netdef"
                    else onnx_plan(work / f"{name}.onnx", settings))
            row = evaluate(plan, work / f"{name}-{path_kind}-{precision}.engine", inputs, refs,
                           args.iters, args.warmup, args.profile_iters)
        except Exception as exc:  # keep going: one failed build must not lose the other numbers
            row = {"error": f"{type(exc).__name__}: {exc}"[:2000]}
        row.update(model=name, precision=precision, path=path_kind, opt_level=opt_level,
                   wall_s=round(time.perf_counter() - t0, 1))
        results["rows"].append(row)
        print(json.dumps(row), flush=True)
        out_path.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
