"""OpenPose on the host: images in, people out, around an engine built with outputs="parsed".

    from netdef.pose.openpose import estimate
    with InferenceSession.from_engine("openpose.engine") as session:
        people = estimate(session, ["a.jpg", "b.jpg"])   # per image: [Person(keypoints (18, 3), score), ...]

`preprocess` letterboxes an image into the engine's input (aspect kept, centred on the reference's 128
grey) as BGR / 256 - 0.5; `people` maps the parsed outputs back to image pixels through
netdef.pose.paf. Only numpy (and Pillow to decode files).
"""
from __future__ import annotations

import logging
from typing import Any, Mapping, Sequence

import numpy as np

from netdef.pose.paf import PafSettings, image_people, truncated_parts
from netdef.pose.skeleton import Person, parsed_arrays
from netdef.preprocess import OPENPOSE, image_input

log = logging.getLogger("netdef.pose")
PARSED = ("peaks", "peak_counts", "limb_scores")


def preprocess(image: Any, input_size: tuple[int, int]) -> tuple[np.ndarray, Any]:
    """An image (path, PIL image or HxWx3 uint8 RGB array) -> ((3, H, W) float32 BGR / 256 - 0.5, Letterbox).

    The image keeps its aspect ratio (Pillow's bicubic where it must be resized; the reference uses cv2's),
    centred on the reference's 128 grey, which normalises to 0."""
    from netdef.detect import Letterbox, letterbox_geometry
    from netdef.preprocess import load_image

    rgb = image if isinstance(image, np.ndarray) and image.dtype == np.uint8 and image.ndim == 3 \
        else np.asarray(load_image(image), dtype=np.uint8)
    info, (new_h, new_w) = letterbox_geometry(rgb.shape[:2], input_size)
    if (new_h, new_w) != rgb.shape[:2]:
        from PIL import Image

        rgb = np.asarray(Image.fromarray(rgb).resize((new_w, new_h), Image.BICUBIC))
    top, left = int(info.pad_y), int(info.pad_x)
    x = np.empty((3, *info.input_size), np.float32)
    if (new_h, new_w) != tuple(info.input_size):
        x[:] = OPENPOSE.normalize(np.full((3, 1, 1), 128, np.uint8))  # the grey border (0)
    OPENPOSE.normalize(rgb.transpose(2, 0, 1), out=x[:, top:top + new_h, left:left + new_w])
    info = Letterbox(info.scale, float(left), float(top), info.original_size, info.input_size)
    return x, info


def settings_from_meta(meta: Mapping[str, Any]) -> PafSettings:
    """The parse settings an engine was built with (its sidecar's `paf` entry)."""
    paf = dict(meta.get("paf") or {})
    known = {k: paf[k] for k in ("max_peaks", "peak_threshold", "limb_threshold", "samples") if k in paf}
    return PafSettings(**known)


def people(outputs: Mapping[str, np.ndarray], letterboxes: Sequence[Any],
           settings: PafSettings = PafSettings()) -> list[list[Person]]:
    """People per image from parsed engine outputs; keypoints in each original image's pixels."""
    peaks, counts, limbs = parsed_arrays(outputs, PARSED, "OpenPose")
    result = []
    for b, info in enumerate(letterboxes):
        lost = truncated_parts(counts[b], peaks.shape[2])
        if lost:
            log.warning("image %d: parts %s have more than %d peaks; the weakest were dropped (build with a larger "
                        "max_peaks)", b, lost, peaks.shape[2])
        height = info.original_size[0] * info.scale  # the image's height in input pixels (the length prior)
        result.append(image_people(peaks[b], counts[b], limbs[b], height, settings, info.scale,
                                   (info.pad_x, info.pad_y)))
    return result


def estimate(session: Any, images: Sequence[Any], settings: PafSettings | None = None) -> list[list[Person]]:
    """Run a parsed OpenPose session (engine or netdef executor) on images; people per image."""
    spec = session.inputs[0]
    size = (int(spec.shape[2]), int(spec.shape[3]))
    prepared = [preprocess(image, size) for image in images]
    outputs = session.infer({session.input_names[0]: image_input(session, np.stack([x for x, _ in prepared]))})
    return people(outputs, [info for _, info in prepared], settings or settings_from_meta(session.meta))
