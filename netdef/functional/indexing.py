"""Index ops: gather, index_select, topk, arange (dynamic-batch aware) and non-maximum suppression."""
from __future__ import annotations

from typing import Any

import numpy as np

from netdef import trt as shim
from netdef.functional.core import axis, index_tensor, join, out, rank, require, same_dtype, site
from netdef.network import current

TOPK_LIMIT = 3840  # TensorRT's largest k for ITopKLayer (8.6 and TensorRT-RTX alike)
NMS_TOPK_LIMIT = 5000  # TensorRT's default and largest `topk_box_limit` (except SM 5.3/6.2)
BOX_FORMATS = {"xyxy": "CORNER_PAIRS", "cxcywh": "CENTER_SIZES"}


def gather(x: Any, dim: int, index: Any, op: str | None = "gather") -> Any:
    """torch.gather: out[i][j][k] = x[index[i][j][k]][j][k] for dim 0 (index has x's rank; TensorRT ELEMENT mode)."""
    net = current()
    index = index_tensor(index, op)
    if rank(index) != rank(x):
        raise ValueError(f"{site(op)}: index {index.name!r} {tuple(index.shape)} must have the rank of "
                         f"{x.name!r} {tuple(x.shape)}")
    layer = net.definition.add_gather(x, index, axis(dim, rank(x), site(op)))
    layer.mode = net.trt.GatherMode.ELEMENT
    return out(layer, op)


def index_select(x: Any, dim: int, index: Any, op: str | None = "index_select") -> Any:
    """torch.index_select, with an index of any rank (as numpy.take): the output has x's dims before `dim`,
    then the index's dims, then x's dims after `dim` (TensorRT DEFAULT gather)."""
    net = current()
    index = index_tensor(index, op)
    return out(net.definition.add_gather(x, index, axis(dim, rank(x), site(op))), op)


def topk(x: Any, k: int, dim: int = -1, largest: bool = True, op: str | None = "topk") -> tuple[Any, Any]:
    """torch.topk (sorted): (values, int32 indices) along `dim`; k up to 3840."""
    net = current()
    require(x, "fi", op)
    a = axis(dim, rank(x), site(op))
    n = int(tuple(x.shape)[a])
    if not 0 < int(k) <= TOPK_LIMIT or (n >= 0 and k > n):
        raise ValueError(f"{site(op)}: k={k} must be in 1..{min(TOPK_LIMIT, n) if n >= 0 else TOPK_LIMIT} "
                         f"(dim {dim} of {x.name!r} {tuple(x.shape)})")
    operation = net.trt.TopKOperation.MAX if largest else net.trt.TopKOperation.MIN
    layer = net.name_layer(net.definition.add_topk(x, operation, int(k), 1 << a), op)
    return layer.get_output(0), layer.get_output(1)


def arange(end: int, dtype: Any = np.int32, op: str | None = "arange") -> Any:
    """0, 1, ..., end-1 as a constant."""
    return current().constant(np.arange(int(end), dtype=dtype), dtype=dtype, op=op or "arange")


def arange_like(x: Any, dim: int = 0, dtype: Any = np.int32, op: str | None = "arange") -> Any:
    """0, 1, ..., x.shape[dim]-1 (1-D), also for a dynamic dim (the batch): then a LINSPACE fill at run time."""
    net = current()
    dtype = np.dtype(dtype)
    a = axis(dim, rank(x), site(op))
    n = int(tuple(x.shape)[a])
    if n >= 0:
        return arange(n, dtype, op)
    from netdef.functional.shape import size

    base = dtype if dtype.kind == "i" else np.dtype(np.float32)  # fills are int32 or float32
    layer = shim.add_fill(net.definition, (1,), net.trt.FillOperation.LINSPACE, net.trt.DataType.INT32
                          if base.kind == "i" else net.trt.DataType.FLOAT)
    layer.set_input(0, size(x, a, op=join(op, "size")))
    layer.set_input(1, net.constant(np.array(0, base), dtype=base, op=join(op, "start")))
    layer.set_input(2, net.constant(np.array([1], base), dtype=base, op=join(op, "step")))  # 8.6: these set the type
    values = net.name_layer(layer, op if base == dtype else join(op, "fill")).get_output(0)
    return values if base == dtype else net.cast(values, dtype, op or "arange")


def nms(boxes: Any, scores: Any, max_per_class: int, iou_threshold: float, score_threshold: float,
        topk: int = NMS_TOPK_LIMIT, box_format: str = "xyxy", op: str | None = "nms") -> tuple[Any, Any]:
    """TensorRT's NMS layer (netdef.detect.nms is its reference): boxes (B, N, 4), scores (B, N, C) ->
    selected (M, 3) int32 rows (batch, class, box), ordered by batch then decreasing score, and their count M."""
    net = current()
    if not net.features.nms_layer:
        raise NotImplementedError(f"TensorRT {net.features.flavor} {net.features.version} has no NMS layer: "
                                  "run NMS on the host (netdef.detect.detect)")
    require(boxes, "f", op, "boxes")
    same_dtype([boxes, scores], op)
    if box_format not in BOX_FORMATS:
        raise ValueError(f"{site(op)}: box_format {box_format!r}: expected one of {', '.join(BOX_FORMATS)}")
    if not 0 < int(topk) <= NMS_TOPK_LIMIT or int(max_per_class) <= 0:
        raise ValueError(f"{site(op)}: topk must be in 1..{NMS_TOPK_LIMIT} and max_per_class positive, got "
                         f"{topk} and {max_per_class}")

    def scalar(value: Any, dtype: Any, name: str) -> Any:
        return net.constant(np.array(value, dtype=dtype), dtype=dtype, op=join(op, name))

    layer = net.definition.add_nms(boxes, scores, scalar(int(max_per_class), np.int32, "max_per_class"))
    layer.set_input(3, scalar(iou_threshold, np.float32, "iou_threshold"))
    layer.set_input(4, scalar(score_threshold, np.float32, "score_threshold"))
    layer.bounding_box_format = getattr(net.trt.BoundingBoxFormat, BOX_FORMATS[box_format])
    layer.topk_box_limit = int(topk)
    net.name_layer(layer, op)
    return layer.get_output(0), layer.get_output(1)

