"""Without the optional `cuda` extra (cuda-python) netdef still works where it needs no GPU, and says what to
install where it does. The whole suite passes that way too: `python -m pytest -q -p tests.no_cuda`."""
from __future__ import annotations

import sys

import numpy as np
import pytest

from netdef.cli import main
from netdef.runtime import CudaError, InferenceSession, cuda
from tests.test_runtime_fixtures import C_IN, C_OUT, SIZE, tiny_network, tiny_weights


@pytest.fixture
def no_cuda_python(monkeypatch):
    for name in [n for n in sys.modules if n == "cuda" or n.startswith("cuda.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "cuda", None)  # `import cuda...` now raises ImportError
    previous = cuda.use_cudart(None)
    yield
    cuda.use_cudart(previous)


def test_runtime_without_cuda_python(no_cuda_python, capsys):
    with pytest.raises(CudaError, match="install cuda-python"):
        cuda.cudart()
    with pytest.raises(CudaError, match="install cuda-python"):
        cuda.DeviceBuffer(64)
    assert main(["info"]) == 0 and "CUDA" in capsys.readouterr().out
    rng = np.random.default_rng(0)
    feeds = {"x": rng.standard_normal((2, C_IN, SIZE, SIZE)).astype(np.float32),
             "y": rng.standard_normal((2, C_OUT, SIZE, SIZE)).astype(np.float32)}
    with InferenceSession.from_definition(tiny_network(tiny_weights())) as session:  # the executor needs no CUDA
        assert session.infer(feeds)["pooled"].shape == (2, C_OUT)


def test_the_plugin_blocks_cuda_imports():
    from tests.no_cuda import BlockCuda

    with pytest.raises(ModuleNotFoundError, match="blocked by tests.no_cuda"):
        BlockCuda().find_spec("cuda.bindings")
    assert BlockCuda().find_spec("numpy") is None
