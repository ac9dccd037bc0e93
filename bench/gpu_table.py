"""Merge the two GPU benchmark steps into one table (runs anywhere: json only).

    python bench/gpu_table.py torch_report.json gpu_results.json [--markdown]
"""
from __future__ import annotations

import argparse
import json


def fmt(v: float | None, spec: str = ".2f") -> str:
    return "-" if v is None else format(v, spec)


def rows(torch_report: dict, gpu: dict) -> list[dict]:
    index = {(r["model"], r["precision"], r["path"], r.get("opt_level")): r for r in gpu["rows"]}
    out = []
    for (model, precision, path, level), r in index.items():
        if path != "netdef":
            continue
        onnx = index.get((model, precision, "onnx", level)) or index.get((model, "fp16", "onnx", level))
        t = torch_report["models"].get(model, {}).get("torch", {})
        for b in (1, 32):
            nd = r.get(f"b{b}", {})
            ox = (onnx or {}).get(f"b{b}", {})
            eager = t.get(f"eager_{'fp32' if precision == 'fp32' else 'fp16'}_b{b}", {}).get("median_ms")
            comp = t.get("compile_fp16_b32", {}).get("median_ms") if b == 32 else None
            med = nd.get("median_ms")
            out.append({
                "level": r.get("opt_level"), "model": model, "precision": precision, "batch": b, "netdef_ms": med, "netdef_p90": nd.get("p90_ms"),
                "onnx_ms": ox.get("median_ms"), "onnx_precision": (onnx or {}).get("precision"),
                "eager_ms": eager, "compile_ms": comp,
                "onnx_ratio": med / ox["median_ms"] if med and ox.get("median_ms") else None,
                "eager_speedup": eager / med if med and eager else None,
                "compile_speedup": comp / med if med and comp else None,
                "rel_err": nd.get("rel_err"), "cosine": nd.get("cosine"), "error": r.get("error"),
            })
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("torch_report")
    ap.add_argument("gpu_results")
    ap.add_argument("--markdown", action="store_true")
    args = ap.parse_args()
    torch_report = json.load(open(args.torch_report))
    gpu = json.load(open(args.gpu_results))
    head = ["model", "level", "prec", "batch", "netdef ms (p50)", "p90", "ONNX-path ms", "netdef/ONNX", "eager ms",
            "eager/netdef", "compile ms", "compile/netdef", "rel err", "cosine"]
    lines = []
    for r in rows(torch_report, gpu):
        if r["error"]:
            lines.append([r["model"], str(r["level"]), r["precision"], str(r["batch"]), "FAILED: " + r["error"][:80]]
                         + [""] * 9)
            continue
        onnx_note = "" if r["onnx_precision"] in (None, r["precision"]) else f" ({r['onnx_precision']})"
        lines.append([r["model"], str(r["level"]), r["precision"], str(r["batch"]), fmt(r["netdef_ms"], ".3f"),
                      fmt(r["netdef_p90"], ".3f"), fmt(r["onnx_ms"], ".3f") + onnx_note, fmt(r["onnx_ratio"]),
                      fmt(r["eager_ms"], ".3f"), fmt(r["eager_speedup"], ".1f") + ("x" if r["eager_speedup"] else ""),
                      fmt(r["compile_ms"], ".3f"), fmt(r["compile_speedup"]), fmt(r["rel_err"], ".1e"),
                      fmt(r["cosine"], ".5f")])
    print(f"{torch_report.get('gpu', '?')} | {gpu.get('trt')} ({gpu.get('typing')} typing) | builder optimization "
          f"level per row, the same for netdef and its ONNX-path baseline | torch {torch_report.get('torch')} | {gpu.get('date')}")
    if args.markdown:
        print("| " + " | ".join(head) + " |")
        print("|" + "---|" * len(head))
        for line in lines:
            print("| " + " | ".join(line) + " |")
    else:
        widths = [max(len(h), *(len(line[i]) for line in lines)) if lines else len(h) for i, h in enumerate(head)]
        print("  ".join(h.ljust(w) for h, w in zip(head, widths)))
        for line in lines:
            print("  ".join(c.ljust(w) for c, w in zip(line, widths)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
