"""Host-side pre/post-processing per network family.

Classification (ResNet): ImageNet preprocessing as torchvision's `Resize(256) + CenterCrop(224) + ToTensor
+ Normalize` does it (shorter side resized with Pillow's bilinear filter, centre crop, RGB, mean/std, CHW),
and top-k labels. Detection (YOLOv4): letterbox and box mapping live in `netdef.detect`; this module only
adapts an image file to them. Pillow is imported inside the functions that decode or resize images.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def load_image(image: Any) -> Any:
    """A PIL RGB image from a path, a PIL image (any mode) or an HxW(xC) uint8 RGB array."""
    from PIL import Image

    if isinstance(image, (str, os.PathLike)):
        try:
            with Image.open(image) as opened:
                return to_rgb(opened)
        except (OSError, ValueError) as exc:
            raise ValueError(f"{os.fspath(image)}: cannot read the image ({exc})") from exc
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8 or image.ndim not in (2, 3):
            raise ValueError(f"image array must be HxW or HxWxC uint8, got {image.dtype} {image.shape}")
        return Image.fromarray(image).convert("RGB")
    return to_rgb(image)


# Pillow's modes of one-channel images wider than 8 bits, and the value that is white in each: Pillow's own
# convert("RGB") clips them at 255, which turns a 16-bit grayscale PNG white.
_WIDE_GRAY_WHITE = {"I;16": 65535, "I;16L": 65535, "I;16B": 65535, "I;16N": 65535, "I": 65535, "F": 1.0}


def to_rgb(image: Any) -> Any:
    """An 8-bit RGB PIL image; 16-bit grayscale (I;16, and I: 16-bit data in 32-bit ints) and float (F, 0..1)
    images are scaled to 0..255 rather than clipped."""
    from PIL import Image

    white = _WIDE_GRAY_WHITE.get(image.mode)
    if white is None:
        return image.convert("RGB")
    values = np.asarray(image, dtype=np.float64)
    gray = np.clip(np.rint(values * (255.0 / white)), 0, 255).astype(np.uint8)
    return Image.fromarray(gray).convert("RGB")


def resize_shorter_side(image: Any, size: int) -> Any:
    """Scale so the shorter side is `size` (the longer one truncated, as torchvision does); bilinear."""
    from PIL import Image

    w, h = image.size
    if min(w, h) == size:
        return image
    if w <= h:
        new = (size, int(size * h / w))
    else:
        new = (int(size * w / h), size)
    return image.resize(new, Image.BILINEAR)


def center_crop(array: np.ndarray, size: int) -> np.ndarray:
    """Crop the centre `size` x `size` of an HxWxC array (offsets rounded as torchvision rounds them)."""
    h, w = array.shape[:2]
    if h < size or w < size:
        raise ValueError(f"center crop {size}x{size} does not fit an image of {w}x{h}")
    top, left = int(round((h - size) / 2.0)), int(round((w - size) / 2.0))
    return array[top: top + size, left: left + size]


def imagenet_preprocess(image: Any, size: int = 224, resize: int | None = 256,
                        mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD) -> np.ndarray:
    """An image (path, PIL image, uint8 RGB array) -> (3, size, size) float32 network input.

    `resize=None` skips the resize (the crop then needs an image at least `size` on both sides).
    """
    img = load_image(image)
    if resize:
        img = resize_shorter_side(img, resize)
    rgb = center_crop(np.asarray(img, dtype=np.uint8), size)
    x = rgb.astype(np.float32) / np.float32(255.0)
    x = (x - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    return np.ascontiguousarray(x.transpose(2, 0, 1))


def imagenet_batch(images: Sequence[Any], **options: Any) -> np.ndarray:
    """(N, 3, size, size) float32 from several images."""
    return np.stack([imagenet_preprocess(im, **options) for im in images])


# --- classification output ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Prediction:
    index: int
    probability: float
    label: str


def softmax(logits: np.ndarray, axis: int = -1) -> np.ndarray:
    z = np.asarray(logits, np.float64)
    z = np.exp(z - z.max(axis=axis, keepdims=True))
    return z / z.sum(axis=axis, keepdims=True)


def load_labels(path: str | os.PathLike) -> list[str]:
    """Class names, one per line (blank lines kept so line k stays class k)."""
    with open(path, encoding="utf-8") as f:
        return [line.rstrip("\n") for line in f]


def topk(logits: np.ndarray, k: int = 5, labels: Sequence[str] | None = None,
         probabilities: bool = False) -> list[list[Prediction]]:
    """The k best classes per row of (N, classes) logits (or probabilities), best first."""
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"topk {k!r}: expected a positive integer")
    scores = np.atleast_2d(np.asarray(logits))
    probs = scores.astype(np.float64) if probabilities else softmax(scores)
    k = min(int(k), probs.shape[1])
    rows = []
    for row in probs:
        best = np.argsort(-row, kind="stable")[:k]
        rows.append([Prediction(int(i), float(row[i]), label_name(labels, int(i))) for i in best])
    return rows


def label_name(labels: Sequence[str] | None, index: int) -> str:
    """The class name for an index, or `class N` where no (non-empty) name is known."""
    if labels is not None and index < len(labels) and labels[index]:
        return labels[index]
    return f"class {index}"


# --- detection -------------------------------------------------------------------------------------------------

def yolo_preprocess(image: Any, input_size: tuple[int, int]) -> tuple[np.ndarray, Any]:
    """An image -> ((3, H, W) float32 0..1 letterboxed input, netdef.detect.Letterbox to map boxes back)."""
    from netdef.detect import letterbox

    return letterbox(np.asarray(load_image(image), dtype=np.uint8), input_size)
