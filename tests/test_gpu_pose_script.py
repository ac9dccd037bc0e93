"""bench/gpu_pose.py's host-side parts (no GPU): the parsed-output check and the merged table."""
from __future__ import annotations

import json
import sys

import numpy as np

from tests.bench_scripts import load_bench


def load_script():
    return load_bench("gpu_pose")


def distinct_cells(rng: np.random.Generator, shape: tuple[int, int, int], side: int = 125) -> np.ndarray:
    """(..., k, 2) grid cells, the k of each joint all different (peaks are local maxima: never two in a cell)."""
    cells = np.stack([rng.permutation(side * side)[:shape[-1]] for _ in range(shape[0] * shape[1])])
    return np.stack([cells // side, cells % side], axis=-1).reshape(*shape, 2)


def test_parsed_check_counts_shared_positions_and_sorted_scores():
    script = load_script()
    rng = np.random.default_rng(0)
    refs = {"b2_scores": np.sort(rng.random((2, 17, 30)))[..., ::-1],
            "b2_keypoints": distinct_cells(rng, (2, 17, 30)) * 4 + 0.75, "b2_tags": rng.standard_normal((2, 17, 30))}
    same = {n: refs[f"b2_{n}"] for n in ("scores", "keypoints", "tags")}
    check = script.parsed_check(same, refs, 2)
    assert check["positions_shared"] == 1.0 and check["scores_rel_err"] == 0 and check["tags_rel_err"] == 0
    moved = dict(same, keypoints=same["keypoints"] + np.where(np.arange(30) < 15, 0, 3)[None, None, :, None])
    assert script.parsed_check(moved, refs, 2)["positions_shared"] == 0.5
    # the same peaks refined the other way (a quarter pixel each side): still the same positions, same tags
    flipped = dict(same, keypoints=same["keypoints"] + np.where(np.arange(30) % 2, 0.5, 0)[None, None, :, None])
    check = script.parsed_check(flipped, refs, 2)
    assert check["positions_shared"] == 1.0 and check["tags_rel_err"] == 0


def test_table_relates_netdef_onnx_parsed_and_pytorch(tmp_path):
    script = load_script()
    timing = {"median_ms": 2.0, "gpu_median_ms": 1.8, "rel_err": 1e-3, "cosine": 0.99999}
    rows = [{"size": 512, "precision": "fp16", "path": p, "outputs": o, "opt_level": 3,
             **{f"b{b}": dict(timing, median_ms=m * b) for b in (1, 8)}}
            for p, o, m in (("netdef", "raw", 2.0), ("onnx", "raw", 2.2), ("netdef", "parsed", 2.1))]
    rows[2]["b1"].update(scores_rel_err=1e-3, positions_shared=0.9, tags_rel_err=1e-3)
    rows.append({"size": 512, "precision": "int8", "path": "netdef", "outputs": "raw", "opt_level": 1,
                 "error": "BuildError: no"})
    (tmp_path / "trt.json").write_text(json.dumps({"rows": rows}))
    (tmp_path / "torch.json").write_text(json.dumps({"torch_timings": {"eager_fp16_512_b1": {"median_ms": 20.0}}}))
    text = script.table([str(tmp_path / "torch.json"), str(tmp_path / "trt.json")])
    first = text.splitlines()[2]
    assert first.startswith("| 512 | fp16 | 3 | 1 | 2.000 (1.800) | 2.200 (1.800) | 0.91 (1.00) | 2.100 | 1.05 | "
                            "20.00 | 10.00x")
    assert "positions 0.900" in first and "BuildError: no" in text


def test_table_names_result_files_that_were_never_written(tmp_path):
    script = load_script()
    (tmp_path / "trt_512.json").write_text(json.dumps({"rows": [{"size": 512, "precision": "fp16", "path": "netdef",
                                                                  "outputs": "raw", "opt_level": 1,
                                                                  "skipped": "deadline"}]}))
    text = script.table([str(tmp_path / "torch_pose.json"), str(tmp_path / "trt_512.json")])
    assert "| 512 | fp16 | 1 | 1 | - (-)" in text and "deadline" in text
    assert f"no results in {tmp_path / 'torch_pose.json'}" in text


def test_default_plan_is_one_level_size_by_size_and_a_past_deadline_writes_skipped_rows(tmp_path, monkeypatch):
    """The H200 run built FP16 at 512 on level 3 (377 s) and the deadline skipped every other row: one level now
    (the items carry none), each size's items together, most important first; skipped rows still written."""
    script = load_script()
    plan = script.default_plan([512, 256], ["fp16:netdef:raw", "fp16:onnx:raw"])
    assert plan == "512:fp16:netdef:raw,512:fp16:onnx:raw,256:fp16:netdef:raw,256:fp16:onnx:raw"
    assert all(item.count(":") == 2 for item in script.DEFAULT_ITEMS) and script.DEFAULT_ITEMS[0] == "fp16:netdef:raw"
    out = tmp_path / "trt_512_fp16.json"
    monkeypatch.setattr(sys, "argv", ["gpu_pose.py", "--work", str(tmp_path), "--sizes", "512", "--items",
                                      "fp16:netdef:raw,fp16:onnx:raw", "--deadline-at", "1", "--out", str(out)])
    assert script.main() == 0
    rows = json.loads(out.read_text())["rows"]
    assert [(r["size"], r["path"], r["opt_level"], r["skipped"]) for r in rows] == [
        (512, "netdef", 1, "deadline"), (512, "onnx", 1, "deadline")]


def test_items_take_a_level_and_define_options_that_name_the_row(tmp_path, monkeypatch):
    """"int8:netdef:raw:3:upsample_q=conv": level 3 and HigherHRNet.define(upsample_q="conv"); the row records the
    options (skipped rows too) and the table shows it apart from the plain INT8 row, on the same level."""
    script = load_script()
    out = tmp_path / "trt.json"
    monkeypatch.setattr(sys, "argv", ["gpu_pose.py", "--work", str(tmp_path), "--sizes", "512", "--items",
                                      "int8:netdef:raw:3,int8:netdef:raw:3:upsample_q=conv,int8:netdef:raw::x=1",
                                      "--deadline-at", "1", "--out", str(out)])
    assert script.main() == 0
    rows = json.loads(out.read_text())["rows"]
    assert [(r["opt_level"], r.get("define_options")) for r in rows] == [
        (3, None), (3, {"upsample_q": "conv"}), (1, {"x": "1"})]
    timing = {"median_ms": 2.0, "gpu_median_ms": 1.8, "rel_err": 1e-3, "cosine": 0.999}
    for r, m in zip(rows, (2.0, 1.5, 1.0)):
        r.pop("skipped")
        r.update({f"b{b}": dict(timing, median_ms=m) for b in (1, 8)})
    out.write_text(json.dumps({"rows": rows}))
    text = script.table([str(tmp_path / "torch_pose.json"), str(out)])
    assert "| 512 | int8 | 3 | 1 | 2.000" in text and "| 512 | int8 upsample_q=conv | 3 | 1 | 1.500" in text
    assert "| 512 | int8 x=1 | 1 | 8 | 1.000" in text
