"""FP32 verification judges each layer against PyTorch float32's own error there: a correct network passes
even where float32 itself is far from float64 (here 1e-4, from cancellation), and a network that is less
accurate than PyTorch fails even where a fixed 1e-5 would have let it through."""
from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from netdef import functional as F
from netdef import nn
from netdef import trt as shim
from netdef.network import Network
from netdef.verify import FP32_FACTOR, FP32_FLOOR, verify_network

torch.set_num_threads(2)
DELTA = 1e-3  # the two branches cancel to this fraction of their size


class TorchCancel(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv_a, self.bn_a = torch.nn.Conv2d(3, 8, 3, padding=1, bias=False), torch.nn.BatchNorm2d(8)
        self.conv_b, self.bn_b = torch.nn.Conv2d(3, 8, 3, padding=1, bias=False), torch.nn.BatchNorm2d(8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn_a(self.conv_a(x)) + self.bn_b(self.conv_b(x))


class NetdefCancel(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv_a, self.bn_a = nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8)
        self.conv_b, self.bn_b = nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8)

    def forward(self, x: Any) -> Any:
        return F.add(self.bn_a(self.conv_a(x)), self.bn_b(self.conv_b(x)))


def cancelling_pair() -> tuple[Network, torch.nn.Module]:
    """bn_b(conv_b(x)) = -(1 - DELTA) bn_a(conv_a(x)): the sum is DELTA times either branch, so every rounding
    of the branches (float32 arithmetic, BatchNorm folded into float32 weights) grows 1/DELTA times."""
    rng = np.random.default_rng(0)
    w = rng.normal(0, 0.3, (8, 3, 3, 3))
    gamma, beta, mean, var = rng.uniform(0.5, 1.5, 8), rng.uniform(-0.2, 0.2, 8), rng.uniform(-0.3, 0.3, 8), \
        rng.uniform(0.5, 2.0, 8)
    k = -(1 - DELTA)
    state = {"conv_a.weight": w, "bn_a.weight": gamma, "bn_a.bias": beta, "bn_a.running_mean": mean,
             "bn_a.running_var": var, "conv_b.weight": k * w, "bn_b.weight": gamma, "bn_b.bias": k * beta,
             "bn_b.running_mean": k * mean, "bn_b.running_var": var}
    state = {key: np.asarray(v, np.float32) for key, v in state.items()}
    reference = TorchCancel().eval()
    reference.load_state_dict({key: torch.from_numpy(v) for key, v in state.items()}, strict=False)
    module = NetdefCancel()
    module.load_weights(state, origin="test")
    with Network("cancel", "fp32") as net:
        net.mark_output(module(net.add_input("input", (-1, 3, 16, 16))), "out")
    return net, reference


def _input() -> np.ndarray:
    return np.random.default_rng(1).standard_normal((2, 3, 16, 16)).astype(np.float32)


def test_correct_network_passes_where_float32_itself_is_far_from_float64():
    net, reference = cancelling_pair()
    report = verify_network(net, reference, _input())
    out = report.outputs[0]
    assert report.relative and out.reference_rel is not None
    assert out.reference_rel > 1e-5 and out.rel > 1e-5  # both far beyond the old fixed 1e-5 ...
    assert report.ok and out.rel <= out.tolerance == pytest.approx(FP32_FACTOR * out.reference_rel)  # ... and fine
    assert "4 x PyTorch float32's own error per layer" in report.table()
    json_layers = report.to_json()["layers"]
    assert json_layers[-1]["tolerance"] == out.tolerance and json_layers[-1]["reference_rel"] == out.reference_rel


def test_one_wrong_layer_still_fails():
    net, reference = cancelling_pair()
    for i in range(net.definition.num_layers):
        layer = net.definition.get_layer(i)
        if layer.type == shim.binding().LayerType.CONVOLUTION and "conv_b" in layer.name:
            shim.downcast(layer)
            layer.kernel = shim.binding().Weights(net.keep(layer.kernel * np.float32(1 + 1e-4)))
    report = verify_network(net, reference, _input())
    assert not report.ok and report.first_failure.name == "bn_b" and report.outputs[0].rel > 1e-2


def test_less_accurate_than_pytorch_fails_although_within_a_fixed_1e_5():
    from networks.resnet import ResNet, random_bn_init, resnet18_reference

    reference = random_bn_init(resnet18_reference(seed=3, num_classes=10), seed=4)
    model = ResNet({k: v.numpy() for k, v in reference.state_dict().items()})
    net = model.define("fp32", input_size=(32, 32))
    for i in range(net.definition.num_layers):  # one kernel 3e-6 off: ten times float32's own rounding
        layer = net.definition.get_layer(i)
        if layer.name.startswith("layer3.0.conv1"):
            shim.downcast(layer)
            layer.kernel = shim.binding().Weights(net.keep(layer.kernel * np.float32(1 + 3e-6)))
    x = model.sample_input(1, (32, 32), seed=5)
    report = verify_network(net, reference, x)
    assert not report.ok and report.first_failure.name == "layer3.0.bn1"
    assert report.first_failure.rel < 1e-5 and report.first_failure.tolerance >= FP32_FLOOR
    assert verify_network(net, reference, x, tolerance=1e-5).ok  # the fixed number would have passed it


def test_yolov4_structure_passes_and_one_wrong_layer_fails():
    """bench/verify_yolov4.py at a CI size (162 cfg layers, widths / 16, 64x64); the script runs the full-size
    608 network the same way (about a minute on 2 cores, numbers in bench/results/verify_yolov4_cpu.json)."""
    import importlib.util
    from pathlib import Path

    script = Path(__file__).resolve().parent.parent / "bench" / "verify_yolov4.py"
    spec = importlib.util.spec_from_file_location("verify_yolov4", script)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    results = bench.run(size=64, width_div=16, seed=0, wrong="layers.60.conv")
    correct, wrong = results["correct"], results["one wrong layer"]
    assert correct["ok"] and correct["layers"] > 250 and correct["max_ratio"] < FP32_FACTOR
    assert not wrong["ok"] and wrong["first_failure"] == "layers.60.bn" and wrong["broken_layer"] == "layers.60.conv"
