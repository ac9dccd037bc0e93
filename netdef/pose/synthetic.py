"""Pose network outputs with known people (tests, benchmarks): OpenPose maps (heatmap blobs at the joints, unit
PAF vectors along the limbs, at the network's output resolution, stride 8) and HigherHRNet's parsed candidates
(top-k per joint with tags)."""
from __future__ import annotations

import numpy as np

from netdef.pose.skeleton import CMU18_HEATMAPS, CMU18_PAF_LIMBS, CMU18_PAFS

# One standing person in network-output cells (row, col); fractional so no two pixels tie after upsampling.
PERSON = np.array([
    (2.3, 4.2), (5.2, 4.1), (5.4, 2.2), (8.3, 1.3), (11.2, 1.2), (5.3, 6.2), (8.2, 7.3), (11.3, 7.2),
    (11.4, 3.2), (15.3, 3.3), (19.2, 3.2), (11.3, 5.3), (15.2, 5.2), (19.3, 5.3), (1.3, 3.3), (1.2, 5.2),
    (2.2, 2.3), (2.4, 6.3)])


def people_maps(offsets: list[tuple[float, float]], size: tuple[int, int], blob: float = 0.8, width: float = 0.9,
                joints_of: dict[int, list[int]] | None = None,
                scale: float = 1.0) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    """(paf (1, 38, h, w), heatmap (1, 19, h, w), joints per person (18, 2) as input-pixel x, y at stride 8).

    Person p is PERSON * scale shifted by offsets[p] (cells); `joints_of` {person: joint indices} makes partial
    people (limbs only between their joints)."""
    h, w = size
    rows, cols = np.mgrid[0:h, 0:w].astype(np.float64)
    heat = np.zeros((CMU18_HEATMAPS, h, w))
    paf = np.zeros((CMU18_PAFS, h, w))
    joints = []
    blob, width = blob * scale, width * scale
    for person, (dr, dc) in enumerate(offsets):
        pts = PERSON * scale + (dr, dc)
        present = set((joints_of or {}).get(person, range(len(pts))))
        for j, (r, c) in enumerate(pts):
            if j in present:
                heat[j] = np.maximum(heat[j], np.exp(-((rows - r) ** 2 + (cols - c) ** 2) / (2 * blob ** 2)))
        for a, b, cx, cy in CMU18_PAF_LIMBS:
            if a not in present or b not in present:
                continue
            (ra, ca), (rb, cb) = pts[a], pts[b]
            v = np.array([cb - ca, rb - ra])
            length = np.hypot(*v)
            u = v / length
            t = ((cols - ca) * u[0] + (rows - ra) * u[1]).clip(0, length)  # projection on the segment
            d = np.hypot(cols - (ca + t * u[0]), rows - (ra + t * u[1]))
            near = d <= width
            paf[cx][near], paf[cy][near] = u[0], u[1]
        joints.append(np.column_stack([pts[:, 1] * 8 + 3.5, pts[:, 0] * 8 + 3.5]))
    heat[-1] = 1 - heat[:-1].max(0)
    return paf[None], heat[None], joints


def tag_candidates(people: int, k: int = 30, size: int = 512, seed: int | None = None, joints: int = 17,
                   missing: float = 0.1, faint: float = 0.05, strays: int = 2
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """HigherHRNet's parsed outputs for one image with known people: (scores (J, k), keypoints (J, k, 2),
    tags (J, k), truth (people, J, 2)).

    Person p puts each joint in a random slot with a score in 0.3..1 and a tag near 3p; a joint is missing with
    probability `missing` and faint (score under the detection threshold, left to refinement) with `faint`;
    `strays` strong candidates carry tags far from everyone; the other slots hold weak distractors."""
    rng = np.random.default_rng(seed)
    if people > k:
        raise ValueError(f"tag_candidates: {people} people do not fit in {k} slots per joint")
    scores = rng.uniform(0.0, 0.08, (joints, k))
    keypoints = rng.uniform(0, size, (joints, k, 2))
    tags = rng.uniform(-3 * people - 20, 3 * people + 20, (joints, k))
    truth = rng.uniform(0, size, (people, joints, 2))
    for j in range(joints):
        slots = rng.permutation(k)
        for p in range(people):
            if rng.random() < missing:
                continue
            s = slots[p]
            high = rng.random() >= faint
            scores[j, s] = rng.uniform(0.3, 1.0) if high else rng.uniform(0.085, 0.1)
            keypoints[j, s], tags[j, s] = truth[p, j], 3.0 * p + rng.uniform(-0.3, 0.3)
        for s in slots[people:people + strays] if rng.random() < 0.3 else ():
            scores[j, s], tags[j, s] = rng.uniform(0.2, 0.9), rng.choice([-1, 1]) * (3 * people + rng.uniform(5, 15))
    return scores, keypoints, tags, truth
