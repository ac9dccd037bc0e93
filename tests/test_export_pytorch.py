"""PyTorch export: ResNet-50 round trips bit-identically (module, DataParallel checkpoint, CLI), layer
hyper-parameters are recorded, activations follow netdef's naming, bad checkpoints name file/layer/tensor."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from netdef.cli import main as netdef_main
from networks.resnet import random_bn_init, resnet18_reference, resnet50_reference
from weights_export.errors import CheckpointError, WeightsExportError
from weights_export.hdf5 import WeightsFile
from weights_export.pytorch import export_module, load_checkpoint

torch.set_num_threads(2)


@pytest.fixture(scope="module")
def resnet50():
    model = random_bn_init(resnet50_reference(seed=1), seed=2)
    with torch.no_grad():  # make every tensor differ from its init so a wrong mapping cannot pass
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 1e-3)
    return model


def assert_bit_identical(path, state):
    with WeightsFile(path) as wf:
        assert set(wf) == set(state), set(wf) ^ set(state)
        for key, tensor in state.items():
            expected = tensor.detach().numpy()
            got = wf[key]
            assert got.dtype == expected.dtype and got.shape == expected.shape, key
            assert got.tobytes() == expected.tobytes(), key


def test_resnet50_module_round_trip_and_layer_attrs(resnet50, tmp_path):
    out = tmp_path / "r50.h5"
    export_module(resnet50, out, "resnet50", input_shape=(1, 3, 224, 224), mean=[0.485, 0.456, 0.406],
                  std=[0.229, 0.224, 0.225])
    state = resnet50.state_dict()
    assert len(state) == 320
    assert_bit_identical(out, state)
    with WeightsFile(out) as wf:
        assert wf.attrs["arch"] == "resnet50" and wf.attrs["source"] == "pytorch"
        assert wf.attrs["input_shape"] == [1, 3, 224, 224] and wf.attrs["std"] == pytest.approx([0.229, 0.224, 0.225])
        assert wf.activations is None
        conv = wf.layer_attrs("layer2.0.conv2")
        assert conv["type"] == "Conv2d" and conv["kernel_size"] == [3, 3] and conv["stride"] == [2, 2]
        assert conv["padding"] == [1, 1] and conv["dilation"] == [1, 1] and conv["groups"] == 1
        assert conv["bias"] is False and conv["in_channels"] == 128 and conv["out_channels"] == 128
        bn = wf.layer_attrs("layer2.0.bn2")
        assert bn["type"] == "BatchNorm2d" and bn["eps"] == 1e-5 and bn["momentum"] == 0.1
        assert wf.layer_attrs("layer2.0.downsample.0")["stride"] == [2, 2]
        assert wf.layer_attrs("maxpool") == {**wf.layer_attrs("maxpool"), "type": "MaxPool2d", "kernel_size": 3,
                                             "stride": 2, "padding": 1, "ceil_mode": False}
        assert wf.layer_attrs("avgpool")["output_size"] == [1, 1]
        fc = wf.layer_attrs("fc")
        assert (fc["type"], fc["in_features"], fc["out_features"], fc["bias"]) == ("Linear", 2048, 1000, True)
        assert wf.layer_attrs("layer1.0.relu")["type"] == "ReLU"
        assert wf.groups()[:3] == ["conv1", "bn1", "relu"]


def test_dataparallel_checkpoint_through_the_cli_is_bit_identical(resnet50, tmp_path):
    ckpt = tmp_path / "dp.pth"
    torch.save({"epoch": 3, "state_dict": torch.nn.DataParallel(resnet50).state_dict()}, ckpt)
    assert next(iter(torch.load(ckpt, weights_only=True)["state_dict"])).startswith("module.")
    out = tmp_path / "dp.h5"
    assert netdef_main(["export", "--arch", "resnet50", "--checkpoint", str(ckpt), "--out", str(out),
                        "--no-progress"]) == 0
    assert_bit_identical(out, resnet50.state_dict())
    with WeightsFile(out) as wf:
        assert wf.layer_attrs("layer4.2.conv3")["kernel_size"] == [1, 1]
        assert wf.attrs["checkpoint"] == "dp.pth"


def test_checkpoint_layouts_and_prefixes(tmp_path):
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
    state = model.state_dict()
    for name, obj in {
        "bare": state,
        "model": {"model": {f"_orig_mod.{k}": v for k, v in state.items()}, "optimizer": {}},
        "compiled_dp": {"model_state_dict": {f"_orig_mod.module.{k}": v for k, v in state.items()}},
    }.items():
        torch.save(obj, tmp_path / f"{name}.pt")
        loaded = load_checkpoint(tmp_path / f"{name}.pt")
        assert list(loaded) == list(state), name
        assert all(torch.equal(loaded[k], state[k]) for k in state)


def test_bad_checkpoints_name_the_file(tmp_path):
    with pytest.raises(CheckpointError, match="missing.pt: checkpoint not found"):
        load_checkpoint(tmp_path / "missing.pt")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a zip")
    with pytest.raises(CheckpointError, match="junk.pt: not a PyTorch weights checkpoint"):
        load_checkpoint(junk)
    nested = tmp_path / "nested.pt"
    torch.save({"weights": {"a": torch.ones(2)}, "epoch": 1}, nested)
    with pytest.raises(CheckpointError, match=r"nested.pt: not a state dict: entries \['weights', 'epoch'\]"):
        load_checkpoint(nested)


def test_nan_weights_name_checkpoint_layer_and_tensor(tmp_path):
    model = resnet18_reference(seed=0)
    state = model.state_dict()
    state["layer3.1.bn2.running_var"][5] = float("nan")
    ckpt = tmp_path / "nan.pth"
    torch.save(state, ckpt)
    with pytest.raises(WeightsExportError,
                       match=r"nan\.pth: NaN/Inf values in tensor\(s\): layer3\.1\.bn2\.running_var \(1 of 256\)"):
        export_module(load_checkpoint(ckpt), tmp_path / "out.h5", "resnet18", checkpoint=ckpt)
    assert not (tmp_path / "out.h5").exists()


def test_cli_reports_mismatched_checkpoint(tmp_path, capsys):
    state = resnet18_reference(seed=0, num_classes=10).state_dict()
    ckpt = tmp_path / "r18.pth"
    torch.save({k: v for k, v in state.items() if k != "layer1.0.conv1.weight"}, ckpt)
    out = tmp_path / "x.h5"
    assert netdef_main(["export", "--arch", "resnet18", "--checkpoint", str(ckpt), "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert "r18.pth: does not match resnet18" in err and "layer1.0.conv1.weight" in err and not out.exists()
    assert "fc.weight (10, 512) vs (1000, 512)" in err and "--num-classes" in err  # a 10-class head
    torch.save(state, ckpt)
    assert netdef_main(["export", "--arch", "resnet18", "--checkpoint", str(ckpt), "--out", str(out),
                        "--num-classes", "10", "--no-progress"]) == 0
    with WeightsFile(out) as wf:
        assert wf.shape_of("fc.weight") == (10, 512)
    assert_bit_identical(out, state)


def test_cli_activations_of_a_resnet18_checkpoint(tmp_path, capsys):
    model = random_bn_init(resnet18_reference(seed=4), seed=5)
    ckpt, out = tmp_path / "r18.pth", tmp_path / "r18.h5"
    torch.save({"model": model.state_dict()}, ckpt)
    args = ["export", "--arch", "resnet18", "--checkpoint", str(ckpt), "--out", str(out), "--no-progress"]
    assert netdef_main(args) == 0  # the architecture's defaults are recorded
    with WeightsFile(out) as wf:
        assert wf.attrs["input_shape"] == [1, 3, 224, 224] and wf.attrs["mean"] == pytest.approx([0.485, 0.456, 0.406])
        assert wf.activations is None
    assert netdef_main(args + ["--activations", "--input-shape", "2,3,32,32", "--seed", "3",
                               "--mean", "0.5,0.5,0.5", "--std", "0.2,0.2,0.2"]) == 0
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        logits = model(x).numpy()
        block = model.layer1[0]
        stem = model.maxpool(model.relu(model.bn1(model.conv1(x))))
        first_relu = block.relu(block.bn1(block.conv1(stem)))
    with WeightsFile(out) as wf:
        acts = wf.activations
        np.testing.assert_array_equal(acts["input"], x.numpy())
        np.testing.assert_allclose(acts["output"], logits, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(acts["layer1.0.relu"], first_relu.numpy(), rtol=1e-5, atol=1e-6)
        # A BasicBlock calls its ReLU twice: after bn1 and after the residual add.
        assert {"layer1.0.relu#1", "layer4.1.bn2", "fc"} <= set(acts) and "layer1.0.relu#2" not in acts
        np.testing.assert_allclose(acts["fc"], logits, rtol=1e-5, atol=1e-5)
        assert wf.attrs["mean"] == [0.5, 0.5, 0.5] and wf.attrs["input_shape"] == [2, 3, 32, 32]


class TwiceReLU(torch.nn.Module):
    """One ReLU module called twice (as torchvision's blocks do): netdef names the outputs `relu`, `relu#1`."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)
        self.bn = torch.nn.BatchNorm2d(4)
        self.relu = torch.nn.ReLU()
        self.pool = torch.nn.AvgPool2d(2)
        self.act = torch.nn.LeakyReLU(0.1)

    def forward(self, x):
        x = self.relu(self.bn(self.conv(x)))
        return self.act(self.relu(self.pool(x) - 0.5))


def test_activations_follow_netdef_names_and_match_torch(tmp_path):
    torch.manual_seed(0)
    model = random_bn_init(TwiceReLU(), seed=3).eval()
    out = tmp_path / "acts.h5"
    export_module(model, out, "twice", input_shape=(2, 3, 8, 8), activations=True, seed=7)
    x = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        conv = model.conv(x)
        first = model.relu(model.bn(conv))
        second = model.relu(model.pool(first) - 0.5)
        expected = {"input": x, "conv": conv, "relu": first, "pool": model.pool(first), "relu#1": second,
                    "act": model.act(second), "output": model(x)}
    with WeightsFile(out) as wf:
        acts = wf.activations
        assert set(acts) == set(expected) | {"bn"}
        for name, value in expected.items():
            np.testing.assert_array_equal(acts[name], value.numpy(), err_msg=name)
        assert wf.attrs["activations_seed"] == 7
        assert wf.layer_attrs("act")["negative_slope"] == pytest.approx(0.1)
        assert wf.layer_attrs("pool")["kernel_size"] == 2


def test_state_dict_only_export_infers_what_shapes_tell(tmp_path):
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, bias=False), torch.nn.BatchNorm2d(4), torch.nn.Flatten(),
                                torch.nn.Linear(4, 2))
    state = model.state_dict()
    state["1.weight"] = state["1.weight"].to(torch.bfloat16)
    out = tmp_path / "sd.h5"
    export_module(state, out, "custom")
    with WeightsFile(out) as wf:
        assert wf.layer_attrs("0") == {"type": "Conv2d", "out_channels": 4, "kernel_size": [3, 3], "bias": False,
                                       "inferred": True}
        assert wf.layer_attrs("1")["type"] == "BatchNorm" and wf.layer_attrs("3")["in_features"] == 4
        assert wf["1.weight"].dtype == np.float32 and wf.tensor_attrs("1.weight")["torch_dtype"] == "bfloat16"
        np.testing.assert_array_equal(wf["1.weight"], state["1.weight"].float().numpy())
    with pytest.raises(ValueError, match="activations need a module"):
        export_module(state, out, "custom", input_shape=(1, 3, 4, 4), activations=True)
