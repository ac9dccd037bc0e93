"""One lane of the kill test (tests/test_kill_outputs.py): SIGKILL `netdef export|build|calibrate` at random
instants while it writes over a good output, then check what is left.

Run as `python -m tests.kill_lane KIND WORKDIR TRIALS SEED`; prints one JSON line of results. The lane
imports everything once and forks a child per run (no interpreter start per trial); TensorRT is only
imported here, never used, because a builder used before fork() hangs the child.

A trial: the child writes variant X over variant Y, the lane kills it after a random delay, then checks
that the output is loadable and is X or Y (on a copy of the folder, so the check's own recovery does not
do the next run's job), then a complete run writes Y again and the folder must hold no temporary or
staged file. One trial in three is killed at a uniform instant of the whole run (its measured length); the others
at a uniform instant of the writing itself: the lane watches the folder, and once the first temporary file appears it
kills after a delay drawn over the measured length of the writing (first temporary file to exit).
"""
from __future__ import annotations

import json
import os
import random
import shutil
import signal
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

CFG = """[net]
width=32
height=32
channels=3

[convolutional]
batch_normalize=1
filters=8
size=3
stride=1
pad=1
activation=leaky

[convolutional]
batch_normalize=1
filters=8
size=3
stride=2
pad=1
activation=leaky

[convolutional]
filters=14
size=1
stride=1
pad=1
activation=linear

[yolo]
mask=0,1
anchors=10,14, 23,27
classes=2
num=2
"""


def _setup(work: Path) -> dict[str, Any]:
    from weights_export.darknet_synth import write_darknet_weights

    work.mkdir(parents=True, exist_ok=True)
    (work / "tiny.cfg").write_text(CFG)
    for variant, seed in (("x", 1), ("y", 2)):
        write_darknet_weights(CFG, work / f"tiny_{variant}.weights", seed=seed)
    np.save(work / "data.npy", np.random.default_rng(0).random((4, 3, 32, 32), dtype=np.float32))
    return {}


def _argv(kind: str, work: Path, variant: str) -> list[str]:
    """The command writing `variant` of the output (x or y)."""
    if kind == "export":
        return ["export", "--darknet-cfg", str(work / "tiny.cfg"), "--darknet-weights",
                str(work / f"tiny_{variant}.weights"), "--out", str(work / "out.h5"), "--no-progress"]
    if kind == "build":
        batch = "1:2:2" if variant == "x" else "1"
        return ["build", "darknet", "--weights", str(work / "w.h5"), "--out", str(work / "out.engine"),
                "--batch", batch, "--nms", "raw", "--no-progress"]
    if kind == "calibrate":
        method = "percentile" if variant == "x" else "minmax"
        return ["calibrate", "darknet", "--weights", str(work / "w.h5"), "--data", str(work / "data.npy"),
                "--out", str(work / "out.json"), "--samples", "4", "--batch", "4", "--method", method,
                "--recalibrate", "--no-progress"]
    raise ValueError(kind)


OUTPUTS = {"export": ["out.h5"], "build": ["out.engine", "out.engine.json"], "calibrate": ["out.json"]}


def _variant(kind: str, folder: Path, references: dict[str, Any]) -> str:
    """Load the output the way netdef does and say which variant it is; raises when it is not loadable."""
    if kind == "export":
        from weights_export.hdf5 import WeightsFile

        with WeightsFile(folder / "out.h5") as f:
            arrays = {k: f[k] for k in f}  # every tensor read and checksum-verified
        return next(v for v, ref in references.items() if all(np.array_equal(arrays[k], ref[k]) for k in ref))
    if kind == "build":
        from netdef.engine import read_sidecar

        meta = read_sidecar(folder / "out.engine")  # recovers, then checks plan sha256, size and seal
        return "x" if meta["batch"] == [1, 2, 2] else "y"
    from netdef.quantize.cache import load_cache

    return "x" if load_cache(folder / "out.json").algorithm == "percentile" else "y"


def _run_child(argv: list[str]) -> int:
    pid = os.fork()
    if pid == 0:  # the child: run the command, leave without cleanup handlers of the lane
        code = 1
        try:
            from netdef.cli import main

            sys.stdout = sys.stderr = open(os.devnull, "w")
            code = main(argv)
        finally:
            os._exit(code)
    return pid


def _complete(argv: list[str]) -> float:
    start = time.perf_counter()
    _, status = os.waitpid(_run_child(argv), 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({status})")
    return time.perf_counter() - start


def _hidden(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def _wait_for_writing(pid: int, folder: Path) -> float | None:
    """Poll until a hidden (temporary) file appears in `folder`; its time, or None if the child exited first
    (then it is reaped)."""
    while True:
        if any(name.startswith(".") for name in os.listdir(folder)):
            return time.perf_counter()
        if os.waitpid(pid, os.WNOHANG)[0]:
            return None
        time.sleep(0.0002)


def _writing_window(argv: list[str], folder: Path) -> float:
    """Seconds from the first temporary file appearing to the last one gone (renamed), in a complete run."""
    pid = _run_child(argv)
    seen = _wait_for_writing(pid, folder)
    end = seen
    if seen is None:
        return 0.0
    while any(name.startswith(".") for name in os.listdir(folder)):
        time.sleep(0.0002)
        end = time.perf_counter()
    os.waitpid(pid, 0)
    return end - seen


def run_lane(kind: str, work: Path, trials: int, seed: int) -> dict[str, Any]:
    from netdef.cli import main  # noqa: F401  (imports the CLI once, before the forks)
    import netdef.engine, netdef.quantize, netdef.executor, networks.yolov4, weights_export.darknet  # noqa: E401,F401
    from netdef import trt as shim

    shim.binding()  # import only: a builder made here would hang the forked children
    rng = random.Random(seed)
    _setup(work)
    if kind != "export":
        _complete(_argv("export", work, "y"))
        os.replace(work / "out.h5", work / "w.h5")
    references: dict[str, Any] = {}
    if kind == "export":
        from weights_export.hdf5 import WeightsFile

        for variant in ("x", "y"):
            _complete(_argv(kind, work, variant))
            with WeightsFile(work / "out.h5") as f:
                references[variant] = {k: f[k] for k in list(f)[:2]}
    duration = max(_complete(_argv(kind, work, "y")) for _ in range(2))
    window = max(_writing_window(_argv(kind, work, "y"), work) for _ in range(2))
    start = time.perf_counter()
    counts = {"x": 0, "y": 0, "killed": 0, "finished": 0, "killed_writing": 0, "left_temp": 0, "left_staged": 0}
    failures: list[str] = []
    check = work.parent / f"{work.name}-check"
    for trial in range(trials):
        pid = _run_child(_argv(kind, work, "x"))
        done = 0
        # instants within the measured lengths (a run under load is only slower): most trials are killed, and the
        # runs that outpace their measure still finish and are checked as such
        if trial % 3 == 0:
            delay = rng.uniform(0.0, duration)
            time.sleep(delay)
        else:  # during the writing
            delay = rng.uniform(0.0, window)
            seen = _wait_for_writing(pid, work)
            if seen is None:
                done = pid  # finished (and reaped) before writing was seen
            else:
                time.sleep(max(0.0, seen + delay - time.perf_counter()))
        if not done:
            done, _ = os.waitpid(pid, os.WNOHANG)
        if done == 0:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            counts["killed"] += 1
            counts["killed_writing"] += trial % 3 != 0
        else:
            counts["finished"] += 1
        hidden = _hidden(work)
        counts["left_temp"] += any(n.endswith(".tmp") for n in hidden)
        counts["left_staged"] += any(n.endswith(".new") for n in hidden)
        shutil.rmtree(check, ignore_errors=True)
        shutil.copytree(work, check)
        try:
            counts[_variant(kind, check, references)] += 1
        except Exception as exc:  # not loadable: the failure this test exists to catch
            failures.append(f"trial {trial} (killed after {delay:.3f} s, left {hidden}): {type(exc).__name__}: {exc}")
        _complete(_argv(kind, work, "y"))  # the next run
        left = _hidden(work)
        if left:
            failures.append(f"trial {trial}: after the next run the folder still holds {left}")
        if _variant(kind, work, references) != "y":
            failures.append(f"trial {trial}: the next run did not leave its own output")
    shutil.rmtree(check, ignore_errors=True)
    return {"kind": kind, "trials": trials, "run_seconds": round(duration, 3), "writing_seconds": round(window, 4),
            "trial_seconds": round(time.perf_counter() - start, 2), "counts": counts, "failures": failures}


def main(argv: list[str] | None = None) -> int:
    kind, work, trials, seed = (argv or sys.argv[1:])[:4]
    import logging

    import torch

    torch.set_num_threads(1)
    logging.disable(logging.WARNING)  # recovery notices of the checks: counted, not printed
    result = run_lane(kind, Path(work), int(trials), int(seed))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
