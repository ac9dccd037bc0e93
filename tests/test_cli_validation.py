"""Bad command lines get a clear refusal before any work: outputs over inputs (also through links), a
timing cache that is not one, numbers out of range (CLI and API alike), nonsense NMS settings; the
calibration cache flag is the same on every command; raw-output engines apply the NMS settings on the
host; a 16-bit grayscale PNG is scaled, not clipped to white."""
from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import pytest

from netdef.cli import main, make_parser
from tests.kill_lane import CFG


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    from weights_export.darknet_synth import write_darknet_weights

    work = tmp_path_factory.mktemp("args")
    (work / "tiny.cfg").write_text(CFG)
    write_darknet_weights(CFG, work / "tiny.weights", seed=3)
    assert main(["export", "--darknet-cfg", str(work / "tiny.cfg"), "--darknet-weights", str(work / "tiny.weights"),
                 "--out", str(work / "w.h5"), "--no-progress"]) == 0
    np.save(work / "data.npy", np.random.default_rng(0).random((4, 3, 32, 32), dtype=np.float32))
    return work


def _refused(capsys, argv: list[str], message: str, code: int = 1) -> str:
    if code == 2:  # argparse refuses before anything runs
        with pytest.raises(SystemExit) as info:
            main(argv)
        assert info.value.code == 2
    else:
        assert main(argv) == code
    err = capsys.readouterr().err
    assert message in err, err
    return err


def _build(work: Path, *extra: str) -> list[str]:
    return ["build", "darknet", "--weights", str(work / "w.h5"), "--nms", "raw", "--no-progress", *extra]


# --- never over an input -------------------------------------------------------------------------------------

def test_outputs_over_inputs_are_refused_also_through_links(tiny, capsys, tmp_path):
    weights = tiny / "w.h5"
    before = weights.read_bytes()
    (tmp_path / "link.h5").symlink_to(weights)
    os.link(weights, tmp_path / "hard.h5")
    for out in (weights, tmp_path / "link.h5", tmp_path / "hard.h5"):
        _refused(capsys, _build(tiny, "--out", str(out)), f"--out {out} is the same file as --weights")
        _refused(capsys, ["calibrate", "darknet", "--weights", str(weights), "--data", str(tiny / "data.npy"),
                          "--out", str(out)], "is the same file as --weights")
    _refused(capsys, ["export", "--darknet-cfg", str(tiny / "tiny.cfg"), "--darknet-weights", str(tiny / "tiny.weights"),
                      "--out", str(tiny / "tiny.weights")], "is the same file as --darknet-weights")
    _refused(capsys, ["export", "--arch", "resnet18", "--checkpoint", str(tmp_path / "link.h5"), "--out", str(weights)],
             "is the same file as --checkpoint")
    _refused(capsys, _build(tiny, "--out", str(tmp_path / "e.engine"), "--timing-cache", str(weights)),
             "--timing-cache")
    _refused(capsys, ["verify", "darknet", "--weights", str(weights), "--report", str(tmp_path / "hard.h5")],
             "--report")
    _refused(capsys, ["calibrate", "darknet", "--weights", str(weights), "--data", str(tiny / "data.npy"),
                      "--out", str(tiny / "data.npy")], "is the same file as --data")
    assert weights.read_bytes() == before and (tiny / "data.npy").exists()


def test_sidecar_of_the_engine_is_not_written_over_an_input(tiny, capsys, tmp_path):
    calib = tmp_path / "e.engine.json"
    calib.write_text("{}")
    _refused(capsys, _build(tiny, "--out", str(tmp_path / "e.engine"), "--precision", "int8", "--calib-cache",
                            str(calib)), "the sidecar of --out")
    assert calib.read_text() == "{}"


def test_infer_outputs_never_replace_images_or_the_sidecar(tiny, capsys, tmp_path):
    from PIL import Image

    image = tmp_path / "img.png"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(image)
    before = image.read_bytes()
    _refused(capsys, ["infer", "--executor", "netdef", "--arch", "darknet", "--weights", str(tiny / "w.h5"),
                      "--image", str(image), "--save", str(image)], "--save")
    assert main(_build(tiny, "--out", str(tmp_path / "e.engine"))) == 0
    _refused(capsys, ["infer", str(tmp_path / "e.engine"), "--executor", "netdef", "--image", str(image),
                      "--json", str(tmp_path / "e.engine.json")], "--json")
    _refused(capsys, ["bench", str(tmp_path / "e.engine"), "--executor", "netdef", "--json",
                      str(tmp_path / "e.engine")], "is the same file as ENGINE")
    assert image.read_bytes() == before


# --- the timing cache -------------------------------------------------------------------------------------------

def test_timing_cache_only_reads_and_writes_timing_caches(tiny, capsys, tmp_path):
    cache = tmp_path / "timing.cache"
    assert main(_build(tiny, "--out", str(tmp_path / "a.engine"), "--timing-cache", str(cache))) == 0
    assert cache.stat().st_size > 0
    assert main(_build(tiny, "--out", str(tmp_path / "b.engine"), "--timing-cache", str(cache))) == 0  # reused
    for name, data in (("copy.h5", (tiny / "w.h5").read_bytes()), ("notes.json", b'{"a": 1}'),
                       ("engine", (tmp_path / "a.engine").read_bytes())):
        other = tmp_path / name
        other.write_bytes(data)
        _refused(capsys, _build(tiny, "--out", str(tmp_path / "c.engine"), "--timing-cache", str(other)),
                 f"timing cache {other}: not a TensorRT timing cache")
        assert other.read_bytes() == data and not (tmp_path / "c.engine").exists()
    _refused(capsys, _build(tiny, "--out", str(tmp_path / "c.engine"), "--timing-cache", str(tmp_path)),
             "not a regular file")


# --- numbers in range ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("argv, message", [
    (["infer", "e.engine", "--image", "x.png", "--topk", "-3"], "argument --topk: -3: expected an integer >= 1"),
    (["build", "resnet18", "--weights", "w", "--out", "e", "--opt-level", "99"],
     "argument --opt-level: 99: expected an integer in 0..5"),
    (["build", "resnet18", "--weights", "w", "--out", "e", "--workspace", "-1"], "argument --workspace: -1"),
    (["build", "resnet18", "--weights", "w", "--out", "e", "--input-size", "0,64"], "expected H,W with positive"),
    (["build", "resnet18", "--weights", "w", "--out", "e", "--input-size", "-32"], "expected H,W with positive"),
    (["verify", "resnet18", "--weights", "w", "--input-size", "0", "64"], "argument --input-size: 0"),
    (["verify", "resnet18", "--weights", "w", "--tolerance", "-1"], "argument --tolerance"),
    (["build", "yolov4", "--weights", "w", "--out", "e", "--max-detections", "0"], "--max-detections: 0"),
    (["build", "yolov4", "--weights", "w", "--out", "e", "--score-threshold", "1.5"], "expected a number in [0, 1)"),
    (["build", "yolov4", "--weights", "w", "--out", "e", "--iou-threshold", "nan"], "expected a number in [0, 1]"),
    (["infer", "e.engine", "--image", "x.png", "--iou-threshold", "-0.1"], "--iou-threshold"),
    (["calibrate", "resnet18", "--weights", "w", "--data", "d", "--out", "c", "--samples", "0"], "--samples: 0"),
    (["calibrate", "resnet18", "--weights", "w", "--data", "d", "--out", "c", "--percentile", "101"], "--percentile"),
    (["bench", "e.engine", "--iterations", "0"], "--iterations: 0"),
    (["export", "--arch", "resnet18", "--checkpoint", "c", "--out", "o", "--num-classes", "0"], "--num-classes: 0"),
])
def test_out_of_range_numbers_are_refused_by_the_cli(capsys, argv, message):
    _refused(capsys, argv, message, code=2)


def test_out_of_range_numbers_are_refused_by_the_api():
    from netdef.detect import detect
    from netdef.engine import BuildSettings
    from netdef.preprocess import topk
    from networks.resnet import ResNet, resnet18_reference

    with pytest.raises(ValueError, match="workspace -1 MiB"):
        BuildSettings(workspace_mib=-1)
    with pytest.raises(ValueError, match="optimization level 99"):
        BuildSettings(optimization_level=99)
    model = ResNet({k: v.numpy() for k, v in resnet18_reference(num_classes=4).state_dict().items()})
    for size in ((0, 64), (-32, 64)):
        with pytest.raises(ValueError, match=r"input 'input' shape \(-1, 3, .*every dimension must be a positive"):
            model.define("fp32", input_size=size)
    boxes, scores = np.zeros((1, 4, 4), np.float32), np.zeros((1, 4, 2), np.float32)
    for bad, message in (({"max_detections": 0}, "max_detections 0"), ({"score_threshold": 1.0}, "score_threshold 1.0"),
                         ({"iou_threshold": math.nan}, "iou_threshold nan"), ({"topk": -3}, "topk -3")):
        with pytest.raises(ValueError, match=message):
            detect(boxes, scores, **bad)
    with pytest.raises(ValueError, match="topk -3"):
        topk(np.zeros((1, 10)), -3)


# --- one flag for the calibration cache -------------------------------------------------------------------------

def test_calib_cache_flag_on_every_command():
    parser = make_parser()
    for flag in ("--calib-cache", "--calibration"):
        assert parser.parse_args(["verify", "a", "--weights", "w", flag, "c.json"]).calib_cache == "c.json"
        assert str(parser.parse_args(["build", "a", "--weights", "w", "--out", "e", flag, "c.json"]).calib_cache) == "c.json"
    args = parser.parse_args(["calibrate", "a", "--weights", "w", "--data", "d", "--calib-cache", "c.json"])
    assert str(args.out) == "c.json"  # calibrate writes the cache: --calib-cache is its --out


# --- host NMS of raw outputs --------------------------------------------------------------------------------------

def test_raw_outputs_apply_the_nms_settings_on_the_host(tiny, capsys, tmp_path):
    from PIL import Image

    engine = tmp_path / "raw.engine"
    assert main(_build(tiny, "--out", str(engine), "--max-detections", "3", "--score-threshold", "0",
                       "--iou-threshold", "0.9")) == 0
    meta = json.loads((tmp_path / "raw.engine.json").read_text())
    assert (meta["nms"], meta["max_detections"], meta["score_threshold"], meta["iou_threshold"]) == ("raw", 3, 0.0, 0.9)
    image = tmp_path / "img.png"
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(image)
    for extra, expected in (([], 3), (["--max-detections", "1"], 1)):
        out = tmp_path / "dets.json"
        assert main(["infer", str(engine), "--executor", "netdef", "--weights", str(tiny / "w.h5"), "--image",
                     str(image), "--json", str(out), *extra]) == 0
        assert len(json.loads(out.read_text())["results"][0]["detections"]) == expected
    capsys.readouterr()


def test_decode_detections_honours_recorded_and_given_settings():
    from netdef.commands.infer import decode_detections
    from netdef.detect import detect

    rng = np.random.default_rng(4)
    xy = rng.uniform(0, 50, (2, 30, 2))
    boxes = np.concatenate([xy, xy + rng.uniform(5, 20, (2, 30, 2))], -1).astype(np.float32)
    scores = rng.uniform(0, 1, (2, 30, 3)).astype(np.float32)
    meta = {"nms": "raw", "max_detections": 7, "score_threshold": 0.5, "iou_threshold": 0.3, "topk": 5000}
    got = decode_detections({"boxes": boxes, "scores": scores}, meta)
    want = detect(boxes, scores, max_detections=7, iou_threshold=0.3, score_threshold=0.5)
    assert all(np.array_equal(a, b) for a, b in zip(got, want)) and got.boxes.shape == (2, 7, 4)
    got = decode_detections({"boxes": boxes, "scores": scores}, meta, {"score_threshold": 0.9, "max_detections": None})
    assert (got.scores[got.classes >= 0] > np.float32(0.9)).all()
    engine_outputs = {"num_detections": np.zeros((1, 1), np.int32), "det_boxes": np.zeros((1, 7, 4), np.float32),
                      "det_scores": np.zeros((1, 7), np.float32), "det_classes": np.zeros((1, 7), np.int32)}
    with pytest.raises(ValueError, match="--max-detections: this engine runs NMS itself"):
        decode_detections(engine_outputs, {**meta, "nms": "engine"}, {"max_detections": 3})


# --- images ---------------------------------------------------------------------------------------------------

def test_16_bit_grayscale_png_is_scaled_not_clipped(tmp_path):
    from PIL import Image

    from netdef.preprocess import load_image

    ramp = np.linspace(0, 65535, 64 * 64).astype(np.uint16).reshape(64, 64)
    Image.fromarray(ramp).save(tmp_path / "g16.png")
    assert Image.open(tmp_path / "g16.png").mode == "I;16"
    rgb = np.asarray(load_image(tmp_path / "g16.png"))
    expected = np.rint(ramp / 257.0).astype(np.uint8)
    assert rgb.shape == (64, 64, 3) and np.array_equal(rgb[..., 0], expected) and np.array_equal(rgb[..., 2], expected)
    assert 120 < rgb.mean() < 135  # a ramp, not white (Pillow's own convert gives 254.5)
