"""HigherHRNet (bottom-up multi-person pose): the netdef definition, written once with its PyTorch twin.

Both sides are the same `...Layers` classes (architecture and forward) on netdef's or torch's Module with that
side's namespace (`netdef.nn` / `torch.nn`), concatenation and ResNet blocks (`side_classes`; HRNet's blocks are
torchvision's, from networks.resnet), so attribute names - state-dict keys, HDF5 groups, TensorRT layer names -
are identical by construction and match the official implementation (HRNet/HigherHRNet-Human-Pose-Estimation,
`PoseHigherResolutionNet`): its checkpoints export and build as they are. The torch classes and `torch_parse`
live in networks.higherhrnet_torch, imported on first use: defining and building need numpy, h5py and TensorRT.

Outputs, chosen at define time (`outputs=`):
- "raw": `output0` (B, 2J, H/4, W/4): J heatmaps + J tag maps, and `output1` (B, J, H/2, W/2): J heatmaps.
- "parsed" (default): the reference's test-time steps inside the engine (`parse` below; `torch_parse` is the
  same in torch): output0 resized to H/2 (bilinear), heatmaps averaged with output1, heatmaps and tags resized to
  the input size (the tags only where the candidates are: the same bilinear taps at k positions instead of whole
  maps at input size); max-pool NMS and the top k candidates per joint: `scores` (B, J, k), `keypoints` (B, J, k, 2)
  x, y in input pixels with the reference's quarter-pixel adjustment, `tags` (B, J, k). The host groups them
  into people (netdef.pose.grouping, netdef.pose.higherhrnet).
"""
from __future__ import annotations

import functools
import os
import re
from dataclasses import dataclass, replace
from types import SimpleNamespace
from typing import Any, Callable, Mapping

import numpy as np

import netdef.functional as F
import netdef.nn as nn
from netdef.network import Network, np_dtype
from netdef.network import current as current_network
from netdef.preprocess import IMAGENET, IMAGENET_MEAN, IMAGENET_STD
from networks import register
from networks.base import NetworkModel, non_default_choices, side_class
from networks.resnet import NETDEF as RESNET_NETDEF

OUTPUTS = ("parsed", "raw")
# define(upsample_q=...): INT8 reads a fuse layer's upsampled branch as its conv writes it, float (the default), or
# quantizes the conv's raw output (nearest upsampling commutes), so every input of the fuse adds is a DQ
UPSAMPLE_Q = ("float", "conv")
RAW_OUTPUTS = ("output0", "output1")
PARSED_OUTPUTS = ("scores", "keypoints", "tags")
STRIDE = 32  # the lowest-resolution branch is 1/32 of the input: sizes must divide by it


@dataclass(frozen=True)
class HigherHRNetConfig:
    """Width and depth (the experiment yaml's MODEL.EXTRA); every stage has 2, 3, 4 branches of width * 2**i."""

    width: int = 32
    stem_channels: int = 64  # conv1/conv2 width; layer1 = Bottlenecks of this many planes (4x out)
    layer1_blocks: int = 4
    stage_modules: tuple[int, int, int] = (1, 4, 3)  # HighResolutionModules in stage 2, 3, 4
    stage_blocks: int = 4  # BasicBlocks per branch in every module
    deconv_blocks: int = 4  # BasicBlocks after the deconvolution
    deconv_kernel: int = 4
    final_kernel: int = 1
    num_joints: int = 17
    input_size: tuple[int, int] = (512, 512)

    def branches(self, stage: int) -> list[int]:
        """Channels of each branch of stage 2, 3 or 4."""
        return [self.width * 2 ** i for i in range(stage)]


PRESETS: dict[str, HigherHRNetConfig] = {
    "higherhrnet-w32": HigherHRNetConfig(width=32, input_size=(512, 512)),  # w32_512_adam_lr1e-3.yaml
    "higherhrnet-w48": HigherHRNetConfig(width=48, input_size=(640, 640)),  # w48_640_adam_lr1e-3.yaml
}
DECONV_PADDING = {4: (1, 0), 3: (1, 1), 2: (0, 0)}  # kernel -> (padding, output_padding), as the reference


# --- architecture and forwards, written once: each side adds its module base, `ns`, ResNet blocks and cat -----
def _conv_bn(ns: Any, cin: int, cout: int, kernel: int, stride: int, relu: bool) -> Any:
    layers = [ns.Conv2d(cin, cout, kernel, stride, kernel // 2, bias=False), ns.BatchNorm2d(cout)]
    return ns.Sequential(*layers, ns.ReLU(inplace=True)) if relu else ns.Sequential(*layers)


def _fuse_layer(ns: Any, channels: list[int], i: int, j: int) -> Any:
    """Branch j brought to branch i: 1x1 conv + nearest upsampling from lower resolutions, strided 3x3 convs
    (ReLU between, not after the last) from higher ones; None for i == j."""
    if j > i:
        return ns.Sequential(ns.Conv2d(channels[j], channels[i], 1, 1, 0, bias=False), ns.BatchNorm2d(channels[i]),
                             ns.Upsample(scale_factor=2 ** (j - i), mode="nearest"))
    if j == i:
        return None
    steps = i - j
    return ns.Sequential(*[_conv_bn(ns, channels[j], channels[i] if k == steps - 1 else channels[j], 3, 2,
                                    relu=k != steps - 1) for k in range(steps)])


def _transition(ns: Any, previous: list[int], current: list[int]) -> Any:
    """The reference's transition layer: a 3x3 conv where a kept branch changes width, strided 3x3 convs from
    the last branch for each new one, None elsewhere."""
    layers = []
    for i, c in enumerate(current):
        if i < len(previous):
            layers.append(_conv_bn(ns, previous[i], c, 3, 1, True) if c != previous[i] else None)
        else:
            steps = i + 1 - len(previous)
            layers.append(ns.Sequential(*[_conv_bn(ns, previous[-1], c if k == steps - 1 else previous[-1], 3, 2,
                                                   True) for k in range(steps)]))
    return ns.ModuleList(layers)


class HighResolutionModuleLayers:
    """Parallel branches of BasicBlocks, then each output the sum of every branch brought to its resolution."""

    ns: Any
    blocks: Any  # the side's ResNet blocks (networks.resnet.side_classes): BasicBlock, Bottleneck

    def __init__(self, channels: list[int], num_blocks: int, multi_scale_output: bool = True) -> None:
        super().__init__()
        ns, n = self.ns, len(channels)
        self.branches = ns.ModuleList([ns.Sequential(*[self.blocks.BasicBlock(c, c) for _ in range(num_blocks)])
                                       for c in channels])
        self.fuse_layers = None if n == 1 else ns.ModuleList(
            [ns.ModuleList([_fuse_layer(ns, channels, i, j) for j in range(n)])
             for i in range(n if multi_scale_output else 1)])
        self.relu = ns.ReLU(True)

    def add(self, a: Any, b: Any, skip: int | None, upsampled: bool) -> Any:
        raise NotImplementedError  # the side's a + b (netdef's marks input `skip` as a residual's skip and may
        # quantize an `upsampled` branch b: HigherHRNet.define(upsample_q=...))

    def forward(self, xs: list[Any]) -> list[Any]:
        xs = [branch(x) for branch, x in zip(self.branches, xs)]
        if self.fuse_layers is None:
            return xs
        fused = []
        for i, row in enumerate(self.fuse_layers):
            y = xs[0] if i == 0 else row[0](xs[0])
            for j in range(1, len(xs)):
                y = self.add(y, xs[j] if i == j else row[j](xs[j]), fuse_skip(i, j), j > i)
            fused.append(self.relu(y))
        return fused


def fuse_skip(i: int, j: int) -> int | None:
    """Which input of fuse row i's add of branch j is the skip, read INT8 (docs/int8.md R3): branch i itself (a
    block output; the sum so far is a strided conv's output, which fuses the add); else, from a higher-resolution
    branch j < i (a strided conv's raw output fusing the add), the sum so far; and row 0's first term, branch 0
    (a block output, INT8 for its other readers). Sums of upsampled branches fuse nothing: a plain add (a sum a
    fused INT8 conv + add ends in is read through its Q/DQ anyway, netdef.quantize.policy)."""
    if j == i:
        return 1
    return 0 if j < i or (i == 0 and j == 1) else None


class PoseHigherResolutionNetLayers:
    """forward -> [output0 (B, 2J, H/4, W/4), output1 (B, J, H/2, W/2)], as the reference's; with `postprocess`
    set (the torch reference's torch_parse), what it makes of them (define() emits `parse` itself)."""

    ns: Any
    blocks: Any
    hr_module: type  # the side's HighResolutionModule
    postprocess: Any = None

    def __init__(self, cfg: HigherHRNetConfig) -> None:
        super().__init__()
        ns, blocks, stem, joints = self.ns, self.blocks, cfg.stem_channels, cfg.num_joints
        self.conv1 = ns.Conv2d(3, stem, 3, 2, 1, bias=False)
        self.bn1 = ns.BatchNorm2d(stem)
        self.conv2 = ns.Conv2d(stem, stem, 3, 2, 1, bias=False)
        self.bn2 = ns.BatchNorm2d(stem)
        self.relu = ns.ReLU(inplace=True)
        self.layer1 = ns.Sequential(*[blocks.Bottleneck(stem if b == 0 else stem * 4, stem)
                                      for b in range(cfg.layer1_blocks)])
        previous = [stem * 4]
        for stage, count in zip((2, 3, 4), cfg.stage_modules):
            channels = cfg.branches(stage)
            setattr(self, f"transition{stage - 1}", _transition(ns, previous, channels))
            setattr(self, f"stage{stage}", ns.Sequential(*[
                self.hr_module(channels, cfg.stage_blocks, stage < 4 or m < count - 1) for m in range(count)]))
            previous = channels
        width, fk = cfg.width, cfg.final_kernel
        self.final_layers = ns.ModuleList([ns.Conv2d(width, 2 * joints, fk, 1, fk // 2),
                                           ns.Conv2d(width, joints, fk, 1, fk // 2)])
        padding, output_padding = DECONV_PADDING[cfg.deconv_kernel]
        deconv = ns.Sequential(ns.ConvTranspose2d(width + 2 * joints, width, cfg.deconv_kernel, 2, padding,
                                                  output_padding, bias=False),
                               ns.BatchNorm2d(width), ns.ReLU(inplace=True))
        self.deconv_layers = ns.ModuleList([ns.Sequential(
            deconv, *[ns.Sequential(blocks.BasicBlock(width, width)) for _ in range(cfg.deconv_blocks)])])

    def cat(self, xs: list[Any]) -> Any:
        raise NotImplementedError  # the side's concatenation along channels

    def forward(self, x: Any) -> Any:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.relu(self.bn2(self.conv2(x)))
        ys = [self.layer1(x)]
        for transition, stage in ((self.transition1, self.stage2), (self.transition2, self.stage3),
                                  (self.transition3, self.stage4)):
            # a new (or re-widened) branch starts from the last branch, as the reference does
            ys = stage([ys[i] if t is None else t(ys[-1]) for i, t in enumerate(transition)])
        x = ys[0]
        y = self.final_layers[0](x)
        outputs = [y]
        for i, deconv in enumerate(self.deconv_layers):
            x = deconv(self.cat([x, y]))
            y = self.final_layers[i + 1](x)
            outputs.append(y)
        return outputs if self.postprocess is None else self.postprocess(*outputs)


def side_classes(base: type, ns: Any, cat: Callable[..., Any], blocks: Any, module: str,
                 add: Callable[[Any, Any, int | None, bool], Any] = lambda a, b, skip, upsampled: a + b
                 ) -> SimpleNamespace:
    """HighResolutionModule and PoseHigherResolutionNet on one side: the classes above on `base` (netdef's or
    torch's Module) with that side's namespace `ns`, `cat(tensors, dim)`, ResNet blocks (networks.resnet) and
    `add(a, b, skip, upsampled)` (torch's: a + b)."""
    hr_module = side_class("HighResolutionModule", HighResolutionModuleLayers, base, module, ns=ns, blocks=blocks,
                           add=lambda self, a, b, skip, upsampled: add(a, b, skip, upsampled))
    net = side_class("PoseHigherResolutionNet", PoseHigherResolutionNetLayers, base, module, ns=ns, blocks=blocks,
                     hr_module=hr_module, cat=lambda self, xs: cat(xs, 1))
    return SimpleNamespace(HighResolutionModule=hr_module, PoseHigherResolutionNet=net)


# --- netdef definition ---------------------------------------------------------------------------------
def _netdef_fuse_add(a: Any, b: Any, skip: int | None, upsampled: bool) -> Any:
    """A fuse layer's add; an upsampled branch's conv output (nearest upsampling commutes with quantization) is
    read through its Q/DQ where the definition says so (upsample_q="conv"), else observed for that placement."""
    if upsampled:
        quant = current_network().quant
        b = quant.placed(b, quant.placement.get("upsample_q") == "conv")
    return F.add(a, b, skip=skip)


NETDEF = side_classes(nn.Module, nn, F.concat, RESNET_NETDEF, __name__, add=_netdef_fuse_add)
HighResolutionModule = NETDEF.HighResolutionModule
PoseHigherResolutionNet = NETDEF.PoseHigherResolutionNet


# --- PyTorch reference: networks.higherhrnet_torch (official names, torch_parse), imported on first use --------
def torch_higherhrnet(cfg: HigherHRNetConfig | str, seed: int | None = None) -> Any:
    """An untrained torch HigherHRNet (a preset name or a config), seeded when `seed` is given, eval mode."""
    import torch

    from networks.higherhrnet_torch import TorchPoseHigherResolutionNet

    cfg = _preset(cfg) if isinstance(cfg, str) else cfg
    if seed is None:
        return TorchPoseHigherResolutionNet(cfg).eval()
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return TorchPoseHigherResolutionNet(cfg).eval()


# --- in-engine post-processing ----------------------------------------------------------------------------
def parse(net: Network, output0: Any, output1: Any, topk: int = 30, nms_kernel: int = 5,
          tile: int | None = None) -> tuple[Any, Any, Any]:
    """`torch_parse`'s steps as TensorRT layers (names `parse/...`), in FP32 and never quantized, whatever the
    network's precision; positions from int32 indices.

    Every resize doubles (H/4 -> H/2 -> H), so scale factors 2 give torch's size-based result without shape
    tensors; the four neighbours of the quarter-pixel adjustment come from one gather. The top k per map runs on
    `tile` x `tile` tiles first (`_topk_by_tiles`; None: the largest of 8, 4, 2 that divides the map into at
    least k tiles; 1: one TopK over the whole map).
    """
    joints = int(tuple(output1.shape)[1])
    height, width = (2 * int(d) for d in tuple(output1.shape)[2:])
    with net.scope("parse"), net.float32():
        # FP32: in FP16 the resized maps round neighbouring pixels of a peak to equal values, NMS keeps them all and
        # the top k fills with duplicates (H200 FP16 engine: scores 15% off)
        output0 = F.cast(output0, np.float32, op="output0/float")
        output1 = F.cast(output1, np.float32, op="output1/float")
        up = F.interpolate(output0, scale_factor=2, mode="bilinear", align_corners=False, op="up0")
        heat = F.mul(F.add(F.slice(up, 1, 0, joints, op="up0_heatmaps"), output1, op="heat_sum"), 0.5, op="heat_avg")
        heat = F.interpolate(heat, scale_factor=2, mode="bilinear", align_corners=False, op="heatmaps")
        tags = F.slice(up, 1, joints, 2 * joints, op="up0_tags")  # read at the k peaks only (_tags_at)
        peaks = _separable_max_pool(heat, nms_kernel)
        nms = F.where(F.eq(peaks, heat, op="is_peak"), heat, 0.0, op="nms")
        scores, index = _topk_by_tiles(nms, topk, _tile(tile, height, width, topk))
        y = F.div(index, width, op="y")  # int32 and non-negative: truncation is floor
        row = F.mul(y, width, op="row")
        x = F.sub(index, row, op="x")
        tag_k = _tags_at(tags, y, x)
        below = F.mul(F.minimum(F.add(y, 1, op="y_next"), height - 1, op="y_down"), width, op="row_down")
        above = F.mul(F.maximum(F.sub(y, 1, op="y_prev"), 0, op="y_up"), width, op="row_up")
        right = F.add(row, F.minimum(F.add(x, 1, op="x_next"), width - 1, op="x_right"), op="right_index")
        left = F.add(row, F.maximum(F.sub(x, 1, op="x_prev"), 0, op="x_left"), op="left_index")
        neighbours = F.concat([right, left, F.add(below, x, op="down_index"), F.add(above, x, op="up_index")], 2,
                              op="neighbours")
        heat_flat = F.reshape(heat, (0, joints, height * width), op="heat_flat")
        values = F.gather(heat_flat, 2, neighbours, op="neighbour_values")
        right_v, left_v, down_v, up_v = F.split(values, topk, 2, op="neighbour")
        kx = _adjusted(x, right_v, left_v, "kx")
        ky = _adjusted(y, down_v, up_v, "ky")
        keypoints = F.concat([F.reshape(kx, (0, joints, topk, 1), op="kx4"),
                              F.reshape(ky, (0, joints, topk, 1), op="ky4")], 3, op="keypoints")
    return scores, keypoints, tag_k


def parse_network(joints: int, size: tuple[int, int], precision: str = "fp32", **options: Any) -> Network:
    """The parse alone: inputs `output0` (B, 2 * joints, H/4, W/4) and `output1` (B, joints, H/2, W/2) for the input
    size (H, W), the parsed outputs; `options` go to parse() (to check or time its forms on given maps)."""
    h, w = size
    with Network(f"parse-{h}x{w}", precision) as net:
        output0 = net.add_input("output0", (-1, 2 * joints, h // 4, w // 4))
        output1 = net.add_input("output1", (-1, joints, h // 2, w // 2))
        for name, tensor in zip(PARSED_OUTPUTS, parse(net, output0, output1, **options)):
            net.mark_output(tensor, name)
    return net


def _separable_max_pool(x: Any, kernel: int) -> Any:
    """The k x k max pool of stride 1 with "same" padding as a 1 x k pool, then a k x 1 pool: the same maxima (a
    window's maximum is the maximum of its rows' maxima; padding never wins), 2k taps per pixel instead of k^2.
    H200, TensorRT 8.6, 512 x 512 maps at batch 8: 0.25 + 0.15 ms in FP32, where one 5 x 5 pool took 0.42 ms in FP16
    behind a 0.12 ms reformat. Tried and measured slower there (bench/gpu_parse.py, sixth session): the maximum of
    edge-clamped shifted slices (each CLAMP slice ran as a copy kernel of its own, 0.175 ms: the parse alone 2.27
    against 0.95 ms), and the resizes as shifted slices weighted 3:1 (1.65 ms)."""
    pad = (kernel - 1) // 2
    rows = F.max_pool2d(x, (1, kernel), 1, (0, pad), op="nms_pool_rows")
    return F.max_pool2d(rows, (kernel, 1), 1, (pad, 0), op="nms_pool")


def _tile(tile: int | None, height: int, width: int, topk: int) -> int:
    if tile is None:
        return next((t for t in (8, 4, 2) if height % t == 0 and width % t == 0
                     and (height // t) * (width // t) >= topk), 1)
    if tile < 1 or height % tile or width % tile or (height // tile) * (width // tile) < topk:
        raise ValueError(f"tile={tile}: expected 1, or a divisor of the {height}x{width} maps leaving at least "
                         f"topk={topk} tiles")
    return tile


def _topk_by_tiles(nms: Any, topk: int, tile: int) -> tuple[Any, Any]:
    """(scores, flat indices) of the k largest values of each (H, W) map of `nms`, sorted, as one TopK over the map
    gives them (ties aside): a TopK over the maps of tile maxima picks k tiles, which hold k largest values (every
    tile left out has k picked tiles at least as high), and a TopK over the k * tile^2 values of those tiles picks
    them. TensorRT 8.6's TopK over all 512 x 512 positions took 1.28 ms of a 2.2 ms parse at batch 8 (H200); one
    TopK over H x W in two passes (rows, then their best) was 3.3x slower still."""
    batch_joints = (0, int(tuple(nms.shape)[1]))
    height, width = (int(d) for d in tuple(nms.shape)[2:])
    flat = F.reshape(nms, (*batch_joints, height * width), op="nms_flat")
    if tile == 1:
        return F.topk(flat, topk, dim=2, op="topk")
    tiles_w = width // tile
    maxima = F.max_pool2d(nms, tile, tile, op="tile_max")
    _, best = F.topk(F.reshape(maxima, (*batch_joints, (height // tile) * tiles_w), op="tile_flat"), topk, dim=2,
                     op="tile_topk")
    tile_y = F.div(best, tiles_w, op="tile_y")  # int32, non-negative: floor
    tile_x = F.sub(best, F.mul(tile_y, tiles_w, op="tile_row"), op="tile_x")
    corner = F.add(F.mul(tile_y, tile * width, op="corner_row"), F.mul(tile_x, tile, op="corner_col"), op="corner")
    offsets = np.array([dy * width + dx for dy in range(tile) for dx in range(tile)], np.int32).reshape(1, 1, 1, -1)
    candidates = F.reshape(F.add(F.reshape(corner, (*batch_joints, topk, 1), op="corner4"),
                                 F.constant(offsets, dtype=np.int32, op="offsets"), op="candidates4"),
                           (*batch_joints, topk * tile * tile), op="candidates")
    values = F.gather(flat, 2, candidates, op="candidate_values")
    scores, pick = F.topk(values, topk, dim=2, op="topk")
    return scores, F.gather(candidates, 2, pick, op="index")


def _tags_at(tags: Any, y: Any, x: Any) -> Any:
    """The half-resolution tag maps resized to the input size (bilinear, half-pixel centres, as torch), read at
    the full-resolution positions (y, x) only: the same four taps and weights, without resizing whole maps."""
    joints, half_h, half_w = (int(d) for d in tuple(tags.shape)[1:])
    y0, y1, wy = _taps(y, half_h, "ty")
    x0, x1, wx = _taps(x, half_w, "tx")
    rows = [F.mul(y0, half_w, op="ty/row0"), F.mul(y1, half_w, op="ty/row1")]
    taps = [F.add(r, c, op=f"tap{i}") for i, (r, c) in enumerate((r, c) for r in rows for c in (x0, x1))]
    flat = F.reshape(tags, (0, joints, half_h * half_w), op="tags_flat")
    values = F.gather(flat, 2, F.concat(taps, 2, op="taps"), op="tag_taps")
    t00, t01, t10, t11 = F.split(values, int(tuple(y.shape)[2]), 2, op="tap")
    top, bottom = _lerp(t00, t01, wx, "tag_top"), _lerp(t10, t11, wx, "tag_bottom")
    return _lerp(top, bottom, wy, "tag_k")


def _taps(coord: Any, half: int, op: str) -> tuple[Any, Any, Any]:
    """For int32 full-resolution coordinates: the two half-resolution source indices of a 2x bilinear resize
    and the second one's weight. Source = coord / 2 - 0.25, clamped at 0: even 2m -> m - 1 and m (0.75), but
    0 -> 0 (weight 0); odd 2m + 1 -> m and m + 1 (0.25), the last index clamped."""
    half_coord = F.div(coord, 2, op=f"{op}/half")
    odd = F.sub(coord, F.mul(half_coord, 2, op=f"{op}/even"), op=f"{op}/odd")
    first = F.maximum(F.add(F.sub(half_coord, 1, op=f"{op}/before"), odd, op=f"{op}/first"), 0, op=f"{op}/i0")
    second = F.minimum(F.add(first, 1, op=f"{op}/next"), half - 1, op=f"{op}/i1")
    quarters = F.mul(F.sub(3, F.mul(odd, 2, op=f"{op}/two_odd"), op=f"{op}/q"), F.minimum(coord, 1, op=f"{op}/nonzero"),
                     op=f"{op}/quarters")  # 3 (even), 1 (odd), 0 (coord 0)
    return first, second, quarters


def _lerp(a: Any, b: Any, quarters: Any, op: str) -> Any:
    """a * (1 - w) + b * w with w = quarters / 4, in a's dtype."""
    w = F.mul(F.cast(quarters, np_dtype(a.dtype), op=f"{op}/w"), 0.25, op=f"{op}/weight")
    return F.add(F.mul(a, F.sub(1.0, w, op=f"{op}/rest"), op=f"{op}/a"), F.mul(b, w, op=f"{op}/b"), op=op)


def _adjusted(coord: Any, after: Any, before: Any, op: str) -> Any:
    """coord + 0.5 + (0.25 if after > before else -0.25), in FP32 (pixel positions beyond 1024 need it)."""
    quarter = F.constant(np.full((1, 1, 1), 0.25, np.float32), dtype=np.float32, op=f"{op}/quarter")
    step = F.where(F.gt(after, before, op=f"{op}/higher"), quarter, -0.25, op=f"{op}/step")
    return F.add(F.add(F.cast(coord, np.float32, op=f"{op}/float"), 0.5, op=f"{op}/centre"), step, op=op)


# --- the user-facing class ---------------------------------------------------------------------------------
def _preset(arch: str) -> HigherHRNetConfig:
    try:
        return PRESETS[arch]
    except KeyError:
        raise ValueError(f"unknown HigherHRNet arch {arch!r}; expected one of {', '.join(PRESETS)}") from None


def _count(keys: set[str], prefix: str) -> int:
    """How many numbered children `prefix.N.` the keys have."""
    pattern = re.compile(re.escape(prefix) + r"\.(\d+)\.")
    return len({m.group(1) for k in keys if (m := pattern.match(k))})


def infer_config(weights: Mapping[str, Any], origin: str = "weights") -> HigherHRNetConfig:
    """Width and depth from the weight names and shapes (any config, not only the presets)."""
    keys = set(weights.keys())
    shape_of = getattr(weights, "shape_of", None) or (lambda k: np.shape(weights[k]))
    needed = ("conv1.weight", "final_layers.0.weight", "final_layers.1.weight", "deconv_layers.0.0.0.weight")
    missing = [k for k in needed if k not in keys]
    if missing:
        raise ValueError(f"{origin}: weights do not look like a HigherHRNet (no {', '.join(missing)})")
    final0, final1 = shape_of("final_layers.0.weight"), shape_of("final_layers.1.weight")
    joints = int(final1[0])
    if int(final0[0]) != 2 * joints:
        raise ValueError(f"{origin}: final_layers.0 has {final0[0]} outputs, expected {2 * joints} ({joints} heatmaps "
                         "+ one tag map per joint)")
    cfg = HigherHRNetConfig(
        width=int(final0[1]), stem_channels=int(shape_of("conv1.weight")[0]), layer1_blocks=_count(keys, "layer1"),
        stage_modules=tuple(_count(keys, f"stage{s}") for s in (2, 3, 4)),  # type: ignore[arg-type]
        stage_blocks=_count(keys, "stage2.0.branches.0"), deconv_blocks=_count(keys, "deconv_layers.0") - 1,
        deconv_kernel=int(shape_of("deconv_layers.0.0.0.weight")[2]), final_kernel=int(final0[2]),
        num_joints=joints)
    for name, preset in PRESETS.items():
        if replace(preset, input_size=cfg.input_size) == cfg:
            return preset
    return cfg


def _check_outputs(outputs: str, nms_kernel: int) -> None:
    if outputs not in OUTPUTS:
        raise ValueError(f"outputs={outputs!r}: expected one of {', '.join(OUTPUTS)}")
    if nms_kernel < 1 or nms_kernel % 2 == 0:
        raise ValueError(f"nms_kernel={nms_kernel}: expected an odd size (the reference pads by (k - 1) / 2)")


def check_input_size(input_size: Any, origin: str = "HigherHRNet") -> tuple[int, int]:
    """(H, W) from an int or a pair; both multiples of 32 (HRNet's 1/32 branch must tile the input)."""
    h, w = (input_size, input_size) if isinstance(input_size, int) else (int(input_size[0]), int(input_size[1]))
    if h <= 0 or w <= 0 or h % STRIDE or w % STRIDE:
        raise ValueError(f"{origin}: input size {h}x{w} must be positive multiples of {STRIDE}")
    return h, w


@register("higherhrnet-w32", "higherhrnet-w48", "higherhrnet")
class HigherHRNet(NetworkModel):
    """HigherHRNet rebuilt with netdef: input "input" (N, 3, H, W) ImageNet-normalized RGB; outputs per `outputs`."""

    arch = "higherhrnet"
    default_input_shape = (1, 3, 512, 512)  # what `netdef export` records and samples with
    mean, std = IMAGENET_MEAN, IMAGENET_STD  # what `netdef export` records
    pixels = IMAGENET

    def __init__(self, weights: Mapping[str, Any], path: str | os.PathLike | None = None,
                 config: HigherHRNetConfig | None = None) -> None:
        super().__init__(weights, path)
        origin = os.fspath(path) if path is not None else "weights"
        self.config = config or infer_config(weights, origin)
        attrs = getattr(weights, "attrs", {}) or {}
        preset = next((name for name, cfg in PRESETS.items() if cfg == self.config), None)
        self.arch = preset or str(attrs.get("arch") or "higherhrnet")

    @classmethod
    def torch_reference(cls, arch: str, seed: int | None = None) -> Any:
        """An untrained torch module of a preset (what `netdef export` loads a checkpoint into)."""
        return torch_higherhrnet(arch if arch in PRESETS else "higherhrnet-w32", seed)

    def make_module(self, input_size: Any = None) -> Any:
        return PoseHigherResolutionNet(self.config)

    def define(self, precision: str = "fp32", input_size: Any = None, fp16_io: bool = False,
               outputs: str = "parsed", topk: int = 30, nms_kernel: int = 5, calibration: Any = None,
               skip: tuple[str, ...] = (), input_dtype: str = "float32", upsample_q: str = "float",
               **options: Any) -> Network:
        """The definition for one input size (H, W multiples of 32) with a dynamic batch.

        int8: `calibration` (cache JSON, amax mapping or data) and `skip` (module paths kept in floating point) go
        to netdef.quantize.settings; the convs making the maps (final_layers) and the deconvolution stay FP16 (the
        maps feed the parse and, concatenated, the deconvolution in floating point: nothing is requantized), the
        post-processing in floating point. upsample_q (UPSAMPLE_Q): "float" (a fuse layer's upsampled branch, a 1x1
        conv's output, stays float up to its add, whose other input is a DQ: the mix YOLOv4's R3 paid dequantizing
        copies for on TensorRT 8.6) or "conv" (that conv output quantized, so every add input is a DQ; an
        experiment, docs/int8.md 3); one calibration serves both.
        """
        if options:
            raise TypeError(f"{self.arch}: unknown option(s) {', '.join(sorted(options))}")
        placement = non_default_choices(self.arch, {"upsample_q": UPSAMPLE_Q}, upsample_q=upsample_q)
        _check_outputs(outputs, nms_kernel)
        h, w = check_input_size(input_size or self.config.input_size, self.arch)
        if not 0 < topk <= h * w:
            raise ValueError(f"topk={topk}: expected 1..{h * w} candidates per joint")
        model = self.module()
        int8 = self.int8_settings(precision, calibration, skip, (h, w))
        norm = self.normalization()
        with Network(f"{self.arch}-{h}x{w}", precision, fp16_io, int8=int8) as net:
            net.quant.keep_float("final_layers", *(f"deconv_layers.{i}.0.0" for i in range(len(model.deconv_layers))))
            net.quant.placement["upsample_q"] = upsample_q
            x = self.image_input(net, (-1, 3, h, w), input_dtype)
            output0, output1 = model(x)
            if outputs == "raw":
                results: tuple[Any, ...] = (output0, output1)
            else:
                results = parse(net, output0, output1, topk, nms_kernel)
            for name, tensor in zip(RAW_OUTPUTS if outputs == "raw" else PARSED_OUTPUTS, results):
                net.mark_output(tensor, name, dtype=np.float32 if name == "keypoints" else None)
        net.meta.update(arch=self.arch, input_size=[h, w], outputs_kind=outputs, num_joints=self.config.num_joints,
                        mean=list(norm.mean), std=list(norm.std), preprocess="letterbox RGB, ImageNet mean/std")
        settings: dict[str, Any] = {"outputs": outputs, **placement}
        if outputs == "parsed":
            settings.update(topk=int(topk), nms_kernel=int(nms_kernel))
            net.meta.update(topk=int(topk), nms_kernel=int(nms_kernel))
        self.record_options(net, **settings)
        return net

    def reference(self, outputs: str = "raw", topk: int = 30, nms_kernel: int = 5) -> Any:
        """The torch module with these weights (float32, eval): forward -> [output0, output1], or with
        outputs="parsed" what `torch_parse` makes of them with `topk` and `nms_kernel` (as define() with the same
        options: `define(...).meta` records them, and `netdef verify` passes them)."""
        _check_outputs(outputs, nms_kernel)
        model = self.load_reference(torch_higherhrnet(self.config))
        if outputs == "parsed":
            from networks.higherhrnet_torch import torch_parse

            model.postprocess = functools.partial(torch_parse, topk=topk, nms_kernel=nms_kernel)
        return model

    def preprocess(self, image: Any, input_size: tuple[int, int]) -> np.ndarray:
        """One image as the engine's input (3, H, W): letterboxed, normalized (INT8 calibration on image folders)."""
        from netdef.pose.higherhrnet import preprocess

        norm = self.normalization()
        return preprocess(image, input_size, norm.mean, norm.std)[0]

    def sample_input(self, batch: int = 1, input_size: Any = None, seed: int = 0) -> np.ndarray:
        """A normalized random image batch (N, 3, H, W), float32."""
        h, w = check_input_size(input_size or self.config.input_size, self.arch)
        return np.random.default_rng(seed).standard_normal((batch, 3, h, w)).astype(np.float32)
