"""Latency statistics for benchmarks: wall-clock per call, percentiles, throughput (no torch, no GPU needed)."""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any, Callable

import numpy as np


@dataclass(frozen=True)
class LatencyStats:
    batch: int
    iterations: int
    mean_ms: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    min_ms: float

    @property
    def throughput(self) -> float:
        """Items per second at the mean latency."""
        return self.batch * 1000.0 / self.mean_ms if self.mean_ms > 0 else float("inf")

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "throughput": self.throughput}


def measure(fn: Callable[[], Any], batch: int, iterations: int = 100, warmup: int = 10,
            sync: Callable[[], Any] | None = None) -> LatencyStats:
    """Time `fn()` (followed by `sync()`, when the work is asynchronous) `iterations` times after `warmup` calls."""
    if iterations < 1:
        raise ValueError("iterations must be >= 1")
    for _ in range(warmup):
        fn()
    if sync:
        sync()
    times = np.empty(iterations)
    for i in range(iterations):
        t0 = time.perf_counter()
        fn()
        if sync:
            sync()
        times[i] = (time.perf_counter() - t0) * 1000.0
    p50, p90, p99 = np.percentile(times, [50, 90, 99])
    return LatencyStats(batch, iterations, float(times.mean()), float(p50), float(p90), float(p99), float(times.min()))


def format_table(rows: list[list[Any]], header: list[str]) -> str:
    """A plain aligned text table."""
    cells = [[str(c) for c in header]] + [[f"{c:.3f}" if isinstance(c, float) else str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    numeric = [all(_is_number(r[i]) for r in cells[1:]) for i in range(len(header))]
    lines = ["  ".join(c.rjust(w) if numeric[i] else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths)))
             for r in cells]
    lines = [line.rstrip() for line in lines]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
