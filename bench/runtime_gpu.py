"""The runtime on a real GPU with real TensorRT (8.6 on the H100 test machine, Python 3.10, no torch).

Builds a netdef ResNet-18 engine (batch 1..8..32) from a weights file, then checks and times, through
netdef.runtime: outputs against a float64 PyTorch reference (.npz from bench/runtime_gpu_ref.py), dynamic
batch 1/8/32, pinned/device allocation and round trips of float32/float16/int32, zero copy from device
arrays (a minimal __cuda_array_interface__ object over cudaMalloc memory), two contexts on two streams
at once, CUDA graph capture, and `netdef bench` latency. Prints PASS/FAIL lines and tables; exits 1 on
any FAIL.

    # machine python3 (torch): random ResNet-18 weights (.npz) + input and float64 logits
    python3 bench/runtime_gpu_ref.py --random-weights r18.npz ref.npz
    # TensorRT python (no torch): everything else (an .npz weights file is converted to HDF5 first)
    PYTHONPATH=. /tmp/gpu-trt/python bench/runtime_gpu.py r18.npz ref.npz
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # runnable as `python bench/runtime_gpu.py`

import numpy as np  # noqa: E402

from netdef.verify import relative_error as rel_err  # noqa: E402

BATCH = (1, 8, 32)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("weights", help="ResNet-18 weights: netdef HDF5, or .npz state dict (converted to HDF5)")
    p.add_argument("reference", help=".npz with `input` (N>=32,3,224,224) float32 and `logits` float64 "
                   "(bench/runtime_gpu_ref.py)")
    p.add_argument("--precision", choices=("fp32", "fp16"), default="fp32")
    p.add_argument("--opt-level", type=int, default=None, help="builder optimization level (default: TensorRT's)")
    p.add_argument("--iterations", type=int, default=200)
    p.add_argument("--workdir", help="where the engine and results go (default: a temporary folder)")
    p.add_argument("--tolerance", type=float, help="max relative error vs the reference "
                   "(default 2e-3 fp32 with TF32, 1e-2 fp16)")
    return p.parse_args(argv)


class Checks:
    """PASS/FAIL lines as checks run; one failing check does not stop the others."""

    def __init__(self) -> None:
        self.rows: list[tuple[str, str, str]] = []

    def run(self, name: str, fn: Callable[[], str]) -> bool:
        try:
            detail = fn()
            self.rows.append((name, "PASS", detail))
        except Exception as exc:  # report and go on: the table shows every check's outcome
            traceback.print_exc()
            self.rows.append((name, "FAIL", f"{type(exc).__name__}: {exc}".splitlines()[0][:300]))
        name_, status, detail = self.rows[-1]
        print(f"{status} {name_}: {detail}", flush=True)
        return status == "PASS"

    @property
    def failed(self) -> bool:
        return any(status == "FAIL" for _, status, _ in self.rows)


class CudaArray:
    """The smallest device array: cudaMalloc memory exposed through __cuda_array_interface__ (torch is absent)."""

    def __init__(self, shape: tuple[int, ...], dtype: Any) -> None:
        from netdef.runtime import cuda

        self.shape, self.dtype = tuple(shape), np.dtype(dtype)
        self.nbytes = int(np.prod(self.shape)) * self.dtype.itemsize
        self.buffer = cuda.DeviceBuffer(self.nbytes)

    @property
    def __cuda_array_interface__(self) -> dict[str, Any]:
        return {"shape": self.shape, "typestr": self.dtype.str, "data": (self.buffer.ptr, False),
                "strides": None, "version": 3}

    def upload(self, array: np.ndarray, stream: Any) -> None:
        from netdef.runtime import cuda

        host = cuda.PinnedBuffer(self.nbytes)
        np.copyto(host.view(self.dtype, self.shape), array)
        cuda.copy_host_to_device(self.buffer.ptr, host.ptr, self.nbytes, stream)
        stream.synchronize()
        host.free()

    def download(self, stream: Any) -> np.ndarray:
        from netdef.runtime import cuda

        host = cuda.PinnedBuffer(self.nbytes)
        cuda.copy_device_to_host(host.ptr, self.buffer.ptr, self.nbytes, stream)
        stream.synchronize()
        out = host.view(self.dtype, self.shape).copy()
        host.free()
        return out

    def free(self) -> None:
        self.buffer.free()


def hdf5_weights(path: Path, workdir: Path) -> Path:
    """An .npz state dict becomes a netdef HDF5 file (what `networks...from_hdf5` reads)."""
    if path.suffix != ".npz":
        return path
    from weights_export.hdf5 import write_weights

    out = workdir / (path.stem + ".h5")
    with np.load(path) as z:
        tensors = {k: z[k] for k in z.files if not k.endswith("num_batches_tracked")}
    write_weights(out, tensors, root_attrs={"arch": "resnet18", "source": str(path)}, progress=False)
    return out


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import networks
    from netdef import trt as shim
    from netdef.engine import BuildSettings, load_engine, save_engine
    from netdef.runtime import InferenceSession, InputError, cuda
    from netdef.runtime.buffers import IOBuffer, TensorSpec
    from netdef.runtime.timing import format_table, measure

    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="runtime_gpu_"))
    workdir.mkdir(parents=True, exist_ok=True)
    tol = args.tolerance or (2e-3 if args.precision == "fp32" else 1e-2)
    feat = shim.features()
    try:
        gpus = str(cuda.device_count())
    except cuda.CudaError as exc:  # still build (and report every check) where no GPU is usable
        gpus = f"none ({exc})"
    print(f"TensorRT {feat.flavor} {feat.version} ({feat.typing} typing), GPUs: {gpus}, "
          f"precision {args.precision}, workdir {workdir}", flush=True)
    with np.load(args.reference) as z:
        x_all, ref_all = z["input"].astype(np.float32), z["logits"].astype(np.float64)
    if len(x_all) < BATCH[2]:
        raise SystemExit(f"{args.reference}: needs at least {BATCH[2]} inputs, has {len(x_all)}")
    checks = Checks()
    state: dict[str, Any] = {}
    latency_rows: list[list[Any]] = []

    def build() -> str:
        h5 = hdf5_weights(Path(args.weights), workdir)
        settings = BuildSettings(precision=args.precision, batch=BATCH, optimization_level=args.opt_level,
                                 timing_cache=workdir / "timing.cache", progress=False)
        t0 = time.perf_counter()
        plan = networks.get("resnet18").from_hdf5(h5).build(settings=settings)
        seconds = time.perf_counter() - t0
        state["engine"] = save_engine(plan, workdir / f"resnet18_{args.precision}.engine", weights=h5)
        state["h5"] = h5
        return f"{seconds:.1f} s, plan {len(plan.data) / 1e6:.1f} MB, sidecar arch {plan.meta.get('arch')}"

    def load() -> str:
        state["loaded"] = load_engine(state["engine"])
        session = state["session"] = InferenceSession.from_engine(state["loaded"])
        assert session.input_names == ["input"] and session.output_names == ["logits"], session
        spec = session.inputs[0]
        assert spec.min_shape[0] == 1 and spec.max_shape[0] == 32, spec
        return repr(session)

    def reference() -> str:
        out = state["session"].infer(x_all[:8])["logits"]
        err = rel_err(out, ref_all[:8])
        state["host_out8"] = out
        assert out.shape == (8, 1000) and out.dtype == np.float32, (out.shape, out.dtype)
        assert err < tol, f"relative error {err:.2e} >= {tol:.0e}"
        return f"rel err {err:.2e} (batch 8, tolerance {tol:.0e})"

    def dynamic_batch() -> str:
        session, errs = state["session"], []
        for b in (32, 1, 8, 32, 1):
            out = session.infer({"input": x_all[:b]})["logits"]
            assert out.shape == (b, 1000), out.shape
            errs.append(rel_err(out, ref_all[:b]))
        assert max(errs) < tol, errs
        try:
            session.infer(np.zeros((33, 3, 224, 224), np.float32))
        except InputError as exc:
            assert "outside the profile range 1..32" in str(exc)
        else:
            raise AssertionError("batch 33 was accepted")
        return "batches 32,1,8,32,1: max rel err " + f"{max(errs):.2e}; batch 33 refused by name"

    def dtypes() -> str:
        stream = cuda.Stream()
        done = []
        rt = cuda.cudart()
        for dtype in (np.float32, np.float16, np.int32):
            spec = TensorSpec(f"t_{np.dtype(dtype).name}", True, np.dtype(dtype), (-1, 3, 5), (1, 3, 5), (64, 3, 5))
            a, b = IOBuffer(spec), IOBuffer(spec)
            try:
                rng = np.random.default_rng(1)
                src = a.host_view((40, 3, 5))
                src[...] = (rng.standard_normal(src.shape) * 100).astype(dtype)
                cuda.copy_host_to_device(a.device.ptr, a.host.ptr, src.nbytes, stream)
                cuda.copy_device_to_device(b.device.ptr, a.device.ptr, src.nbytes, stream)
                cuda.copy_device_to_host(b.host.ptr, b.device.ptr, src.nbytes, stream)
                stream.synchronize()
                assert np.array_equal(b.host_view((40, 3, 5)), src), f"{dtype} round trip differs"
                attrs = cuda.check(rt.cudaPointerGetAttributes(a.host.ptr), "cudaPointerGetAttributes(host)")
                assert int(attrs.type) == int(rt.cudaMemoryType.cudaMemoryTypeHost), f"host buffer type {attrs.type}"
                attrs = cuda.check(rt.cudaPointerGetAttributes(a.device.ptr), "cudaPointerGetAttributes(device)")
                assert int(attrs.type) == int(rt.cudaMemoryType.cudaMemoryTypeDevice), f"device type {attrs.type}"
                done.append(np.dtype(dtype).name)
            finally:
                a.free()
                b.free()
        stream.destroy()
        return f"pinned host + device, HtoD/DtoD/DtoH bit-exact: {', '.join(done)}"

    def zero_copy() -> str:
        session = state["session"]
        stream = cuda.Stream()
        din, dout = CudaArray((8, 3, 224, 224), np.float32), CudaArray((8, 1000), np.float32)
        try:
            din.upload(x_all[:8], stream)
            result = session.infer({"input": din}, out={"logits": dout})
            addresses = session.backend.tensor_addresses
            assert result["logits"] is dout, "caller's output array not returned"
            assert addresses["input"] == din.buffer.ptr and addresses["logits"] == dout.buffer.ptr, addresses
            out = dout.download(stream)
            diff = rel_err(out, state["host_out8"])
            assert diff < 1e-6, f"device-array result differs from host path: {diff:.2e}"
            stats = measure(lambda: session.infer({"input": din}, out={"logits": dout}), 8, args.iterations, 10)
            latency_rows.append(["device arrays (zero copy)", 8, stats.p50_ms, stats.p99_ms, round(stats.throughput)])
            return f"TensorRT bound the caller's pointers; matches host path (rel {diff:.1e})"
        finally:
            din.free()
            dout.free()
            stream.destroy()

    def two_streams() -> str:
        try:  # the main session holds the engine's one profile: a second context on it must be refused clearly
            InferenceSession.from_engine(state["loaded"]).close()
            shared = "a second context on the shared engine got a free profile"
        except RuntimeError as exc:
            assert "optimization profile" in str(exc), exc
            shared = "a second context on the shared one-profile engine is refused by name"
        # concurrent sessions: one engine each (TensorRT: one context per optimization profile at a time)
        a, b = InferenceSession.from_engine(state["engine"]), InferenceSession.from_engine(state["engine"])
        try:
            assert a.backend.stream.ptr != b.backend.stream.ptr
            xa, xb = x_all[:16], x_all[16:32]
            seq_a, seq_b = a.infer(xa)["logits"], b.infer(xb)["logits"]
            ha, hb = a.infer_async(xa), b.infer_async(xb)
            ra, rb = ha.wait()["logits"], hb.wait()["logits"]
            assert rel_err(ra, seq_a) < 1e-6 and rel_err(rb, seq_b) < 1e-6, "concurrent results differ"
            assert rel_err(ra, ref_all[:16]) < tol and rel_err(rb, ref_all[16:32]) < tol
            n = max(args.iterations // 4, 10)
            t0 = time.perf_counter()
            for _ in range(n):
                a.infer(xa)
                b.infer(xb)
            sequential = (time.perf_counter() - t0) / n * 1000
            t0 = time.perf_counter()
            for _ in range(n):
                ha, hb = a.infer_async(xa), b.infer_async(xb)
                ha.wait()
                hb.wait()
            concurrent = (time.perf_counter() - t0) / n * 1000
            latency_rows.append(["2 contexts, sequential (16+16)", 32, sequential, float("nan"), round(32e3 / sequential)])
            latency_rows.append(["2 contexts, 2 streams (16+16)", 32, concurrent, float("nan"), round(32e3 / concurrent)])
            return (f"same results; 2x batch 16: sequential {sequential:.2f} ms, concurrent {concurrent:.2f} ms; "
                    f"{shared}")
        finally:
            a.close()
            b.close()

    def graph() -> str:
        plain = state["session"]
        with InferenceSession.from_engine(state["engine"], graph=True) as g:
            for b in (8, 8, 8, 1, 1):
                out = g.infer(x_all[:b])["logits"]
                assert rel_err(out, plain.infer(x_all[:b])["logits"]) < 1e-6, f"graph result differs at batch {b}"
            backend = g.backend
            assert backend.graph_fallback is None, f"capture fell back: {backend.graph_fallback}"
            assert backend.graph_launches == 3 and len(backend.graphs) == 2, (backend.graph_launches, len(backend.graphs))
            x1 = x_all[:1]
            with_graph = measure(lambda: g.infer(x1), 1, args.iterations, 10)
            without = measure(lambda: plain.infer(x1), 1, args.iterations, 10)
            latency_rows.append(["host arrays, CUDA graph", 1, with_graph.p50_ms, with_graph.p99_ms,
                                 round(with_graph.throughput)])
            return (f"captured per shape, replayed {backend.graph_launches}x, same outputs; batch 1 p50 "
                    f"{with_graph.p50_ms:.3f} ms vs {without.p50_ms:.3f} ms without")

    def latency() -> str:
        session = state["session"]
        for b in BATCH:
            xb = x_all[:b]
            stats = measure(lambda: session.infer(xb), b, args.iterations, 10)
            latency_rows.append(["host arrays (infer)", b, stats.p50_ms, stats.p99_ms, round(stats.throughput)])
        return "see table"

    def bench_cli() -> str:
        from netdef.commands import bench

        parser = argparse.ArgumentParser(prog="netdef")
        bench.add_parser(parser.add_subparsers())
        out = workdir / "bench.json"
        code = bench.run(parser.parse_args(["bench", str(state["engine"]), "--batch", "8", "--iterations",
                                            str(args.iterations), "--json", str(out)]))
        import json

        report = json.loads(out.read_text())
        assert code == 0 and report["netdef"]["p50_ms"] > 0, report
        return f"netdef bench --batch 8: p50 {report['netdef']['p50_ms']:.3f} ms, memory {report['memory']}"

    for name, fn in (("build", build), ("load", load), ("reference", reference), ("dynamic batch", dynamic_batch),
                     ("dtypes", dtypes), ("zero copy", zero_copy), ("two streams", two_streams),
                     ("cuda graph", graph), ("latency", latency), ("netdef bench", bench_cli)):
        needs = None if name in ("build", "dtypes") else "engine" if name == "load" else "session"
        if needs and needs not in state:
            checks.rows.append((name, "FAIL", f"not run: no {needs} ({'build' if needs == 'engine' else 'load'} failed)"))
            print(f"FAIL {name}: {checks.rows[-1][2]}")
            continue
        checks.run(name, fn)
    if "session" in state:
        state["session"].close()
    print()
    print(format_table([list(r) for r in checks.rows], ["check", "result", "detail"]))
    if latency_rows:
        print()
        print(f"ResNet-18 {args.precision} 224x224, TensorRT {feat.version}, {args.iterations} iterations per row")
        print(format_table(latency_rows, ["path", "batch", "p50 ms", "p99 ms", "images/s"]))
    print()
    print("RESULT:", "FAIL" if checks.failed else "PASS")
    return 1 if checks.failed else 0


if __name__ == "__main__":
    sys.exit(main())
