"""Q/DQ on raw INetworkDefinitions: the executor's INT8 semantics bit for bit, placement, skip, build."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from netdef import trt as shim
from netdef.engine import BuildSettings, build_engine, create_builder, create_network
from netdef.executor import execute
from netdef.quantize import CalibrationMissingError, insert_qdq, plan_qdq

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
    data = rng.standard_normal((3, 4, 5, 6)).astype(np.float32) * 8  # some beyond +-127 steps: clamped
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


def _block_definition(dtype=np.float32):
    """input -> relu -> conv1 -> relu1 -> conv2 ; add(conv2, relu) -> pool -> fc (matmul + bias) -> softmax."""
    rng = np.random.default_rng()
    keep = Keep()
    net = create_network(create_builder())
    net.name = "block"
    trt_dt = trt.DataType.HALF if dtype == np.float16 else trt.DataType.FLOAT
    x = net.add_input("input", trt.DataType.FLOAT, (-1, 4, 6, 6))
    if trt_dt != trt.DataType.FLOAT:
        x = _named(net.add_cast(x, trt_dt), "input/to_compute")
    relu = _named(net.add_activation(x, trt.ActivationType.RELU), "relu")
    weights = {}

    def conv(inp, name):
        w = rng.standard_normal((4, 4, 3, 3)).astype(dtype) * 0.3
        b = rng.standard_normal(4).astype(dtype) * 0.1
        weights[name] = (w.astype(np.float64), b.astype(np.float64))
        layer = net.add_convolution_nd(inp, 4, (3, 3), trt.Weights(keep(w)), trt.Weights(keep(b)))
        layer.padding_nd = (1, 1)
        return _named(layer, name)

    c1 = conv(relu, "conv1")
    r1 = _named(net.add_activation(c1, trt.ActivationType.RELU), "relu1")
    c2 = conv(r1, "conv2")
    add = _named(net.add_elementwise(c2, relu, trt.ElementWiseOperation.SUM), "add")
    pool = _named(net.add_reduce(add, trt.ReduceOperation.AVG, 0b1100, False), "pool")
    fw = (rng.standard_normal((4, 3)) * 0.5).astype(dtype)
    weights["fc"] = (fw.astype(np.float64), None)
    mm = _named(net.add_matrix_multiply(pool, trt.MatrixOperation.NONE, _const(net, keep, fw, "fc.weight"),
                                        trt.MatrixOperation.NONE), "fc")
    fb = _const(net, keep, np.full((1, 3), 0.25, dtype), "fc.bias")
    logits = _named(net.add_elementwise(mm, fb, trt.ElementWiseOperation.SUM), "fc/add")
    soft = net.add_softmax(logits)
    soft.axes = 1 << 1
    out = _named(soft, "softmax")
    if trt_dt != trt.DataType.FLOAT:
        out = _named(net.add_cast(out, trt.DataType.FLOAT), "output/cast")
    out.name = "probs"
    net.mark_output(out)
    return net, keep, weights


def _consumers(net, tensor_name):
    found = []
    for i in range(net.num_layers):
        layer = net.get_layer(i)
        for j in range(layer.num_inputs):
            t = layer.get_input(j)
            if t is not None and t.name == tensor_name:
                found.append((layer.name, j))
    return found


def test_plan_sites_and_skip() -> None:
    net, _, _ = _block_definition()
    plan = plan_qdq(net)
    sites = {(s.layer, s.input_index, s.tensor, s.kind) for s in plan.sites}
    assert sites == {("conv1", 0, "relu", "activation"), ("conv1", 1, "conv1", "weight"),
                     ("conv2", 0, "relu1", "activation"), ("conv2", 1, "conv2", "weight"),
                     ("add", 1, "relu", "activation"),  # the shortcut, so the add fuses into conv2
                     ("fc", 0, "pool", "activation"), ("fc", 1, "fc.weight", "weight")}
    assert plan.activation_tensors == ["pool", "relu", "relu1"]  # no bias add, no softmax
    skipped = plan_qdq(net, skip=("conv2", "fc"))
    assert {s.layer for s in skipped.sites} == {"conv1"}  # a float conv2: its residual add stays float too


def test_average_pooling_input_is_quantized_max_pooling_is_not() -> None:
    """ResNet's global pool reads an INT8 tensor, so the last conv + residual add can end in INT8 (TensorRT
    8.6 on the H100 rejects that fusion with a float output); max pooling commutes with Q/DQ: no site."""
    net = create_network(create_builder())
    x = net.add_input("input", trt.DataType.FLOAT, (-1, 4, 8, 8))
    relu = _named(net.add_activation(x, trt.ActivationType.RELU), "relu")
    mx = _named(net.add_pooling_nd(relu, trt.PoolingType.MAX, (2, 2)), "maxpool")
    avg = _named(net.add_pooling_nd(mx, trt.PoolingType.AVERAGE, (4, 4)), "avgpool")
    net.mark_output(avg)
    sites = {(s.layer, s.input_index, s.tensor, s.kind) for s in plan_qdq(net).sites}
    assert sites == {("avgpool", 0, "maxpool", "activation")}
    assert plan_qdq(net, skip=("avgpool",)).sites == []


def test_missing_amax_names_tensor_and_layer() -> None:
    net, keep, _ = _block_definition()
    with pytest.raises(CalibrationMissingError, match=r"relu1 \(feeds conv2\).*Recalibrate"):
        insert_qdq(net, {"relu": 1.0, "pool": 1.0}, np.float32, keep)


def _fake_quant(x: torch.Tensor, amax, axis=None) -> torch.Tensor:
    scale = torch.as_tensor(np.maximum(np.asarray(amax, np.float64), 1e-12) / 127, dtype=torch.float64)
    if axis is not None:
        shape = [1] * x.dim()
        shape[axis] = -1
        scale = scale.reshape(shape)
    return torch.clamp(torch.round(x / scale), -128, 127) * scale


def test_qdq_definition_matches_fake_quant_reference_and_builds() -> None:
    net, keep, w = _block_definition()
    amax = {"relu": 1.7, "relu1": 2.3, "pool": 0.9}
    insert_qdq(net, amax, np.float32, keep)
    # one shared Q/DQ for `relu` (conv1's input and the shortcut); weights per output channel on axis 0
    assert sorted(_consumers(net, "relu/dequantize")) == [("add", 1), ("conv1", 0)]
    assert _consumers(net, "conv1/weight/dequantize") == [("conv1", 1)]
    assert _consumers(net, "fc.weight/dequantize") == [("fc", 1)]
    assert _consumers(net, "conv1") == [("relu1", 0)]  # the quantized conv took over name and consumers
    assert _consumers(net, "fc/add") == [("softmax", 0)]
    x = np.random.default_rng().standard_normal((2, 4, 6, 6)).astype(np.float32)
    got = execute(net, {"input": x})["probs"].double()

    def conv(t, name):
        k, b = w[name]
        kq = _fake_quant(torch.from_numpy(k), np.abs(k).reshape(4, -1).max(1), axis=0)
        return torch.nn.functional.conv2d(t, kq, torch.from_numpy(b), padding=1)

    with torch.no_grad():
        r = torch.relu(torch.from_numpy(x).double())
        rq = _fake_quant(r, amax["relu"])
        c2 = conv(_fake_quant(torch.relu(conv(rq, "conv1")), amax["relu1"]), "conv2")
        pool = (c2 + rq).mean(dim=(2, 3))
        fw = torch.from_numpy(w["fc"][0])
        logits = _fake_quant(pool, amax["pool"]) @ _fake_quant(fw, np.abs(w["fc"][0]).max(0), axis=1) + 0.25
        want = torch.softmax(logits, dim=1)
    rel = (got - want).norm() / want.norm()
    assert rel < 1e-5
    plain, _, _ = _block_definition()
    assert (execute(plain, {"input": x})["probs"].double() - got).abs().max() > 0  # quantization is visible
    plan = build_engine(net, BuildSettings(precision="int8", progress=False), None, {})
    assert len(plan.data) > 0


@pytest.mark.skipif(not STRONG, reason="FP16 compute dtype exists on strongly typed bindings only")
def test_fp16_definition_gets_fp16_dequantize_and_canonical_names() -> None:
    net, keep, _ = _block_definition(np.float16)
    plan = plan_qdq(net)
    assert ("conv1", 0, "relu", "activation") in {(s.layer, s.input_index, s.tensor, s.kind) for s in plan.sites}
    insert_qdq(net, {"relu": 1.7, "relu1": 2.3, "pool": 0.9}, np.float16, keep)
    names = {net.get_layer(i).name: net.get_layer(i) for i in range(net.num_layers)}
    assert names["relu/dequantize"].get_output(0).dtype == trt.DataType.HALF
    assert names["relu/scale"].get_output(0).dtype == trt.DataType.FLOAT
    assert tuple(names["relu/scale"].get_output(0).shape) == ()  # per tensor: a scalar scale
    assert tuple(names["conv1/weight/scale"].get_output(0).shape) == (4,)  # per output channel
    plan = build_engine(net, BuildSettings(precision="int8", progress=False), None, {})
    assert len(plan.data) > 0
