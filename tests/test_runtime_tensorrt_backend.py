"""The TensorRT backend's own code on CPU: a host-memory cuda-python stand-in and an engine stand-in that
runs the definition with netdef's executor. What is checked: buffers sized for the profile max, copies,
by-name shapes and addresses, zero copy from device arrays, outputs into caller arrays, CUDA graph
capture/replay and its clean fallback, freeing everything on close."""
from __future__ import annotations

import threading

import numpy as np
import pytest

from netdef.runtime import InferenceSession, InputError, TensorRTBackend, cuda
from netdef.runtime.buffers import DeviceArray
from tests.test_runtime_fixtures import (C_IN, C_OUT, SIZE, FakeCudart, FakeDeviceArray, FakeEngine, int_network,
                                         rel_err, tiny_network, tiny_reference, tiny_weights)

BATCH = (1, 2, 5)


@pytest.fixture
def fake_cuda():
    fake = FakeCudart()
    previous = cuda.use_cudart(fake)
    yield fake
    cuda.use_cudart(previous)


@pytest.fixture(scope="module")
def weights():
    return tiny_weights(seed=7)


@pytest.fixture(scope="module")
def net(weights):
    return tiny_network(weights)


def _feeds(batch: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"x": rng.standard_normal((batch, C_IN, SIZE, SIZE)).astype(np.float32),
            "y": rng.standard_normal((batch, C_OUT, SIZE, SIZE)).astype(np.float32)}


def _session(net, fake, graph=False) -> InferenceSession:
    return InferenceSession(TensorRTBackend(FakeEngine(net, BATCH, fake), name="fake.engine", graph=graph))


def test_buffers_sized_for_profile_max_and_outputs_reshaped(fake_cuda, net, weights):
    with _session(net, fake_cuda) as s:
        buffers = s.backend.buffers
        assert list(buffers) == ["x", "y", "sum", "pooled"]
        assert buffers["x"].device.nbytes == 5 * C_IN * SIZE * SIZE * 4
        assert buffers["pooled"].host.nbytes == 5 * C_OUT * 4
        assert all(b.host.ptr in fake_cuda.pinned for b in buffers.values())
        assert s.memory() == {"context": 12345, "io_buffers": sum(b.device.nbytes for b in buffers.values())}
        for batch in (1, 5, 3):
            feeds = _feeds(batch, seed=batch)
            out = s.infer(feeds)
            ref = tiny_reference(weights, feeds["x"], feeds["y"])
            assert list(out) == ["sum", "pooled"]
            assert out["pooled"].shape == (batch, C_OUT)
            for name in out:
                assert rel_err(out[name], ref[name]) < 1e-5
        with pytest.raises(InputError, match="input 'x': dim 0 is 6, outside the profile range 1..5"):
            s.infer(_feeds(6, seed=0))
    assert not fake_cuda.memory and not fake_cuda.streams  # close() freed every buffer and the stream


def test_device_arrays_are_used_in_place(fake_cuda, net, weights):
    feeds = _feeds(2, seed=21)
    ref = tiny_reference(weights, feeds["x"], feeds["y"])
    with _session(net, fake_cuda) as s:
        dx = FakeDeviceArray(fake_cuda, feeds["x"].shape, np.float32, feeds["x"])
        pooled = FakeDeviceArray(fake_cuda, (2, C_OUT), np.float32)
        fake_cuda.copies.clear()
        out = s.infer({"x": dx, "y": feeds["y"]}, out={"pooled": pooled})
        assert s.backend.tensor_addresses["x"] == dx.ptr and s.backend.tensor_addresses["pooled"] == pooled.ptr
        # only y goes host-to-device and only sum comes back: x and pooled are never copied
        assert sorted(fake_cuda.copies) == sorted([("HtoD", feeds["y"].nbytes), ("DtoH", ref["sum"].size * 4)])
        assert out["pooled"] is pooled
        assert rel_err(pooled.to_host(), ref["pooled"]) < 1e-5
        assert rel_err(out["sum"], ref["sum"]) < 1e-5
        with pytest.raises(InputError, match="device array dtype float16, expected float32"):
            s.infer({"x": FakeDeviceArray(fake_cuda, (2, C_IN, SIZE, SIZE), np.float16), "y": feeds["y"]})
        with pytest.raises(TypeError, match="must be a device array"):
            s.infer(feeds, out={"pooled": np.zeros((2, C_OUT), np.float32)})


def test_non_contiguous_device_array_is_refused(fake_cuda):
    arr = FakeDeviceArray(fake_cuda, (2, 3), np.float32)

    class Strided:
        __cuda_array_interface__ = dict(arr.__cuda_array_interface__, strides=(4, 8))

    with pytest.raises(ValueError, match="not C-contiguous"):
        DeviceArray(Strided())


def test_integer_round_trip(fake_cuda):
    with InferenceSession(TensorRTBackend(FakeEngine(int_network(), (1, 3, 4), fake_cuda))) as s:
        ids = np.arange(-10, 10, dtype=np.int32).reshape(4, 5)
        out = s.infer({"ids": ids})
        assert out["shifted"].dtype == np.int32
        np.testing.assert_array_equal(out["shifted"], ids + 7)


def test_graph_capture_replays_and_recaptures_on_new_shapes(fake_cuda, net, weights):
    with _session(net, fake_cuda, graph=True) as s:
        context = s.backend.context
        results = []
        for batch, seed in ((2, 1), (2, 2), (2, 3), (4, 4), (4, 5)):
            feeds = _feeds(batch, seed)
            out = s.infer(feeds)
            ref = tiny_reference(weights, feeds["x"], feeds["y"])
            results.append(rel_err(out["sum"], ref["sum"]))
        assert max(results) < 1e-5  # replayed graphs see each call's new input data
        assert len(s.backend.graphs) == 2 and s.backend.graph_launches == 3
        assert fake_cuda.graph_launches == 3 and context.direct_launches == 2  # one plain launch per new shape
        assert context.launches == 5
        assert s.backend.graph_fallback is None


def test_graph_capture_refused_falls_back_cleanly(net, weights, caplog):
    fake = FakeCudart(refuse_capture=True)
    previous = cuda.use_cudart(fake)
    try:
        with _session(net, fake, graph=True) as s:
            for seed in (1, 2):
                feeds = _feeds(2, seed)
                out = s.infer(feeds)
                assert rel_err(out["sum"], tiny_reference(weights, feeds["x"], feeds["y"])["sum"]) < 1e-5
            assert "cudaStreamBeginCapture() failed: cudaErrorStreamCaptureUnsupported" in s.backend.graph_fallback
            assert s.backend.context.direct_launches == 2 and fake.graph_launches == 0
        assert "launching without graphs" in caplog.text
    finally:
        cuda.use_cudart(previous)


def test_failed_allocation_frees_what_was_allocated(net):
    fake = FakeCudart(fail_malloc_after=3)
    previous = cuda.use_cudart(fake)
    try:
        with pytest.raises(cuda.CudaError, match=r"cudaMalloc\(\d+\) failed: cudaErrorMemoryAllocation"):
            TensorRTBackend(FakeEngine(net, BATCH, fake))
        assert not fake.memory and not fake.streams
    finally:
        cuda.use_cudart(previous)


def test_a_second_context_needs_a_free_optimization_profile(fake_cuda, net):
    engine = FakeEngine(net, BATCH, fake_cuda)
    with InferenceSession(TensorRTBackend(engine, name="one.engine")):
        streams = set(fake_cuda.streams)
        with pytest.raises(RuntimeError, match="one.engine: every optimization profile of this engine \\(1\\) is in use"):
            TensorRTBackend(engine, name="one.engine")
        assert fake_cuda.streams == streams  # refused before any stream or context was made
        engine.num_optimization_profiles = 2
        second = TensorRTBackend(engine)
        assert second.profile == 1 and second.context.active_optimization_profile == 1
        second.close()
    third = TensorRTBackend(engine)  # closing the first session gave profile 0 back
    assert third.profile == 0 and third.context.active_optimization_profile == 0
    third.close()


def test_two_sessions_on_two_engines_have_their_own_streams(fake_cuda, net, weights):
    with InferenceSession(TensorRTBackend(FakeEngine(net, BATCH, fake_cuda))) as a, \
            InferenceSession(TensorRTBackend(FakeEngine(net, BATCH, fake_cuda))) as b:
        assert a.backend.stream.ptr != b.backend.stream.ptr
        fa, fb = _feeds(1, 1), _feeds(3, 2)
        ha, hb = a.infer_async(fa), b.infer_async(fb)
        ra, rb = ha.wait(), hb.wait()
        assert rel_err(ra["sum"], tiny_reference(weights, fa["x"], fa["y"])["sum"]) < 1e-5
        assert rel_err(rb["sum"], tiny_reference(weights, fb["x"], fb["y"])["sum"]) < 1e-5


class _PerThreadDevice(FakeCudart):
    """Records the current device per thread, as the CUDA runtime keeps it, at each copy and launch."""

    def __init__(self) -> None:
        super().__init__()
        self.local = threading.local()
        self.copy_devices: list[int] = []

    def cudaSetDevice(self, device: int) -> tuple:
        self.local.device = device
        return super().cudaSetDevice(device)

    def current(self) -> int:
        return getattr(self.local, "device", 0)

    def cudaMemcpyAsync(self, *args) -> tuple:
        self.copy_devices.append(self.current())
        return super().cudaMemcpyAsync(*args)


def test_a_session_on_gpu_1_works_from_another_thread(net, weights, monkeypatch):
    """A server opens a session in one thread and calls it from an instance thread, whose current device is
    still 0: every call must make the session's GPU current. The engine is deserialized on that GPU too."""
    import netdef.engine

    fake = _PerThreadDevice()
    previous = cuda.use_cudart(fake)
    loaded_on = []

    def load_engine(path, check_binding=True, register_plugins=None):
        loaded_on.append(fake.current())
        return netdef.engine.LoadedEngine(FakeEngine(net, BATCH, fake), None, {}, path)

    monkeypatch.setattr(netdef.engine, "load_engine", load_engine)
    try:
        session = InferenceSession.from_engine("gpu1.engine", device=1)
        assert loaded_on == [1]
        feeds = _feeds(2, 5)
        results = []
        worker = threading.Thread(target=lambda: results.append(session.infer(feeds)))
        worker.start()
        worker.join()
        assert fake.copy_devices and set(fake.copy_devices) == {1}
        assert rel_err(results[0]["sum"], tiny_reference(weights, feeds["x"], feeds["y"])["sum"]) < 1e-5
        session.close()
    finally:
        cuda.use_cudart(previous)


def test_an_input_filled_in_its_staging_buffer_is_not_copied_again(fake_cuda, net, weights, monkeypatch):
    copies = []
    real_copyto = np.copyto
    monkeypatch.setattr(np, "copyto", lambda dst, src, **kw: (copies.append(dst.shape), real_copyto(dst, src, **kw)))
    feeds = _feeds(3, 8)
    with _session(net, fake_cuda) as s:
        staged = s.input_buffer("x", (3, C_IN, SIZE, SIZE))
        assert staged.ctypes.data == s.backend.buffers["x"].host.ptr  # the pinned buffer itself
        np.concatenate([feeds["x"][:1], feeds["x"][1:]], out=staged)
        out = s.infer({"x": staged, "y": feeds["y"]})
        assert copies == [feeds["y"].shape]  # only y went through a host-side copy
        assert rel_err(out["sum"], tiny_reference(weights, feeds["x"], feeds["y"])["sum"]) < 1e-5
        with pytest.raises(KeyError, match="no input 'sum'"):
            s.input_buffer("sum", (3, C_OUT, SIZE, SIZE))
        with pytest.raises(ValueError, match="the pinned buffer holds"):
            s.input_buffer("x", (6, C_IN, SIZE, SIZE))
    assert InferenceSession.from_definition(net, batch=BATCH).input_buffer("x", (1, C_IN, SIZE, SIZE)) is None
