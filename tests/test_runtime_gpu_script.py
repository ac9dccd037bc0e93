"""bench/runtime_gpu.py as far as it goes without a GPU: .npz weights -> HDF5 -> ResNet-18 engine (batch
1..8..32) builds; loading then fails with the clear deserialization error, every check is reported, exit 1."""
from __future__ import annotations

import importlib.util
import io
from pathlib import Path

import numpy as np

from netdef.runtime import CudaError, cuda

SCRIPT = Path(__file__).resolve().parent.parent / "bench" / "runtime_gpu.py"


def _gpu_usable() -> bool:
    try:
        return cuda.device_count() > 0
    except CudaError:
        return False


def test_gpu_script_builds_and_reports_every_check(tmp_path, capsys):
    if _gpu_usable():
        import pytest

        pytest.skip("a GPU is present: the script runs for real there")
    from networks.resnet import random_bn_init, torch_resnet

    state = random_bn_init(torch_resnet("resnet18", seed=0), seed=1).state_dict()
    buf = io.BytesIO()
    np.savez(buf, **{k: v.numpy() for k, v in state.items()})
    (tmp_path / "r18.npz").write_bytes(buf.getvalue())
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "ref.npz", input=rng.standard_normal((32, 3, 224, 224)).astype(np.float32),
             logits=rng.standard_normal((32, 1000)))
    spec = importlib.util.spec_from_file_location("runtime_gpu", SCRIPT)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    code = script.main([str(tmp_path / "r18.npz"), str(tmp_path / "ref.npz"), "--workdir", str(tmp_path / "work"),
                        "--iterations", "2"])
    out = capsys.readouterr().out
    assert code == 1 and "RESULT: FAIL" in out
    assert "PASS build:" in out and "sidecar arch resnet18" in out
    assert "FAIL load: EngineFileError:" in out and "could not deserialize the engine" in out
    for check in ("reference", "dynamic batch", "zero copy", "two streams", "cuda graph", "latency", "netdef bench"):
        assert f"FAIL {check}: not run: no session (load failed)" in out
    assert (tmp_path / "work" / "r18.h5").exists() and (tmp_path / "work" / "resnet18_fp32.engine.json").exists()
