"""Verification: a correct ResNet passes layer by layer, injected defects are pinned to their layer,
reports come out as table, JSON and PNG, the HDF5-activations variant and the CLI work."""
from __future__ import annotations

import json

import numpy as np
import pytest

from netdef import trt as shim
from netdef.verify import compare, verify_activations, verify_network

trt = shim.binding()
SIZE = (32, 32)


@pytest.fixture(scope="module")
def resnet():
    from networks.resnet import ResNet, random_bn_init, resnet18_reference

    reference = random_bn_init(resnet18_reference(seed=3, num_classes=10), seed=4)
    return ResNet({k: v.numpy() for k, v in reference.state_dict().items()}), reference


def _conv_layer(net, name: str):
    for i in range(net.definition.num_layers):
        layer = net.definition.get_layer(i)
        if layer.name == name:
            assert layer.type == trt.LayerType.CONVOLUTION
            return shim.downcast(layer)
    raise AssertionError(f"no layer {name}")


def test_compare_metrics():
    a, b = np.array([1.0, 2.0, 2.0]), np.array([1.0, 2.0, 3.0])
    max_abs, rel, cosine = compare(a, b)
    assert max_abs == 1.0 and rel == pytest.approx(1 / np.sqrt(14))
    assert cosine == pytest.approx(11 / (3 * np.sqrt(14)))


def test_resnet18_fp32_passes_every_layer(resnet, tmp_path):
    model, _ = resnet
    net = model.define("fp32", input_size=SIZE)
    report = verify_network(net, model.reference(), model.sample_input(2, SIZE, seed=7))
    names = [c.name for c in report.layers]
    assert report.ok and report.first_failure is None
    assert {"bn1", "layer1.0.relu#1", "layer4.1", "fc", "logits"} <= set(names) and not report.unmatched
    assert report.outputs[0].name == "logits" and report.worst.rel <= 1e-5
    assert all(c.cosine > 0.999999 for c in report.layers)
    report.write_json(tmp_path / "r.json")
    report.plot(tmp_path / "r.png")
    data = json.loads((tmp_path / "r.json").read_text())
    assert data["ok"] is True and len(data["layers"]) == len(report.layers)
    assert (tmp_path / "r.png").read_bytes()[:4] == b"\x89PNG"
    assert "PASS" in report.table()


def test_fp16_error_is_visible_but_within_tolerance(resnet):
    model, _ = resnet
    report = verify_network(model.define("fp16", input_size=SIZE), model.reference(), model.sample_input(1, SIZE))
    assert report.ok and report.tolerance == 5e-3
    assert 1e-5 < report.outputs[0].rel < 5e-3  # FP16 rounding shows, as it would in TensorRT


@pytest.mark.parametrize("defect", ["transposed kernel", "shifted padding"])
def test_injected_defect_is_pinned_to_its_layer(resnet, defect):
    model, _ = resnet
    net = model.define("fp32", input_size=SIZE)
    layer = _conv_layer(net, "layer2.0.conv2" if defect == "transposed kernel" else "layer3.0.conv1")
    if defect == "transposed kernel":
        k = layer.kernel.reshape(layer.num_output_maps, -1, 3, 3)
        broken = np.ascontiguousarray(k.transpose(0, 1, 3, 2))  # kh <-> kw, same shape
        layer.kernel = trt.Weights(broken)
    else:
        layer.pre_padding, layer.post_padding = (2, 2), (0, 0)  # same output size, shifted window
    report = verify_network(net, model.reference(), model.sample_input(1, SIZE))
    first = report.first_failure
    assert not report.ok and first is not None
    # the conv's output tensor carries its folded BatchNorm's module path
    assert first.tensor == layer.get_output(0).name
    assert first.name == ("layer2.0.bn2" if defect == "transposed kernel" else "layer3.0.bn1")
    assert "<-- first beyond tolerance" in next(l for l in report.table().splitlines() if l.startswith(first.name))


def test_against_stored_activations(resnet, tmp_path):
    from weights_export.hdf5 import WeightsFile
    from weights_export.pytorch import export_module

    model, reference = resnet
    path = tmp_path / "r18.h5"
    export_module(reference, path, "resnet18", input_shape=(1, 3) + SIZE, activations=True, seed=5)
    with WeightsFile(path) as weights:
        from networks.resnet import ResNet

        net = ResNet(weights, path).define("fp32", input_size=SIZE)
        report = verify_activations(net, weights.activations)
    assert report.ok and report.reference == "hdf5 activations"
    assert report.outputs and report.outputs[0].name == "logits"
    assert len(report.layers) > 40


def test_cli_verify_exit_codes(resnet, tmp_path, capsys):
    from netdef.cli import main
    from weights_export.pytorch import export_module

    _, reference = resnet
    path = tmp_path / "r18.h5"
    export_module(reference, path, "resnet18", input_shape=(1, 3) + SIZE, activations=True)
    report, plot = tmp_path / "out" / "report.json", tmp_path / "out" / "plot.png"
    args = ["verify", "resnet18", "--weights", str(path), "--input-size", "32", "32", "--batch", "2"]
    assert main(args + ["--report", str(report), "--plot", str(plot)]) == 0
    assert json.loads(report.read_text())["ok"] is True and plot.exists()
    assert "PASS" in capsys.readouterr().out
    # stored float32 activations against a float64 execution are not bit-exact
    assert main(["verify", "resnet18", "--weights", str(path), "--activations", "--tolerance", "1e-30"]) == 1
    assert "FAIL" in capsys.readouterr().out


def test_cli_verify_a_uint8_input_definition(resnet, tmp_path, capsys, monkeypatch):
    """`netdef verify -O input_dtype=uint8`: the definition reads the sample's pixels, the float64 reference reads
    them normalized; a wrong normalization on the reference side fails at the first layer."""
    from netdef.cli import main
    from netdef.preprocess import PixelNormalization
    from networks.resnet import ResNet
    from weights_export.pytorch import export_module

    _, reference = resnet
    path = tmp_path / "r18.h5"
    export_module(reference, path, "resnet18", input_shape=(1, 3) + SIZE)
    report = tmp_path / "report.json"
    args = ["verify", "resnet18", "--weights", str(path), "--batch", "2", "-O", "input_dtype=uint8",
            "--report", str(report)]
    assert main(args) == 0, capsys.readouterr().out
    layers = json.loads(report.read_text())["layers"]
    assert len(layers) > 40 and max(layer["rel"] for layer in layers) < 1e-5
    real = ResNet.normalization
    monkeypatch.setattr(ResNet, "normalization", lambda self: _shifted(real(self)))
    assert main(args) == 1 and "FAIL" in capsys.readouterr().out


def _shifted(norm):
    """The reference's pixels normalized with another mean; the engine's normalization (in the definition) stays."""
    from dataclasses import replace

    class Skewed(type(norm)):
        def exact(self, pixels):
            return replace(norm, mean=tuple(m + 0.05 for m in norm.mean)).exact(pixels)

    return Skewed(norm.mean, norm.std, norm.divisor, norm.bgr)
