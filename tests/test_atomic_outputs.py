"""Outputs are never half written, never lost and never written over an input (netdef.atomic): temporary
files go away on errors, signals and at the next write; a failed write names the output; the engine +
sidecar pair survives a kill at every step of its commit; same-file checks see through links."""
from __future__ import annotations

import errno
import json
import os
import signal
import time
from pathlib import Path

import pytest

from netdef import atomic
from netdef.atomic import (OutputError, OverwriteInputError, atomic_path, refuse_overwriting_inputs,
                           remove_stale_temps, staged_path, write_text_atomic)
from netdef.engine import EngineFileError, Plan, read_sidecar, save_engine, sidecar_path


def _hidden(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def _dead_pid() -> int:
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
    return pid


def test_stale_temps_of_dead_processes_go_at_the_next_write(tmp_path):
    out = tmp_path / "w.h5"
    stale = tmp_path / f".w.h5.{_dead_pid()}.0badc0de.tmp"
    live = tmp_path / f".w.h5.{os.getppid()}.0badc0de.tmp"  # a running process: may still be writing
    other = tmp_path / f".x.h5.{_dead_pid()}.0badc0de.tmp"  # another output's: not ours to judge
    for p in (stale, live, other):
        p.write_bytes(b"half written")
    write_text_atomic(out, "new")
    assert out.read_text() == "new" and not stale.exists() and live.exists() and other.exists()
    assert remove_stale_temps(tmp_path / "x.h5") == [other]


def test_failed_write_names_the_output_not_the_temp_file(tmp_path):
    out = tmp_path / "model.h5"
    out.write_text("old")
    with pytest.raises(OutputError) as err:
        with atomic_path(out) as tmp:
            tmp.write_text("partial")
            raise OSError(errno.ENOSPC, "No space left on device", str(tmp))
    assert str(err.value) == f"{out}: no space left on the device while writing it (any earlier model.h5 is unchanged)"
    assert err.value.errno == errno.ENOSPC
    with pytest.raises(OutputError, match=r"model.h5: no space left"):  # HDF5's own words for ENOSPC
        with atomic_path(out) as tmp:
            raise RuntimeError(f"file write failed: filename = '{tmp}', errno = 28, error message = 'No space'")
    with pytest.raises(ValueError) as other:  # any other error: the temporary name is replaced by the output's
        with atomic_path(out) as tmp:
            raise ValueError(f"cannot encode {tmp.name}")
    assert str(other.value) == "cannot encode model.h5"
    assert out.read_text() == "old" and _hidden(tmp_path) == []
    with pytest.raises(OutputError, match="is a directory"):
        write_text_atomic(tmp_path, "x")


def test_real_disk_full_names_the_output(tmp_path):
    """ENOSPC from the kernel on a 64 KiB tmpfs, where this runs as root (else skipped)."""
    import subprocess

    mnt = tmp_path / "small"
    mnt.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mnt)],
                                           capture_output=True).returncode != 0:
        pytest.skip("cannot mount a small tmpfs here")
    try:
        out = mnt / "big.bin"
        with pytest.raises(OutputError, match=r"big.bin: no space left on the device"):
            atomic.write_bytes_atomic(out, b"x" * (1 << 20))
        assert list(mnt.iterdir()) == []
    finally:
        subprocess.run(["umount", str(mnt)], check=True)


def _child(body) -> int:
    pid = os.fork()
    if pid == 0:
        try:
            body()
        finally:
            os._exit(0)
    return pid


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_while_writing_removes_the_temp_file(tmp_path, sig):
    out = tmp_path / "out.bin"
    out.write_bytes(b"old")

    def body():
        # as in an interactive process: a shell starts background jobs with SIGINT ignored, and Python then keeps it so
        signal.signal(signal.SIGINT, signal.default_int_handler)
        with atomic_path(out) as tmp:
            tmp.write_bytes(b"half")
            time.sleep(30)

    pid = _child(body)
    deadline = time.monotonic() + 20
    while not _hidden(tmp_path) and time.monotonic() < deadline:
        time.sleep(0.005)
    assert _hidden(tmp_path), "the child never started writing"
    os.kill(pid, sig)
    _, status = os.waitpid(pid, 0)
    if sig == signal.SIGTERM:  # dies of the signal, as without the handler
        assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGTERM
    assert _hidden(tmp_path) == [] and out.read_bytes() == b"old"


def test_signal_handler_only_while_writing(tmp_path):
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    with atomic_path(tmp_path / "a") as tmp:
        tmp.write_text("x")
        assert signal.getsignal(signal.SIGTERM) is atomic._on_signal
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # a long build that follows stays killable


# --- engine + sidecar as one -----------------------------------------------------------------------------------

META = {"precision": "fp32", "arch": "tiny"}


def _plan(tag: bytes) -> Plan:
    return Plan(tag * 1000, dict(META, network=tag.decode()))


def _which(path: Path) -> str:
    return read_sidecar(path, check_binding=False)["network"]


# every os.replace of write_pair, killed right before and right after it, and in the middle of each staged write
CRASH_POINTS = [("replace", k, when) for k in range(4) for when in ("before", "after")] + \
    [("write", k, "half") for k in range(2)]


@pytest.mark.parametrize("point", CRASH_POINTS, ids=lambda p: f"{p[0]}{p[1]}-{p[2]}")
def test_pair_survives_a_kill_at_every_step(tmp_path, point):
    engine = tmp_path / "m.engine"
    save_engine(_plan(b"old"), engine)
    what, index, when = point

    def body():
        calls = {"replace": 0, "write": 0}
        real_replace, real_write = os.replace, Path.write_bytes

        def replace(src, dst):
            if calls["replace"] == index and when == "before":
                os.kill(os.getpid(), signal.SIGKILL)
            real_replace(src, dst)
            if calls["replace"] == index and when == "after":
                os.kill(os.getpid(), signal.SIGKILL)
            calls["replace"] += 1

        def write_bytes(self, data):
            if calls["write"] == index:
                real_write(self, data[: len(data) // 2])
                os.kill(os.getpid(), signal.SIGKILL)
            calls["write"] += 1
            return real_write(self, data)

        if what == "replace":
            os.replace = replace
        else:
            Path.write_bytes = write_bytes
        save_engine(_plan(b"new"), engine)

    _, status = os.waitpid(_child(body), 0)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
    # committed (the staged sidecar is in place) -> the new pair; before -> the old pair
    committed = what == "replace" and (index >= 2 or (index == 1 and when == "after"))
    assert _which(engine) == ("new" if committed else "old")
    save_engine(_plan(b"next"), engine)  # the next run leaves nothing behind
    assert _which(engine) == "next" and _hidden(tmp_path) == []


def test_reader_finishes_an_interrupted_commit_and_refuses_a_mismatched_pair(tmp_path):
    engine = tmp_path / "m.engine"
    save_engine(_plan(b"old"), engine)
    new = _plan(b"new")
    # the state after step 3 of the commit: the new plan in place, its sidecar still staged
    save_engine(new, tmp_path / "n.engine")
    os.replace(tmp_path / "n.engine", engine)
    os.replace(sidecar_path(tmp_path / "n.engine"), staged_path(sidecar_path(engine)))
    assert _which(engine) == "new" and _hidden(tmp_path) == []
    # a plan beside a sidecar that is not its own (no journal): refused, never loaded
    engine.write_bytes(b"another plan")
    with pytest.raises(EngineFileError, match="plan sha256"):
        read_sidecar(engine)


def test_save_refuses_to_write_over_its_weights(tmp_path):
    weights = tmp_path / "w.h5"
    weights.write_bytes(b"weights")
    with pytest.raises(OverwriteInputError, match="engine .*w.h5 is the same file as weights"):
        save_engine(_plan(b"x"), weights, weights=weights)
    assert weights.read_bytes() == b"weights"


def test_same_file_through_links(tmp_path):
    source = tmp_path / "w.h5"
    source.write_bytes(b"w")
    (tmp_path / "soft.h5").symlink_to(source)
    os.link(source, tmp_path / "hard.h5")
    (tmp_path / "dir").symlink_to(tmp_path, target_is_directory=True)
    for alias in ("soft.h5", "hard.h5", "dir/w.h5", "./w.h5"):
        with pytest.raises(OverwriteInputError, match=r"--out .* is the same file as --weights .*w.h5"):
            refuse_overwriting_inputs({"--out": tmp_path / alias}, {"--weights": source})
    refuse_overwriting_inputs({"--out": tmp_path / "new.h5"}, {"--weights": source, "--data": None})


def test_sidecar_bytes_name_the_plan(tmp_path):
    with pytest.raises(ValueError, match="must name the sha256"):
        atomic.write_pair(tmp_path / "a", b"data", tmp_path / "a.json", json.dumps({"plan_sha256": "0" * 64}).encode(),
                          lambda b: json.loads(b)["plan_sha256"])
    assert list(tmp_path.iterdir()) == []
