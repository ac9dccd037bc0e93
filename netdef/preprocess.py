"""Host-side pre/post-processing per network family.

Classification (ResNet): ImageNet preprocessing as torchvision's `Resize(256) + CenterCrop(224) + ToTensor
+ Normalize` does it (shorter side resized with Pillow's bilinear filter, centre crop, RGB, mean/std, CHW),
and top-k labels. Detection (YOLOv4): letterbox and box mapping live in `netdef.detect`; this module only
adapts an image file to them. Pillow is imported inside the functions that decode or resize images.

`PixelNormalization` is what each network family does to 8-bit pixels to make its float input; a network class
declares its own (`NetworkModel.normalization`), and an engine built with `input_dtype="uint8"` does it itself.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class PixelNormalization:
    """A network's float input from RGB pixels 0..255: (pixel / divisor - mean) / std per channel, the channels in
    the network's order (`bgr`: reversed). Folds into one per-channel scale and shift (`scale_shift`)."""

    mean: tuple[float, ...] = (0.0, 0.0, 0.0)
    std: tuple[float, ...] = (1.0, 1.0, 1.0)
    divisor: float = 255.0
    bgr: bool = False

    def scale_shift(self) -> tuple[np.ndarray, np.ndarray]:
        """(scale, shift) per network channel, float64: x = pixel * scale + shift."""
        mean, std = np.asarray(self.mean, np.float64), np.asarray(self.std, np.float64)
        return 1.0 / (self.divisor * std), -mean / std

    def _channels(self, array: np.ndarray) -> np.ndarray:
        return array[..., ::-1, :, :] if self.bgr else array

    def normalize(self, pixels: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """(..., 3, H, W) RGB pixels -> the network's float32 input (as the float preprocessing computes it), in
        place into `out` where given (a float32 view, e.g. the image's window of a letterbox canvas). The same
        float32 operations either way, with no temporaries (large ones cost page faults on every image)."""
        src = self._channels(np.asarray(pixels))
        x = np.empty(src.shape, np.float32) if out is None else out
        shape = (-1, 1, 1)
        np.divide(src, np.float32(self.divisor), out=x, dtype=np.float32)
        np.subtract(x, np.asarray(self.mean, np.float32).reshape(shape), out=x)
        np.divide(x, np.asarray(self.std, np.float32).reshape(shape), out=x)
        return x

    def exact(self, pixels: np.ndarray) -> np.ndarray:
        """(..., 3, H, W) RGB pixels -> the network's input in float64, as the engine's folded scale computes it
        (the reference side of `netdef verify` for a uint8 definition)."""
        scale, shift = self.scale_shift()
        return self._channels(np.asarray(pixels, np.float64)) * scale[:, None, None] + shift[:, None, None]

    def pixels(self, x: np.ndarray) -> np.ndarray:
        """The inverse: a float input made by the network's preprocessing -> (..., 3, H, W) uint8 RGB pixels
        (interpolated values rounded to the nearest)."""
        shape = (-1, 1, 1)
        x = np.asarray(x, np.float64) * np.asarray(self.std, np.float64).reshape(shape)
        x = (x + np.asarray(self.mean, np.float64).reshape(shape)) * self.divisor
        return np.ascontiguousarray(self._channels(np.clip(np.rint(x), 0, 255).astype(np.uint8)))

    def as_meta(self) -> dict[str, Any]:
        return {"mean": [float(v) for v in self.mean], "std": [float(v) for v in self.std],
                "divisor": float(self.divisor), "channels": "BGR" if self.bgr else "RGB"}

    @classmethod
    def from_meta(cls, meta: Mapping[str, Any]) -> "PixelNormalization":
        return cls(tuple(meta["mean"]), tuple(meta["std"]), float(meta["divisor"]), meta.get("channels") == "BGR")


IMAGENET = PixelNormalization(IMAGENET_MEAN, IMAGENET_STD)  # ResNet, HigherHRNet: torchvision's Normalize
UNIT = PixelNormalization()  # YOLO: RGB 0..1
OPENPOSE = PixelNormalization((0.5, 0.5, 0.5), divisor=256.0, bgr=True)  # CMU: BGR / 256 - 0.5


def recorded_mean_std(meta: Mapping[str, Any], default: PixelNormalization = IMAGENET
                      ) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The mean and std an engine's sidecar records (a uint8 engine's `pixels`, else the network's own fields),
    else `default`'s: what the host preprocessing for that engine uses."""
    recorded = meta.get("pixels") or meta
    return tuple(recorded.get("mean") or default.mean), tuple(recorded.get("std") or default.std)


def image_input(session: Any, batch: np.ndarray) -> np.ndarray:
    """What a session's image input takes from a float batch the network's preprocessing made: the batch itself,
    or, for an engine built with input_dtype="uint8", its pixels (the normalization the sidecar records undone)."""
    spec = session.inputs[0]
    if np.dtype(spec.dtype) != np.uint8:
        return batch
    recorded = session.meta.get("pixels")
    if not recorded:
        raise ValueError(f"{session.name}: input '{spec.name}' is uint8 but the sidecar records no pixel "
                         "normalization ('pixels'); rebuild the engine with netdef")
    return PixelNormalization.from_meta(recorded).pixels(batch)


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
    return PixelNormalization(tuple(mean), tuple(std)).normalize(rgb.transpose(2, 0, 1))


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
