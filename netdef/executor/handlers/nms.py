"""Non-maximum suppression: TensorRT's INMSLayer, executed with netdef's one NMS reference (netdef.detect.nms).

Outputs: SelectedIndices [N, 3] rows (batch, class, box) and NumOutputBoxes (N).
"""
from __future__ import annotations

from typing import Any

import torch

from netdef.detect import nms as reference_nms
from netdef.executor.context import LayerContext, enum_name
from netdef.executor.registry import handles

_FORMATS = {"CORNER_PAIRS": "xyxy", "CENTER_SIZES": "cxcywh"}


def _scalar(inputs: list, i: int, default: float) -> float:
    return float(inputs[i].reshape(())) if len(inputs) > i and inputs[i] is not None else default


@handles("NMS")
def nms(layer: Any, ctx: LayerContext) -> Any:
    fmt = enum_name(layer.bounding_box_format)
    ctx.require(fmt in _FORMATS, "bounding_box_format", fmt)
    limit = int(layer.topk_box_limit)

    def run(inputs: list) -> list:
        boxes, scores = inputs[0], inputs[1]
        selected = reference_nms(boxes.detach().double().cpu().numpy(), scores.detach().double().cpu().numpy(),
                                 iou_threshold=_scalar(inputs, 3, 0.0), score_threshold=_scalar(inputs, 4, 0.0),
                                 max_per_class=int(inputs[2].reshape(())), topk=limit, box_format=_FORMATS[fmt])
        sel = torch.as_tensor(selected, dtype=torch.int64, device=boxes.device).reshape(-1, 3)
        return [sel, torch.tensor(sel.shape[0], device=boxes.device)]

    return run
