"""Stands in for both interpreters of bench/gpu_session.sh (python3 with torch, /tmp/gpu-trt/python with TensorRT
8.6) in `bash bench/gpu_session.sh dry-run` and tests/test_gpu_session.py: called as `gpu_session_fake.py
bench/SCRIPT.py ARGS...`, it reads the arguments the session passes to each benchmark script, sleeps each step's
H200 duration divided by FAKE_TIME_DIV, honours --deadline-at like the real scripts, and writes their result files
in their formats (made-up numbers, every row marked "fake"), rewritten after each row. The queue, the deadlines,
the stop at the end, the status lines, the tables and the packing all run for real.

FAKE_FAIL: words naming what fails, e.g. `gpu.py:yolov4:int8:implicit` (that row gets an error, as the H200 run's
did) or `gpu_pose_prepare.py:files` (the script exits 1 with a traceback).
FAKE_S: `KEY=SECONDS` words overriding durations (H200 seconds, KEY as in DURATIONS).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.gpu_pose import plan_row  # noqa: E402
from netdef.atomic import write_text_atomic  # noqa: E402

# H200 seconds (2026-11-30 run where measured; HigherHRNet at level 1 estimated)
DURATIONS = {
    "gpu_prepare.py:yolov4": 50, "gpu_prepare.py:resnet50": 30,
    "gpu.py:yolov4:fp16:netdef": 270, "gpu.py:yolov4:int8:netdef": 150, "gpu.py:yolov4:fp16:onnx": 260,
    "gpu.py:yolov4:int8:implicit": 790, "gpu.py:resnet50:fp16:netdef": 110, "gpu.py:resnet50:int8:netdef": 50,
    "gpu.py:resnet50:int8:implicit": 235,
    "gpu_pose_prepare.py:files": 45, "gpu_pose_prepare.py:torch": 125,
    "gpu_pose.py:512:fp16": 150, "gpu_pose.py:512:int8": 100, "gpu_pose.py:512:fp32": 80,
    "gpu_pose.py:256:fp16": 100, "gpu_pose.py:256:int8": 70, "gpu_pose.py:256:fp32": 60,
    "gpu_openpose.py:prepare:224x224": 18, "gpu_openpose.py:prepare:480x640": 56,
    "gpu_openpose.py:bench:224x224": 20, "gpu_openpose.py:bench:480x640": 37, "serve.py": 300, "gpu_parse.py": 65,
    "int8_kernels.py": 20,  # per case and form (estimated)
}


def seconds(key: str) -> float:
    table = dict(DURATIONS)
    for word in os.environ.get("FAKE_S", "").split():
        k, v = word.split("=")
        table[k] = float(v)
    return table.get(key, 10) / float(os.environ.get("FAKE_TIME_DIV", "1"))


def fails(key: str) -> bool:
    return key in os.environ.get("FAKE_FAIL", "").split()


def step(key: str) -> None:
    """Sleep one step; a failing script step raises (exit 1 with a traceback, as a real crash)."""
    time.sleep(seconds(key))
    if fails(key):
        raise RuntimeError(f"fake failure of {key}")


def write(path: Path, data: dict) -> None:
    write_text_atomic(path, json.dumps(data, indent=1))  # as bench/gpu.py's write_results


def timing(ms: float, **extra) -> dict:
    return {"median_ms": ms * 1.05, "p90_ms": ms * 1.1, "gpu_median_ms": ms, "gpu_p90_ms": ms * 1.02, **extra}


def rows_with_deadline(items: list[str], deadline: float, key, make, out: Path, results: dict) -> None:
    """The real scripts' loop: a row not started by the deadline is written as skipped; the file after each row."""
    for item in items:
        if time.time() > deadline:
            results["rows"].append({**make(item, None), "skipped": "deadline"})
        else:
            t0 = time.time()
            time.sleep(seconds(key(item)))
            row = make(item, t0)
            if fails(key(item)) or fails(f"{key(item).split(':')[0]}:{item}"):
                row = {k: v for k, v in row.items() if not k.startswith("b")}
                row["error"] = "ValueError: fake failure (as the H200 run's max() arg is an empty sequence)"
            results["rows"].append(row)
        print(json.dumps(results["rows"][-1]), flush=True)
        write(out, results)


def gpu(args: list[str]) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--work"), ap.add_argument("--out"), ap.add_argument("--plan")
    ap.add_argument("--opt-level", type=int, default=3), ap.add_argument("--deadline-at", type=float, default=1e12)
    ap.add_argument("--yolo-preact-q"), ap.add_argument("--yolo-head-q")  # recorded as bench/gpu.py's rows do
    a, _ = ap.parse_known_args(args)
    placement = {k: v for k, v in (("preact_q", a.yolo_preact_q), ("head_q", a.yolo_head_q)) if v}

    def make(item: str, t0: float | None) -> dict:
        model, precision, path = item.split(":")
        row = {"model": model, "precision": precision, "path": path, "opt_level": a.opt_level, "fake": True,
               **(placement if precision == "int8" else {})}
        if t0 is None:
            return row
        ms = {"fp16": 8.4, "int8": 6.5, "fp32": 15.0}[precision] / (7 if model == "resnet50" else 1)
        outputs = {f"head{i}": {"rel_err": 1e-3, "cosine": 0.9995} for i in range(3)} if model == "yolov4" \
            else {"logits": {"rel_err": 2e-3, "cosine": 0.9999}}
        row.update(build_s=round(time.time() - t0, 1), b1=timing(ms / 5), b32=timing(ms, outputs=outputs))
        return row

    results = {"date": "fake", "trt": "fake 8.6.0", "opt_level": a.opt_level, "rows": []}
    rows_with_deadline(a.plan.split(","), a.deadline_at, lambda item: f"gpu.py:{item}", make, Path(a.out), results)


def gpu_pose(args: list[str]) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--work"), ap.add_argument("--out"), ap.add_argument("--sizes"), ap.add_argument("--items")
    ap.add_argument("--opt-level", type=int, default=1), ap.add_argument("--deadline-at", type=float, default=1e12)
    a, _ = ap.parse_known_args(args)
    items = [f"{size}:{item}" for size in a.sizes.split(",") for item in a.items.split(",")]

    def make(item: str, t0: float | None) -> dict:
        row = {**plan_row(item, a.opt_level), "fake": True}
        outputs = row["outputs"]
        if t0 is not None:
            check = {"rel_err": 2e-3, "cosine": 0.99999} if outputs == "raw" else \
                {"scores_rel_err": 2e-3, "positions_shared": 0.99, "tags_rel_err": 1e-3}
            row.update({f"b{b}": timing(3.1 * b ** 0.5, **check) for b in (1, 8)}, build_s=round(time.time() - t0, 1))
        return row

    results = {"date": "fake", "trt": "fake 8.6.0", "model": "higherhrnet-w32", "rows": []}
    rows_with_deadline(items, a.deadline_at, lambda item: "gpu_pose.py:" + ":".join(item.split(":")[:2]), make,
                       Path(a.out), results)


def gpu_openpose(args: list[str]) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("step"), ap.add_argument("--work"), ap.add_argument("--out"), ap.add_argument("--sizes")
    ap.add_argument("--plan", default="fp16:netdef:parsed,fp16:netdef:raw,fp16:onnx:raw,int8:netdef:raw,"
                                       "int8:netdef:parsed,fp32:netdef:raw,fp32:onnx:raw")
    ap.add_argument("--opt-level", type=int, default=1), ap.add_argument("--deadline-at", type=float, default=1e12)
    a, _ = ap.parse_known_args(args)
    work, size = Path(a.work), a.sizes
    if a.step == "prepare":
        step(f"gpu_openpose.py:prepare:{size}")
        write(work / "openpose_torch.json", {"sizes": {size: {
            "torch": {f"eager_fp16_b{b}": {"median_ms": 20.0 * b} for b in (1, 8)},
            "reference_same_resolution_ms": 400.0, "reference_defaults_ms": 380.0}}})
        (work / f"openpose_{size}_inputs.npz").touch()
        return
    prepared = (work / f"openpose_{size}_inputs.npz").exists()
    results = {"date": "fake", "trt": "fake 8.6.0", "opt_level": a.opt_level, "rows": [], "parse": {},
               "end_to_end": {},
               "torch": json.loads((work / "openpose_torch.json").read_text()) if prepared else {"sizes": {}}}
    if not prepared or time.time() > a.deadline_at:
        results["parse"][size] = {"error": "not prepared"} if not prepared else {"skipped": "deadline"}
    else:
        results["parse"][size] = {"peaks_found": 1.0, "people": 3, "reference_people": 3}

    def make(item: str, t0: float | None) -> dict:
        precision, path, outputs = item.split(":")
        row = {"size": size, "precision": precision, "path": path, "outputs": outputs, "fake": True}
        if t0 is None:
            return row
        if not prepared:
            return {**row, "error": "not prepared (fake)"}
        row.update({f"b{b}": timing(1.2 * b, rel_err=5e-4, peaks_found=1.0) for b in (1, 8)})
        if outputs == "parsed":
            e2e = {"total_ms": 9.0, "preprocess_ms": 1.0, "engine_ms": 3.0, "assembly_ms": 5.0, "people": 3,
                   "assembled": "parse engine on the synthetic maps"}
            results["end_to_end"][f"{size}:{precision}"] = row["end_to_end"] = e2e
        return row

    rows_with_deadline(a.plan.split(","), a.deadline_at, lambda item: f"gpu_openpose.py:bench:{size}", make,
                       Path(a.out), results)


def main() -> int:
    script, args = Path(sys.argv[1]).name, sys.argv[2:]
    opts = {a.split("=")[0]: v for a, v in zip(args, args[1:] + [""]) if a.startswith("--")}
    work = Path(opts.get("--work", "."))
    work.mkdir(parents=True, exist_ok=True)
    if script == "gpu_prepare.py":
        step(f"gpu_prepare.py:{opts['--models']}")
        write(work / "torch_report.json", {"fake": True, "models": opts["--models"]})
    elif script == "gpu.py":
        gpu(args)
    elif script == "gpu_pose_prepare.py":
        stage = opts["--stage"]
        step(f"gpu_pose_prepare.py:{stage}")
        if stage == "files":
            write(work / "files.json", {"fake": True})
        else:
            write(work / "torch_pose.json", {"fake": True, "torch_timings": {
                f"eager_fp16_{s}_b{b}": {"median_ms": 30.0 + b} for s in (256, 512) for b in (1, 8)}})
    elif script == "gpu_pose.py":
        gpu_pose(args)
    elif script == "gpu_parse.py":
        step("gpu_parse.py")
        write(Path(opts["--out"]), {"date": "fake", "trt": "fake 8.6.0", "rows": [
            {"size": int(s), "form": form, "fake": True, "b8": timing(0.5, scores_rel_err=1e-3)}
            for s in opts["--sizes"].split(",") for form in opts["--forms"].split(",")]})
    elif script == "gpu_openpose.py":
        gpu_openpose(args)
    elif script == "int8_kernels.py":  # one row per case and form, the script's own lists by default
        from bench.int8_kernels import CASES, FORMS

        cases = opts.get("--cases") or ",".join(CASES)
        results = {"date": "fake", "trt": "fake 8.6.0", "level": int(opts.get("--level") or 3), "rows": []}
        rows_with_deadline([f"{c}:{f}" for c in cases.split(",") for f in FORMS],
                           float(opts.get("--deadline-at") or 1e12), lambda item: "int8_kernels.py",
                           lambda item, t0: {"case": item.split(":")[0], "form": item.split(":")[1], "fake": True,
                                             **({} if t0 is None else {"conv_kernel": "sm80_fake", "conv_ms": 0.1,
                                                                       "block_ms": 0.1, "block_layers": 1})},
                           Path(opts["--out"]), results)
    elif script == "serve.py":  # like the real one, starts nothing after --deadline (seconds from its start)
        time.sleep(min(seconds("serve.py"), float(opts.get("--deadline") or 1e12)))
        if fails("serve.py"):
            raise RuntimeError("fake failure of serve.py")
        settings = {"models": opts["--models"], "input_dtype": opts["--input-dtype"], "mps": "--mps" in args}
        write(Path(opts["--out"]), {"fake": True, "settings": settings,
                                    "rows": [{"model": "resnet50", "clients": 64, "items_per_s": 1.0}]})
    else:
        raise SystemExit(f"gpu_session_fake.py: no stand-in for {script}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
