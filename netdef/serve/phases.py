"""Opt-in timing of an instance's execute(): NETDEF_SERVE_PROFILE=PREFIX makes every instance append one JSON
line per batch to PREFIX.PID (its stub's process id), with the wall and thread-CPU seconds of each phase
(inputs: get the requests' arrays; join: into the staging buffer; infer: session.infer; responses: cut and
build them), the requests and input bytes, and the process's minor page faults since the previous batch
(inside and outside execute: the stub loads the requests' tensors before calling it).
bench/serve_overhead.py sums the lines into ms per batch and per MB."""
from __future__ import annotations

import json
import os
import time
from typing import Any, TextIO

PROFILE_ENV = "NETDEF_SERVE_PROFILE"


def minor_faults() -> int:
    """This process's minor page faults so far (Linux; 0 elsewhere)."""
    try:
        with open("/proc/self/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[7])
    except (OSError, IndexError, ValueError):
        return 0


class Phases:
    """Marks along one batch: `start()`, then `mark(phase)` after each phase, then `write(**counts)`."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.faults = minor_faults()
        self.row: dict[str, Any] = {}

    @classmethod
    def from_env(cls) -> "Phases | None":
        prefix = os.environ.get(PROFILE_ENV)
        return cls(open(f"{prefix}.{os.getpid()}", "a", buffering=1)) if prefix else None

    def start(self) -> None:
        faults = minor_faults()
        self.row = {"faults_outside": faults - self.faults}
        self.faults = faults
        self._wall, self._cpu = time.perf_counter(), time.thread_time()

    def mark(self, phase: str) -> None:
        wall, cpu = time.perf_counter(), time.thread_time()
        self.row[phase] = wall - self._wall
        self.row[f"{phase}_cpu"] = cpu - self._cpu
        self._wall, self._cpu = wall, cpu

    def write(self, **counts: Any) -> None:
        faults = minor_faults()
        self.out.write(json.dumps({**self.row, "faults_inside": faults - self.faults, **counts}) + "\n")
        self.faults = faults
