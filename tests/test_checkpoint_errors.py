"""Checkpoints that are not a weights-only state dict of the architecture get one clear line: what the file
is and what to do, never torch's advice to load it with weights_only=False (which would run its code)."""
from __future__ import annotations

import os

import pytest
import torch

from netdef.cli import main
from networks.resnet import torch_resnet
from weights_export.errors import CheckpointError
from weights_export.pytorch import load_checkpoint


def _write(kind: str, path) -> None:
    if kind == "pickled model":
        torch.save(torch.nn.Sequential(torch.nn.Linear(2, 2)), path)
    elif kind == "random bytes":
        path.write_bytes(os.urandom(4096))
    elif kind == "hdf5":
        import h5py

        with h5py.File(path, "w") as f:
            f["x"] = [1.0]
    elif kind == "empty file":
        path.write_bytes(b"")
    elif kind == "empty state dict":
        torch.save({}, path)
    elif kind == "truncated":
        torch.save({"w": torch.ones(1000)}, path)
        path.write_bytes(path.read_bytes()[:600])


CASES = {
    "pickled model": "holds pickled Python objects (torch.nn.modules.container.Sequential, torch.nn.modules.linear."
                     "Linear), not just tensors: a whole model saved with torch.save(model)? netdef loads only "
                     "weights (weights_only=True); save the weights with torch.save(model.state_dict(), PATH)",
    "random bytes": "not a PyTorch weights checkpoint (neither a zip checkpoint nor a pickle of tensors)",
    "hdf5": "is an HDF5 file (a netdef weights file?), not a PyTorch checkpoint",
    "empty file": "the file is empty (0 bytes), not a PyTorch checkpoint",
    "empty state dict": "the checkpoint holds no tensors (an empty state dict)",
    "truncated": "a corrupt or truncated PyTorch checkpoint",
}


@pytest.mark.parametrize("kind", list(CASES))
def test_unusable_checkpoints_say_what_they_are(tmp_path, kind):
    path = tmp_path / "ckpt.pth"
    _write(kind, path)
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(path)
    message = str(err.value)
    assert message.startswith(f"{path}: ") and CASES[kind] in message
    assert "weights_only=False" not in message and "weights_only` set to `False" not in message


def test_checkpoint_of_another_resnet_names_the_architecture(tmp_path, capsys):
    ckpt = tmp_path / "r50.pth"
    torch.save({f"module.{k}": v for k, v in torch_resnet("resnet50", num_classes=10).state_dict().items()}, ckpt)
    out = tmp_path / "r18.h5"
    assert main(["export", "--arch", "resnet18", "--checkpoint", str(ckpt), "--out", str(out), "--num-classes", "10"]) == 1
    err = capsys.readouterr().err
    assert f"{ckpt}: not a resnet18 checkpoint: its tensors are those of resnet50 (export it with --arch resnet50)" in err
    assert len(err.splitlines()) == 1 and not out.exists() and list(tmp_path.iterdir()) == [ckpt]


def test_cli_says_save_state_dict_for_a_pickled_model(tmp_path, capsys):
    ckpt = tmp_path / "model.pth"
    _write("pickled model", ckpt)
    assert main(["export", "--arch", "resnet18", "--checkpoint", str(ckpt), "--out", str(tmp_path / "o.h5")]) == 1
    err = capsys.readouterr().err
    assert "torch.save(model.state_dict(), PATH)" in err and "weights_only=False" not in err
    assert len(err.strip().splitlines()) == 1
