"""CUDA MPS for the served instances: one GPU shared by the instance processes at once.

Each Triton Python-backend instance is a process with a CUDA context of its own (instance.py). Without the
Multi-Process Service the GPU time-slices between contexts, so the kernels of two instances never overlap and an
instance's small batch leaves most of the GPU idle while it runs. `mps_daemon()` starts a private MPS control daemon
(`nvidia-cuda-mps-control -d`, which comes with the NVIDIA driver) with its pipe and log folders under a new
temporary folder, and puts those folders in this process's environment, which the Triton server and its stub
processes inherit: every CUDA context created from then on, here or there, is a client of that daemon, and none
of any other user's. On exit the daemon is told to quit and the environment is restored. Start it before the
first CUDA call of the process (netdef serve --mps does).
"""
from __future__ import annotations

import contextlib
import logging
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Iterator

from netdef.serve.environment import ServeEnvironmentError

log = logging.getLogger("netdef.serve")

CONTROL = "nvidia-cuda-mps-control"
FOLDERS = {"CUDA_MPS_PIPE_DIRECTORY": "pipe", "CUDA_MPS_LOG_DIRECTORY": "log"}  # variable: its subfolder


def _control(executable: str, env: dict[str, str], *args: str, stdin: str | None = None) -> None:
    feed = {"input": stdin} if stdin is not None else {"stdin": subprocess.DEVNULL}
    done = subprocess.run([executable, *args], env=env, capture_output=True, text=True, timeout=60, **feed)
    if done.returncode != 0:
        raise ServeEnvironmentError(f"{CONTROL} {' '.join(args) or '(quit)'} failed with exit {done.returncode}: "
                                    f"{(done.stderr or done.stdout).strip()[:500]}")


@contextlib.contextmanager
def mps_daemon() -> Iterator[dict[str, str]]:
    """A private MPS control daemon for as long as the block runs; yields the environment it set."""
    executable = shutil.which(CONTROL)
    if executable is None:
        raise ServeEnvironmentError(f"--mps: {CONTROL} is not on PATH (the NVIDIA driver installs it); serve "
                                    "without --mps, or add the driver's bin folder to PATH")
    root = Path(tempfile.mkdtemp(prefix="netdef-mps-"))
    folders = {name: str(root / sub) for name, sub in FOLDERS.items()}
    for folder in folders.values():
        os.makedirs(folder)
    saved = {name: os.environ.get(name) for name in FOLDERS}
    env = {**os.environ, **folders}
    try:
        _control(executable, env, "-d")
        os.environ.update(folders)
        log.info("CUDA MPS daemon started (pipe %s)", folders["CUDA_MPS_PIPE_DIRECTORY"])
        try:
            yield folders
        finally:
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value
            try:
                _control(executable, env, stdin="quit\n")
                log.info("CUDA MPS daemon stopped")
            except (ServeEnvironmentError, subprocess.TimeoutExpired) as exc:  # never hide the block's own error
                log.warning("the CUDA MPS daemon did not quit: %s", exc)
    finally:
        shutil.rmtree(root, ignore_errors=True)
