"""`netdef export` + `netdef build` from a torchvision-keyed DataParallel checkpoint, and CLI errors."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from netdef.cli import main
from networks.resnet import ResNet, random_bn_init, torch_resnet

torch.set_num_threads(2)


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> tuple:
    """A ResNet-18 (10 classes) saved as DataParallel would (`module.` prefix), exported to HDF5 by the CLI."""
    work = tmp_path_factory.mktemp("cli")
    model = random_bn_init(torch_resnet("resnet18", num_classes=10, seed=5), seed=6)
    checkpoint = work / "r18_dp.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in model.state_dict().items()}}, checkpoint)
    weights = work / "r18.h5"
    assert main(["export", "--arch", "resnet18", "--checkpoint", str(checkpoint), "--out", str(weights),
                 "--num-classes", "10", "--no-progress"]) == 0
    return model, weights, work


def test_checkpoint_goes_through_export_and_build(exported, capsys) -> None:
    model, weights, work = exported
    engine = work / "r18.engine"
    rc = main(["build", "resnet18", "--weights", str(weights), "--out", str(engine), "--precision", "fp16",
               "--batch", "1:2:4", "--input-size", "64,64", "--no-progress"])
    assert rc == 0, capsys.readouterr().err
    assert engine.stat().st_size > 1_000_000
    side = json.loads((work / "r18.engine.json").read_text())
    assert side["arch"] == "resnet18" and side["precision"] == "fp16" and side["batch"] == [1, 2, 4]
    assert side["weights_file"] == "r18.h5" and len(side["weights_sha256"]) == 64
    assert side["outputs"][0]["name"] == "logits" and side["outputs"][0]["max"] == [4, 10]
    assert "logits" in capsys.readouterr().out


def test_exported_weights_define_the_same_network(exported) -> None:
    from netdef.executor import execute

    model, weights, _ = exported
    net = ResNet.from_hdf5(weights).define("fp32", (64, 64))
    x = np.random.default_rng(9).standard_normal((2, 3, 64, 64)).astype(np.float32)
    logits = execute(net.definition, {"input": x})["logits"].double()
    with torch.no_grad():
        expected = model.double()(torch.from_numpy(x).double())
    model.float()
    assert float((logits - expected).norm() / expected.norm()) <= 1e-5


@pytest.mark.parametrize("extra, message", [
    (["--precision", "int8"], "needs --calib-cache"),
    (["--fp16-io"], "--fp16-io needs --precision fp16"),
    (["--calib-cache", "c.json"], "only used with --precision int8"),
])
def test_option_errors_are_clear(exported, capsys, extra, message) -> None:
    _, weights, work = exported
    rc = main(["build", "resnet18", "--weights", str(weights), "--out", str(work / "x.engine"), *extra])
    assert rc == 1 and message in capsys.readouterr().err
    assert not (work / "x.engine").exists()


def test_wrong_arch_and_missing_file_are_refused(exported, capsys, tmp_path) -> None:
    _, weights, _ = exported
    assert main(["build", "resnet50", "--weights", str(weights), "--out", str(tmp_path / "e")]) == 1
    assert "weights are for resnet18, not resnet50" in capsys.readouterr().err
    assert main(["build", "resnet18", "--weights", str(tmp_path / "none.h5"), "--out", str(tmp_path / "e")]) == 1
    assert "none.h5: weights file not found" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:  # argparse refuses before anything runs
        main(["build", "resnet18", "--weights", str(weights), "--out", str(tmp_path / "e"), "--input-size", "a,b"])
    assert info.value.code == 2 and "input size 'a,b': expected H,W" in capsys.readouterr().err


def test_input_size_parsing() -> None:
    from netdef.commands.build import parse_size

    assert parse_size("224") == (224, 224) and parse_size("416,320") == (416, 320) and parse_size("480x640") == (480, 640)
    with pytest.raises(Exception, match="expected H,W"):
        parse_size("1,2,3")
