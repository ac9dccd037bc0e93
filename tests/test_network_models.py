"""Rules every network class keeps: one way to get the reference (independent of earlier defines), one caching
rule for module(), define() options recorded for rebuilds and references, one definition of each Darknet layer kind
and activation, torch off the build path."""
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
from netdef.detect import TRT_TOPK_LIMIT, detect
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


def _pose_weights(tmp_path: Path, arch: str) -> Path:
    """A small pose network of `arch` with random weights, as an HDF5 file."""
    from weights_export.hdf5 import write_weights

    if arch == "openpose-body":
        from networks.openpose import BodyConfig, torch_body_pose

        module = torch_body_pose(BodyConfig(stages=2, width_div=16), seed=1)
    else:
        from networks.higherhrnet import HigherHRNetConfig, torch_higherhrnet

        small = HigherHRNetConfig(width=8, stem_channels=8, layer1_blocks=1, stage_modules=(1, 1, 1), stage_blocks=1)
        module = torch_higherhrnet(small, seed=1)
    path = tmp_path / f"{arch}.h5"
    write_weights(path, {k: v.numpy() for k, v in module.state_dict().items()}, root_attrs={"arch": arch})
    return path


@pytest.mark.parametrize("arch,size,options,recorded", [
    ("yolov4", 64, {"nms": "engine", "max_detections": 7}, {"nms": "engine", "max_detections": 7, "topk": TRT_TOPK_LIMIT,
                                                            "score_threshold": 0.25, "iou_threshold": 0.45}),
    ("openpose-body", (32, 48), {"max_peaks": 5}, {"outputs": "parsed", "max_peaks": 5}),
    ("openpose-body", (32, 48), {"outputs": "raw"}, {"outputs": "raw"}),
    ("higherhrnet", (64, 32), {"topk": 7, "nms_kernel": 3}, {"outputs": "parsed", "topk": 7, "nms_kernel": 3}),
    ("higherhrnet", (64, 32), {"outputs": "raw"}, {"outputs": "raw"}),
])
def test_define_options_travel_to_rebuilds_and_references(tmp_path, arch, size, options, recorded):
    """define() records what shaped the definition (networks.base.DEFINE_OPTIONS): `netdef infer --executor
    netdef` rebuilds the engine's network from the sidecar with them, `netdef verify` gives the reference those
    it takes, so the reference computes the same outputs."""
    import argparse
    import json

    import networks
    from netdef.commands.infer import definition_builder
    from netdef.commands.verify import reference_options
    from networks.base import DEFINE_OPTIONS

    if arch == "yolov4":
        from weights_export.darknet import export_darknet

        (tmp_path / "t.cfg").write_text(yolov4_tiny_cfg(width_div=8, classes=3))
        write_darknet_weights((tmp_path / "t.cfg").read_text(), tmp_path / "t.weights", seed=3)
        export_darknet(tmp_path / "t.cfg", tmp_path / "t.weights", tmp_path / "t.h5")
        weights = tmp_path / "t.h5"
    else:
        weights = _pose_weights(tmp_path, arch)
    model = networks.get(arch).from_hdf5(weights)
    net = model.define(input_size=size, **options)
    meta = json.loads(json.dumps(net.meta))  # as the engine sidecar keeps it
    assert meta[DEFINE_OPTIONS] == recorded
    args = argparse.Namespace(weights=str(weights), arch=None, precision=None, engine=None)
    rebuilt = definition_builder(args)(meta)
    assert rebuilt.output_names == net.output_names
    shapes = [tuple(rebuilt.definition.get_output(i).shape) for i in range(rebuilt.definition.num_outputs)]
    assert shapes == [tuple(net.definition.get_output(i).shape) for i in range(net.definition.num_outputs)]
    x = torch.from_numpy(model.sample_input(1, size, seed=2))
    with torch.no_grad():
        produced = model.reference(**reference_options(model, meta))(x)
    assert [tuple(t.shape) for t in produced] == [(1, *s[1:]) for s in shapes]


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
from networks.higherhrnet import HigherHRNet, HigherHRNetConfig, PoseHigherResolutionNet
from networks.openpose import BodyConfig, BodyPoseModule, OpenPose
small = HigherHRNetConfig(width=8, stem_channels=8, layer1_blocks=1, stage_modules=(1, 1, 1), stage_blocks=1)
ones = lambda module: {{k: np.ones(p.shape, np.float32) for k, p in module.named_parameters()}}
HigherHRNet(ones(PoseHigherResolutionNet(small))).define(input_size=(64, 64))
OpenPose(ones(BodyPoseModule(BodyConfig(stages=2, width_div=16)))).define(input_size=(32, 32))
assert "torch" not in sys.modules, sorted(m for m in sys.modules if m.startswith("torch"))
"""
    subprocess.run([sys.executable, "-c", script], cwd=ROOT, check=True, capture_output=True, text=True)


def test_load_darknet_checks_the_cfg_before_reading(tmp_path):
    from netdef.darknet_cfg import DarknetCfgError

    with pytest.raises(DarknetCfgError, match="bad.cfg:1: option"):
        (tmp_path / "bad.cfg").write_text("width=3\n[net]\n")
        load_darknet(tmp_path / "bad.cfg", tmp_path / "missing.weights")
