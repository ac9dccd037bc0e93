"""The YOLOv4 command line: `netdef export --darknet-cfg/--darknet-weights`, `netdef build yolov4-tiny --nms ...`,
`netdef verify yolov4-tiny`; and INT8 through netdef.quantize (decode and NMS stay FP32)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from netdef.cli import main
from netdef.engine import BuildSettings
from netdef.executor import execute
from netdef.trt import nms_layer_builds
from networks.yolov4 import YOLOv4
from weights_export.darknet_synth import write_darknet_weights, yolov4_tiny_cfg

torch.set_num_threads(2)


@pytest.fixture(scope="module")
def h5(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("yolocli")
    text = yolov4_tiny_cfg(width_div=8, classes=20)
    (tmp / "tiny.cfg").write_text(text)
    write_darknet_weights(text, tmp / "tiny.weights", seed=11, gain=1.2)
    assert main(["export", "--darknet-cfg", str(tmp / "tiny.cfg"), "--darknet-weights", str(tmp / "tiny.weights"),
                 "--out", str(tmp / "tiny.h5"), "--no-progress"]) == 0
    return tmp / "tiny.h5"


def test_build_raw_with_non_square_size_and_dynamic_batch(h5, capsys):
    engine = h5.parent / "raw.engine"
    assert main(["build", "yolov4-tiny", "--weights", str(h5), "--out", str(engine), "--input-size", "320,416",
                 "--batch", "1:2:4", "--precision", "fp16", "--nms", "raw", "--no-progress"]) == 0
    side = json.loads((h5.parent / "raw.engine.json").read_text())
    assert [o["name"] for o in side["outputs"]] == ["boxes", "scores"]
    n = 3 * (10 * 13 + 20 * 26)
    assert side["outputs"][1]["max"] == [4, n, 20] and side["nms"] == "raw" and side["input_size"] == [320, 416]
    assert "outputs: boxes, scores" in capsys.readouterr().out


def test_build_engine_nms_or_clear_error(h5, capsys):
    args = ["build", "yolov4-tiny", "--weights", str(h5), "--out", str(h5.parent / "nms.engine"), "--nms", "engine",
            "--max-detections", "50", "--score-threshold", "0.3", "--iou-threshold", "0.5", "--no-progress"]
    if nms_layer_builds():
        assert main(args) == 0
        side = json.loads((h5.parent / "nms.engine.json").read_text())
        assert side["max_detections"] == 50 and side["outputs"][1]["shape"] == [-1, 50, 4]
    else:
        assert main(args) == 1
        assert "cannot build an NMS layer" in capsys.readouterr().err


@pytest.mark.parametrize("extra", [[], ["-O", "nms='engine'", "-O", "score_threshold=0.3"]])
def test_verify_cli(h5, capsys, extra):
    assert main(["verify", "yolov4-tiny", "--weights", str(h5), "--input-size", "320", "320", "--batch", "2",
                 *extra]) == 0
    table = capsys.readouterr().out
    assert "layers.36" in table
    assert ("det_boxes" in table) == bool(extra)


def test_int8_calibrated_definition_builds_and_stays_close(h5):
    model = YOLOv4.from_hdf5(h5)
    data = np.concatenate([model.sample_input(1, 256, seed=s) for s in range(4)])
    net = model.define("int8", input_size=256, nms="raw", calibration=data)
    x = model.sample_input(1, 256, seed=9)
    ref = model.reference().double()
    with torch.no_grad():
        boxes, scores = ref(torch.from_numpy(x).double())
    unquantized = execute(model.define("fp32", input_size=256, nms="raw").definition, {"input": x})
    plan = net.build(BuildSettings(precision="int8", progress=False))
    assert net.meta["int8"]["activations"] > 15 and net.meta["int8"]["num_samples"] == 4 and len(plan.data) > 100_000
    quantized = execute(net.definition, {"input": x})
    for name, expected in (("boxes", boxes), ("scores", scores)):
        err = float((quantized[name].double() - expected).norm() / expected.norm())
        assert err <= 5e-2, name
        assert not torch.equal(quantized[name].float(), unquantized[name].float())  # Q/DQ changed the numbers
