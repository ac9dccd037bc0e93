"""Quantization emitted while defining (netdef.quantize.policy): the executor's INT8 semantics bit for bit; a small
block through netdef's modules against a float64 fake-quant reference; FP32 recording = INT8 sites; shared Q/DQ,
per-channel kernels, FP16 dequantize outputs, skip, unquantized regions, scale groups, missing ranges; the
TensorRT 8.6 guard (what a fused INT8 conv + add ends in is never read in float)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from netdef import trt as shim
import netdef.functional as F
from netdef import nn
from netdef.engine import BuildSettings, create_builder, create_network
from netdef.executor import execute
from netdef.network import Network, current
from netdef.precision import PrecisionPolicy
from netdef.quantize import CalibrationMissingError, Int8Settings
from netdef.quantize.placement import check_placement

trt = shim.binding()
STRONG = shim.features().strongly_typed


class Keep(list):
    def __call__(self, a: np.ndarray) -> np.ndarray:
        self.append(a)
        return a


def _named(layer, name):
    layer.name = name
    layer.get_output(0).name = name
    return layer.get_output(0)


def _const(net, keep, array, name):
    array = keep(np.ascontiguousarray(array))
    return _named(net.add_constant(array.shape, trt.Weights(array)), name)


def _qdq(net, keep, x, scale, axis, name):
    s = _const(net, keep, np.asarray(scale, np.float32), f"{name}/scale")
    if STRONG:
        q = net.add_quantize(x, s, trt.DataType.INT8)
        dq = net.add_dequantize(_named(q, f"{name}/q"), s, trt.DataType.FLOAT)
    else:
        q = net.add_quantize(x, s)
        dq = net.add_dequantize(_named(q, f"{name}/q"), s)
    q.axis = dq.axis = axis
    return q.get_output(0), _named(dq, f"{name}/dq")


def _reference_q(x: np.ndarray, scale: np.ndarray, axis: int | None) -> np.ndarray:
    """Direct float64 quantization: round half to even, clamp to [-128, 127]."""
    s = np.asarray(scale, np.float64)
    if axis is not None and s.ndim:
        shape = [1] * x.ndim
        shape[axis] = s.size
        s = s.reshape(shape)
    return np.clip(np.rint(x.astype(np.float64) / s), -128, 127)


@pytest.mark.parametrize("axis", [None, 1])
def test_executor_quantize_dequantize_bit_exact(axis) -> None:
    rng = np.random.default_rng()
    keep = Keep()
    net = create_network(create_builder())
    x = net.add_input("x", trt.DataType.FLOAT, (-1, 4, 5, 6))
    # power-of-two scales make x/scale exact, so ties (k + 0.5) really are ties and must round to even
    scale = (2.0 ** rng.integers(-6, -1, size=4)).astype(np.float32) if axis else np.float32(2.0 ** -4)
    q, dq = _qdq(net, keep, x, scale, 0 if axis is None else axis, "t")
    net.mark_output(q)
    net.mark_output(dq)
    data = rng.standard_normal((3, 4, 5, 6)).astype(np.float32) * 8
    data[1, :, 0, :2] = 1e3, -1e3  # beyond +-127 steps at every scale: clamped (random draws missed it at times)
    s4 = np.broadcast_to(np.asarray(scale, np.float32).reshape(-1, 1, 1) if axis else scale, (4, 5, 6))
    data[0, :, 0, :] = ((np.arange(6) - 2.5)[None, :] * s4[:, 0, :]).astype(np.float32)  # exact ties
    out = execute(net, {"x": data})
    want_q = _reference_q(data, scale, axis)
    assert out["t/q"].dtype == torch.int8
    np.testing.assert_array_equal(out["t/q"].numpy().astype(np.float64), want_q)
    assert (want_q == -128).any() and (want_q == 127).any()
    assert set(want_q[0, :, 0, :].ravel()) >= {-2.0, -2.0, 0.0, 2.0}  # -2.5->-2, -0.5->0, 0.5->0, 2.5->2
    want_dq = (want_q * (np.asarray(scale, np.float64).reshape(-1, 1, 1) if axis else float(scale))).astype(np.float32)
    np.testing.assert_array_equal(out["t/dq"].numpy(), want_dq)


class Block(nn.Module):
    """relu -> conv1 -> relu1 -> conv2 (+ relu: the skip) -> relu2 -> global average pool -> flatten -> fc."""

    def __init__(self) -> None:
        super().__init__()
        self.relu = nn.ReLU()
        self.conv1 = nn.Conv2d(4, 4, 3, padding=1)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(4, 4, 3, padding=1)
        self.relu2 = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        r = self.relu(x)
        y = self.conv2(self.relu1(self.conv1(r)))
        return self.fc(F.flatten(self.pool(self.relu2(F.add(y, r, skip=1))), 1))


def _weights(seed=None):
    rng = np.random.default_rng(seed)
    return {"conv1.weight": rng.standard_normal((4, 4, 3, 3)) * 0.3, "conv1.bias": rng.standard_normal(4) * 0.1,
            "conv2.weight": rng.standard_normal((4, 4, 3, 3)) * 0.3, "conv2.bias": rng.standard_normal(4) * 0.1,
            "fc.weight": rng.standard_normal((3, 4)) * 0.5, "fc.bias": rng.standard_normal(3) * 0.1}


def _define(weights, precision="fp32", int8=None, skip=()):
    """The block's definition; `precision` may be a PrecisionPolicy (then it carries the INT8 settings)."""
    block = Block().load_weights({k: v.astype(np.float32) for k, v in weights.items()})
    if int8 is not None:
        int8.fp16 = tuple(skip)
    with Network("block", precision, int8=int8) as net:
        net.mark_output(block(net.add_input("input", (-1, 4, 6, 6))), "logits")
    return net


def _layers(net):
    return {net.definition.get_layer(i).name: net.definition.get_layer(i) for i in range(net.definition.num_layers)}


def _consumers(net, tensor_name):
    found = []
    for name, layer in _layers(net).items():
        for j in range(layer.num_inputs):
            t = layer.get_input(j)
            if t is not None and t.name == tensor_name:
                found.append((name, j))
    return sorted(found)


def _exact_on_most_draws(error, draws: int = 3) -> None:
    """`error(x)` (relative error of the INT8 definition against its float64 fake-quant reference on fresh inputs x)
    is float rounding on most draws: a value within float32 rounding of a step boundary may round one step apart in
    the executor and in float64 (~4e-3 once), never on most draws, and no wrong scale or placement stays that small."""
    errors = sorted(error() for _ in range(draws))
    assert errors[draws // 2] < 1e-5 and errors[-1] < 2e-2, errors


def _fake_quant(x: torch.Tensor, amax, axis=None) -> torch.Tensor:
    scale = torch.as_tensor(np.maximum(np.asarray(amax, np.float64), 1e-12) / 127, dtype=torch.float64)
    if axis is not None:
        shape = [1] * x.dim()
        shape[axis] = -1
        scale = scale.reshape(shape)
    return torch.clamp(torch.round(x / scale), -128, 127) * scale


AMAX = {"relu": 1.7, "relu1": 2.3, "relu2": 3.1, "pool": 0.9, "flatten": 1.1}


def test_fp32_records_what_int8_quantizes() -> None:
    fp32 = _define(_weights())
    assert fp32.quant.sites == {"relu": ["conv1", ""], "relu1": ["conv2"], "relu2": ["pool"], "flatten": ["fc"]}
    assert fp32.quant.weight_sites == ["conv1", "conv2", "fc"]
    assert fp32.quant.groups.groups() == [["flatten", "pool"]]  # a reshape shares its input's scale
    assert fp32.quant.calibration_names() == ["flatten", "pool", "relu", "relu1", "relu2"]
    types = {layer.type.name for layer in _layers(fp32).values()}
    assert not types & {"QUANTIZE", "DEQUANTIZE"}  # FP32 emits nothing


def test_int8_block_matches_fake_quant_reference_and_builds() -> None:
    """FP32 activations between the Q/DQ (the weakly typed 8.6 definition; strongly typed ones compute FP16)."""
    w = _weights()
    net = _define(w, PrecisionPolicy("int8", strongly_typed=False, int8=Int8Settings(dict(AMAX))))
    layers = _layers(net)
    # one shared Q/DQ for `relu` (conv1's input and the add's skip); weights per output channel on axis 0
    assert _consumers(net, "relu/dequantize") == [("add", 1), ("conv1", 0)]
    assert _consumers(net, "conv1/weight/dequantize") == [("conv1", 1)]
    assert _consumers(net, "fc/weight/dequantize") == [("fc/matmul", 1)]
    assert np.asarray(shim.downcast(layers["conv1"]).kernel).size == 0  # created with an empty kernel
    assert _consumers(net, "conv2") == [("add", 0)]  # the branch stays float: conv2 fuses the add
    assert _consumers(net, "fc/matmul") == [("fc", 0)]  # the bias add reads the float product
    assert net.meta["int8"]["activations"] == 4 and net.meta["int8"]["weights"] == 3
    def bias(name):
        return torch.from_numpy(w[name].astype(np.float32).astype(np.float64))

    def conv(t, name):
        k = w[f"{name}.weight"]
        kq = _fake_quant(torch.from_numpy(k), np.abs(k).reshape(4, -1).max(1), axis=0)
        return torch.nn.functional.conv2d(t, kq, bias(f"{name}.bias"), padding=1)

    def error() -> float:
        x = np.random.default_rng().standard_normal((2, 4, 6, 6)).astype(np.float32)
        got = execute(net.definition, {"input": x})["logits"].double()
        with torch.no_grad():
            rq = _fake_quant(torch.relu(torch.from_numpy(x).double()), AMAX["relu"])
            c2 = conv(_fake_quant(torch.relu(conv(rq, "conv1")), AMAX["relu1"]), "conv2")
            pool = _fake_quant(torch.relu(c2 + rq), AMAX["relu2"]).mean(dim=(2, 3))
            fw = w["fc.weight"].T
            group = max(AMAX["pool"], AMAX["flatten"])  # pool -> flatten: one scale group, the larger range
            want = _fake_quant(pool, group) @ _fake_quant(torch.from_numpy(fw), np.abs(fw).max(0), axis=1) \
                + bias("fc.bias")
        return float((got - want).norm() / want.norm())

    _exact_on_most_draws(error)
    x = np.random.default_rng().standard_normal((2, 4, 6, 6)).astype(np.float32)
    got = execute(net.definition, {"input": x})["logits"].double()
    plain = execute(_define(w).definition, {"input": x})["logits"].double()
    assert (plain - got).abs().max() > 0  # quantization is visible
    report = check_placement(net)
    assert report.requantized == [] and report.float_residuals == [] and len(report.int8_layers()) == 3
    assert len(net.build(BuildSettings(precision="int8", progress=False)).data) > 0


@pytest.mark.skipif(not STRONG, reason="FP16 compute dtype exists on strongly typed bindings only")
def test_strongly_typed_dequantize_gives_fp16_and_scales_stay_fp32() -> None:
    layers = _layers(_define(_weights(), "int8", Int8Settings(dict(AMAX))))
    assert layers["relu/dequantize"].get_output(0).dtype == trt.DataType.HALF
    assert layers["conv1/weight/dequantize"].get_output(0).dtype == trt.DataType.HALF
    assert layers["relu/scale"].get_output(0).dtype == trt.DataType.FLOAT
    assert tuple(layers["relu/scale"].get_output(0).shape) == ()  # per tensor: a scalar
    assert tuple(layers["conv1/weight/scale"].get_output(0).shape) == (4,)  # per output channel
    assert float(np.asarray(shim.downcast(layers["relu/scale"]).weights)[0]) == pytest.approx(1.7 / 127)


def test_skip_keeps_a_module_float_and_the_guard_keeps_fused_outputs_int8() -> None:
    """conv2 kept float: its input and kernel are not quantized, the add's skip still is. relu2 (after the fused
    INT8 conv2 + add in the full plan) is read by the average pool: skipping `pool` would leave that fused kernel
    ending in float, which TensorRT 8.6 cannot build, so the pool still reads relu2 through its Q/DQ."""
    net = _define(_weights(), "int8", Int8Settings(dict(AMAX)), skip=("conv2",))
    report = check_placement(net)
    assert {w.layer: (w.int8_input, w.int8_weights) for w in report.weighted} == \
        {"conv1": (True, True), "conv2": (False, False), "fc/matmul": (True, True)}
    assert report.dequantized_inputs("add") == [1] and net.meta["int8"]["guarded"] == []
    guarded = _define(_weights(), "int8", Int8Settings(dict(AMAX)), skip=("pool",))
    assert guarded.meta["int8"]["guarded"] == ["relu2"] and check_placement(guarded).float_residuals == []


def test_missing_amax_names_tensor_and_reader() -> None:
    with pytest.raises(CalibrationMissingError, match=r"relu1 \(read by conv2\).*Recalibrate"):
        _define(_weights(), "int8", Int8Settings({k: v for k, v in AMAX.items() if k != "relu1"}))
    with pytest.raises(ValueError, match="go with precision int8"):
        Network("x", "int8")


class Branches(nn.Module):
    """a = relu(x) read by conv_a and, with b = sigmoid(x), concatenated -> max pool -> conv_c; a head conv in an
    unquantized region; chained adds of two INT8 conv outputs and a skip."""

    def __init__(self) -> None:
        super().__init__()
        self.conv_a, self.conv_c, self.head = nn.Conv2d(4, 4, 1), nn.Conv2d(8, 4, 1), nn.Conv2d(4, 2, 1)
        self.pool = nn.MaxPool2d(2)

    def forward(self, x):
        a, b = F.relu(x, op="a"), F.sigmoid(x, op="b")
        c = self.conv_c(self.pool(F.concat([a, b], op="cat")))
        chain = F.add(F.add(self.conv_a(a), F.interpolate(c, scale_factor=2, op="up"), skip=1, op="sum1"), a, skip=1,
                      op="sum2")
        with current().unquantized():
            return self.head(chain)


def test_scale_groups_unquantized_regions_and_chained_adds() -> None:
    rng = np.random.default_rng(0)
    weights = {f"{m}.{p}": rng.standard_normal(shape).astype(np.float32) for m, c, k in
               (("conv_a", 4, 4), ("conv_c", 4, 8), ("head", 2, 4)) for p, shape in (("weight", (c, k, 1, 1)),
                                                                                      ("bias", (c,)))}

    def define(precision, int8=None):
        with Network("branches", precision, int8=int8) as net:
            net.mark_output(Branches().load_weights(weights)(net.add_input("input", (-1, 4, 8, 8))), "out")
        return net

    fp32 = define("fp32")
    assert fp32.quant.groups.groups() == [["a", "b", "cat", "pool"], ["conv_c", "up"]]
    names = fp32.quant.calibration_names()
    assert "head" not in str(fp32.quant.sites.values())  # the unquantized region records nothing
    int8 = define("int8", Int8Settings({n: 1.0 + 0.25 * i for i, n in enumerate(names)}))
    report = check_placement(int8)
    assert report.requantized == [] and report.same_scale("a", "pool")  # one scale for the whole group
    # sum1 = conv_a (INT8) + up: it ends a fused INT8 kernel, so sum2 reads it quantized, not only its skip a
    assert report.dequantized_inputs("sum2") == [0, 1] and report.float_residuals == []
    assert {w.layer: w.int8_input for w in report.weighted} == {"conv_c": True, "conv_a": True, "head": False}


class ActivatedShortcut(nn.Module):
    """Darknet's [shortcut] shape: x -> conv (+ leaky) = skip -> conv (+ leaky) = branch; branch + skip; and a
    linear conv's raw output added to a skip, where R3 (skip only) still applies."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.conv2, self.conv3 = nn.Conv2d(4, 4, 1), nn.Conv2d(4, 4, 3, padding=1), nn.Conv2d(4, 4, 1)

    def forward(self, x):
        skip = F.leaky_relu(self.conv1(x), 0.1, op="skip")
        y = F.add(F.leaky_relu(self.conv2(skip), 0.1, op="branch"), skip, skip=1, quantize_branch=True, op="add")
        return F.avg_pool2d(F.add(self.conv3(y), y, skip=1, quantize_branch=True, op="add2"), 2, op="pool")


def test_activated_branch_of_a_shortcut_is_quantized_in_the_skips_scale() -> None:
    """R3b: the add reads both inputs through Q/DQ, the branch in the skip's scale group (the branch conv fuses
    its activation and writes INT8; the add runs INT8); a raw conv branch stays float (R3). The executor matches
    a float64 fake-quant reference of exactly that."""
    rng = np.random.default_rng()
    w = {f"conv{i}.{p}": rng.standard_normal(shape).astype(np.float32) * g for i, k in ((1, 1), (2, 3), (3, 1))
         for p, shape, g in (("weight", (4, 4, k, k), 0.4), ("bias", (4,), 0.1))}

    def define(precision, int8=None):
        with Network("shortcut", precision, int8=int8) as net:
            net.mark_output(ActivatedShortcut().load_weights(w)(net.add_input("input", (-1, 4, 6, 6))), "out")
        return net

    fp32 = define("fp32")
    assert fp32.quant.groups.groups() == [["branch", "skip"]]
    amax = {"input": 1.0, "skip": 2.03, "branch": 3.07, "add": 4.11, "add2": 5.13}  # no two grids commensurable
    assert fp32.quant.calibration_names() == sorted(amax)
    int8 = define(PrecisionPolicy("int8", strongly_typed=False, int8=Int8Settings(dict(amax))))
    report = check_placement(int8)
    assert report.dequantized_inputs("add") == [0, 1] and report.dequantized_inputs("add2") == [1]
    assert report.same_scale("branch", "skip") and report.site("branch").readers == ["add:0"]
    assert report.requantized == [] and report.float_residuals == []
    def conv(t, i, pad=0):
        k = w[f"conv{i}.weight"]
        kq = _fake_quant(torch.from_numpy(k).double(), np.abs(k).reshape(4, -1).max(1), axis=0)
        return torch.nn.functional.conv2d(t, kq, torch.from_numpy(w[f"conv{i}.bias"]).double(), padding=pad)

    def leaky(t):
        return torch.nn.functional.leaky_relu(t, 0.1)

    def reference(x, branch_quantized):
        with torch.no_grad():
            skip = leaky(conv(_fake_quant(torch.from_numpy(x).double(), amax["input"]), 1))
            group = max(amax["skip"], amax["branch"]) if branch_quantized else amax["skip"]  # one scale for the pair
            branch = leaky(conv(_fake_quant(skip, group), 2, 1))
            y = (_fake_quant(branch, group) if branch_quantized else branch) + _fake_quant(skip, group)
            yq = _fake_quant(y, amax["add"])
            return torch.nn.functional.avg_pool2d(_fake_quant(conv(yq, 3) + yq, amax["add2"]), 2)

    def error(branch_quantized: bool = True) -> float:
        x = rng.random((2, 4, 6, 6)).astype(np.float32)
        got, want = execute(int8.definition, {"input": x})["out"].double(), reference(x, branch_quantized)
        return float((got - want).norm() / want.norm())

    _exact_on_most_draws(error)
    assert error(branch_quantized=False) > 1e-3  # R3's reference (the branch float) is not what was built
    with pytest.raises(ValueError, match="quantize_branch needs the skip"):
        with Network("bad", "fp32") as net:
            x = net.add_input("input", (-1, 4, 6, 6))
            F.add(x, F.relu(x), quantize_branch=True)


def test_conv_transpose_kernel_is_quantized_per_input_channel_and_builds() -> None:
    """TensorRT's deconvolution kernels take per-input-channel kernel scales (axis 0 of (in, out, kh, kw))."""
    rng = np.random.default_rng()
    w, x = rng.standard_normal((6, 4, 4, 4)).astype(np.float32) * 0.3, rng.random((2, 6, 5, 5)).astype(np.float32)
    deconv = nn.ConvTranspose2d(6, 4, 4, stride=2, padding=1, bias=False).load_weights({"weight": w})
    deconv.assign_paths("up")
    with Network("up", PrecisionPolicy("int8", strongly_typed=False, int8=Int8Settings({"input": 1.0}))) as net:
        net.mark_output(deconv(net.add_input("input", (-1, 6, 5, 5))), "y")
    layers = _layers(net)
    assert _consumers(net, "up/weight/dequantize") == [("up", 1)]
    assert tuple(layers["up/weight/scale"].get_output(0).shape) == (6,)
    assert shim.downcast(layers["up/weight/quantize"]).axis == 0
    got = execute(net.definition, {"input": x})["y"].double()
    kq = _fake_quant(torch.from_numpy(w).double(), np.abs(w).reshape(6, -1).max(1), axis=0)
    want = torch.nn.functional.conv_transpose2d(_fake_quant(torch.from_numpy(x).double(), 1.0), kq, stride=2, padding=1)
    assert float((got - want).norm() / want.norm()) < 1e-5
    assert check_placement(net).int8_layers() == ["up"]
    assert len(net.build(BuildSettings(precision="int8", progress=False)).data) > 0
