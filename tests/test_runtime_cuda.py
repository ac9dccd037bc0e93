"""The real cuda-python and TensorRT-RTX on this GPU-less machine: failures are clear errors, not crashes."""
from __future__ import annotations

import subprocess
import sys

import pytest

from netdef.engine import BuildSettings, EngineFileError, save_engine
from netdef.runtime import CudaError, InferenceSession, cuda
from tests.test_runtime_fixtures import FakeError, tiny_network, tiny_weights


def _has_gpu() -> bool:
    try:
        return cuda.device_count() > 0
    except CudaError:
        return False


def _has_cuda_python() -> bool:
    try:
        cuda.cudart()
        return True
    except CudaError:
        return False


no_gpu = pytest.mark.skipif(_has_gpu(), reason="checks the behaviour without a usable GPU")
needs_cuda_python = pytest.mark.skipif(not _has_cuda_python(), reason="the optional cuda extra (cuda-python) is "
                                       "not installed")


@no_gpu
@needs_cuda_python
def test_cuda_failure_names_call_and_error():
    with pytest.raises(CudaError) as err:
        cuda.DeviceBuffer(4096)
    assert err.value.call == "cudaMalloc(4096)"
    assert err.value.error in ("cudaErrorNoDevice", "cudaErrorInsufficientDriver")
    assert str(err.value).startswith(f"CUDA call cudaMalloc(4096) failed: {err.value.error} (")


def test_check_unpacks_results():
    assert cuda.check((FakeError.cudaSuccess,), "f()") is None
    assert cuda.check((FakeError.cudaSuccess, 5), "f()") == 5
    assert cuda.check((FakeError.cudaSuccess, 1, 2), "f()") == (1, 2)


@no_gpu
def test_engine_deserialization_without_a_usable_gpu_fails_with_a_clear_message(tmp_path):
    net = tiny_network(tiny_weights())
    plan = net.build(BuildSettings(batch=(1, 2, 4), progress=False), arch="tiny")
    path = save_engine(plan, tmp_path / "tiny.engine")
    # in a child process: a crash there (instead of an exception) fails this test instead of the suite
    code = ("import sys\nfrom netdef.runtime import InferenceSession\nfrom netdef.engine import EngineFileError\n"
            f"try:\n    InferenceSession.from_engine({str(path)!r})\n"
            "except EngineFileError as exc:\n    print(exc)\n    sys.exit(3)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 3, done.stderr[-2000:]
    assert "tiny.engine: TensorRT" in done.stdout and "could not deserialize the engine" in done.stdout
    assert "needs a CUDA GPU" in done.stdout
    with pytest.raises(EngineFileError, match="could not deserialize"):  # and in-process, as the CLI sees it
        InferenceSession.from_engine(path)
