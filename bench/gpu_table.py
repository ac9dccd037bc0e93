"""Merge the GPU benchmark's results into one table (runs anywhere: json only).

    python bench/gpu_table.py --torch T.json [T2.json ...] --trt R.json [R2.json ...] [--markdown]
    python bench/gpu_table.py --int8 R.json [R2.json ...] [--json summary.json]

`--torch`: step 1's torch_report.json files (models merged); `--trt`: bench/gpu.py result files (rows merged).
Each netdef row is compared with the ONNX-path row of the same model, precision and optimization level (INT8:
the FP16 ONNX-path engine, as the ONNX model carries no Q/DQ). "ms" is the wall clock of one `infer` with
device-resident I/O (Python included), "GPU ms" the enqueue alone between CUDA events.
"""
from __future__ import annotations

import argparse
import json
import os


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


# --- issue 14: netdef INT8 against TensorRT's implicit INT8 and netdef FP16 (batch 32, GPU time) ---------------
INT8_TARGETS = {"yolov4": {"vs_implicit": 1.0, "vs_fp16": 0.8, "cosine": 0.995},
                "resnet50": {"vs_implicit": 1.0, "vs_fp16": None, "cosine": 0.9995}}


def _accuracy(row: dict) -> tuple[float | None, float | None, str]:
    """(rel err, cosine, on what) at batch 32: a detector's raw heads where the row has them, else its outputs."""
    per = row.get("b32", {}).get("outputs", {})
    heads = {k: v for k, v in per.items() if k.startswith("head")}
    judged = heads or per
    if not judged:
        return None, None, "-"
    return (max(v["rel_err"] for v in judged.values()), min(v["cosine"] for v in judged.values()),
            "heads" if heads else ",".join(sorted(judged)))


def int8_summary(gpu_rows: list[dict]) -> list[dict]:
    """Per model and level: GPU ms of netdef FP16, netdef INT8 and implicit INT8, their ratios, accuracies,
    engine layer counts and the INT8 placement report; `met` says which of issue 14's targets hold."""
    out = []
    for r in gpu_rows:
        if r.get("path") != "netdef" or r.get("precision") != "int8":
            continue
        model, level = r["model"], r.get("opt_level")
        same = {(x.get("path"), x.get("precision")): x for x in gpu_rows
                if x.get("model") == model and x.get("opt_level") == level}
        rows = {"netdef_int8": r, "implicit_int8": same.get(("implicit", "int8")),
                "netdef_fp16": same.get(("netdef", "fp16")), "onnx_fp16": same.get(("onnx", "fp16"))}
        gpu = {k: (v or {}).get("b32", {}).get("gpu_median_ms") for k, v in rows.items()}
        acc = {k: _accuracy(v) if v and not v.get("error") else (None, None, "-") for k, v in rows.items()}
        ratio = {"vs_implicit": gpu["netdef_int8"] / gpu["implicit_int8"] if gpu["netdef_int8"] and gpu["implicit_int8"] else None,
                 "vs_fp16": gpu["netdef_int8"] / gpu["netdef_fp16"] if gpu["netdef_int8"] and gpu["netdef_fp16"] else None,
                 "implicit_vs_fp16": gpu["implicit_int8"] / gpu["netdef_fp16"] if gpu["implicit_int8"] and gpu["netdef_fp16"] else None}
        target = INT8_TARGETS.get(model, {})
        met = {}
        for key in ("vs_implicit", "vs_fp16"):
            if target.get(key) is not None and ratio[key] is not None:
                met[key] = ratio[key] <= target[key]
        nd, im = acc["netdef_int8"], acc["implicit_int8"]
        if nd[1] is not None and target.get("cosine") is not None:
            met["cosine"] = nd[1] >= target["cosine"]
        if nd[0] is not None and im[0] is not None:
            met["at_least_implicit_accuracy"] = nd[0] <= im[0] and nd[1] >= im[1]
        out.append({"model": model, "level": level, "int8_skip": r.get("int8_skip", []),
                    "shortcut_q": r.get("shortcut_q"), "preact_q": r.get("preact_q"), "head_q": r.get("head_q"),
                    "gpu_ms_b32": gpu, "ratios": ratio, "met": met,
                    "accuracy": {k: {"rel_err": a[0], "cosine": a[1], "on": a[2]} for k, a in acc.items()},
                    "errors": {k: v.get("error") for k, v in rows.items() if v and v.get("error")},
                    "skipped": {k: v["skipped"] for k, v in rows.items() if v and v.get("skipped")},
                    "analysis_errors": {k: v["analysis_errors"] for k, v in rows.items()
                                        if v and v.get("analysis_errors")},
                    "engine_layers": {k: (v or {}).get("engine_layers") for k, v in rows.items()},
                    "placement": r.get("placement")})
    return out


def int8_table(gpu_rows: list[dict]) -> str:
    lines = []
    for s in int8_summary(gpu_rows):
        g, q, a = s["gpu_ms_b32"], s["ratios"], s["accuracy"]
        variant = f", INT8 with {'+'.join(s['int8_skip'])} float" if s.get("int8_skip") else ""
        variant += f", shortcuts quantized at the {s['shortcut_q']}" if s.get("shortcut_q") else ""
        variant += {"none": ", no conv quantized at its output but the shortcut branches'",
                    "mish": ", Mish convs quantized at their output",
                    "stem": ", the stem alone quantized at its output (the default until the eighth session)",
                    "stem+leaky": ", the stem and leaky convs quantized at their output"}.get(s.get("preact_q"), "")
        variant += ", head convs INT8" if s.get("head_q") == "int8" else ""
        lines.append(f"{s['model']} (level {s['level']}{variant}), batch 32, GPU ms: netdef FP16 {fmt(g['netdef_fp16'], '.3f')} | "
                     f"netdef INT8 {fmt(g['netdef_int8'], '.3f')} | implicit INT8 (ONNX path) {fmt(g['implicit_int8'], '.3f')}")
        lines.append(f"  netdef INT8 / implicit INT8 = {fmt(q['vs_implicit'])}   netdef INT8 / netdef FP16 = "
                     f"{fmt(q['vs_fp16'])}   implicit INT8 / netdef FP16 = {fmt(q['implicit_vs_fp16'])}")
        for key, label in (("netdef_int8", "netdef INT8"), ("implicit_int8", "implicit INT8"), ("netdef_fp16", "netdef FP16"),
                           ("onnx_fp16", "ONNX FP16")):
            if key == "onnx_fp16" and g[key] is None and a[key]["cosine"] is None:
                continue  # the ONNX-path FP16 row (the accuracy cross-check) is optional
            lines.append(f"  {label:<14} vs float64 ({a[key]['on']}): rel err {fmt(a[key]['rel_err'], '.2e')}, "
                         f"cosine {fmt(a[key]['cosine'], '.5f')}" + (f"  (GPU ms {g[key]:.3f})" if key == "onnx_fp16"
                                                                     and g[key] else ""))
        for key, counts in s["engine_layers"].items():
            if counts:
                lines.append(f"  {key:<14} engine: {counts['layers']} layers, {counts['reformats']} reformats "
                             f"({counts.get('dequantize_copies', '-')} dequantize copies, "
                             f"{counts.get('noop_reformats', '-')} no-op), "
                             f"{counts['int8_input_convolutions']}/{counts['convolutions']} INT8 convs "
                             f"({counts['conv_precisions']}), {counts['merged_convolutions']} merged, "
                             f"{counts['pointwise']} pointwise ({counts.get('int8_pointwise', '-')} INT8 in/out), "
                             f"{counts['elementwise']} element-wise, {counts['standalone_quantize']} standalone Q")
        if s["placement"]:
            lines.append(f"  placement: {s['placement']}")
        for key, err in s["errors"].items():
            lines.append(f"  {key} FAILED: {str(err)[:200]}")
        for key, why in s["skipped"].items():
            lines.append(f"  {key} not measured: skipped ({why})")
        for key, errs in s["analysis_errors"].items():
            lines.append(f"  {key} analysis errors (timings kept): {json.dumps(errs)[:300]}")
        lines.append(f"  targets met: {s['met']}")
    return "\n".join(lines) if lines else "no netdef INT8 rows"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--torch", nargs="+")
    ap.add_argument("--trt", nargs="+")
    ap.add_argument("--markdown", action="store_true")
    ap.add_argument("--int8", nargs="+", help="bench/gpu.py result files: the INT8 table of issue 14")
    ap.add_argument("--json", default=None, help="with --int8: write the summary here")
    args = ap.parse_args()
    if args.int8:
        found = [path for path in args.int8 if os.path.isfile(path)]
        gpu_rows = [row for path in found for row in json.load(open(path))["rows"]]
        print(int8_table(gpu_rows))
        for path in sorted(set(args.int8) - set(found)):
            print(f"no results in {path} (its step did not run or did not finish: see the log beside it)")
        if args.json:
            with open(args.json, "w") as f:
                json.dump(int8_summary(gpu_rows), f, indent=1)
        return 0
    if not args.torch or not args.trt:
        ap.error("--torch and --trt are required (or --int8)")
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
