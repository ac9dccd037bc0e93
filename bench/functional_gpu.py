"""netdef.functional's ops on real TensorRT (8.6 on the GPU machine): engine output vs float64 PyTorch.

On the CPU the executor stands in for TensorRT (tests/test_functional.py); this checks that TensorRT computes
what the executor does for the layers the ops emit (resize cubic/linear/nearest with torch's coordinates, slice
sample modes for pad, pooling with asymmetric padding, gather, topk, select, reduce, fill, NMS-free index math).
Two steps, as bench/runtime_gpu*.py: the reference in a Python with torch, the engines in TensorRT's Python.

    python3 bench/functional_gpu.py ref /tmp/nd/functional_ref.npz           # torch: inputs + float64 outputs
    PYTHONPATH=. /tmp/gpu-trt/python bench/functional_gpu.py run /tmp/nd/functional_ref.npz   # TensorRT 8.6

`run` builds one small engine per op and precision (fp32, fp16; batch profile 1..3..3, builder level 0) and
prints a PASS/FAIL line per case (relative error; exact for bool/int outputs); exit 1 on any FAIL.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import traceback
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # runnable as `python bench/functional_gpu.py`

import numpy as np  # noqa: E402

TOLERANCE = {"fp32": 1e-5, "fp16": 5e-3}
KERNEL = np.random.default_rng(7).standard_normal((6, 1, 3, 3)).astype(np.float32)
COLUMNS = np.array([[0, 8], [3, 3], [7, 1]])


def _cases() -> list[tuple[str, list[tuple[int, ...]], Callable[..., Any], Callable[..., Any]]]:
    """(name, input shapes, netdef fn(F, *x), torch fn(torch, TF, *x)); outputs are one tensor each."""
    return [
        ("interpolate_bilinear", [(3, 3, 5, 7)], lambda F, a: F.interpolate(a, scale_factor=2, mode="bilinear"),
         lambda T, TF, a: TF.interpolate(a, scale_factor=2, mode="bilinear")),
        ("interpolate_bilinear_align", [(3, 3, 5, 7)],
         lambda F, a: F.interpolate(a, size=(9, 4), mode="bilinear", align_corners=True),
         lambda T, TF, a: TF.interpolate(a, size=(9, 4), mode="bilinear", align_corners=True)),
        ("interpolate_bicubic", [(3, 3, 5, 7)], lambda F, a: F.interpolate(a, size=(11, 5), mode="bicubic"),
         lambda T, TF, a: TF.interpolate(a, size=(11, 5), mode="bicubic")),
        ("interpolate_bicubic_align", [(3, 3, 6, 4)],
         lambda F, a: F.interpolate(a, scale_factor=(1.5, 2.5), mode="bicubic", align_corners=True),
         lambda T, TF, a: TF.interpolate(a, scale_factor=(1.5, 2.5), mode="bicubic", align_corners=True)),
        ("interpolate_nearest_exact", [(3, 3, 5, 7)], lambda F, a: F.interpolate(a, size=(12, 5), mode="nearest-exact"),
         lambda T, TF, a: TF.interpolate(a, size=(12, 5), mode="nearest-exact")),
        ("pad_constant", [(3, 3, 5, 7)], lambda F, a: F.pad(a, (2, 1, 0, 3), value=0.5),
         lambda T, TF, a: TF.pad(a, (2, 1, 0, 3), value=0.5)),
        ("pad_reflect", [(3, 3, 5, 7)], lambda F, a: F.pad(a, (2, 1, 3, 0), mode="reflect"),
         lambda T, TF, a: TF.pad(a, (2, 1, 3, 0), mode="reflect")),
        ("pad_replicate", [(3, 3, 5, 7)], lambda F, a: F.pad(a, (0, 4, 2, 2), mode="replicate"),
         lambda T, TF, a: TF.pad(a, (0, 4, 2, 2), mode="replicate")),
        ("pad_circular", [(3, 3, 5, 7)], lambda F, a: F.pad(a, (3, 1, 1, 2), mode="circular"),
         lambda T, TF, a: TF.pad(a, (3, 1, 1, 2), mode="circular")),
        ("max_pool_asymmetric", [(3, 3, 8, 9)], lambda F, a: F.max_pool2d(a, 3, 2, ((1, 2), (0, 1))),
         lambda T, TF, a: TF.max_pool2d(TF.pad(a, (0, 1, 1, 2), value=float("-inf")), 3, 2)),
        ("avg_pool_asymmetric", [(3, 3, 6, 7)], lambda F, a: F.avg_pool2d(a, (2, 3), 1, ((0, 1), (1, 0))),
         lambda T, TF, a: TF.avg_pool2d(TF.pad(a, (1, 0, 0, 1)), (2, 3), 1)),
        ("conv2d_depthwise", [(3, 6, 7, 8)], lambda F, a: F.conv2d(a, KERNEL, padding=((1, 1), (2, 0)), groups=6),
         lambda T, TF, a: TF.conv2d(TF.pad(a, (2, 0, 1, 1)), T.from_numpy(KERNEL).double(), groups=6)),
        ("reductions", [(3, 3, 4, 5)],
         lambda F, a: F.sum(a, (1, 3)) + F.mean(a, (1, 3)) + F.amax(a, (1, 3)) - F.amin(a, (1, 3)),
         lambda T, TF, a: a.sum((1, 3)) + a.mean((1, 3)) + a.amax((1, 3)) - a.amin((1, 3))),
        ("where_compare", [(3, 3, 4, 5)], lambda F, a: F.where(F.logical_or(F.gt(a, 1.0), F.le(a, -1.0)), a, a * 0.1),
         lambda T, TF, a: T.where((a > 1) | (a <= -1), a, a * 0.1)),
        ("index_select", [(3, 3, 4, 9)], lambda F, a: F.index_select(a, 3, COLUMNS),
         lambda T, TF, a: a[:, :, :, COLUMNS]),
        ("topk_gather", [(3, 3, 6, 4)], lambda F, a: F.gather(a, 2, F.topk(a, 3, 2)[1]) + F.topk(a, 3, 2, False)[0],
         lambda T, TF, a: T.gather(a, 2, T.topk(a, 3, 2).indices) + T.topk(a, 3, 2, largest=False).values),
        ("arange_like_batch", [(3, 2, 4)], lambda F, a: a + F.reshape(F.cast(F.arange_like(a, 0), np.float32), (-1, 1, 1)),
         lambda T, TF, a: a + T.arange(a.shape[0], dtype=a.dtype).reshape(-1, 1, 1)),
        ("topk_indices_int", [(3, 9, 2)], lambda F, a: F.topk(a, 3, 1)[1],
         lambda T, TF, a: T.topk(a, 3, 1).indices.int()),
    ]


def _inputs(name: str, shapes: list[tuple[int, ...]]) -> list[np.ndarray]:
    """Distinct values (so top-k and max pick one element, in FP16 too), -3..3."""
    rng = np.random.default_rng(sum(map(ord, name)))
    return [(rng.permutation(int(np.prod(s))).reshape(s) / np.prod(s) * 6 - 3).astype(np.float32) for s in shapes]


def reference(out: str) -> int:
    import torch
    import torch.nn.functional as TF

    from netdef.atomic import write_bytes_atomic

    arrays: dict[str, np.ndarray] = {}
    for name, shapes, _, torch_fn in _cases():
        xs = _inputs(name, shapes)
        for i, x in enumerate(xs):
            arrays[f"{name}/in{i}"] = x
        with torch.no_grad():
            arrays[f"{name}/out"] = torch_fn(torch, TF, *[torch.from_numpy(x).double() for x in xs]).numpy()
    import io

    buf = io.BytesIO()
    np.savez(buf, **arrays)
    write_bytes_atomic(out, buf.getvalue())
    print(f"wrote {out}: {len(_cases())} cases")
    return 0


def run(ref_path: str, precisions: list[str]) -> int:
    import netdef.functional as F
    from netdef.engine import BuildSettings, save_engine
    from netdef.network import Network
    from netdef.runtime.session import InferenceSession
    from netdef.verify import relative_error

    failures = 0
    with np.load(ref_path) as z, tempfile.TemporaryDirectory() as tmp:
        for name, shapes, netdef_fn, _ in _cases():
            xs = [z[f"{name}/in{i}"] for i in range(len(shapes))]
            expected = z[f"{name}/out"]
            for precision in precisions:
                try:
                    with Network(name, precision) as net:
                        ins = [net.add_input(f"in{i}", (-1,) + x.shape[1:]) for i, x in enumerate(xs)]
                        net.mark_output(netdef_fn(F, *ins), "out")
                    plan = net.build(BuildSettings(precision=precision, batch=(1, 3, 3), optimization_level=0,
                                                   progress=False))
                    path = save_engine(plan, Path(tmp) / f"{name}-{precision}.engine")
                    with InferenceSession.from_engine(path) as session:
                        got = session.infer({f"in{i}": x for i, x in enumerate(xs)})["out"]
                    if expected.dtype.kind in "biu":
                        ok = got.shape == expected.shape and bool((got.astype(np.int64) == expected).all())
                        detail = "exact" if ok else f"{int((got != expected).sum())} of {expected.size} differ"
                    else:
                        err = relative_error(got, expected)
                        ok, detail = err <= TOLERANCE[precision], f"rel err {err:.2e} (tol {TOLERANCE[precision]})"
                except Exception:  # a case that cannot build or run is a FAIL with its traceback, the rest go on
                    ok, detail = False, traceback.format_exc(limit=3).strip().replace("\n", " | ")
                failures += not ok
                print(f"{'PASS' if ok else 'FAIL'} {name:28s} {precision}  {detail}", flush=True)
    print(f"{failures} failure(s)")
    return 1 if failures else 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("step", choices=("ref", "run"))
    p.add_argument("npz", help="reference file (written by `ref`, read by `run`)")
    p.add_argument("--precisions", default="fp32,fp16")
    args = p.parse_args(argv)
    return reference(args.npz) if args.step == "ref" else run(args.npz, args.precisions.split(","))


if __name__ == "__main__":
    sys.exit(main())
