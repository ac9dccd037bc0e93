"""bench/gpu_openpose.py's host-side parts (no GPU): a lane past its deadline still writes its result file, and
the merged table names a lane without one and why (the H200 run's 224x224 lane crashed the table)."""
from __future__ import annotations

import argparse
import json
import time

from tests.bench_scripts import load_bench


def load_script():
    return load_bench("gpu_openpose")


def test_a_lane_past_its_deadline_writes_its_skipped_rows(tmp_path, capsys):
    script = load_script()
    out = tmp_path / "gpu.json"
    args = argparse.Namespace(work=str(tmp_path), sizes="224x224", plan="fp16:netdef:raw,fp16:onnx:raw",
                              opt_level=1, out=str(out), deadline_at=time.time() - 1, profile=False)
    assert script.bench(args) == 0
    result = json.loads(out.read_text())
    assert result["parse"] == {"224x224": {"skipped": "deadline"}}
    assert [(r["size"], r["path"], r["skipped"]) for r in result["rows"]] == [("224x224", "netdef", "deadline"),
                                                                              ("224x224", "onnx", "deadline")]
    assert "not measured (deadline): 224x224 fp16:netdef:raw, 224x224 fp16:onnx:raw" in capsys.readouterr().out


def test_table_names_a_lane_without_results_and_why(tmp_path):
    script = load_script()
    big, small = tmp_path / "480x640", tmp_path / "224x224"
    big.mkdir()
    small.mkdir()
    ms = {"gpu_median_ms": 3.4, "median_ms": 3.6, "rel_err": 5e-4}
    rows = [{"size": "480x640", "precision": "fp16", "path": p, "outputs": "raw", **{f"b{b}": ms for b in (1, 8)}}
            for p in ("netdef", "onnx")]
    (big / "gpu.json").write_text(json.dumps({"trt": "tensorrt 8.6.0", "opt_level": 1, "torch": {"sizes": {}},
                                              "rows": rows, "parse": {}, "end_to_end": {}}))
    (small / "prepare.log").write_text("calibrating\n  224x224: prepared in 17.5 s\n")
    text = script.table(script.read_results([str(big / "gpu.json"), str(small / "gpu.json")]))
    assert "480x640 | 1 | fp16 | 3.400 | - | 3.400 | 1.00" in text
    assert f"no results: {small / 'gpu.json'}: its TensorRT stage never ran; prepare.log ends:   224x224: prepared" in text
    (small / "bench.log").write_text("Traceback ...\nMemoryError\n")
    assert "its TensorRT stage wrote none; bench.log ends: MemoryError" in script.table(
        script.read_results([str(big / "gpu.json"), str(small / "gpu.json")]))
    assert "no results" in script.table(script.read_results([str(small / "gpu.json")]))  # no lane at all: no crash


def test_image_to_people_runs_even_when_the_parse_check_fails(tmp_path, monkeypatch):
    """The H200 run: the parse check's engine failed the sidecar check, and with it every image-to-people row."""
    import numpy as np

    script = load_script()
    import gpu

    size = "224x224"
    rng = np.random.default_rng()
    np.savez(tmp_path / f"openpose_{size}_inputs.npz", b1=rng.random((1, 3, 224, 224)), b8=rng.random((8, 3, 224, 224)))
    np.savez(tmp_path / f"openpose_{size}_refs.npz", b1_paf=rng.random((1, 38, 28, 28)))
    parse = {"peaks": rng.random((1, 18, 32, 3)), "peak_counts": rng.integers(0, 3, (1, 18)),
             "limb_scores": rng.random((1, 19, 32, 32))}
    np.savez(tmp_path / f"openpose_{size}_synthetic.npz", **parse)

    def parse_check_fails(*args):
        raise RuntimeError("EngineFileError: the sidecar does not describe this engine")

    assembled = []
    monkeypatch.setattr(script, "check_parse_on_gpu", parse_check_fails)
    monkeypatch.setattr(script, "build", lambda item, size, work, settings: item)
    monkeypatch.setattr(gpu, "evaluate_outputs", lambda plan, engine, *a, **k: {"b1": {"gpu_median_ms": 1.0}})
    monkeypatch.setattr(script, "end_to_end", lambda engine, size, synthetic, source, iters: assembled.append(
        (synthetic, source)) or {"total_ms": 9.0, "preprocess_ms": 1.0, "engine_ms": 2.0, "assembly_ms": 6.0,
                                 "people": 3, "assembled": source})
    out = tmp_path / "gpu.json"
    args = argparse.Namespace(work=str(tmp_path), sizes=size, plan="fp16:netdef:parsed,fp16:netdef:raw", opt_level=1,
                              out=str(out), deadline_at=time.time() + 600, profile=False, iters=1, warmup=0,
                              e2e_iters=1)
    assert script.bench(args) == 0
    result = json.loads(out.read_text())
    assert "sidecar" in result["parse"][size]["error"]
    assert len(assembled) == 1 and assembled[0][1] == "float64 parse of the synthetic maps"
    for key, value in parse.items():
        np.testing.assert_array_equal(assembled[0][0][key], value)
    assert result["end_to_end"][f"{size}:fp16"]["people"] == 3
    assert [r.get("end_to_end", {}).get("people") for r in result["rows"]] == [3, None]
