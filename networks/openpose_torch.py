"""The PyTorch side of networks.openpose: Hzzone's `bodypose_model` modules and names, and `torch_parse`, the
reference's per-pixel post-processing on a batch.

Imported only by reference paths (`networks.openpose.torch_body_pose`, `OpenPose.reference`, tests, benches):
torch stays off the build path.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as TF
from torch import nn as tnn

from netdef.pose.paf import NO_LIMB, PafSettings, gaussian_kernel
from netdef.pose.skeleton import CMU18_PAF_LIMBS
from networks.openpose import PARTS, side_classes

TORCH = side_classes(tnn.Module, tnn, lambda tensors, stage: torch.cat(tensors, 1), __name__)
TorchBodyPose = TORCH.BodyPose


def torch_parse(paf: Any, heatmap: Any, settings: PafSettings = PafSettings()) -> tuple[Any, Any, Any]:
    """The reference's per-pixel post-processing in torch, on a batch, as the engine outputs it.

    Maps resized by `stride` with bicubic (a = -0.75, half-pixel centres, edge-clamped taps: cv2's
    INTER_CUBIC, which the reference uses), heatmaps smoothed by scipy's Gaussian (mode "reflect", i.e.
    the edge repeated, radius int(4 sigma + 0.5)), peaks where the smoothed map is >= its 4 neighbours and
    above the threshold (the reference's test), the K strongest per part; every pair of peaks of a limb
    scored by the PAF sampled at rounded points of the segment between them.
    """
    s, k_max = settings.stride, settings.max_peaks
    heat = TF.interpolate(heatmap[:, :PARTS], scale_factor=s, mode="bicubic", align_corners=False)
    paf_up = TF.interpolate(paf, scale_factor=s, mode="bicubic", align_corners=False)
    b, parts, h, w = heat.shape
    kernel = torch.as_tensor(gaussian_kernel(settings.sigma, settings.truncate), dtype=heat.dtype, device=heat.device)
    r = len(kernel) // 2
    rows, cols = _symmetric_index(h, r).to(heat.device), _symmetric_index(w, r).to(heat.device)
    smooth = heat[:, :, rows][:, :, :, cols]
    smooth = TF.conv2d(smooth, kernel.view(1, 1, -1, 1).expand(parts, 1, -1, 1).contiguous(), groups=parts)
    smooth = TF.conv2d(smooth, kernel.view(1, 1, 1, -1).expand(parts, 1, 1, -1).contiguous(), groups=parts)
    zero = TF.pad(smooth, (1, 1, 1, 1))  # the reference compares with zero outside the map
    peak = ((smooth >= zero[:, :, :-2, 1:-1]) & (smooth >= zero[:, :, 2:, 1:-1]) & (smooth >= zero[:, :, 1:-1, :-2])
            & (smooth >= zero[:, :, 1:-1, 2:]) & (smooth > settings.peak_threshold))
    counts = peak.flatten(2).sum(2).to(torch.int32)
    masked = torch.where(peak, smooth, torch.full_like(smooth, -1.0)).flatten(2)
    strength, index = masked.topk(k_max, dim=2)  # (B, parts, K)
    found = strength > 0
    xs, ys = (index % w).to(heat.dtype), torch.div(index, w, rounding_mode="floor").to(heat.dtype)
    scores = heat.flatten(2).gather(2, index)
    peaks = torch.stack([xs, ys, scores], dim=-1) * found[..., None]

    part_a = torch.tensor([limb[0] for limb in CMU18_PAF_LIMBS], device=heat.device)
    part_b = torch.tensor([limb[1] for limb in CMU18_PAF_LIMBS], device=heat.device)
    xa, ya, xb, yb = xs[:, part_a, :, None], ys[:, part_a, :, None], xs[:, part_b, None, :], ys[:, part_b, None, :]
    dx, dy = xb - xa, yb - ya  # (B, limbs, K, K)
    norm = torch.sqrt(dx * dx + dy * dy).clamp(min=0.001)
    t = torch.linspace(0, 1, settings.samples, dtype=heat.dtype, device=heat.device)
    px = torch.floor(xa[..., None] + dx[..., None] * t + 0.5).long()  # (B, limbs, K, K, samples)
    py = torch.floor(ya[..., None] + dy[..., None] * t + 0.5).long()
    flat = (py * w + px).flatten(2)
    vx = paf_up[:, [limb[2] for limb in CMU18_PAF_LIMBS]].flatten(2).gather(2, flat).view(px.shape)
    vy = paf_up[:, [limb[3] for limb in CMU18_PAF_LIMBS]].flatten(2).gather(2, flat).view(px.shape)
    along = vx * (dx / norm)[..., None] + vy * (dy / norm)[..., None]
    hits = (along > settings.limb_threshold).sum(-1)
    ok = (hits > settings.limb_min_fraction * settings.samples) & found[:, part_a, :, None] & found[:, part_b, None, :]
    limb_scores = torch.where(ok, along.mean(-1), torch.full_like(norm, NO_LIMB))
    return peaks, counts, limb_scores


def _symmetric_index(n: int, r: int) -> Any:
    """Indices padding a length-n axis by r on each side, the edge sample repeated (numpy "symmetric")."""
    i = torch.arange(-r, n + r)
    i = torch.where(i < 0, -i - 1, i)
    return torch.where(i >= n, 2 * n - 1 - i, i)
