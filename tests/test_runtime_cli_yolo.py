"""`netdef infer` on a YOLO engine (a synthetic YOLOv4-tiny, 64x64, 3 classes, raw outputs + host NMS),
run through `--executor netdef`: detections match the torch reference + host NMS, and `--save` draws them."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from netdef.cli import main
from netdef.engine import BuildSettings, save_engine

torch.set_num_threads(2)


@pytest.fixture(scope="module")
def yolo(tmp_path_factory):
    from networks.yolov4 import YOLOv4
    from weights_export.darknet_synth import write_darknet_weights, yolov4_tiny_cfg
    from weights_export.darknet import export_darknet

    tmp = tmp_path_factory.mktemp("yolo")
    cfg = yolov4_tiny_cfg(64, 64, width_div=8, classes=3)
    (tmp / "tiny.cfg").write_text(cfg)
    write_darknet_weights(cfg, tmp / "tiny.weights", seed=4)
    export_darknet(tmp / "tiny.cfg", tmp / "tiny.weights", tmp / "tiny.h5")
    model = YOLOv4.from_hdf5(tmp / "tiny.h5")
    plan = model.build(input_size=(64, 64), settings=BuildSettings(batch=(1, 1, 2), progress=False), nms="raw")
    engine = save_engine(plan, tmp / "tiny.engine")
    image = tmp / "street.png"
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (50, 80, 3), dtype=np.uint8)).save(image)
    return {"tmp": tmp, "engine": str(engine), "h5": str(tmp / "tiny.h5"), "image": str(image), "model": model}


def test_infer_detections_match_reference_and_are_drawn(yolo, capsys):
    from netdef.detect import detect, unletterbox_boxes
    from netdef.preprocess import yolo_preprocess

    saved, report_path = yolo["tmp"] / "boxes.png", yolo["tmp"] / "dets.json"
    assert main(["infer", yolo["engine"], "--executor", "netdef", "--weights", yolo["h5"], "--image", yolo["image"],
                 "--save", str(saved), "--json", str(report_path)]) == 0
    printed = capsys.readouterr().out
    found = json.loads(report_path.read_text())["results"][0]["detections"]
    x, info = yolo_preprocess(yolo["image"], (64, 64))
    with torch.no_grad():
        boxes, scores = yolo["model"].reference().double()(torch.from_numpy(x[None]).double())
    ref = detect(boxes.numpy(), scores.numpy(), max_detections=100, iou_threshold=0.45, score_threshold=0.25)
    n = int(ref.num_detections[0, 0])
    assert n > 3 and f"{n} detection(s)" in printed and len(found) == n
    top = min(n, 5)  # the strongest ones: far from ties, so float32 vs float64 cannot reorder them
    np.testing.assert_allclose([d["score"] for d in found[:top]], ref.scores[0, :top], rtol=1e-4)
    assert [d["class"] for d in found[:top]] == list(ref.classes[0, :top])
    np.testing.assert_allclose([d["box"] for d in found[:top]], unletterbox_boxes(ref.boxes[0, :top], info), atol=0.06)
    drawn = np.asarray(Image.open(saved).convert("RGB"))
    original = np.asarray(Image.open(yolo["image"]).convert("RGB"))
    assert drawn.shape == original.shape and (drawn != original).any()


def test_save_needs_known_image_format(yolo, capsys):
    assert main(["infer", yolo["engine"], "--executor", "netdef", "--weights", yolo["h5"], "--image", yolo["image"],
                 "--save", str(yolo["tmp"] / "boxes.xyz")]) == 1
    assert "boxes.xyz: unknown image format" in capsys.readouterr().err
