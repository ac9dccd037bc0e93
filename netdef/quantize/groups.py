"""Scale groups: tensors whose quantizers must share one scale, and the amax such a group gets.

TensorRT moves a quantize backward across layers that commute with it (concatenation, max pooling,
nearest resize, slice, reshape). When the tensors meeting there carry different scales, the builder must
requantize; with one scale, a concatenation disappears (its producers write into its output) and a max
pool runs in INT8. So every input and the output of such a layer form one group (docs/int8.md).

A group is a union-find over canonical tensor names (the names calibration keys statistics by). Its amax:
- from statistics: the calibration method applied to the merged |x| histogram of all members (what a
  concatenation's output would show: its values are the union of its inputs' values);
- from a cache holding one amax per tensor only: the largest member amax (no member is clipped more than
  its own calibration allows).
"""
from __future__ import annotations

from typing import Iterable, Iterator, Mapping

import numpy as np

from netdef.quantize.stats import TensorStats


class ScaleGroups:
    """Union-find over tensor names; `union` declares that quantizers of the named tensors share one scale."""

    def __init__(self, groups: Iterable[Iterable[str]] = ()) -> None:
        self._parent: dict[str, str] = {}
        for members in groups:
            self.union(*members)

    def add(self, name: str) -> None:
        self._parent.setdefault(name, name)

    def find(self, name: str) -> str:
        self.add(name)
        root = name
        while self._parent[root] != root:
            root = self._parent[root]
        while self._parent[name] != root:  # path compression
            self._parent[name], name = root, self._parent[name]
        return root

    def union(self, *names: str) -> str | None:
        """Put all `names` into one group; returns its representative (None when no name is given)."""
        roots = sorted({self.find(n) for n in names})
        if not roots:
            return None
        for r in roots[1:]:
            self._parent[r] = roots[0]
        return roots[0]

    def same(self, a: str, b: str) -> bool:
        return self.find(a) == self.find(b)

    def members(self, name: str) -> list[str]:
        root = self.find(name)
        return sorted(n for n in self._parent if self.find(n) == root)

    def groups(self, min_size: int = 2) -> list[list[str]]:
        """Every group with at least `min_size` members, members sorted, groups ordered by first member."""
        by_root: dict[str, list[str]] = {}
        for n in self._parent:
            by_root.setdefault(self.find(n), []).append(n)
        return sorted(sorted(g) for g in by_root.values() if len(g) >= min_size)

    def __contains__(self, name: object) -> bool:
        return name in self._parent

    def __iter__(self) -> Iterator[str]:
        return iter(self._parent)

    def to_json(self) -> list[list[str]]:
        return self.groups()

    def amax(self, amax: Mapping[str, float], stats: Mapping[str, TensorStats] | None = None,
             method: str = "entropy", percentile: float | None = None) -> dict[str, float]:
        """`amax` with every grouped tensor given its group's amax (tensors outside any group unchanged).

        With `stats` holding every member of a group, the group amax is `method` on the merged histogram;
        otherwise the largest amax of the members that have one. A group where no member has either quantizes
        nothing and is left out.
        """
        result = {k: float(v) for k, v in amax.items()}
        for members in self.groups():
            if stats is not None and all(m in stats for m in members):
                value = merge_stats([stats[m] for m in members], "+".join(members)).amax(method, percentile)
            else:
                known = [float(amax[m]) for m in members if m in amax]
                if not known:
                    continue
                value = max(known)
            for m in members:
                result[m] = value
        return result


def merge_stats(stats: list[TensorStats], name: str) -> TensorStats:
    """One `TensorStats` holding the values of all of `stats`: histograms resampled onto the widest range.

    A source bin's count is spread evenly over its width (the cumulative count is interpolated at the
    common bin edges), so a merge of identical ranges is exact.
    """
    if not stats:
        raise ValueError("merge_stats: nothing to merge")
    bins = stats[0].num_bins
    if any(s.num_bins != bins for s in stats):
        raise ValueError(f"merge_stats {name}: histograms with different bin counts")
    merged = TensorStats(name, bins)
    merged.hist_max = max(s.hist_max for s in stats)
    merged.abs_max = max(s.abs_max for s in stats)
    merged.num_values = sum(s.num_values for s in stats)
    merged.batches = max(s.batches for s in stats)
    edges = np.linspace(0.0, merged.hist_max, bins + 1)
    for s in stats:
        if s.hist_max <= 0:
            merged.counts[0] += s.counts.sum()
            continue
        own_edges = np.linspace(0.0, s.hist_max, bins + 1)
        cumulative = np.concatenate([[0.0], np.cumsum(s.counts)])
        merged.counts += np.diff(np.interp(edges, own_edges, cumulative))
    return merged
