"""Opt-in timing of an instance's execute(): NETDEF_SERVE_PROFILE=PREFIX makes every instance append one JSON
line per batch to PREFIX.PID (its stub's process id), with the wall and thread-CPU seconds of each phase
(inputs: get the requests' arrays; join: into the staging buffer; infer: session.infer; responses: cut and
build them), the requests and input bytes, and the process's minor page faults since the previous batch
(inside and outside execute: the stub loads the requests' tensors before calling it).
`phase_offsets` / `phase_summary` read them back over a measuring window (bench/serve.py, bench/serve_overhead.py):
ms per batch and per MB."""
from __future__ import annotations

import json
import os
import time
from typing import Any, TextIO

PROFILE_ENV = "NETDEF_SERVE_PROFILE"
PHASES = ("inputs", "join", "infer", "responses")


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


def phase_offsets(prefix: str) -> dict[str, int]:
    """Each instance's phase file (PREFIX.PID) and its size now."""
    folder, name = os.path.split(prefix)
    return {f.path: f.stat().st_size for f in os.scandir(folder or ".") if f.name.startswith(name + ".")}


def phase_summary(start: dict[str, int], end: dict[str, int]) -> dict[str, Any]:
    """ms per batch and per MB of input for each phase, over the lines written between two phase_offsets."""
    rows = []
    for path, size in end.items():
        with open(path, "rb") as f:
            f.seek(start.get(path, 0))
            rows += [json.loads(line) for line in f.read(size - start.get(path, 0)).splitlines()]
    if not rows:
        return {}
    batches, mb, requests = len(rows), sum(r["bytes"] for r in rows) / 1e6, sum(r["requests"] for r in rows)
    out: dict[str, Any] = {"batches": batches, "requests_per_batch": requests / batches,
                           "faults_per_request": {k: sum(r[f"faults_{k}"] for r in rows) / requests
                                                  for k in ("inside", "outside")}}
    for phase in PHASES:
        for key in (phase, f"{phase}_cpu"):
            ms = 1e3 * sum(r.get(key, 0.0) for r in rows)
            out[key] = {"ms_per_batch": ms / batches, "ms_per_mb": ms / mb if mb else float("nan")}
    return out


def format_phases(p: dict[str, Any]) -> str:
    parts = [f"{k} {p[k]['ms_per_batch']:.3f} ({p[k + '_cpu']['ms_per_batch']:.3f} CPU) ms/batch "
             f"{p[k]['ms_per_mb']:.3f} ms/MB" for k in PHASES]
    f = p["faults_per_request"]
    return (f"   execute() phases over {p['batches']} batches of {p['requests_per_batch']:.1f}: " + "; ".join(parts)
            + f"; page faults per request {f['inside']:.1f} inside, {f['outside']:.1f} outside")
