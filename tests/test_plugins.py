"""Custom layers: descriptions, the native lowering against the torch reference, the IPluginV3 adapter."""
from __future__ import annotations

import types

import numpy as np
import pytest
import torch

from netdef.verify import relative_error as rel_err
from netdef import trt as shim
from netdef.engine import BuildSettings, EngineFileError, Plan, load_engine, save_engine
from netdef.executor import execute
from netdef.module import Module
from netdef.network import Network
from netdef.plugins import (CustomLayer, CustomLayerError, CustomLayerNotFound, CustomModule, Field, apply_custom,
                            choose_lowering, reference_for_layer, register, register_for_engine, registry)
from netdef.plugins import v3_adapter
from netdef.plugins.builtin import ChannelShuffle, YoloLayer, yolo_decode_reference

trt = shim.binding()
FEAT = shim.features()
YOLO_FIELDS = dict(anchors=[12.0, 16.0, 19.0, 36.0, 40.0, 28.0], stride=8, classes=4, scale_x_y=1.05)


@register
class Tagged(CustomLayer):
    """A test layer with every field kind: y = x * gain + sum(offsets), label only travels."""

    name = "TestTagged"
    gain = Field(float)
    offsets = Field(list[float], [0.0])
    repeats = Field(list[int], [1, 2])
    label = Field(str, "")
    flag = Field(bool, False)
    count = Field(int, 3)

    def reference(self, fields, x):
        return x * fields.gain + sum(fields.offsets)


class Head(Module):
    def __init__(self, lowering=None, **fields):
        super().__init__()
        self.yolo = CustomModule(YoloLayer, lowering=lowering, **fields)

    def forward(self, x):
        return self.yolo(x)


def yolo_network(batch, fields, h=5, w=6, precision="fp32", lowering=None):
    count, classes = len(fields["anchors"]) // 2, fields["classes"]
    net = Network("yolo_head", precision)
    with net:
        head = Head(lowering, **fields).assign_paths()
        boxes, scores = head(net.add_input("input", (batch, count * (5 + classes), h, w)))
        net.mark_output(boxes, "boxes")
        net.mark_output(scores, "scores")
    return net


# --- descriptions ------------------------------------------------------------------------------------
def test_fields_report_every_problem_at_once():
    with pytest.raises(CustomLayerError) as err:
        YoloLayer().make_fields({"anchors": [1.0, 2.0], "stride": "8", "colour": 1})
    msg = str(err.value)
    assert "unknown field 'colour'" in msg and "missing field 'classes'" in msg and "'stride' expects int" in msg
    with pytest.raises(CustomLayerError, match="pairs"):
        YoloLayer().make_fields(dict(YOLO_FIELDS, anchors=[1.0, 2.0, 3.0]))
    fields = YoloLayer().make_fields(YOLO_FIELDS)
    assert fields.anchors == tuple(YOLO_FIELDS["anchors"]) and fields.new_coords is False
    assert fields.to_json()["anchors"] == YOLO_FIELDS["anchors"]


def test_registry_finds_builtins_and_refuses_a_second_class_with_the_same_name():
    assert isinstance(registry.find("YoloLayer"), YoloLayer)
    assert isinstance(registry.find("ChannelShuffle", "netdef", "1"), ChannelShuffle)

    class Impostor(CustomLayer):
        name = "YoloLayer"

        def reference(self, fields, x):
            return x

    with pytest.raises(CustomLayerError, match="already registered"):
        register(Impostor)


def test_auto_lowering_prefers_plugins_and_says_when_neither_works():
    with_plugins = types.SimpleNamespace(python_plugins=True, flavor="tensorrt", version="11.0")
    without = types.SimpleNamespace(python_plugins=False, flavor="tensorrt_rtx", version="1.7")
    assert choose_lowering(YoloLayer(), "auto", with_plugins) == "plugin"
    assert choose_lowering(YoloLayer(), "auto", without) == "native"
    with pytest.raises(CustomLayerError, match="cannot add Python plugin layers.*no native"):
        choose_lowering(Tagged(), "auto", without)
    with pytest.raises(CustomLayerError, match="no native"):
        choose_lowering(Tagged(), "native", with_plugins)
    with pytest.raises(CustomLayerError, match="lowering 'plugin' impossible"):
        choose_lowering(YoloLayer(), "plugin", without)


# --- native lowering == reference ----------------------------------------------------------------------
@pytest.mark.parametrize("new_coords,scale_x_y", [(False, 1.05), (False, 1.0), (True, 2.0)])
def test_yolo_native_executes_to_the_reference(new_coords, scale_x_y):
    fields = dict(YOLO_FIELDS, new_coords=new_coords, scale_x_y=scale_x_y)
    net = yolo_network(-1, fields)  # dynamic batch, as networks are built
    assert net.plugins == [] or FEAT.python_plugins  # auto went native where plugins are impossible
    rng = np.random.default_rng(7 + int(new_coords))
    x = rng.standard_normal((2, 3 * 9, 5, 6)).astype(np.float32) * 1.5
    if new_coords:  # Scaled-YOLOv4 heads end in a logistic activation
        x = 1 / (1 + np.exp(-x))
    out = execute(net.definition, {"input": x})
    boxes, scores = yolo_decode_reference(torch.from_numpy(x).double(), **fields)
    assert out["boxes"].shape == (2, 3 * 5 * 6, 4) and out["scores"].shape == (2, 3 * 5 * 6, 4)
    assert rel_err(out["boxes"], boxes) <= 1e-6
    assert rel_err(out["scores"], scores) <= 1e-6
    # a box is centred on its cell: anchor 1 of cell (row 2, col 3) in pixels, by hand
    t = x[0, 9:18, 2, 3].astype(np.float64)
    act = t if new_coords else 1 / (1 + np.exp(-t))
    cx = (act[0] * scale_x_y - (scale_x_y - 1) / 2 + 3) * 8
    bw = (4 * t[2] ** 2 if new_coords else np.exp(t[2])) * 19.0
    row = out["boxes"][0, 30 + 2 * 6 + 3].double().numpy()
    np.testing.assert_allclose([row[0], row[2]], [cx - bw / 2, cx + bw / 2], rtol=1e-5)


def test_verification_matches_a_multi_output_custom_module_by_path():
    from netdef.verify import verify_network

    class TorchHead(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.yolo = TorchYolo()

        def forward(self, x):
            return self.yolo(x)

    class TorchYolo(torch.nn.Module):
        def forward(self, x):
            return yolo_decode_reference(x, **YOLO_FIELDS)

    net = yolo_network(-1, YOLO_FIELDS)
    x = np.random.default_rng(4).standard_normal((1, 27, 5, 6)).astype(np.float32)
    report = verify_network(net, TorchHead(), x)
    assert report.ok, report.table()
    yolo = next(c for c in report.layers if c.name == "yolo")  # the module's first output: the boxes
    assert yolo.shape == (1, 90, 4) and yolo.rel <= 1e-6


def test_yolo_builds_with_dynamic_batch_in_fp32_and_fp16():
    for precision in ("fp32", "fp16"):
        net = yolo_network(-1, YOLO_FIELDS, precision=precision)
        plan = net.build(BuildSettings(precision=precision, batch=(1, 2, 4), progress=False))
        assert len(plan.data) > 0 and plan.meta["plugins"] == net.plugins
        out = {o["name"]: o for o in plan.meta["outputs"]}
        assert out["boxes"]["max"] == [4, 90, 4] and out["scores"]["shape"] == [-1, 90, 4]


def test_channel_shuffle_native_executes_to_the_reference():
    x = np.random.default_rng(3).standard_normal((2, 12, 3, 4)).astype(np.float32)
    with Network("shuffle") as net:
        y = apply_custom("ChannelShuffle", net.add_input("input", x.shape), {"groups": 3})
        net.mark_output(y, "output")
    out = execute(net.definition, {"input": x})["output"]
    ref = ChannelShuffle().reference(ChannelShuffle().make_fields({"groups": 3}), torch.from_numpy(x))
    torch.testing.assert_close(out, ref, rtol=0, atol=0)
    assert not torch.equal(ref, torch.from_numpy(x))  # the shuffle moved channels
    assert torch.equal(ref[:, 1], torch.from_numpy(x)[:, 4])  # output channel 1 = group 1, channel 0


def test_native_output_shape_is_checked_against_output_shapes():
    class Wrong(CustomLayer):
        name = "TestWrongShape"

        def output_shapes(self, shapes, fields):
            b, c, h, w = shapes[0]
            return [(b, c, h * 2, w)]

        def reference(self, fields, x):
            return x

        def native(self, net, fields, x):
            return x

    with Network("wrong") as net, pytest.raises(CustomLayerError, match=r"output_shapes\(\) says"):
        apply_custom(Wrong, net.add_input("input", (1, 2, 3, 4)), lowering="native")


# --- the plugin lowering ----------------------------------------------------------------------------------
def test_plugin_layers_build_where_the_binding_has_them():
    if not FEAT.python_plugins:
        pytest.skip(f"TensorRT binding {FEAT.flavor} {FEAT.version} cannot add plugin layers (no add_plugin_v3)")
    net = yolo_network(-1, YOLO_FIELDS, lowering="plugin")
    kinds = [net.definition.get_layer(i).type for i in range(net.definition.num_layers)]
    assert trt.LayerType.PLUGIN_V3 in kinds
    assert net.plugins == [{"namespace": "netdef", "name": "YoloLayer", "version": "1", "layer": "yolo",
                            "module": "netdef.plugins.builtin.yolo",
                            "fields": YoloLayer().make_fields(YOLO_FIELDS).to_json()}]
    x = np.random.default_rng(0).standard_normal((2, 27, 5, 6)).astype(np.float32)
    out = execute(net.definition, {"input": x})  # the plugin layer runs through reference_for_layer
    boxes, scores = yolo_decode_reference(torch.from_numpy(x).double(), **YOLO_FIELDS)
    assert rel_err(out["boxes"], boxes) <= 1e-6 and rel_err(out["scores"], scores) <= 1e-6
    plan = net.build(BuildSettings(batch=(1, 2, 4), progress=False))
    assert plan.meta["plugins"] == net.plugins


class PluginLayerStandIn:
    """What add_plugin_v3 returns, for a binding that has none (outputs: identity layers of the right shape)."""

    def __init__(self, definition, inputs, plugin):
        self.plugin, self.type, self.name = plugin, trt.LayerType.PLUGIN_V3, ""
        self.outputs = [definition.add_identity(inputs[0]).get_output(0) for _ in range(plugin.num_outputs)]
        self.num_outputs = len(self.outputs)

    def get_output(self, i):
        return self.outputs[i]


class DefinitionWithPluginLayers:
    """The real INetworkDefinition plus a stand-in add_plugin_v3."""

    def __init__(self, real):
        self.real, self.added = real, []

    def __getattr__(self, name):
        return getattr(self.real, name)

    def add_plugin_v3(self, inputs, shape_inputs, plugin):
        self.added.append(PluginLayerStandIn(self.real, inputs, plugin))
        return self.added[-1]


def test_auto_lowers_to_a_plugin_layer_and_records_it_where_plugins_exist():
    """The plugin path of lower() on a stand-in binding feature set (python_plugins=True)."""
    import dataclasses

    net = Network("shuffle_plugin")
    net.features = dataclasses.replace(net.features, python_plugins=True, plugin_v3_layers=True)
    net.definition = DefinitionWithPluginLayers(net.definition)
    with net:
        with net.scope("stage2.shuffle"):
            y = apply_custom(ChannelShuffle, net.add_input("input", (-1, 6, 2, 2)), {"groups": 2})
    (layer,) = net.definition.added
    assert layer.name == "stage2.shuffle" and y.name == "stage2.shuffle"
    assert layer.plugin.phase == trt.TensorRTPhase.BUILD and layer.plugin.netdef_fields == {"groups": 2}
    assert net.plugins == [{"namespace": "netdef", "name": "ChannelShuffle", "version": "1", "fields": {"groups": 2},
                            "module": "netdef.plugins.builtin.shuffle", "layer": "stage2.shuffle"}]
    assert trt.get_plugin_registry().get_creator("ChannelShuffle", "1", "netdef") is not None
    x = torch.arange(24, dtype=torch.float32).reshape(1, 6, 2, 2)
    (out,) = reference_for_layer(layer)(x)
    assert out[0, :, 0, 0].tolist() == [0.0, 12.0, 4.0, 16.0, 8.0, 20.0]


def test_creator_registers_and_rebuilds_an_identical_plugin_from_serialized_fields():
    creator = v3_adapter.ensure_creator(registry.find("TestTagged"))
    assert trt.get_plugin_registry().get_creator("TestTagged", "1", "netdef") is creator
    assert [f.name for f in creator.field_names] == ["gain", "offsets", "repeats", "label", "flag", "count"]
    desc = creator.netdef_layer
    fields = desc.make_fields(dict(gain=0.1, offsets=[1.0 / 3.0, -2.5e-8], repeats=[4, -5, 6], label="héllo",
                                   flag=True, count=7))
    built = creator.create_plugin("a", v3_adapter.encode_fields(desc, fields), trt.TensorRTPhase.BUILD)
    again = creator.create_plugin("b", built.get_fields_to_serialize(), trt.TensorRTPhase.RUNTIME)
    assert again.netdef_fields == fields  # exact: floats travel as FLOAT64
    assert (again.plugin_name, again.plugin_namespace, again.plugin_version) == ("TestTagged", "netdef", "1")
    assert isinstance(again.clone(), v3_adapter.plugin_class()) and again.clone().netdef_fields == fields
    bad = trt.PluginFieldCollection([trt.PluginField("gain", np.array([1.0]), trt.PluginFieldType.FLOAT64),
                                     trt.PluginField("bogus", np.array([1], np.int32), trt.PluginFieldType.INT32)])
    with pytest.raises(CustomLayerError, match="plugin layer 'c'.*unknown field 'bogus'"):
        creator.create_plugin("c", bad, trt.TensorRTPhase.RUNTIME)


class FakeExpr:
    """A dimension expression stand-in (TensorRT makes the real ones only inside a build)."""

    def __init__(self, value=None, text=None):
        self.value, self.text = value, text or str(value)

    def is_constant(self):
        return self.value is not None

    def get_constant_value(self):
        return self.value


class FakeExprBuilder:
    def constant(self, v):
        return FakeExpr(v)

    def operation(self, op, a, b):
        if a.is_constant() and b.is_constant():
            return FakeExpr({"SUM": a.value + b.value, "PROD": a.value * b.value}[op.name])
        return FakeExpr(text=f"({a.text} {op.name} {b.text})")


def test_plugin_answers_output_shapes_and_dtypes():
    yolo = v3_adapter.make_plugin(registry.find("YoloLayer"), YoloLayer().make_fields(YOLO_FIELDS))
    shapes = v3_adapter.symbolic_output_shapes(yolo.netdef_layer, yolo.netdef_fields,
                                               [[FakeExpr(text="B"), FakeExpr(27), FakeExpr(13), FakeExpr(13)]],
                                               FakeExprBuilder())
    assert [[e.text for e in s] for s in shapes] == [["B", "507", "4"], ["B", "507", "4"]]
    dyn = v3_adapter.symbolic_output_shapes(yolo.netdef_layer, yolo.netdef_fields,
                                            [[FakeExpr(2), FakeExpr(27), FakeExpr(text="H"), FakeExpr(13)]],
                                            FakeExprBuilder())
    assert dyn[0][1].text == "((H PROD 13) PROD 3)"
    assert yolo.get_output_data_types([trt.DataType.HALF]) == [trt.DataType.FLOAT] * 2
    assert yolo.num_outputs == 2
    shuffle = v3_adapter.make_plugin(registry.find("ChannelShuffle"), ChannelShuffle().make_fields({"groups": 2}))
    assert shuffle.get_output_data_types([trt.DataType.HALF]) == [trt.DataType.HALF]

    def descs(*types_):
        out = []
        for t in types_:
            d = trt.DynamicPluginTensorDesc()
            d.desc.type = t
            out.append(d)
        return out

    F, H = trt.DataType.FLOAT, trt.DataType.HALF
    assert yolo.supports_format_combination(0, descs(H, F, F), 1)
    assert yolo.supports_format_combination(1, descs(H, F, F), 1)
    assert not yolo.supports_format_combination(2, descs(H, F, H), 1)
    assert not shuffle.supports_format_combination(1, descs(H, F), 1)
    assert not shuffle.supports_format_combination(0, descs(trt.DataType.INT32, F), 1)


def test_enqueue_runs_the_reference_in_place_on_the_given_buffers():
    """The enqueue body on host memory: TensorRT's pointers wrapped without copies, outputs written in place."""
    yolo = v3_adapter.make_plugin(registry.find("YoloLayer"), YoloLayer().make_fields(YOLO_FIELDS))
    x = np.random.default_rng(5).standard_normal((1, 27, 4, 4)).astype(np.float32)
    boxes, scores = np.zeros((1, 48, 4), np.float32), np.zeros((1, 48, 4), np.float32)

    def desc(a):
        d = trt.PluginTensorDesc()
        d.dims, d.type = trt.Dims(a.shape), trt.DataType.FLOAT
        return d

    def host_tensor(ptr, shape, dtype):
        for a in (x, boxes, scores):
            if a.ctypes.data == ptr:
                return torch.from_numpy(a)  # shares memory, as torch.as_tensor does on the device
        raise AssertionError("unknown pointer")

    v3_adapter.run_reference(yolo.netdef_layer, yolo.netdef_fields, [desc(x)], [desc(boxes), desc(scores)],
                             [x.ctypes.data], [boxes.ctypes.data, scores.ctypes.data], 0,
                             wrap=host_tensor, stream_scope=lambda s: __import__("contextlib").nullcontext())
    ref_boxes, ref_scores = yolo_decode_reference(torch.from_numpy(x), **YOLO_FIELDS)
    torch.testing.assert_close(torch.from_numpy(boxes), ref_boxes)
    torch.testing.assert_close(torch.from_numpy(scores), ref_scores)
    assert v3_adapter.CudaBuffer(1234, (2, 3), np.float16).__cuda_array_interface__["typestr"] == "<f2"


# --- the executor's view and engine loading ------------------------------------------------------------
def test_reference_for_layer_reads_fields_back_from_the_plugin():
    desc = registry.find("TestTagged")
    fields = desc.make_fields({"gain": 2.0, "offsets": [0.5, 0.25]})
    ours = types.SimpleNamespace(name="t", type=trt.LayerType.PLUGIN_V3, plugin=v3_adapter.make_plugin(desc, fields))
    x = torch.randn(2, 3, dtype=torch.float64)
    (y,) = reference_for_layer(ours)(x)
    torch.testing.assert_close(y, x * 2.0 + 0.75)

    class Foreign:  # an IPluginV3 that is not the netdef adapter object: name + serialized fields only
        plugin_name, plugin_namespace, plugin_version = "TestTagged", "netdef", "1"

        def get_capability_interface(self, kind):
            return self

        def get_fields_to_serialize(self):
            return v3_adapter.encode_fields(desc, fields)

    (y2,) = reference_for_layer(types.SimpleNamespace(name="f", type=trt.LayerType.PLUGIN_V3, plugin=Foreign()))(x)
    torch.testing.assert_close(y2, y)
    Foreign.plugin_name = "SomeoneElsesPlugin"
    with pytest.raises(CustomLayerError, match="layer 'g'.*SomeoneElsesPlugin.*not a registered netdef custom layer"):
        reference_for_layer(types.SimpleNamespace(name="g", type=trt.LayerType.PLUGIN_V3, plugin=Foreign()))


def test_loading_an_engine_registers_its_plugins_first_or_names_the_missing_one(tmp_path):
    known = {"namespace": "netdef", "name": "TestTagged", "version": "1", "fields": {"gain": 1.0},
             "module": __name__, "layer": "head.tag"}
    assert [d.name for d in register_for_engine([known])] == ["TestTagged"]
    assert trt.get_plugin_registry().get_creator("TestTagged", "1", "netdef") is not None

    missing = dict(known, name="Reorg3000", module="no_such_module_for_netdef")
    save_engine(Plan(b"not really a plan", {"plugins": [missing]}), tmp_path / "m.engine")
    with pytest.raises(CustomLayerNotFound, match=r"netdef::Reorg3000 v1 \(layer 'head.tag'\).*--plugin MODULE.*"
                                                  r"no_such_module"):
        load_engine(tmp_path / "m.engine", register_plugins=register_for_engine)
    save_engine(Plan(b"not really a plan", {"plugins": [known]}), tmp_path / "k.engine")
    with pytest.raises(EngineFileError, match="could not deserialize"):  # got past plugin registration
        load_engine(tmp_path / "k.engine", register_plugins=register_for_engine)
    with pytest.raises(EngineFileError, match=r"uses custom layers \(TestTagged\): pass register_plugins="):
        load_engine(tmp_path / "k.engine")  # netdef.engine never reaches into netdef.plugins itself
