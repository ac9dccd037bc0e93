"""The PyTorch twin of `networks.darknet`: the same layer kinds on torch's side, and `DarknetReference`.

Imported only by `networks.darknet.reference_module` (and so by `YOLOv4.reference`): torch stays off the
build path. The kinds are written once in networks.darknet; only the side ops differ.
"""
from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.nn.functional as TF
from torch import nn as tnn

from netdef.plugins.builtin.yolo import yolo_decode_reference
from networks.darknet import (DarknetPlan, Side, YoloHead, activate, decode_heads, make_layers, side_classes,
                              walk)


class TorchSide(Side, tnn.Module):
    ns = tnn

    def residual(self, x: Any, skip: Any) -> Any:
        return x + skip

    def act(self, x: Any, kind: str) -> Any:
        return activate(TF, x, kind)

    def max_pool(self, x: Any, size: int, stride: int, pads: tuple[tuple[int, int], tuple[int, int]]) -> Any:
        (top, bottom), (left, right) = pads
        return TF.max_pool2d(TF.pad(x, (left, right, top, bottom), value=float("-inf")), size, stride)

    def cat(self, xs: Sequence[Any]) -> Any:
        return torch.cat(list(xs), dim=1)

    def channel_group(self, x: Any, groups: int, group_id: int, k: int) -> Any:
        return x.chunk(groups, dim=1)[group_id]

    def decode(self, x: Any, head: YoloHead, stride: float) -> tuple[Any, Any]:
        return yolo_decode_reference(x, head.flat_anchors, stride, head.classes, head.scale_x_y, head.new_coords)


LAYERS = side_classes(TorchSide)  # cfg layer type -> torch module class


class DarknetReference(tnn.Module):
    """A torch.nn.Module computing what `networks.darknet.Darknet` defines, for any input size.

    forward(x) returns (boxes, scores), or `postprocess(boxes, scores)` when set (e.g. the host NMS);
    `heads(x)` returns the raw [yolo] inputs (B, A*(5+C), H, W) and `decode(heads, size)` decodes them.
    """

    def __init__(self, darknet_plan: DarknetPlan) -> None:
        super().__init__()
        self.plan = darknet_plan
        self.layers = tnn.ModuleList(make_layers(darknet_plan, LAYERS))
        self.postprocess: Any = None

    def heads(self, x: torch.Tensor) -> list[torch.Tensor]:
        return walk(self.plan, self.layers, x)

    def decode(self, heads: list[torch.Tensor], size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        """(boxes, scores) of the `heads(x)` outputs for an input of `size` (H, W)."""
        boxes, scores = decode_heads(self.plan, self.layers, heads, size)
        return torch.cat(boxes, 1), torch.cat(scores, 1)

    def forward(self, x: torch.Tensor) -> Any:
        boxes, scores = self.decode(self.heads(x), (int(x.shape[-2]), int(x.shape[-1])))
        return (boxes, scores) if self.postprocess is None else self.postprocess(boxes, scores)
