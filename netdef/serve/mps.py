"""CUDA MPS for the served instances: one GPU shared by the instance processes at once.

Each Triton Python-backend instance is a process with a CUDA context of its own (instance.py). Without the
Multi-Process Service the GPU time-slices between contexts, so the kernels of two instances never overlap and an
instance's small batch leaves most of the GPU idle while it runs. `mps_daemon()` starts a private MPS control daemon
(`nvidia-cuda-mps-control -d`, which comes with the NVIDIA driver) with its pipe and log folders under a new
temporary folder, and puts those folders in this process's environment, which the Triton server and its stub
processes inherit: every CUDA context created from then on, here or there, is a client of that daemon, and none
of any other user's. On exit the environment is restored and the daemon is told to quit from a detached process,
which then removes the folders: the daemon ends only after its last client, and this process is one for as long as
its CUDA context lives, so a quit waited for here would block until it exits (on the H200 it timed out after 60 s).
Start it before the first CUDA call of the process (netdef serve --mps does).
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


def _start(executable: str, env: dict[str, str]) -> None:
    done = subprocess.run([executable, "-d"], env=env, capture_output=True, text=True, timeout=60,
                          stdin=subprocess.DEVNULL)
    if done.returncode != 0:
        raise ServeEnvironmentError(f"{CONTROL} -d failed with exit {done.returncode}: "
                                    f"{(done.stderr or done.stdout).strip()[:500]}")


def _quit_when_free(executable: str, env: dict[str, str], root: Path) -> None:
    """`quit` to the daemon from a background shell that removes `root` once the daemon has ended; the shell that
    starts it returns at once (nothing of it is left to wait for)."""
    script = '( echo quit | "$0" > /dev/null 2>&1; rm -rf "$1" ) &'
    subprocess.run(["/bin/sh", "-c", script, executable, str(root)], env=env, stdin=subprocess.DEVNULL,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True, timeout=10)


@contextlib.contextmanager
def mps_daemon() -> Iterator[dict[str, str]]:
    """A private MPS control daemon for as long as the block runs; yields the environment it set."""
    executable = shutil.which(CONTROL)
    if executable is None:
        raise ServeEnvironmentError(f"--mps: {CONTROL} is not on PATH (the NVIDIA driver installs it); serve "
                                    "without --mps, or add the driver's bin folder to PATH")
    root = Path(tempfile.mkdtemp(prefix="netdef-mps-"))
    folders = {name: str(root / sub) for name, sub in FOLDERS.items()}
    saved = {name: os.environ.get(name) for name in FOLDERS}
    env = {**os.environ, **folders}
    try:
        for folder in folders.values():
            os.makedirs(folder)
        _start(executable, env)
    except BaseException:
        shutil.rmtree(root, ignore_errors=True)
        raise
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
        _quit_when_free(executable, env, root)
        log.info("CUDA MPS daemon told to quit: it ends after its last client (this process too, while its CUDA "
                 "context lives)")
