"""Host-side pre/post-processing: ImageNet resize/crop/normalize, top-k, YOLO letterbox round trip."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from netdef.detect import unletterbox_boxes
from netdef.preprocess import (IMAGENET_MEAN, IMAGENET_STD, imagenet_batch, imagenet_preprocess, load_labels, topk,
                               yolo_preprocess)

MEAN = np.array(IMAGENET_MEAN, np.float64)[:, None, None]
STD = np.array(IMAGENET_STD, np.float64)[:, None, None]


def _image(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_crop_normalize_and_chw_exact_when_no_resize_is_needed(tmp_path):
    rgb = _image(256, 300)  # shorter side already 256: the resize is the identity
    path = tmp_path / "img.png"
    Image.fromarray(rgb).save(path)
    x = imagenet_preprocess(path)
    top, left = 16, 38  # (256-224)/2, (300-224)/2
    expected = (rgb[top: top + 224, left: left + 224].transpose(2, 0, 1) / 255.0 - MEAN) / STD
    assert x.shape == (3, 224, 224) and x.dtype == np.float32 and x.flags.c_contiguous
    np.testing.assert_allclose(x, expected, rtol=1e-5, atol=1e-5)


def test_resize_matches_torch_antialiased_bilinear():
    yy, xx = np.mgrid[0:480, 0:640]
    smooth = np.stack([128 + 100 * np.sin(xx / 37.0), 128 + 100 * np.cos(yy / 29.0), (xx + yy) / 4.4], -1)
    rgb = smooth.clip(0, 255).astype(np.uint8)
    x = imagenet_preprocess(rgb, size=224, resize=256)
    t = torch.from_numpy(rgb.transpose(2, 0, 1)[None].astype(np.float64))
    resized = torch.nn.functional.interpolate(t, size=(256, 341), mode="bilinear", antialias=True,
                                              align_corners=False)[0].numpy()
    expected = (resized[:, 16:240, 58:282] / 255.0 - MEAN) / STD
    err = np.linalg.norm(x - expected) / np.linalg.norm(expected)
    assert err < 1e-2


def test_rgb_order_from_any_mode():
    rgb = np.zeros((224, 224, 3), np.uint8)
    rgb[..., 0], rgb[..., 1], rgb[..., 2] = 200, 100, 10
    rgba = Image.fromarray(rgb).convert("RGBA")
    gray = Image.fromarray(rgb[..., 0])
    x = imagenet_preprocess(rgba, resize=None)
    np.testing.assert_allclose(x[:, 0, 0], (np.array([200, 100, 10]) / 255.0 - MEAN[:, 0, 0]) / STD[:, 0, 0], rtol=1e-5)
    g = imagenet_preprocess(gray, resize=None)
    np.testing.assert_allclose(g[:, 5, 5], (200 / 255.0 - MEAN[:, 0, 0]) / STD[:, 0, 0], rtol=1e-5)
    assert imagenet_batch([rgb, rgb], resize=None).shape == (2, 3, 224, 224)


def test_bad_images_are_named(tmp_path):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"not an image")
    with pytest.raises(ValueError, match="broken.jpg: cannot read the image"):
        imagenet_preprocess(bad)
    with pytest.raises(ValueError, match="center crop 224x224 does not fit an image of 100x300"):
        imagenet_preprocess(_image(300, 100), resize=None)


def test_topk_labels_and_probabilities(tmp_path):
    labels_file = tmp_path / "labels.txt"
    labels_file.write_text("cat\ndog\n\nfish\n")
    labels = load_labels(labels_file)
    logits = np.array([[0.0, 3.0, 1.0, 2.0], [5.0, 0.0, 0.0, 0.0]])
    rows = topk(logits, k=3, labels=labels)
    assert [p.index for p in rows[0]] == [1, 3, 2]
    assert [p.label for p in rows[0]] == ["dog", "fish", "class 2"]
    e = np.exp(logits[0] - 3.0)
    assert rows[0][0].probability == pytest.approx(1.0 / e.sum(), rel=1e-12)
    assert rows[1][0].label == "cat" and len(topk(logits, k=10)[0]) == 4


def test_yolo_letterbox_boxes_map_back():
    rgb = _image(120, 200)
    x, info = yolo_preprocess(rgb, (96, 96))
    assert x.shape == (3, 96, 96) and x.dtype == np.float32
    # a box in original pixels -> input pixels -> back
    original = np.array([[20.0, 30.0, 180.0, 100.0]])
    in_input = original * info.scale + np.array([info.pad_x, info.pad_y] * 2)
    np.testing.assert_allclose(unletterbox_boxes(in_input, info), original, rtol=1e-9)
