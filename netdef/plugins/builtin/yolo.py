"""YoloLayer: a YOLO head's decode (Darknet [yolo] layer) as one custom layer.

Input: a head's raw output (B, A*(5+C), H, W), A = len(anchors) // 2 anchors of this head.
Outputs: boxes (B, A*H*W, 4) as input-pixel x1, y1, x2, y2, and scores (B, A*H*W, C) = objectness * class
probability. Rows are anchor-major (anchor, then grid row, then column), as Darknet lays them out.

Per cell (i, j) and anchor (aw, ah), with s = scale_x_y:
  new_coords = 0: x = (s*sigmoid(tx) - (s-1)/2 + j) * stride;  w = exp(tw) * aw;  p = sigmoid(to) * sigmoid(tc)
  new_coords = 1: x = (s*tx - (s-1)/2 + j) * stride;  w = (2*tw)^2 * aw;  p = to * tc  (inputs are logistic already)
`yolo_decode_native` and `yolo_decode_reference` are the one implementation of this math in netdef.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from netdef import functional as F
from netdef.plugins.description import CustomLayer, CustomLayerError, Field, Fields
from netdef.plugins.registry import register


def _grid(h: int, w: int, dtype: Any) -> np.ndarray:
    """(1, 1, H*W, 2) cell offsets (column, row), row-major like the flattened H*W axis."""
    rows, cols = np.divmod(np.arange(h * w), w)
    return np.stack([cols, rows], axis=-1).astype(dtype).reshape(1, 1, h * w, 2)


def _anchor_pairs(anchors: Sequence[float]) -> np.ndarray:
    return np.asarray(anchors, dtype=np.float64).reshape(1, -1, 1, 2)


def _check_channels(channels: int, anchors: Sequence[float], classes: int, where: str) -> int:
    count = len(anchors) // 2
    if channels != count * (5 + classes):
        raise CustomLayerError(f"{where}: YOLO head has {channels} channels, {count} anchors and {classes} classes "
                               f"need {count} * (5 + {classes}) = {count * (5 + classes)}")
    return count


def yolo_decode_native(net: Any, x: Any, anchors: Sequence[float], stride: float, classes: int,
                       scale_x_y: float = 1.0, new_coords: bool = False) -> tuple[Any, Any]:
    """Decode as standard TensorRT layers on `net`: the class scores in the network's compute precision (FP16 in
    FP16 and INT8 builds, as the head conv that feeds them), the boxes in FP32 whatever the build precision."""
    _, channels, h, w = (int(d) for d in x.shape)
    count = _check_channels(channels, anchors, classes, f"{net.path or 'yolo'}: tensor {x.name!r}")
    # C of the 5 + C rows are class scores: their transpose, sigmoid and product move half the bytes in FP16 (an FP32
    # decode took 7% of YOLOv4 FP16 at batch 32 on the H200); exp of the size logits and pixel coordinates need FP32
    with net.unquantized():
        p = F.transpose(F.reshape(net.to_compute(x), (0, count, 5 + classes, h * w), op="rows"), 2, 3,
                        op="rows_t")  # B,A,HW,5+C
        act = F.slice(p, 3, 4, 5 + classes, op="obj_cls")
        if not new_coords:
            act = F.sigmoid(act, op="sigmoid")
        probs = F.mul(F.slice(act, 3, 0, 1, op="obj"), F.slice(act, 3, 1, 1 + classes, op="cls"), op="probs")
        scores = F.reshape(probs, (0, count * h * w, classes), op="scores")
    with net.float32():
        box = net.to_compute(F.slice(p, 3, 0, 4, op="box"))
        xy, twh = F.slice(box, 3, 0, 2, op="txy"), F.slice(box, 3, 2, 4, op="twh")
        if not new_coords:
            xy = F.sigmoid(xy, op="sigmoid_xy")
            wh = F.mul(F.exp(twh, op="exp"), _anchor_pairs(anchors), op="wh")
        else:
            wh = F.mul(F.mul(twh, twh, op="twh2"), 4.0 * _anchor_pairs(anchors), op="wh")
        if scale_x_y != 1.0:
            xy = F.sub(F.mul(xy, scale_x_y, op="scale"), (scale_x_y - 1.0) / 2.0, op="shift")
        xy = F.mul(F.add(xy, _grid(h, w, np.float32), op="grid"), float(stride), op="xy")
        half = F.mul(wh, 0.5, op="half")
        corners = F.concat([F.sub(xy, half, op="x1y1"), F.add(xy, half, op="x2y2")], dim=3, op="xyxy")
        boxes = F.reshape(corners, (0, count * h * w, 4), op="boxes")
    return boxes, scores


def yolo_decode_reference(x: Any, anchors: Sequence[float], stride: float, classes: int,
                          scale_x_y: float = 1.0, new_coords: bool = False) -> tuple[Any, Any]:
    """The same decode on a torch tensor (any float dtype and device)."""
    import torch

    b, channels, h, w = x.shape
    count = _check_channels(channels, anchors, classes, "yolo_decode_reference")
    p = x.reshape(b, count, 5 + classes, h * w).transpose(2, 3)
    like = {"dtype": x.dtype, "device": x.device}
    pairs = torch.as_tensor(_anchor_pairs(anchors), **like)
    if not new_coords:
        act = torch.sigmoid(p)
        wh = torch.exp(p[..., 2:4]) * pairs
    else:
        act = p
        wh = (2 * p[..., 2:4]) ** 2 * pairs
    xy = act[..., 0:2]
    if scale_x_y != 1.0:
        xy = xy * scale_x_y - (scale_x_y - 1.0) / 2.0
    xy = (xy + torch.as_tensor(_grid(h, w, np.float64), **like)) * stride
    boxes = torch.cat([xy - wh / 2, xy + wh / 2], dim=3).reshape(b, count * h * w, 4)
    scores = (act[..., 4:5] * act[..., 5:]).reshape(b, count * h * w, classes)
    return boxes, scores


@register
class YoloLayer(CustomLayer):
    """One YOLO head decode: raw head -> (boxes xyxy in input pixels, objectness * class scores)."""

    name = "YoloLayer"
    version = "1"
    num_outputs = 2
    anchors = Field(list[float], doc="this head's (masked) anchors as w0, h0, w1, h1, ... in input pixels")
    stride = Field(int, doc="input pixels per grid cell (input size / head size)")
    classes = Field(int)
    scale_x_y = Field(float, 1.0)
    new_coords = Field(bool, False, doc="Scaled-YOLOv4 coordinates (head already logistic)")

    def check_fields(self, fields: Fields, where: str) -> None:
        if not fields.anchors or len(fields.anchors) % 2:
            raise CustomLayerError(f"{where}: anchors must be a non-empty list of (w, h) pairs, got {fields.anchors}")
        if fields.classes < 1 or fields.stride < 1:
            raise CustomLayerError(f"{where}: classes and stride must be >= 1, got {fields.classes}, {fields.stride}")

    def output_shapes(self, shapes: list[tuple[Any, ...]], fields: Fields) -> list[tuple[Any, ...]]:
        b, _, h, w = shapes[0]
        rows = h * w * (len(fields.anchors) // 2)
        return [(b, rows, 4), (b, rows, fields.classes)]

    def output_dtypes(self, dtypes: list[np.dtype], fields: Fields) -> list[np.dtype]:
        return [np.dtype(np.float32)] * 2  # boxes in FP32: pixel coordinates need the range

    def reference(self, fields: Fields, x: Any) -> tuple[Any, Any]:
        return yolo_decode_reference(x, fields.anchors, fields.stride, fields.classes, fields.scale_x_y,
                                     fields.new_coords)

    def native(self, net: Any, fields: Fields, x: Any) -> tuple[Any, Any]:
        boxes, scores = yolo_decode_native(net, x, fields.anchors, fields.stride, fields.classes, fields.scale_x_y,
                                           fields.new_coords)
        with net.float32():  # the plugin's outputs (output_dtypes)
            return boxes, net.to_compute(scores)
