"""Associative-embedding grouping (HigherHRNet): keypoint candidates -> people, as the reference's HeatmapParser.

Input per image: the engine's parsed candidates, `scores` (J, k), `keypoints` (J, k, 2) and `tags` (J, k[, D]).
- `match_by_tag`: joints in the reference's order; the first joint's candidates above the detection
  threshold each start a person; every later joint's candidates are matched to the people so far by a
  minimum-cost assignment on round(tag distance) * 100 - score (distances at or beyond the tag threshold
  start new people instead);
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

    The Hungarian method with potentials (shortest augmenting paths), inner loops over columns in numpy.
    """
    cost = np.asarray(cost, dtype=np.float64)
    n, m = cost.shape
    if n > m:
        raise ValueError(f"min_cost_assignment: {n} rows cannot all be matched to {m} columns")
    u, v = np.zeros(n + 1), np.zeros(m + 1)
    owner = np.zeros(m + 1, dtype=np.int64)  # owner[j]: row (1-based) holding column j, 0 = free; column 0 is virtual
    way = np.zeros(m + 1, dtype=np.int64)
    for row in range(1, n + 1):
        owner[0], col = row, 0
        slack = np.full(m + 1, np.inf)
        used = np.zeros(m + 1, dtype=bool)
        while True:
            used[col] = True
            i = owner[col]
            free = ~used
            free[0] = False
            reduced = cost[i - 1] - u[i] - v[1:]
            better = free[1:] & (reduced < slack[1:])
            slack[1:][better] = reduced[better]
            way[1:][better] = col
            candidates = np.flatnonzero(free)
            nxt = candidates[np.argmin(slack[candidates])]
            delta = slack[nxt]
            u[owner[used]] += delta
            v[used] -= delta
            slack[free] -= delta
            col = nxt
            if owner[col] == 0:
                break
        while col:  # flip the augmenting path
            prev = way[col]
            owner[col] = owner[prev]
            col = prev
    return sorted((int(owner[j]) - 1, j - 1) for j in range(1, m + 1) if owner[j])


def _candidates(scores: np.ndarray, keypoints: np.ndarray, tags: np.ndarray) -> np.ndarray:
    """(J, k, 3 + D) rows of x, y, score, tag... (the reference's per-joint `joints` arrays)."""
    tags = tags[..., None] if tags.ndim == 2 else tags
    return np.concatenate([keypoints, scores[..., None], tags], axis=2).astype(np.float64)


def match_by_tag(scores: np.ndarray, keypoints: np.ndarray, tags: np.ndarray,
                 settings: GroupingSettings = GroupingSettings()) -> np.ndarray:
    """People (P, J, 3 + D) from one image's candidates; a joint nobody claimed stays all zeros."""
    candidates = _candidates(np.asarray(scores), np.asarray(keypoints), np.asarray(tags))
    num_joints, _, width = candidates.shape
    people: list[np.ndarray] = []  # (J, 3 + D) per person, in creation order (the reference's dict order)
    person_tags: list[list[np.ndarray]] = []

    def new_person(joint: int, row: np.ndarray) -> None:
        person = np.zeros((num_joints, width))
        person[joint] = row
        people.append(person)
        person_tags.append([row[3:]])

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
        means = np.array([np.mean(person_tags[p], axis=0) for p in range(grouped)])
        distance = np.linalg.norm(rows[:, None, 3:] - means[None], axis=2)
        cost = np.round(distance) * 100 - rows[:, 2:3] if settings.use_detection_val else distance.copy()
        if len(rows) > grouped:
            cost = np.concatenate([cost, np.full((len(rows), len(rows) - grouped), UNMATCHED)], axis=1)
        for r, c in min_cost_assignment(cost):
            if c < grouped and distance[r, c] < settings.tag_threshold:
                people[c][joint] = rows[r]
                person_tags[c].append(rows[r, 3:])
            else:
                new_person(joint, rows[r])
    return np.array(people).reshape(-1, num_joints, width)


def refine(person: np.ndarray, scores: np.ndarray, keypoints: np.ndarray, tags: np.ndarray) -> np.ndarray:
    """Fill a person's missing joints from the candidates closest to its mean tag (see the module docstring)."""
    candidates = _candidates(np.asarray(scores), np.asarray(keypoints), np.asarray(tags))
    found = person[:, 2] > 0
    if not found.any():
        return person
    mean_tag = person[found, 3:].mean(axis=0)
    person = person.copy()
    for joint in np.flatnonzero(~found):
        rows = candidates[joint]
        value = rows[:, 2] - np.round(np.linalg.norm(rows[:, 3:] - mean_tag, axis=1))
        best = rows[int(np.argmax(value))]
        if best[2] > 0:
            person[joint, :3] = best[:3]
    return person


def group(scores: np.ndarray, keypoints: np.ndarray, tags: np.ndarray,
          settings: GroupingSettings = GroupingSettings()) -> list[tuple[np.ndarray, float]]:
    """(keypoints (J, 3) x, y, score in input pixels, person score) per person of one image.

    The person score is the mean joint score before refinement, as the reference reports it.
    """
    scores, keypoints, tags = np.asarray(scores), np.asarray(keypoints), np.asarray(tags)
    _check_shapes(scores, keypoints, tags)
    people = match_by_tag(scores, keypoints, tags, settings)
    result = []
    for person in people:
        score = float(person[:, 2].mean())
        if settings.refine:
            person = refine(person, scores, keypoints, tags)
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
