"""OpenPose's part-affinity-field (PAF) assembly on the host: candidate limbs -> people (the CMU algorithm).

The engine (networks/openpose.py, outputs="parsed") does the per-pixel work: both maps resized to the input
size, heatmaps smoothed, peaks found and the PAF integrated along every candidate limb. What is left here
is small and sequential, as in the reference (Hzzone/pytorch-openpose `Body.__call__`, after CMU's Matlab
code): per limb, candidate pairs ranked by their PAF score plus a length prior and matched greedily, one
use per peak; then the limbs are merged into people in limb order, and people with too few parts or a
low mean score are dropped.

Engine outputs this module reads (K = max peaks per part, a build setting):
- `peaks` (B, 18, K, 3): x, y (input pixels) and score (resized, unsmoothed heatmap value), strongest first;
  rows past the part's count are zeros;
- `peak_counts` (B, 18) int32: peaks found per part (only the first min(count, K) rows of `peaks` are real);
- `limb_scores` (B, 19, K, K): mean PAF alignment of the samples between peak i of the limb's first part
  and peak j of its second, or NO_LIMB where fewer than 80 % of the samples clear `limb_threshold` or a
  slot holds no peak.
Only numpy: this is on the build-and-run path.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from netdef.pose.skeleton import CMU18, CMU18_PAF_LIMBS, Person

NO_LIMB = -1.0e4  # limb_scores value of a pair that fails the sample criterion (finite: FP16 outputs hold it)


@dataclass(frozen=True)
class PafSettings:
    """The reference's constants (its thre1, thre2, mid_num, the 3-sigma smoothing, the person filter)."""

    max_peaks: int = 32  # K: peaks kept per part, strongest (smoothed) first; an engine build setting
    peak_threshold: float = 0.1  # a peak's smoothed heatmap value must exceed this
    limb_threshold: float = 0.05  # a limb sample's PAF alignment must exceed this ...
    limb_min_fraction: float = 0.8  # ... for more than this fraction of the samples
    samples: int = 10  # points sampled on each candidate limb
    sigma: float = 3.0  # heatmap smoothing (scipy.ndimage.gaussian_filter's, mode "reflect")
    truncate: float = 4.0  # the smoothing kernel's radius in sigmas (scipy's default)
    stride: int = 8  # network output -> input scale
    min_parts: int = 4  # a person needs at least this many parts ...
    min_mean_score: float = 0.4  # ... and this mean score per part


def gaussian_kernel(sigma: float, truncate: float = 4.0) -> np.ndarray:
    """The 1-D kernel scipy.ndimage.gaussian_filter uses: radius int(truncate * sigma + 0.5), normalised."""
    radius = int(truncate * sigma + 0.5)
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    w = np.exp(-0.5 * (x / sigma) ** 2)
    return w / w.sum()


def raster_order(peaks: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(order (parts, K): each part's real peaks in raster order (y, then x) first, then its empty slots;
    n (parts,): its real peaks). The engine ranks peaks by strength; the reference finds them in raster order."""
    k_max = peaks.shape[1]
    n = np.minimum(np.asarray(counts).astype(np.int64), k_max)
    empty = np.arange(k_max)[None, :] >= n[:, None]
    return np.lexsort((peaks[..., 0], peaks[..., 1], empty), axis=-1), n


def canonical(peaks: np.ndarray, counts: np.ndarray,
              limb_scores: np.ndarray) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """One image's parsed outputs as the reference orders them: per part the real peaks (n, 3) in raster order
    (the engine ranks them by strength), per limb its (nA, nB) scores reordered alike."""
    order, n = raster_order(peaks, counts)
    part_peaks = [peaks[p, order[p, :n[p]]] for p in range(peaks.shape[0])]
    scores = [limb_scores[k][np.ix_(order[a, :n[a]], order[b, :n[b]])] for k, (a, b, _, _) in enumerate(CMU18_PAF_LIMBS)]
    return part_peaks, scores


def limb_totals(xy: np.ndarray, n: np.ndarray, scores: np.ndarray, image_height: float,
                limbs: Sequence[tuple[int, int, int, int]] = CMU18_PAF_LIMBS) -> tuple[np.ndarray, np.ndarray]:
    """Every limb's candidate pairs at once: (total (L, K, K) = PAF score + the length prior
    min(0.5 * image_height / length - 1, 0), qualifies (L, K, K): both slots real, the sample criterion met and
    total > 0). `xy` (parts, K, 2) and `scores` (L, K, K) in the same (raster) slot order, `n` real peaks per part."""
    part_a, part_b = (np.array([limb[i] for limb in limbs]) for i in (0, 1))
    vec = xy[part_b][:, None, :, :].astype(np.float64) - xy[part_a][:, :, None, :].astype(np.float64)
    norm = np.maximum(np.sqrt((vec ** 2).sum(-1)), 0.001)
    total = scores.astype(np.float64) + np.minimum(0.5 * image_height / norm - 1.0, 0.0)
    k_max = xy.shape[1]
    real = np.arange(k_max)[None, :] < n[:, None]
    qualifies = (real[part_a][:, :, None] & real[part_b][:, None, :] & (scores > NO_LIMB / 2) & (total > 0))
    return total, qualifies


def connect_limbs(total: np.ndarray, qualifies: np.ndarray, n: Sequence[int],
                  limbs: Sequence[tuple[int, int, int, int]] = CMU18_PAF_LIMBS) -> list[list[tuple[int, int, float]]]:
    """Per limb type its connections, rows (i, j, score): qualifying pairs by decreasing total (ties in (i, j)
    order, the reference's loop order), each peak at most once, at most min(nA, nB) of them. One sort for all
    limbs; the greedy picking walks the (few) qualifying pairs in Python."""
    kk, ii, jj = np.nonzero(qualifies)  # limb, then row-major
    values = total[kk, ii, jj]
    order = np.lexsort((-values, kk))  # stable: equal totals keep (i, j) order
    connections: list[list[tuple[int, int, float]]] = [[] for _ in limbs]
    used_a: set[int] = set()
    used_b: set[int] = set()
    limb = -1
    for k, i, j, v in zip(*(a[order].tolist() for a in (kk, ii, jj, values))):
        if k != limb:
            limb, used_a, used_b = k, set(), set()
            room = min(n[limbs[k][0]], n[limbs[k][1]])
        if i in used_a or j in used_b or len(connections[k]) >= room:
            continue
        used_a.add(i)
        used_b.add(j)
        connections[k].append((i, j, v))
    return connections


def assemble(n: Sequence[int], part_scores: Sequence[Sequence[float]],
             connections: Sequence[Sequence[tuple[int, int, float]]],
             limbs: Sequence[tuple[int, int, int, int]] = CMU18_PAF_LIMBS,
             min_parts: int = 4, min_mean_score: float = 0.4) -> list[list[float]]:
    """Merge limb connections into people, limb by limb, as the reference does.

    `n[p]` real peaks of part p, `part_scores[p]` their scores; `connections[k]` rows (i, j, score) of limb k
    (connect_limbs). Candidate ids count the peaks over all parts in part order. Returns the people kept, each
    [candidate id of each part or -1, ..., total score, number of parts] (the reference's rows; plain lists,
    which the per-connection search over people reads far faster than numpy rows).
    """
    parts = len(n)
    offsets = np.cumsum([0] + list(n)).tolist()
    score_of = [s for p in range(parts) for s in part_scores[p][:n[p]]]
    people: list[list[float]] = []
    last_new_limb = len(limbs) - 2  # the shoulder-ear limbs only extend people found before
    for k, (part_a, part_b, _, _) in enumerate(limbs):
        if n[part_a] == 0 or n[part_b] == 0:
            continue
        for i, j, score in connections[k]:
            id_a, id_b = offsets[part_a] + i, offsets[part_b] + j
            found = [r for r, row in enumerate(people) if row[part_a] == id_a or row[part_b] == id_b][:2]
            if len(found) == 1:
                row = people[found[0]]
                if row[part_b] != id_b:
                    row[part_b] = id_b
                    row[-1] += 1
                    row[-2] += score_of[id_b] + score
            elif len(found) == 2 and _overlap(people[found[0]], people[found[1]], parts):
                row = people[found[0]]  # the reference extends the first one, without the check above
                row[part_b] = id_b
                row[-1] += 1
                row[-2] += score_of[id_b] + score
            elif len(found) == 2:  # two disjoint partial people joined by this limb: merge them
                first, second = people[found[0]], people.pop(found[1])
                for q in range(parts):
                    first[q] += second[q] + 1
                first[-2] += second[-2]
                first[-1] += second[-1]
                first[-2] += score
            elif not found and k < last_new_limb:
                row = [-1.0] * (parts + 2)
                row[part_a], row[part_b] = id_a, id_b
                row[-1] = 2
                row[-2] = score_of[id_a] + score_of[id_b] + score
                people.append(row)
    return [row for row in people if row[-1] >= min_parts and row[-2] / max(row[-1], 1) >= min_mean_score]


def _overlap(first: list[float], second: list[float], parts: int) -> bool:
    """Whether two partial people share a part (then they are not merged)."""
    return any(a >= 0 and b >= 0 for a, b in zip(first[:parts], second[:parts]))


def image_people(peaks: np.ndarray, counts: np.ndarray, limb_scores: np.ndarray, image_height: float,
                 settings: PafSettings = PafSettings(), scale: float = 1.0,
                 offset: tuple[float, float] = (0.0, 0.0)) -> list[Person]:
    """People in one image from its parsed engine outputs (`peaks` (18, K, 3), `counts` (18,),
    `limb_scores` (19, K, K)). `image_height` is the image's height in input pixels (the length prior);
    keypoints map back to image pixels as (xy - offset) / scale."""
    order, n = raster_order(peaks, counts)
    order = order[:, :max(int(n.max()), 1)]  # slots past every part's count never qualify
    ranked = np.take_along_axis(np.asarray(peaks), order[..., None], axis=1)  # (parts, m, 3) in raster order
    part_a, part_b = (np.array([limb[i] for limb in CMU18_PAF_LIMBS]) for i in (0, 1))
    scores = np.asarray(limb_scores)[np.arange(len(CMU18_PAF_LIMBS))[:, None, None], order[part_a][:, :, None],
                                     order[part_b][:, None, :]]
    total, qualifies = limb_totals(ranked[..., :2], n, scores, image_height)
    n = n.tolist()
    connections = connect_limbs(total, qualifies, n)
    people = assemble(n, ranked[..., 2].astype(np.float64).tolist(), connections, CMU18_PAF_LIMBS,
                      settings.min_parts, settings.min_mean_score)
    if not people:
        return []
    rows = np.array(people)
    ids = rows[:, :len(n)].astype(np.int64)
    candidates = np.concatenate([ranked[p, :n[p], :3] for p in range(len(n))]).astype(np.float64)
    found = ids >= 0
    keypoints = np.zeros((*ids.shape, 3))
    hit = candidates[ids[found]]
    keypoints[found] = np.column_stack([(hit[:, 0] - offset[0]) / scale, (hit[:, 1] - offset[1]) / scale, hit[:, 2]])
    return [Person(kp, float(total_score), CMU18) for kp, total_score in zip(keypoints, rows[:, -2])]


def truncated_parts(counts: np.ndarray, max_peaks: int) -> list[int]:
    """Parts whose peaks did not all fit in the engine's K slots (then the weakest were dropped)."""
    return [int(p) for p in np.flatnonzero(np.asarray(counts) > max_peaks)]
