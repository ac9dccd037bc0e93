"""bench/gpu_openpose.py's host-side parts (no GPU): a lane past its deadline still writes its result file, and
the merged table names a lane without one and why (the H200 run's 224x224 lane crashed the table)."""
from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent / "bench"


def load_script():
    sys.path.insert(0, str(BENCH))
    spec = importlib.util.spec_from_file_location("gpu_openpose", BENCH / "gpu_openpose.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    return script


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
    assert "not measured: 224x224 fp16:netdef:raw (deadline); 224x224 fp16:onnx:raw (deadline)" in capsys.readouterr().out


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
