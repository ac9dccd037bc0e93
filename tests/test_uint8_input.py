"""Engines that take raw 8-bit images (define/build `input_dtype="uint8"`): the engine normalizes the pixels as the
network's float preprocessing does, through every layer of netdef (definition, INT8 calibration, engine build,
sidecar, runtime, infer, serving signature and Triton config)."""
from __future__ import annotations

import argparse

import numpy as np
import pytest
import torch

from netdef.engine import BuildSettings, EngineFileError, check_loaded_engine, describe, read_sidecar, save_engine
from netdef.executor import execute
from netdef.preprocess import IMAGENET, OPENPOSE, UNIT, PixelNormalization, image_input
from netdef.runtime import InferenceSession, InputError, TensorRTBackend, cuda
from netdef.sidecar import SidecarError, check_fields
from networks.resnet import ResNet
from tests.test_resnet import random_weights
from tests.test_runtime_fixtures import FakeCudart, FakeDeviceArray, FakeEngine

torch.set_num_threads(2)
SIZE = 64


def rel(actual, expected) -> float:
    a, e = (torch.as_tensor(np.asarray(v, dtype=np.float64)) for v in (actual, expected))
    assert torch.isfinite(a).all()
    return float((a - e).norm() / e.norm())


def pixels(shape, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


@pytest.fixture(scope="module")
def resnet() -> ResNet:
    return ResNet(random_weights("resnet18", num_classes=10, seed=4), arch="resnet18")


@pytest.fixture(scope="module")
def tiny_yolo(tmp_path_factory):
    from networks.yolov4 import YOLOv4
    from weights_export.darknet_synth import write_darknet_weights, yolov4_tiny_cfg

    tmp = tmp_path_factory.mktemp("yolo-u8")
    text = yolov4_tiny_cfg(width=96, height=96, width_div=8, classes=3)
    (tmp / "t.cfg").write_text(text)
    return YOLOv4.from_darknet(tmp / "t.cfg", write_darknet_weights(text, tmp / "t.weights", seed=5, gain=1.2))


@pytest.mark.parametrize("norm", [IMAGENET, UNIT, OPENPOSE], ids=["imagenet", "unit", "openpose"])
def test_normalization_is_one_scale_and_shift_and_inverts(norm: PixelNormalization):
    u = pixels((2, 3, 5, 7), seed=1)
    scale, shift = norm.scale_shift()
    order = u[:, ::-1] if norm.bgr else u
    folded = order * scale[:, None, None] + shift[:, None, None]  # what the engine's scale layer computes
    assert rel(norm.normalize(u), folded) < 1e-6
    np.testing.assert_array_equal(norm.pixels(norm.normalize(u)), u)


def test_float_preprocessing_uses_the_declared_normalization(tmp_path):
    """imagenet_preprocess and OpenPose's preprocess are the pixels then the network's normalization."""
    from PIL import Image

    from netdef.pose.openpose import preprocess as openpose_preprocess
    from netdef.preprocess import imagenet_preprocess

    rgb = pixels((SIZE, SIZE, 3), seed=2)
    x = imagenet_preprocess(rgb, size=SIZE, resize=None)
    expected = (rgb.transpose(2, 0, 1) / 255.0 - np.array(IMAGENET.mean)[:, None, None]) / np.array(IMAGENET.std)[:, None, None]
    assert rel(x, expected) < 1e-6
    Image.fromarray(rgb).save(tmp_path / "a.png")
    x, _ = openpose_preprocess(str(tmp_path / "a.png"), (SIZE, SIZE))
    assert rel(x, rgb[:, :, ::-1].transpose(2, 0, 1) / 256.0 - 0.5) < 1e-6


def _uint8_matches_float_and_torch(model, size, reference, outputs, define_options=None, tolerance=1e-5):
    """The uint8 definition on pixels equals the float definition on their float preprocessing (to float32
    rounding) and the float64 PyTorch reference on the normalized image."""
    options = dict(define_options or {})
    u = pixels((2, 3, *size), seed=3)
    x = model.normalization().normalize(u)
    got = execute(model.define(input_size=size, input_dtype="uint8", **options).definition, {"input": u})
    want = execute(model.define(input_size=size, **options).definition, {"input": x})
    with torch.no_grad():
        ref = reference(torch.from_numpy(x).double())
    for name, expected in zip(outputs, ref):
        assert rel(got[name], want[name]) < 1e-6, name
        assert rel(got[name], expected) < tolerance, name


def test_resnet_uint8_input(resnet):
    _uint8_matches_float_and_torch(resnet, (SIZE, SIZE), lambda x: [resnet.reference().double()(x)], ["logits"])


def test_yolov4_tiny_uint8_input(tiny_yolo):
    ref = tiny_yolo.reference(nms="raw").double()
    _uint8_matches_float_and_torch(tiny_yolo, (96, 96), ref, ["boxes", "scores"], {"nms": "raw"})


def test_openpose_uint8_input_takes_rgb_and_reverses_it():
    from tests.test_openpose import small_model

    model, ref = small_model(seed=6)
    net = model.define(input_size=(48, 40), input_dtype="uint8", outputs="raw")
    layers = [net.definition.get_layer(i).name for i in range(4)]
    assert layers == ["input/to_float", "input/bgr/order", "input/bgr", "input/normalize"]
    _uint8_matches_float_and_torch(model, (48, 40), ref.double(), ["paf", "heatmap"], {"outputs": "raw"})


def test_the_weights_files_mean_and_std_are_used(resnet):
    weights = dict(resnet.weights)

    class WithAttrs(dict):
        attrs = {"mean": np.array([0.5, 0.4, 0.3]), "std": np.array([0.2, 0.3, 0.25])}

    model = ResNet(WithAttrs(weights), arch="resnet18")
    assert model.normalization() == PixelNormalization((0.5, 0.4, 0.3), (0.2, 0.3, 0.25))
    net = model.define(input_size=(SIZE, SIZE), input_dtype="uint8")
    assert net.meta["pixels"]["mean"] == [0.5, 0.4, 0.3] and net.meta["define_options"] == {"input_dtype": "uint8"}


def test_engines_build_with_a_uint8_input_in_every_precision(resnet, tmp_path):
    """RTX builds FP32/FP16/INT8 engines whose input TensorRT reports as UINT8; INT8 is calibrated on the float
    input definition (same tensor names) and quantizes the normalized input with the same scale."""
    from netdef import quantize
    from netdef import trt as shim
    from netdef.quantize.placement import Graph

    cache = quantize.calibrate(resnet, IMAGENET.normalize(pixels((4, 3, SIZE, SIZE), seed=7)), samples=4, batch=4,
                               input_size=(SIZE, SIZE), progress=False)
    UINT8 = shim.binding().DataType.UINT8
    for precision in ("fp32", "fp16", "int8"):
        net = resnet.define(precision, input_size=(SIZE, SIZE), input_dtype="uint8",
                            calibration=cache if precision == "int8" else None)
        assert net.definition.get_input(0).dtype == UINT8
        plan = net.build(BuildSettings(precision=precision, batch=(1, 2, 4), progress=False))
        assert len(plan.data) > 1000 and plan.meta["inputs"][0]["dtype"] == "UINT8"
        sidecar = read_sidecar(save_engine(plan, tmp_path / f"{precision}.engine"))  # the fields checked
        assert (sidecar["input_dtype"], sidecar["pixels"]) == ("uint8", IMAGENET.as_meta())
    as_float = resnet.define("int8", input_size=(SIZE, SIZE), calibration=cache)

    def input_scale(n):
        g = Graph(n.definition)
        (i,) = [i for i, t in enumerate(g.types) if t == "QUANTIZE" and g.canonical(g.input_name(i, 0)) == "input"]
        return float(g.scale(i)[0])

    assert input_scale(net) == input_scale(as_float) == pytest.approx(cache.amax["input"] / 127)
    u = pixels((2, 3, SIZE, SIZE), seed=8)
    got = execute(net.definition, {"input": u})["logits"]
    assert rel(got, execute(as_float.definition, {"input": IMAGENET.normalize(u)})["logits"]) < 1e-6


def test_sidecar_and_engine_must_agree_on_the_input_dtype(resnet):
    net = resnet.define(input_size=(SIZE, SIZE), input_dtype="uint8")
    meta = {**describe(net.definition, BuildSettings(batch=(1, 2, 4), progress=False)), **net.meta,
            "plan_sha256": "0" * 64, "plan_bytes": 1}
    check_fields(meta, "u8.json")
    float_net = resnet.define(input_size=(SIZE, SIZE))
    with pytest.raises(EngineFileError, match="'input' is FLOAT in the engine, UINT8 in the sidecar"):
        check_loaded_engine(meta, FakeEngine(float_net, (1, 2, 4), None), "u8.engine")
    with pytest.raises(SidecarError, match="input_dtype float32 but input 'input' is UINT8"):
        check_fields({**meta, "input_dtype": "float32"}, "u8.json")
    with pytest.raises(SidecarError, match="input_dtype uint8 without 'pixels'"):
        check_fields({k: v for k, v in meta.items() if k != "pixels"}, "u8.json")


def test_runtime_refuses_float_for_a_uint8_input(resnet):
    net = resnet.define(input_size=(SIZE, SIZE), input_dtype="uint8")
    u = pixels((2, 3, SIZE, SIZE), seed=9)
    with InferenceSession.from_definition(net, batch=(1, 2, 4)) as session:
        assert session.inputs[0].dtype == np.uint8
        ok = session.infer(u)["logits"]
        with pytest.raises(InputError, match="input 'input': dtype float32 cannot be fed to a uint8 input: it takes "
                                             "raw 8-bit pixels"):
            session.infer(IMAGENET.normalize(u))
    fake = FakeCudart()
    previous = cuda.use_cudart(fake)
    try:
        with InferenceSession(TensorRTBackend(FakeEngine(net, (1, 2, 4), fake), name="u8.engine")) as session:
            np.testing.assert_allclose(session.infer(u)["logits"], ok, rtol=1e-5, atol=1e-5)
            pixels_on_device = FakeDeviceArray(fake, u.shape, np.uint8, u)
            np.testing.assert_allclose(session.infer({"input": pixels_on_device})["logits"], ok, rtol=1e-5, atol=1e-5)
            on_device = FakeDeviceArray(fake, u.shape, np.float32, IMAGENET.normalize(u))
            with pytest.raises(InputError, match="device array dtype float32, expected uint8.*raw 8-bit pixels"):
                session.infer({"input": on_device})
    finally:
        cuda.use_cudart(previous)


def test_infer_image_feeds_pixels_to_a_uint8_engine(resnet, tmp_path):
    from PIL import Image

    from netdef.commands.infer import classify

    Image.fromarray(pixels((80, 70, 3), seed=10)).save(tmp_path / "a.png")
    results = []
    for options in ({}, {"input_dtype": "uint8"}):
        with InferenceSession.from_definition(resnet.define(input_size=(SIZE, SIZE), **options)) as session:
            results.append(classify(session, [str(tmp_path / "a.png")], 3, None))
    (as_float,), (as_uint8,) = results
    assert [p["index"] for p in as_float["top"]] == [p["index"] for p in as_uint8["top"]]
    assert [p["probability"] for p in as_float["top"]] == pytest.approx([p["probability"] for p in as_uint8["top"]],
                                                                        rel=1e-5)
    with pytest.raises(ValueError, match="records no pixel normalization"):
        image_input(argparse.Namespace(inputs=[argparse.Namespace(dtype=np.uint8, name="input")], meta={},
                                       name="u8.engine"), np.zeros((1, 3, 2, 2), np.float32))


def test_build_option_signature_and_triton_config_are_uint8(resnet):
    pytest.importorskip("tritonclient.grpc", reason="the serve extra (tritonclient) is not installed")
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2 as pb

    from netdef.cli import make_parser
    from netdef.commands.build import build_options
    from netdef.serve.repository import RepositoryOptions, config_text
    from netdef.serve.signature import ModelSignature

    args = make_parser().parse_args(["build", "resnet18", "--weights", "w.h5", "--out", "e.engine",
                                     "--input-dtype", "uint8"])
    assert build_options(args) == {"input_dtype": "uint8"}
    net = resnet.define(input_size=(SIZE, SIZE), input_dtype="uint8")
    meta = describe(net.definition, BuildSettings(batch=(1, 4, 8), progress=False))
    signature = ModelSignature.from_sidecar("r18u8", meta)
    assert [(t.name, t.triton_type, t.dims) for t in signature.inputs] == [("input", "UINT8", (3, SIZE, SIZE))]
    config = text_format.Parse(config_text(signature, RepositoryOptions("r18u8")), pb.ModelConfig())
    assert [(t.name, t.data_type, list(t.dims)) for t in config.input] == [("input", pb.TYPE_UINT8, [3, SIZE, SIZE])]
    assert [t.data_type for t in config.output] == [pb.TYPE_FP32]


def test_weakly_typed_bindings_convert_uint8_through_an_identity_with_its_output_type(monkeypatch):
    """TensorRT 8.6 documents an identity layer with its output type set as the way from a UINT8 input to float;
    strongly typed bindings (RTX, 10, 11) cast."""
    import dataclasses

    from netdef import trt as shim

    class Layer:
        precision = None

        def set_output_type(self, index, dtype):
            self.output_type = (index, dtype)

    class WeakNetwork:
        def add_identity(self, tensor):
            self.layer = Layer()
            return self.layer

        def add_cast(self, tensor, dtype):
            raise AssertionError("8.6 converts UINT8 through an identity layer")

    FLOAT = shim.binding().DataType.FLOAT
    monkeypatch.setattr(shim, "_features", dataclasses.replace(shim.features(), strongly_typed=False))
    layer = shim.from_uint8(WeakNetwork(), "pixels", FLOAT)
    assert (layer.precision, layer.output_type) == (FLOAT, (0, FLOAT))


def test_recorded_mean_std_prefers_the_pixels_a_uint8_engine_applies():
    from netdef.preprocess import IMAGENET, UNIT, recorded_mean_std

    pixels = {"mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25], "divisor": 255.0, "channels": "RGB"}
    assert recorded_mean_std({"pixels": pixels, "mean": [0.1] * 3}) == ((0.5,) * 3, (0.25,) * 3)
    assert recorded_mean_std({"mean": [0.1] * 3, "std": [0.2] * 3}) == ((0.1,) * 3, (0.2,) * 3)
    assert recorded_mean_std({}) == (IMAGENET.mean, IMAGENET.std)
    assert recorded_mean_std({}, UNIT) == ((0.0,) * 3, (1.0,) * 3)
