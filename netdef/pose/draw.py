"""Draw people (any Skeleton) on a copy of an image and save it atomically, with Pillow."""
from __future__ import annotations

import colorsys
import os
from typing import Any, Sequence

from netdef.pose.skeleton import Person


def _color(i: int, n: int) -> tuple[int, int, int]:
    r, g, b = colorsys.hsv_to_rgb(i / max(n, 1), 1.0, 1.0)
    return int(r * 255), int(g * 255), int(b * 255)


def draw_people(image: Any, people: Sequence[Person], path: str | os.PathLike, radius: int = 3, width: int = 3) -> None:
    """Limbs as coloured lines (one colour per limb type), joints as dots; the format follows the suffix."""
    from PIL import Image, ImageDraw

    from netdef.atomic import atomic_path
    from netdef.preprocess import load_image

    canvas = load_image(image).copy()
    draw = ImageDraw.Draw(canvas)
    for person in people:
        kp, limbs = person.keypoints, person.skeleton.limbs
        for i, (a, b) in enumerate(limbs):
            if kp[a, 2] > 0 and kp[b, 2] > 0:
                draw.line([tuple(kp[a, :2]), tuple(kp[b, :2])], fill=_color(i, len(limbs)), width=width)
        for j in person.found():
            x, y = kp[j, :2]
            draw.ellipse([x - radius, y - radius, x + radius, y + radius], fill=_color(j, len(kp)))
    fmt = Image.registered_extensions().get(os.path.splitext(os.fspath(path))[1].lower())
    if fmt is None:
        raise ValueError(f"{path}: unknown image format (use .jpg or .png)")
    with atomic_path(path) as tmp:
        canvas.save(tmp, format=fmt)
