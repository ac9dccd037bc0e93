"""Associative-embedding grouping (HigherHRNet): keypoint candidates -> people, as the reference's HeatmapParser.

Input per image: the engine's parsed candidates, `scores` (J, k), `keypoints` (J, k, 2) and `tags` (J, k[, D]).
- `match_by_tag`: joints in the reference's order; the first joint's candidates above the detection
  threshold each start a person; every later joint's candidates are matched to the people so far by a
  minimum-cost assignment on round(tag distance) * 100 - score (distances at or beyond the tag threshold
  start new people instead), with the reference's Munkres tie-breaks (`min_cost_assignment`);
- `refine`: a person's missing joints are filled with the candidate that maximises score - round(distance
  to the person's mean tag). The reference searches the whole heatmap; here the search is over the
  engine's top-k candidates of that joint (peaks after NMS), which is what the engine returns.
The quarter-pixel adjustment (HeatmapParser.adjust) already happened in the engine. Only numpy.
"""
from __future__ import annotations

from dataclasses import dataclass
import numpy as np

# The reference's joint order for COCO (nose, eyes, ears, shoulders, hips, then elbows, wrists, knees, ankles).
COCO_JOINT_ORDER = (0, 1, 2, 3, 4, 5, 6, 11, 12, 7, 8, 9, 10, 13, 14, 15, 16)
UNMATCHED = 1e10  # cost of a padding column (the reference's value)


@dataclass(frozen=True)
class GroupingSettings:
    """The reference's TEST settings for the w32_512 / w48_640 experiments (lib/config/default.py + yaml)."""

    detection_threshold: float = 0.1
    tag_threshold: float = 1.0
    use_detection_val: bool = True
    ignore_too_much: bool = False
    max_people: int = 30
    refine: bool = True
    joint_order: tuple[int, ...] = COCO_JOINT_ORDER


def min_cost_assignment(cost: np.ndarray) -> list[tuple[int, int]]:
    """Rows matched to distinct columns at minimum total cost (rows <= columns): (row, column) pairs by row.

    The grouping's costs tie often (whole hundreds per rounded tag distance, one score per row), and which of
    several optimal assignments comes out decides who gets a joint; so ties are broken as the reference's solver
    (the `munkres` package's Munkres method) breaks them: its steps, scan orders and float operations, each
    step on whole rows and columns in numpy. Where every row has a distinct column of strictly least cost, that
    is the only optimum and is returned at once.
    """
    cost = np.asarray(cost, dtype=np.float64)
    n_rows, n = cost.shape
    if n_rows > n:
        raise ValueError(f"min_cost_assignment: {n_rows} rows cannot all be matched to {n} columns")
    if n_rows == 0:
        return []
    best = cost.argmin(axis=1)
    least = cost[np.arange(n_rows), best]
    if len(set(best.tolist())) == n_rows and ((cost > least[:, None]).sum(axis=1) == n - 1).all():
        return [(r, int(c)) for r, c in enumerate(best)]
    return _munkres(cost)


def _munkres(cost: np.ndarray) -> list[tuple[int, int]]:
    """Munkres' method as the `munkres` package runs it (zero rows pad the matrix to square). The matrix updates
    are numpy; the searches walk each row's few zeros in Python (kept per row, renewed when the matrix changes)."""
    n_rows, n = cost.shape
    c = np.zeros((n, n))
    c[:n_rows] = cost
    c -= c.min(axis=1, keepdims=True)  # step 1
    zeros = _zeros_by_row(c)
    star_of_row, star_of_col = [-1] * n, [-1] * n
    for i in range(n):  # step 2: star the first free zero of each row
        for j in zeros[i]:
            if star_of_col[j] < 0:
                star_of_row[i], star_of_col[j] = j, i
                break
    while sum(s >= 0 for s in star_of_col) < n:  # step 3
        row_cov, col_cov = [False] * n, [s >= 0 for s in star_of_col]
        prime_of_row = [-1] * n
        row, col = 0, 0
        while True:  # step 4 (step 6 returns here with the scan restarted)
            zero = _find_a_zero(zeros, row_cov, col_cov, row, col)
            if zero is None:  # step 6
                rows, cols = np.array(row_cov), np.array(col_cov)
                m = c[~rows][:, ~cols].min()
                c[rows] += m
                c[:, ~cols] -= m
                zeros = _zeros_by_row(c)
                row, col = 0, 0
                continue
            row, col = zero
            prime_of_row[row] = col
            if star_of_row[row] < 0:
                break
            col = star_of_row[row]
            row_cov[row], col_cov[col] = True, False
        while True:  # step 5: along the alternating path, primes become stars
            r = star_of_col[col]
            star_of_row[row], star_of_col[col] = col, row
            if r < 0:
                break
            row, col = r, prime_of_row[r]
    return [(i, star_of_row[i]) for i in range(n_rows)]


def _zeros_by_row(c: np.ndarray) -> list[list[int]]:
    rows, cols = np.nonzero(c == 0)  # row-major
    ends = np.cumsum(np.bincount(rows, minlength=len(c))).tolist()
    cols = cols.tolist()
    return [cols[a:b] for a, b in zip([0] + ends[:-1], ends)]


def _find_a_zero(zeros: list[list[int]], row_cov: list[bool], col_cov: list[bool], i0: int,
                 j0: int) -> tuple[int, int] | None:
    """An uncovered zero as munkres' scan finds it: the first row from i0 on (wrapping) that has one, and in it
    the last one in column order from j0 on (wrapping), as its loop overwrites earlier hits."""
    n = len(zeros)
    for i in (*range(i0, n), *range(i0)):
        if row_cov[i]:
            continue
        free = [j for j in zeros[i] if not col_cov[j]]
        if free:
            return i, max(free, key=lambda j: (j - j0) % n)
    return None


def _candidates(scores: np.ndarray, keypoints: np.ndarray, tags: np.ndarray) -> np.ndarray:
    """(J, k, 3 + D) rows of x, y, score, tag... (the reference's per-joint `joints` arrays)."""
    tags = tags[..., None] if tags.ndim == 2 else tags
    return np.concatenate([keypoints, scores[..., None], tags], axis=2).astype(np.float64)


def match_by_tag(scores: np.ndarray, keypoints: np.ndarray, tags: np.ndarray,
                 settings: GroupingSettings = GroupingSettings()) -> np.ndarray:
    """People (P, J, 3 + D) from one image's candidates; a joint nobody claimed stays all zeros."""
    return _match(_candidates(np.asarray(scores), np.asarray(keypoints), np.asarray(tags)), settings)


def _match(candidates: np.ndarray, settings: GroupingSettings) -> np.ndarray:
    num_joints, _, width = candidates.shape
    people: list[np.ndarray] = []  # (J, 3 + D) per person, in creation order (the reference's dict order)
    person_tags: list[np.ndarray] = []  # (J, D) per person: its tags in the order they came, `counts` of them
    counts: list[int] = []

    def new_person(joint: int, row: np.ndarray) -> None:
        person = np.zeros((num_joints, width))
        person[joint] = row
        people.append(person)
        person_tags.append(np.zeros((num_joints, width - 3)))
        person_tags[-1][0] = row[3:]
        counts.append(1)

    for step, joint in enumerate(settings.joint_order):
        rows = candidates[joint][candidates[joint][:, 2] > settings.detection_threshold]
        if len(rows) == 0:
            continue
        if step == 0 or not people:
            for row in rows:
                new_person(joint, row)
            continue
        grouped = min(len(people), settings.max_people)
        if settings.ignore_too_much and grouped == settings.max_people:
            continue
        # np.mean(tags, axis=0) as the reference, without its per-call overhead: the same sum, then / count
        means = np.array([np.add.reduce(person_tags[p][:counts[p]], axis=0) / counts[p] for p in range(grouped)])
        distance = np.linalg.norm(rows[:, None, 3:] - means[None], axis=2)
        cost = np.round(distance) * 100 - rows[:, 2:3] if settings.use_detection_val else distance.copy()
        if len(rows) > grouped:
            cost = np.concatenate([cost, np.full((len(rows), len(rows) - grouped), UNMATCHED)], axis=1)
        for r, c in min_cost_assignment(cost):
            if c < grouped and distance[r, c] < settings.tag_threshold:
                people[c][joint] = rows[r]
                person_tags[c][counts[c]] = rows[r, 3:]
                counts[c] += 1
            else:
                new_person(joint, rows[r])
    return np.array(people).reshape(-1, num_joints, width)


def refine(person: np.ndarray, scores: np.ndarray, keypoints: np.ndarray, tags: np.ndarray) -> np.ndarray:
    """Fill a person's missing joints from the candidates closest to its mean tag (see the module docstring)."""
    return _refine(person, _candidates(np.asarray(scores), np.asarray(keypoints), np.asarray(tags)))


def _refine(person: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    found = person[:, 2] > 0
    if not found.any() or found.all():
        return person
    mean_tag = person[found, 3:].mean(axis=0)
    person = person.copy()
    missing = np.flatnonzero(~found)
    rows = candidates[missing]  # (missing joints, k, 3 + D)
    value = rows[:, :, 2] - np.round(np.linalg.norm(rows[:, :, 3:] - mean_tag, axis=2))
    best = rows[np.arange(len(missing)), value.argmax(axis=1)]
    take = best[:, 2] > 0
    person[missing[take], :3] = best[take, :3]
    return person


def group(scores: np.ndarray, keypoints: np.ndarray, tags: np.ndarray,
          settings: GroupingSettings = GroupingSettings()) -> list[tuple[np.ndarray, float]]:
    """(keypoints (J, 3) x, y, score in input pixels, person score) per person of one image.

    The person score is the mean joint score before refinement, as the reference reports it.
    """
    scores, keypoints, tags = np.asarray(scores), np.asarray(keypoints), np.asarray(tags)
    _check_shapes(scores, keypoints, tags)
    candidates = _candidates(scores, keypoints, tags)
    result = []
    for person in _match(candidates, settings):
        score = float(person[:, 2].mean())
        if settings.refine:
            person = _refine(person, candidates)
        result.append((person[:, :3].astype(np.float32), score))
    return result


def group_batch(scores: np.ndarray, keypoints: np.ndarray, tags: np.ndarray,
                settings: GroupingSettings = GroupingSettings()) -> list[list[tuple[np.ndarray, float]]]:
    """`group` for every image of a batch (B, J, k), (B, J, k, 2), (B, J, k[, D])."""
    return [group(s, k, t, settings) for s, k, t in zip(scores, keypoints, tags)]


def _check_shapes(scores: np.ndarray, keypoints: np.ndarray, tags: np.ndarray) -> None:
    if keypoints.shape != scores.shape + (2,) or tags.shape[:scores.ndim] != scores.shape:
        raise ValueError(f"candidates: scores {scores.shape}, keypoints {keypoints.shape} and tags {tags.shape} "
                         "do not describe the same (joints, k) candidates")
