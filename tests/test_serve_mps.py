"""netdef.serve.mps with a stand-in `nvidia-cuda-mps-control` (no GPU here): the daemon starts with private pipe
and log folders that this process's environment carries while the block runs (the server and its stub processes
inherit it), is told to quit afterwards from a detached process that then removes the folders (the daemon
waits for its last client, which may be this process), the environment comes back; a missing or failing control
program is a clear error; `netdef serve --mps` starts it before anything opens a session."""
from __future__ import annotations

import json
import os
import stat
import time
from pathlib import Path

import pytest

from netdef.serve.environment import ServeEnvironmentError
from netdef.serve.mps import mps_daemon

CONTROL = """#!/usr/bin/env python3
import json, os, sys
stdin = "" if sys.stdin.isatty() else sys.stdin.read()
with open(os.environ["MPS_CALLS"], "a") as f:
    f.write(json.dumps({"args": sys.argv[1:], "stdin": stdin,
                        "pipe": os.environ.get("CUDA_MPS_PIPE_DIRECTORY"),
                        "log": os.environ.get("CUDA_MPS_LOG_DIRECTORY")}) + "\\n")
if stdin == "quit\\n" and os.environ.get("MPS_QUIT_WAIT"):  # the real daemon waits for its last client
    import time
    time.sleep(float(os.environ["MPS_QUIT_WAIT"]))
if os.environ.get("MPS_FAIL") in sys.argv[1:]:
    print("An instance of this daemon is already running", file=sys.stderr)
    sys.exit(1)
"""


@pytest.fixture
def control(tmp_path, monkeypatch):
    """A stand-in control program first on PATH; returns the file its calls are logged to."""
    folder = tmp_path / "bin"
    folder.mkdir()
    program = folder / "nvidia-cuda-mps-control"
    program.write_text(CONTROL)
    program.chmod(program.stat().st_mode | stat.S_IEXEC)
    calls = tmp_path / "calls.jsonl"
    monkeypatch.setenv("PATH", f"{folder}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("MPS_CALLS", str(calls))
    monkeypatch.delenv("CUDA_MPS_PIPE_DIRECTORY", raising=False)
    monkeypatch.setenv("CUDA_MPS_LOG_DIRECTORY", "/var/log/someone-elses")
    return calls


def _calls(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _quit_seen(path: Path, root: Path, timeout: float = 20.0) -> list[dict]:
    """The calls once the detached quit has run and removed the daemon's folder (it is not waited for)."""
    deadline = time.monotonic() + timeout
    while (len(_calls(path)) < 2 or root.exists()) and time.monotonic() < deadline:
        time.sleep(0.05)
    return _calls(path)


def test_daemon_runs_with_private_folders_for_the_block(control) -> None:
    with mps_daemon() as folders:
        pipe, log = folders["CUDA_MPS_PIPE_DIRECTORY"], folders["CUDA_MPS_LOG_DIRECTORY"]
        assert os.environ["CUDA_MPS_PIPE_DIRECTORY"] == pipe and os.environ["CUDA_MPS_LOG_DIRECTORY"] == log
        assert Path(pipe).is_dir() and Path(log).is_dir() and Path(pipe).parent == Path(log).parent
        started = _calls(control)
        assert started == [{"args": ["-d"], "stdin": "", "pipe": pipe, "log": log}]
    assert "CUDA_MPS_PIPE_DIRECTORY" not in os.environ  # restored: unset before
    assert os.environ["CUDA_MPS_LOG_DIRECTORY"] == "/var/log/someone-elses"  # restored: its old value
    assert _quit_seen(control, Path(pipe).parent)[1] == {"args": [], "stdin": "quit\n", "pipe": pipe, "log": log}
    assert not Path(pipe).parent.exists()


def test_leaving_the_block_does_not_wait_for_the_daemon_to_end(control, monkeypatch) -> None:
    """The daemon ends after its last client, which this process stays while its CUDA context lives: the quit runs
    detached, and the folders go once it has returned."""
    monkeypatch.setenv("MPS_QUIT_WAIT", "3")
    with mps_daemon() as folders:
        root = Path(folders["CUDA_MPS_PIPE_DIRECTORY"]).parent
        t0 = time.monotonic()
    assert time.monotonic() - t0 < 2 and root.exists()  # not waited for: the quit still runs
    assert [c["stdin"] for c in _quit_seen(control, root)] == ["", "quit\n"] and not root.exists()


def test_the_daemon_quits_when_the_block_fails(control) -> None:
    with pytest.raises(RuntimeError, match="model did not load"):
        with mps_daemon() as folders:
            raise RuntimeError("model did not load")
    root = Path(folders["CUDA_MPS_PIPE_DIRECTORY"]).parent
    assert [c["stdin"] for c in _quit_seen(control, root)] == ["", "quit\n"] and not root.exists()
    assert "CUDA_MPS_PIPE_DIRECTORY" not in os.environ


def test_missing_or_failing_control_program_is_a_clear_error(control, monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("MPS_FAIL", "-d")
    with pytest.raises(ServeEnvironmentError, match="-d failed with exit 1: An instance of this daemon"):
        with mps_daemon():
            pytest.fail("the block must not run without the daemon")
    assert "CUDA_MPS_PIPE_DIRECTORY" not in os.environ and len(_calls(control)) == 1
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(ServeEnvironmentError, match="nvidia-cuda-mps-control is not on PATH"):
        with mps_daemon():
            pass


def test_netdef_serve_mps_starts_the_daemon_before_any_session(control, monkeypatch, capsys, tmp_path) -> None:
    from netdef.cli import main
    import netdef.commands.serve as serve

    seen = []
    monkeypatch.setattr(serve, "_serve", lambda args: seen.append(os.environ.get("CUDA_MPS_PIPE_DIRECTORY")) or 0)
    assert main(["serve", "model.engine", "--mps"]) == 0
    assert seen[0] and seen[0] == _calls(control)[0]["pipe"]  # the daemon ran while serving
    assert [c["stdin"] for c in _quit_seen(control, Path(seen[0]).parent)] == ["", "quit\n"]
    assert main(["serve", "model.engine"]) == 0 and seen[1] is None and len(_calls(control)) == 2  # no --mps: none
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert main(["serve", "model.engine", "--mps"]) == 1 and len(seen) == 2  # nothing served without the daemon
    assert "netdef serve: error: --mps: nvidia-cuda-mps-control is not on PATH" in capsys.readouterr().err


def test_the_serving_bench_runs_every_row_under_the_daemon(control, monkeypatch) -> None:
    """bench/serve.py --mps: the daemon runs before the bench's first CUDA call and quits after its last row."""
    import bench.serve as bench

    seen = []
    monkeypatch.setattr(bench, "run", lambda args: seen.append((args.mps, os.environ.get("CUDA_MPS_PIPE_DIRECTORY")))
                        or 0)
    assert bench.main(["--mps", "--models", "resnet50"]) == 0 and bench.main(["--models", "resnet50"]) == 0
    assert seen == [(True, _calls(control)[0]["pipe"]), (False, None)]
    assert [c["stdin"] for c in _quit_seen(control, Path(seen[0][1]).parent)] == ["", "quit\n"]
