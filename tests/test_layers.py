"""Every netdef.nn layer and functional op against torch, in float64, through netdef's executor.

Each case builds the definition with netdef (the module gets the torch module's random weights by
state-dict name), runs it with `netdef.executor.execute` on fresh random inputs, and compares with
the float64 torch module by norm-wise relative error. One test builds all of them into engines.
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np
import pytest
import torch

import netdef.functional as F
import netdef.nn as nn
from netdef.engine import BuildSettings
from netdef.network import Network

torch.set_num_threads(2)
TOLERANCE = {"fp32": 1e-5, "fp16": 5e-3}


def rel_err(actual: Any, expected: torch.Tensor) -> float:
    a = torch.as_tensor(actual).detach().double()
    b = expected.detach().double()
    assert a.shape == b.shape, f"shape {tuple(a.shape)} != expected {tuple(b.shape)}"
    return float((a - b).norm() / b.norm())


def randomize(module: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Random parameters and realistic BatchNorm statistics (running_var in [0.5, 2], never zeros)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in module.state_dict().items():
            if t.dtype.is_floating_point:
                if name.endswith("running_var"):
                    t.copy_(torch.rand(t.shape, generator=gen) * 1.5 + 0.5)
                else:
                    t.copy_(torch.randn(t.shape, generator=gen) * (0.5 if t.dim() > 1 else 0.3))
    return module.eval()


def state_dict_numpy(module: torch.nn.Module) -> dict[str, np.ndarray]:
    return {k: v.detach().numpy() for k, v in module.state_dict().items()}


def define(netdef_module: nn.Module, input_shape: tuple[int, ...], precision: str, n_inputs: int = 1) -> Network:
    """A network with dynamic batch input(s) `input`, `input1`, ... and the module's output `out`."""
    netdef_module.assign_paths()
    with Network("case", precision) as net:
        xs = [net.add_input("input" if i == 0 else f"input{i}", (-1,) + tuple(input_shape[1:]))
              for i in range(n_inputs)]
        net.mark_output(netdef_module(*xs), "out")
    return net


def run(net: Network, *arrays: np.ndarray) -> torch.Tensor:
    from netdef.executor import execute

    names = [net.definition.get_input(i).name for i in range(net.definition.num_inputs)]
    return execute(net.definition, dict(zip(names, arrays)))["out"]


class Lambda(torch.nn.Module):
    def __init__(self, fn: Callable[..., torch.Tensor]) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, *x: torch.Tensor) -> torch.Tensor:
        return self.fn(*x)


class NetdefLambda(nn.Module):
    def __init__(self, fn: Callable[..., Any]) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, *x: Any) -> Any:
        return self.fn(*x)


# (id, torch module factory, netdef module factory, input shape)
MODULE_CASES = [
    ("conv", lambda: torch.nn.Conv2d(4, 6, 3, padding=1), lambda: nn.Conv2d(4, 6, 3, padding=1), (2, 4, 9, 9)),
    ("conv_stride_dilation_nobias", lambda: torch.nn.Conv2d(4, 6, 3, stride=2, padding=2, dilation=2, bias=False),
     lambda: nn.Conv2d(4, 6, 3, stride=2, padding=2, dilation=2, bias=False), (2, 4, 11, 11)),
    ("conv_groups_rect", lambda: torch.nn.Conv2d(4, 8, (1, 3), padding=(0, 1), groups=2),
     lambda: nn.Conv2d(4, 8, (1, 3), padding=(0, 1), groups=2), (2, 4, 7, 9)),
    ("batchnorm_standalone", lambda: torch.nn.BatchNorm2d(5), lambda: nn.BatchNorm2d(5), (2, 5, 6, 6)),
    ("linear", lambda: torch.nn.Linear(12, 7), lambda: nn.Linear(12, 7), (3, 12)),
    ("linear_nobias_3d", lambda: torch.nn.Linear(12, 7, bias=False), lambda: nn.Linear(12, 7, bias=False),
     (3, 5, 12)),
    ("relu", torch.nn.ReLU, nn.ReLU, (2, 3, 5, 5)),
    ("leaky_relu", lambda: torch.nn.LeakyReLU(0.1), lambda: nn.LeakyReLU(0.1), (2, 3, 5, 5)),
    ("silu", torch.nn.SiLU, nn.SiLU, (2, 3, 5, 5)),
    ("mish", torch.nn.Mish, nn.Mish, (2, 3, 5, 5)),
    ("sigmoid", torch.nn.Sigmoid, nn.Sigmoid, (2, 3, 5, 5)),
    ("tanh", torch.nn.Tanh, nn.Tanh, (2, 3, 5, 5)),
    ("hardswish", torch.nn.Hardswish, nn.Hardswish, (2, 3, 5, 5)),
    ("maxpool", lambda: torch.nn.MaxPool2d(3, 2, 1), lambda: nn.MaxPool2d(3, 2, 1), (2, 3, 9, 9)),
    ("maxpool_ceil", lambda: torch.nn.MaxPool2d(2, 2, ceil_mode=True), lambda: nn.MaxPool2d(2, 2, ceil_mode=True),
     (2, 3, 7, 7)),
    ("avgpool", lambda: torch.nn.AvgPool2d(2), lambda: nn.AvgPool2d(2), (2, 3, 8, 8)),
    ("avgpool_pad_exclude", lambda: torch.nn.AvgPool2d(3, 2, 1, count_include_pad=False),
     lambda: nn.AvgPool2d(3, 2, 1, count_include_pad=False), (2, 3, 7, 7)),
    ("adaptive_avgpool", lambda: torch.nn.AdaptiveAvgPool2d(1), lambda: nn.AdaptiveAvgPool2d(1), (2, 6, 5, 7)),
    ("upsample", lambda: torch.nn.Upsample(scale_factor=2), lambda: nn.Upsample(scale_factor=2), (2, 3, 4, 5)),
    ("upsample_size", lambda: torch.nn.Upsample(size=(9, 10)), lambda: nn.Upsample(size=(9, 10)), (2, 3, 3, 5)),
    ("upsample_size_fractional", lambda: torch.nn.Upsample(size=(7, 8)), lambda: nn.Upsample(size=(7, 8)),
     (2, 3, 3, 5)),
    ("upsample_bilinear", lambda: torch.nn.Upsample(scale_factor=2, mode="bilinear"),
     lambda: nn.Upsample(scale_factor=2, mode="bilinear"), (2, 3, 4, 5)),
    ("upsample_bicubic_align", lambda: torch.nn.Upsample(size=(9, 7), mode="bicubic", align_corners=True),
     lambda: nn.Upsample(size=(9, 7), mode="bicubic", align_corners=True), (2, 3, 4, 5)),
    ("flatten", torch.nn.Flatten, nn.Flatten, (2, 3, 4, 5)),
    ("flatten_middle", lambda: torch.nn.Flatten(1, 2), lambda: nn.Flatten(1, 2), (2, 3, 4, 5)),
    ("softmax", lambda: torch.nn.Softmax(1), lambda: nn.Softmax(1), (2, 6, 3, 3)),
    ("softmax_last", lambda: torch.nn.Softmax(-1), lambda: nn.Softmax(-1), (2, 4, 9)),
    ("identity_then_relu", lambda: torch.nn.Sequential(torch.nn.Identity(), torch.nn.ReLU()),
     lambda: nn.Sequential(nn.Identity(), nn.ReLU()), (2, 3, 4, 4)),
    ("conv_bn_folded", lambda: torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, bias=False), torch.nn.BatchNorm2d(8)),
     lambda: nn.Sequential(nn.Conv2d(3, 8, 3, bias=False), nn.BatchNorm2d(8)), (2, 3, 8, 8)),
    ("conv_bias_bn_relu", lambda: torch.nn.Sequential(torch.nn.Conv2d(3, 8, 1), torch.nn.BatchNorm2d(8),
                                                      torch.nn.ReLU()),
     lambda: nn.Sequential(nn.Conv2d(3, 8, 1), nn.BatchNorm2d(8), nn.ReLU()), (2, 3, 8, 8)),
]

# functional ops: (id, torch fn, netdef fn, input shapes)
FUNCTIONAL_CASES = [
    ("add", lambda a, b: a + b, F.add, [(2, 3, 4, 4)] * 2),
    ("sub_broadcast", lambda a, b: a - b, F.sub, [(2, 3, 4, 4), (2, 3, 1, 1)]),
    ("mul", lambda a, b: a * b, F.mul, [(2, 3, 4, 4)] * 2),
    ("rsub_numpy_scalar", lambda a: 1.5 - a, lambda a: F.sub(np.float32(1.5), a), [(2, 3, 4, 4)]),
    ("div_scalar", lambda a: a / 3.0, lambda a: F.div(a, 3.0), [(2, 3, 4, 4)]),
    ("mul_array", lambda a: a * torch.arange(1.0, 4.0).view(3, 1, 1),
     lambda a: F.mul(a, np.arange(1.0, 4.0).reshape(3, 1, 1)), [(2, 3, 4, 4)]),
    ("concat", lambda a, b: torch.cat([a, b], 1), lambda a, b: F.concat([a, b], 1), [(2, 3, 4, 4), (2, 2, 4, 4)]),
    ("slice_step", lambda a: a[:, 1:6:2], lambda a: F.slice(a, 1, 1, 6, 2), [(2, 7, 3, 3)]),
    ("split_second", lambda a: torch.split(a, [2, 5], 1)[1], lambda a: F.split(a, [2, 5], 1)[1], [(2, 7, 3, 3)]),
    ("split_chunks_concat", lambda a: torch.cat(torch.split(a, 3, 1)[::-1], 1),
     lambda a: F.concat(F.split(a, 3, 1)[::-1], 1), [(2, 7, 3, 3)]),
    ("reshape", lambda a: a.reshape(a.shape[0], 4, -1), lambda a: F.reshape(a, (0, 4, -1)), [(2, 4, 3, 3)]),
    ("flatten", lambda a: torch.flatten(a, 2), lambda a: F.flatten(a, 2), [(2, 4, 3, 3)]),
    ("permute", lambda a: a.permute(0, 2, 3, 1), lambda a: F.permute(a, (0, 2, 3, 1)), [(2, 4, 3, 5)]),
    ("transpose", lambda a: a.transpose(1, 3), lambda a: F.transpose(a, 1, 3), [(2, 4, 3, 5)]),
    ("sigmoid", torch.sigmoid, F.sigmoid, [(2, 3, 4)]),
    ("tanh", torch.tanh, F.tanh, [(2, 3, 4)]),
    ("relu", torch.relu, F.relu, [(2, 3, 4)]),
    ("leaky_relu", lambda a: torch.nn.functional.leaky_relu(a, 0.2), lambda a: F.leaky_relu(a, 0.2), [(2, 3, 4)]),
    ("mish", torch.nn.functional.mish, F.mish, [(2, 3, 4)]),
    ("silu", torch.nn.functional.silu, F.silu, [(2, 3, 4)]),
    ("exp", torch.exp, F.exp, [(2, 3, 4)]),
    ("softmax", lambda a: torch.softmax(a, 2), lambda a: F.softmax(a, 2), [(2, 3, 4)]),
    ("cast_roundtrip", lambda a: a, lambda a: F.cast(F.cast(a, np.float32), np.float16 if a.dtype.name == "HALF"
                                                     else np.float32), [(2, 3, 4)]),
    ("constant_add", lambda a: a + torch.linspace(-1, 1, 4), lambda a: F.add(a, F.constant(
        np.linspace(-1, 1, 4).reshape(1, 1, 4))), [(2, 3, 4)]),
]


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
@pytest.mark.parametrize("case", MODULE_CASES, ids=[c[0] for c in MODULE_CASES])
def test_module_matches_torch(case: tuple, precision: str) -> None:
    name, make_torch, make_netdef, shape = case
    seed = sum(map(ord, name))
    torch.manual_seed(seed)
    reference = randomize(make_torch(), seed)
    module = make_netdef()
    if list(reference.state_dict()):
        module.load_weights(state_dict_numpy(reference), origin=name)
    net = define(module, shape, precision)
    x = np.random.default_rng(seed + 1).standard_normal(shape).astype(np.float32) * 2
    expected = reference.double()(torch.from_numpy(x).double())
    err = rel_err(run(net, x), expected)
    assert err <= TOLERANCE[precision], f"{name} {precision}: relative error {err:.2e}"


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
@pytest.mark.parametrize("case", FUNCTIONAL_CASES, ids=[c[0] for c in FUNCTIONAL_CASES])
def test_functional_matches_torch(case: tuple, precision: str) -> None:
    name, torch_fn, netdef_fn, shapes = case
    rng = np.random.default_rng(sum(map(ord, name)))
    xs = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    net = define(NetdefLambda(netdef_fn), shapes[0], precision, n_inputs=len(shapes)) if len(set(shapes)) == 1 \
        else _define_shapes(NetdefLambda(netdef_fn), shapes, precision)
    expected = torch_fn(*[torch.from_numpy(x).double() for x in xs])
    err = rel_err(run(net, *xs), expected)
    assert err <= TOLERANCE[precision], f"{name} {precision}: relative error {err:.2e}"


def _define_shapes(module: nn.Module, shapes: list[tuple[int, ...]], precision: str) -> Network:
    module.assign_paths()
    with Network("case", precision) as net:
        xs = [net.add_input("input" if i == 0 else f"input{i}", (-1,) + s[1:]) for i, s in enumerate(shapes)]
        net.mark_output(module(*xs), "out")
    return net


def test_mish_is_finite_for_large_inputs() -> None:
    x = np.array([[-30.0, -5.0, 0.0, 5.0, 12.0, 30.0, 80.0]], dtype=np.float32)
    for precision in ("fp32", "fp16"):
        out = run(define(nn.Mish(), x.shape, precision), x)
        assert torch.isfinite(out).all()
        assert rel_err(out, torch.nn.functional.mish(torch.from_numpy(x).double())) <= TOLERANCE[precision]


def test_batch_one_and_larger_batches_agree() -> None:
    torch.manual_seed(3)
    reference = randomize(torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.ReLU(),
                                              torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
                                              torch.nn.Linear(4, 2)), 3)
    module = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                           nn.Linear(4, 2))
    module.load_weights(state_dict_numpy(reference))
    net = define(module, (1, 3, 6, 6), "fp32")
    for batch in (1, 5):
        x = np.random.default_rng(batch).standard_normal((batch, 3, 6, 6)).astype(np.float32)
        err = rel_err(run(net, x), reference.double()(torch.from_numpy(x).double()))
        assert err <= 1e-5


# --- structure: names, folding, precision ------------------------------------------------------------
def layers(net: Network) -> list[tuple[str, str]]:
    d = net.definition
    return [(d.get_layer(i).name, d.get_layer(i).type.name) for i in range(d.num_layers)]


def block() -> nn.Module:
    m = nn.Sequential(nn.Conv2d(3, 4, 3, bias=False), nn.BatchNorm2d(4), nn.ReLU())
    rng = np.random.default_rng(0)
    m.load_weights({k: (rng.uniform(0.5, 2, p.shape) if "running_var" in k else rng.standard_normal(p.shape))
                    .astype(np.float32) for k, p in m.named_parameters()})
    return m


def test_batchnorm_after_conv_folds_and_names_follow_module_paths() -> None:
    net = define(block(), (1, 3, 8, 8), "fp32")
    assert layers(net) == [("0", "CONVOLUTION"), ("2", "ACTIVATION"), ("output/out", "IDENTITY")]
    assert net.module_outputs == {"1": "1", "2": "2"}  # the conv's output is the BatchNorm's now


def test_batchnorm_becomes_scale_when_conv_output_is_used_twice() -> None:
    """A forward that also uses the raw conv output declares no_fold(bn): the norm is a scale layer, results exact;
    without the declaration the pair folds and that forward is refused, naming the layer that reads too early."""
    conv, bn = nn.Conv2d(2, 2, 1), nn.BatchNorm2d(2)
    root = nn.Module()
    root.conv, root.bn = conv, bn
    rng = np.random.default_rng(1)
    root.load_weights({k: rng.uniform(0.5, 2, p.shape).astype(np.float32) for k, p in root.named_parameters()})

    def forward(net: Network) -> None:
        c = conv(net.add_input("input", (-1, 2, 4, 4)))
        shortcut = F.relu(c, op="shortcut")
        net.mark_output(F.add(bn(c), shortcut), "out")

    with pytest.raises(ValueError, match=r"bn: layer 'shortcut' reads conv's output before bn does.*no_fold"):
        with Network("twice") as net:
            forward(net)
    nn.no_fold(bn)
    with Network("twice") as net:
        forward(net)
    assert ("bn", "SCALE") in layers(net)
    torch_conv, torch_bn = torch.nn.Conv2d(2, 2, 1).double(), torch.nn.BatchNorm2d(2).double().eval()
    params = {k: p.data.astype(np.float64) for k, p in root.named_parameters()}
    for module, prefix in ((torch_conv, "conv."), (torch_bn, "bn.")):
        module.load_state_dict({k: torch.from_numpy(params[prefix + k]) for k in module.state_dict()
                                if k != "num_batches_tracked"}, strict=False)
    x = np.random.default_rng(2).standard_normal((2, 2, 4, 4)).astype(np.float32)
    c = torch_conv(torch.from_numpy(x).double())
    assert rel_err(run(net, x), torch_bn(c) + torch.relu(c)) <= 1e-5


def test_fp16_network_has_fp16_compute_and_fp32_io() -> None:
    net = define(block(), (1, 3, 8, 8), "fp16")
    d = net.definition
    assert d.get_input(0).dtype == net.trt.DataType.FLOAT and d.get_output(0).dtype == net.trt.DataType.FLOAT
    conv = next(d.get_layer(i) for i in range(d.num_layers) if d.get_layer(i).type.name == "CONVOLUTION")
    assert conv.get_output(0).dtype == net.trt.DataType.HALF


def test_linear_shape_error_names_layer_and_tensor() -> None:
    fc = nn.Linear(5, 2)
    fc.load_weights({"weight": np.ones((2, 5), np.float32), "bias": np.ones(2, np.float32)})
    root = nn.Sequential(fc)
    root.assign_paths()
    with Network("bad") as net:
        with pytest.raises(ValueError, match=r"0: Linear\(5, 2\) got tensor 'input'.*last dim must be 5"):
            root(net.add_input("input", (-1, 4)))


def test_conv_channel_error_names_layer_and_tensor() -> None:
    root = nn.Sequential(nn.Conv2d(3, 4, 1))
    root.load_weights({"0.weight": np.ones((4, 3, 1, 1), np.float32), "0.bias": np.ones(4, np.float32)})
    with Network("bad") as net:
        with pytest.raises(ValueError, match=r"0: Conv2d\(3, 4\) got tensor 'input' of shape \(-1, 5, 8, 8\)"):
            root(net.add_input("input", (-1, 5, 8, 8)))


def test_unsupported_options_are_refused_clearly() -> None:
    with pytest.raises(ValueError, match="only output size 1"):
        nn.AdaptiveAvgPool2d(2)
    with pytest.raises(ValueError, match="supported modes are nearest, nearest-exact, bilinear, bicubic"):
        nn.Upsample(scale_factor=2, mode="trilinear")


def test_every_layer_builds_into_an_engine_in_fp32_and_fp16() -> None:
    class All(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv, self.bn, self.bn2 = nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.BatchNorm2d(8)
            self.acts = nn.Sequential(nn.ReLU(), nn.LeakyReLU(0.1), nn.SiLU(), nn.Mish(), nn.Sigmoid(), nn.Tanh(),
                                      nn.Hardswish(), nn.Identity())
            self.pools = nn.Sequential(nn.MaxPool2d(3, 2, 1), nn.AvgPool2d(2, ceil_mode=True), nn.Upsample(scale_factor=2),
                                       nn.Upsample(size=(10, 12)))
            self.gap, self.flat, self.fc, self.sm = nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 4), nn.Softmax(1)

        def forward(self, x: Any) -> Any:
            c = self.bn(self.conv(x))
            x = self.pools(self.acts(F.add(c, self.bn2(c))))
            a, b = F.split(x, 4, 1)
            x = F.concat([F.mul(b, 2.0), F.sub(a, 1.0), F.slice(x, 1, 0, 8, 1)], 1)
            return self.sm(self.fc(self.flat(self.gap(x))))

    model = All()
    rng = np.random.default_rng(0)
    model.load_weights({k: rng.uniform(0.5, 2, p.shape).astype(np.float32) for k, p in model.named_parameters()})
    for precision in ("fp32", "fp16"):
        net = define(model, (1, 3, 16, 16), precision)
        plan = net.build(BuildSettings(precision=precision, batch=(1, 2, 4), progress=False))
        assert len(plan.data) > 10_000 and plan.meta["outputs"][0]["name"] == "out"
        assert plan.meta["outputs"][0]["max"] == [4, 4]
