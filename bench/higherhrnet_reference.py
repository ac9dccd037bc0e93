"""The reference's associative-embedding grouping (HRNet/HigherHRNet-Human-Pose-Estimation, lib/core/group.py
`HeatmapParser.match_by_tag` and `refine`), re-stated for timing and as a test oracle.

Written for this benchmark (not copied): the same steps with the same data structures (people in a dict keyed by
their first tag, tag lists averaged with np.mean per joint, the Munkres assignment of the `munkres` package the
reference uses; scipy's linear_sum_assignment where that package is not installed). Its input is what netdef's
parsed engine returns, the top-k candidates per joint; `refine` searches those candidates (netdef.pose.grouping's
docstring says why) where the reference searches the whole heatmap.
"""
from __future__ import annotations

import numpy as np

from netdef.pose.grouping import COCO_JOINT_ORDER


def assignment_solver() -> tuple[str, object]:
    """(name, function cost -> (row, column) pairs by row): munkres as the reference, else scipy."""
    try:
        from munkres import Munkres

        return "munkres", lambda cost: np.array(Munkres().compute(cost.tolist())).astype(np.int32)
    except ImportError:
        from scipy.optimize import linear_sum_assignment

        return "scipy", lambda cost: np.stack(linear_sum_assignment(cost), axis=1)


def match_by_tag(scores: np.ndarray, keypoints: np.ndarray, tags: np.ndarray, solve=None,
                 detection_threshold: float = 0.1, tag_threshold: float = 1.0, max_people: int = 30) -> np.ndarray:
    """People (P, J, 3 + D) float32 from one image's candidates (J, k), (J, k, 2), (J, k[, D])."""
    solve = solve or assignment_solver()[1]
    tags = tags[..., None] if tags.ndim == 2 else tags
    default = np.zeros((scores.shape[0], 3 + tags.shape[2]))
    joint_dict: dict = {}
    tag_dict: dict = {}
    for i, idx in enumerate(COCO_JOINT_ORDER):
        joints = np.concatenate((keypoints[idx], scores[idx, :, None], tags[idx]), 1)
        mask = joints[:, 2] > detection_threshold
        joint_tags, joints = tags[idx][mask], joints[mask]
        if joints.shape[0] == 0:
            continue
        if i == 0 or len(joint_dict) == 0:
            for tag, joint in zip(joint_tags, joints):
                key = tag[0]
                joint_dict.setdefault(key, np.copy(default))[idx] = joint
                tag_dict[key] = [tag]
            continue
        grouped_keys = list(joint_dict.keys())[:max_people]
        grouped_tags = [np.mean(tag_dict[k], axis=0) for k in grouped_keys]
        diff = joints[:, None, 3:] - np.array(grouped_tags)[None, :, :]
        diff_normed = np.linalg.norm(diff, ord=2, axis=2)
        diff_saved = np.copy(diff_normed)
        diff_normed = np.round(diff_normed) * 100 - joints[:, 2:3]
        num_added, num_grouped = diff.shape[0], diff.shape[1]
        if num_added > num_grouped:
            diff_normed = np.concatenate((diff_normed, np.zeros((num_added, num_added - num_grouped)) + 1e10), axis=1)
        for row, col in solve(diff_normed):
            if row < num_added and col < num_grouped and diff_saved[row][col] < tag_threshold:
                key = grouped_keys[col]
                joint_dict[key][idx] = joints[row]
                tag_dict[key].append(joint_tags[row])
            else:
                key = joint_tags[row][0]
                joint_dict.setdefault(key, np.copy(default))[idx] = joints[row]
                tag_dict[key] = [joint_tags[row]]
    return np.array([joint_dict[k] for k in joint_dict]).astype(np.float32)


def refine(person: np.ndarray, scores: np.ndarray, keypoints: np.ndarray, tags: np.ndarray) -> np.ndarray:
    """The person's missing joints from the candidates with the best score - round(tag distance to its mean)."""
    tags = tags[..., None] if tags.ndim == 2 else tags
    found = [person[i, 3:] for i in range(person.shape[0]) if person[i, 2] > 0]
    prev_tag = np.mean(found, axis=0)
    person = person.copy()
    for i in range(person.shape[0]):
        tt = ((tags[i] - prev_tag[None, :]) ** 2).sum(axis=1) ** 0.5
        best = int(np.argmax(scores[i] - np.round(tt)))
        if scores[i, best] > 0 and person[i, 2] == 0:
            person[i, :2] = keypoints[i, best]
            person[i, 2] = scores[i, best]
    return person


def group(scores: np.ndarray, keypoints: np.ndarray, tags: np.ndarray, solve=None) -> list[tuple[np.ndarray, float]]:
    """(keypoints (J, 3), score = mean joint score before refinement) per person, as the reference's parse."""
    people = match_by_tag(scores, keypoints, tags, solve)
    return [(refine(p, scores, keypoints, tags)[:, :3], float(p[:, 2].mean())) for p in people]
