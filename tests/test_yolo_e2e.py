"""YOLOv4 and YOLOv4-tiny end to end: Darknet cfg + .weights -> HDF5 -> netdef definition -> executor and
TensorRT-RTX builds, against the PyTorch reference in float64.

The cfgs are synthesized with the real structure (tests/test_darknet_synth.py) and 80 classes; channel widths
are divided by 16 (YOLOv4) and 4 (YOLOv4-tiny) so the float64 reference and the executor stay fast.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

import netdef.executor as executor
from netdef.detect import detect
from netdef.engine import BuildError, BuildSettings
from netdef.trt import nms_layer_builds
from networks.yolov4 import NMS_OUTPUTS, YOLOv4
from weights_export.darknet_synth import write_darknet_weights, yolov4_cfg, yolov4_tiny_cfg

torch.set_num_threads(2)
TOLERANCE = {"fp32": 1e-5, "fp16": 1e-2}
VARIANTS = {"yolov4": lambda: yolov4_cfg(width_div=16), "yolov4-tiny": lambda: yolov4_tiny_cfg(width_div=4)}


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """Each variant imported from Darknet files through the HDF5 exporter."""
    from weights_export.darknet import export_darknet

    tmp = tmp_path_factory.mktemp("yolo")
    out = {}
    for seed, (name, make) in enumerate(VARIANTS.items()):
        cfg = tmp / f"{name}.cfg"
        cfg.write_text(make())
        weights = write_darknet_weights(make(), tmp / f"{name}.weights", seed=seed, gain=1.2)
        export_darknet(cfg, weights, tmp / f"{name}.h5")
        out[name] = YOLOv4.from_hdf5(tmp / f"{name}.h5")
    return out


_references: dict = {}


def reference(model: YOLOv4, x: np.ndarray) -> tuple[list, torch.Tensor, torch.Tensor]:
    """(heads, boxes, scores) of the float64 PyTorch reference, computed once per model and input."""
    key = (id(model), x.shape, float(x.ravel()[0]))
    if key not in _references:
        ref = model.reference(nms="raw").double()
        with torch.no_grad():
            xt = torch.from_numpy(x).double()
            _references[key] = (ref.heads(xt), *ref(xt))
    return _references[key]


def rel(actual: torch.Tensor, expected: torch.Tensor) -> float:
    actual = actual.double()
    assert torch.isfinite(actual).all()
    return float((actual - expected).norm() / expected.norm())


def test_import_keeps_cfg_classes_anchors_and_names(models):
    v4, tiny = models["yolov4"], models["yolov4-tiny"]
    assert (v4.arch, tiny.arch) == ("yolov4", "yolov4-tiny")
    assert v4.num_classes == tiny.num_classes == 80
    assert [v4.plan.layers[i].options["head"].scale_x_y for i in v4.plan.heads] == [1.2, 1.1, 1.05]
    assert np.allclose(tiny.plan.layers[30].options["head"].anchors, [[81, 82], [135, 169], [344, 319]])
    assert "layers.0.bn.running_var" in v4.weights and "layers.160.conv.bias" in v4.weights
    assert "layers.29.conv.bias" in tiny.weights


@pytest.mark.slow
@pytest.mark.parametrize("name, size, precision", [
    ("yolov4", 416, "fp32"), ("yolov4", 416, "fp16"),
    ("yolov4-tiny", 416, "fp32"), ("yolov4-tiny", 416, "fp16"),
    ("yolov4-tiny", 608, "fp32"), ("yolov4-tiny", 608, "fp16"),
])
def test_heads_and_decode_match_pytorch_and_build(models, name, size, precision):
    model = models[name]
    net = model.define(precision, input_size=size, nms="raw")
    x = model.sample_input(1, size, seed=size)
    heads, boxes, scores = reference(model, x)
    head_tensors = [net.module_outputs[f"layers.{i - 1}"] for i in model.plan.heads]
    out = executor.execute(net.definition, {"input": x}, keep=head_tensors + ["boxes", "scores"])
    tol = TOLERANCE[precision]
    for tensor, expected in zip(head_tensors, heads):
        assert rel(out[tensor], expected) <= tol, tensor
    n = sum(h.shape[1] // 85 * h.shape[2] * h.shape[3] for h in heads)
    assert tuple(out["boxes"].shape) == (1, n, 4) and tuple(out["scores"].shape) == (1, n, 80)
    assert rel(out["boxes"], boxes) <= tol and rel(out["scores"], scores) <= tol
    plan = net.build(BuildSettings(precision=precision, batch=(1, 1, 2), progress=False))
    assert [o["name"] for o in plan.meta["outputs"]] == ["boxes", "scores"]
    assert plan.meta["outputs"][0]["max"] == [2, n, 4] and len(plan.data) > 100_000


@pytest.mark.parametrize("precision, scores_dtype", [("fp32", "FLOAT"), ("fp16", "HALF")])
def test_decode_computes_scores_in_the_compute_precision_and_boxes_in_fp32(models, precision, scores_dtype):
    """The class scores (C of each row's 5 + C) in the network's precision, boxes and both outputs in FP32."""
    model = models["yolov4-tiny"]
    net = model.define(precision, input_size=256, nms="raw")
    d, trt = net.definition, net.trt
    if not net.features.strongly_typed:
        pytest.skip("weakly typed: TensorRT picks the decode's precision (FP16 flag, FP32 constraints on the boxes)")
    dtypes = {d.get_layer(i).name: d.get_layer(i).get_output(0).dtype for i in range(d.num_layers)}
    heads = [f"layers.{i}" for i in model.plan.heads]
    for head in heads:
        assert dtypes[f"{head}/probs"] == getattr(trt.DataType, scores_dtype), head
        assert dtypes[f"{head}/rows_t"] == getattr(trt.DataType, scores_dtype), head
        assert dtypes[f"{head}/exp"] == dtypes[f"{head}/xy"] == dtypes[f"{head}/boxes"] == trt.DataType.FLOAT, head
    assert [d.get_output(i).dtype for i in range(d.num_outputs)] == [trt.DataType.FLOAT] * 2


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_head_outputs_match_reference_heads_and_keep_the_fingerprint(models, precision):
    """heads=True adds head0.. outputs (what INT8 is judged on), and no layer: calibration caches still fit."""
    from netdef.quantize.cache import definition_digest

    model = models["yolov4-tiny"]
    net = model.define(precision, input_size=256, nms="raw", heads=True)
    assert net.output_names == ["boxes", "scores", "head0", "head1"]
    assert definition_digest(net.definition) == definition_digest(model.define(precision, 256, nms="raw").definition)
    x = model.sample_input(2, 256, seed=11)
    heads, boxes, _ = reference(model, x)
    out = executor.execute(net.definition, {"input": x})
    for i, expected in enumerate(heads):
        assert rel(out[f"head{i}"], expected) <= TOLERANCE[precision], i
    assert rel(out["boxes"], boxes) <= TOLERANCE[precision]
    plan = net.build(BuildSettings(precision=precision, batch=(1, 2, 2), progress=False))
    assert [o["name"] for o in plan.meta["outputs"]] == ["boxes", "scores", "head0", "head1"]


def test_reference_traces_with_torch_compile(models):
    """bench/gpu_prepare.py times the reference under torch.compile: dynamo must trace it (backend="eager"
    runs the tracing and guards without compiling kernels)."""
    model = models["yolov4-tiny"]
    ref = model.reference(nms="raw")
    x = torch.from_numpy(model.sample_input(1, 128, seed=3))
    compiled = torch.compile(ref, backend="eager", fullgraph=False)
    with torch.inference_mode():
        want, got = ref(x), compiled(x)
    for a, b in zip(got, want):
        assert torch.equal(a, b)


@pytest.mark.slow
def test_yolov4_608_and_non_square_build(models):
    for name, size in (("yolov4", 608), ("yolov4-tiny", (320, 512))):
        plan = models[name].build("fp16", input_size=size, nms="raw",
                                  settings=BuildSettings(precision="fp16", progress=False))
        h, w = (size, size) if isinstance(size, int) else size
        assert plan.meta["inputs"][0]["shape"] == [-1, 3, h, w] and plan.meta["input_size"] == [h, w]


def _nms_inputs(net) -> tuple[str, str]:
    definition = net.definition
    layer = next(definition.get_layer(i) for i in range(definition.num_layers) if definition.get_layer(i).name == "nms")
    return layer.get_input(0).name, layer.get_input(1).name


@pytest.mark.parametrize("k", [5, 300])
def test_engine_nms_matches_numpy_reference(models, k):
    """NMS in the definition (executed; TensorRT's NMS layer semantics) == netdef.detect on the same candidates."""
    model = models["yolov4-tiny"]
    x = np.concatenate([model.sample_input(1, 416, seed=1), model.sample_input(1, 416, seed=2)])
    _, _, ref_scores = reference(model, x)
    threshold = float(np.quantile(ref_scores.numpy().max(-1), 0.97))  # ~150 candidate boxes per image
    net = model.define("fp32", input_size=416, nms="engine", max_detections=k, score_threshold=threshold,
                       iou_threshold=0.3)
    assert net.output_names == list(NMS_OUTPUTS)
    box_name, score_name = _nms_inputs(net)
    out = executor.execute(net.definition, {"input": x}, keep=[box_name, score_name, *NMS_OUTPUTS])
    want = detect(out[box_name].numpy(), out[score_name].numpy(), k, iou_threshold=0.3, score_threshold=threshold)
    num = out["num_detections"].numpy()
    assert num.dtype == np.int32 and out["det_classes"].dtype == torch.int32
    assert (num == want.num_detections).all()
    assert (num == k).all() if k == 5 else (10 < num).all() and (num < k).all()
    np.testing.assert_array_equal(out["det_classes"].numpy(), want.classes)
    np.testing.assert_allclose(out["det_scores"].numpy(), want.scores, rtol=1e-6)
    np.testing.assert_allclose(out["det_boxes"].numpy(), want.boxes, rtol=1e-4, atol=1e-4)
    for b, count in enumerate(num.ravel()):  # empty slots are padding
        assert (out["det_classes"][b, count:] == -1).all() and not out["det_boxes"][b, count:].any()
    # and the candidates themselves are the reference decode
    _, boxes, scores = reference(model, x)
    assert rel(out[box_name], boxes) <= 1e-5 and rel(out[score_name], scores) <= 1e-5


def test_engine_nms_build_where_the_binding_can(models):
    model = models["yolov4-tiny"]
    settings = BuildSettings(progress=False)
    if nms_layer_builds():
        plan = model.build(input_size=416, nms="engine", max_detections=20, settings=settings)
        assert [o["name"] for o in plan.meta["outputs"]] == list(NMS_OUTPUTS)
    else:  # TensorRT-RTX 1.7: add_nms exists, but no implementation: a clear error, and "auto" falls back to raw
        with pytest.raises(BuildError, match="nms='raw'"):
            model.build(input_size=416, nms="engine", settings=settings)
        assert model.define(input_size=416).output_names == ["boxes", "scores"]


def test_from_darknet_in_memory_equals_hdf5(models, tmp_path):
    text = VARIANTS["yolov4-tiny"]()
    (tmp_path / "t.cfg").write_text(text)
    weights = write_darknet_weights(text, tmp_path / "t.weights", seed=7, gain=1.2)
    direct = YOLOv4.from_darknet(tmp_path / "t.cfg", weights)
    saved = YOLOv4.from_darknet(tmp_path / "t.cfg", weights, out=tmp_path / "t.h5")
    assert direct.arch == saved.arch == "yolov4-tiny" and (tmp_path / "t.h5").exists()
    assert set(direct.weights) == set(saved.weights)
    for key in direct.weights:
        np.testing.assert_array_equal(direct.weights[key], saved.weights[key])
    # the tiny model of the fixture came from other weights: the import is not a no-op
    key = "layers.0.conv.weight"
    assert not np.array_equal(direct.weights[key], models["yolov4-tiny"].weights[key])


def test_engine_nms_with_no_detection_pads_everything(models):
    model = models["yolov4-tiny"]
    net = model.define("fp32", input_size=256, nms="engine", max_detections=8, score_threshold=0.9999)
    out = executor.execute(net.definition, {"input": model.sample_input(3, 256, seed=4)})
    assert out["num_detections"].tolist() == [[0], [0], [0]]
    assert (out["det_classes"] == -1).all() and not out["det_boxes"].any() and not out["det_scores"].any()
    assert tuple(out["det_boxes"].shape) == (3, 8, 4)
