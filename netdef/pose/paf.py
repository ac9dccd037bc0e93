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


def connect_limb(a: np.ndarray, b: np.ndarray, scores: np.ndarray, image_height: float) -> np.ndarray:
    """The connections of one limb type: rows (i, j, score) with i indexing `a`, j indexing `b`.

    `a` (nA, >=2) and `b` (nB, >=2) hold the two parts' peaks (x, y first) in raster order, `scores` (nA, nB)
    the engine's mean PAF alignment (NO_LIMB where the sample criterion failed). A pair qualifies when its
    score plus the length prior min(0.5 * image_height / length - 1, 0) is positive; pairs are taken by
    decreasing total (ties in (i, j) order), each peak at most once, at most min(nA, nB) of them.
    """
    n_a, n_b = len(a), len(b)
    if n_a == 0 or n_b == 0:
        return np.zeros((0, 3))
    vec = b[None, :, :2].astype(np.float64) - a[:, None, :2].astype(np.float64)
    norm = np.maximum(np.sqrt((vec ** 2).sum(-1)), 0.001)
    total = scores.astype(np.float64) + np.minimum(0.5 * image_height / norm - 1.0, 0.0)
    ii, jj = np.nonzero((scores > NO_LIMB / 2) & (total > 0))  # row-major: the reference's loop order
    order = np.argsort(-total[ii, jj], kind="stable")
    used_a, used_b, rows = set(), set(), []
    for k in order:
        i, j = int(ii[k]), int(jj[k])
        if i in used_a or j in used_b:
            continue
        used_a.add(i)
        used_b.add(j)
        rows.append((i, j, total[i, j]))
        if len(rows) >= min(n_a, n_b):
            break
    return np.array(rows, dtype=np.float64).reshape(-1, 3)


def assemble(peaks: Sequence[np.ndarray], connections: Sequence[np.ndarray],
             limbs: Sequence[tuple[int, int, int, int]] = CMU18_PAF_LIMBS,
             min_parts: int = 4, min_mean_score: float = 0.4) -> tuple[np.ndarray, np.ndarray]:
    """Merge limb connections into people, limb by limb, as the reference does.

    `peaks[p]` (n_p, >=3: x, y, score) per part; `connections[k]` rows (i, j, score) of limb k (connect_limb).
    Returns (candidates (N, 4): x, y, score, id over all parts in part order; people (P, parts + 2): the
    candidate id of each part or -1, then the total score and the number of parts).
    """
    parts = len(peaks)
    offsets = np.cumsum([0] + [len(p) for p in peaks])
    candidates = np.concatenate([np.column_stack([np.asarray(p, np.float64).reshape(-1, 3)[:, :3],
                                                  np.arange(offsets[q], offsets[q + 1])])
                                 for q, p in enumerate(peaks)]) if offsets[-1] else np.zeros((0, 4))
    people = np.zeros((0, parts + 2))
    last_new_limb = len(limbs) - 2  # the shoulder-ear limbs only extend people found before
    for k, (part_a, part_b, _, _) in enumerate(limbs):
        if len(peaks[part_a]) == 0 or len(peaks[part_b]) == 0:
            continue
        for i, j, score in np.asarray(connections[k]).reshape(-1, 3):
            id_a, id_b = offsets[part_a] + int(i), offsets[part_b] + int(j)
            found = [r for r in range(len(people)) if people[r, part_a] == id_a or people[r, part_b] == id_b][:2]
            if len(found) == 1:
                row = people[found[0]]
                if row[part_b] != id_b:
                    row[part_b] = id_b
                    row[-1] += 1
                    row[-2] += candidates[id_b, 2] + score
            elif len(found) == 2 and _overlap(people[found[0]], people[found[1]], parts):
                row = people[found[0]]  # the reference extends the first one, without the check above
                row[part_b] = id_b
                row[-1] += 1
                row[-2] += candidates[id_b, 2] + score
            elif len(found) == 2:  # two disjoint partial people joined by this limb: merge them
                first, second = people[found[0]], people[found[1]]
                first[:parts] += second[:parts] + 1
                first[-2:] += second[-2:]
                first[-2] += score
                people = np.delete(people, found[1], axis=0)
            elif not found and k < last_new_limb:
                row = np.full(parts + 2, -1.0)
                row[part_a], row[part_b] = id_a, id_b
                row[-1] = 2
                row[-2] = candidates[id_a, 2] + candidates[id_b, 2] + score
                people = np.vstack([people, row])
    keep = (people[:, -1] >= min_parts) & (people[:, -2] / np.maximum(people[:, -1], 1) >= min_mean_score)
    return candidates, people[keep]


def _overlap(first: np.ndarray, second: np.ndarray, parts: int) -> bool:
    """Whether two partial people share a part (then they are not merged)."""
    return bool(((first[:parts] >= 0) & (second[:parts] >= 0)).any())


def canonical(peaks: np.ndarray, counts: np.ndarray,
              limb_scores: np.ndarray) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """One image's parsed outputs as the reference orders them: per part the real peaks (n, 3) in raster order
    (the engine ranks them by strength), per limb its (nA, nB) scores reordered alike."""
    k_max = peaks.shape[1]
    order = []
    for part in range(peaks.shape[0]):
        rows = peaks[part, :min(int(counts[part]), k_max)]
        order.append(np.lexsort((rows[:, 0], rows[:, 1])))
    part_peaks = [peaks[p, o] for p, o in enumerate(order)]
    scores = [limb_scores[k][np.ix_(order[a], order[b])] for k, (a, b, _, _) in enumerate(CMU18_PAF_LIMBS)]
    return part_peaks, scores


def image_people(peaks: np.ndarray, counts: np.ndarray, limb_scores: np.ndarray, image_height: float,
                 settings: PafSettings = PafSettings(), scale: float = 1.0,
                 offset: tuple[float, float] = (0.0, 0.0)) -> list[Person]:
    """People in one image from its parsed engine outputs (`peaks` (18, K, 3), `counts` (18,),
    `limb_scores` (19, K, K)). `image_height` is the image's height in input pixels (the length prior);
    keypoints map back to image pixels as (xy - offset) / scale."""
    part_peaks, scores = canonical(peaks, counts, limb_scores)
    connections = [connect_limb(part_peaks[a], part_peaks[b], scores[k], image_height)
                   for k, (a, b, _, _) in enumerate(CMU18_PAF_LIMBS)]
    candidates, people = assemble(part_peaks, connections, CMU18_PAF_LIMBS, settings.min_parts,
                                  settings.min_mean_score)
    result = []
    for row in people:
        keypoints = np.zeros((len(part_peaks), 3))
        for part, cid in enumerate(row[:len(part_peaks)]):
            if cid >= 0:
                x, y, score = candidates[int(cid), :3]
                keypoints[part] = ((x - offset[0]) / scale, (y - offset[1]) / scale, score)
        result.append(Person(keypoints, float(row[-2]), CMU18))
    return result


def truncated_parts(counts: np.ndarray, max_peaks: int) -> list[int]:
    """Parts whose peaks did not all fit in the engine's K slots (then the weakest were dropped)."""
    return [int(p) for p in np.flatnonzero(np.asarray(counts) > max_peaks)]
