"""Rules every network class keeps: one way to get the reference (independent of earlier defines), one caching
rule for module(), one definition of each Darknet layer kind and activation, torch off the build path."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import networks.darknet as darknet
from netdef.darknet_cfg import ACTIVATIONS as CFG_ACTIVATIONS
from netdef.darknet_cfg import _INFERENCE_KEYS
from netdef.detect import detect
from networks.resnet import ResNet, ResNetModule
from networks.yolov4 import YOLOv4
from weights_export.darknet import DarknetWeights, load_darknet
from weights_export.darknet_synth import write_darknet_weights, yolov4_tiny_cfg

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> YOLOv4:
    tmp = tmp_path_factory.mktemp("models")
    text = yolov4_tiny_cfg(width_div=8, classes=3)
    (tmp / "t.cfg").write_text(text)
    return YOLOv4.from_darknet(tmp / "t.cfg", write_darknet_weights(text, tmp / "t.weights", seed=3, gain=1.2))


def test_in_memory_darknet_import_is_the_exporters_content(tiny):
    assert isinstance(tiny.weights, DarknetWeights) and tiny.path is None
    assert tiny.weights.attrs["arch"] == "yolov4-tiny" and "[yolo]" in tiny.weights.attrs["darknet_cfg"]


def test_reference_depends_only_on_its_arguments(tiny):
    x = torch.from_numpy(tiny.sample_input(2, 128, seed=5)).double()
    tiny.define(input_size=128, nms="engine", max_detections=7)  # an earlier define must not matter
    raw = tiny.reference().double()
    with torch.no_grad():
        boxes, scores = raw(x)
        num, det_boxes, det_scores, det_classes = tiny.reference(nms="engine", max_detections=7,
                                                                 score_threshold=0.3).double()(x)
    expected = detect(boxes.numpy(), scores.numpy(), max_detections=7, score_threshold=0.3)
    assert det_boxes.shape == (2, 7, 4) and torch.equal(num, torch.from_numpy(expected.num_detections))
    assert torch.equal(det_classes, torch.from_numpy(expected.classes))
    net = tiny.define(input_size=128, nms="engine", max_detections=7, score_threshold=0.3)
    assert {k: net.meta[k] for k in ("nms", "max_detections", "score_threshold")} == \
        {"nms": "engine", "max_detections": 7, "score_threshold": 0.3}


def test_module_is_made_once_per_key(tiny):
    assert tiny.module(128) is tiny.module((128, 128)) and tiny.module(128) is not tiny.module(160)
    weights = {k: np.ones(p.shape, np.float32) for k, p in ResNetModule("basic", (2, 2, 2, 2), 4).named_parameters()}
    model = ResNet(weights, arch="resnet18")
    assert model.module() is model.module((160, 160))  # a ResNet's tree does not depend on the input size


def test_each_darknet_kind_and_activation_is_defined_once():
    assert set(darknet.LAYER_KINDS) == set(_INFERENCE_KEYS) - {"net"}  # every cfg type the parser admits
    assert set(darknet.ACTIVATIONS) == set(CFG_ACTIVATIONS)
    for name, *args in filter(None, darknet.ACTIVATIONS.values()):
        assert hasattr(torch.nn.functional, name) and hasattr(__import__("netdef.functional").functional, name)
    from networks import darknet_torch

    for kind, netdef_cls in darknet.NETDEF_LAYERS.items():
        torch_cls = darknet_torch.LAYERS[kind]
        assert netdef_cls.__name__ == torch_cls.__name__ == darknet.LAYER_KINDS[kind].kind.__name__
        assert issubclass(torch_cls, torch.nn.Module) and not issubclass(netdef_cls, torch.nn.Module)


def test_building_never_imports_torch(tmp_path):
    """The build path (HDF5 or Darknet files -> definition -> engine) needs numpy, h5py and TensorRT only."""
    text = yolov4_tiny_cfg(width_div=8, classes=3)
    (tmp_path / "t.cfg").write_text(text)
    write_darknet_weights(text, tmp_path / "t.weights")
    script = f"""
import sys
import numpy as np
from networks.yolov4 import YOLOv4
from networks.resnet import ResNet, ResNetModule
from netdef.engine import BuildSettings
model = YOLOv4.from_darknet({str(tmp_path / 't.cfg')!r}, {str(tmp_path / 't.weights')!r})
model.define(input_size=96, nms="engine")
model.build(input_size=96, nms="raw", settings=BuildSettings(progress=False))
weights = {{k: np.ones(p.shape, np.float32) for k, p in ResNetModule("basic", (2, 2, 2, 2), 4).named_parameters()}}
ResNet(weights, arch="resnet18").define("fp16", input_size=(64, 64))
assert "torch" not in sys.modules, sorted(m for m in sys.modules if m.startswith("torch"))
"""
    subprocess.run([sys.executable, "-c", script], cwd=ROOT, check=True, capture_output=True, text=True)


def test_load_darknet_checks_the_cfg_before_reading(tmp_path):
    from netdef.darknet_cfg import DarknetCfgError

    with pytest.raises(DarknetCfgError, match="bad.cfg:1: option"):
        (tmp_path / "bad.cfg").write_text("width=3\n[net]\n")
        load_darknet(tmp_path / "bad.cfg", tmp_path / "missing.weights")
