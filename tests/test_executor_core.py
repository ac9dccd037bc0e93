"""Executor mechanics (ordering, dtypes, batch, keep/observer, errors) and the ONNX cross-check."""
from __future__ import annotations

import io
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from netdef import trt as shim
from netdef.engine import create_builder, create_network
from netdef.executor import ExecutorError, compile, execute
from tests.test_executor_layers import OneLayer, randn, rel_err, t64

trt = shim.binding()


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(99)


def test_layers_added_out_of_order_run_after_their_producers(rng):
    """A post-pass re-wires a layer to a tensor made by a layer added after it."""
    g = OneLayer()
    x = randn(rng, 2, 3, 4)
    tx = g.input("x", x)
    relu = g.net.add_activation(tx, trt.ActivationType.RELU)
    late = g.net.add_unary(tx, trt.UnaryOperation.NEG)  # added later, consumed by the earlier relu
    relu.set_input(0, late.get_output(0))
    (out,) = g.run(relu.get_output(0))
    assert rel_err(out, torch.relu(-t64(x))) < 1e-12


def test_dynamic_batch_and_reuse_of_compiled_executor(rng):
    g = OneLayer()
    w = randn(rng, 4, 3, 3, 3)
    conv = g.net.add_convolution_nd(g.input("x", randn(rng, 1, 3, 6, 6)), 4, (3, 3), g.weights(w),
                                    trt.Weights(trt.DataType.FLOAT))
    conv.get_output(0).name = "y"
    g.net.mark_output(conv.get_output(0))
    run = compile(g.net, dtype=torch.float64)
    for batch in (1, 5):
        x = randn(rng, batch, 3, 6, 6)
        out = run({"x": x})["y"]
        assert out.shape[0] == batch and rel_err(out, F.conv2d(t64(x), t64(w))) < 1e-12


def test_fp16_layers_round_to_half(rng):
    """A HALF conv: weights, input and output are FP16, so the FP16 rounding error is visible."""
    g = OneLayer()
    x, w = randn(rng, 2, 8, 7, 7), randn(rng, 8, 8, 3, 3)
    tx = g.net.add_cast(g.input("x", x), trt.DataType.HALF).get_output(0)
    conv = g.net.add_convolution_nd(tx, 8, (3, 3), g.weights(w.astype(np.float16)), trt.Weights(trt.DataType.HALF))
    back = g.net.add_cast(conv.get_output(0), trt.DataType.FLOAT).get_output(0)
    (out, half) = g.run(back, conv.get_output(0), dtype=torch.float32)
    assert half.dtype == torch.float16 and out.dtype == torch.float32
    xh, wh = t64(x.astype(np.float16)), t64(w.astype(np.float16))
    expected = F.conv2d(xh, wh)
    assert torch.equal(half, expected.half())  # computed from FP16 operands, rounded once to FP16
    assert 1e-5 < rel_err(out, F.conv2d(t64(x), t64(w))) < 5e-3


def test_keep_all_and_observer_see_every_tensor(rng):
    g = OneLayer()
    x = randn(rng, 1, 4)
    a = g.net.add_activation(g.input("x", x), trt.ActivationType.SIGMOID)
    a.get_output(0).name = "hidden"
    b = g.net.add_unary(a.get_output(0), trt.UnaryOperation.EXP)
    b.get_output(0).name = "out"
    g.net.mark_output(b.get_output(0))
    seen: dict[str, torch.Tensor] = {}
    result = execute(g.net, g.feeds, keep="all", observer=lambda n, t: seen.setdefault(n, t))
    assert set(result) == {"x", "hidden", "out"} == set(seen)
    assert set(execute(g.net, g.feeds, keep=["hidden"])) == {"hidden", "out"}
    with pytest.raises(ExecutorError, match="nope"):
        execute(g.net, g.feeds, keep=["nope"])


def test_inplace_only_where_no_one_else_sees_the_input(rng):
    """conv -> relu runs in place; a conv output with a second (view) consumer, a constant and a kept
    tensor are never overwritten; results equal the out-of-place run (observer on) and repeat exactly."""
    g = OneLayer()
    x, w = randn(rng, 2, 3, 5, 5), randn(rng, 4, 3, 3, 3)
    tx = g.input("x", x)
    conv_a = g.net.add_convolution_nd(tx, 4, (3, 3), g.weights(w), trt.Weights(trt.DataType.FLOAT)).get_output(0)
    relu_a = g.net.add_activation(conv_a, trt.ActivationType.RELU).get_output(0)  # only consumer: in place
    conv_b = g.net.add_convolution_nd(tx, 4, (3, 3), g.weights(w), trt.Weights(trt.DataType.FLOAT)).get_output(0)
    view_b = g.net.add_shuffle(conv_b)
    view_b.reshape_dims = (0, -1)
    relu_b = g.net.add_activation(conv_b, trt.ActivationType.RELU).get_output(0)  # conv_b is also viewed
    c = randn(rng, 1, 4, 3, 3)
    relu_c = g.net.add_activation(g.constant(c), trt.ActivationType.RELU).get_output(0)  # a constant
    total = g.net.add_elementwise(relu_a, relu_c, trt.ElementWiseOperation.SUM).get_output(0)
    outputs = [total, view_b.get_output(0), relu_b]
    for i, t in enumerate(outputs):
        t.name = f"out{i}"
        g.net.mark_output(t)
    run = compile(g.net, dtype=torch.float64)
    by_type = {}
    for step in run.steps:
        by_type.setdefault(step.type_name, []).append(step.run_inplace is not None)
    assert by_type["ACTIVATION"] == [True, False, False] and by_type["ELEMENTWISE"] == [True]
    first, again = run(g.feeds), run(g.feeds)
    observed = run(g.feeds, observer=lambda n, t: None)  # an observer turns in-place off
    conv = F.conv2d(t64(x), t64(w))
    expected = [torch.relu(conv) + torch.relu(t64(c)), conv.reshape(2, -1), torch.relu(conv)]
    for i, ref in enumerate(expected):
        assert rel_err(first[f"out{i}"], ref) < 1e-12
        assert torch.equal(first[f"out{i}"], again[f"out{i}"]) and torch.equal(first[f"out{i}"], observed[f"out{i}"])


def test_bad_inputs_are_named(rng):
    g = OneLayer()
    tx = g.input("image", randn(rng, 1, 3, 4, 4))
    g.net.mark_output(g.net.add_activation(tx, trt.ActivationType.RELU).get_output(0))
    with pytest.raises(ExecutorError, match=r"input 'image': shape \(1, 2, 4, 4\)"):
        execute(g.net, {"image": np.zeros((1, 2, 4, 4), np.float32)})
    with pytest.raises(ExecutorError, match=r"missing \['image'\]"):
        execute(g.net, {"img": np.zeros((1, 3, 4, 4), np.float32)})


def test_runtime_failure_names_layer_and_inputs(rng):
    g = OneLayer()
    a, b = g.input("a", randn(rng, 2, 3)), g.input("b", randn(rng, 2, 3))
    layer = g.net.add_matrix_multiply(a, trt.MatrixOperation.NONE, b, trt.MatrixOperation.NONE)
    layer.name = "head.matmul"
    g.feeds = {"a": randn(rng, 2, 3), "b": randn(rng, 2, 3)}  # (2,3) x (2,3) cannot multiply
    with pytest.raises(ExecutorError, match=r"head\.matmul.*MATRIX_MULTIPLY.*'a' \(2, 3\)"):
        g.run(layer.get_output(0))


def test_assertion_layer_fails_execution_with_its_message():
    g = OneLayer()
    x = np.array([[1.0, 2.0]], np.float32)
    tx = g.input("x", x)
    zero = g.constant(np.zeros((1, 2), np.float32))
    positive = g.net.add_elementwise(tx, zero, trt.ElementWiseOperation.GREATER).get_output(0)
    g.net.add_assertion(positive, "x must be positive").name = "check"
    (out,) = g.run(g.net.add_activation(tx, trt.ActivationType.RELU).get_output(0))
    assert out.tolist() == [[1.0, 2.0]]
    with pytest.raises(ExecutorError, match=r"'check' \(ASSERTION\).*x must be positive"):
        execute(g.net, {"x": -x})


# --- ONNX cross-check: a network netdef did not build -----------------------------------------------------------

def _onnx_definition(model: torch.nn.Module, x: torch.Tensor,
                     outputs: tuple[str, ...] = ("logits",)) -> tuple[object, object]:
    buf = io.BytesIO()
    dynamic = {name: {0: "batch"} for name in ("input",) + outputs}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (x,), buf, dynamo=False, input_names=["input"], output_names=list(outputs),
                          dynamic_axes=dynamic, opset_version=17)
    builder = create_builder()
    network = create_network(builder)
    parser = trt.OnnxParser(network, shim.logger())
    assert parser.parse(buf.getvalue()), [str(parser.get_error(i)) for i in range(parser.num_errors)]
    return builder, network


@pytest.mark.slow
def test_onnx_parsed_resnet50_matches_pytorch():
    from networks.resnet import random_bn_init, resnet50_reference

    torch.manual_seed(0)
    model = random_bn_init(resnet50_reference(seed=0), seed=1).eval()
    x = torch.randn(1, 3, 64, 64)
    _builder, network = _onnx_definition(model, x)
    types = {network.get_layer(i).type.name for i in range(network.num_layers)}
    assert {"CONVOLUTION", "POOLING", "ELEMENTWISE", "ACTIVATION", "MATRIX_MULTIPLY"} <= types
    out = execute(network, {"input": x.numpy()})["logits"]
    with torch.no_grad():
        ref = model.double()(x.double())
    assert out.dtype == torch.float32
    assert rel_err(out, ref) <= 1e-5


@pytest.mark.slow
def test_onnx_parsed_yolov4_sized_network_matches_pytorch():
    """YOLOv4's full layer structure (162 layers, narrow channels): mish, SPP maxpools, routes, upsample, decode."""
    from networks.darknet import plan, reference_module
    from networks.resnet import random_bn_init
    from weights_export.darknet_synth import yolov4_cfg
    from netdef.darknet_cfg import parse_cfg

    torch.manual_seed(0)
    cfg = parse_cfg(yolov4_cfg(width=128, height=128, width_div=8, classes=3))
    model = random_bn_init(reference_module(plan(cfg)), seed=2).eval()
    x = torch.rand(2, 3, 128, 128)
    _builder, network = _onnx_definition(model, x, ("boxes", "scores"))
    types = {network.get_layer(i).type.name for i in range(network.num_layers)}
    assert {"RESIZE", "SLICE", "GATHER", "SHAPE", "UNSQUEEZE", "POOLING"} <= types
    out = execute(network, {"input": x.numpy()})
    with torch.no_grad():
        boxes, scores = model.double()(x.double())
    assert rel_err(out["boxes"], boxes) <= 1e-5 and rel_err(out["scores"], scores) <= 1e-5


def _fake_plugin_definition():
    """A one-layer definition with a PLUGIN_V3 layer (TensorRT-RTX cannot add plugin layers at all)."""
    from types import SimpleNamespace as NS

    x = NS(name="x", shape=(-1, 4), dtype=NS(name="FLOAT"))
    y = NS(name="y", shape=(-1, 4), dtype=NS(name="FLOAT"))
    layer = NS(name="head.custom", type=NS(name="PLUGIN_V3"), num_inputs=1, num_outputs=1,
               get_input=lambda i: x, get_output=lambda i: y)
    return NS(num_inputs=1, get_input=lambda i: x, num_outputs=1, get_output=lambda i: y, num_layers=1,
              get_layer=lambda i: layer)


def test_plugin_layers_run_through_the_plugin_registry_reference(monkeypatch, rng):
    import netdef.plugins

    seen = []

    def reference_for_layer(layer):
        seen.append(layer.name)
        return lambda *xs: [xs[0] * 2 + 1]

    monkeypatch.setattr(netdef.plugins, "reference_for_layer", reference_for_layer)
    x = randn(rng, 3, 4)
    out = execute(_fake_plugin_definition(), {"x": x}, dtype=torch.float64)["y"]
    assert seen == ["head.custom"] and rel_err(out, t64(x) * 2 + 1) < 1e-15


def test_plugin_without_reference_is_unsupported(monkeypatch, rng):
    import netdef.plugins
    from netdef.executor import UnsupportedLayerError

    def reference_for_layer(layer):
        raise ValueError("not a netdef custom layer")

    monkeypatch.setattr(netdef.plugins, "reference_for_layer", reference_for_layer)
    with pytest.raises(UnsupportedLayerError, match=r"head\.custom.*PLUGIN_V3.*not a netdef custom layer"):
        execute(_fake_plugin_definition(), {"x": randn(rng, 3, 4)})
