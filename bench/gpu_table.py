"""Merge the GPU benchmark's results into one table (runs anywhere: json only).

    python bench/gpu_table.py --torch T.json [T2.json ...] --trt R.json [R2.json ...] [--markdown]

`--torch`: step 1's torch_report.json files (models merged); `--trt`: bench/gpu.py result files (rows merged).
Each netdef row is compared with the ONNX-path row of the same model, precision and optimization level (INT8:
the FP16 ONNX-path engine, as the ONNX model carries no Q/DQ). "ms" is the wall clock of one `infer` with
device-resident I/O (Python included), "GPU ms" the enqueue alone between CUDA events.
"""
from __future__ import annotations

import argparse
import json


def fmt(v: float | None, spec: str = ".2f") -> str:
    return "-" if v is None else format(v, spec)


def rows(torch_models: dict, gpu_rows: list[dict]) -> list[dict]:
    index = {(r["model"], r["precision"], r["path"], r.get("opt_level")): r for r in gpu_rows}
    out = []
    for (model, precision, path, level), r in index.items():
        if path != "netdef":
            continue
        onnx = index.get((model, precision, "onnx", level))
        if onnx is None and precision == "int8":
            onnx = index.get((model, "fp16", "onnx", level))
        t = torch_models.get(model, {}).get("torch", {})
        for b in (1, 32):
            nd = r.get(f"b{b}", {})
            ox = (onnx or {}).get(f"b{b}", {})
            eager = t.get(f"eager_{'fp32' if precision == 'fp32' else 'fp16'}_b{b}", {}).get("median_ms")
            comp = t.get("compile_fp16_b32", {}).get("median_ms") if b == 32 and precision != "fp32" else None
            med = nd.get("median_ms")
            out.append({
                "level": level, "model": model, "precision": precision, "batch": b, "netdef_ms": med,
                "netdef_p90": nd.get("p90_ms"), "netdef_gpu": nd.get("gpu_median_ms"),
                "onnx_ms": ox.get("median_ms"), "onnx_gpu": ox.get("gpu_median_ms"),
                "onnx_precision": (onnx or {}).get("precision"), "eager_ms": eager, "compile_ms": comp,
                "onnx_ratio": med / ox["median_ms"] if med and ox.get("median_ms") else None,
                "onnx_gpu_ratio": (nd["gpu_median_ms"] / ox["gpu_median_ms"]
                                   if nd.get("gpu_median_ms") and ox.get("gpu_median_ms") else None),
                "eager_speedup": eager / med if med and eager else None,
                "compile_speedup": comp / med if med and comp else None,
                "rel_err": nd.get("rel_err"), "cosine": nd.get("cosine"), "heads_cosine": nd.get("heads_cosine"),
                "error": r.get("error"),
            })
    return out


HEAD = ["model", "level", "prec", "batch", "netdef ms (p50)", "p90", "GPU ms", "ONNX-path ms", "ONNX GPU ms",
        "netdef/ONNX", "(GPU)", "eager ms", "eager/netdef", "compile ms", "compile/netdef", "rel err", "cosine"]


def line(r: dict) -> list[str]:
    if r["error"]:
        return [r["model"], str(r["level"]), r["precision"], str(r["batch"]), "FAILED: " + r["error"][:80]] \
            + [""] * (len(HEAD) - 5)
    note = "" if r["onnx_precision"] in (None, r["precision"]) else f" ({r['onnx_precision']})"
    cos = fmt(r["cosine"], ".5f") + (f" (heads {r['heads_cosine']:.4f})" if r["heads_cosine"] else "")
    return [r["model"], str(r["level"]), r["precision"], str(r["batch"]), fmt(r["netdef_ms"], ".3f"),
            fmt(r["netdef_p90"], ".3f"), fmt(r["netdef_gpu"], ".3f"), fmt(r["onnx_ms"], ".3f") + note,
            fmt(r["onnx_gpu"], ".3f"), fmt(r["onnx_ratio"]), fmt(r["onnx_gpu_ratio"]), fmt(r["eager_ms"], ".3f"),
            fmt(r["eager_speedup"], ".1f") + ("x" if r["eager_speedup"] else ""), fmt(r["compile_ms"], ".3f"),
            fmt(r["compile_speedup"]), fmt(r["rel_err"], ".1e"), cos]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--torch", nargs="+", required=True)
    ap.add_argument("--trt", nargs="+", required=True)
    ap.add_argument("--markdown", action="store_true")
    args = ap.parse_args()
    reports = [json.load(open(p)) for p in args.torch]
    results = [json.load(open(p)) for p in args.trt]
    torch_models = {k: v for rep in reports for k, v in rep["models"].items()}
    lines = [line(r) for r in rows(torch_models, [row for res in results for row in res["rows"]])]
    print(f"{reports[0].get('gpu', '?')} | {results[0].get('trt')} ({results[0].get('typing')} typing) | builder "
          f"optimization level per row, the same for netdef and its ONNX-path baseline | torch "
          f"{reports[0].get('torch')} | {results[0].get('date')}")
    if args.markdown:
        print("| " + " | ".join(HEAD) + " |")
        print("|" + "---|" * len(HEAD))
        for cells in lines:
            print("| " + " | ".join(cells) + " |")
    else:
        widths = [max(len(h), *(len(c[i]) for c in lines)) if lines else len(h) for i, h in enumerate(HEAD)]
        print("  ".join(h.ljust(w) for h, w in zip(HEAD, widths)))
        for cells in lines:
            print("  ".join(c.ljust(w) for c, w in zip(cells, widths)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
