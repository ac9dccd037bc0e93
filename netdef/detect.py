"""Detection pre/post-processing: letterbox resize, mapping boxes back, NMS on the host and in the engine.

`nms()` is THE reference implementation of TensorRT's NMS layer (INMSLayer, `add_nms`): the executor
runs NMS layers through it and host-side NMS (raw engines) uses it too, so the engine, the executor
and the host agree by construction; `engine_nms` puts the same NMS, padded per image as `detect` pads it,
into a definition (netdef.functional only). TensorRT's semantics, reproduced here:

- per batch item and per class; a candidate's score must *exceed* the score threshold;
- at most `topk` (TensorRT's `topk_box_limit`) of the highest-scoring candidates of a batch item
  are considered, over all classes;
- a candidate is kept when its IoU with every box already kept for its class is <= the IoU threshold;
- at most `max_per_class` boxes are kept per class;
- selected rows are (batch, class, box), ordered by batch, then by decreasing score.

Only numpy at import: this module is on the build-and-run path (engine_nms imports netdef.functional).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

TRT_TOPK_LIMIT = 5000  # TensorRT's default and maximum `topk_box_limit` (except SM 5.3/6.2)


# --- boxes ---------------------------------------------------------------------------------------------

def to_corners(boxes: np.ndarray, box_format: str = "xyxy") -> np.ndarray:
    """(..., 4) boxes as (x1, y1, x2, y2) with x1 <= x2, y1 <= y2.

    "xyxy" is TensorRT's CORNER_PAIRS (any two opposite corners), "cxcywh" its CENTER_SIZES.
    """
    b = np.asarray(boxes, dtype=np.float64)
    if box_format == "xyxy":
        return np.concatenate([np.minimum(b[..., :2], b[..., 2:]), np.maximum(b[..., :2], b[..., 2:])], axis=-1)
    if box_format == "cxcywh":
        half = np.abs(b[..., 2:]) / 2
        return np.concatenate([b[..., :2] - half, b[..., :2] + half], axis=-1)
    raise ValueError(f"box_format {box_format!r}: expected 'xyxy' or 'cxcywh'")


def iou(box: np.ndarray, others: np.ndarray) -> np.ndarray:
    """IoU of one corner box (4,) with many (M, 4); 0 where the union is empty."""
    lt = np.maximum(box[:2], others[:, :2])
    rb = np.minimum(box[2:], others[:, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=1)
    area = np.prod(box[2:] - box[:2])
    areas = np.prod(others[:, 2:] - others[:, :2], axis=1)
    union = area + areas - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


# --- NMS -----------------------------------------------------------------------------------------------

def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float = 0.45, score_threshold: float = 0.0,
        max_per_class: int | None = None, topk: int | None = TRT_TOPK_LIMIT, box_format: str = "xyxy") -> np.ndarray:
    """TensorRT's NMS layer on arrays: `boxes` (B, N, 4) or per-class (B, N, C, 4), `scores` (B, N, C).

    Returns the selected indices (M, 3) int32, rows (batch, class, box), ordered by batch then by
    decreasing score (ties: lower box index, then lower class first).
    """
    boxes = np.asarray(boxes)
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 3:
        raise ValueError(f"nms: scores must be (batch, boxes, classes), got shape {scores.shape}")
    batch, n, classes = scores.shape
    if boxes.shape not in ((batch, n, 4), (batch, n, classes, 4)):
        raise ValueError(f"nms: boxes must be ({batch}, {n}, 4) or ({batch}, {n}, {classes}, 4) to match scores "
                         f"{scores.shape}, got {boxes.shape}")
    # TensorRT takes both thresholds as FP32 tensors: compare against the same rounded values
    score_threshold, iou_threshold = float(np.float32(score_threshold)), float(np.float32(iou_threshold))
    corners = to_corners(boxes, box_format)
    per_class_boxes = corners.ndim == 4
    limit = n if max_per_class is None else int(max_per_class)
    rows: list[tuple[int, int, int]] = []
    for b in range(batch):
        box_idx, cls_idx = np.nonzero(scores[b] > score_threshold)
        cand = scores[b, box_idx, cls_idx]
        order = np.lexsort((cls_idx, box_idx, -cand))  # by score desc, then box, then class
        if topk is not None:
            order = order[: int(topk)]
        box_idx, cls_idx, cand = box_idx[order], cls_idx[order], cand[order]
        kept: list[tuple[float, int, int, int]] = []
        for c in np.unique(cls_idx):
            sel = np.nonzero(cls_idx == c)[0]  # already in decreasing score order
            chosen: list[int] = []
            for j in sel:
                if len(chosen) >= limit:
                    break
                k = box_idx[j]
                box = corners[b, k, c] if per_class_boxes else corners[b, k]
                if chosen:
                    prev = corners[b, chosen, c] if per_class_boxes else corners[b, chosen]
                    if (iou(box, prev) > iou_threshold).any():
                        continue
                chosen.append(k)
                kept.append((-cand[j], k, int(c), b))
        kept.sort()
        rows.extend((b, c, k) for _, k, c, _ in kept)
    return np.asarray(rows, dtype=np.int32).reshape(-1, 3)


class Detections(NamedTuple):
    """Fixed-size NMS results per image, as the engine's NMS outputs them (padding: boxes/scores 0, class -1)."""

    num_detections: np.ndarray  # (B, 1) int32
    boxes: np.ndarray  # (B, K, 4) float32, input-pixel xyxy
    scores: np.ndarray  # (B, K) float32
    classes: np.ndarray  # (B, K) int32


PAD_CLASS = -1


def pad_detections(selected: np.ndarray, boxes: np.ndarray, scores: np.ndarray, max_detections: int) -> Detections:
    """The first `max_detections` selected rows of each image, gathered and padded to a fixed size."""
    batch = scores.shape[0]
    k_max = int(max_detections)
    num = np.zeros((batch, 1), np.int32)
    out_boxes = np.zeros((batch, k_max, 4), np.float32)
    out_scores = np.zeros((batch, k_max), np.float32)
    out_classes = np.full((batch, k_max), PAD_CLASS, np.int32)
    for b in range(batch):
        rows = selected[selected[:, 0] == b][:k_max]
        num[b, 0] = len(rows)
        cls, box = rows[:, 1], rows[:, 2]
        out_boxes[b, : len(rows)] = boxes[b, box, cls] if boxes.ndim == 4 else boxes[b, box]
        out_scores[b, : len(rows)] = scores[b, box, cls]
        out_classes[b, : len(rows)] = cls
    return Detections(num, out_boxes, out_scores, out_classes)


def check_nms_options(max_detections: int | None = None, score_threshold: float | None = None,
                      iou_threshold: float | None = None, topk: int | None = None) -> None:
    """Refuse NMS settings that make no sense (None: not given); the message names the option."""
    def is_int(v: object) -> bool:
        return isinstance(v, (int, np.integer)) and not isinstance(v, bool)

    def is_real(v: object) -> bool:
        return isinstance(v, (int, float, np.number)) and not isinstance(v, bool) and bool(np.isfinite(v))

    problems = []
    if max_detections is not None and not (is_int(max_detections) and 1 <= max_detections <= TRT_TOPK_LIMIT):
        problems.append(f"max_detections {max_detections!r}: expected an integer in 1..{TRT_TOPK_LIMIT}")
    if topk is not None and not (is_int(topk) and 1 <= topk <= TRT_TOPK_LIMIT):
        problems.append(f"topk {topk!r}: expected an integer in 1..{TRT_TOPK_LIMIT}")
    if score_threshold is not None and not (is_real(score_threshold) and 0 <= score_threshold < 1):
        problems.append(f"score_threshold {score_threshold!r}: expected a number in [0, 1) (a detection's score "
                        "must exceed it)")
    if iou_threshold is not None and not (is_real(iou_threshold) and 0 <= iou_threshold <= 1):
        problems.append(f"iou_threshold {iou_threshold!r}: expected a number in [0, 1]")
    if problems:
        raise ValueError("NMS options: " + "; ".join(problems))


def detect(boxes: np.ndarray, scores: np.ndarray, max_detections: int = 100, iou_threshold: float = 0.45,
           score_threshold: float = 0.25, topk: int | None = TRT_TOPK_LIMIT) -> Detections:
    """Host-side NMS for raw-mode outputs: what an engine with NMS inside returns for the same inputs."""
    check_nms_options(max_detections, score_threshold, iou_threshold, topk)
    boxes = np.asarray(boxes)
    scores = np.asarray(scores)
    selected = nms(boxes, scores, iou_threshold, score_threshold, max_per_class=max_detections, topk=topk)
    return pad_detections(selected, boxes, scores, max_detections)


# --- NMS inside the engine -------------------------------------------------------------------------------

def engine_nms(boxes: Any, scores: Any, max_detections: int, score_threshold: float, iou_threshold: float,
               topk: int = TRT_TOPK_LIMIT) -> tuple[Any, Any, Any, Any]:
    """`detect` as layers of the network being built: TensorRT's NMS layer, then each image's selected rows
    gathered into `max_detections` fixed slots (num_detections, det_boxes, det_scores, det_classes).

    The NMS layer returns (batch, class, box) rows for all images, ordered by image then by decreasing
    score, with a data-dependent count. Image b's rows start at offsets[b] = #rows of earlier images;
    slot k of image b reads row offsets[b] + k when k < counts[b], else a padding row appended at the end.
    """
    import netdef.functional as F
    from netdef.network import current

    net = current()
    k = int(max_detections)
    if k <= 0:
        raise ValueError(f"max_detections must be positive, got {max_detections}")
    n, classes = int(tuple(boxes.shape)[1]), int(tuple(scores.shape)[2])
    # no net.float32() scope: most layers here are integer index arithmetic, every float constant is typed
    with net.scope("nms"):
        boxes, scores = F.cast(boxes, np.float32), F.cast(scores, np.float32)
        selected, count = F.nms(boxes, scores, k, iou_threshold, score_threshold, topk, op=None)  # (M, 3), ()

        image = F.slice(selected, 1, 0, 1, op="image")  # (M, 1)
        cls = F.slice(selected, 1, 1, 2, op="class")
        row = F.add(F.mul(image, n, op="row/mul"), F.slice(selected, 1, 2, 3, op="box"), op="row")  # b*N + box
        sel_boxes = F.index_select(F.reshape(boxes, (-1, 4), op="flat_boxes"), 0,
                                   F.reshape(row, (-1,), op="row/flat"), op="sel_boxes")
        score_index = F.reshape(F.add(F.mul(row, classes, op="score_index/mul"), cls, op="score_index/add"), (-1,),
                                op="score_index")
        sel_scores = F.index_select(F.reshape(scores, (-1,), op="flat_scores"), 0, score_index, op="sel_scores")
        sel_classes = F.reshape(cls, (-1,), op="sel_classes")

        images = F.reshape(F.arange_like(boxes, 0, op="batch"), (1, -1), op="images")  # (1, B)
        counts = _count_rows(F.eq(image, images, op="counts/compare"), "counts")  # (B, 1)
        offsets = _count_rows(F.lt(image, images, op="offsets/compare"), "offsets")
        slot = F.constant(np.arange(k, dtype=np.int32)[None], dtype=np.int32, op="slots")  # (1, K)
        rows = F.where(F.lt(slot, counts, op="valid"), F.add(offsets, slot, op="rows"),
                       F.reshape(count, (1, 1), op="padding_row"), op="slot_rows")  # (B, K)

        num = F.minimum(counts, k, op="num_detections")
        det_boxes = F.index_select(_pad(sel_boxes, np.zeros((1, 4), np.float32), "boxes"), 0, rows, op="det_boxes")
        det_scores = F.index_select(_pad(sel_scores, np.zeros(1, np.float32), "scores"), 0, rows, op="det_scores")
        det_classes = F.index_select(_pad(sel_classes, np.full(1, PAD_CLASS, np.int32), "classes"), 0, rows,
                                     op="det_classes")
    return num, det_boxes, det_scores, det_classes


def _count_rows(hits: Any, op: str) -> Any:
    """(B, 1) int32: per image, how many selected rows hit (a (M, B) bool), summed in FP32 as before on 8.6."""
    import netdef.functional as F

    total = F.sum(F.cast(hits, np.float32, op=f"{op}/cast"), 0, op=f"{op}/sum")  # over rows -> (B,)
    return F.reshape(F.cast(total, np.int32, op=f"{op}/int"), (-1, 1), op=op)


def _pad(x: Any, row: np.ndarray, op: str) -> Any:
    """x with one padding row appended on axis 0 (what empty slots read)."""
    import netdef.functional as F

    return F.concat([x, F.constant(row, dtype=row.dtype, op=f"pad_{op}/value")], dim=0, op=f"pad_{op}")


# --- letterbox -----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Letterbox:
    """How an image was placed in the network input: input = original * scale + (pad_x, pad_y)."""

    scale: float
    pad_x: float
    pad_y: float
    original_size: tuple[int, int]  # (height, width)
    input_size: tuple[int, int]  # (height, width)


def letterbox_geometry(original_size: tuple[int, int],
                       input_size: tuple[int, int]) -> tuple[Letterbox, tuple[int, int]]:
    """Placement of an (h, w) image in an (H, W) input keeping its aspect ratio, centred; and the resized size."""
    h0, w0 = (int(v) for v in original_size)
    h, w = (int(v) for v in input_size)
    if min(h0, w0, h, w) <= 0:
        raise ValueError(f"letterbox: sizes must be positive, got image {original_size} and input {input_size}")
    scale = min(h / h0, w / w0)
    new_h, new_w = max(1, round(h0 * scale)), max(1, round(w0 * scale))
    return Letterbox(scale, (w - new_w) / 2, (h - new_h) / 2, (h0, w0), (h, w)), (new_h, new_w)


def resize_bilinear(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(h, w, ch) -> (H, W, ch) float32 with half-pixel-centre bilinear sampling (numpy only)."""
    img = np.asarray(image, dtype=np.float32)
    h0, w0 = img.shape[:2]
    h, w = size

    def taps(n_out: int, n_in: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        pos = np.clip((np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5, 0, n_in - 1)
        lo = np.floor(pos).astype(np.int64)
        hi = np.minimum(lo + 1, n_in - 1)
        return lo, hi, (pos - lo).astype(np.float32)

    y0, y1, fy = taps(h, h0)
    x0, x1, fx = taps(w, w0)
    rows = img[y0] * (1 - fy)[:, None, None] + img[y1] * fy[:, None, None]
    return rows[:, x0] * (1 - fx)[None, :, None] + rows[:, x1] * fx[None, :, None]


def letterbox(image: np.ndarray, input_size: tuple[int, int], fill: float = 0.5) -> tuple[np.ndarray, Letterbox]:
    """An HWC image (uint8 0..255 or float 0..1, RGB) -> CHW float32 0..1 network input of `input_size` (H, W).

    The image keeps its aspect ratio and is centred on a `fill` grey background, as Darknet does.
    """
    img = np.asarray(image)
    if img.ndim == 2:
        img = img[:, :, None].repeat(3, axis=2)
    if img.ndim != 3:
        raise ValueError(f"letterbox: expected an HxWxC image, got shape {img.shape}")
    img = img.astype(np.float32) / 255.0 if img.dtype == np.uint8 else img.astype(np.float32)
    info, (new_h, new_w) = letterbox_geometry(img.shape[:2], input_size)
    h, w = info.input_size
    canvas = np.full((h, w, img.shape[2]), fill, np.float32)
    top, left = int(info.pad_y), int(info.pad_x)
    canvas[top: top + new_h, left: left + new_w] = resize_bilinear(img, (new_h, new_w))
    info = Letterbox(info.scale, float(left), float(top), info.original_size, info.input_size)
    return np.ascontiguousarray(canvas.transpose(2, 0, 1)), info


def unletterbox_boxes(boxes: np.ndarray, info: Letterbox, clip: bool = True) -> np.ndarray:
    """Map input-pixel xyxy boxes (..., 4) back to the original image's pixels."""
    b = np.asarray(boxes, dtype=np.float64).copy()
    b[..., [0, 2]] = (b[..., [0, 2]] - info.pad_x) / info.scale
    b[..., [1, 3]] = (b[..., [1, 3]] - info.pad_y) / info.scale
    if clip:
        h0, w0 = info.original_size
        b[..., [0, 2]] = b[..., [0, 2]].clip(0, w0)
        b[..., [1, 3]] = b[..., [1, 3]].clip(0, h0)
    return b
