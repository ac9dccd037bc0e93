"""BatchNorm folding: pairs declared by the module tree (Sequential order, convX/bnX names, explicit API), the
fused output named after the norm, clear errors for forwards that break a pair, checked variances."""
from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

import netdef.functional as F
import netdef.nn as nn
from netdef import trt as shim
from netdef.module import WeightsError
from netdef.network import Network
from tests.test_layers import TOLERANCE, define, randomize, rel_err, run, state_dict_numpy


class TorchBlock(torch.nn.Module):
    """An HRNet BasicBlock with a projection shortcut, written as the official code writes it."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv1 = torch.nn.Conv2d(cin, cout, 3, 1, 1, bias=False)
        self.bn1 = torch.nn.BatchNorm2d(cout)
        self.relu = torch.nn.ReLU()
        self.conv2 = torch.nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = torch.nn.BatchNorm2d(cout)
        self.downsample = torch.nn.Sequential(torch.nn.Conv2d(cin, cout, 1, bias=False), torch.nn.BatchNorm2d(cout))
        self.transition = torch.nn.Sequential(torch.nn.Sequential(torch.nn.Conv2d(cout, cout, 3, 2, 1, bias=False),
                                                                  torch.nn.BatchNorm2d(cout), torch.nn.ReLU()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)) + self.downsample(x))
        return self.transition(out)


class Block(nn.Module):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU()
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout))
        self.transition = nn.Sequential(nn.Sequential(nn.Conv2d(cout, cout, 3, 2, 1, bias=False),
                                                      nn.BatchNorm2d(cout), nn.ReLU()))

    def forward(self, x: Any) -> Any:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)) + self.downsample(x))
        return self.transition(out)


def layer_types(net: Network) -> dict[str, str]:
    d = net.definition
    return {d.get_layer(i).name: d.get_layer(i).type.name for i in range(d.num_layers)}


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_torch_style_block_folds_every_pair_and_matches_torch(precision: str) -> None:
    reference = randomize(TorchBlock(3, 6), 5)
    block = Block(3, 6)
    block.load_weights(state_dict_numpy(reference))
    net = define(block, (2, 3, 8, 8), precision)
    types = layer_types(net)
    assert "SCALE" not in types.values(), types  # rules (a) Sequential order and (b) convX/bnX fold all four
    assert {p: types[p] for p in ("conv1", "conv2", "downsample.0", "transition.0.0")} == dict.fromkeys(
        ("conv1", "conv2", "downsample.0", "transition.0.0"), "CONVOLUTION")
    # verification compares the norms' paths; a folded conv's path is no comparison point
    assert {"bn1", "bn2", "downsample.1", "transition.0.1"} <= set(net.module_outputs)
    assert not {"conv1", "conv2", "downsample.0", "transition.0.0"} & set(net.module_outputs)
    assert net.module_outputs["bn1"] == "bn1"
    x = np.random.default_rng(6).standard_normal((2, 3, 8, 8)).astype(np.float32)
    err = rel_err(run(net, x), reference.double()(torch.from_numpy(x).double()))
    assert err <= TOLERANCE[precision]


def test_fp16_kernel_is_the_fp32_product_rounded_once() -> None:
    reference = randomize(torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, bias=False), torch.nn.BatchNorm2d(4)), 2)
    module = nn.Sequential(nn.Conv2d(3, 4, 3, bias=False), nn.BatchNorm2d(4))
    weights = state_dict_numpy(reference)
    module.load_weights(weights)
    net = define(module, (1, 3, 6, 6), "fp16")
    conv = shim.downcast(net.definition.get_layer(next(i for i in range(net.definition.num_layers)
                                                       if net.definition.get_layer(i).name == "0")))
    scale = weights["1.weight"].astype(np.float64) / np.sqrt(weights["1.running_var"].astype(np.float64) + 1e-5)
    expected = (weights["0.weight"] * scale.astype(np.float32)[:, None, None, None]).astype(np.float16)
    assert np.array_equal(np.asarray(conv.kernel).reshape(expected.shape), expected)


def test_declared_pairs_and_unpaired_norms() -> None:
    class Odd(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.proj, self.norm = nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4)  # names the rules do not pair
            self.conv, self.bn = nn.Conv2d(4, 4, 1), nn.BatchNorm2d(4)  # rule (b), undone by no_fold
            self.after = nn.Sequential(nn.Conv2d(4, 4, 1), nn.ReLU(), nn.BatchNorm2d(4))  # norm not right after
            nn.fold(self.proj, self.norm)
            nn.no_fold(self.bn)

        def forward(self, x: Any) -> Any:
            return self.after(self.bn(self.conv(self.norm(self.proj(x)))))

    class TorchOdd(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.proj, self.norm = torch.nn.Conv2d(3, 4, 1), torch.nn.BatchNorm2d(4)
            self.conv, self.bn = torch.nn.Conv2d(4, 4, 1), torch.nn.BatchNorm2d(4)
            self.after = torch.nn.Sequential(torch.nn.Conv2d(4, 4, 1), torch.nn.ReLU(), torch.nn.BatchNorm2d(4))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.after(self.bn(self.conv(self.norm(self.proj(x)))))

    reference = randomize(TorchOdd(), 3)
    module = Odd()
    module.load_weights(state_dict_numpy(reference))
    net = define(module, (2, 3, 5, 5), "fp32")
    types = layer_types(net)
    assert "norm" not in types and types["bn"] == "SCALE" and types["after.2"] == "SCALE"
    x = np.random.default_rng(4).standard_normal((2, 3, 5, 5)).astype(np.float32)
    assert rel_err(run(net, x), reference.double()(torch.from_numpy(x).double())) <= 1e-5


class PointwiseIO(nn.ConvLike):
    """A conv-like module with an (in, out) weight layout: the protocol a ConvTranspose2d joins with."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.out_channels = cout
        self.weight = nn.Parameter(cin, cout)

    def fold_norm(self, weight: np.ndarray, bias: Any, scale: np.ndarray, shift: np.ndarray) -> tuple[Any, Any]:
        return weight * scale.astype(np.float32)[None, :], (0.0 if bias is None else bias) * scale + shift

    def forward(self, x: Any) -> Any:
        weight, bias = self.weights_with_norm(self.weight.data, None)
        return self.hand_to_norm(F.conv2d(x, weight.T[:, :, None, None].copy(), bias, op=None))


def test_a_new_conv_like_module_joins_through_the_protocol() -> None:
    module = nn.Sequential(PointwiseIO(3, 5), nn.BatchNorm2d(5))
    rng = np.random.default_rng(8)
    weights = {"0.weight": rng.standard_normal((3, 5)), "1.weight": rng.uniform(0.5, 1.5, 5),
               "1.bias": rng.standard_normal(5), "1.running_mean": rng.standard_normal(5),
               "1.running_var": rng.uniform(0.5, 2, 5)}
    module.load_weights({k: v.astype(np.float32) for k, v in weights.items()})
    net = define(module, (2, 3, 4, 4), "fp32")
    assert set(layer_types(net).values()) == {"CONVOLUTION", "IDENTITY"}
    x = rng.standard_normal((2, 3, 4, 4)).astype(np.float32)
    conv = np.einsum("bchw,co->bohw", x.astype(np.float64), weights["0.weight"])
    scale = weights["1.weight"] / np.sqrt(weights["1.running_var"] + 1e-5)
    expected = conv * scale[:, None, None] + (weights["1.bias"] - weights["1.running_mean"] * scale)[:, None, None]
    assert rel_err(run(net, x), torch.from_numpy(expected)) <= 1e-5


def _pair_module() -> nn.Module:
    root = nn.Module()
    root.conv, root.bn, root.other = nn.Conv2d(2, 2, 1), nn.BatchNorm2d(2), nn.Conv2d(2, 2, 1)
    rng = np.random.default_rng(1)
    root.load_weights({k: rng.uniform(0.5, 2, p.shape).astype(np.float32) for k, p in root.named_parameters()})
    return root


def test_a_norm_given_another_tensor_is_refused() -> None:
    root = _pair_module()
    with pytest.raises(ValueError, match=r"bn: folded into conv .* its input 'other' is not conv's output"):
        with Network("wrong") as net:
            x = net.add_input("input", (-1, 2, 4, 4))
            root.conv(x)
            root.bn(root.other(x))


def test_a_norm_never_applied_is_reported_when_the_definition_ends() -> None:
    root = _pair_module()
    with pytest.raises(ValueError, match=r"never received their output \(conv -> bn\)"):
        with Network("forgot") as net:
            net.mark_output(F.relu(root.conv(net.add_input("input", (-1, 2, 4, 4)))), "out")


def test_negative_variance_names_file_layer_and_tensor() -> None:
    from networks.resnet import ResNet, random_bn_init, resnet18_reference

    state = {k: v.numpy().copy() for k, v in random_bn_init(resnet18_reference(seed=0), 1).state_dict().items()}
    state["layer1.0.bn1.running_var"][[0, 5, 9]] = -0.5
    with pytest.raises(WeightsError, match=r"^r18\.h5: .*\n  layer1\.0\.bn1\.running_var has 3 negative values$"):
        ResNet(state, path="r18.h5").module()


def test_a_fold_that_overflows_fp16_is_a_weights_error() -> None:
    module = nn.Sequential(nn.Conv2d(2, 2, 1), nn.BatchNorm2d(2, eps=0.0))
    module.load_weights({"0.weight": np.full((2, 2, 1, 1), 3.0, np.float32), "0.bias": np.zeros(2, np.float32),
                         "1.weight": np.array([1.0, 1e3], np.float32), "1.bias": np.zeros(2, np.float32),
                         "1.running_mean": np.zeros(2, np.float32),
                         "1.running_var": np.array([1.0, 1e-6], np.float32)}, origin="tiny.h5")
    define(module, (1, 2, 3, 3), "fp32")  # 3e6 is fine in FP32
    with pytest.raises(WeightsError, match=r"tiny\.h5: 0\.weight folded with 1 has 2 non-finite values in float16"):
        define(module, (1, 2, 3, 3), "fp16")
