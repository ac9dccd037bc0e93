"""Skeletons of people (any Skeleton) drawn on a copy of an image with Pillow, saved atomically."""
from __future__ import annotations

import colorsys
import os
from typing import Any, Sequence

from netdef.pose.skeleton import Person


def palette(n: int) -> list[tuple[int, int, int]]:
    """n evenly spaced saturated colours."""
    rgb = [colorsys.hsv_to_rgb(i / max(n, 1), 0.9, 1.0) for i in range(n)]
    return [(int(255 * r), int(255 * g), int(255 * b)) for r, g, b in rgb]


def draw_people(image: Any, people: Sequence[Person], path: str | os.PathLike, radius: int = 3, width: int = 3) -> None:
    """Limbs whose both joints were found as lines (a colour per limb), found joints as dots; the file's suffix
    picks the format (.jpg, .png)."""
    from PIL import Image, ImageDraw

    from netdef.atomic import atomic_path
    from netdef.preprocess import load_image

    fmt = Image.registered_extensions().get(os.path.splitext(os.fspath(path))[1].lower())
    if fmt is None:
        raise ValueError(f"{os.fspath(path)}: unknown image format (use .jpg or .png)")
    canvas = load_image(image).copy()
    draw = ImageDraw.Draw(canvas)
    for person in people:
        kp, limbs = person.keypoints, person.skeleton.limbs
        limb_colors, joint_colors = palette(len(limbs)), palette(len(kp))
        for (a, b), color in zip(limbs, limb_colors):
            if kp[a, 2] > 0 and kp[b, 2] > 0:
                draw.line([(float(kp[a, 0]), float(kp[a, 1])), (float(kp[b, 0]), float(kp[b, 1]))], fill=color,
                          width=width)
        for j in person.found():
            x, y = float(kp[j, 0]), float(kp[j, 1])
            draw.ellipse([x - radius, y - radius, x + radius, y + radius], fill=joint_colors[j], outline=(0, 0, 0))
    with atomic_path(path) as tmp:
        canvas.save(tmp, format=fmt)
