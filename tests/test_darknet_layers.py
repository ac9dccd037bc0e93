"""Darknet layer semantics on small cfgs: every activation, shortcut with activation, conv without BN, maxpool
padding, grouped routes; verified layer by layer with netdef.verify against the PyTorch reference."""
from __future__ import annotations

import pytest
import torch

from netdef.verify import verify_network
from networks.darknet import plan, reference_module
from networks.yolov4 import YOLOv4
from weights_export.darknet_synth import CfgWriter, activations_cfg, write_darknet_weights
from netdef.darknet_cfg import parse_cfg

torch.set_num_threads(2)


def _model(tmp_path, text: str) -> YOLOv4:
    (tmp_path / "m.cfg").write_text(text)
    return YOLOv4.from_darknet(tmp_path / "m.cfg", write_darknet_weights(text, tmp_path / "m.weights", gain=1.2))


@pytest.mark.parametrize("precision, tolerance", [("fp32", 1e-5), ("fp16", 1e-2)])
def test_every_activation_layer_by_layer(tmp_path, precision, tolerance):
    model = _model(tmp_path, activations_cfg())
    acts = [s.options.get("activation") for s in model.plan.layers]
    assert {"relu", "logistic", "swish", "leaky", "linear"} <= set(acts)
    net = model.define(precision, input_size=(96, 64), nms="raw")
    x = model.sample_input(2, (96, 64), seed=3)
    report = verify_network(net, model.reference(), x, tolerance=tolerance)
    assert report.ok, report.table()
    compared = {c.name for c in report.layers}
    assert {"layers.0", "layers.1", "layers.2", "layers.3", "layers.4", "layers.5", "layers.6"} <= compared
    assert all(c.rel <= tolerance for c in report.layers), report.table()


def _pool_cfg(size: int, stride: int) -> str:
    w = CfgWriter(64, 64, 1, 1)
    w.conv(6, 3, 1, "linear")  # negative values: padding must never win a max
    w.section("maxpool", size=size, stride=stride)
    w.head_conv(1)
    w.yolo("0", "10,14", 1, 1.0)
    return w.text()


@pytest.mark.parametrize("size, stride, torch_pool", [
    (2, 2, lambda x: torch.nn.functional.max_pool2d(x, 2, 2)),  # darknet pads after: windows [0,1], [2,3] ...
    (5, 1, lambda x: torch.nn.functional.max_pool2d(x, 5, 1, padding=2)),  # SPP 'same' pooling
    (3, 2, lambda x: torch.nn.functional.max_pool2d(x, 3, 2, padding=1)),
])
def test_maxpool_follows_darknet_padding(tmp_path, size, stride, torch_pool):
    model = _model(tmp_path, _pool_cfg(size, stride))
    x = model.sample_input(1, 64, seed=5) - 0.5
    ref = model.reference().double()
    xt = torch.from_numpy(x).double()
    with torch.no_grad():
        conv = ref.layers[0](xt)
        pooled = ref.layers[1](conv)
    assert torch.equal(pooled, torch_pool(conv))
    net = model.define("fp32", input_size=64, nms="raw")
    report = verify_network(net, model.reference(), x, tolerance=1e-5)
    assert report.ok and any(c.name == "layers.1" for c in report.layers), report.table()


def test_grouped_route_takes_the_requested_channel_group():
    w = CfgWriter(32, 32, 1, 1)
    w.conv(8, 3, 1, "leaky")
    w.section("route", layers=-1, groups=4, group_id=2)
    w.section("route", layers="-1,-2")
    w.head_conv(1)
    w.yolo("0", "10,14", 1, 1.0)
    p = plan(parse_cfg(w.text()))
    assert [s.channels for s in p.layers[:3]] == [8, 2, 10]
    ref = reference_module(p).double()
    x = torch.randn(1, 8, 4, 4, dtype=torch.float64)
    assert torch.equal(ref.layers[1](x), x[:, 4:6])
    assert torch.equal(ref.layers[2](x[:, :2], x), torch.cat([x[:, :2], x], 1))


def test_mish_is_exact_in_the_definition(tmp_path):
    w = CfgWriter(32, 32, 1, 1)
    w.conv(4, 1, 1, "mish", bn=False)
    w.head_conv(1)
    w.yolo("0", "10,14", 1, 1.0)
    model = _model(tmp_path, w.text())
    net = model.define("fp32", input_size=32, nms="raw")
    x = (model.sample_input(1, 32, seed=2) - 0.5) * 40  # large magnitudes: softplus saturates both ways
    report = verify_network(net, model.reference(), x, tolerance=1e-6)
    layer0 = next(c for c in report.layers if c.name == "layers.0")
    assert layer0.rel <= 1e-6, report.table()
    kinds = {net.definition.get_layer(i).name for i in range(net.definition.num_layers)}
    assert {"layers.0/mish/softplus", "layers.0/mish/tanh", "layers.0/mish/mul"} <= kinds


def test_calibration_digest_covers_the_inside_of_mish(tmp_path):
    """A Network and its TensorRT definition give one digest; another activation in Mish's place gives another."""
    from netdef.quantize.cache import definition_digest

    digests = []
    for activation in ("mish", "swish"):
        w = CfgWriter(32, 32, 1, 1)
        w.conv(4, 3, 1, activation)
        w.head_conv(1)
        w.yolo("0", "10,14", 1, 1.0)
        net = _model(tmp_path, w.text()).define("fp32", input_size=32, nms="raw")
        assert definition_digest(net) == definition_digest(net.definition)
        digests.append(definition_digest(net))
    assert digests[0] != digests[1]
