"""Calibrators: one amax (the clipping threshold of |x|) per tensor, from its range or |x| histogram.

Pure numpy. The histogram is the one `stats.TensorStats` collects: `counts` over [0, hist_max] in
equal bins of |x|. INT8 is symmetric: scale = amax / 127, quantized values clamp to [-128, 127].
"""
from __future__ import annotations

from typing import Callable

import numpy as np

METHODS = ("entropy", "percentile", "minmax", "mse")
DEFAULT_PERCENTILE = 99.99
NUM_QUANTIZED_BINS = 128  # |x| maps onto the 128 non-negative int8 levels (TensorRT's entropy method)
EPS = 1e-12
KL_TIE = 1e-9  # divergences closer than this are equal


def minmax_amax(abs_max: float) -> float:
    """The whole observed range: no clipping."""
    return float(abs_max)


def percentile_amax(counts: np.ndarray, hist_max: float, percentile: float = DEFAULT_PERCENTILE) -> float:
    """The upper edge of the bin where the cumulative count of |x| reaches `percentile` %."""
    if not 0 < percentile <= 100:
        raise ValueError(f"percentile {percentile}: expected 0 < p <= 100")
    counts = np.asarray(counts, dtype=np.float64)
    total = counts.sum()
    if total <= 0 or hist_max <= 0:
        return 0.0
    cumulative = np.cumsum(counts)
    idx = int(np.searchsorted(cumulative, total * percentile / 100.0, side="left"))
    idx = min(idx, len(counts) - 1)
    return float((idx + 1) * hist_max / len(counts))


def _expand_quantized(bins: np.ndarray, levels: int) -> np.ndarray:
    """Merge `bins` into `levels` equal groups (bin j joins level j*levels//len), then spread each
    group's total evenly over its non-empty bins; empty bins stay empty."""
    n = bins.size
    level_of_bin = (np.arange(n) * levels) // n
    nonzero = bins != 0
    totals = np.bincount(level_of_bin, weights=bins, minlength=levels)
    filled = np.bincount(level_of_bin, weights=nonzero.astype(np.float64), minlength=levels)
    per_bin = np.divide(totals, filled, out=np.zeros_like(totals), where=filled > 0)
    return np.where(nonzero, per_bin[level_of_bin], 0.0)


def kl_divergence(p: np.ndarray, q: np.ndarray) -> float:
    """KL(P||Q) of two unnormalised histograms; infinite where P has mass and Q has none."""
    p = p / p.sum()
    q = q / q.sum()
    mass = p > 0
    if np.any(q[mass] == 0):
        return float("inf")
    return float(np.sum(p[mass] * np.log(p[mass] / q[mass])))


def _xlogx(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return np.where(x > 0, x * np.log(np.where(x > 0, x, 1.0)), 0.0)


def entropy_divergences(counts: np.ndarray, levels: int = NUM_QUANTIZED_BINS) -> tuple[np.ndarray, np.ndarray]:
    """(candidates i, KL divergence of each) for TensorRT's entropy method, all candidates at once.

    Candidate i keeps bins [0, i) and folds the outliers into bin i-1 (reference P); its quantized
    version Q merges the i bins into `levels` groups (bin j in group j*levels//i) and gives each
    non-empty bin its group's mean. With prefix sums over the bins, every candidate costs O(levels):
      KL * T = sum_j p_j log p_j - sum_k total_k log mean_k - outliers * log mean_last - T log T + T log C_i
    (T: all counts, C_i: counts below i; the last term normalises Q). An outlier mass landing on an
    empty bin i-1 makes the divergence infinite, as in the element-wise definition.
    """
    c = np.asarray(counts, dtype=np.float64)
    n = c.size
    total = c.sum()
    cum = np.concatenate([[0.0], np.cumsum(c)])
    filled_cum = np.concatenate([[0.0], np.cumsum(c > 0)])
    xlogx_cum = np.concatenate([[0.0], np.cumsum(_xlogx(c))])
    i = np.arange(levels, n + 1)
    k = np.arange(levels + 1)
    bounds = (k[None, :] * i[:, None] + levels - 1) // levels  # first bin of each group; last column = i
    totals = np.diff(cum[bounds], axis=1)
    filled = np.diff(filled_cum[bounds], axis=1)
    means = np.divide(totals, filled, out=np.zeros_like(totals), where=filled > 0)
    outliers = total - cum[i]
    last = c[i - 1]
    p_last = last + outliers
    sum_p_log_p = xlogx_cum[i - 1] + _xlogx(p_last)
    log_means = np.log(np.where(means > 0, means, 1.0))
    sum_p_log_q = (totals * log_means).sum(axis=1) + outliers * log_means[:, -1]
    below = cum[i]
    with np.errstate(divide="ignore", invalid="ignore"):
        kl = (sum_p_log_p - sum_p_log_q) / total - np.log(total) + np.log(below)
    kl = np.where((last == 0) & (outliers > 0), np.inf, kl)
    kl = np.where(below > 0, kl, np.nan)  # no mass below the candidate: not a candidate
    return i, kl


def entropy_amax(counts: np.ndarray, hist_max: float, levels: int = NUM_QUANTIZED_BINS) -> float:
    """TensorRT's entropy calibration: the threshold whose 128-level quantization of the clipped
    |x| distribution is closest (minimum KL divergence) to the clipped reference distribution.

    Candidates are the upper edges of bins `levels` .. len(counts); outliers beyond a candidate are
    folded into its last bin. The first bin takes its neighbour's count, as NVIDIA's histogram
    calibrator does: the exact zeros after a ReLU would otherwise dominate the divergence and pull
    every threshold down to the smallest candidate. Ties (within KL_TIE) go to the larger threshold.
    """
    counts = np.asarray(counts, dtype=np.float64).copy()
    n = counts.size
    if n < levels:
        raise ValueError(f"histogram has {n} bins, needs at least {levels}")
    counts[0] = counts[1]
    if counts.sum() <= 0 or hist_max <= 0:
        return 0.0
    candidates, kl = entropy_divergences(counts, levels)
    valid = ~np.isnan(kl)
    if not valid.any():
        return float(hist_max)
    kl = np.maximum(kl, 0.0)  # prefix-sum rounding can dip below an exact zero
    best = np.nanmin(kl)
    # Ties go to the larger threshold; "tie" allows for rounding (a discrete distribution, e.g. 8-bit pixels,
    # can reach KL = 0 at several candidates, and the clipped one must not win by a rounding error).
    best_i = candidates[valid & (kl <= best + KL_TIE)].max() if np.isfinite(best) else n
    return float(best_i * hist_max / n)


def mse_amax(counts: np.ndarray, hist_max: float, levels: int = 127, stride: int = 1) -> float:
    """The threshold (a bin edge from bin 128 up) minimising the expected squared quantization error
    of |x| (rounding inside the range, clipping beyond it), estimated at bin centres."""
    counts = np.asarray(counts, dtype=np.float64)
    n = counts.size
    if counts.sum() <= 0 or hist_max <= 0:
        return 0.0
    width = hist_max / n
    centres = (np.arange(n) + 0.5) * width
    used = counts > 0
    c, w = centres[used], counts[used]
    candidates = np.arange(min(NUM_QUANTIZED_BINS, n), n + 1, stride) * width
    best, best_err = float(candidates[-1]), np.inf
    for start in range(0, candidates.size, 256):  # blocks keep the (candidates x bins) matrix small
        t = candidates[start:start + 256, None]
        scale = t / levels
        deq = np.minimum(np.rint(c[None, :] / scale), levels) * scale
        err = ((deq - c[None, :]) ** 2 * w[None, :]).sum(axis=1)
        k = int(np.argmin(err))
        if err[k] < best_err:
            best, best_err = float(t[k, 0]), float(err[k])
    return best


def compute_amax(method: str, counts: np.ndarray, hist_max: float, abs_max: float,
                 percentile: float = DEFAULT_PERCENTILE) -> float:
    """amax of one tensor by `method` (one of METHODS)."""
    table: dict[str, Callable[[], float]] = {
        "minmax": lambda: minmax_amax(abs_max),
        "percentile": lambda: percentile_amax(counts, hist_max, percentile),
        "entropy": lambda: entropy_amax(counts, hist_max),
        "mse": lambda: mse_amax(counts, hist_max),
    }
    if method not in table:
        raise ValueError(f"calibration method {method!r}: expected one of {', '.join(METHODS)}")
    return min(table[method](), float(abs_max)) if abs_max > 0 else 0.0


def weight_amax(weights: np.ndarray, axis: int = 0) -> np.ndarray:
    """Per-output-channel max |w| (symmetric weight quantization), reduced over every axis but `axis`."""
    w = np.abs(np.asarray(weights, dtype=np.float64))
    w = np.moveaxis(w, axis, 0).reshape(w.shape[axis], -1)
    return w.max(axis=1) if w.shape[1] else np.zeros(w.shape[0])


def scale_from_amax(amax: np.ndarray | float) -> np.ndarray:
    """int8 scale = amax / 127; a zero range gets a tiny positive scale (TensorRT rejects scale 0)."""
    a = np.asarray(amax, dtype=np.float64)
    return np.maximum(a, EPS * 127) / 127.0
