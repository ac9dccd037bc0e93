"""OpenPose GPU benchmark (issue 18): engines, in-engine parsing, and image to people against the reference.

Two steps, as bench/gpu_prepare.py + bench/gpu.py (whose helpers this imports):

  prepare   python3 with torch + CUDA, cv2 and scipy, TensorRT-RTX on PYTHONPATH (the calibration's executor):
    PYTHONPATH=/tmp/rtx/site:. python3 bench/gpu_openpose.py prepare --work /tmp/op --sizes 480x640,224x224
  bench     TensorRT 8.6 (Python 3.10, no torch):
    PYTHONPATH=. /tmp/gpu-trt/python bench/gpu_openpose.py bench --work /tmp/op --sizes 480x640 --opt-level 3

prepare: the model (seeded random init; the last heatmap conv scaled x5 so heatmaps reach 0..1 and peaks
exist) as HDF5, and per size an ONNX file (raw outputs), inputs at batch 1 and 8 with float64 references
(raw maps and torch_parse of them), PyTorch eager FP32/FP16 and torch.compile timings, netdef's INT8
calibration (entropy, CUDA executor), synthetic people maps with their float64 parse and the people the
reference pipeline (bench/openpose_reference.py, cv2 + scipy) finds on them, and that pipeline's image-to-people
time at the engine's resolution and at the reference's own defaults (one scale, 0.5 x 368).
bench: per size, each plan item PRECISION:PATH:OUTPUTS is built (shared timing cache, one optimization level
for both paths, batch profile 1:8:8), checked and timed at batch 1 and 8; the parse alone on the synthetic
maps (TensorRT's cubic resize, smoothing, peaks and sampling against float64 torch; people against the
reference pipeline's); image to people: preprocess + parsed engine (host I/O) + host assembly, where the
assembly reads the synthetic maps' parse so both pipelines assemble the same people (the network's own maps
are random; the parse engine's output, or the float64 parse where that check failed). Prints the table, writes --out JSON after every row.
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

BATCHES = (1, 8)
HEAT_GAIN = 5.0
MAX_PEAKS = 32
# parsed first: its engine serves the image-to-people timing too
DEFAULT_PLAN = ("fp16:netdef:parsed,fp16:netdef:raw,fp16:onnx:raw,int8:netdef:raw,int8:netdef:parsed,"
                "fp32:netdef:raw,fp32:onnx:raw")


def parse_size(text: str) -> tuple[int, int]:
    h, w = (int(v) for v in text.lower().split("x"))
    return h, w


def tag(size: tuple[int, int]) -> str:
    return f"{size[0]}x{size[1]}"


def synthetic_people(low: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, list]:
    """People maps at network resolution `low` (h, w): as many side-by-side people as fit."""
    from netdef.pose.synthetic import people_maps

    h, w = low
    scale = max(0.5, min(h / 24, w / 40))
    step = 9 * scale
    offsets = [(1 + (i % 2) * 0.15 * h, 1 + i * step) for i in range(max(1, int((w - 8 * scale) // step)))]
    offsets = [(r, c) for r, c in offsets if r + 20 * scale < h]
    return people_maps(offsets, (h, w), scale=scale)


# --- step 1: prepare (torch) ---------------------------------------------------------------------------------

def prepare(args: argparse.Namespace) -> int:
    import torch

    import openpose_reference as reference
    from gpu_prepare import cuda_time, export_onnx
    from netdef import quantize
    from netdef.atomic import write_text_atomic
    from netdef.pose.paf import PafSettings
    from networks.openpose import OpenPose, torch_body_pose
    from networks.openpose_torch import torch_parse
    from weights_export.pytorch import export_module

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    dev = torch.device(args.device)
    settings = PafSettings(max_peaks=MAX_PEAKS)
    model = torch_body_pose(seed=0)
    with torch.no_grad():
        model.model6_2.Mconv7_stage6_L2.weight.mul_(HEAT_GAIN)
    h5 = work / "openpose.h5"
    export_module(model, h5, "openpose-body", input_shape=(1, 3, 480, 640), progress=False)
    gpu_name = torch.cuda.get_device_name(0) if dev.type == "cuda" else "cpu"
    report: dict = {"torch": torch.__version__, "gpu": gpu_name, "cudnn_benchmark": True, "sizes": {}}  # cuda_time
    for size in map(parse_size, args.sizes.split(",")):
        t0 = time.perf_counter()
        h, w = size
        entry: dict = {}
        rng = np.random.default_rng(123)
        inputs = {b: (rng.random((b, 3, h, w)) - 0.5).astype(np.float32) for b in BATCHES}
        np.savez(work / f"openpose_{tag(size)}_inputs.npz", **{f"b{b}": x for b, x in inputs.items()})
        export_onnx(model.float().cpu(), torch.from_numpy(inputs[1]), work / f"openpose_{tag(size)}.onnx",
                    ["paf", "heatmap"])
        refs = {}
        with torch.inference_mode():
            m64 = model.to(dev, torch.float64)
            for b, x in inputs.items():
                paf, heat = m64(torch.from_numpy(x).to(dev, torch.float64))
                refs[f"b{b}_paf"], refs[f"b{b}_heatmap"] = paf.cpu().numpy(), heat.cpu().numpy()
                parsed = torch_parse(paf, heat, settings)
                for name, t in zip(("peaks", "peak_counts", "limb_scores"), parsed):
                    refs[f"b{b}_{name}"] = t.cpu().numpy()
        np.savez(work / f"openpose_{tag(size)}_refs.npz", **refs)

        timings = {}
        with torch.inference_mode():
            for dtype, name in ((torch.float32, "fp32"), (torch.float16, "fp16")) if args.torch_timings else ():
                m = model.to(dev, dtype)
                for b in BATCHES:
                    x = torch.from_numpy(inputs[b]).to(dev, dtype)
                    timings[f"eager_{name}_b{b}"] = cuda_time(lambda: m(x), warmup=5, iters=30)
            compile_batches = [int(c.split(":")[1]) for c in args.compile.split(",")
                               if c and c.split(":")[0] == tag(size)]
            for b in compile_batches if args.torch_timings else ():
                m = model.to(dev, torch.float16).to(memory_format=torch.channels_last)
                x = torch.from_numpy(inputs[b]).to(dev, torch.float16).contiguous(memory_format=torch.channels_last)
                compiled = torch.compile(m, mode="reduce-overhead")
                c0 = time.perf_counter()
                compiled(x)
                compiled(x)
                torch.cuda.synchronize()
                timings[f"compile_fp16_b{b}"] = {**cuda_time(lambda: compiled(x), warmup=5, iters=30),
                                                 "compile_s": round(time.perf_counter() - c0, 1)}
                torch._dynamo.reset()
        entry["torch"] = timings
        model.to("cpu", torch.float32)

        if not args.no_calibration:
            c0 = time.perf_counter()
            data = (np.random.default_rng(7).random((args.calib_samples, 3, h, w)) - 0.5).astype(np.float32)
            quantize.calibrate(OpenPose.from_hdf5(h5), data, method="entropy", samples=args.calib_samples, batch=8,
                               device=args.device, input_size=size, out=work / f"openpose_{tag(size)}_calib.json",
                               recalibrate=True, progress=False)
            entry["calibration_s"] = round(time.perf_counter() - c0, 1)

        # synthetic people: their float64 parse, and what the reference pipeline finds on them
        paf_s, heat_s, joints = synthetic_people((h // 8, w // 8))
        parsed = torch_parse(torch.from_numpy(paf_s), torch.from_numpy(heat_s), settings)
        image = np.random.default_rng(5).integers(0, 256, (h, w, 3), dtype=np.uint8)  # BGR for the reference
        m32 = model.to(dev, torch.float32)
        candidates, people = reference.body(m32, image, boxsize=h, scale=1.0, device=args.device, maps=(paf_s, heat_s))
        np.savez(work / f"openpose_{tag(size)}_synthetic.npz", paf=paf_s, heatmap=heat_s,
                 peaks=parsed[0].numpy(), peak_counts=parsed[1].numpy(), limb_scores=parsed[2].numpy(),
                 joints=np.array(joints), reference_people=np.array(reference.keypoints(candidates, people)))
        entry["synthetic_people"] = len(joints)
        entry["reference_people"] = len(people)

        # the reference pipeline, image to people: at this resolution, and with its own defaults
        for name, boxsize, scale in (("same_resolution", h, 1.0), ("defaults", 368, 0.5)):
            factor = scale * boxsize / h
            low = (-(-round(h * factor) // 8), -(-round(w * factor) // 8))
            maps = synthetic_people(low)[:2]
            times = []
            for i in range(args.reference_iters + 2):
                r0 = time.perf_counter()
                reference.body(m32, image, boxsize=boxsize, scale=scale, device=args.device, maps=maps)
                if i >= 2:
                    times.append((time.perf_counter() - r0) * 1e3)
            entry[f"reference_{name}_ms"] = float(np.median(times))
        model.to("cpu")
        entry["prepare_s"] = round(time.perf_counter() - t0, 1)
        report["sizes"][tag(size)] = entry
        print(json.dumps({tag(size): entry}, indent=1), flush=True)
        write_text_atomic(work / "openpose_torch.json", json.dumps(report, indent=1))
    return 0


# --- step 2: bench (TensorRT 8.6) ------------------------------------------------------------------------------

def parse_agreement(outputs: dict, refs: dict, batch: int, order: list[str] | None = None) -> dict:
    """How many of the float64 reference's peaks the engine found (same pixel), and limb scores on common pairs."""
    from netdef.pose.paf import NO_LIMB, canonical

    found = total = 0
    worst = 0.0
    for b in range(batch):
        parts, scores = canonical(outputs["peaks"][b], outputs["peak_counts"][b], outputs["limb_scores"][b])
        parts_ref, scores_ref = canonical(refs[f"b{batch}_peaks"][b], refs[f"b{batch}_peak_counts"][b],
                                          refs[f"b{batch}_limb_scores"][b])
        for p, q in zip(parts, parts_ref):
            total += len(q)
            found += len({tuple(r) for r in q[:, :2].tolist()} & {tuple(r) for r in p[:, :2].tolist()})
        for s, s_ref in zip(scores, scores_ref):
            if s.shape == s_ref.shape and s.size:
                both = (s > NO_LIMB / 2) & (s_ref > NO_LIMB / 2)
                if both.any():
                    worst = max(worst, float(np.abs(s[both] - s_ref[both]).max()))
    return {"peaks_found": found / max(total, 1), "reference_peaks": total, "limb_score_max_abs": worst}


def build(item: str, size: tuple[int, int], work: Path, settings) -> object:
    import gpu

    from networks.openpose import OpenPose

    precision, path, outputs = item.split(":")
    if path == "onnx":
        return gpu.onnx_plan(work / f"openpose_{tag(size)}.onnx", settings)
    options: dict = {"input_size": size, "outputs": outputs, "max_peaks": MAX_PEAKS}
    if precision == "int8":  # the amax table (group ranges applied), so one calibration serves raw and parsed
        from netdef.quantize import load_cache

        options["calibration"] = load_cache(work / f"openpose_{tag(size)}_calib.json").resolved_amax()
    return OpenPose.from_hdf5(work / "openpose.h5").build(settings=settings, **options)


def check_parse_on_gpu(size: tuple[int, int], work: Path, settings) -> tuple[dict, dict]:
    """The parse alone on the synthetic maps: TensorRT against float64 torch, our people against the reference's."""
    from netdef.engine import save_engine
    from netdef.pose.paf import PafSettings, image_people
    from netdef.runtime.session import InferenceSession
    from networks.openpose import parse_network

    import gpu

    syn = dict(np.load(work / f"openpose_{tag(size)}_synthetic.npz"))
    net = parse_network(syn["heatmap"].shape[2:], PafSettings(max_peaks=MAX_PEAKS))
    path = work / f"openpose_{tag(size)}_parse.engine"
    save_engine(net.build(dataclasses.replace(settings, timing_cache=gpu.timing_cache_for(work, path))), path)
    with InferenceSession.from_engine(path) as session:
        out = session.infer({"paf": syn["paf"].astype(np.float32), "heatmap": syn["heatmap"].astype(np.float32)})
    refs = {f"b1_{k}": syn[k] for k in ("peaks", "peak_counts", "limb_scores")}
    result = parse_agreement(out, refs, 1)
    result["counts_equal"] = bool((out["peak_counts"] == syn["peak_counts"]).all())
    ours = image_people(out["peaks"][0], out["peak_counts"][0], out["limb_scores"][0], image_height=size[0])
    theirs = list(syn["reference_people"])
    result.update(people=len(ours), reference_people=len(theirs), synthetic_people=len(syn["joints"]))
    if len(ours) == len(theirs) and ours:
        ours_kp = sorted(p.keypoints[:, :2].tolist() for p in ours)
        theirs_kp = sorted(k[:, :2].tolist() for k in theirs)
        result["keypoints_max_abs_vs_reference"] = float(np.abs(np.array(ours_kp) - np.array(theirs_kp)).max())
    return result, out


def assembly_input(work: Path, size: tuple[int, int], parse_engine_out: dict | None) -> tuple[dict, str]:
    """What image to people assembles: the parse engine's output on the synthetic maps, or where that check
    failed (the H200 run: no image-to-people row at all), their float64 parse from the preparation."""
    if parse_engine_out is not None:
        return parse_engine_out, "parse engine on the synthetic maps"
    syn = np.load(work / f"openpose_{tag(size)}_synthetic.npz")
    return {k: syn[k] for k in ("peaks", "peak_counts", "limb_scores")}, "float64 parse of the synthetic maps"


def end_to_end(engine: Path, size: tuple[int, int], synthetic: dict, source: str, iters: int) -> dict:
    """Image (H, W, 3) uint8 -> people: preprocess, the parsed engine (host I/O), host assembly (medians, ms) of
    `synthetic` (parse outputs, `source` says whose)."""
    from netdef.pose.openpose import people, preprocess
    from netdef.runtime.session import InferenceSession

    image = np.random.default_rng(5).integers(0, 256, (*size, 3), dtype=np.uint8)
    parts = {"preprocess": [], "engine": [], "assembly": [], "total": []}
    with InferenceSession.from_engine(engine) as session:
        for i in range(iters + 5):
            t0 = time.perf_counter()
            x, info = preprocess(image, size)
            t1 = time.perf_counter()
            session.infer({session.input_names[0]: x[None]})
            t2 = time.perf_counter()
            found = people(synthetic, [info])
            t3 = time.perf_counter()
            if i >= 5:
                for k, dt in zip(parts, (t1 - t0, t2 - t1, t3 - t2, t3 - t0)):
                    parts[k].append(dt * 1e3)
    return {**{f"{k}_ms": float(np.median(v)) for k, v in parts.items()}, "people": len(found[0]),
            "assembled": source}


def item_row(item: str, size: tuple[int, int], **extra) -> dict:
    """A result row's labels (its size and PRECISION:PATH:OUTPUTS plan item) and `extra`."""
    precision, path, outputs = item.split(":")
    return {"size": tag(size), "precision": precision, "path": path, "outputs": outputs, **extra}


def bench(args: argparse.Namespace) -> int:
    from implicit_int8 import with_layer_lists

    return with_layer_lists(_bench, args)


def _bench(args: argparse.Namespace) -> int:
    import gpu

    from netdef import trt as shim
    from netdef.engine import BuildSettings

    work = Path(args.work)
    feat = shim.features()
    torch_report = json.loads((work / "openpose_torch.json").read_text()) if (work / "openpose_torch.json").exists() \
        else {"sizes": {}}
    results = {"date": datetime.date.today().isoformat(), "trt": f"{feat.flavor} {feat.version}",
               "opt_level": args.opt_level, "torch": torch_report, "rows": [], "parse": {}, "end_to_end": {}}
    out_path = Path(args.out)
    write = lambda: gpu.write_results(out_path, results)  # noqa: E731  after every step
    plan = args.plan.split(",")
    for size in map(parse_size, args.sizes.split(",")):
        unmeasured = None  # why no row of this size is measured: said for each in the result file
        if time.time() > args.deadline_at:
            unmeasured = {"skipped": "deadline"}
        else:
            try:
                inputs, refs = gpu.read_prepared(work, f"openpose_{tag(size)}")
            except OSError as exc:  # its preparation failed
                unmeasured = {"error": f"not prepared ({type(exc).__name__}: {exc}; see prepare.log)"[:500]}
        if unmeasured:
            results["parse"][tag(size)] = unmeasured
            results["rows"] += [item_row(item, size, **unmeasured) for item in plan]
            write()
            continue
        fp32 = BuildSettings(precision="fp32", batch=(1, 1, 1), optimization_level=args.opt_level, progress=False)
        try:
            check, synthetic_out = check_parse_on_gpu(size, work, fp32)
        except Exception as exc:  # keep going: the engines' numbers matter too
            check, synthetic_out = {"error": f"{type(exc).__name__}: {exc}"[:2000]}, None
        results["parse"][tag(size)] = check
        print(json.dumps({"parse": tag(size), **check}), flush=True)
        write()
        for item in plan:
            precision, path, outputs_kind = item.split(":")
            if time.time() > args.deadline_at:
                results["rows"].append(item_row(item, size, skipped="deadline"))
                write()
                continue
            engine = work / f"openpose_{tag(size)}-{path}-{outputs_kind}-{precision}.engine"
            settings = BuildSettings(precision=precision, batch=(1, 8, 8), optimization_level=args.opt_level,
                                     timing_cache=gpu.timing_cache_for(work, engine), progress=False)
            t0 = time.perf_counter()
            try:
                # parsed: where the parse's time goes at batch 1; raw: where INT8 loses to FP16, at batch 8
                profile = ((1 if outputs_kind == "parsed" else 8), 10) if args.profile else None
                row = gpu.evaluate_outputs(build(item, size, work, settings), engine, inputs, refs,
                                           outputs=outputs_kind, parsed_check=parse_agreement, iters=args.iters,
                                           warmup=args.warmup, batches=BATCHES, profile=profile)
            except Exception as exc:
                row = {"error": f"{type(exc).__name__}: {exc}"[:2000]}
            if outputs_kind == "parsed" and "error" not in row:  # image to people with this engine
                try:
                    e2e = end_to_end(engine, size, *assembly_input(work, size, synthetic_out), args.e2e_iters)
                except Exception as exc:  # the engine's row stays
                    e2e = {"error": f"{type(exc).__name__}: {exc}"[:1000]}
                results["end_to_end"][f"{tag(size)}:{precision}"] = row["end_to_end"] = e2e
            row.update(item_row(item, size, opt_level=args.opt_level, wall_s=round(time.perf_counter() - t0, 1)))
            results["rows"].append(row)
            print(json.dumps({k: v for k, v in row.items() if not k.startswith("profile_b")}), flush=True)
            write()
    write()
    print(table(results))
    return 0


# --- the table ---------------------------------------------------------------------------------------------------

def _ms(row: dict | None, batch: int, key: str = "gpu_median_ms") -> float | None:
    return None if not row or "error" in row else row.get(f"b{batch}", {}).get(key)


def table(results: dict) -> str:
    """Per size and batch: GPU ms of each engine, the target ratios, accuracy; then image to people."""
    rows = {(r["size"], r["precision"], r["path"], r["outputs"]): r for r in results["rows"]}
    lines = [f"{results['trt']}, optimization level {results['opt_level']} (netdef and ONNX path alike); GPU ms = "
             "enqueue between CUDA events, wall = one infer with device-resident I/O"]
    head = ("size", "b", "prec", "netdef raw", "parsed", "ONNX path", "netdef/ONNX", "eager", "eager/netdef",
            "compile", "INT8/FP16", "rel err / peaks found")
    lines.append(" | ".join(head))
    for size in sorted({r["size"] for r in results["rows"]}, reverse=True):
        t = results["torch"].get("sizes", {}).get(size, {}).get("torch", {})
        for b in BATCHES:
            fp16_raw = _ms(rows.get((size, "fp16", "netdef", "raw")), b)
            for prec in ("fp16", "int8", "fp32"):
                raw = rows.get((size, prec, "netdef", "raw"))
                parsed = rows.get((size, prec, "netdef", "parsed"))
                onnx = rows.get((size, prec, "onnx", "raw")) or (rows.get((size, "fp16", "onnx", "raw"))
                                                                 if prec == "int8" else None)
                if not raw and not parsed:
                    continue
                r_ms, p_ms, o_ms = _ms(raw, b), _ms(parsed, b), _ms(onnx, b)
                eager = t.get(f"eager_{'fp32' if prec == 'fp32' else 'fp16'}_b{b}", {}).get("median_ms")
                comp = t.get(f"compile_fp16_b{b}", {}).get("median_ms") if prec != "fp32" else None
                acc = (raw or {}).get(f"b{b}", {}).get("rel_err")
                found = (parsed or {}).get(f"b{b}", {}).get("peaks_found")
                cells = [size, str(b), prec, _f(r_ms), _f(p_ms), _f(o_ms) + (" (fp16)" if prec == "int8" else ""),
                         _f(r_ms / o_ms if r_ms and o_ms else None, ".2f"), _f(eager),
                         _f(eager / r_ms if eager and r_ms else None, ".1f") + "x", _f(comp),
                         _f(r_ms / fp16_raw if prec == "int8" and r_ms and fp16_raw else None, ".2f"),
                         f"{_f(acc, '.1e')} / {_f(found, '.3f')}"]
                lines.append(" | ".join(cells))
    for key, e in results["end_to_end"].items():
        if "error" in e:
            lines.append(f"image->people {key}: FAILED: {e['error'][:200]}")
            continue
        size = key.split(":")[0]
        ref = results["torch"].get("sizes", {}).get(size, {})
        same, default = ref.get("reference_same_resolution_ms"), ref.get("reference_defaults_ms")
        lines.append(f"image->people {key}: {e['total_ms']:.2f} ms (preprocess {e['preprocess_ms']:.2f}, engine "
                     f"{e['engine_ms']:.2f}, assembly {e['assembly_ms']:.2f}; {e['people']} people) | reference "
                     f"pipeline same resolution {_f(same)} ms = {_f(same / e['total_ms'] if same else None, '.1f')}x, "
                     f"its defaults (0.5 x 368) {_f(default)} ms = "
                     f"{_f(default / e['total_ms'] if default else None, '.1f')}x; assembled: "
                     f"{e.get('assembled', 'parse engine on the synthetic maps')}")
    for size, check in results["parse"].items():
        lines.append(f"parse alone {size} (synthetic people): {json.dumps(check)}")
    unmeasured: dict[str, list[str]] = {}  # why -> rows
    for r in results["rows"]:
        if r.get("skipped") or r.get("error"):
            why = r.get("skipped") or r["error"][:100]
            unmeasured.setdefault(why, []).append(f"{r['size']} {r['precision']}:{r['path']}:{r['outputs']}")
    for why, items in unmeasured.items():
        lines.append(f"not measured ({why}): {', '.join(items)}")
    for note in results.get("missing", []):
        lines.append(f"no results: {note}")
    return "\n".join(lines)


def merge(parts: list[dict], missing: list[str] = ()) -> dict:
    """Lanes' result files as one (rows, torch sizes, parse checks and end-to-end runs side by side); `missing`:
    why a lane has no result file."""
    merged = dict(parts[0]) if parts else {"trt": "TensorRT (no results)", "opt_level": "-"}
    merged["torch"] = {"sizes": {k: v for p in parts for k, v in p["torch"].get("sizes", {}).items()}}
    for key in ("parse", "end_to_end"):
        merged[key] = {k: v for p in parts for k, v in p[key].items()}
    merged["rows"] = [r for p in parts for r in p["rows"]]
    merged["missing"] = list(missing)
    return merged


def why_missing(result: Path) -> str:
    """Why a lane wrote no result file, from the logs beside it (bench/gpu_openpose.sh's layout)."""
    def last_line(log: Path) -> str:
        lines = [line for line in log.read_text(errors="replace").splitlines() if line.strip()]
        return lines[-1][:200] if lines else "(empty)"

    bench_log, prepare_log = result.parent / "bench.log", result.parent / "prepare.log"
    if bench_log.exists():
        return f"{result}: its TensorRT stage wrote none; bench.log ends: {last_line(bench_log)}"
    if prepare_log.exists():
        return f"{result}: its TensorRT stage never ran; prepare.log ends: {last_line(prepare_log)}"
    return f"{result}: the lane never started"


def read_results(paths: list[str]) -> dict:
    """The lanes' result files merged; a missing one is named with the reason its logs give."""
    found = [Path(p) for p in paths if Path(p).exists()]
    return merge([json.loads(p.read_text()) for p in found],
                 [why_missing(Path(p)) for p in paths if not Path(p).exists()])


def _f(v: float | None, spec: str = ".3f") -> str:
    return "-" if v is None else format(v, spec)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("step", choices=("prepare", "bench", "table"))
    ap.add_argument("--work", default="/tmp/op")
    ap.add_argument("--sizes", default="480x640,224x224")
    ap.add_argument("--compile", default="480x640:1", help="SIZE:BATCH items timed with torch.compile (FP16)")
    ap.add_argument("--calib-samples", type=int, default=64)
    ap.add_argument("--device", default="cuda", help="prepare's torch device (cpu: a smoke run without a GPU)")
    ap.add_argument("--no-torch-timings", dest="torch_timings", action="store_false")
    ap.add_argument("--no-calibration", action="store_true")
    ap.add_argument("--reference-iters", type=int, default=10)
    ap.add_argument("--plan", default=DEFAULT_PLAN, help="PRECISION:PATH:OUTPUTS items, most important first")
    ap.add_argument("--opt-level", type=int, default=3)
    ap.add_argument("--iters", type=int, default=50)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--e2e-iters", type=int, default=30)
    ap.add_argument("--profile", action="store_true",
                    help="per-layer profile of each engine: parsed at batch 1, raw at batch 8")
    ap.add_argument("--deadline-at", type=float, default=float("inf"),
                    help="start no build after this time (seconds since the epoch; the shell script's DEADLINE)")
    ap.add_argument("--out", default="openpose_gpu.json")
    args = ap.parse_args()
    if args.step == "prepare":
        return prepare(args)
    if args.step == "table":  # --out: one or more result files, comma-separated (one per lane)
        print(table(read_results(args.out.split(","))))
        return 0
    return bench(args)


if __name__ == "__main__":
    raise SystemExit(main())
