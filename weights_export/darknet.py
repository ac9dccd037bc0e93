"""Darknet import: `.weights` read in cfg order (`netdef.darknet_cfg` parses the cfg) -> netdef HDF5 export.

A `.weights` file is a header (major, minor, revision as int32, then the seen-images counter as int64 for
format 0.2 and later, int32 before), then float32 values per [convolutional] layer in cfg order:
with batch_normalize beta, gamma, running mean, running variance (`filters` each), else the conv bias;
then the kernel (filters x channels/groups x size x size). No other layer type holds weights.
"""
from __future__ import annotations

import logging
import mmap
import os
from typing import Any

import numpy as np

from netdef.darknet_cfg import (DarknetCfg, Section, conv_padding, layer_shapes, maxpool_padding, maxpool_size,
                                parse_cfg, yolo_mask)
from weights_export.errors import DarknetWeightsError
from weights_export.hdf5 import all_finite, write_weights

__all__ = ["DarknetWeights", "read_darknet_weights", "load_darknet", "guess_arch", "darknet_layer_attrs",
           "export_darknet"]

log = logging.getLogger(__name__)

BN_EPS = 1e-5  # darknet adds .00001 to the variance
BN_ORDER = ("bias", "weight", "running_mean", "running_var")  # beta, gamma, mean, var as stored


def _header(data: bytes, path: str) -> tuple[tuple[int, int, int], int, int]:
    """(major, minor, revision), seen, header size in bytes."""
    if len(data) < 12:
        raise DarknetWeightsError(path, f"{len(data)} bytes is too short for a darknet header (12+ bytes)")
    major, minor, revision = (int(v) for v in np.frombuffer(data, "<i4", 3))
    wide_seen = (major * 10 + minor) >= 2 and major < 1000 and minor < 1000
    size = 20 if wide_seen else 16
    if len(data) < size:
        raise DarknetWeightsError(path, f"{len(data)} bytes is too short for a darknet {major}.{minor} header "
                                  f"({size} bytes)")
    seen = int(np.frombuffer(data, "<i8" if wide_seen else "<i4", 1, 12)[0])
    return (major, minor, revision), seen, size


def _conv_tensor_shapes(cfg: DarknetCfg, shapes: list[tuple[int, int, int]]) -> list[tuple[str, tuple[int, ...]]]:
    """(dotted name, shape) of every stored tensor, in file order."""
    out: list[tuple[str, tuple[int, ...]]] = []
    for s in cfg.of_type("convolutional"):
        in_c = shapes[s.index - 1][0] if s.index > 0 else cfg.net.int("channels", 3)
        filters, size, groups = s.int("filters", 1), s.int("size", 1), s.int("groups", 1)
        if s.int("batch_normalize", 0):
            out += [(f"layers.{s.index}.bn.{name}", (filters,)) for name in BN_ORDER]
        else:
            out.append((f"layers.{s.index}.conv.bias", (filters,)))
        out.append((f"layers.{s.index}.conv.weight", (filters, in_c // groups, size, size)))
    return out


def read_darknet_weights(cfg: DarknetCfg, path: str | os.PathLike) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """The tensors of a `.weights` file by netdef name, and header info {version, seen}.

    The file must hold exactly the floats the cfg needs; otherwise the error says how many were expected
    and found (and, when short, which layer and tensor ran out).
    """
    path = os.fspath(path)
    try:
        with open(path, "rb") as f:
            # Mapped copy-on-write: the tensors are writable views of the page cache; reading into a fresh
            # buffer cost a quarter of an export (page faults and a copy).
            size = os.fstat(f.fileno()).st_size
            data = np.frombuffer(mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_COPY), np.uint8) if size \
                else np.empty(0, np.uint8)
    except (OSError, ValueError) as exc:
        raise DarknetWeightsError(path, f"cannot read weights: {getattr(exc, 'strerror', None) or exc}") from None
    version, seen, offset = _header(data, path)
    if (len(data) - offset) % 4:
        raise DarknetWeightsError(path, f"{len(data) - offset} bytes after the header is not a whole number of "
                                  "float32 values")
    floats = data[offset:].view("<f4").astype(np.float32, copy=False)  # native byte order
    layout = _conv_tensor_shapes(cfg, layer_shapes(cfg))
    expected = sum(int(np.prod(shape)) for _, shape in layout)
    if floats.size != expected:
        short = _first_short_tensor(layout, floats.size)
        raise _weights_error(cfg, path, f"size does not match {cfg.path}: expected {expected} floats after the "
                             f"{offset}-byte header, found {floats.size}"
                             + (f" (the file ends inside {short})" if short else " (extra data at the end)"), short)
    tensors: dict[str, np.ndarray] = {}
    position = 0
    for name, shape in layout:
        count = int(np.prod(shape))
        tensors[name] = floats[position:position + count].reshape(shape)
        position += count
    bad = [] if all_finite(floats) else [k for k, v in tensors.items() if not all_finite(v)]
    if bad:
        raise _weights_error(cfg, path, f"NaN/Inf values in {len(bad)} tensor(s): {', '.join(bad)}", bad[0])
    return tensors, {"version": list(version), "seen": seen}


def _weights_error(cfg: DarknetCfg, path: str, detail: str, name: str | None) -> DarknetWeightsError:
    """An error about tensor `name` (`layers.{i}.conv.weight`, ...) that also names layer i's cfg line."""
    if name is None:
        return DarknetWeightsError(path, detail)
    layer, tensor = name.rsplit(".", 1)
    section = cfg.layers[int(layer.split(".")[1])]
    return DarknetWeightsError(path, f"{detail} ({cfg.path}:{section.line}: [{section.type}] layer {section.index})",
                               layer=layer, tensor=tensor)


def _first_short_tensor(layout: list[tuple[str, tuple[int, ...]]], available: int) -> str | None:
    position = 0
    for name, shape in layout:
        position += int(np.prod(shape))
        if position > available:
            return name
    return None


def guess_arch(cfg: DarknetCfg) -> str:
    """yolov4 (3 heads, mish), yolov4-tiny (2 heads, no mish), else darknet."""
    heads = len(cfg.of_type("yolo"))
    mish = any(s.str("activation", "") == "mish" for s in cfg.of_type("convolutional"))
    if heads == 3 and mish:
        return "yolov4"
    if heads == 2 and not mish:
        return "yolov4-tiny"
    return "darknet"


def _conv_attrs(s: Section, in_channels: int) -> dict[str, dict[str, Any]]:
    """PyTorch-style attributes of a [convolutional] layer's `.conv` (and `.bn`) groups."""
    filters, size, stride = s.int("filters", 1), s.int("size", 1), s.int("stride", 1)
    bn = bool(s.int("batch_normalize", 0))
    out = {f"layers.{s.index}.conv": {
        "type": "Conv2d", "in_channels": in_channels, "out_channels": filters, "kernel_size": [size, size],
        "stride": [stride, stride], "padding": [conv_padding(s)] * 2, "dilation": [1, 1],
        "groups": s.int("groups", 1), "bias": not bn}}
    if bn:
        out[f"layers.{s.index}.bn"] = {"type": "BatchNorm2d", "num_features": filters, "eps": BN_EPS}
    return out


def darknet_layer_attrs(cfg: DarknetCfg) -> dict[str, dict[str, Any]]:
    """Group attributes: `layers.{i}` gets the cfg layer's type, line, shapes and typed options (yolo: mask,
    anchors (masked, [n, 2]), all_anchors, classes, scale_x_y, stride, new_coords; convolutional: activation,
    batch_normalize); a convolution's geometry is on PyTorch-style `layers.{i}.conv` (Conv2d) and
    `layers.{i}.bn` (BatchNorm2d)."""
    shapes = layer_shapes(cfg)
    net_c, net_h, net_w = cfg.net.int("channels", 3), cfg.net.int("height"), cfg.net.int("width")
    out: dict[str, dict[str, Any]] = {}
    for s in cfg.layers:
        in_shape = shapes[s.index - 1] if s.index > 0 else (net_c, net_h, net_w)
        attrs: dict[str, Any] = {"type": s.type, "cfg_line": s.line, "input_shape": list(in_shape),
                                 "output_shape": list(shapes[s.index])}
        group = f"layers.{s.index}"
        if s.type == "convolutional":
            # Geometry lives on the `.conv` group only: an export writes thousands of attributes.
            attrs.update(batch_normalize=bool(s.int("batch_normalize", 0)), activation=s.str("activation", "logistic"))
            out[group] = attrs
            out.update(_conv_attrs(s, in_shape[0]))
            continue
        if s.type == "maxpool":
            attrs.update(size=maxpool_size(s), stride=s.int("stride", 1), padding=maxpool_padding(s))
        elif s.type == "route":
            attrs.update(layers=s.layer_refs("layers"), groups=s.int("groups", 1), group_id=s.int("group_id", 0))
        elif s.type == "shortcut":
            attrs.update({"from": s.layer_refs("from"), "activation": s.str("activation", "linear")})
        elif s.type == "upsample":
            attrs.update(stride=s.int("stride", 2))
        elif s.type == "yolo":
            all_anchors = np.asarray(s.floats("anchors"), dtype=np.float32).reshape(-1, 2)
            mask = yolo_mask(s)
            attrs.update(mask=mask, anchors=all_anchors[mask], all_anchors=all_anchors, classes=s.int("classes"),
                         num=len(all_anchors), scale_x_y=s.float("scale_x_y", 1.0),
                         stride=net_h // in_shape[1], stride_x=net_w // in_shape[2],
                         new_coords=s.int("new_coords", 0))
        out[group] = attrs
    return out


def export_darknet(cfg: str | os.PathLike | DarknetCfg, weights: str | os.PathLike, out: str | os.PathLike,
                   arch: str | None = None, progress: bool | None = None) -> None:
    """Write a Darknet cfg + weights pair as a netdef weights file (atomically).

    Tensors are `layers.{i}.conv.weight`, `layers.{i}.conv.bias` (no BN) or `layers.{i}.bn.{weight,bias,
    running_mean,running_var}`; the full cfg text travels in the root attribute `darknet_cfg`.
    """
    parsed = cfg if isinstance(cfg, DarknetCfg) else parse_cfg(cfg)
    tensors = load_darknet(parsed, weights, arch)
    write_weights(out, tensors, layer_attrs=darknet_layer_attrs(parsed), root_attrs=tensors.attrs, progress=progress)
    log.info("exported %s + %s (%s, %d tensors) to %s", parsed.path, weights, tensors.attrs["arch"], len(tensors),
             out)


class DarknetWeights(dict):
    """Tensors by netdef name, with `attrs`: the root attributes an export writes (what `WeightsFile.attrs` gives
    for the exported file), so a network class reads either alike."""

    attrs: dict[str, Any]


def load_darknet(cfg: str | os.PathLike | DarknetCfg, weights: str | os.PathLike,
                 arch: str | None = None) -> DarknetWeights:
    """A Darknet cfg + weights pair in memory, as `export_darknet` would write it (no file in between)."""
    parsed = cfg if isinstance(cfg, DarknetCfg) else parse_cfg(cfg)
    tensors, header = read_darknet_weights(parsed, weights)
    c, h, w = parsed.net.int("channels", 3), parsed.net.int("height"), parsed.net.int("width")
    result = DarknetWeights(tensors)
    result.attrs = {"arch": arch or guess_arch(parsed), "source": "darknet", "input_name": "input",
                    "input_shape": [1, c, h, w], "input_dtype": "float32",
                    # darknet feeds RGB scaled to [0, 1], no normalisation
                    "mean": [0.0] * c, "std": [1.0] * c, "input_scale": 1.0 / 255.0,
                    "darknet_cfg": parsed.text, "darknet_cfg_file": os.path.basename(parsed.path),
                    "darknet_weights_file": os.path.basename(os.fspath(weights)),
                    "darknet_version": header["version"], "darknet_seen": header["seen"]}
    return result
