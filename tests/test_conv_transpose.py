"""ConvTranspose2d against torch in float64 through netdef's executor, BatchNorm folded into it, its engine build,
its refusals; and the ModuleList that keeps None entries (HRNet's fuse and transition layers) and children added by
name (OpenPose's blocks)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import netdef.nn as nn
from netdef.engine import BuildSettings
from tests.test_layers import TOLERANCE, define, randomize, rel_err, run, state_dict_numpy

torch.set_num_threads(2)

# (in, out, kernel, stride, padding, output_padding, groups, bias, dilation, input H, W)
CASES = {
    "higherhrnet_4x4_s2": (6, 4, 4, 2, 1, 0, 1, False, 1, 5, 7),
    "k3_s2_output_padding": (4, 6, 3, 2, 1, 1, 1, True, 1, 6, 5),
    "k2_s2": (4, 6, 2, 2, 0, 0, 1, True, 1, 4, 6),
    "groups_rect_kernel": (4, 6, (3, 2), (2, 1), (1, 0), 0, 2, True, 1, 5, 5),
    "dilated_uneven_crop": (3, 5, 3, 2, 2, 1, 1, True, 2, 4, 6),
}


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
@pytest.mark.parametrize("name", list(CASES))
def test_conv_transpose_matches_torch(name: str, precision: str) -> None:
    cin, cout, k, s, p, op, g, bias, d, h, w = CASES[name]
    seed = sum(map(ord, name))
    torch.manual_seed(seed)
    reference = randomize(torch.nn.ConvTranspose2d(cin, cout, k, s, p, op, groups=g, bias=bias, dilation=d), seed)
    module = nn.ConvTranspose2d(cin, cout, k, s, p, op, groups=g, bias=bias, dilation=d)
    module.load_weights(state_dict_numpy(reference), origin=name)
    shape = (3, cin, h, w)
    net = define(module, shape, precision)
    x = np.random.default_rng(seed).standard_normal(shape).astype(np.float32)
    expected = reference.double()(torch.from_numpy(x).double())
    err = rel_err(run(net, x), expected)
    assert err <= TOLERANCE[precision], f"{name} {precision}: relative error {err:.2e}"


@pytest.mark.parametrize("groups,bias", [(1, False), (2, True)])  # HigherHRNet's deconv; grouped, with a bias
def test_batchnorm_folds_into_conv_transpose_and_builds(groups: int, bias: bool) -> None:
    reference = randomize(torch.nn.Sequential(torch.nn.ConvTranspose2d(4, 6, 4, 2, 1, groups=groups, bias=bias),
                                              torch.nn.BatchNorm2d(6), torch.nn.ReLU()), 1 + groups)
    module = nn.Sequential(nn.ConvTranspose2d(4, 6, 4, 2, 1, groups=groups, bias=bias), nn.BatchNorm2d(6), nn.ReLU())
    module.load_weights(state_dict_numpy(reference))
    for precision in ("fp32", "fp16"):
        net = define(module, (1, 4, 8, 8), precision)
        d = net.definition
        types = {d.get_layer(i).name: d.get_layer(i).type.name for i in range(d.num_layers)}
        assert "SCALE" not in types.values() and types["0"] == "DECONVOLUTION", types  # one layer: deconv * bn
        assert "1" in net.module_outputs and "0" not in net.module_outputs  # the norm's path names the fused output
        x = np.random.default_rng(2).standard_normal((2, 4, 8, 8)).astype(np.float32)
        assert rel_err(run(net, x), reference.double()(torch.from_numpy(x).double())) <= TOLERANCE[precision]
        plan = net.build(BuildSettings(precision=precision, batch=(1, 2, 4), progress=False))
        assert plan.meta["outputs"][0]["max"] == [4, 6, 16, 16]


def test_conv_transpose_refusals_and_shape_errors() -> None:
    with pytest.raises(ValueError, match="smaller than stride"):
        nn.ConvTranspose2d(2, 2, 3, 2, 1, output_padding=2)
    with pytest.raises(ValueError, match="larger than padding"):
        nn.ConvTranspose2d(2, 2, 3, 2, 0, output_padding=1)
    root = nn.Sequential(nn.ConvTranspose2d(3, 4, 2, 2))
    root.load_weights({"0.weight": np.ones((3, 4, 2, 2), np.float32), "0.bias": np.ones(4, np.float32)})
    from netdef.network import Network

    with Network("bad") as net:
        with pytest.raises(ValueError, match=r"0: conv_transpose2d with weight \(3, 4, 2, 2\) got tensor 'input' of "
                                             r"shape \(-1, 5, 8, 8\) \(expected N,3,H,W\)"):
            root(net.add_input("input", (-1, 5, 8, 8)))


def test_module_list_keeps_none_entries_like_torch() -> None:
    netdef_list = nn.ModuleList([None, nn.ReLU(), None, nn.Conv2d(1, 2, 1)])
    torch_list = torch.nn.ModuleList([None, torch.nn.ReLU(), None, torch.nn.Conv2d(1, 2, 1)])
    assert len(netdef_list) == len(torch_list) == 4
    assert [m is None for m in netdef_list] == [m is None for m in torch_list] == [True, False, True, False]
    assert isinstance(netdef_list[-1], nn.Conv2d) and netdef_list[2] is None
    assert [k for k, _ in netdef_list.named_parameters()] == [k for k in torch_list.state_dict()]
    with pytest.raises(IndexError):
        netdef_list[4]


def test_sequential_built_by_name_runs_in_order_like_torch() -> None:
    """OpenPose's blocks: `add_module("conv1_1", ...)`, `add_module("relu_conv1_1", ...)` on an empty Sequential."""
    netdef_seq, torch_seq = nn.Sequential(), torch.nn.Sequential()
    for seq, ns in ((netdef_seq, nn), (torch_seq, torch.nn)):
        seq.add_module("conv1_1", ns.Conv2d(2, 3, 3, padding=1))
        seq.add_module("relu_conv1_1", ns.ReLU())
        seq.add_module("pool1", ns.MaxPool2d(2, 2))
        seq.append(ns.Conv2d(3, 2, 1))
    assert len(netdef_seq) == len(torch_seq) == 4 and isinstance(netdef_seq[1], nn.ReLU)
    assert isinstance(netdef_seq[-1], nn.Conv2d) and [type(m).__name__ for m in netdef_seq] == \
        [type(m).__name__ for m in torch_seq]
    assert [k for k, _ in netdef_seq.named_parameters()] == list(torch_seq.state_dict())
    randomize(torch_seq, 3)
    netdef_seq.load_weights(state_dict_numpy(torch_seq))
    x = np.random.default_rng(3).standard_normal((2, 2, 6, 8)).astype(np.float32)
    expected = torch_seq.double()(torch.from_numpy(x).double())
    assert rel_err(run(define(netdef_seq, x.shape, "fp32"), x), expected) <= TOLERANCE["fp32"]
