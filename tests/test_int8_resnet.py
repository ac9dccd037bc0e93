"""INT8 on real network classes: random-init ResNet-50 logits and YOLOv4-tiny heads stay close to FP32,
their Q/DQ definitions build with the installed TensorRT; the calibrate -> build -> verify command line."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from netdef.cli import main
from netdef.engine import BuildSettings
from netdef.executor import execute
from netdef.quantize import calibrate
from netdef.quantize.placement import check_placement
from netdef.verify import verify_network

SIZE = 64


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # avoids OpenMP spin-waiting when the 2 cores are shared with other tests
    yield
    torch.set_num_threads(threads)


def _resnet_h5(arch: str, path: Path, seed: int) -> Path:
    from networks.resnet import random_bn_init, torch_resnet
    from weights_export.hdf5 import write_weights

    module = random_bn_init(torch_resnet(arch, num_classes=100, seed=seed), seed=seed)
    write_weights(path, {k: v.numpy() for k, v in module.state_dict().items()}, root_attrs={"arch": arch})
    return path


def _cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.nn.functional.cosine_similarity(a.double().flatten(), b.double().flatten(), dim=0))


def _images(n: int, seed: int | None = None) -> np.ndarray:
    """Normalized-image-like inputs: smooth random fields, not white noise."""
    rng = np.random.default_rng(seed)
    coarse = torch.from_numpy(rng.standard_normal((n, 3, SIZE // 8, SIZE // 8)).astype(np.float32))
    return torch.nn.functional.interpolate(coarse, size=(SIZE, SIZE), mode="bilinear").numpy()


@pytest.mark.slow
def test_resnet50_int8_logits_cosine_and_build(tmp_path) -> None:
    from networks.resnet import ResNet

    model = ResNet.from_hdf5(_resnet_h5("resnet50", tmp_path / "r50.h5", seed=1))
    cache = calibrate(model, _images(32), method="entropy", batch=16, input_size=(SIZE, SIZE), progress=False)
    fp32 = model.define("fp32", input_size=(SIZE, SIZE))
    int8 = model.define("int8", input_size=(SIZE, SIZE), calibration=cache)
    x = _images(4)  # fresh inputs, not the calibration batch
    cos = _cosine(execute(int8.definition, {"input": x})["logits"], execute(fp32.definition, {"input": x})["logits"])
    print(f"\nresnet50 {SIZE}x{SIZE} INT8 vs FP32 logits cosine {cos:.5f}")
    assert cos >= 0.999
    report = check_placement(int8)  # every conv and the fc INT8, every residual add one DQ (its skip), 0 requantized
    adds = [f"layer{s}.{b}/add" for s, n in zip((1, 2, 3, 4), (3, 4, 6, 3)) for b in range(n)]
    assert len(report.int8_layers()) == len(report.weighted) == 54 and len(report.activations) == 55
    assert all(report.dequantized_inputs(a) == [1] for a in adds) and len(adds) == 16
    assert report.requantized == [] and report.float_residuals == []
    plan = int8.build(BuildSettings(precision="int8", progress=False))
    assert len(plan.data) > 1_000_000 and plan.meta["int8"]["algorithm"] == "entropy"


def test_resnet18_calibrate_build_verify_cli(tmp_path, capsys) -> None:
    h5 = _resnet_h5("resnet18", tmp_path / "r18.h5", seed=2)
    # the distribution verify's sample inputs come from (ResNet.sample_input: standard normal)
    np.save(tmp_path / "calib.npy", np.random.default_rng(3).standard_normal((16, 3, SIZE, SIZE)).astype(np.float32))
    calib = tmp_path / "calib.json"
    args = ["calibrate", "resnet18", "--weights", str(h5), "--data", str(tmp_path / "calib.npy"), "--out",
            str(calib), "--method", "percentile", "--samples", "12", "--batch", "8", "--input-size", str(SIZE),
            "--no-progress"]
    assert main(args) == 0
    doc = json.loads(calib.read_text())
    assert doc["algorithm"] == "percentile" and doc["num_samples"] == 12 and doc["arch"] == "resnet18"
    assert "layer1.0.relu" in doc["tensors"] and "input" in doc["tensors"] and len(doc["fingerprint"]) == 64
    assert main(args[:-1] + ["--method", "minmax", "--no-progress"]) == 1  # exists with another method: refused
    assert "'percentile', 'minmax' asked" in capsys.readouterr().err
    engine = tmp_path / "r18.engine"
    assert main(["build", "resnet18", "--weights", str(h5), "--precision", "int8", "--calib-cache", str(calib),
                 "--out", str(engine), "--input-size", str(SIZE), "--no-progress"]) == 0
    sidecar = json.loads(Path(str(engine) + ".json").read_text())
    assert engine.stat().st_size > 1_000_000 and "int8" in json.dumps(sidecar)
    assert main(["build", "resnet18", "--weights", str(h5), "--precision", "int8", "--calib-cache", str(calib),
                 "--out", str(tmp_path / "other.engine"), "--input-size", "96", "--no-progress"]) == 1
    assert "calib.json: does not match this network: the network definition differs" in capsys.readouterr().err
    capsys.readouterr()
    assert main(["verify", "resnet18", "--weights", str(h5), "--precision", "int8", "--calibration", str(calib),
                 "--input-size", str(SIZE), str(SIZE), "--batch", "2"]) == 0
    table = capsys.readouterr().out
    assert "layer4.1.relu" in table and "logits" in table  # per-layer errors of the quantized network
    assert "PASS" in table and "quantized: 22 activations, 21 kernels" in table


def test_yolov4_tiny_int8_heads_cosine_and_build(tmp_path) -> None:
    from networks.yolov4 import YOLOv4
    from weights_export.darknet_synth import write_synthetic_darknet, yolov4_tiny_cfg

    model = YOLOv4.from_hdf5(write_synthetic_darknet(yolov4_tiny_cfg(width_div=4, classes=20), tmp_path, "tiny",
                                                     seed=3, gain=1.2))
    size = 160
    data = np.concatenate([model.sample_input(1, size, seed=s) for s in range(16)])
    cache = calibrate(model, data, method="entropy", batch=8, input_size=size, progress=False)
    fp32 = model.define("fp32", input_size=size, nms="raw")
    int8 = model.define("int8", input_size=size, nms="raw", calibration=cache)
    x = np.concatenate([model.sample_input(1, size, seed=100 + s) for s in range(2)])
    a = execute(fp32.definition, {"input": x}, keep="all")
    b = execute(int8.definition, {"input": x}, keep="all")
    heads = [fp32.module_outputs[f"layers.{i - 1}"] for i, s in enumerate(model.cfg.layers) if s.type == "yolo"]
    assert len(heads) == 2
    for name in heads:
        cos = _cosine(b[name], a[name])
        print(f"\nyolov4-tiny head {name} INT8 vs FP32 cosine {cos:.5f}")
        assert cos >= 0.995
        assert not torch.equal(b[name].float(), a[name].float())
    # decode stays in floating point: no Q/DQ feeds a layer after the heads
    consumers = {int8.definition.get_layer(i).get_input(0).name for i in range(int8.definition.num_layers)
                 if int8.definition.get_layer(i).type.name == "QUANTIZE"}
    assert not any(n in consumers for n in heads)
    report = verify_network(int8, model.reference(), x)  # what `netdef verify --precision int8` judges
    assert report.ok and report.quantized == {"activations": 37, "weights": 19}  # 18 + every leaky conv's raw output
    plan = int8.build(BuildSettings(precision="int8", progress=False))
    assert len(plan.data) > 100_000


def test_yolov4_shortcut_placements_keep_heads_close_and_build(tmp_path) -> None:
    """YOLOv4 (the real cfg, widths / 16): one calibration serves every placement (R3c with the stem and every leaky
    conv at its raw output, the default; R3b: `shortcut_q`; no conv but the branches, the stem alone or every Mish
    conv at its raw output: `preact_q`; the head convs in INT8: `head_q`); each INT8 definition keeps the heads
    close to FP32 on fresh inputs, the others about as close as R3b (the INT8 head within twice its error); all
    build, the default passes `verify`."""
    from networks.yolov4 import YOLOv4
    from weights_export.darknet_synth import write_synthetic_darknet, yolov4_cfg

    model = YOLOv4.from_hdf5(write_synthetic_darknet(yolov4_cfg(width_div=16, classes=4), tmp_path, "y", seed=5,
                                                     gain=1.2))
    size = 64
    data = np.concatenate([model.sample_input(1, size, seed=s) for s in range(8)])
    cache = calibrate(model, data, method="entropy", batch=8, input_size=size, progress=False)
    seed = int(np.random.default_rng().integers(1 << 30))
    x = np.concatenate([model.sample_input(1, size, seed=seed + s) for s in range(2)])
    fp32 = model.define("fp32", input_size=size, nms="raw", heads=True)
    ref = execute(fp32.definition, {"input": x})
    errors = {}
    placements = {"R3b": {"shortcut_q": "activation"}, "R3c, stem at conv 0": {"preact_q": "stem"},
                  "R3c": {"preact_q": "none"}, "R3c, Mish convs at their output": {"preact_q": "mish"},
                  "R3c, INT8 head": {"head_q": "int8"}, "R3c, stem and leaky convs at their output": {}}
    for label, options in placements.items():
        int8 = model.define("int8", input_size=size, nms="raw", heads=True, calibration=cache, **options)
        got = execute(int8.definition, {"input": x})
        cos = min(_cosine(got[f"head{i}"], ref[f"head{i}"]) for i in range(3))
        errors[label] = max(float((got[f"head{i}"].double() - ref[f"head{i}"].double()).norm()
                                  / ref[f"head{i}"].double().norm()) for i in range(3))
        print(f"\nyolov4 INT8 {label}: heads cosine {cos:.5f}, rel err {errors[label]:.3e}")
        assert cos >= 0.97 and errors[label] > 0
    assert max(errors["R3c"], errors["R3c, stem at conv 0"], errors["R3c, Mish convs at their output"],
               errors["R3c, stem and leaky convs at their output"]) <= 1.5 * errors["R3b"]
    assert errors["R3c, INT8 head"] <= 2 * errors["R3b"]
    int8 = model.define("int8", input_size=size, nms="raw", calibration=cache)
    report = verify_network(int8, model.reference(), x)
    assert report.ok and report.quantized == {"activations": 157, "weights": 107}  # 122 + the 35 leaky raw outputs
    for options in ({"shortcut_q": "activation"}, {"preact_q": "none"}, {"preact_q": "mish"}, {"head_q": "int8"},
                    {"preact_q": "stem"}):
        plan = model.define("int8", input_size=size, nms="raw", calibration=cache, **options).build(
            BuildSettings(precision="int8", progress=False))
        assert len(plan.data) > 100_000 and plan.meta["define_options"].items() >= options.items()
    plan = int8.build(BuildSettings(precision="int8", progress=False))
    assert len(plan.data) > 100_000
    assert not {"shortcut_q", "preact_q", "head_q"} & set(int8.meta["define_options"])
