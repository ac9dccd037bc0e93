"""The docs' custom-layer example, run exactly as written: ONNX cannot export the model, netdef can build it."""
from __future__ import annotations

import copy
import importlib.util
import re
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "docs" / "examples" / "custom_layer.py"
DOC = ROOT / "docs" / "custom-layers.md"
MODULE_NAME = "netdef_docs_custom_layer_example"


@pytest.fixture(scope="module")
def example():
    """The example file imported once (it defines a torch.library op, which exists once per process)."""
    if MODULE_NAME not in sys.modules:
        spec = importlib.util.spec_from_file_location(MODULE_NAME, EXAMPLE)
        module = importlib.util.module_from_spec(spec)
        sys.modules[MODULE_NAME] = module
        spec.loader.exec_module(module)
    return sys.modules[MODULE_NAME]


@pytest.fixture
def model(example):
    """TinyNet with realistic BatchNorm statistics and fresh weights."""
    torch.manual_seed(11)
    net = example.TinyNet().eval()
    with torch.no_grad():
        net.bn.running_mean.uniform_(-0.5, 0.5)
        net.bn.running_var.uniform_(0.5, 2.0)
        net.bn.weight.uniform_(0.5, 1.5)
        net.bn.bias.uniform_(-0.3, 0.3)
    return net


def test_the_doc_shows_the_example_file_verbatim():
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)
    assert EXAMPLE.read_text() in blocks


@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::FutureWarning")
def test_onnx_export_of_the_example_model_fails(example, model, tmp_path):
    x = torch.randn(1, 3, 16, 16)
    for dynamo in (True, False):  # the default torch.export-based exporter and the TorchScript one
        with pytest.raises(Exception) as err:
            torch.onnx.export(model, (x,), str(tmp_path / f"tiny_{dynamo}.onnx"), dynamo=dynamo)
        assert "soft_clip" in str(err.value) or "soft_clip" in repr(err.value.__cause__), err.value
        assert not (tmp_path / f"tiny_{dynamo}.onnx").exists()


def test_netdef_builds_executes_and_verifies_the_example_model(example, model):
    x = np.random.default_rng(23).standard_normal((2, 3, 16, 16)).astype(np.float32)
    plan, outputs, report = example.build_and_verify(model, x)
    assert len(plan.data) > 0 and plan.meta["plugins"] == []  # auto lowering went native on this binding
    with torch.no_grad():
        expected = copy.deepcopy(model).double()(torch.from_numpy(x).double())
    got = outputs["output"].double()
    assert float((got - expected).norm() / expected.norm()) <= 1e-6
    assert report.ok, report.table()
    clip = next(c for c in report.layers if c.name == "clip")  # the custom layer itself, matched by module path
    assert clip.rel <= 1e-6 and clip.shape == (2, 8, 16, 16)
