"""bench/serve.py's host-side parts (no server, no GPU): the no-op model that stands in for any engine, the
engine's share of an execution, and the verdicts that say whether serving or the engine limits throughput."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from bench.serve import engine_ms, verdicts
from bench.serve_overhead import NoopSession
from netdef.serve.batching import BatchedInfer
from netdef.serve.instance import open_checked_session
from netdef.serve.signature import ModelSignature, TensorSignature


def _yolo_like() -> ModelSignature:
    f32, i32 = np.dtype(np.float32), np.dtype(np.int32)
    return ModelSignature("y", (TensorSignature("input", f32, (3, 16, 16)),),
                          (TensorSignature("num_detections", i32, (1,)), TensorSignature("det_boxes", f32, (100, 4))),
                          batch_limit=8, opt_batch=4)


def test_noop_model_takes_the_engines_io_and_answers_each_request_with_its_items():
    sig = _yolo_like()
    setup = {"factory": "bench.serve_overhead:NoopSession", "options": {"signature": sig.as_dict()},
             "devices": {"y_i0": None}, "signature": sig.as_dict()}
    session, served, _ = open_checked_session(setup, "y_i0")  # the instance's own signature check passes
    assert served == sig and session.meta["batch"] == [1, 4, 8]
    rng = np.random.default_rng(0)
    requests = [{"input": rng.standard_normal((n, 3, 16, 16)).astype(np.float32)} for n in (3, 1, 4)]
    responses = BatchedInfer(session, sig)(requests)
    assert [(r["num_detections"].shape, r["num_detections"].dtype, r["det_boxes"].shape) for r in responses] == \
        [((3, 1), np.int32, (3, 100, 4)), ((1, 1), np.int32, (1, 100, 4)), ((4, 1), np.int32, (4, 100, 4))]
    staged = session.staging["input"][:8]  # the requests were joined into the staging buffer, in order
    assert np.array_equal(staged, np.concatenate([r["input"] for r in requests]))
    assert NoopSession(None, payload="tiny").inputs[0].shape == (-1, 4)


def test_engine_share_and_verdicts():
    raw = {"items_per_s": 1000.0, "ms_per_batch": {1: 1.0, 8: 2.0, 32: 8.0}}
    assert [engine_ms(raw, b) for b in (1, 4.5, 20, 40)] == [1.0, 1.5, 5.0, 8.0]

    def row(items: float, noop: bool, clients: int = 64) -> dict:
        return {"model": "m", "dynamic_batching": True, "clients": clients, "noop": noop, "items_per_s": items,
                "label": "NO-OP" if noop else "2 inst", "inputs": "grpc"}

    report = {"models": {"m": {"raw": raw}}}
    lines = verdicts(report, [row(700, False), row(300, False, 16), row(750, True)], 0.8)
    assert lines[0].startswith("m: best at 64 clients") and "= 0.70x raw 1000.0" in lines[0] and "NOT met" in lines[0]
    assert "ceiling without the engine" in lines[1] and "0.75x raw" in lines[1] and "cannot carry it" in lines[1]
    lines = verdicts(report, [row(850, False), row(3000, True)], 0.8)
    assert lines[0].endswith("met") and "NOT" not in lines[0] and lines[1].endswith("= 3.00x raw")
    # instances spread over 2 GPUs answer to 2 GPUs' raw: 1500 items/s there is 0.75x, below 850 on one GPU
    spread = dict(row(1500, False), gpus_used=2, label="4 inst on 2 GPUs")
    lines = verdicts(report, [row(850, False), spread], 0.8)
    assert "(2 inst, grpc inputs) = 0.85x raw 1000.0; target >= 0.80: met" in lines[0]
    lines = verdicts(report, [row(700, False), spread], 0.8)
    assert "(4 inst on 2 GPUs, grpc inputs) = 0.75x raw 2000.0 (2 GPUs); target >= 0.80: NOT met" in lines[0]
    # an engine tuned for batch 8 (--opt-batch) runs batch 32 slower: its raw is not the one the target means
    report["models"]["m"].update(opt_batch=8, raw_batch=32)
    lines = verdicts(report, [row(850, False)], 0.8)
    assert lines[0].endswith("0.85x raw 1000.0; target >= 0.80: not judged: the engine is tuned for batch 8, the "
                             "target compares with one tuned for the raw batch 32")


def test_phase_summary_counts_only_the_lines_of_the_window(tmp_path):
    import json

    from netdef.serve.phases import phase_offsets, phase_summary

    def line(requests, seconds):
        row = {"requests": requests, "bytes": requests * 500_000, "faults_inside": 2 * requests, "faults_outside": 0}
        for phase in ("inputs", "join", "infer", "responses"):
            row.update({phase: seconds, f"{phase}_cpu": seconds / 2})
        return json.dumps(row) + "\n"

    prefix = str(tmp_path / "phases")
    (tmp_path / "phases.11").write_text(line(1, 9.0))  # before the window
    start = phase_offsets(prefix)
    with open(tmp_path / "phases.11", "a") as f:
        f.write(line(4, 0.002))
    (tmp_path / "phases.12").write_text(line(2, 0.004))  # an instance that began inside the window
    p = phase_summary(start, phase_offsets(prefix))
    assert (p["batches"], p["requests_per_batch"], p["faults_per_request"]) == (2, 3.0, {"inside": 2.0, "outside": 0.0})
    assert np.isclose(p["join"]["ms_per_batch"], 3.0) and np.isclose(p["join_cpu"]["ms_per_batch"], 1.5)
    assert np.isclose(p["infer"]["ms_per_mb"], 6.0 / 3.0)  # 6 ms over 3 MB
    assert phase_summary(start, start) == {}


def test_engines_are_tuned_for_the_opt_batch_and_keep_the_max(tmp_path):
    """--opt-batch: the profile's opt batch (TensorRT's kernels are chosen for it), the max stays --raw-batch; the
    engine file is named for it, so the default engine is not reused in its place."""
    from bench.serve import build_engine, parse_args

    args = parse_args(["--work", str(tmp_path), "--size", "32", "--raw-batch", "8", "--opt-batch", "2"])
    built = build_engine("resnet18", args)
    meta = json.loads(Path(f"{built['engine']}.json").read_text())
    assert built["engine"].endswith("-opt2.engine") and meta["batch"] == [1, 2, 8]
    default = build_engine("resnet18", parse_args(["--work", str(tmp_path), "--size", "32", "--raw-batch", "8"]))
    assert not default["reused"] and json.loads(Path(f"{default['engine']}.json").read_text())["batch"] == [1, 8, 8]
