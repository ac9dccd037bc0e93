"""Calibration data: a folder of images (JPEG/PNG, decoded with Pillow and preprocessed the way the
network expects) or a .npy/.npz array already in the network's input layout (N, C, H, W).

Images are decoded batch by batch, so a large folder never sits in memory at once.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")

Preprocess = Callable[[Any, tuple[int, int]], np.ndarray]  # (PIL image, (h, w)) -> float32 CHW


class CalibrationDataError(ValueError):
    pass


# --- preprocessing (netdef.preprocess does the work; these adapt it to an input size) ----------------

def classification_preprocess(mean: Sequence[float] | None = None, std: Sequence[float] | None = None) -> Preprocess:
    """ResNet: shorter side to size*256/224, centre crop, RGB, (x - mean) / std (ImageNet's by default)."""
    from netdef.preprocess import IMAGENET_MEAN, IMAGENET_STD, imagenet_preprocess

    def run(image: Any, size: tuple[int, int]) -> np.ndarray:
        h, w = size
        if h != w:
            raise CalibrationDataError(f"classification preprocessing crops squares; the network takes {h}x{w}")
        return imagenet_preprocess(image, size=h, resize=round(h * 256 / 224), mean=mean or IMAGENET_MEAN,
                                   std=std or IMAGENET_STD)

    return run


def letterbox_preprocess() -> Preprocess:
    """YOLO: letterbox into (h, w), RGB in [0, 1]."""
    from netdef.preprocess import yolo_preprocess

    def run(image: Any, size: tuple[int, int]) -> np.ndarray:
        return yolo_preprocess(image, size)[0]

    return run


def preprocessing_for(model: Any) -> Preprocess:
    """The network's own preprocessing: `model.preprocess` when it has one, else by architecture
    (YOLO/Darknet: letterbox 0..1; others: classification with the network's mean/std, the weights file's where
    it has them: `model.normalization()`)."""
    own = getattr(model, "preprocess", None)
    if callable(own):
        return own
    arch = str(getattr(model, "arch", "") or "")
    if arch.startswith(("yolo", "darknet")):
        return letterbox_preprocess()
    norm = model.normalization()
    return classification_preprocess(norm.mean, norm.std)


# --- sources -----------------------------------------------------------------------------------------

@dataclass
class CalibrationData:
    """`count` samples of shape `sample_shape`, served in batches (images decoded lazily)."""

    origin: str
    count: int
    sample_shape: tuple[int, ...]
    _get: Callable[[int, int], np.ndarray]

    def batches(self, batch_size: int) -> Iterator[np.ndarray]:
        if batch_size < 1:
            raise ValueError(f"batch size {batch_size}: must be >= 1")
        for start in range(0, self.count, batch_size):
            yield self._get(start, min(self.count, start + batch_size))

    def num_batches(self, batch_size: int) -> int:
        return -(-self.count // batch_size)


def from_array(array: np.ndarray, input_shape: Sequence[int], limit: int | None = None,
               origin: str = "array") -> CalibrationData:
    """An in-memory (N, *input_shape) array; dims given as -1 in `input_shape` are free."""
    array = np.asarray(array)
    expected = tuple(input_shape)
    if array.ndim != len(expected) + 1 or any(e >= 0 and e != s for e, s in zip(expected, array.shape[1:])):
        raise CalibrationDataError(f"{origin}: calibration array has shape {array.shape}, expected "
                                   f"(N, {', '.join(str(d) for d in expected)})")
    if array.dtype.kind != "f":
        raise CalibrationDataError(f"{origin}: calibration array has dtype {array.dtype}, expected floating point")
    if array.shape[0] == 0:
        raise CalibrationDataError(f"{origin}: calibration array has no samples")
    count = array.shape[0] if limit is None else min(limit, array.shape[0])
    return CalibrationData(origin, count, tuple(array.shape[1:]),
                           lambda a, b: np.ascontiguousarray(array[a:b], dtype=np.float32))


def _read_array_file(path: Path, input_name: str | None) -> np.ndarray:
    try:
        loaded = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise CalibrationDataError(f"{path}: cannot read calibration array ({exc})") from None
    if isinstance(loaded, np.ndarray):
        return loaded
    with loaded:
        keys = list(loaded.keys())
        if input_name and input_name in keys:
            return loaded[input_name]
        if len(keys) == 1:
            return loaded[keys[0]]
        raise CalibrationDataError(f"{path}: holds arrays {keys}; name one after the network input "
                                   f"{input_name!r} or keep a single array")


def image_files(folder: Path) -> list[Path]:
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise CalibrationDataError(f"{folder}: no images ({', '.join(IMAGE_SUFFIXES)}) found")
    return files


def from_images(folder: str | os.PathLike, input_shape: Sequence[int], preprocess: Preprocess,
                limit: int | None = None, seed: int = 0) -> CalibrationData:
    """Images of a folder (recursively); with `limit`, a seeded random subset (folders are often sorted by class)."""
    files = image_files(Path(folder))
    if limit is not None and limit < len(files):
        pick = np.random.default_rng(seed).choice(len(files), size=limit, replace=False)
        files = [files[i] for i in sorted(pick)]
    c, h, w = (int(d) for d in input_shape[-3:])

    def get(a: int, b: int) -> np.ndarray:
        from PIL import Image, UnidentifiedImageError

        out = np.empty((b - a, c, h, w), dtype=np.float32)
        for k, path in enumerate(files[a:b]):
            try:
                with Image.open(path) as image:
                    x = preprocess(image, (h, w))
            except (OSError, UnidentifiedImageError) as exc:
                raise CalibrationDataError(f"{path}: cannot decode image ({exc})") from None
            if x.shape != (c, h, w):
                raise CalibrationDataError(f"{path}: preprocessing gave shape {x.shape}, the network takes {(c, h, w)}")
            out[k] = x
        return out

    return CalibrationData(str(folder), len(files), (c, h, w), get)


def load_data(source: Any, input_shape: Sequence[int], preprocess: Preprocess | None = None,
              limit: int | None = None, input_name: str | None = None) -> CalibrationData:
    """Calibration data from an array, a .npy/.npz file or an image folder (needs `preprocess`)."""
    if isinstance(source, CalibrationData):
        return source
    if isinstance(source, np.ndarray):
        return from_array(source, input_shape, limit)
    path = Path(source)
    if path.is_dir():
        if preprocess is None:
            raise CalibrationDataError(f"{path}: an image folder needs the network's preprocessing; calibrate "
                                       "through netdef.quantize.calibrate(model, ...) or pass preprocess=")
        return from_images(path, input_shape, preprocess, limit)
    if path.suffix.lower() in (".npy", ".npz"):
        if not path.exists():
            raise CalibrationDataError(f"{path}: calibration data not found")
        return from_array(_read_array_file(path, input_name), input_shape, limit, origin=str(path))
    raise CalibrationDataError(f"{source}: calibration data must be an image folder, a .npy or a .npz file")
