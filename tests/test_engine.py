"""Engine build utilities, atomic save with sidecar, and the sidecar checks on load."""
from __future__ import annotations

import json
import types

import numpy as np
import pytest

from netdef import trt as shim
from netdef.sidecar import seal
from netdef.engine import (BuildError, BuildSettings, EngineFileError, configure, parse_batch,
                           read_sidecar, save_engine, sidecar_path)
from netdef.network import Network
from netdef.nn.conv import Conv2d
from tests.fake_trt import make_module


def conv_relu_network(precision: str = "fp32") -> Network:
    rng = np.random.default_rng(0)
    net = Network("conv_relu", precision)
    with net:
        conv = Conv2d(3, 8, 3, padding=1)
        conv.load_weights({"weight": rng.standard_normal((8, 3, 3, 3)).astype(np.float32),
                           "bias": rng.standard_normal(8).astype(np.float32)})
        y = conv(net.add_input("input", (-1, 3, 16, 16)))
        relu = net.definition.add_activation(y, net.trt.ActivationType.RELU)
        net.mark_output(net.name_layer(relu, "relu").get_output(0), "out")
    return net


@pytest.fixture(scope="module")
def plan():
    return conv_relu_network().build(BuildSettings(batch=(1, 2, 4), progress=False))


def test_builds_strongly_typed_conv_relu(plan):
    assert len(plan.data) > 1000
    assert plan.meta["typing"] == "strong" and plan.meta["trt_flavor"] == "tensorrt_rtx"
    assert plan.meta["inputs"] == [{"name": "input", "dtype": "FLOAT", "shape": [-1, 3, 16, 16],
                                    "min": [1, 3, 16, 16], "opt": [2, 3, 16, 16], "max": [4, 3, 16, 16]}]
    assert [o["name"] for o in plan.meta["outputs"]] == ["out"]


def test_fp16_network_casts_io_and_builds():
    net = conv_relu_network("fp16")
    layers = [net.definition.get_layer(i) for i in range(net.definition.num_layers)]
    assert [layer.type.name for layer in layers] == ["CAST", "CONVOLUTION", "ACTIVATION", "CAST"]
    assert net.definition.get_output(0).dtype == net.trt.DataType.FLOAT
    assert layers[1].get_output(0).dtype == net.trt.DataType.HALF
    assert net.build(BuildSettings(precision="fp16", progress=False)).meta["precision"] == "fp16"


def test_save_writes_plan_and_sidecar(tmp_path, plan):
    weights = tmp_path / "w.h5"
    weights.write_bytes(b"weights")
    path = save_engine(plan, tmp_path / "m.engine", weights=weights)
    assert path.read_bytes() == plan.data
    meta = json.loads(sidecar_path(path).read_text())
    assert meta["plan_bytes"] == len(plan.data) and len(meta["plan_sha256"]) == 64
    assert meta["weights_file"] == "w.h5" and len(meta["weights_sha256"]) == 64
    assert read_sidecar(path)["plan_sha256"] == meta["plan_sha256"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.engine", "m.engine.json", "w.h5"]  # no temp files left


def test_tampered_plan_is_refused(tmp_path, plan):
    path = save_engine(plan, tmp_path / "m.engine")
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(EngineFileError, match="plan sha256"):
        read_sidecar(path)


@pytest.mark.parametrize("key,value", [("trt_flavor", "tensorrt"), ("trt_version", "8.6.0")])
def test_sidecar_from_another_binding_is_refused(tmp_path, plan, key, value):
    path = save_engine(plan, tmp_path / "m.engine")
    meta = json.loads(sidecar_path(path).read_text())
    meta[key] = value
    sidecar_path(path).write_text(json.dumps(seal(meta)))  # sealed: as another binding's netdef writes it
    with pytest.raises(EngineFileError) as err:
        read_sidecar(path)
    assert f"{key}: engine built with {value!r}" in str(err.value)


def test_missing_sidecar_is_named(tmp_path, plan):
    path = tmp_path / "bare.engine"
    path.write_bytes(plan.data)
    with pytest.raises(EngineFileError, match="sidecar bare.engine.json not found"):
        read_sidecar(path)


def test_failed_save_leaves_no_file(tmp_path, monkeypatch, plan):
    import errno

    import netdef.atomic as atomic

    synced = []

    def full_on_second(path):  # the sidecar's write fails: disk full
        synced.append(path)
        if len(synced) == 2:
            raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(atomic, "_fsync_file", full_on_second)
    with pytest.raises(OSError, match=r"m\.engine\.json: no space left on the device"):
        save_engine(plan, tmp_path / "m.engine")
    assert list(tmp_path.iterdir()) == []


def test_builder_failure_quotes_tensorrt():
    net = Network("broken")
    with net:
        x = net.add_input("input", (-1, 3, 8, 8))
        # A 5x5 kernel on a 1-channel expectation: the builder rejects the mismatched channel count.
        layer = net.definition.add_convolution_nd(x, 4, (3, 3), net.weights(np.ones((4, 1, 3, 3))),
                                                  net.weights(None))
        net.mark_output(net.name_layer(layer, "conv").get_output(0), "out")
    with pytest.raises(BuildError) as err:
        net.build(BuildSettings(progress=False))
    assert "could not build network 'broken'" in str(err.value) and "TensorRT said" in str(err.value)


def test_timing_cache_is_written(tmp_path):
    cache = tmp_path / "timing.cache"
    first = conv_relu_network().build(BuildSettings(progress=False, timing_cache=cache))
    assert cache.stat().st_size > 0
    assert first.meta["timing_cache"] == {"file": "timing.cache", "loaded_bytes": 0, "used": False}


def test_an_accepted_timing_cache_is_written_back_and_recorded_as_used(tmp_path):
    from netdef.engine import _settle_timing_cache

    cache = tmp_path / "timing.cache"
    cache.write_bytes(b"ptrt-old")
    grown = types.SimpleNamespace(serialize=lambda: b"ptrt-old-and-new")
    assert _settle_timing_cache(grown, cache, 8, []) == {"file": "timing.cache", "loaded_bytes": 8, "used": True}
    assert cache.read_bytes() == b"ptrt-old-and-new"


class RefusingBuilder:
    """A builder that logs what TensorRT 8.6 logged on the H200 when a build was given a cache another
    network wrote, then builds (without the cache, as TensorRT does)."""

    def __init__(self, builder) -> None:
        self.builder = builder

    def __getattr__(self, name):
        return getattr(self.builder, name)

    def build_serialized_network(self, network, config):
        error = shim.binding().ILogger.Severity.ERROR
        shim.logger().log(error, "1: [myelinCache.h::deserializeFromBuffer::52] Error Code 1: Myelin (Myelin error "
                                 "from unknown graph)")
        shim.logger().log(error, "4: The timing cache will not be used!")
        return self.builder.build_serialized_network(network, config)


def test_a_timing_cache_tensorrt_refuses_is_recorded_and_never_written_back(tmp_path):
    """The refused cache goes aside (every later build would refuse it again); the next build starts anew."""
    from netdef.engine import build_engine

    cache = tmp_path / "timing.cache"
    conv_relu_network().build(BuildSettings(progress=False, timing_cache=cache))
    written = cache.read_bytes()
    net = conv_relu_network()
    plan = build_engine(net.definition, BuildSettings(progress=False, timing_cache=cache), RefusingBuilder(net.builder))
    record = plan.meta["timing_cache"]
    assert record["used"] is False and record["loaded_bytes"] == len(written)
    assert "The timing cache will not be used!" in record["refused"] and "Myelin error" in record["refused"]
    assert not cache.exists() and (tmp_path / "timing.cache.rejected").read_bytes() == written
    fresh = conv_relu_network().build(BuildSettings(progress=False, timing_cache=cache))
    assert fresh.meta["timing_cache"]["loaded_bytes"] == 0 and cache.stat().st_size > 0


@pytest.mark.parametrize("given,expected", [(4, (4, 4, 4)), ("1:8:32", (1, 8, 32)), ("2", (2, 2, 2)),
                                            ((1, 2, 3), (1, 2, 3))])
def test_parse_batch(given, expected):
    assert parse_batch(given) == expected


@pytest.mark.parametrize("bad", ["8:1:32", "0", "1:2"])
def test_parse_batch_rejects(bad):
    with pytest.raises(ValueError):
        parse_batch(bad)


class _Recorder:
    def __init__(self):
        self.flags = []
        self.profiles = []

    def set_flag(self, flag):
        self.flags.append(flag.name)

    def set_tactic_sources(self, sources):
        self.tactics = sources

    def add_optimization_profile(self, p):
        self.profiles.append(p)


def test_configure_on_weakly_typed_binding_sets_builder_flags(monkeypatch):
    """The 8.6 decision path: FP16/INT8 through builder flags, constraints when layers pin FP32."""
    mod = make_module("8.6")
    monkeypatch.setattr(shim, "_binding", mod)
    monkeypatch.setattr(shim, "_features", shim.probe(mod))
    config = _Recorder()
    builder = types.SimpleNamespace(create_builder_config=lambda: config)
    layers = [types.SimpleNamespace(precision_is_set=True, type=mod.LayerType.ACTIVATION),
              types.SimpleNamespace(precision_is_set=False, type=mod.LayerType.QUANTIZE)]
    network = types.SimpleNamespace(num_layers=2, get_layer=lambda i: layers[i], num_inputs=0,
                                    num_outputs=0, name="n")
    configure(builder, network, BuildSettings(precision="int8", progress=False))
    assert config.flags == ["INT8", "FP16", "OBEY_PRECISION_CONSTRAINTS"]
    assert config.tactics == (1 << 3) | (1 << 4)  # TensorRT's own kernels only: no cuBLAS/cuDNN
    del layers[1]  # no quantize layer left (everything skipped): no INT8 flag, an FP16 build
    network.num_layers = 1
    config = _Recorder()
    builder = types.SimpleNamespace(create_builder_config=lambda: config)
    configure(builder, network, BuildSettings(precision="int8", progress=False))
    assert config.flags == ["FP16", "OBEY_PRECISION_CONSTRAINTS"]


def test_configure_on_strongly_typed_binding_sets_no_precision_flags(monkeypatch):
    mod = make_module("11")
    monkeypatch.setattr(shim, "_binding", mod)
    monkeypatch.setattr(shim, "_features", shim.probe(mod))
    config = _Recorder()
    builder = types.SimpleNamespace(create_builder_config=lambda: config)
    network = types.SimpleNamespace(num_layers=0, get_layer=None, num_inputs=0, num_outputs=0)
    configure(builder, network, BuildSettings(precision="fp16", progress=False))
    assert config.flags == []
