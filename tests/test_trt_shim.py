"""The TensorRT shim: binding choice, feature probes for every generation, logger bridge."""
from __future__ import annotations

import logging

import pytest

from netdef import trt as shim
from netdef.engine import weak_precision_flag_names
from tests.fake_trt import make_module


def test_installed_binding_is_rtx_and_strongly_typed():
    feat = shim.features()
    assert (feat.flavor, feat.version) == ("tensorrt_rtx", "1.7.1.116")
    assert feat.typing == "strong" and not feat.explicit_batch_flag
    assert feat.progress_monitor and feat.nms_layer and feat.quantize_layers
    assert not feat.python_plugins  # RTX 1.7's network API has no plugin layers
    assert shim.network_creation_flags(feat, shim.binding()) == 1 << int(
        shim.binding().NetworkDefinitionCreationFlag.STRONGLY_TYPED)


def test_tensorrt_8_6_is_weakly_typed_with_explicit_batch():
    mod = make_module("8.6")
    feat = shim.probe(mod)
    assert feat.typing == "weak" and feat.explicit_batch_flag
    assert feat.fp16_builder_flag and feat.int8_builder_flag and feat.precision_constraints
    assert feat.plugin_v2_layers and not feat.plugin_v3_layers and not feat.python_plugins
    assert not feat.progress_monitor
    assert shim.network_creation_flags(feat, mod) == 1 << int(mod.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)


def test_tensorrt_11_is_strongly_typed_with_python_plugins():
    mod = make_module("11")
    feat = shim.probe(mod)
    assert feat.typing == "strong" and not feat.explicit_batch_flag
    assert feat.python_plugins and feat.progress_monitor
    assert not feat.fp16_builder_flag and not feat.int8_builder_flag
    assert shim.network_creation_flags(feat, mod) == 1 << int(mod.NetworkDefinitionCreationFlag.STRONGLY_TYPED)


@pytest.mark.parametrize("precision,constrained,expected", [
    ("fp32", True, []),
    ("fp16", False, ["FP16"]),
    ("fp16", True, ["FP16", "OBEY_PRECISION_CONSTRAINTS"]),
    ("int8", False, ["INT8", "FP16"]),
    ("int8", True, ["INT8", "FP16", "OBEY_PRECISION_CONSTRAINTS"]),
])
def test_weakly_typed_precision_flags(precision, constrained, expected):
    assert weak_precision_flag_names(precision, constrained) == expected


def test_int8_without_quantize_layers_gets_no_int8_flag():
    """TensorRT 8.6 fails an INT8-flagged build without scales ("no scaling factors"), e.g. all layers skipped:
    such a network builds as FP16, what its unquantized layers would have run in anyway."""
    assert weak_precision_flag_names("int8", False, quantized=False) == ["FP16"]
    assert weak_precision_flag_names("int8", True, quantized=False) == ["FP16", "OBEY_PRECISION_CONSTRAINTS"]


def test_forced_binding_must_be_known(monkeypatch):
    with pytest.raises(ValueError, match="NETDEF_TRT='onnxruntime'"):
        shim._import_binding("onnxruntime")


def test_missing_binding_says_which_pip_command_installs_one(monkeypatch):
    import importlib

    def no_trt(name):
        raise ImportError(f"No module named {name!r}")

    monkeypatch.setattr(importlib, "import_module", no_trt)
    with pytest.raises(shim.TensorRTNotFound) as err:
        shim._import_binding("")
    assert "pip install tensorrt-rtx-cu13==1.7.1.116" in str(err.value)
    assert "tensorrt: No module named" in str(err.value) and "tensorrt_rtx" in str(err.value)


@pytest.mark.parametrize("name,level", [("INTERNAL_ERROR", logging.CRITICAL), ("ERROR", logging.ERROR),
                                        ("WARNING", logging.WARNING), ("INFO", logging.INFO),
                                        ("VERBOSE", logging.DEBUG)])
def test_severity_maps_to_logging_levels(name, level):
    severity = getattr(shim.binding().ILogger.Severity, name)
    assert shim.severity_level(severity) == level


def test_logger_bridge_forwards_to_python_logging(caplog):
    bridge = shim.logger()
    with caplog.at_level(logging.DEBUG, logger="tensorrt"):
        bridge.log(shim.binding().ILogger.Severity.ERROR, "netdef-test-message")
    assert ("tensorrt", logging.ERROR, "netdef-test-message") in caplog.record_tuples
    assert bridge.recent[-1].endswith("netdef-test-message")


def test_downcast_reaches_a_read_back_layers_interface():
    from netdef.engine import create_builder, create_network

    trt = shim.binding()
    builder = create_builder()
    network = create_network(builder)
    x = network.add_input("x", trt.DataType.FLOAT, (1, 2, 3, 3))
    network.add_pooling_nd(x, trt.PoolingType.AVERAGE, (2, 2))
    network.add_activation(x, trt.ActivationType.SIGMOID)
    pool, act = network.get_layer(0), network.get_layer(1)
    assert type(pool) is trt.ILayer
    assert shim.downcast(pool) is pool and isinstance(pool, trt.IPoolingLayer) and tuple(pool.window_size_nd) == (2, 2)
    assert shim.downcast(act).type == trt.ActivationType.SIGMOID
    assert shim.downcast(act) is act  # already downcast: unchanged (its `type` is the activation type now)


def test_feature_probes_for_fill_and_slice_modes():
    feat = shim.features()
    assert feat.fill_output_type and {"FILL", "CLAMP", "REFLECT", "WRAP"} <= set(feat.sample_modes)
    old = shim.probe(make_module("8.6"))
    assert not old.fill_output_type and old.sample_modes == ()
