"""netdef.detect: the numpy reference NMS (TensorRT's INMSLayer semantics), letterbox and box mapping."""
from __future__ import annotations

import numpy as np
import pytest

from netdef.detect import detect, iou, letterbox, letterbox_geometry, nms, pad_detections, resize_bilinear, \
    to_corners, unletterbox_boxes


def _boxes(*rows):
    return np.asarray(rows, np.float32)[None]  # (1, N, 4)


def test_nms_keeps_best_and_drops_overlaps_per_class():
    boxes = _boxes([0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30], [0, 0, 10, 10])
    scores = np.array([[[0.9, 0.1], [0.8, 0.7], [0.6, 0.0], [0.1, 0.95]]], np.float32)
    sel = nms(boxes, scores, iou_threshold=0.5, score_threshold=0.05)
    # class 0: box 0 kept, box 1 overlaps it (IoU 0.68), box 2 kept, box 3 overlaps box 0;
    # class 1: box 3 kept, box 1 overlaps it, box 0 (0.1) overlaps box 3; box 2 (0.0) is below the threshold.
    assert sel.tolist() == [[0, 1, 3], [0, 0, 0], [0, 0, 2]]
    assert sel.dtype == np.int32


def test_score_threshold_is_strict_and_iou_equal_to_threshold_is_kept():
    boxes = _boxes([0, 0, 10, 10], [5, 0, 15, 10])  # IoU = 50 / 150 = 1/3
    scores = np.array([[[0.5], [0.4]]], np.float32)
    assert nms(boxes, scores, iou_threshold=1 / 3 + 1e-6, score_threshold=0.0).shape == (2, 3)
    assert nms(boxes, scores, iou_threshold=1 / 3 - 1e-6, score_threshold=0.0).shape == (1, 3)
    assert nms(boxes, scores, iou_threshold=0.9, score_threshold=0.4).tolist() == [[0, 0, 0]]


def test_topk_and_max_per_class_limit_and_order_by_batch_then_score():
    rng = np.random.default_rng(3)
    xy = rng.uniform(0, 1000, (2, 50, 2))
    boxes = np.concatenate([xy, xy + 5], -1).astype(np.float32)  # small, disjoint boxes
    scores = rng.uniform(0, 1, (2, 50, 3)).astype(np.float32)
    sel = nms(boxes, scores, iou_threshold=0.5, score_threshold=0.0, topk=None)
    assert len(sel) == 300  # nothing overlaps
    sel = nms(boxes, scores, iou_threshold=0.5, score_threshold=0.0, topk=7)
    assert np.bincount(sel[:, 0]).tolist() == [7, 7]
    for b in range(2):
        rows = sel[sel[:, 0] == b]
        got = scores[b, rows[:, 2], rows[:, 1]]
        assert np.all(np.diff(got) <= 0)
        assert np.allclose(np.sort(got)[::-1], np.sort(scores[b].ravel())[::-1][:7])
    assert (np.diff(sel[:, 0]) >= 0).all()
    capped = nms(boxes, scores, iou_threshold=0.5, score_threshold=0.0, max_per_class=4)
    assert len(capped) == 2 * 3 * 4


def test_center_format_and_per_class_boxes():
    centre = np.array([[[5, 5, 10, 10], [6, 5, 10, 10]]], np.float32)
    assert np.allclose(to_corners(centre, "cxcywh")[0, 0], [0, 0, 10, 10])
    scores = np.array([[[0.9], [0.8]]], np.float32)
    assert len(nms(centre, scores, 0.5, 0.0, box_format="cxcywh")) == 1
    per_class = np.stack([to_corners(centre, "cxcywh")] * 2, axis=2)  # (1, 2, 2, 4)
    per_class[0, 1, 1] = [50, 50, 60, 60]  # class 1 sees box 1 elsewhere
    sel = nms(per_class, np.concatenate([scores, scores], -1), 0.5, 0.0)
    assert sorted(map(tuple, sel.tolist())) == [(0, 0, 0), (0, 1, 0), (0, 1, 1)]
    with pytest.raises(ValueError, match="boxes must be"):
        nms(centre[:, :1], scores, 0.5)


def test_corner_pairs_accept_any_two_opposite_corners():
    a = np.array([0, 0, 10, 10], np.float64)
    flipped = to_corners(np.array([[10, 10, 0, 0]], np.float32))
    assert iou(a, flipped)[0] == pytest.approx(1.0)


def test_detect_pads_to_fixed_size():
    boxes = _boxes([0, 0, 10, 10], [20, 20, 30, 30], [40, 40, 50, 50])
    scores = np.array([[[0.9, 0.0], [0.0, 0.8], [0.3, 0.0]]], np.float32)
    det = detect(boxes, scores, max_detections=5, iou_threshold=0.5, score_threshold=0.25)
    assert det.num_detections.tolist() == [[3]]
    assert det.classes.tolist() == [[0, 1, 0, -1, -1]]
    assert np.allclose(det.scores[0], [0.9, 0.8, 0.3, 0, 0])
    assert np.allclose(det.boxes[0, 1], [20, 20, 30, 30]) and not det.boxes[0, 3:].any()
    short = pad_detections(nms(boxes, scores, 0.5, 0.25), boxes, scores, 2)
    assert short.num_detections.tolist() == [[2]] and short.classes.tolist() == [[0, 1]]


# --- letterbox -------------------------------------------------------------------------------------------

def test_letterbox_geometry_and_round_trip():
    info, (h, w) = letterbox_geometry((200, 100), (416, 416))
    assert (h, w) == (416, 208) and info.scale == pytest.approx(2.08) and info.pad_x == 104 and info.pad_y == 0
    image = np.random.default_rng(1).integers(0, 256, (200, 100, 3), dtype=np.uint8)
    x, info = letterbox(image, (416, 416))
    assert x.shape == (3, 416, 416) and x.dtype == np.float32
    assert np.allclose(x[:, :, :104], 0.5) and np.allclose(x[:, :, 312:], 0.5)
    assert 0 <= x.min() and x.max() <= 1
    boxes = np.array([[10, 20, 60, 150]], np.float64)
    placed = boxes * info.scale + [info.pad_x, info.pad_y, info.pad_x, info.pad_y]
    assert np.allclose(unletterbox_boxes(placed, info), boxes)
    assert np.allclose(unletterbox_boxes(np.array([[-50, -50, 1000, 1000.0]]), info), [[0, 0, 100, 200]])


def test_letterbox_non_square_input_pads_vertically():
    x, info = letterbox(np.zeros((100, 400, 3), np.uint8), (320, 640))
    assert x.shape == (3, 320, 640) and info.scale == pytest.approx(1.6) and info.pad_x == 0 and info.pad_y == 80
    assert np.allclose(x[:, :80], 0.5) and np.allclose(x[:, 80:240], 0.0) and np.allclose(x[:, 240:], 0.5)


def test_resize_bilinear_keeps_linear_ramps_linear():
    ramp = np.tile(np.arange(16, dtype=np.float32)[None, :, None], (4, 1, 1))
    up = resize_bilinear(ramp, (4, 32))[0, 1:-1, 0]  # interior samples lie on the ramp
    assert np.allclose(np.diff(up), 0.5)
    down = resize_bilinear(ramp, (2, 8))[0, :, 0]
    assert np.allclose(down, np.arange(8) * 2 + 0.5)
    with pytest.raises(ValueError, match="HxWxC"):
        letterbox(np.zeros(5), (32, 32))
