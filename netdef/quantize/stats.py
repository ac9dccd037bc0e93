"""Per-tensor statistics for calibration: running max |x| and a 2048-bin histogram of |x|.

The histogram covers [0, hist_max]. When a batch exceeds the range, the range doubles (as often as
needed) and pairs of bins merge, so growing it is exact and one pass over the data suffices.
Histograms are computed with torch on the executor's device; only the small count arrays travel.
"""
from __future__ import annotations

import math
from typing import Any, Iterable

import numpy as np

NUM_BINS = 2048


class TensorStats:
    """Statistics of one tensor over all calibration batches."""

    def __init__(self, name: str, num_bins: int = NUM_BINS) -> None:
        self.name = name
        self.num_bins = num_bins
        self.abs_max = 0.0
        self.hist_max = 0.0
        self.counts = np.zeros(num_bins, dtype=np.float64)
        self.num_values = 0
        self.batches = 0

    def update(self, values: Any) -> None:
        """Add a torch tensor (any shape, any float dtype) or numpy array."""
        import torch

        x = torch.as_tensor(values).detach()
        if not x.is_floating_point() or x.numel() == 0:
            return
        lo, hi = torch.aminmax(x)
        batch_max = max(-float(lo), float(hi))
        if not math.isfinite(batch_max):
            raise ValueError(f"calibration: tensor {self.name!r} has NaN/Inf values")
        self.batches += 1
        self.num_values += x.numel()
        self.abs_max = max(self.abs_max, batch_max)
        if batch_max == 0.0:
            self.counts[0] += x.numel()
            return
        if self.hist_max == 0.0:
            self.hist_max = batch_max
        elif batch_max > self.hist_max:
            self._grow(batch_max)
        # bin = floor(|x| * bins / hist_max): one scaled copy, abs in place, integer bins counted
        # (about twice as fast as torch.histc on the CPU; the observer's tensor itself is never modified)
        scaled = x.float() * (self.num_bins / self.hist_max)
        index = scaled.abs_().to(torch.int32).clamp_(max=self.num_bins - 1)
        counts = torch.bincount(index.flatten(), minlength=self.num_bins)
        self.counts += counts.cpu().double().numpy()

    def _grow(self, needed: float) -> None:
        doublings = math.ceil(math.log2(needed / self.hist_max))
        factor = 1 << doublings
        if factor >= self.num_bins:  # everything seen so far falls into the first bin
            merged = np.zeros(self.num_bins)
            merged[0] = self.counts.sum()
        else:
            merged = np.zeros(self.num_bins)
            merged[: self.num_bins // factor] = self.counts.reshape(-1, factor).sum(axis=1)
        self.counts = merged
        self.hist_max *= factor
        while self.hist_max < needed:  # float rounding of log2
            self._grow(needed)

    def amax(self, method: str, percentile: float | None = None) -> float:
        from netdef.quantize.calibrators import DEFAULT_PERCENTILE, compute_amax

        return compute_amax(method, self.counts, self.hist_max, self.abs_max,
                            DEFAULT_PERCENTILE if percentile is None else percentile)


class StatsCollector:
    """An executor observer that keeps `TensorStats` for a chosen set of tensor names."""

    def __init__(self, names: Iterable[str], num_bins: int = NUM_BINS) -> None:
        self.stats = {name: TensorStats(name, num_bins) for name in names}
        self.seen_this_batch: set[str] = set()

    def __call__(self, name: str, tensor: Any) -> None:
        stats = self.stats.get(name)
        if stats is not None:
            stats.update(tensor)
            self.seen_this_batch.add(name)

    def start_batch(self) -> None:
        self.seen_this_batch = set()

    def missing(self) -> list[str]:
        """Names not observed in the last batch (network inputs the executor does not report)."""
        return [n for n in self.stats if n not in self.seen_this_batch]
