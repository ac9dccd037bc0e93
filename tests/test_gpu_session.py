"""bench/gpu_session.sh rehearsed on the CPU (`dry-run`: fake interpreters, H200 durations / 200, so the 23-minute
session below takes 7 s): the queue in order of value over two GPUs, a failed preparation, a failed row, an item
stopped at the session's end, deadline skips, the status lines, the tables with missing result files, the pack."""
from __future__ import annotations

import json
import os
import subprocess
import tarfile

import pytest

from tests.bench_scripts import BENCH, load_bench

ROOT = BENCH.parent


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    work, out = tmp_path_factory.mktemp("gs"), tmp_path_factory.mktemp("out")
    env = dict(os.environ, DRY_W=str(work), DRY_OUT=str(out), TIME_DIV_DRY="200", SESSION_S="1400", GPUS="2",
               ITEMS="yolo_prepare pose_files yolo_implicit yolo_netdef pose_torch openpose_224x224 serve",
               FAKE_FAIL="gpu_pose_prepare.py:files gpu.py:yolov4:int8:netdef",
               FAKE_S="gpu.py:yolov4:int8:implicit=100000",  # outlasts the session: stopped at its end
               NEED="serve=100000 yolo_implicit=820")  # serve never fits: skipped for the deadline
    done = subprocess.run(["bash", "bench/gpu_session.sh", "dry-run"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return work, out, done.stdout


def _line(stdout: str, item: str) -> str:
    found = [line for line in stdout.splitlines() if line.split()[1:2] == [item]]
    assert found, f"no status line for {item}:\n{stdout}"
    return found[-1]


def test_every_item_ends_with_its_state_and_reason(session):
    work, _, stdout = session
    assert "all done" in stdout
    assert _line(stdout, "yolo_prepare").split()[3] == "done"
    files = _line(stdout, "pose_files")
    assert "failed" in files and "exit 1; RuntimeError: fake failure of gpu_pose_prepare.py:files" in files
    assert "skipped (needs pose_files, which failed)" in _line(stdout, "pose_torch")
    implicit = _line(stdout, "yolo_implicit")
    assert "stopped" in implicit and "(the session's end; " in implicit
    assert "y: yolov4 implicit int8 (level 3))" in implicit
    assert "int8/y/trt_yolo_implicit.json: none" in implicit
    assert "int8/y/trt_yolo_netdef.json: 1 ok, 1 error" in _line(stdout, "yolo_netdef")
    openpose = _line(stdout, "openpose_224x224")
    assert " done " in openpose and "openpose/224x224/gpu.json: 10 ok" in openpose  # 7 rows, parse, 2 image->people
    assert "skipped (deadline: needs ~500 s" in _line(stdout, "serve")
    states = {json.loads(p.read_text())["item"]: json.loads(p.read_text())["state"]
              for p in (work / "status").glob("*.json")}
    assert states == {"yolo_prepare": "done", "pose_files": "failed", "yolo_implicit": "stopped",
                      "yolo_netdef": "done", "pose_torch": "skipped", "openpose_224x224": "done", "serve": "skipped"}


def test_items_run_in_order_of_value_on_both_gpus(session):
    work, _, _ = session
    where = {json.loads(p.read_text())["item"]: json.loads(p.read_text())["where"]
             for p in (work / "status").glob("*.json")}
    assert {where["yolo_prepare"], where["pose_files"]} == {"gpu0", "gpu1"}  # the first two items side by side
    assert {where["yolo_implicit"], where["yolo_netdef"]} == {"gpu0", "gpu1"}  # both waited for yolo_prepare
    progress = (work / "progress.log").read_text()
    assert progress.index("yolo_netdef (needs") < progress.index("openpose_224x224 (needs")


def test_tables_name_what_is_missing_and_why(session):
    work, _, stdout = session
    int8 = (work / "int8" / "int8_table.txt").read_text()
    assert "netdef_int8 FAILED: ValueError: fake failure" in int8
    assert f"no results in {work}/int8/y/trt_yolo_implicit.json" in int8
    assert f"no results in {work}/int8/r/trt_r50.json" in int8
    assert f"no results in {work}/pose/torch_pose.json" in (work / "pose" / "table.md").read_text()
    openpose = (work / "openpose" / "table.txt").read_text()
    assert "image->people 224x224:fp16" in openpose
    assert f"no results: {work}/openpose/480x640/gpu.json: the lane never started" in openpose
    assert "--- int8/int8_table.txt" in stdout and "--- openpose/table.txt" in stdout


def test_results_are_packed(session):
    _, out, _ = session
    with tarfile.open(out / "results.tgz") as tar:
        names = set(tar.getnames())
    assert {"./progress.log", "./int8/int8_table.txt", "./pose/table.md", "./openpose/table.txt",
            "./logs/yolo_implicit.log", "./int8/y/trt_yolo_netdef.json", "./status/03-yolo_implicit.json"} <= names
    assert not any(n.startswith("./src/") for n in names)


def test_status_lines_of_a_running_and_a_waiting_item(tmp_path):
    status = load_bench("session_status")
    (tmp_path / "status").mkdir()
    (tmp_path / "logs").mkdir()
    (tmp_path / "pose").mkdir()
    (tmp_path / "pose" / "trt_512_fp16.json").write_text(json.dumps({"rows": [
        {"b1": {}}, {"error": "BuildError"}, {"skipped": "deadline"}, {"b1": {}, "analysis_errors": {"layers": "x"}}]}))
    (tmp_path / "logs" / "pose512_fp16.log").write_text("12:00:00 HigherHRNet 512: log trt_512_fp16.log\n\n")
    (tmp_path / "status" / "07-pose512_fp16.json").write_text(json.dumps({
        "item": "pose512_fp16", "position": 7, "state": "running", "where": "gpu0", "why": "", "since": 1000,
        "builds_until": 1200, "results": ["pose/trt_512_fp16.json"], "logs": ["logs/pose512_fp16.log"]}))
    (tmp_path / "status" / "08-pose256_fp16.json").write_text(json.dumps({
        "item": "pose256_fp16", "position": 8, "state": "waiting", "where": "gpu1", "why": "for pose_files",
        "results": ["pose/trt_256_fp16.json"]}))
    (tmp_path / "status" / "09-pose512_more.json").write_text("{")  # being written this instant
    lines = status.report(tmp_path, now=1100).splitlines()
    assert lines[0].split()[:6] == ["7", "pose512_fp16", "gpu0", "running", "100", "s"]
    assert "(builds start for 100 s more)" in lines[0]
    assert "pose/trt_512_fp16.json: 2 ok, 1 error, 1 skipped, 1 with analysis errors" in lines[0]
    assert lines[0].endswith("| log: 12:00:00 HigherHRNet 512: log trt_512_fp16.log")
    assert "waiting (for pose_files)" in lines[1] and "pose/trt_256_fp16.json: none" in lines[1]
    assert "?" in lines[2] and lines[3] == "items: 1 running, 1 waiting, 1 ?"


def test_serving_keeps_its_reserve_from_an_item_that_would_outlast_the_session(tmp_path):
    """Serving runs after the workers: an item that would run to the session's end is stopped serving's NEED
    earlier, so serving still runs (without the reserve it is skipped for the deadline)."""
    work, out = tmp_path / "gs", tmp_path / "out"
    env = dict(os.environ, DRY_W=str(work), DRY_OUT=str(out), TIME_DIV_DRY="200", SESSION_S="3000", GPUS="1",
               ITEMS="yolo_prepare yolo_implicit serve", FAKE_S="gpu.py:yolov4:int8:implicit=100000",
               SERVE_MODELS="resnet50:uint8",  # one serving run (1.5 s) in serving's 5 s
               NEED="serve=1000 yolo_implicit=1300")  # 5 s and 6.5 s of the 15 s session once divided
    done = subprocess.run(["bash", "bench/gpu_session.sh", "dry-run"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "stopped" in _line(done.stdout, "yolo_implicit")
    assert " done " in _line(done.stdout, "serve"), done.stdout


def test_the_parse_alone_and_per_size_pose_plans(tmp_path):
    """pose_parse times the parse's forms at each size; POSE_FP16_256 replaces POSE_FP16 at 256 alone."""
    work, out = tmp_path / "gs", tmp_path / "out"
    env = dict(os.environ, DRY_W=str(work), DRY_OUT=str(out), TIME_DIV_DRY="200", SESSION_S="3000", GPUS="2",
               ITEMS="pose_files pose_parse pose512_fp16 pose256_fp16", PARSE_FORMS="default,tile=4",
               POSE_FP16="fp16:netdef:raw,fp16:netdef:parsed", POSE_FP16_256="fp16:netdef:parsed")
    done = subprocess.run(["bash", "bench/gpu_session.sh", "dry-run"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    rows = json.loads((work / "pose" / "parse.json").read_text())["rows"]
    assert [(r["size"], r["form"]) for r in rows] == [(512, "default"), (512, "tile=4"), (256, "default"),
                                                       (256, "tile=4")]
    assert "pose/parse.json: 4 ok" in _line(done.stdout, "pose_parse")
    assert [r["outputs"] for r in json.loads((work / "pose" / "trt_512_fp16.json").read_text())["rows"]] == [
        "raw", "parsed"]
    assert [r["outputs"] for r in json.loads((work / "pose" / "trt_256_fp16.json").read_text())["rows"]] == ["parsed"]


def test_one_yolov4_engine_per_builder_level(tmp_path):
    """yolo_<kind>_<level>: one netdef engine (fp16, int8, int8head: head convs INT8, int8stem: the stem alone
    quantized at its raw output) at one builder level, each in its own result file, after yolo_prepare;
    int8_kernels: the cases of K_CASES in four forms."""
    work, out = tmp_path / "gs", tmp_path / "out"
    env = dict(os.environ, DRY_W=str(work), DRY_OUT=str(out), TIME_DIV_DRY="200", SESSION_S="3000", GPUS="2",
               ITEMS="yolo_prepare yolo_fp16_5 yolo_int8stem_3 yolo_int8head_5 int8_kernels",
               K_CASES="leaky-1x1-512-256-26")
    done = subprocess.run(["bash", "bench/gpu_session.sh", "dry-run"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr

    def rows(name: str) -> list[dict]:
        return json.loads((work / "int8" / "y" / f"trt_yolo_{name}.json").read_text())["rows"]

    fp16, stem, head = rows("fp16_level5"), rows("int8stem_level3"), rows("int8head_level5")
    assert [(r["precision"], r["opt_level"]) for r in fp16 + stem + head] == [("fp16", 5), ("int8", 3), ("int8", 5)]
    assert stem[0]["preact_q"] == "stem" and head[0]["head_q"] == "int8" and "preact_q" not in head[0]
    assert "int8/y/trt_yolo_int8stem_level3.json: 1 ok" in _line(done.stdout, "yolo_int8stem_3")
    kernels = json.loads((work / "int8" / "kernels.json").read_text())["rows"]  # int8_kernels: K_CASES, 4 forms
    assert [(r["case"], r["form"]) for r in kernels] == [("leaky-1x1-512-256-26", f) for f in
                                                         ("fp16", "int8", "preact", "implicit")]
    assert "int8/kernels.json: 4 ok" in _line(done.stdout, "int8_kernels")


def test_serving_rows_under_mps(tmp_path):
    """SERVE_MODELS entries MODEL:INPUT_DTYPE[:mps]: each its own serve.py run and result file, ":mps" adds --mps."""
    work, out = tmp_path / "gs", tmp_path / "out"
    env = dict(os.environ, DRY_W=str(work), DRY_OUT=str(out), TIME_DIV_DRY="200", SESSION_S="3000", GPUS="2",
               ITEMS="serve", SERVE_MODELS="resnet50:uint8 resnet50:uint8:mps")
    done = subprocess.run(["bash", "bench/gpu_session.sh", "dry-run"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    plain, mps = (json.loads((work / f"serve-{n}.json").read_text())["settings"]
                  for n in ("resnet50-uint8", "resnet50-uint8-mps"))
    assert plain == {"models": "resnet50", "input_dtype": "uint8", "mps": False} and mps == {**plain, "mps": True}
    assert " done " in _line(done.stdout, "serve"), done.stdout
