"""Keypoint formats (names and limbs) and the `Person` every pose network returns."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Sequence

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


# --- CMU body (OpenPose, 18 keypoints) ------------------------------------------------------------------
# Heatmap channel order of the CMU COCO body model; channel 18 is the background.
CMU18 = Skeleton(
    "cmu18",
    ("nose", "neck", "right_shoulder", "right_elbow", "right_wrist", "left_shoulder", "left_elbow", "left_wrist",
     "right_hip", "right_knee", "right_ankle", "left_hip", "left_knee", "left_ankle", "right_eye", "left_eye",
     "right_ear", "left_ear"),
    # the 17 limbs OpenPose draws (the first 17 of CMU18_PAF_LIMBS)
    ((1, 2), (1, 5), (2, 3), (3, 4), (5, 6), (6, 7), (1, 8), (8, 9), (9, 10), (1, 11), (11, 12), (12, 13), (1, 0),
     (0, 14), (14, 16), (0, 15), (15, 17)),
)

# The 19 limbs the part affinity fields connect, in the order people are assembled: (joint A, joint B,
# PAF channel of the x component, PAF channel of the y component). The last two (shoulder-ear) only
# confirm people found through other limbs; they are never drawn.
CMU18_PAF_LIMBS: tuple[tuple[int, int, int, int], ...] = (
    (1, 2, 12, 13), (1, 5, 20, 21), (2, 3, 14, 15), (3, 4, 16, 17), (5, 6, 22, 23), (6, 7, 24, 25), (1, 8, 0, 1),
    (8, 9, 2, 3), (9, 10, 4, 5), (1, 11, 6, 7), (11, 12, 8, 9), (12, 13, 10, 11), (1, 0, 28, 29), (0, 14, 30, 31),
    (14, 16, 34, 35), (0, 15, 32, 33), (15, 17, 36, 37), (2, 16, 18, 19), (5, 17, 26, 27),
)
CMU18_HEATMAPS = 19  # 18 keypoints + background
CMU18_PAFS = 2 * len(CMU18_PAF_LIMBS)  # 38


def parsed_arrays(outputs: Mapping[str, np.ndarray], names: Sequence[str], network: str) -> list[np.ndarray]:
    """The parsed engine outputs `names` as arrays, or a clear error naming what a raw-output engine lacks."""
    missing = [n for n in names if n not in outputs]
    if missing:
        raise ValueError(f"{network} outputs {sorted(outputs)} lack {missing}: build the engine with "
                         "outputs='parsed' (the default)")
    return [np.asarray(outputs[n]) for n in names]
