"""The PyTorch side of networks.higherhrnet: the official PoseHigherResolutionNet's modules and state-dict names,
over torchvision's blocks (networks.resnet_torch), and `torch_parse`, the reference's test-time steps.

Imported only by reference paths (`networks.higherhrnet.torch_higherhrnet`, `HigherHRNet.reference`, benches):
torch stays off the build path.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as TF
from torch import nn as tnn

from networks.higherhrnet import side_classes
from networks.resnet_torch import TORCH as RESNET_TORCH

TORCH = side_classes(tnn.Module, tnn, torch.cat, RESNET_TORCH, __name__)
TorchPoseHigherResolutionNet = TORCH.PoseHigherResolutionNet


def torch_parse(output0: Any, output1: Any, topk: int = 30, nms_kernel: int = 5) -> tuple[Any, Any, Any]:
    """The reference's test-time steps on the two outputs (what `parse` does inside the engine), in torch.

    get_multi_stage_outputs (no flip): output0 resized to output1's size, heatmaps averaged, tags from
    output0; project2image: both resized to the input size; HeatmapParser.top_k: max-pool NMS, top k per
    joint with their tags; HeatmapParser.adjust: +0.5 and a quarter pixel towards the higher neighbour.
    Returns scores (B, J, k), keypoints (B, J, k, 2) as x, y in input pixels, tags (B, J, k).
    """
    joints = output1.shape[1]
    size = tuple(output1.shape[-2:])
    up = TF.interpolate(output0, size=size, mode="bilinear", align_corners=False)
    heat = (up[:, :joints] + output1) / 2.0
    height, width = 2 * size[0], 2 * size[1]
    heat = TF.interpolate(heat, size=(height, width), mode="bilinear", align_corners=False)
    tags = TF.interpolate(up[:, joints:], size=(height, width), mode="bilinear", align_corners=False)
    peaks = TF.max_pool2d(heat, nms_kernel, 1, (nms_kernel - 1) // 2)
    nms = heat * torch.eq(peaks, heat).to(heat.dtype)
    batch = heat.shape[0]
    scores, index = nms.reshape(batch, joints, -1).topk(topk, dim=2)
    flat_heat = heat.reshape(batch, joints, -1)
    tag_k = torch.gather(tags.reshape(batch, joints, -1), 2, index)
    x, y = index % width, index // width

    def at(yy: Any, xx: Any) -> Any:
        return torch.gather(flat_heat, 2, yy * width + xx)

    right, left = at(y, (x + 1).clamp(max=width - 1)), at(y, (x - 1).clamp(min=0))
    down, up_ = at((y + 1).clamp(max=height - 1), x), at((y - 1).clamp(min=0), x)
    quarter = torch.tensor(0.25, dtype=heat.dtype)
    kx = x.to(heat.dtype) + 0.5 + torch.where(right > left, quarter, -quarter)
    ky = y.to(heat.dtype) + 0.5 + torch.where(down > up_, quarter, -quarter)
    return scores, torch.stack([kx, ky], dim=-1), tag_k
