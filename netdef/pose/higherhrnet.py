"""HigherHRNet on the host: images in, people out, around an engine built with outputs="parsed".

    from netdef.pose.higherhrnet import estimate
    with InferenceSession.from_engine("higherhrnet-w32.engine") as session:
        people = estimate(session, ["a.jpg", "b.jpg"])   # per image: [Person(keypoints (17, 3), score), ...]

`preprocess` letterboxes an image into the engine's input (aspect kept, centred on black, which the reference's
affine warp pads with) and normalizes it with ImageNet's mean/std; `people` groups the engine's candidates
(netdef.pose.grouping) and maps them back to image pixels. Only numpy (and Pillow to decode files).
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from netdef.pose.grouping import GroupingSettings, group
from netdef.pose.skeleton import COCO17, Person, parsed_arrays
from netdef.preprocess import IMAGENET_MEAN, IMAGENET_STD, image_input, recorded_mean_std

PARSED = ("scores", "keypoints", "tags")


def preprocess(image: Any, input_size: tuple[int, int], mean: Sequence[float] = IMAGENET_MEAN,
               std: Sequence[float] = IMAGENET_STD) -> tuple[np.ndarray, Any]:
    """An image (path, PIL image or HxWx3 uint8 RGB array) -> ((3, H, W) float32 normalized RGB, Letterbox)."""
    from netdef.detect import letterbox
    from netdef.preprocess import load_image

    rgb = image if isinstance(image, np.ndarray) and image.dtype == np.uint8 and image.ndim == 3 \
        else np.asarray(load_image(image), dtype=np.uint8)
    x, info = letterbox(rgb, input_size, fill=0.0)  # RGB 0..1
    x = (x - np.asarray(mean, np.float32)[:, None, None]) / np.asarray(std, np.float32)[:, None, None]
    return np.ascontiguousarray(x, dtype=np.float32), info


def people(outputs: Mapping[str, np.ndarray], letterboxes: Sequence[Any] | None = None,
           settings: GroupingSettings = GroupingSettings()) -> list[list[Person]]:
    """People per image from parsed engine outputs; keypoints in each original image's pixels (input pixels
    where no letterbox is given), best person first."""
    scores, keypoints, tags = parsed_arrays(outputs, PARSED, "HigherHRNet")
    result = []
    for b in range(scores.shape[0]):
        info = letterboxes[b] if letterboxes is not None else None
        found = []
        for joints, score in group(scores[b], keypoints[b], tags[b], settings):
            joints = joints.copy()
            if info is not None:
                joints[:, 0] = (joints[:, 0] - info.pad_x) / info.scale
                joints[:, 1] = (joints[:, 1] - info.pad_y) / info.scale
            joints[joints[:, 2] <= 0, :2] = 0  # a joint nobody found has no position
            found.append(Person(joints, score, COCO17))
        result.append(sorted(found, key=lambda p: -p.score))
    return result


def estimate(session: Any, images: Sequence[Any], settings: GroupingSettings | None = None) -> list[list[Person]]:
    """Run a parsed HigherHRNet session (engine or netdef executor) on images; people per image."""
    spec = session.inputs[0]
    size = (int(spec.shape[2]), int(spec.shape[3]))
    mean, std = recorded_mean_std(session.meta)
    prepared = [preprocess(image, size, mean, std) for image in images]
    outputs = session.infer({session.input_names[0]: image_input(session, np.stack([x for x, _ in prepared]))})
    return people(outputs, [info for _, info in prepared], settings or GroupingSettings())
