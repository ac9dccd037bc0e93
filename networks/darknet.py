"""Darknet networks driven by a `.cfg`: the plan, the layer kinds (each written once), the netdef definition.

One `DarknetPlan` (the cfg's layers with resolved sources and channel counts) drives both sides, and both name
layer i `layers.{i}`: a convolution's weights are `layers.{i}.conv.weight` and `layers.{i}.bn.{weight,bias,
running_mean,running_var}` (or `layers.{i}.conv.bias` without BN), the names `weights_export.darknet` writes.

The tables: `LAYER_KINDS` maps each cfg layer type to how its section reads and to its kind class, written once
against a side's few ops (`Side`); `NETDEF_LAYERS` here and `networks.darknet_torch.LAYERS` are the kinds on
netdef and on PyTorch (the reference, imported only by `reference_module`). `ACTIVATIONS` maps each Darknet
activation to the function of that name in both `netdef.functional` and `torch.nn.functional`.
Layer types: convolutional (BN folded into the conv; linear, leaky, mish, logistic, relu, swish), maxpool (also
stride-1 "same" pooling as in SPP), route (several layers, groups/group_id), shortcut, upsample (nearest), yolo
(`YoloDecode`: input-pixel xyxy boxes in FP32 and per-class scores in the compute precision, as native layers).

Darknet conventions reproduced here: conv `pad=1` means padding size//2; maxpool pads `padding` (default
size-1) in total, padding//2 before and the rest after, and padding never wins a max; BatchNorm eps 1e-5;
leaky slope 0.1.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

import netdef.functional as F
from netdef import nn
from netdef.darknet_cfg import (DarknetCfgError, conv_padding, layer_shapes, maxpool_padding, maxpool_size,
                                yolo_mask)
from netdef.module import Module, ModuleList
from netdef.network import current
from netdef.plugins.builtin.yolo import yolo_decode_native

BN_EPS = 1e-5
LEAKY_SLOPE = 0.1

# Darknet activation -> (function name in netdef.functional and torch.nn.functional, extra arguments); None: linear
ACTIVATIONS: dict[str, tuple[Any, ...] | None] = {
    "linear": None, "leaky": ("leaky_relu", LEAKY_SLOPE), "mish": ("mish",), "logistic": ("sigmoid",),
    "relu": ("relu",), "swish": ("silu",),
}


def activate(functional: Any, x: Any, kind: str, **naming: Any) -> Any:
    """Darknet activation `kind` with `functional` (netdef.functional or torch.nn.functional)."""
    spec = ACTIVATIONS[kind]
    if spec is None:
        return x
    name, *args = spec
    return getattr(functional, name)(x, *args, **naming)


# --- the plan: what each cfg layer computes, shared by both sides ---------------------------------------

@dataclass(frozen=True)
class YoloHead:
    """One [yolo] layer's decoding parameters: anchors ((w, h) per anchor) in input pixels (those selected by
    `mask`), as plain floats: torch.compile traces the reference's decode, and numpy arrays there mis-guard."""

    anchors: tuple[tuple[float, float], ...]
    classes: int
    scale_x_y: float = 1.0
    new_coords: bool = False

    @property
    def num_anchors(self) -> int:
        return len(self.anchors)

    @property
    def flat_anchors(self) -> list[float]:
        """w0, h0, w1, h1, ...: what the decode takes."""
        return [v for pair in self.anchors for v in pair]


@dataclass
class LayerSpec:
    """One cfg layer: type, cfg line, absolute source layers (-1 = network input), output channels/stride."""

    index: int
    type: str
    line: int
    sources: tuple[int, ...]
    channels: int
    stride: int  # output size = input size / stride (checked against the real size at define time)
    options: dict[str, Any] = field(default_factory=dict)  # the kind's constructor arguments
    section: Any = None


@dataclass
class DarknetPlan:
    cfg: Any  # netdef.darknet_cfg.DarknetCfg
    layers: list[LayerSpec]
    in_channels: int
    input_size: tuple[int, int]  # the cfg's [net] height, width

    @property
    def heads(self) -> list[int]:
        """Indices of the [yolo] layers, in cfg order (the order their outputs are concatenated)."""
        return [s.index for s in self.layers if s.type == "yolo"]

    def _convs_read_by(self, kind: str) -> list[int]:
        """Indices of the convolutions that the layers of type `kind` read first."""
        sources = (s.sources[0] for s in self.layers if s.type == kind)
        return [i for i in sources if i >= 0 and self.layers[i].type == "convolutional"]

    @property
    def head_convs(self) -> list[int]:
        """Indices of the convolutions the [yolo] layers read (the head's last, linear 1x1 convs)."""
        return self._convs_read_by("yolo")

    @property
    def stem(self) -> int:
        """Index of the first convolution (the one reading the image)."""
        return next(s.index for s in self.layers if s.type == "convolutional")

    def convs_ending_in(self, activation: str) -> list[int]:
        """Indices of the convolutions whose activation is `activation` ("mish", "leaky", ...)."""
        return [s.index for s in self.layers if s.type == "convolutional" and s.options["activation"] == activation]

    @property
    def shortcut_branches(self) -> list[int]:
        """Indices of the convolutions a [shortcut] adds to its `from` layer (each shortcut's previous layer)."""
        return self._convs_read_by("shortcut")

    @property
    def classes(self) -> int:
        counts = {self.layers[i].options["head"].classes for i in self.heads}
        if len(counts) != 1:
            raise self.cfg_error(f"[yolo] layers disagree on classes: {sorted(counts)}")
        return counts.pop()

    @property
    def max_stride(self) -> int:
        return max(s.stride for s in self.layers)

    def cfg_error(self, message: str) -> Exception:
        return DarknetCfgError(self.cfg.path, None, message)

    def check_input_size(self, input_size: Sequence[int]) -> tuple[int, int]:
        """(H, W) as ints, each a positive multiple of the network's total stride."""
        h, w = (int(v) for v in input_size)
        m = self.max_stride
        if h <= 0 or w <= 0 or h % m or w % m:
            raise ValueError(f"{self.cfg.path}: input size {h}x{w} must be positive multiples of {m} "
                             "(the network's total stride)")
        return h, w


def plan(cfg: Any) -> DarknetPlan:
    """Every layer's absolute sources, channels and stride; errors (from the cfg checks too) name the cfg line."""
    shapes = layer_shapes(cfg)  # checks references, channel counts and sizes, naming the line
    in_channels, net_h = cfg.net.int("channels", 3), cfg.net.int("height")
    specs: list[LayerSpec] = []
    for s, (channels, h, _) in zip(cfg.layers, shapes):
        stride = net_h // h if h and net_h % h == 0 else 0
        if stride <= 0:
            raise s.error(f"output height {h} does not divide the [net] height {net_h}: "
                          "netdef needs every layer's size to be the input size divided by an integer")
        kind = LAYER_KINDS.get(s.type)
        if kind is None:
            raise s.error(f"layer type [{s.type}] is not supported by networks.darknet")
        layer_in = shapes[s.index - 1][0] if s.index > 0 else in_channels
        specs.append(LayerSpec(s.index, s.type, s.line, kind.sources(s), channels, stride, kind.options(s, layer_in),
                               s))
    if not specs:
        raise DarknetPlan(cfg, [], in_channels, (0, 0)).cfg_error("the cfg has no layers after [net]")
    return DarknetPlan(cfg, specs, in_channels, (net_h, cfg.net.int("width")))


# --- the layer kinds, each written once against a side's ops ----------------------------------------------

class Side:
    """What a layer kind needs from its side: the module namespace and its ops. `NetdefSide` below,
    `networks.darknet_torch.TorchSide` for the reference."""

    ns: Any  # netdef.nn or torch.nn

    def residual(self, x: Any, skip: Any) -> Any:
        """x + skip, where `skip` is the shortcut's `from` layer and x the previous layer's activated output (INT8:
        docs/int8.md R3c, or R3b)."""
        raise NotImplementedError

    def act(self, x: Any, kind: str) -> Any:
        raise NotImplementedError

    def preactivation(self, x: Any, kind: str) -> Any:
        """The raw conv output of a shortcut branch, the stem, a Mish or a leaky conv (`kind`: "branch", "stem",
        "mish", "leaky") before its activation (INT8 may quantize it there: R3c; YOLOv4.define(preact_q=...))."""
        return x

    def max_pool(self, x: Any, size: int, stride: int, pads: tuple[tuple[int, int], tuple[int, int]]) -> Any:
        raise NotImplementedError

    def cat(self, xs: Sequence[Any]) -> Any:
        raise NotImplementedError

    def channel_group(self, x: Any, groups: int, group_id: int, k: int) -> Any:
        raise NotImplementedError

    def decode(self, x: Any, head: YoloHead, stride: float) -> tuple[Any, Any]:
        raise NotImplementedError


class Convolutional:
    """[convolutional]: conv (+ BN, folded into it: conv/bn siblings) + activation."""

    # "branch" (a [shortcut] adds its output), "stem", "mish", "leaky" (make_layers)
    preactivation_site: str | None = None

    def __init__(self, in_channels: int, filters: int, size: int, stride: int, padding: int, groups: int,
                 bn: bool, activation: str) -> None:
        super().__init__()
        self.conv = self.ns.Conv2d(in_channels, filters, size, stride, padding, groups=groups, bias=not bn)
        self.bn = self.ns.BatchNorm2d(filters, eps=BN_EPS) if bn else None
        self.activation = activation

    def forward(self, x: Any) -> Any:
        x = self.conv(x)
        x = self.bn(x) if self.bn is not None else x
        if self.preactivation_site:
            x = self.preactivation(x, self.preactivation_site)
        return self.act(x, self.activation)


class Maxpool:
    """[maxpool]: Darknet pads `padding` in total, padding // 2 before; padding never wins a max."""

    def __init__(self, size: int, stride: int, padding: int) -> None:
        super().__init__()
        self.size, self.stride, self.padding = size, stride, padding

    def forward(self, x: Any) -> Any:
        before = self.padding // 2
        pads = tuple((before, self._after(int(n), before)) for n in tuple(x.shape)[-2:])
        return self.max_pool(x, self.size, self.stride, pads)

    def _after(self, n: int, before: int) -> int:
        """Darknet's output size is (n + padding - size) // stride + 1; pad after just enough for it."""
        out = (n + self.padding - self.size) // self.stride + 1
        return max(0, (out - 1) * self.stride + self.size - n - before)


class Route:
    """[route]: concatenation of layers (each one's channel group `group_id` of `groups`)."""

    def __init__(self, groups: int, group_id: int) -> None:
        super().__init__()
        self.groups, self.group_id = groups, group_id

    def forward(self, *xs: Any) -> Any:
        if self.groups > 1:
            xs = tuple(self.channel_group(x, self.groups, self.group_id, k) for k, x in enumerate(xs))
        return xs[0] if len(xs) == 1 else self.cat(xs)


class Shortcut:
    """[shortcut]: the sum of the previous layer and `from`, then an activation."""

    def __init__(self, activation: str) -> None:
        super().__init__()
        self.activation = activation

    def forward(self, x: Any, other: Any) -> Any:
        return self.act(self.residual(x, other), self.activation)


class Upsample:
    """[upsample]: nearest-neighbour by an integer factor."""

    def __init__(self, stride: int) -> None:
        super().__init__()
        self.up = self.ns.Upsample(scale_factor=stride, mode="nearest")

    def forward(self, x: Any) -> Any:
        return self.up(x)


class YoloDecode:
    """[yolo]: one head (B, A*(5+C), H, W) -> input-pixel xyxy boxes (B, A*H*W, 4), scores (B, A*H*W, C).

    Rows are anchor-major (n = a*H*W + gy*W + gx), score = objectness * class probability; the math is
    `netdef.plugins.builtin.yolo` (yolo_decode_native / yolo_decode_reference), the one implementation."""

    def __init__(self, head: YoloHead) -> None:
        super().__init__()
        self.head = head

    def forward(self, x: Any, input_size: tuple[int, int]) -> tuple[Any, Any]:
        h, w = (int(v) for v in tuple(x.shape)[-2:])
        if input_size[0] * w != input_size[1] * h:
            raise ValueError(f"YOLO head {h}x{w} does not divide input {input_size[0]}x{input_size[1]} evenly")
        return self.decode(x, self.head, input_size[1] / w)


@dataclass(frozen=True)
class LayerKind:
    """One cfg layer type: its constructor arguments from the section (and the input channels), its sources."""

    kind: type
    options: Callable[[Any, int], dict[str, Any]]
    sources: Callable[[Any], tuple[int, ...]] = lambda s: (s.index - 1,)


def _conv_options(s: Any, in_channels: int) -> dict[str, Any]:
    if s.int("dilation", 1) != 1:
        raise s.error("dilation other than 1 is not supported", "dilation")
    return dict(in_channels=in_channels, filters=s.int("filters", 1), size=s.int("size", 1),
                stride=s.int("stride", 1), padding=conv_padding(s), groups=s.int("groups", 1),
                bn=bool(s.int("batch_normalize", 0)), activation=s.str("activation", "logistic"))


def _yolo_head(s: Any) -> YoloHead:
    pairs = np.asarray(s.floats("anchors"), dtype=np.float64).reshape(-1, 2)
    masked = tuple((float(w), float(h)) for w, h in pairs[yolo_mask(s)])
    return YoloHead(masked, s.int("classes"), s.float("scale_x_y", 1.0), bool(s.int("new_coords", 0)))


LAYER_KINDS: dict[str, LayerKind] = {
    "convolutional": LayerKind(Convolutional, _conv_options),
    "maxpool": LayerKind(Maxpool, lambda s, c: dict(size=maxpool_size(s), stride=s.int("stride", 1),
                                                    padding=maxpool_padding(s))),
    "route": LayerKind(Route, lambda s, c: dict(groups=s.int("groups", 1), group_id=s.int("group_id", 0)),
                       lambda s: tuple(s.layer_refs("layers"))),
    "shortcut": LayerKind(Shortcut, lambda s, c: dict(activation=s.str("activation", "linear")),
                          lambda s: (s.index - 1, *s.layer_refs("from"))),
    "upsample": LayerKind(Upsample, lambda s, c: dict(stride=s.int("stride", 2))),
    "yolo": LayerKind(YoloDecode, lambda s, c: dict(head=_yolo_head(s))),
}


def side_classes(side: type) -> dict[str, type]:
    """cfg layer type -> the kind's class on `side` (a Side and a netdef or torch Module), named as the kind."""
    return {t: type(k.kind.__name__, (k.kind, side), {"__module__": side.__module__, "__doc__": k.kind.__doc__})
            for t, k in LAYER_KINDS.items()}


def make_layers(darknet_plan: DarknetPlan, classes: dict[str, type]) -> list[Any]:
    layers = [classes[s.type](**s.options) for s in darknet_plan.layers]
    # a conv's site names the placement option that may quantize its raw output; the more specific one wins
    for activation in ("mish", "leaky"):
        for i in darknet_plan.convs_ending_in(activation):
            layers[i].preactivation_site = activation
    layers[darknet_plan.stem].preactivation_site = "stem"
    for i in darknet_plan.shortcut_branches:
        layers[i].preactivation_site = "branch"
    return layers


def walk(darknet_plan: DarknetPlan, layers: Sequence[Any], x: Any) -> list[Any]:
    """Run the cfg's layers on x (either side); returns the [yolo] layers' inputs, the raw heads in cfg order.
    A route to a [yolo] layer reads its input, as in Darknet; heads are decoded by `decode_heads`."""
    outputs: list[Any] = []
    heads: list[Any] = []
    for s, layer in zip(darknet_plan.layers, layers):
        ins = [x if j < 0 else outputs[j] for j in s.sources]
        if s.type == "yolo":
            heads.append(ins[0])
            outputs.append(ins[0])
        else:
            outputs.append(layer(*ins))
    if not heads:
        raise darknet_plan.cfg_error("the cfg has no [yolo] layer: nothing to decode")
    return heads


def decode_heads(darknet_plan: DarknetPlan, layers: Sequence[Any], heads: Sequence[Any],
                 input_size: tuple[int, int]) -> tuple[list[Any], list[Any]]:
    """(boxes per head, scores per head) through each head's YoloDecode layer."""
    decoded = [layers[i](h, input_size) for i, h in zip(darknet_plan.heads, heads)]
    return [d[0] for d in decoded], [d[1] for d in decoded]


# --- the netdef side ------------------------------------------------------------------------------------

class NetdefSide(Side, Module):
    ns = nn

    def residual(self, x: Any, skip: Any) -> Any:
        return F.add(x, skip, skip=1, quantize_branch=True)  # x = activation(conv), its conv: preactivation

    def act(self, x: Any, kind: str) -> Any:
        return activate(F, x, kind, op=kind)

    def preactivation(self, x: Any, kind: str) -> Any:
        return current().quant.preactivation(x, branch=kind == "branch")

    def max_pool(self, x: Any, size: int, stride: int, pads: tuple[tuple[int, int], tuple[int, int]]) -> Any:
        return F.max_pool2d(x, size, stride, pads, op=None)

    def cat(self, xs: Sequence[Any]) -> Any:
        return F.concat(xs, dim=1, op=None)

    def channel_group(self, x: Any, groups: int, group_id: int, k: int) -> Any:
        size = int(tuple(x.shape)[1]) // groups
        return F.slice(x, 1, group_id * size, (group_id + 1) * size, op=f"group{k}")

    def decode(self, x: Any, head: YoloHead, stride: float) -> tuple[Any, Any]:
        return yolo_decode_native(current(), x, head.flat_anchors, stride, head.classes, head.scale_x_y,
                                  head.new_coords)


NETDEF_LAYERS = side_classes(NetdefSide)


class Darknet(Module):
    """The netdef definition of a cfg: `layers.{i}` is cfg layer i. forward returns (boxes, scores, heads)."""

    def __init__(self, darknet_plan: DarknetPlan, input_size: tuple[int, int]) -> None:
        super().__init__()
        self.plan = darknet_plan
        self.input_size = darknet_plan.check_input_size(input_size)
        self.layers = ModuleList(make_layers(darknet_plan, NETDEF_LAYERS))

    def forward(self, x: Any) -> tuple[Any, Any, list[Any]]:
        """(boxes, scores, heads): heads are the raw [yolo] inputs, as the reference's `heads(x)`."""
        heads = walk(self.plan, self.layers, x)
        boxes, scores = decode_heads(self.plan, self.layers, heads, self.input_size)
        net = current()
        with net.scope("decode"), net.float32():  # the outputs in FP32 (the scores were computed in FP16)
            scores = [net.to_compute(s) for s in scores]
            if len(boxes) == 1:
                return boxes[0], scores[0], heads
            return F.concat(boxes, dim=1, op="boxes"), F.concat(scores, dim=1, op="scores"), heads


def reference_module(darknet_plan: DarknetPlan) -> Any:
    """The PyTorch twin of `Darknet` (networks.darknet_torch.DarknetReference); its state dict names equal
    the HDF5 names. Imports torch."""
    from networks.darknet_torch import DarknetReference

    return DarknetReference(darknet_plan)
