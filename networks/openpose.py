"""OpenPose body (CMU COCO model: 18 keypoints + background heatmaps, 19 limbs as 38 PAF channels).

The netdef definition and its PyTorch twin are one `BodyPoseLayers` class on netdef's or torch's Module
(`side_classes`, as networks/resnet.py does), so module names are those of the most used PyTorch port,
Hzzone/pytorch-openpose's `bodypose_model`: `model0.conv1_1` (VGG-19 to conv4_2, then conv4_3_CPM, conv4_4_CPM),
stage 1 `model1_1.conv5_1_CPM_L1` .. `conv5_5_CPM_L1` (PAF branch, L1) and
`model1_2...L2` (heatmap branch), stages t = 2..6 `model{t}_{1,2}.Mconv{1..7}_stage{t}_L{1,2}` reading the
concatenation (PAF, heatmaps, features). Its `body_pose_model.pth` (keys are CMU's layer names, without the
`model{..}.` prefix) exports with `netdef export --arch openpose-body --checkpoint body_pose_model.pth`.
ReLUs follow CMU's prototxt: every convolution has one except each branch's last (conv5_5_CPM_L*,
Mconv7_stage*_L*). Hzzone's port also puts one after Mconv7_stage6_L2 (its no-ReLU list names
Mconv7_stage6_L1 twice); netdef follows CMU there.

Input `input` (B, 3, H, W): BGR image / 256 - 0.5, H and W multiples of 8 (netdef.pose.openpose.preprocess).
Outputs, by `outputs`:
- "raw": `paf` (B, 38, H/8, W/8) and `heatmap` (B, 19, H/8, W/8);
- "parsed" (default): what the reference does per pixel on the host, in the engine and in FP32 whatever the
  network's precision: `peaks`, `peak_counts`, `limb_scores` (netdef.pose.paf describes them). The host only
  matches and assembles limbs (netdef.pose.paf). See `define_parse` for the steps.
The torch classes and `torch_parse` live in networks.openpose_torch, imported on first use: defining and building
need numpy, h5py and TensorRT.
"""
from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any, Callable, Mapping

import numpy as np

import netdef.functional as F
import netdef.nn as nn
from netdef.network import Network
from netdef.preprocess import OPENPOSE
from netdef.pose.paf import NO_LIMB, PafSettings, gaussian_kernel
from netdef.pose.skeleton import CMU18_HEATMAPS, CMU18_PAF_LIMBS, CMU18_PAFS
from networks import register
from networks.base import NetworkModel, side_class

ARCH = "openpose-body"
DEFAULT_INPUT_SIZE = (480, 640)
OUTPUTS = ("parsed", "raw")
RAW_OUTPUTS = ("paf", "heatmap")
PARSED_OUTPUTS = ("peaks", "peak_counts", "limb_scores")
PARTS = CMU18_HEATMAPS - 1  # the background heatmap takes no part in parsing


@dataclass(frozen=True)
class BodyConfig:
    """The CMU body model is stages=6, width_div=1; unit tests shrink both (names do not change)."""

    stages: int = 6  # stage 1 (conv5_*_CPM) plus stages - 1 refinement stages (Mconv*)
    width_div: int = 1  # hidden channel counts divided by this; the 38 + 19 outputs stay

    def c(self, channels: int) -> int:
        return max(1, channels // self.width_div)


# --- architecture, written once for both namespaces ---------------------------------------------------------
# (name, in, out, kernel) for a convolution, (name,) for a 2x2 max pooling
def _front_spec(cfg: BodyConfig) -> list[tuple]:
    c = cfg.c
    return [("conv1_1", 3, c(64), 3), ("conv1_2", c(64), c(64), 3), ("pool1_stage1",),
            ("conv2_1", c(64), c(128), 3), ("conv2_2", c(128), c(128), 3), ("pool2_stage1",),
            ("conv3_1", c(128), c(256), 3), ("conv3_2", c(256), c(256), 3), ("conv3_3", c(256), c(256), 3),
            ("conv3_4", c(256), c(256), 3), ("pool3_stage1",),
            ("conv4_1", c(256), c(512), 3), ("conv4_2", c(512), c(512), 3),
            ("conv4_3_CPM", c(512), c(256), 3), ("conv4_4_CPM", c(256), c(128), 3)]


def _stage_spec(cfg: BodyConfig, stage: int, branch: int) -> list[tuple]:
    c, out = cfg.c, (CMU18_PAFS, CMU18_HEATMAPS)[branch - 1]
    if stage == 1:
        return [(f"conv5_1_CPM_L{branch}", c(128), c(128), 3), (f"conv5_2_CPM_L{branch}", c(128), c(128), 3),
                (f"conv5_3_CPM_L{branch}", c(128), c(128), 3), (f"conv5_4_CPM_L{branch}", c(128), c(512), 1),
                (f"conv5_5_CPM_L{branch}", c(512), out, 1)]
    cin = CMU18_PAFS + CMU18_HEATMAPS + c(128)
    spec = [(f"Mconv1_stage{stage}_L{branch}", cin, c(128), 7)]
    spec += [(f"Mconv{i}_stage{stage}_L{branch}", c(128), c(128), 7) for i in range(2, 6)]
    return spec + [(f"Mconv6_stage{stage}_L{branch}", c(128), c(128), 1),
                   (f"Mconv7_stage{stage}_L{branch}", c(128), out, 1)]


def _block(ns: Any, spec: list[tuple], relu_last: bool) -> Any:
    """A Sequential named like the reference: `conv`, `relu_conv` (CMU: a branch's last conv has no ReLU)."""
    block = ns.Sequential()
    convs = [s[0] for s in spec if len(s) > 1]
    for name, *conv in spec:
        if not conv:
            block.add_module(name, ns.MaxPool2d(kernel_size=2, stride=2))
            continue
        cin, cout, k = conv
        block.add_module(name, ns.Conv2d(cin, cout, k, stride=1, padding=k // 2))
        if relu_last or name != convs[-1]:
            block.add_module(f"relu_{name}", ns.ReLU(inplace=True))
    return block


class BodyPoseLayers:
    """Hzzone's `bodypose_model` (module names and parameters): forward -> (paf, heatmap) of the last stage, each
    later stage reading (paf, heatmap, features) concatenated; with `postprocess` set (the torch reference's
    torch_parse), what it makes of them (define() emits `define_parse` itself)."""

    ns: Any
    postprocess: Any = None

    def __init__(self, config: BodyConfig = BodyConfig()) -> None:
        super().__init__()
        self.config = config
        self.model0 = _block(self.ns, _front_spec(config), relu_last=True)
        for stage in range(1, config.stages + 1):
            for branch in (1, 2):
                setattr(self, f"model{stage}_{branch}",
                        _block(self.ns, _stage_spec(config, stage, branch), relu_last=False))

    def cat(self, tensors: list[Any], stage: int) -> Any:
        raise NotImplementedError  # the side's concatenation along channels (netdef names it per stage)

    def forward(self, x: Any) -> Any:
        features = self.model0(x)
        paf, heatmap = self.model1_1(features), self.model1_2(features)
        for stage in range(2, self.config.stages + 1):
            both = self.cat([paf, heatmap, features], stage)
            paf, heatmap = getattr(self, f"model{stage}_1")(both), getattr(self, f"model{stage}_2")(both)
        return (paf, heatmap) if self.postprocess is None else self.postprocess(paf, heatmap)


def side_classes(base: type, ns: Any, cat: Callable[[list, int], Any], module: str) -> SimpleNamespace:
    """BodyPose on one side: BodyPoseLayers on `base` (netdef's or torch's Module) with that side's namespace
    `ns` and `cat(tensors, stage)`."""
    return SimpleNamespace(BodyPose=side_class("BodyPose", BodyPoseLayers, base, module, ns=ns,
                                               cat=lambda self, tensors, stage: cat(tensors, stage)))


# --- netdef definition --------------------------------------------------------------------------------------
NETDEF = side_classes(nn.Module, nn, lambda ts, stage: F.concat(ts, dim=1, op=f"concat_stage{stage}"), __name__)
BodyPoseModule = NETDEF.BodyPose


# --- PyTorch reference: networks.openpose_torch (Hzzone's names, torch_parse), imported on first use -------------
def torch_body_pose(config: BodyConfig = BodyConfig(), seed: int | None = None) -> Any:
    """An untrained torch body model (PyTorch's default init; seeded when `seed` is given), eval mode."""
    import torch

    from networks.openpose_torch import TorchBodyPose

    if seed is None:
        return TorchBodyPose(config).eval()
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return TorchBodyPose(config).eval()


# --- the user-facing class --------------------------------------------------------------------------------------
def infer_config(keys: Any, shape_of: Callable[[str], tuple], origin: str = "weights") -> BodyConfig:
    """Stages and width from weight names and the first convolution's shape."""
    keys = set(keys)
    if "model0.conv1_1.weight" not in keys:
        raise ValueError(f"{origin}: no model0.conv1_1.weight: not an OpenPose body model (Hzzone's names)")
    stages = 0
    while f"model{stages + 1}_1.{'conv5_5_CPM_L1' if stages == 0 else f'Mconv7_stage{stages + 1}_L1'}.weight" in keys:
        stages += 1
    width = int(shape_of("model0.conv1_1.weight")[0])
    if stages == 0 or 64 % width:
        raise ValueError(f"{origin}: cannot tell the OpenPose configuration ({stages} stages, conv1_1 width {width})")
    return BodyConfig(stages=stages, width_div=64 // width)


def _settings(outputs: str, max_peaks: int | None) -> PafSettings:
    """The parse settings for define()/reference() options; `outputs` checked."""
    if outputs not in OUTPUTS:
        raise ValueError(f"outputs={outputs!r}: expected one of {', '.join(OUTPUTS)}")
    return PafSettings(max_peaks=int(max_peaks or PafSettings.max_peaks))


@register(ARCH)
class OpenPose(NetworkModel):
    """The CMU body model rebuilt with netdef; outputs per `outputs` (module docstring)."""

    arch = ARCH
    pixels = OPENPOSE
    default_input_shape = (1, 3, *DEFAULT_INPUT_SIZE)  # what `netdef export` records and samples with

    def __init__(self, weights: Mapping[str, Any], path: str | os.PathLike | None = None,
                 config: BodyConfig | None = None) -> None:
        super().__init__(weights, path)
        origin = os.fspath(path) if path is not None else "weights"
        shape_of = getattr(weights, "shape_of", None) or (lambda k: np.shape(weights[k]))
        self.config = config or infer_config(weights.keys(), shape_of, origin)

    @classmethod
    def torch_reference(cls, arch: str = ARCH, seed: int | None = None) -> Any:
        """An untrained torch module (what `netdef export` instantiates for a checkpoint)."""
        return torch_body_pose(seed=seed)

    @staticmethod
    def adapt_checkpoint(state: Mapping[str, Any]) -> dict[str, Any]:
        """Hzzone's body_pose_model.pth keys are CMU's layer names (`conv1_1.weight`); prefix their block."""
        if any(k.startswith("model0.") for k in state):
            return dict(state)
        cfg = BodyConfig()
        blocks = {spec[0]: "model0" for spec in _front_spec(cfg)}
        for stage in range(1, cfg.stages + 1):
            for branch in (1, 2):
                blocks.update({spec[0]: f"model{stage}_{branch}" for spec in _stage_spec(cfg, stage, branch)})
        adapted = {}
        for key, value in state.items():
            layer = key.rsplit(".", 1)[0]
            adapted[f"{blocks[layer]}.{key}" if layer in blocks else key] = value
        return adapted

    def make_module(self, input_size: Any = None) -> Any:
        return BodyPoseModule(self.config)

    def define(self, precision: str = "fp32", input_size: tuple[int, int] | None = None, fp16_io: bool = False,
               outputs: str = "parsed", max_peaks: int | None = None, calibration: Any = None,
               skip: tuple[str, ...] = (), input_dtype: str = "float32", **options: Any) -> Network:
        """The definition; `max_peaks` (K, default 32) bounds the peaks per part of the parsed outputs.

        int8: `calibration` and `skip` (module paths kept in floating point) go to netdef.quantize.settings; the
        last stage's two output convs stay FP16 (as a detection head's, docs/int8.md R9), the parsing FP32.
        """
        if options:
            raise TypeError(f"{self.arch}: unknown options {', '.join(options)}")
        settings = _settings(outputs, max_peaks)
        height, width = input_size or DEFAULT_INPUT_SIZE
        if height % 8 or width % 8 or height <= 0 or width <= 0:
            raise ValueError(f"{self.arch}: input size {height}x{width} must be positive multiples of 8")
        model = self.module()
        int8 = self.int8_settings(precision, calibration, skip, (height, width))
        with Network(f"{self.arch}-{height}x{width}", precision, fp16_io, int8=int8) as net:
            net.quant.keep_float(*output_convs(self.config))
            x = self.image_input(net, (-1, 3, height, width), input_dtype)
            paf, heatmap = model(x)
            if outputs == "raw":
                net.mark_output(paf, "paf")
                net.mark_output(heatmap, "heatmap")
            else:
                for name, tensor in zip(PARSED_OUTPUTS, define_parse(net, paf, heatmap, settings)):
                    net.mark_output(tensor, name)
        net.meta.update({"arch": self.arch, "input_size": [height, width], "outputs_kind": outputs,
                         "preprocess": "BGR / 256 - 0.5", "stages": self.config.stages})
        options: dict[str, Any] = {"outputs": outputs}
        if outputs == "parsed":
            options["max_peaks"] = net.meta["max_peaks"] = settings.max_peaks
            net.meta["paf"] = {"max_peaks": settings.max_peaks, "peak_threshold": settings.peak_threshold,
                               "limb_threshold": settings.limb_threshold, "samples": settings.samples}
        self.record_options(net, **options)
        return net

    def reference(self, outputs: str = "raw", max_peaks: int | None = None) -> Any:
        """The torch module with these weights (float32, eval): forward -> (paf, heatmap), or with
        outputs="parsed" what `torch_parse` makes of them with `max_peaks` (as define() with the same options:
        `define(...).meta` records them, and `netdef verify` passes them)."""
        settings = _settings(outputs, max_peaks)
        model = self.load_reference(torch_body_pose(self.config))
        if outputs == "parsed":
            from networks.openpose_torch import torch_parse

            model.postprocess = functools.partial(torch_parse, settings=settings)
        return model

    def preprocess(self, image: Any, size: tuple[int, int]) -> np.ndarray:
        """One image as the network's input (CHW float32), for calibration from image folders."""
        from netdef.pose.openpose import preprocess

        return preprocess(image, size)[0]

    def sample_input(self, batch: int = 1, input_size: tuple[int, int] | None = None, seed: int = 0) -> np.ndarray:
        """A random normalized image batch (B, 3, H, W) in [-0.5, 0.5), float32."""
        height, width = input_size or DEFAULT_INPUT_SIZE
        return (np.random.default_rng(seed).random((batch, 3, height, width)) - 0.5).astype(np.float32)


PARSE_SCOPE = "parse"  # layers of the in-engine post-processing are named parse/...


def parse_network(size: tuple[int, int], settings: PafSettings = PafSettings(), precision: str = "fp32") -> Network:
    """The parse alone: inputs `paf` (B, 38, h, w) and `heatmap` (B, 19, h, w) at the network's output
    resolution, the parsed outputs (to check TensorRT's numerics on given maps)."""
    h, w = size
    with Network(f"{ARCH}-parse-{h}x{w}", precision) as net:
        paf = net.add_input("paf", (-1, CMU18_PAFS, h, w))
        heatmap = net.add_input("heatmap", (-1, CMU18_HEATMAPS, h, w))
        for name, tensor in zip(PARSED_OUTPUTS, define_parse(net, paf, heatmap, settings)):
            net.mark_output(tensor, name)
    net.meta.update({"arch": f"{ARCH}-parse", "max_peaks": settings.max_peaks})
    return net


def output_convs(cfg: BodyConfig) -> tuple[str, ...]:
    """Module paths of the last stage's two convolutions, which make the PAF and heatmap outputs."""
    return tuple(f"model{cfg.stages}_{branch}.{_stage_spec(cfg, cfg.stages, branch)[-1][0]}" for branch in (1, 2))


def define_parse(net: Network, paf: Any, heatmap: Any, settings: PafSettings) -> tuple[Any, Any, Any]:
    """The in-engine post-processing (torch_parse's steps, as TensorRT layers named parse/...), in FP32.

    1. PAF channels put in limb order (x, y per limb) at the network's resolution, where it is cheap;
    2. both maps resized by `stride`, bicubic (TensorRT CUBIC, A = -0.75, half-pixel, edge-clamped taps);
    3. the 18 part heatmaps smoothed: symmetric padding, then the Gaussian as two depthwise convolutions;
    4. peaks: equal to the maximum of their 4-neighbourhood (two 3x1 / 1x3 max pools) and above the threshold;
       counted per part, the K strongest kept (top-k of the peak map), their score read from the unsmoothed map;
    5. every pair (peak i of part A, peak j of part B) of each limb: the limb-ordered PAF sampled at the
       segment's rounded points (one ELEMENT gather for all pairs), dotted with the unit vector, averaged.
    Pixel indices go through FP32 (exact for inputs below 2^23 pixels).
    """
    s, k, parts, limbs = settings.stride, settings.max_peaks, PARTS, len(CMU18_PAF_LIMBS)
    with net.scope(PARSE_SCOPE), net.float32():
        paf = F.cast(paf, np.float32, op="paf/float")
        heat = F.slice(F.cast(heatmap, np.float32, op="heatmap/float"), 1, 0, parts, op="heatmap/parts")
        order = np.array([c for limb in CMU18_PAF_LIMBS for c in limb[2:]], dtype=np.int32)
        paf = F.index_select(paf, 1, order, op="paf/limb_order")
        heat = F.interpolate(heat, scale_factor=s, mode="bicubic", align_corners=False, op="heatmap/resize")
        paf = F.interpolate(paf, scale_factor=s, mode="bicubic", align_corners=False, op="paf/resize")
        h, w = (int(d) for d in tuple(heat.shape)[2:])
        if k > h * w:
            raise ValueError(f"max_peaks={k} exceeds the {h}x{w} pixels of the input")

        kernel = gaussian_kernel(settings.sigma, settings.truncate).astype(np.float32)
        r = len(kernel) // 2
        smooth = F.pad(heat, (r, r, r, r), mode="symmetric", op="smooth/pad")
        smooth = F.conv2d(smooth, np.tile(kernel.reshape(1, 1, -1, 1), (parts, 1, 1, 1)), groups=parts,
                          op="smooth/rows")
        smooth = F.conv2d(smooth, np.tile(kernel.reshape(1, 1, 1, -1), (parts, 1, 1, 1)), groups=parts,
                          op="smooth/cols")
        cross = F.maximum(F.max_pool2d(smooth, (3, 1), stride=1, padding=(1, 0), op="peak/max_rows"),
                          F.max_pool2d(smooth, (1, 3), stride=1, padding=(0, 1), op="peak/max_cols"), op="peak/max")
        peak = F.logical_and(F.eq(smooth, cross, op="peak/is_max"),
                             F.gt(smooth, settings.peak_threshold, op="peak/above"), op="peak")
        counts = F.cast(F.sum(F.cast(peak, np.float32, op="peak/float"), dim=(2, 3), op="counts/sum"), np.int32,
                        op="counts")
        masked = F.reshape(F.where(peak, smooth, -1.0, op="peak/masked"), (0, parts, h * w), op="peak/flat")
        strength, index = F.topk(masked, k, dim=2, op="peak/topk")  # (B, parts, K), strongest first
        found = F.gt(strength, 0.0, op="peak/found")  # slots past the part's count hold non-peaks (-1)
        flat = F.cast(index, np.float32, op="peak/index")
        ys = F.unary(F.div(flat, float(w), op="peak/row"), "FLOOR", op="peak/y")
        xs = F.sub(flat, F.mul(ys, float(w), op="peak/row_start"), op="peak/x")
        score = F.gather(F.reshape(heat, (0, parts, h * w), op="heatmap/flat"), 2, index, op="peak/score")
        peaks = F.concat([F.reshape(F.where(found, t, 0.0, op=f"peaks/{n}/found"), (0, parts, k, 1), op=f"peaks/{n}")
                          for n, t in (("x", xs), ("y", ys), ("score", score))], dim=3, op="peaks")

        part_a = np.array([limb[0] for limb in CMU18_PAF_LIMBS], np.int32)
        part_b = np.array([limb[1] for limb in CMU18_PAF_LIMBS], np.int32)
        xa, ya = (F.reshape(F.index_select(t, 1, part_a, op=f"limb/{n}a"), (0, limbs, k, 1), op=f"limb/{n}a/col")
                  for n, t in (("x", xs), ("y", ys)))
        xb, yb = (F.reshape(F.index_select(t, 1, part_b, op=f"limb/{n}b"), (0, limbs, 1, k), op=f"limb/{n}b/row")
                  for n, t in (("x", xs), ("y", ys)))
        dx, dy = F.sub(xb, xa, op="limb/dx"), F.sub(yb, ya, op="limb/dy")  # (B, limbs, K, K)
        norm = F.maximum(F.sqrt(F.add(F.mul(dx, dx, op="limb/dx2"), F.mul(dy, dy, op="limb/dy2"), op="limb/norm2"),
                                op="limb/norm"), 0.001, op="limb/norm_min")
        t = np.linspace(0.0, 1.0, settings.samples, dtype=np.float32).reshape(1, 1, 1, 1, -1)

        def sample(start: Any, delta: Any, n: str) -> Any:  # rounded sample coordinates (B, limbs, K, K, S)
            start = F.reshape(start, (0, limbs, k, 1, 1), op=f"sample/{n}0")
            along = F.mul(F.reshape(delta, (0, limbs, k, k, 1), op=f"sample/d{n}"), t, op=f"sample/{n}t")
            return F.unary(F.add(F.add(start, along, op=f"sample/{n}"), 0.5, op=f"sample/{n}half"), "FLOOR",
                           op=f"sample/{n}round")

        pixel = F.add(F.mul(sample(ya, dy, "y"), float(w), op="sample/row"), sample(xa, dx, "x"), op="sample/pixel")
        n_samples = k * k * settings.samples
        pixel = F.reshape(F.cast(pixel, np.int32, op="sample/index"), (0, limbs, 1, n_samples), op="sample/flat")
        both = F.reshape(F.concat([pixel, pixel], dim=2, op="sample/xy"), (0, 2 * limbs, n_samples),
                         op="sample/per_channel")
        values = F.gather(F.reshape(paf, (0, 2 * limbs, h * w), op="paf/flat"), 2, both, op="sample/paf")
        values = F.reshape(values, (0, limbs, 2, k, k, settings.samples), op="sample/paf/split")
        vx, vy = (F.reshape(F.slice(values, 2, i, i + 1, op=f"sample/v{n}"), (0, limbs, k, k, settings.samples),
                            op=f"sample/v{n}/squeeze") for i, n in enumerate("xy"))
        ux = F.reshape(F.div(dx, norm, op="limb/ux"), (0, limbs, k, k, 1), op="limb/ux5")
        uy = F.reshape(F.div(dy, norm, op="limb/uy"), (0, limbs, k, k, 1), op="limb/uy5")
        along = F.add(F.mul(vx, ux, op="limb/along_x"), F.mul(vy, uy, op="limb/along_y"), op="limb/along")
        hits = F.sum(F.cast(F.gt(along, settings.limb_threshold, op="limb/hit"), np.float32, op="limb/hit/float"),
                     dim=4, op="limb/hits")
        mean = F.mean(along, dim=4, op="limb/mean")
        found_a = F.reshape(F.index_select(found, 1, part_a, op="limb/found_a"), (0, limbs, k, 1),
                            op="limb/found_a/col")
        found_b = F.reshape(F.index_select(found, 1, part_b, op="limb/found_b"), (0, limbs, 1, k),
                            op="limb/found_b/row")
        ok = F.logical_and(F.gt(hits, settings.limb_min_fraction * settings.samples, op="limb/enough_hits"),
                           F.logical_and(found_a, found_b, op="limb/both_found"), op="limb/ok")
        limb_scores = F.where(ok, mean, NO_LIMB, op="limb_scores")
    return peaks, counts, limb_scores
