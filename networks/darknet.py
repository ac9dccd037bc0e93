"""Darknet networks driven by a `.cfg`: a netdef definition and a PyTorch reference from one parsed cfg.

Both sides are built from the same `DarknetPlan` (the cfg's layers with resolved sources and channel
counts), and both name layer i `layers.{i}`: a convolution's weights are `layers.{i}.conv.weight` and
`layers.{i}.bn.{weight,bias,running_mean,running_var}` (or `layers.{i}.conv.bias` without BN), the names
`weights_export.darknet.export_darknet` writes. Layer types: convolutional (BN; linear, leaky, mish,
logistic, relu, swish), maxpool (also stride-1 "same" pooling as in SPP), route (several layers,
groups/group_id), shortcut, upsample (nearest), yolo (box decoding into input-pixel xyxy boxes and
per-class scores, as native layers in FP32).

Darknet conventions reproduced here: conv `pad=1` means padding size//2; maxpool pads `padding` (default
size-1) in total, padding//2 before and the rest after, and padding never wins a max; BatchNorm eps 1e-5;
leaky slope 0.1.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

import netdef.functional as F
from netdef import nn
from netdef.module import Module, ModuleList
from netdef.network import current
from netdef.plugins.builtin.yolo import yolo_decode_native, yolo_decode_reference
from weights_export.darknet import conv_padding, layer_shapes, maxpool_padding, maxpool_size, yolo_mask
from weights_export.errors import DarknetCfgError

BN_EPS = 1e-5
LEAKY_SLOPE = 0.1


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
    options: dict[str, Any] = field(default_factory=dict)
    section: Any = None


@dataclass
class DarknetPlan:
    cfg: Any  # weights_export.darknet.DarknetCfg
    layers: list[LayerSpec]
    in_channels: int
    input_size: tuple[int, int]  # the cfg's [net] height, width

    @property
    def heads(self) -> list[int]:
        """Indices of the [yolo] layers, in cfg order (the order their outputs are concatenated)."""
        return [s.index for s in self.layers if s.type == "yolo"]

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
        src = s.index - 1
        stride = net_h // h if h and net_h % h == 0 else 0
        if stride <= 0:
            raise s.error(f"output height {h} does not divide the [net] height {net_h}: "
                          "netdef needs every layer's size to be the input size divided by an integer")
        sources: tuple[int, ...] = (src,)
        if s.type == "convolutional":
            if s.int("dilation", 1) != 1:
                raise s.error("dilation other than 1 is not supported", "dilation")
            opts: dict[str, Any] = dict(
                filters=s.int("filters", 1), size=s.int("size", 1), stride=s.int("stride", 1),
                padding=conv_padding(s), groups=s.int("groups", 1), bn=bool(s.int("batch_normalize", 0)),
                activation=s.str("activation", "logistic"))
        elif s.type == "maxpool":
            opts = dict(size=maxpool_size(s), stride=s.int("stride", 1), padding=maxpool_padding(s))
        elif s.type == "route":
            sources = tuple(s.layer_refs("layers"))
            opts = dict(groups=s.int("groups", 1), group_id=s.int("group_id", 0))
        elif s.type == "shortcut":
            sources = (src, *s.layer_refs("from"))
            opts = dict(activation=s.str("activation", "linear"))
        elif s.type == "upsample":
            opts = dict(stride=s.int("stride", 2))
        elif s.type == "yolo":
            opts = dict(head=_yolo_head(s))
        else:
            raise s.error(f"layer type [{s.type}] is not supported by networks.darknet")
        specs.append(LayerSpec(s.index, s.type, s.line, sources, channels, stride, opts, s))
    if not specs:
        raise DarknetPlan(cfg, [], in_channels, (0, 0)).cfg_error("the cfg has no layers after [net]")
    return DarknetPlan(cfg, specs, in_channels, (net_h, cfg.net.int("width")))


def _yolo_head(s: Any) -> YoloHead:
    pairs = np.asarray(s.floats("anchors"), dtype=np.float64).reshape(-1, 2)
    masked = tuple((float(w), float(h)) for w, h in pairs[yolo_mask(s)])
    return YoloHead(masked, s.int("classes"), s.float("scale_x_y", 1.0), bool(s.int("new_coords", 0)))


# --- [yolo] decoding: one implementation (netdef.plugins.builtin.yolo) serves both sides ----------------
# Head rows are anchor-major: n = a*H*W + gy*W + gx; boxes in input-pixel xyxy; score = objectness * class.

def _head_stride(x_shape: Any, input_size: tuple[int, int]) -> float:
    h, w = (int(v) for v in tuple(x_shape)[-2:])
    if input_size[0] * w != input_size[1] * h:
        raise ValueError(f"YOLO head {h}x{w} does not divide input {input_size[0]}x{input_size[1]} evenly")
    return input_size[1] / w


def decode_netdef(x: Any, head: YoloHead, input_size: tuple[int, int]) -> tuple[Any, Any]:
    """Native layers decoding one head (B, A*(5+C), H, W) into boxes (B, A*H*W, 4) and scores (B, A*H*W, C)."""
    return yolo_decode_native(current(), x, head.flat_anchors, _head_stride(x.shape, input_size),
                              head.classes, head.scale_x_y, head.new_coords)


def decode_torch(x: Any, head: YoloHead, input_size: tuple[int, int]) -> tuple[Any, Any]:
    """The PyTorch decode of one head, in x's dtype (float64 for reference comparisons)."""
    return yolo_decode_reference(x, head.flat_anchors, _head_stride(x.shape, input_size),
                                 head.classes, head.scale_x_y, head.new_coords)


# --- netdef side ----------------------------------------------------------------------------------------

def activation(x: Any, kind: str, op: str | None) -> Any:
    """Darknet activation as native layers (mish exact: x * tanh(softplus(x)))."""
    if kind == "linear":
        return x
    if kind == "leaky":
        return F.leaky_relu(x, LEAKY_SLOPE, op=op)
    if kind == "mish":
        return F.mish(x, op=op)
    if kind == "logistic":
        return F.sigmoid(x, op=op)
    if kind == "relu":
        return F.relu(x, op=op)
    if kind == "swish":
        return F.silu(x, op=op)
    raise ValueError(f"{current().path}: unknown Darknet activation {kind!r}")


class ConvLayer(Module):
    """[convolutional]: conv (+ BN folded into it) + activation."""

    def __init__(self, in_channels: int, filters: int, size: int, stride: int, padding: int, groups: int,
                 bn: bool, activation: str) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, filters, size, stride, padding, groups=groups, bias=not bn)
        self.bn = nn.BatchNorm2d(filters, eps=BN_EPS) if bn else None
        self.activation = activation

    def forward(self, x: Any) -> Any:
        x = self.conv(x)
        if self.bn is not None:
            x = self.bn(x)
        return activation(x, self.activation, self.activation)


class MaxPoolLayer(Module):
    """[maxpool]: Darknet pads `padding` in total, padding // 2 before; padding never wins a max."""

    def __init__(self, size: int, stride: int, padding: int) -> None:
        super().__init__()
        self.size, self.stride, self.padding = size, stride, padding

    def forward(self, x: Any) -> Any:
        net = current()
        layer = net.definition.add_pooling_nd(x, net.trt.PoolingType.MAX, (self.size, self.size))
        layer.stride_nd = (self.stride, self.stride)
        before = self.padding // 2
        layer.pre_padding = (before, before)
        layer.post_padding = self._post_padding(tuple(x.shape)[-2:], before)
        return net.name_layer(layer).get_output(0)

    def _post_padding(self, hw: tuple[int, int], before: int) -> tuple[int, int]:
        """Darknet's output size is (n + padding - size) // stride + 1; pad after just enough for it."""
        post = []
        for n in hw:
            out = (n + self.padding - self.size) // self.stride + 1
            post.append(max(0, (out - 1) * self.stride + self.size - n - before))
        return tuple(post)  # type: ignore[return-value]


class RouteLayer(Module):
    """[route]: concatenation of layers (each one's channel group `group_id` of `groups`)."""

    def __init__(self, groups: int, group_id: int) -> None:
        super().__init__()
        self.groups, self.group_id = groups, group_id

    def forward(self, *xs: Any) -> Any:
        if self.groups > 1:
            parts = []
            for k, x in enumerate(xs):
                size = tuple(x.shape)[1] // self.groups
                parts.append(F.slice(x, 1, self.group_id * size, (self.group_id + 1) * size, op=f"group{k}"))
            xs = tuple(parts)
        return xs[0] if len(xs) == 1 else F.concat(xs, dim=1, op=None)


class ShortcutLayer(Module):
    def __init__(self, activation: str) -> None:
        super().__init__()
        self.activation = activation

    def forward(self, x: Any, other: Any) -> Any:
        y = F.add(x, other, op=None if self.activation == "linear" else "add")
        return activation(y, self.activation, self.activation)


class UpsampleLayer(Module):
    def __init__(self, stride: int) -> None:
        super().__init__()
        self.up = nn.Upsample(scale_factor=stride, mode="nearest")

    def forward(self, x: Any) -> Any:
        return self.up(x)


class YoloLayer(Module):
    """[yolo]: decode the head into input-pixel xyxy boxes (B, A*H*W, 4) and scores (B, A*H*W, C), in FP32."""

    def __init__(self, head: YoloHead, input_size: tuple[int, int]) -> None:
        super().__init__()
        self.head, self.input_size = head, input_size

    def forward(self, x: Any) -> tuple[Any, Any]:
        return decode_netdef(x, self.head, self.input_size)


class Darknet(Module):
    """The netdef definition of a cfg: `layers.{i}` is cfg layer i. forward returns (boxes, scores, heads)."""

    def __init__(self, darknet_plan: DarknetPlan, input_size: tuple[int, int]) -> None:
        super().__init__()
        self.plan = darknet_plan
        self.input_size = darknet_plan.check_input_size(input_size)
        self.layers = ModuleList(self._make(s) for s in darknet_plan.layers)

    def _make(self, s: LayerSpec) -> Module:
        o = s.options
        if s.type == "convolutional":
            in_ch = self.plan.in_channels if s.sources[0] < 0 else self.plan.layers[s.sources[0]].channels
            return ConvLayer(in_ch, **o)
        if s.type == "maxpool":
            return MaxPoolLayer(**o)
        if s.type == "route":
            return RouteLayer(**o)
        if s.type == "shortcut":
            return ShortcutLayer(**o)
        if s.type == "upsample":
            return UpsampleLayer(**o)
        return YoloLayer(o["head"], self.input_size)

    def forward(self, x: Any) -> tuple[Any, Any, list[Any]]:
        """(boxes, scores, heads): heads are the raw [yolo] inputs, as the reference's `heads(x)`."""
        outputs: list[Any] = []
        boxes, scores, raw = [], [], []
        for s, layer in zip(self.plan.layers, self.layers):
            ins = [x if j < 0 else outputs[j] for j in s.sources]
            if s.type == "yolo":
                b, c = layer(*ins)
                boxes.append(b)
                scores.append(c)
                raw.append(ins[0])
                outputs.append(ins[0])  # a route to a [yolo] layer reads its input, as in Darknet
            else:
                outputs.append(layer(*ins))
        if not boxes:
            raise self.plan.cfg_error("the cfg has no [yolo] layer: nothing to decode")
        net = current()
        with net.scope("decode"), net.float32():
            if len(boxes) == 1:
                return boxes[0], scores[0], raw
            return F.concat(boxes, dim=1, op="boxes"), F.concat(scores, dim=1, op="scores"), raw


# --- PyTorch reference ----------------------------------------------------------------------------------

def reference_module(darknet_plan: DarknetPlan) -> Any:
    """A torch.nn.Module computing the same as `Darknet`; its state dict names equal the HDF5 names.

    forward(x) returns (boxes, scores), or `postprocess(boxes, scores)` when set; `heads(x)` returns the raw
    [yolo] inputs (B, A*(5+C), H, W).
    """
    import torch
    from torch import nn as tnn

    def act(x: Any, kind: str) -> Any:
        if kind == "linear":
            return x
        if kind == "leaky":
            return tnn.functional.leaky_relu(x, LEAKY_SLOPE)
        if kind == "mish":
            return x * torch.tanh(tnn.functional.softplus(x))
        if kind == "logistic":
            return torch.sigmoid(x)
        if kind == "relu":
            return torch.relu(x)
        return tnn.functional.silu(x)

    class Conv(tnn.Module):
        def __init__(self, in_ch: int, filters: int, size: int, stride: int, padding: int, groups: int, bn: bool,
                     activation: str) -> None:
            super().__init__()
            self.conv = tnn.Conv2d(in_ch, filters, size, stride, padding, groups=groups, bias=not bn)
            self.bn = tnn.BatchNorm2d(filters, eps=BN_EPS) if bn else None
            self.activation = activation

        def forward(self, x: Any) -> Any:
            x = self.conv(x)
            return act(self.bn(x) if self.bn is not None else x, self.activation)

    class MaxPool(tnn.Module):
        def __init__(self, size: int, stride: int, padding: int) -> None:
            super().__init__()
            self.size, self.stride, self.padding = size, stride, padding

        def forward(self, x: Any) -> Any:
            before = self.padding // 2
            after = self.padding - before
            x = tnn.functional.pad(x, (before, after, before, after), value=float("-inf"))
            return tnn.functional.max_pool2d(x, self.size, self.stride)

    class Route(tnn.Module):
        def __init__(self, groups: int, group_id: int) -> None:
            super().__init__()
            self.groups, self.group_id = groups, group_id

        def forward(self, *xs: Any) -> Any:
            parts = [x.chunk(self.groups, dim=1)[self.group_id] for x in xs]
            return parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)

    class Shortcut(tnn.Module):
        def __init__(self, activation: str) -> None:
            super().__init__()
            self.activation = activation

        def forward(self, x: Any, other: Any) -> Any:
            return act(x + other, self.activation)

    class Upsample(tnn.Module):
        def __init__(self, stride: int) -> None:
            super().__init__()
            self.stride = stride

        def forward(self, x: Any) -> Any:
            return tnn.functional.interpolate(x, scale_factor=self.stride, mode="nearest")

    class Yolo(tnn.Module):
        def __init__(self, head: YoloHead) -> None:
            super().__init__()
            self.head = head

        def forward(self, x: Any) -> Any:
            return x  # decoding needs the input size: DarknetReference.forward does it

    class DarknetReference(tnn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.plan = darknet_plan
            mods = []
            for s in darknet_plan.layers:
                o = s.options
                if s.type == "convolutional":
                    in_ch = darknet_plan.in_channels if s.sources[0] < 0 else darknet_plan.layers[s.sources[0]].channels
                    mods.append(Conv(in_ch, **o))
                elif s.type == "maxpool":
                    mods.append(MaxPool(**o))
                elif s.type == "route":
                    mods.append(Route(**o))
                elif s.type == "shortcut":
                    mods.append(Shortcut(**o))
                elif s.type == "upsample":
                    mods.append(Upsample(**o))
                else:
                    mods.append(Yolo(o["head"]))
            self.layers = tnn.ModuleList(mods)
            self.postprocess: Any = None  # e.g. host NMS: (boxes, scores) -> outputs

        def heads(self, x: Any) -> list[Any]:
            outputs: list[Any] = []
            found = []
            for s, layer in zip(self.plan.layers, self.layers):
                outputs.append(layer(*[x if j < 0 else outputs[j] for j in s.sources]))
                if s.type == "yolo":
                    found.append(outputs[-1])
            return found

        def decode(self, heads: list[Any], size: tuple[int, int]) -> tuple[Any, Any]:
            """(boxes, scores) of the `heads(x)` outputs for an input of `size` (H, W)."""
            specs = [self.plan.layers[i].options["head"] for i in self.plan.heads]
            decoded = [decode_torch(h, spec, size) for h, spec in zip(heads, specs)]
            return torch.cat([d[0] for d in decoded], 1), torch.cat([d[1] for d in decoded], 1)

        def forward(self, x: Any) -> tuple[Any, Any]:
            boxes, scores = self.decode(self.heads(x), (int(x.shape[-2]), int(x.shape[-1])))
            return (boxes, scores) if self.postprocess is None else self.postprocess(boxes, scores)

    return DarknetReference()
