"""Keypoint formats (names and limbs) and the `Person` every pose network returns."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Skeleton:
    """A keypoint format: names in output-channel order and limbs as (joint, joint) index pairs (0-based)."""

    name: str
    keypoints: tuple[str, ...]
    limbs: tuple[tuple[int, int], ...]

    @property
    def num_keypoints(self) -> int:
        return len(self.keypoints)


COCO17 = Skeleton(
    "coco17",
    ("nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder", "left_elbow",
     "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle",
     "right_ankle"),
    # COCO's skeleton (its 1-based pairs, made 0-based)
    ((15, 13), (13, 11), (16, 14), (14, 12), (11, 12), (5, 11), (6, 12), (5, 6), (5, 7), (6, 8), (7, 9), (8, 10),
     (1, 2), (0, 1), (0, 2), (1, 3), (2, 4), (3, 5), (4, 6)),
)


@dataclass
class Person:
    """One person: `keypoints` (K, 3) rows of x, y (input-image pixels) and score; score 0 = joint not found."""

    keypoints: np.ndarray
    score: float
    skeleton: Skeleton = field(default=COCO17, repr=False)

    def found(self) -> np.ndarray:
        """Indices of the joints that were found."""
        return np.flatnonzero(self.keypoints[:, 2] > 0)

    def as_dict(self) -> dict:
        return {"score": round(float(self.score), 4),
                "keypoints": {self.skeleton.keypoints[j]: [round(float(v), 2) for v in self.keypoints[j]]
                              for j in self.found()}}
