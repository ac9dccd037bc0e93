"""Non-maximum suppression, a reference implementation of TensorRT's INMSLayer.

Per batch item: candidates (box, class) whose score exceeds the score threshold are sorted by score
(regardless of class) and cut to the TopK box limit; a candidate is selected when its IoU with every
already selected box of the same class is <= the IoU threshold, up to MaxOutputBoxesPerClass per class.
Outputs: SelectedIndices [N, 3] int32 rows (batch, class, box) in selection order, and NumOutputBoxes (N).
"""
from __future__ import annotations

from typing import Any

import torch

from netdef.executor.context import LayerContext, enum_name
from netdef.executor.registry import handles


def _corners(boxes: torch.Tensor, fmt: str) -> torch.Tensor:
    """(..., 4) boxes as (x_min, y_min, x_max, y_max)."""
    if fmt == "CENTER_SIZES":
        c, half = boxes[..., :2], boxes[..., 2:] / 2
        return torch.cat([c - half, c + half], -1)
    lo = torch.minimum(boxes[..., :2], boxes[..., 2:])  # any pair of diagonal corners
    hi = torch.maximum(boxes[..., :2], boxes[..., 2:])
    return torch.cat([lo, hi], -1)


def _iou(box: torch.Tensor, others: torch.Tensor) -> torch.Tensor:
    lo = torch.maximum(box[:2], others[:, :2])
    hi = torch.minimum(box[2:], others[:, 2:])
    inter = (hi - lo).clamp(min=0).prod(-1)
    area = (box[2:] - box[:2]).prod()
    areas = (others[:, 2:] - others[:, :2]).prod(-1)
    union = area + areas - inter
    return torch.where(union > 0, inter / union, torch.zeros_like(union))


def non_max_suppression(boxes: torch.Tensor, scores: torch.Tensor, max_per_class: int, iou_threshold: float,
                        score_threshold: float, topk_limit: int, fmt: str = "CORNER_PAIRS") -> torch.Tensor:
    """SelectedIndices as an [N, 3] int64 tensor (batch, class, box)."""
    batch, num_boxes, num_classes = scores.shape
    corners = _corners(boxes.double(), fmt)
    selected: list[tuple[int, int, int]] = []
    for b in range(batch):
        flat = scores[b].double().reshape(-1)  # index = box * num_classes + class
        keep = torch.nonzero(flat > score_threshold).reshape(-1)
        order = keep[torch.argsort(flat[keep], descending=True, stable=True)][:topk_limit]
        chosen: dict[int, list[int]] = {}
        for index in order.tolist():
            box, cls = divmod(index, num_classes)
            taken = chosen.setdefault(cls, [])
            if len(taken) >= max_per_class:
                continue
            this = corners[b, box, cls] if corners.dim() == 4 else corners[b, box]
            if taken:
                prev = corners[b, taken, cls] if corners.dim() == 4 else corners[b, taken]
                if bool((_iou(this, prev) > iou_threshold).any()):
                    continue
            taken.append(box)
            selected.append((b, cls, box))
    return torch.tensor(selected, dtype=torch.int64).reshape(-1, 3)


@handles("NMS", interface="INMSLayer")
def nms(layer: Any, ctx: LayerContext) -> Any:
    fmt = enum_name(layer.bounding_box_format)
    ctx.require(fmt in ("CORNER_PAIRS", "CENTER_SIZES"), "bounding_box_format", fmt)
    limit = int(layer.topk_box_limit)

    def run(inputs: list) -> list:
        boxes, scores, max_out = inputs[0], inputs[1], int(inputs[2].reshape(()))
        iou = float(inputs[3].reshape(())) if len(inputs) > 3 and inputs[3] is not None else 0.0
        thr = float(inputs[4].reshape(())) if len(inputs) > 4 and inputs[4] is not None else 0.0
        sel = non_max_suppression(boxes, scores, max_out, iou, thr, limit, fmt).to(boxes.device)
        return [sel, torch.tensor(sel.shape[0], device=boxes.device)]

    return run
