"""`netdef infer` and `netdef bench` end to end on a small ResNet-18 (64x64, 10 classes): engine built with
TensorRT-RTX on the CPU, run through `--executor netdef` (the sidecar gives arch, precision and input size)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from netdef.cli import main
from netdef.engine import BuildSettings, save_engine
from netdef.preprocess import imagenet_preprocess, softmax

torch.set_num_threads(2)
SIZE = 64


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory):
    from networks.resnet import ResNet, random_bn_init, torch_resnet
    from weights_export.pytorch import export_module

    tmp = tmp_path_factory.mktemp("cli")
    model = random_bn_init(torch_resnet("resnet18", num_classes=10, seed=0), seed=1)
    h5 = tmp / "r18.h5"
    export_module(model, h5, "resnet18", input_shape=(1, 3, SIZE, SIZE))
    plan = ResNet.from_hdf5(h5).build(batch=(1, 2, 4), input_size=(SIZE, SIZE),
                                      settings=BuildSettings(batch=(1, 2, 4), progress=False))
    engine = save_engine(plan, tmp / "r18.engine", weights=h5)
    rng = np.random.default_rng(0)
    images = []
    for i in range(2):
        path = tmp / f"img{i}.png"
        Image.fromarray(rng.integers(0, 256, (80, 96, 3), dtype=np.uint8)).save(path)
        images.append(str(path))
    return {"h5": str(h5), "engine": str(engine), "images": images, "model": model.double().eval(), "tmp": tmp}


def test_infer_prints_topk_matching_torch(artifacts, capsys):
    out_json = artifacts["tmp"] / "infer.json"
    argv = ["infer", artifacts["engine"], "--executor", "netdef", "--weights", artifacts["h5"], "--topk", "3",
            "--json", str(out_json)]
    for image in artifacts["images"]:
        argv += ["--image", image]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    report = json.loads(out_json.read_text())
    assert report["arch"] == "resnet18"
    batch = np.stack([imagenet_preprocess(im, size=SIZE, resize=round(SIZE * 256 / 224)) for im in artifacts["images"]])
    with torch.no_grad():
        probs = softmax(artifacts["model"](torch.from_numpy(batch).double()).numpy())
    for result, p in zip(report["results"], probs):
        top = result["top"]
        assert [t["index"] for t in top] == list(np.argsort(-p)[:3])
        np.testing.assert_allclose([t["probability"] for t in top], np.sort(p)[::-1][:3], rtol=1e-4)
        assert f"{top[0]['probability']:7.4f}  class {top[0]['index']}" in printed


def test_infer_on_tensorrt_without_gpu_is_a_clear_error(artifacts, capsys):
    assert main(["infer", artifacts["engine"], "--image", artifacts["images"][0]]) == 1
    err = capsys.readouterr().err
    assert "netdef infer: error:" in err and "could not deserialize the engine" in err


def test_bench_prints_latency_table_and_torch_ratio(artifacts, capsys):
    out_json = artifacts["tmp"] / "bench.json"
    assert main(["bench", artifacts["engine"], "--executor", "netdef", "--weights", artifacts["h5"], "--batch", "2",
                 "--iterations", "3", "--warmup", "1", "--compare-torch", "resnet18", "--json", str(out_json)]) == 0
    printed = capsys.readouterr().out
    assert "netdef netdef fp32" in printed and "torch eager cpu float32" in printed and "speedup" in printed
    report = json.loads(out_json.read_text())
    for key in ("p50_ms", "p90_ms", "p99_ms", "throughput"):
        assert report["netdef"][key] > 0 and report["torch"][key] > 0
    assert report["netdef"]["p50_ms"] <= report["netdef"]["p99_ms"]
    assert report["speedup_p50"] == pytest.approx(report["torch"]["p50_ms"] / report["netdef"]["p50_ms"])


def test_bench_batch_outside_profile_names_input(artifacts, capsys):
    assert main(["bench", artifacts["engine"], "--executor", "netdef", "--weights", artifacts["h5"],
                 "--batch", "5", "--iterations", "1"]) == 1
    assert "input 'input': dim 0 is 5, outside the profile range 1..4" in capsys.readouterr().err


def test_netdef_executor_needs_weights(artifacts, capsys, tmp_path):
    import shutil

    # beside the engine, the weights it was built from (sha256 in the sidecar) are the default ...
    assert main(["infer", artifacts["engine"], "--executor", "netdef", "--image", artifacts["images"][0]]) == 0
    capsys.readouterr()
    # ... elsewhere they must be given
    for suffix in ("", ".json"):
        shutil.copy(artifacts["engine"] + suffix, tmp_path / f"moved.engine{suffix}")
    assert main(["infer", str(tmp_path / "moved.engine"), "--executor", "netdef", "--image", artifacts["images"][0]]) == 1
    assert "--executor netdef needs --weights" in capsys.readouterr().err


def test_infer_without_engine_file_uses_arch_and_default_size(artifacts, capsys):
    out_json = artifacts["tmp"] / "noengine.json"
    image = artifacts["images"][1]
    assert main(["infer", "--executor", "netdef", "--arch", "resnet18", "--weights", artifacts["h5"], "--image", image,
                 "--topk", "2", "--json", str(out_json)]) == 0
    top = json.loads(out_json.read_text())["results"][0]["top"]
    x = imagenet_preprocess(image)  # 224x224: ResNet's default input size
    with torch.no_grad():
        p = softmax(artifacts["model"](torch.from_numpy(x[None]).double()).numpy())[0]
    assert [t["index"] for t in top] == list(np.argsort(-p)[:2])
    np.testing.assert_allclose([t["probability"] for t in top], np.sort(p)[::-1][:2], rtol=1e-4)
