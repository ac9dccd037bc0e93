"""Synthesized Darknet cfgs equal in structure to YOLOv4 and YOLOv4-tiny, and random Darknet .weights.

The cfgs keep the real layer structure (YOLOv4: CSPDarknet53 with mish, SPP with stride-1 maxpools, PANet
with leaky, three [yolo] heads with scale_x_y; YOLOv4-tiny: grouped routes, 2x2 maxpools, two heads) and
layer count (162 and 38 layers), with channel widths divided by `width_div` and a configurable class count
so tests stay fast (`width_div=1` gives the full-size networks the benchmarks use).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

YOLOV4_ANCHORS = "12,16, 19,36, 40,28, 36,75, 76,55, 72,146, 142,110, 192,243, 459,401"
TINY_ANCHORS = "10,14, 23,27, 37,58, 81,82, 135,169, 344,319"


class CfgWriter:
    """Appends cfg sections and counts layers, so routes can be written with the real relative offsets."""

    def __init__(self, width: int, height: int, width_div: int, classes: int) -> None:
        self.lines = ["[net]", "batch=64", "subdivisions=8", f"width={width}", f"height={height}", "channels=3",
                      "momentum=0.949", ""]
        self.div, self.classes, self.count = width_div, classes, 0

    def section(self, kind: str, **options: object) -> int:
        self.lines.append(f"[{kind}]")
        self.lines.extend(f"{k}={v}" for k, v in options.items())
        self.lines.append("")
        self.count += 1
        return self.count - 1

    def conv(self, filters: int, size: int = 1, stride: int = 1, activation: str = "leaky", bn: bool = True) -> int:
        opts: dict[str, object] = {"batch_normalize": 1} if bn else {}
        filters = filters if not bn else max(2, filters // self.div)
        return self.section("convolutional", **opts, filters=filters, size=size, stride=stride, pad=1,
                            activation=activation)

    def head_conv(self, anchors: int = 3) -> int:
        return self.conv(anchors * (5 + self.classes), 1, 1, "linear", bn=False)

    def yolo(self, mask: str, anchors: str, num: int, scale: float) -> int:
        return self.section("yolo", mask=mask, anchors=anchors, classes=self.classes, num=num, jitter=".3",
                            ignore_thresh=".7", truth_thresh=1, scale_x_y=scale, iou_thresh=0.213,
                            nms_kind="greedynms", beta_nms=0.6)

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


def _csp_stage(w: CfgWriter, filters: int, blocks: int, first: bool = False) -> None:
    """A CSPDarknet53 stage: downsample, split, `blocks` residual blocks, transition, route, fuse."""
    w.conv(filters, 3, 2, "mish")
    half = filters if first else filters // 2
    w.conv(half, 1, 1, "mish")
    w.section("route", layers=-2)
    w.conv(half, 1, 1, "mish")
    for _ in range(blocks):
        w.conv(filters // 2 if first else half, 1, 1, "mish")
        w.conv(half, 3, 1, "mish")
        w.section("shortcut", **{"from": -3}, activation="linear")
    w.conv(half, 1, 1, "mish")
    w.section("route", layers=f"-1,-{3 * blocks + 4}")
    w.conv(filters, 1, 1, "mish")


def yolov4_cfg(width: int = 416, height: int = 416, width_div: int = 8, classes: int = 80) -> str:
    """YOLOv4 (AlexeyAB yolov4.cfg structure, 162 layers) with channel widths divided by `width_div`."""
    w = CfgWriter(width, height, width_div, classes)
    w.conv(32, 3, 1, "mish")
    _csp_stage(w, 64, 1, first=True)  # layers 1-10
    _csp_stage(w, 128, 2)  # 11-23
    _csp_stage(w, 256, 8)  # 24-54
    _csp_stage(w, 512, 8)  # 55-85
    _csp_stage(w, 1024, 4)  # 86-104
    w.conv(512)
    w.conv(1024, 3)
    w.conv(512)
    for size, back in ((5, -2), (9, -4), (13, None)):  # SPP: stride-1 'same' max pooling
        w.section("maxpool", stride=1, size=size)
        if back:
            w.section("route", layers=back)
    w.section("route", layers="-1,-3,-5,-6")
    w.conv(512)
    w.conv(1024, 3)
    w.conv(512)
    for filters, lateral in ((256, 85), (128, 54)):  # PANet top-down
        w.conv(filters)
        w.section("upsample", stride=2)
        w.section("route", layers=lateral)
        w.conv(filters)
        w.section("route", layers="-1,-3")
        for _ in range(2):
            w.conv(filters)
            w.conv(filters * 2, 3)
        w.conv(filters)
    heads = (("0,1,2", 1.2), ("3,4,5", 1.1), ("6,7,8", 1.05))
    for k, (mask, scale) in enumerate(heads):  # PANet bottom-up, one head per scale
        filters = 128 << k
        if k:
            w.section("route", layers=-4)
            w.conv(filters, 3, 2)
            w.section("route", layers=f"-1,-{16 if k == 1 else 37}")
            for _ in range(2):
                w.conv(filters)
                w.conv(filters * 2, 3)
            w.conv(filters)
        w.conv(filters * 2, 3)
        w.head_conv()
        w.yolo(mask, YOLOV4_ANCHORS, 9, scale)
    return w.text()


def yolov4_tiny_cfg(width: int = 416, height: int = 416, width_div: int = 4, classes: int = 80) -> str:
    """YOLOv4-tiny (yolov4-tiny.cfg structure, 38 layers) with channel widths divided by `width_div`."""
    w = CfgWriter(width, height, width_div, classes)
    w.conv(32, 3, 2)
    w.conv(64, 3, 2)
    for filters in (64, 128, 256):
        w.conv(filters, 3)
        w.section("route", layers=-1, groups=2, group_id=1)
        w.conv(filters // 2, 3)
        w.conv(filters // 2, 3)
        w.section("route", layers="-1,-2")
        w.conv(filters, 1)
        w.section("route", layers="-6,-1")
        if filters < 256:
            w.section("maxpool", size=2, stride=2)
    w.section("maxpool", size=2, stride=2)
    w.conv(512, 3)
    w.conv(256, 1)
    w.conv(512, 3)
    w.head_conv()
    w.yolo("3,4,5", TINY_ANCHORS, 6, 1.05)
    w.section("route", layers=-4)
    w.conv(128, 1)
    w.section("upsample", stride=2)
    w.section("route", layers="-1, 23")
    w.conv(256, 3)
    w.head_conv()
    w.yolo("1,2,3", TINY_ANCHORS, 6, 1.05)
    return w.text()


def activations_cfg(classes: int = 3) -> str:
    """A small cfg with the conv activations YOLOv4 does not use (relu, logistic, swish), a shortcut with an
    activation and a conv without BN (bias instead)."""
    w = CfgWriter(64, 96, 1, classes)
    w.conv(8, 3, 2, "relu")
    w.conv(8, 3, 1, "logistic")
    w.conv(8, 1, 1, "swish")
    w.section("shortcut", **{"from": -3}, activation="leaky")
    w.conv(8, 3, 2, "linear", bn=False)
    w.conv(8, 3, 2, "leaky")
    w.head_conv(2)
    w.yolo("0,1", "10,14, 23,27", 2, 1.0)
    return w.text()


# --- random weights in Darknet's binary layout ----------------------------------------------------------

def write_darknet_weights(cfg_text: str, path: Path | str, seed: int = 0, version: tuple[int, int, int] = (0, 2, 5),
                          extra_floats: int = 0, gain: float = 1.0) -> Path:
    """Header (major, minor, revision, seen) then per conv: [BN: beta, gamma, mean, var | bias], kernel.

    Kernels are scaled by `gain / sqrt(fan-in)` so deep stacks keep activations O(1) (YOLOv4's 23 residual
    additions would otherwise grow them by orders of magnitude); BN statistics are realistic
    (running_var in [0.5, 2], random mean, gamma and beta), never zeros.
    """
    from netdef.darknet_cfg import layer_shapes, parse_cfg

    cfg = parse_cfg(cfg_text)
    shapes = layer_shapes(cfg)
    rng = np.random.default_rng(seed)
    major, minor, revision = version
    header = np.array([major, minor, revision], np.int32).tobytes()
    header += np.array([123456], np.int64 if major * 10 + minor >= 2 else np.int32).tobytes()
    parts = [header]
    for s in cfg.layers:
        if s.type != "convolutional":
            continue
        in_ch = cfg.net.int("channels", 3) if s.index == 0 else shapes[s.index - 1][0]
        filters, size, groups = s.int("filters"), s.int("size", 1), s.int("groups", 1)
        fan_in = in_ch // groups * size * size
        if s.int("batch_normalize", 0):
            parts += [rng.uniform(-0.2, 0.2, filters), rng.uniform(0.5, 1.5, filters),
                      rng.uniform(-0.3, 0.3, filters), rng.uniform(0.5, 2.0, filters)]
            std = gain / np.sqrt(fan_in)
        else:  # the heads: keep tw, th moderate so exp() gives plausible box sizes
            parts.append(rng.uniform(-0.05, 0.05, filters))
            std = 1.0 / np.sqrt(fan_in)
        parts.append(rng.normal(0, std, filters * fan_in))
    parts.append(rng.normal(0, 1, extra_floats))
    data = b"".join(p if isinstance(p, bytes) else np.asarray(p, np.float32).tobytes() for p in parts)
    path = Path(path)
    path.write_bytes(data)
    return path


def write_synthetic_darknet(cfg_text: str, folder: Path | str, name: str = "yolo", seed: int = 0,
                            gain: float = 1.0) -> Path:
    """`name`.cfg, random `name`.weights (`write_darknet_weights`) and their export `name`.h5 in `folder`: a
    synthetic Darknet model for tests and benches. Returns the HDF5 path."""
    from weights_export.darknet import export_darknet

    folder = Path(folder)
    cfg, weights, h5 = (folder / f"{name}{ext}" for ext in (".cfg", ".weights", ".h5"))
    cfg.write_text(cfg_text)
    write_darknet_weights(cfg_text, weights, seed=seed, gain=gain)
    export_darknet(cfg, weights, h5)
    return h5
