"""Darknet import: hand-written cfgs (shapes worked out by hand, not by the code under test) and .weights
files with known values import to the expected tensors and attributes; bad input names file, line, layer."""
from __future__ import annotations

import numpy as np
import pytest

from netdef.cli import main as netdef_main
from netdef.darknet_cfg import layer_shapes, parse_cfg
from weights_export.darknet import export_darknet, read_darknet_weights
from weights_export.errors import DarknetCfgError, DarknetWeightsError
from weights_export.hdf5 import WeightsFile

TINY_CFG = """\
[net]
# training options are accepted and ignored
batch=64
subdivisions=1
width=64
height=64
channels=3
momentum=0.9
learning_rate=0.00261
policy=steps
steps=400000,450000
scales=.1,.1

[convolutional]
batch_normalize=1
filters=4
size=3
stride=2
pad=1
activation=leaky

[convolutional]
batch_normalize=1
filters=8
size=3
stride=2
pad=1
activation=leaky

[convolutional]
batch_normalize=1
filters=8
size=3
stride=1
pad=1
activation=leaky

[route]
layers=-1
groups=2
group_id=1

[convolutional]
batch_normalize=1
filters=4
size=3
stride=1
pad=1
activation=leaky

[convolutional]
batch_normalize=1
filters=4
size=3
stride=1
pad=1
activation=leaky

[route]
layers = -1,-2

[convolutional]
batch_normalize=1
filters=8
size=1
stride=1
pad=1
activation=leaky

[route]
layers = -6,-1

[maxpool]
size=2
stride=2

[convolutional]
batch_normalize=1
filters=16
size=3
stride=1
pad=1
activation=leaky

[maxpool]
size=2
stride=2

[convolutional]
batch_normalize=1
filters=16
size=3
stride=1
pad=1
activation=leaky

[maxpool]
size=2
stride=2

[convolutional]
batch_normalize=1
filters=32
size=3
stride=1
pad=1
activation=leaky

[convolutional]
batch_normalize=1
filters=16
size=1
stride=1
pad=1
activation=leaky

[convolutional]
batch_normalize=1
filters=32
size=3
stride=1
pad=1
activation=leaky

[convolutional]
size=1
stride=1
pad=1
filters=21
activation=linear

[yolo]
mask = 3,4,5
anchors = 10,14,  23,27,  37,58,  81,82,  135,169,  344,319
classes=2
num=6
jitter=.3
scale_x_y = 1.05
ignore_thresh = .7
truth_thresh = 1
random=0
nms_kind=greedynms
beta_nms=0.6

[route]
layers = -4

[convolutional]
batch_normalize=1
filters=8
size=1
stride=1
pad=1
activation=leaky

[upsample]
stride=2

[route]
layers = -1, 12

[convolutional]
batch_normalize=1
filters=16
size=3
stride=1
pad=1
activation=leaky

[convolutional]
size=1
stride=1
pad=1
filters=21
activation=linear

[yolo]
mask = 1,2,3
anchors = 10,14,  23,27,  37,58,  81,82,  135,169,  344,319
classes=2
num=6
scale_x_y = 1.05
"""
# Worked out by hand from darknet's rules.
TINY_SHAPES = [(4, 32, 32), (8, 16, 16), (8, 16, 16), (4, 16, 16), (4, 16, 16), (4, 16, 16), (8, 16, 16),
               (8, 16, 16), (16, 16, 16), (16, 8, 8), (16, 8, 8), (16, 4, 4), (16, 4, 4), (16, 2, 2), (32, 2, 2),
               (16, 2, 2), (32, 2, 2), (21, 2, 2), (21, 2, 2), (16, 2, 2), (8, 2, 2), (8, 4, 4), (24, 4, 4),
               (16, 4, 4), (21, 4, 4), (21, 4, 4)]
# (layer, input channels, filters, size, groups, batch_normalize), in file order.
TINY_CONVS = [(0, 3, 4, 3, 1, True), (1, 4, 8, 3, 1, True), (2, 8, 8, 3, 1, True), (4, 4, 4, 3, 1, True),
              (5, 4, 4, 3, 1, True), (7, 8, 8, 1, 1, True), (10, 16, 16, 3, 1, True), (12, 16, 16, 3, 1, True),
              (14, 16, 32, 3, 1, True), (15, 32, 16, 1, 1, True), (16, 16, 32, 3, 1, True), (17, 32, 21, 1, 1, False),
              (20, 16, 8, 1, 1, True), (23, 24, 16, 3, 1, True), (24, 16, 21, 1, 1, False)]

EVERY_LAYER_CFG = """\
[net]
width=16
height=16
channels=3
batch=1

[convolutional]
batch_normalize=1
filters=8
size=3
stride=1
pad=1
activation=mish

[convolutional]
batch_normalize=1
filters=8
size=3
stride=1
pad=1
groups=8
activation=relu

[shortcut]
from=-2
activation=linear

[convolutional]
filters=8
size=3
stride=1
pad=0
activation=swish

[convolutional]
batch_normalize=1
filters=4
size=3
stride=2
padding=1
activation=logistic

[maxpool]
size=5
stride=1

[maxpool]
size=3
stride=2

[upsample]
stride=2

[maxpool]
stride=2

[route]
layers=6,-1

[route]
layers=-1
groups=2
group_id=0

[convolutional]
batch_normalize=1
filters=4
size=1
stride=1
pad=1
activation=leaky

[convolutional]
filters=12
size=1
stride=1
pad=1
activation=linear

[yolo]
anchors=4,5, 8,9
classes=1
num=2
new_coords=1
scale_x_y=2.0
"""
EVERY_LAYER_SHAPES = [(8, 16, 16), (8, 16, 16), (8, 16, 16), (8, 14, 14), (4, 7, 7), (4, 7, 7), (4, 4, 4),
                      (4, 8, 8), (4, 4, 4), (8, 4, 4), (4, 4, 4), (4, 4, 4), (12, 4, 4), (12, 4, 4)]
EVERY_LAYER_CONVS = [(0, 3, 8, 3, 1, True), (1, 8, 8, 3, 8, True), (3, 8, 8, 3, 1, False), (4, 8, 4, 3, 1, True),
                     (11, 4, 4, 1, 1, True), (12, 4, 12, 1, 1, False)]


def export_write_weights(path, convs, version=(0, 2, 5), seen=32013312, seed=0, extra=0, drop=0):
    """Write a .weights file (darknet's layout, written independently of the reader) and return the
    tensors it holds by netdef name."""
    rng = np.random.default_rng(seed)
    major, minor, revision = version
    header = np.array(version, "<i4").tobytes()
    header += np.array([seen], "<i8" if major * 10 + minor >= 2 else "<i4").tobytes()
    expected: dict[str, np.ndarray] = {}
    parts = []
    for index, in_c, filters, size, groups, bn in convs:
        if bn:
            bn_tensors = {"bias": rng.normal(0, 0.2, filters), "weight": rng.uniform(0.5, 1.5, filters),
                          "running_mean": rng.normal(0, 0.3, filters), "running_var": rng.uniform(0.5, 2, filters)}
            for name in ("bias", "weight", "running_mean", "running_var"):  # beta, gamma, mean, var
                expected[f"layers.{index}.bn.{name}"] = bn_tensors[name].astype(np.float32)
                parts.append(expected[f"layers.{index}.bn.{name}"])
        else:
            expected[f"layers.{index}.conv.bias"] = rng.normal(0, 0.5, filters).astype(np.float32)
            parts.append(expected[f"layers.{index}.conv.bias"])
        kernel = rng.standard_normal((filters, in_c // groups, size, size)).astype(np.float32)
        expected[f"layers.{index}.conv.weight"] = kernel
        parts.append(kernel)
    body = np.concatenate([p.ravel() for p in parts] + [np.ones(extra, np.float32)])
    path.write_bytes(header + body[: body.size - drop].astype("<f4").tobytes())
    return expected


@pytest.mark.parametrize("cfg_text, shapes", [(TINY_CFG, TINY_SHAPES), (EVERY_LAYER_CFG, EVERY_LAYER_SHAPES)])
def test_layer_shapes_match_darknet_rules(cfg_text, shapes):
    assert layer_shapes(parse_cfg(cfg_text)) == shapes


def test_yolov4_tiny_shaped_import_gives_known_tensors_and_attrs(tmp_path):
    cfg = tmp_path / "tiny.cfg"
    cfg.write_text(TINY_CFG)
    expected = export_write_weights(tmp_path / "tiny.weights", TINY_CONVS)
    out = tmp_path / "tiny.h5"
    export_darknet(cfg, tmp_path / "tiny.weights", out)
    with WeightsFile(out) as wf:
        assert set(wf) == set(expected)
        for key, value in expected.items():
            assert wf[key].dtype == np.float32 and wf[key].tobytes() == value.tobytes(), key
        attrs = wf.attrs
        assert attrs["arch"] == "yolov4-tiny" and attrs["source"] == "darknet"
        assert attrs["input_shape"] == [1, 3, 64, 64] and attrs["darknet_cfg"] == TINY_CFG
        assert attrs["darknet_version"] == [0, 2, 5] and attrs["darknet_seen"] == 32013312
        head = wf.layer_attrs("layers.18")
        assert head["type"] == "yolo" and head["mask"] == [3, 4, 5] and head["classes"] == 2
        assert head["anchors"] == [[81, 82], [135, 169], [344, 319]] and len(head["all_anchors"]) == 6
        assert head["stride"] == 32 and head["scale_x_y"] == pytest.approx(1.05) and head["new_coords"] == 0
        assert wf.layer_attrs("layers.25")["stride"] == 16
        assert wf.layer_attrs("layers.25")["anchors"] == [[23, 27], [37, 58], [81, 82]]
        assert wf.layer_attrs("layers.22")["layers"] == [21, 12]
        assert wf.layer_attrs("layers.3") == {**wf.layer_attrs("layers.3"), "groups": 2, "group_id": 1,
                                              "output_shape": [4, 16, 16]}
        conv = wf.layer_attrs("layers.0.conv")
        assert (conv["type"], conv["kernel_size"], conv["stride"], conv["padding"], conv["bias"]) == \
            ("Conv2d", [3, 3], [2, 2], [1, 1], False)
        assert wf.layer_attrs("layers.17.conv")["bias"] is True
        assert wf.layer_attrs("layers.0.bn") == {"type": "BatchNorm2d", "num_features": 4, "eps": 1e-5}
        assert wf.layer_attrs("layers.0")["activation"] == "leaky"


def test_every_layer_type_and_old_header_via_cli(tmp_path):
    cfg = tmp_path / "all.cfg"
    cfg.write_text(EVERY_LAYER_CFG)
    weights = tmp_path / "all.weights"
    expected = export_write_weights(weights, EVERY_LAYER_CONVS, version=(0, 1, 0), seen=77)  # int32 seen
    out = tmp_path / "all.h5"
    assert netdef_main(["export", "--darknet-cfg", str(cfg), "--darknet-weights", str(weights), "--out", str(out),
                        "--no-progress"]) == 0
    with WeightsFile(out) as wf:
        assert set(wf) == set(expected)
        for key, value in expected.items():
            assert wf[key].tobytes() == value.tobytes(), key
        assert wf.attrs["arch"] == "darknet" and wf.attrs["darknet_seen"] == 77
        assert [wf.layer_attrs(f"layers.{i}")["activation"] for i in (0, 1, 3, 4, 11, 12)] == \
            ["mish", "relu", "swish", "logistic", "leaky", "linear"]
        assert wf.layer_attrs("layers.1.conv")["groups"] == 8 and wf["layers.1.conv.weight"].shape == (8, 1, 3, 3)
        assert wf.layer_attrs("layers.3.conv")["padding"] == [0, 0]
        assert wf.layer_attrs("layers.2")["from"] == [0]
        assert wf.layer_attrs("layers.5")["padding"] == 4 and wf.layer_attrs("layers.8")["size"] == 2
        head = wf.layer_attrs("layers.13")
        assert head["mask"] == [0, 1] and head["new_coords"] == 1 and head["stride"] == 4
        assert head["scale_x_y"] == 2.0


@pytest.mark.parametrize("drop, extra, message", [
    (5, 0, r"expected 1332 floats after the 16-byte header, found 1327 \(the file ends inside "
           r"layers\.12\.conv\.weight\)"),
    (0, 3, r"expected 1332 floats after the 16-byte header, found 1335 \(extra data at the end\)"),
])
def test_wrong_length_weights_say_expected_and_found(tmp_path, drop, extra, message):
    weights = tmp_path / "bad.weights"
    export_write_weights(weights, EVERY_LAYER_CONVS, version=(0, 1, 0), drop=drop, extra=extra)
    assert sum(f * i // g * s * s + f * (4 if bn else 1) for _, i, f, s, g, bn in EVERY_LAYER_CONVS) == 1332
    with pytest.raises(DarknetWeightsError, match=r"bad\.weights: .*" + message):
        export_darknet(EVERY_LAYER_CFG, weights, tmp_path / "out.h5")
    assert not (tmp_path / "out.h5").exists()


def test_short_weights_name_layer_and_tensor(tmp_path):
    weights = tmp_path / "short.weights"
    export_write_weights(weights, EVERY_LAYER_CONVS, drop=1332 - 250)  # layer 0 holds 248 floats
    with pytest.raises(DarknetWeightsError, match=r"short\.weights: layer 'layers\.1\.bn', tensor 'bias': .*"
                                                   r"expected 1332 floats .* found 250"):
        export_darknet(EVERY_LAYER_CFG, weights, tmp_path / "out.h5")
    (tmp_path / "tiny.weights").write_bytes(b"\x00" * 10)
    with pytest.raises(DarknetWeightsError, match="tiny.weights: 10 bytes is too short for a darknet header"):
        export_darknet(EVERY_LAYER_CFG, tmp_path / "tiny.weights", tmp_path / "out.h5")


def test_nan_darknet_weights_name_layer_and_tensor(tmp_path):
    weights = tmp_path / "nan.weights"
    export_write_weights(weights, EVERY_LAYER_CONVS)
    data = bytearray(weights.read_bytes())
    # layer 0: beta, gamma, mean, var (8 each) then the kernel; put a NaN in layer 0's running_var.
    offset = 20 + 4 * (3 * 8 + 2)
    data[offset:offset + 4] = np.array([np.nan], "<f4").tobytes()
    weights.write_bytes(bytes(data))
    with pytest.raises(DarknetWeightsError, match=r"nan\.weights: layer 'layers\.0\.bn', tensor 'running_var': "
                                                   r"NaN/Inf"):
        export_darknet(EVERY_LAYER_CFG, weights, tmp_path / "out.h5")


def test_weights_are_mapped_writable_and_the_file_stays_untouched(tmp_path):
    weights = tmp_path / "all.weights"
    expected = export_write_weights(weights, EVERY_LAYER_CONVS)
    before = weights.read_bytes()
    tensors, header = read_darknet_weights(parse_cfg(EVERY_LAYER_CFG), weights)
    assert header == {"version": [0, 2, 5], "seen": 32013312}
    assert all(tensors[k].tobytes() == v.tobytes() for k, v in expected.items())
    tensors["layers.0.conv.weight"][...] = 0.0  # copy-on-write mapping: the arrays are writable ...
    assert weights.read_bytes() == before  # ... and writing them never reaches the file
    (tmp_path / "empty.weights").write_bytes(b"")
    with pytest.raises(DarknetWeightsError, match="empty.weights: 0 bytes is too short for a darknet header"):
        export_darknet(EVERY_LAYER_CFG, tmp_path / "empty.weights", tmp_path / "out.h5")


@pytest.mark.parametrize("edit, message", [
    (lambda t: t.replace("stride=1\npad=1\ngroups=8", "stride=1\npad=1\ngroups=8\nxnor=1"),
     r"all\.cfg:22: unknown key 'xnor' in \[convolutional\]"),
    (lambda t: t.replace("[upsample]", "[deconvolutional]"), r"all\.cfg:51: unknown layer type \[deconvolutional\]"),
    (lambda t: t.replace("activation=swish", "activation=gelu"),
     r"all\.cfg:33: \[convolutional\] \(layer 3\): activation='gelu' is not supported"),
    (lambda t: t.replace("layers=6,-1", "layers=6,12"),
     r"all\.cfg:58: \[route\] \(layer 9\): layers=12 refers to layer 12, expected an earlier layer"),
    (lambda t: t.replace("filters=12", "filters=13"),
     r"all\.cfg:80: \[yolo\] \(layer 13\): its input has 13 channels, expected 12"),
    (lambda t: t.replace("width=16\n", ""), r"all\.cfg:1: \[net\]: missing required key 'width'"),
    (lambda t: "batch=1\n" + t, r"all\.cfg:1: option 'batch=1' before the first \[net\] section"),
    (lambda t: t.replace("size=5", "size=five"), r"all\.cfg:44: .*size='five': expected an integer"),
    (lambda t: t.replace("filters=4\nsize=1", "filters=4\nfilters=4"), r"all\.cfg:68: key 'filters' repeated"),
])
def test_cfg_errors_name_file_and_line(tmp_path, edit, message):
    cfg = tmp_path / "all.cfg"
    cfg.write_text(edit(EVERY_LAYER_CFG))
    with pytest.raises(DarknetCfgError, match=message):
        layer_shapes(parse_cfg(cfg))


def test_section_getters_and_cli_usage_errors(tmp_path, capsys):
    cfg = parse_cfg(TINY_CFG)
    head = cfg.layers[18]
    assert (head.type, head.index, head.line) == ("yolo", 18, cfg.text.splitlines().index("[yolo]") + 1)
    assert head.ints("mask") == [3, 4, 5] and head.floats("anchors")[:2] == [10.0, 14.0]
    assert head.float("scale_x_y") == 1.05 and head.str("nms_kind") == "greedynms" and head.int("new_coords", 0) == 0
    assert cfg.net.int("channels") == 3 and cfg.net.ints("steps") == [400000, 450000]
    assert len(cfg.of_type("yolo")) == 2
    assert netdef_main(["export", "--darknet-cfg", "x.cfg", "--out", str(tmp_path / "o.h5")]) == 1
    assert "needs both --darknet-cfg and --darknet-weights" in capsys.readouterr().err
    with pytest.raises(DarknetCfgError, match="missing.cfg: cannot read cfg"):
        parse_cfg(tmp_path / "missing.cfg")
