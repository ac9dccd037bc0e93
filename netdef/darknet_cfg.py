"""Darknet `.cfg` parsing: sections with typed getters, every key checked against what netdef understands.

A key or section netdef does not know is an error naming the cfg file and line, never skipped: a silently
ignored option (say `dilation` or `xnor`) would give an engine that computes something else.
Used by both sides of a Darknet network: `weights_export.darknet` (reading `.weights` in cfg order) and
`networks.darknet` (the layers); it depends on neither.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class DarknetCfgError(ValueError):
    """A Darknet .cfg line or section that is not understood; the message is `file:line: what`."""

    def __init__(self, path: str | None, line: int | None, message: str) -> None:
        self.path = path or "<cfg>"
        self.line = line
        self.detail = message
        location = f"{self.path}:{line}" if line else self.path
        super().__init__(f"{location}: {message}")


ACTIVATIONS = ("linear", "leaky", "mish", "logistic", "relu", "swish")

# Keys that change what the network computes, per section type (the ones netdef implements).
_INFERENCE_KEYS: dict[str, frozenset[str]] = {
    "net": frozenset({"width", "height", "channels"}),
    "convolutional": frozenset({"batch_normalize", "filters", "size", "stride", "pad", "padding", "groups",
                                "activation"}),
    "maxpool": frozenset({"size", "stride", "padding"}),
    "route": frozenset({"layers", "groups", "group_id"}),
    "shortcut": frozenset({"from", "activation"}),
    "upsample": frozenset({"stride"}),
    "yolo": frozenset({"mask", "anchors", "classes", "num", "scale_x_y", "new_coords"}),
}

# Keys that only matter to training or to darknet's own post-processing: accepted and kept, not used.
_TRAINING_KEYS: dict[str, frozenset[str]] = {
    "net": frozenset({
        "batch", "subdivisions", "momentum", "decay", "angle", "saturation", "exposure", "hue", "learning_rate",
        "burn_in", "max_batches", "policy", "steps", "scales", "step", "gamma", "power", "mosaic", "mosaic_bound",
        "cutmix", "mixup", "letter_box", "ema_alpha", "optimized_memory", "workspace_size_limit_MB", "flip",
        "blur", "gaussian_noise", "label_smooth_eps", "adam", "B1", "B2", "eps", "max_crop", "min_crop",
        "aspect", "jitter", "track", "time_steps", "seq_scales", "inputs", "max_chart_loss",
        "show_receptive_field", "sgdr_cycle", "sgdr_mult", "rate", "resize_step", "dynamic_minibatch",
        "loss_scale", "contrastive", "contrastive_jit_flip", "contrastive_color", "unsupervised",
        "adversarial_lr", "attention", "num_boxes", "train_only_bn", "random"}),
    "convolutional": frozenset({"stopbackward", "train_only_bn", "learning_rate"}),
    "maxpool": frozenset(),
    "route": frozenset({"stopbackward"}),
    "shortcut": frozenset({"weights_normalization"}),
    "upsample": frozenset(),
    "yolo": frozenset({
        "jitter", "ignore_thresh", "truth_thresh", "random", "iou_thresh", "cls_normalizer", "iou_normalizer",
        "obj_normalizer", "iou_loss", "iou_thresh_kind", "nms_kind", "beta_nms", "max_delta", "resize",
        "counters_per_class", "label_smooth_eps", "focal_loss", "objectness_smooth", "max", "delta_normalizer",
        "uc_normalizer", "beta1", "map", "show_details", "equidistant_point", "track_history_size",
        "sim_thresh", "dets_for_show", "dets_for_track", "embedding_layer", "rewritten_box"}),
}

# Spellings darknet accepts for one section type.
_ALIASES = {"network": "net", "conv": "convolutional", "max": "maxpool"}

_REQUIRED: Any = object()


@dataclass
class Section:
    """One `[type]` block of a cfg. `index` is the layer index (-1 for `[net]`), `line` the header's line."""

    type: str
    options: dict[str, str]
    line: int
    index: int
    source: str = "<cfg>"
    key_lines: dict[str, int] = field(default_factory=dict)

    def line_of(self, key: str) -> int:
        return self.key_lines.get(key, self.line)

    def error(self, message: str, key: str | None = None) -> DarknetCfgError:
        """An error naming this section's file and line (the key's own line when given)."""
        what = f"[{self.type}]" + (f" (layer {self.index})" if self.index >= 0 else "")
        return DarknetCfgError(self.source, self.line_of(key) if key else self.line, f"{what}: {message}")

    def has(self, key: str) -> bool:
        return key in self.options

    def _raw(self, key: str, default: Any) -> Any:
        if key in self.options:
            return self.options[key]
        if default is _REQUIRED:
            raise self.error(f"missing required key {key!r}")
        return default

    def _convert(self, key: str, text: str, kind: type, what: str) -> Any:
        try:
            return kind(text.strip())
        except ValueError:
            raise self.error(f"{key}={text!r}: expected {what}", key) from None

    def str(self, key: str, default: Any = _REQUIRED) -> Any:
        return self._raw(key, default)

    def int(self, key: str, default: Any = _REQUIRED) -> Any:
        raw = self._raw(key, default)
        return raw if key not in self.options else self._convert(key, raw, int, "an integer")

    def float(self, key: str, default: Any = _REQUIRED) -> Any:
        raw = self._raw(key, default)
        return raw if key not in self.options else self._convert(key, raw, float, "a number")

    def ints(self, key: str, default: Any = _REQUIRED) -> Any:
        raw = self._raw(key, default)
        if key not in self.options:
            return raw
        return [self._convert(key, part, int, "comma-separated integers") for part in _split_list(raw)]

    def floats(self, key: str, default: Any = _REQUIRED) -> Any:
        raw = self._raw(key, default)
        if key not in self.options:
            return raw
        return [self._convert(key, part, float, "comma-separated numbers") for part in _split_list(raw)]

    def layer_refs(self, key: str, default: Any = _REQUIRED) -> list[int]:
        """Layer indices in `key` (route `layers`, shortcut `from`) made absolute: negative ones count back."""
        if key not in self.options:
            return self._raw(key, default)
        refs = self.ints(key)
        absolute = [r + self.index if r < 0 else r for r in refs]
        for r, a in zip(refs, absolute):
            if not 0 <= a < self.index:
                raise self.error(f"{key}={r} refers to layer {a}, expected an earlier layer (0..{self.index - 1})",
                                 key)
        return absolute


@dataclass
class DarknetCfg:
    """A parsed cfg: the `[net]` section, the layers in order, the file it came from and its full text."""

    net: Section
    layers: list[Section]
    path: str = "<cfg>"
    text: str = ""

    def of_type(self, section_type: str) -> list[Section]:
        return [s for s in self.layers if s.type == section_type]


def _split_list(raw: str) -> list[str]:
    parts = [p.strip() for p in raw.split(",")]
    return [p for p in parts if p]  # darknet tolerates a trailing comma (anchors lists often have one)


def _read_source(path_or_text: str | os.PathLike) -> tuple[str, str]:
    """(text, name for messages). A str containing a newline or a `[` is cfg text, anything else a path."""
    if isinstance(path_or_text, str) and ("\n" in path_or_text or "[" in path_or_text):
        return path_or_text, "<cfg text>"
    path = Path(path_or_text)
    try:
        return path.read_text(encoding="utf-8", errors="replace"), os.fspath(path)
    except OSError as exc:
        raise DarknetCfgError(os.fspath(path), None, f"cannot read cfg: {exc.strerror or exc}") from None


def parse_cfg(path_or_text: str | os.PathLike) -> DarknetCfg:
    """Parse a Darknet cfg (a path, or the cfg text itself) and check every section type, key and value."""
    text, source = _read_source(path_or_text)
    sections: list[Section] = []
    for number, raw_line in enumerate(text.splitlines(), start=1):
        line = raw_line.split("#", 1)[0].strip()
        if not line or line.startswith(";"):
            continue
        if line.startswith("["):
            if not line.endswith("]"):
                raise DarknetCfgError(source, number, f"malformed section header {raw_line.strip()!r}")
            name = line[1:-1].strip().lower()
            name = _ALIASES.get(name, name)
            if name not in _INFERENCE_KEYS:
                raise DarknetCfgError(source, number, f"unknown layer type [{name}] (netdef supports "
                                      f"{', '.join('[' + t + ']' for t in _INFERENCE_KEYS)})")
            sections.append(Section(name, {}, number, len(sections) - 1, source))
            continue
        if not sections:
            raise DarknetCfgError(source, number, f"option {line!r} before the first [net] section")
        if "=" not in line:
            raise DarknetCfgError(source, number, f"cannot parse {raw_line.strip()!r}: expected key=value")
        key, value = (part.strip() for part in line.split("=", 1))
        section = sections[-1]
        if key not in _INFERENCE_KEYS[section.type] and key not in _TRAINING_KEYS[section.type]:
            raise DarknetCfgError(source, number, f"unknown key {key!r} in [{section.type}] "
                                  f"(netdef understands: {', '.join(sorted(_INFERENCE_KEYS[section.type]))})")
        if key in section.options:
            raise DarknetCfgError(source, number, f"key {key!r} repeated in [{section.type}] "
                                  f"(first on line {section.key_lines[key]})")
        section.options[key] = value
        section.key_lines[key] = number
    if not sections or sections[0].type != "net":
        raise DarknetCfgError(source, sections[0].line if sections else None,
                              "a Darknet cfg must start with a [net] section")
    net, layers = sections[0], sections[1:]
    for s in layers:
        if s.type == "net":
            raise s.error("[net] may only appear once, as the first section")
    cfg = DarknetCfg(net, layers, source, text)
    _check_values(cfg)
    return cfg


def _check_values(cfg: DarknetCfg) -> None:
    """Value checks that need no shapes (those live in layer_shapes)."""
    for key in ("width", "height"):
        if cfg.net.int(key) <= 0:
            raise cfg.net.error(f"{key} must be positive", key)
    if cfg.net.int("channels", 3) <= 0:
        raise cfg.net.error("channels must be positive", "channels")
    for s in cfg.layers:
        if s.type in ("convolutional", "shortcut"):
            activation = s.str("activation", "logistic" if s.type == "convolutional" else "linear")
            if activation not in ACTIVATIONS:
                raise s.error(f"activation={activation!r} is not supported (supported: {', '.join(ACTIVATIONS)})",
                              "activation")
        if s.type == "convolutional":
            for key in ("filters", "size", "stride", "groups"):
                if s.int(key, 1) <= 0:
                    raise s.error(f"{key} must be positive", key)
            if s.int("batch_normalize", 0) not in (0, 1):
                raise s.error("batch_normalize must be 0 or 1", "batch_normalize")
        elif s.type == "maxpool":
            if maxpool_size(s) <= 0 or s.int("stride", 1) <= 0:
                raise s.error("size and stride must be positive")
        elif s.type == "upsample":
            if s.int("stride", 2) <= 0:
                raise s.error("stride must be positive (downsampling [upsample] is not supported)", "stride")
        elif s.type == "route":
            if not s.ints("layers"):
                raise s.error("layers= lists no layer", "layers")
        elif s.type == "yolo":
            _check_yolo(s)


def yolo_mask(s: Section) -> list[int]:
    """The anchor indices a [yolo] layer predicts (all anchors when `mask` is absent)."""
    return s.ints("mask", list(range(s.int("num", len(s.floats("anchors")) // 2))))


def _check_yolo(s: Section) -> None:
    anchors = s.floats("anchors")
    if len(anchors) % 2:
        raise s.error(f"anchors has {len(anchors)} numbers, expected width,height pairs", "anchors")
    num = s.int("num", len(anchors) // 2)
    if num != len(anchors) // 2:
        raise s.error(f"num={num} but anchors has {len(anchors) // 2} pairs", "num")
    mask = yolo_mask(s)
    bad = [m for m in mask if not 0 <= m < num]
    if bad:
        raise s.error(f"mask entries {bad} are outside the {num} anchors", "mask")
    if s.int("classes") <= 0:
        raise s.error("classes must be positive", "classes")


Shape = tuple[int, int, int]


def conv_padding(s: Section) -> int:
    """Darknet's rule: `pad=1` means size//2 and wins over an explicit `padding`."""
    return s.int("size", 1) // 2 if s.int("pad", 0) else s.int("padding", 0)


def maxpool_size(s: Section) -> int:
    """Darknet's maxpool window defaults to its stride."""
    return s.int("size", s.int("stride", 1))


def maxpool_padding(s: Section) -> int:
    """Total padding of a maxpool (darknet splits it pad//2 before, the rest after); default size-1 = 'same'."""
    return s.int("padding", maxpool_size(s) - 1)


def layer_shapes(cfg: DarknetCfg) -> list[Shape]:
    """The output shape (channels, height, width) of every cfg layer, walking the cfg as darknet does.

    Raises DarknetCfgError naming the line for references to missing layers, channel counts that do not
    divide, or inputs whose sizes do not match.
    """
    current: Shape = (cfg.net.int("channels", 3), cfg.net.int("height"), cfg.net.int("width"))
    shapes: list[Shape] = []
    for s in cfg.layers:
        c, h, w = current
        if s.type == "convolutional":
            filters, size, stride = s.int("filters", 1), s.int("size", 1), s.int("stride", 1)
            groups, pad = s.int("groups", 1), conv_padding(s)
            if c % groups or filters % groups:
                raise s.error(f"groups={groups} must divide the {c} input channels and filters={filters}", "groups")
            out = (filters, (h + 2 * pad - size) // stride + 1, (w + 2 * pad - size) // stride + 1)
        elif s.type == "maxpool":
            size, stride, pad = maxpool_size(s), s.int("stride", 1), maxpool_padding(s)
            out = (c, (h + pad - size) // stride + 1, (w + pad - size) // stride + 1)
        elif s.type == "route":
            groups, group_id = s.int("groups", 1), s.int("group_id", 0)
            if not 0 <= group_id < groups:
                raise s.error(f"group_id={group_id} must be in 0..{groups - 1}", "group_id")
            sources = [shapes[r] for r in s.layer_refs("layers")]
            if any(src[1:] != sources[0][1:] for src in sources):
                raise s.error(f"layers= {s.str('layers')} join outputs of different sizes {sources}", "layers")
            if any(src[0] % groups for src in sources):
                raise s.error(f"groups={groups} does not divide the channels of {sources}", "groups")
            out = (sum(src[0] // groups for src in sources), sources[0][1], sources[0][2])
        elif s.type == "shortcut":
            refs = s.layer_refs("from")
            if len(refs) != 1:
                raise s.error(f"from={s.str('from')}: netdef supports a shortcut from exactly one layer", "from")
            ref = refs[0]
            if shapes[ref] != current:
                raise s.error(f"from={s.str('from')} adds layer {ref}'s {shapes[ref]} to {current}", "from")
            out = current
        elif s.type == "upsample":
            stride = s.int("stride", 2)
            out = (c, h * stride, w * stride)
        elif s.type == "yolo":
            expected = len(yolo_mask(s)) * (s.int("classes") + 5)
            if c != expected:
                raise s.error(f"its input has {c} channels, expected {expected} = len(mask) * (classes + 5)")
            out = current
        else:  # parse_cfg admits no other type
            raise s.error("unsupported layer type")
        if min(out) <= 0:
            raise s.error(f"output shape {out} from input {current} is empty")
        shapes.append(out)
        current = out
    return shapes
