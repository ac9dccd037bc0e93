"""The serving package's parts without a server: Triton signatures from runtime specs and sidecars, the
instance function that joins and splits batches, instance placement, the server process's environment,
the TensorRT-backend model repository (its config parsed with Triton's own protobuf), the CLI's signals."""
from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import stat
import subprocess
import sys
import sysconfig

import numpy as np
import pytest

from netdef.engine import save_engine
from netdef.runtime import InferenceSession
from netdef.serve import environment
from netdef.serve.batching import BatchedInfer
from netdef.serve.placement import instance_devices, parse_gpus
from netdef.serve.repository import RepositoryOptions, config_text, write_repository
from netdef.serve.signature import ModelSignature, SignatureError, model_name
from netdef.runtime.buffers import TensorSpec
from netdef.runtime import TensorRTBackend, cuda
from tests.test_runtime_fixtures import (C_IN, C_OUT, SIZE, FakeCudart, FakeEngine, rel_err, tiny_network,
                                         tiny_weights)

F32 = np.dtype(np.float32)


@pytest.fixture(scope="module")
def session():
    import torch

    torch.set_num_threads(1)
    with InferenceSession.from_definition(tiny_network(tiny_weights(seed=5)), batch=(1, 4, 6)) as s:
        yield s


def _spec(name: str, is_input: bool, shape: tuple, lo: int = 1, hi: int = 8, dtype=F32) -> TensorSpec:
    def at(b: int) -> tuple:
        return tuple(b if d < 0 else d for d in shape)

    return TensorSpec(name, is_input, np.dtype(dtype), shape, at(lo), at(hi))


# --- signature ---------------------------------------------------------------------------------------------

def test_signature_of_a_session_drops_the_batch_dim_and_takes_the_profile(session):
    sig = ModelSignature.from_specs("tiny", session.inputs + session.outputs, opt_batch=4)
    assert [(t.name, t.triton_type, t.dims) for t in sig.inputs] == [("x", "FP32", (C_IN, SIZE, SIZE)),
                                                                    ("y", "FP32", (C_OUT, SIZE, SIZE))]
    assert [(t.name, t.dims) for t in sig.outputs] == [("sum", (C_OUT, SIZE, SIZE)), ("pooled", (C_OUT,))]
    assert (sig.batch_limit, sig.preferred_batch_sizes()) == (6, [4, 6])
    assert ModelSignature.from_specs("tiny", session.inputs + session.outputs, max_batch=5).batch_limit == 5
    assert ModelSignature.from_specs("tiny", session.inputs + session.outputs, opt_batch=1).preferred_batch_sizes() == [6]


def test_signature_refuses_what_triton_cannot_batch():
    out = _spec("out", False, (-1, 10))
    with pytest.raises(SignatureError, match="m: the batch range starts at 2; Triton sends batches from 1"):
        ModelSignature.from_specs("m", [_spec("in", True, (-1, 3), lo=2), out])
    with pytest.raises(SignatureError, match=r"m: inputs \['b'\] have no dynamic batch dim"):
        ModelSignature.from_specs("m", [_spec("a", True, (-1, 3)), _spec("b", True, (4, 3)), out])
    with pytest.raises(SignatureError, match=r"m: outputs \['stats'\] have no batch dim"):
        ModelSignature.from_specs("m", [_spec("in", True, (-1, 3)), _spec("stats", False, (10,))])
    with pytest.raises(SignatureError, match=r"m: --max-batch 9 is outside the engine's batch range 1..8"):
        ModelSignature.from_specs("m", [_spec("in", True, (-1, 3)), out], max_batch=9)
    with pytest.raises(SignatureError, match=r"m: Triton has no data type for 'in' \(float64\)"):
        ModelSignature.from_specs("m", [_spec("in", True, (-1, 3), dtype=np.float64), out])


def test_fixed_shapes_give_max_batch_0_and_unbounded_ranges_a_cap():
    fixed = ModelSignature.from_specs("m", [_spec("in", True, (2, 3)), _spec("out", False, (2, 10))])
    assert (fixed.batch_limit, fixed.inputs[0].dims, fixed.batched) == (0, (2, 3), False)
    unbounded = ModelSignature.from_specs("m", [_spec("in", True, (-1, 3), hi=2**31 - 1), _spec("o", False, (-1, 1))])
    assert unbounded.batch_limit == 32


def test_model_names():
    assert model_name("/x/r50.fp16.engine") == "r50.fp16"
    assert model_name("/x/my model+1.engine") == "my_model_1"
    assert model_name(None, fallback="resnet18") == "resnet18"
    assert model_name("a.engine", "custom-1") == "custom-1"
    with pytest.raises(SignatureError, match="model name 'a b'"):
        model_name("a.engine", "a b")


# --- the instance function ------------------------------------------------------------------------------------

@pytest.fixture
def trt_session():
    """The TensorRT backend over host-memory CUDA and an engine stand-in (pinned staging buffers included)."""
    fake = FakeCudart()
    previous = cuda.use_cudart(fake)
    try:
        engine = FakeEngine(tiny_network(tiny_weights(seed=5)), (1, 4, 6), fake)
        with InferenceSession(TensorRTBackend(engine, name="fake.engine")) as s:
            yield s
    finally:
        cuda.use_cudart(previous)


@pytest.mark.parametrize("kind", ["netdef", "tensorrt"])
def test_batched_infer_joins_requests_and_gives_each_its_own_items(kind, request):
    session = request.getfixturevalue("session" if kind == "netdef" else "trt_session")
    sig = ModelSignature.from_specs("tiny", session.inputs + session.outputs)
    instance = BatchedInfer(session, sig)
    rng = np.random.default_rng(0)
    requests = [{"x": rng.standard_normal((n, C_IN, SIZE, SIZE)).astype(np.float32),
                 "y": rng.standard_normal((n, C_OUT, SIZE, SIZE)).astype(np.float32)} for n in (1, 3, 2)]
    responses = instance(requests)
    assert len(responses) == 3
    for request, response in zip(requests, responses):
        direct = session.infer(request)
        assert list(response) == ["sum", "pooled"]
        for name in direct:
            assert response[name].shape == direct[name].shape
            assert rel_err(response[name], direct[name]) < 1e-6, name
    assert instance.stats() == {"calls": 1, "requests": 3, "items": 6, "mean_batch": 6.0}
    (single,) = instance(requests[1:2])
    assert rel_err(single["sum"], responses[1]["sum"]) < 1e-6


class Doubling:
    """A stand-in session: out = 2 * in, with or without a batch dim; a session factory too (device, **options)."""

    def __init__(self, device=None, batched=True):
        shape = (-1, 3) if batched else (2, 3)
        self.inputs, self.outputs = [_spec("in", True, shape)], [_spec("out", False, shape)]
        self.seen, self.meta = [], {}

    def input_buffer(self, name, shape):
        return None

    def infer(self, feeds):
        self.seen.append(feeds["in"].shape)
        return {"out": feeds["in"] * 2}

    def close(self):
        pass


def test_unbatched_model_runs_each_request_alone():
    fake = Doubling(batched=False)
    sig = ModelSignature.from_specs("m", fake.inputs + fake.outputs)
    requests = [{"in": np.full((2, 3), v, np.float32)} for v in (1.0, 5.0)]
    responses = BatchedInfer(fake, sig)(requests)
    assert fake.seen == [(2, 3), (2, 3)]
    assert [float(r["out"][0, 0]) for r in responses] == [2.0, 10.0]


# --- a model instance in Triton's Python backend ----------------------------------------------------------------

def tiny_session(device, seed=5, max_batch=6):
    """A session factory as an instance process calls it (module:callable, JSON-able options)."""
    return InferenceSession.from_definition(tiny_network(tiny_weights(seed=seed)), device=device or "cpu",
                                            batch=(1, 4, max_batch))


class FakeBackend:
    """triton_python_backend_utils as the stub offers it, for the parts an instance uses."""

    class Tensor:
        def __init__(self, name, array):
            self._name, self._array = name, np.array(array)  # the stub copies into its shared memory

        def name(self):
            return self._name

        def as_numpy(self):
            return self._array

    class TritonError:
        def __init__(self, message):
            self.message = message

    class InferenceResponse:
        def __init__(self, output_tensors, error=None):
            self.output_tensors, self.error = output_tensors, error

    class Request:
        def __init__(self, tensors, requested=()):
            self.tensors, self.requested = tensors, list(requested)

        def requested_output_names(self):
            return self.requested

    @staticmethod
    def get_input_tensor_by_name(request, name):
        return FakeBackend.Tensor(name, request.tensors[name])


def _instance(tmp_path, monkeypatch, options, devices=(None,), instance=0, factory="tiny_session"):
    """Write the model folder, then start instance `instance` the way the backend does (config as JSON)."""
    from google.protobuf import json_format
    from netdef.serve.instance import TritonPythonModel, group_name, write_model_folder

    monkeypatch.setitem(__import__("sys").modules, "triton_python_backend_utils", FakeBackend)
    sig = ModelSignature.from_specs("tiny", tiny_session(None).inputs + tiny_session(None).outputs, opt_batch=4)
    folder = write_model_folder(tmp_path, sig, f"tests.test_serve_parts:{factory}", options, list(devices),
                                max_queue_delay_us=100)
    config, _ = _parse((folder / "config.pbtxt").read_text())
    model = TritonPythonModel()
    model.initialize({"model_config": json_format.MessageToJson(config, preserving_proto_field_name=True),
                      "model_instance_name": f"{group_name('tiny', instance)}_0"})
    return model, folder, config


def test_instance_serves_batches_of_requests_from_its_own_session(tmp_path, monkeypatch, session):
    model, folder, config = _instance(tmp_path, monkeypatch, {"seed": 5}, devices=("cpu", None), instance=1)
    assert (config.backend, config.max_batch_size, list(config.dynamic_batching.preferred_batch_size)) == \
        ("python", 6, [4, 6])
    assert [(g.name, g.count) for g in config.instance_group] == [("tiny_i0", 1), ("tiny_i1", 1)]
    assert model.device is None  # instance 1's device, from the setup
    text = (folder / "1" / "model.py").read_text()
    assert "from netdef.serve.instance import TritonPythonModel" in text and repr(os.getcwd()) in text
    rng = np.random.default_rng(1)
    feeds = [{"x": rng.standard_normal((n, C_IN, SIZE, SIZE)).astype(np.float32),
              "y": rng.standard_normal((n, C_OUT, SIZE, SIZE)).astype(np.float32)} for n in (2, 1, 3)]
    requests = [FakeBackend.Request(f, requested) for f, requested in zip(feeds, ([], ["pooled"], []))]
    responses = model.execute(requests)
    assert [[t.name() for t in r.output_tensors] for r in responses] == [["sum", "pooled"], ["pooled"], ["sum", "pooled"]]
    for feed, response in zip(feeds, responses):
        direct = session.infer(feed)  # the module's session has the same weights (seed 5)
        for t in response.output_tensors:
            assert rel_err(t.as_numpy(), direct[t.name()]) < 1e-6, t.name()
    assert model.batched.stats() == {"calls": 1, "requests": 3, "items": 6, "mean_batch": 6.0}
    model.finalize()
    (failed,) = model.execute(requests[:1])  # a session that fails answers with the reason, naming the instance
    assert failed.output_tensors == [] and "tiny_i1_0 on cpu: SessionClosedError" in failed.error.message


def test_instance_times_its_phases_when_asked_and_answers_the_same(tmp_path, monkeypatch, session):
    from netdef.serve.phases import PROFILE_ENV

    monkeypatch.setenv(PROFILE_ENV, str(tmp_path / "phases"))
    model, _, _ = _instance(tmp_path, monkeypatch, {"seed": 5})
    rng = np.random.default_rng(2)
    feeds = [{"x": rng.standard_normal((n, C_IN, SIZE, SIZE)).astype(np.float32),
              "y": rng.standard_normal((n, C_OUT, SIZE, SIZE)).astype(np.float32)} for n in (1, 3)]
    for _ in range(2):
        responses = model.execute([FakeBackend.Request(f) for f in feeds])
    for feed, response in zip(feeds, responses):
        direct = session.infer(feed)
        for t in response.output_tensors:
            assert rel_err(t.as_numpy(), direct[t.name()]) < 1e-6, t.name()
    model.finalize()
    (path,) = tmp_path.glob("phases.*")
    assert path.name == f"phases.{os.getpid()}"
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [(r["requests"], r["bytes"]) for r in lines] == [(2, 4 * 4 * (C_IN + C_OUT) * SIZE * SIZE)] * 2
    for phase in ("inputs", "join", "infer", "responses"):
        assert all(r[phase] >= 0 and r[f"{phase}_cpu"] >= 0 for r in lines), phase
    assert all(r["faults_inside"] >= 0 and r["faults_outside"] >= 0 for r in lines)


def test_instance_with_another_signature_refuses_to_start(tmp_path, monkeypatch):
    with pytest.raises(SignatureError, match="tiny: the instance on cpu opened a session that takes batches up to 3; "
                                             "the model serves batches up to 6"):
        _instance(tmp_path, monkeypatch, {"max_batch": 3})
    with pytest.raises(SignatureError, match=r"tiny: the instance on cuda:1 opened a session with inputs "
                                             r"\[in float32\[3\]\] and outputs \[out float32\[3\]\]; the model "
                                             r"serves \[x float32\[3, 8, 8\], y float32\[4, 8, 8\]\] and \[sum"):
        _instance(tmp_path, monkeypatch, {}, devices=("cuda:1",), factory="Doubling")


# --- placement ---------------------------------------------------------------------------------------------

def test_instances_spread_round_robin_over_gpus():
    assert instance_devices("tensorrt", 4, visible_gpus=2) == ["0", "1", "0", "1"]
    assert instance_devices("tensorrt", 3, gpus=[1, 3]) == ["1", "3", "1"]
    assert instance_devices("tensorrt", 2, device="cuda:1") == ["cuda:1", "cuda:1"]
    assert instance_devices("netdef", 2, device=None) == [None, None]
    assert parse_gpus("0, 1") == [0, 1] and parse_gpus(None) is None
    with pytest.raises(ValueError, match="no CUDA GPU is visible for the tensorrt executor"):
        instance_devices("tensorrt", 1, visible_gpus=0)
    with pytest.raises(ValueError, match="--gpus places TensorRT instances"):
        instance_devices("netdef", 1, gpus=[0])
    with pytest.raises(ValueError, match="--instances 0: at least 1"):
        instance_devices("netdef", 0)
    with pytest.raises(ValueError, match="--gpus '0,0': expected distinct GPU indices"):
        parse_gpus("0,0")


# --- the server process's environment ------------------------------------------------------------------------

def test_libpython_dir_holds_this_interpreters_shared_library():
    libdir = environment.python_library_dir()
    assert (libdir / sysconfig.get_config_var("INSTSONAME")).exists()


def test_static_python_is_a_clear_error(monkeypatch):
    real = sysconfig.get_config_var
    monkeypatch.setattr(sysconfig, "get_config_var", lambda name: 0 if name == "Py_ENABLE_SHARED" else real(name))
    with pytest.raises(environment.ServeEnvironmentError, match="built without a shared libpython.*--enable-shared"):
        environment.python_library_dir()


def test_prepare_puts_libpython_first_once_and_keeps_the_rest(monkeypatch):
    pytest.importorskip("pytriton", reason="the serve extra is not installed")
    monkeypatch.setenv("LD_LIBRARY_PATH", "/opt/other")
    environment.prepare_server_environment()
    first = os.environ["LD_LIBRARY_PATH"]
    environment.prepare_server_environment()
    parts = os.environ["LD_LIBRARY_PATH"].split(os.pathsep)
    assert os.environ["LD_LIBRARY_PATH"] == first
    assert parts[0] == str(environment.python_library_dir()) and parts[1].endswith("nvidia_pytriton.libs")
    assert parts[-1] == "/opt/other" and len(parts) == len(set(parts))
    assert all(os.access(p, os.X_OK) for p in environment.server_files(environment.pytriton_root()))


_FRESH_BLOCKS = """
import resource
import numpy as np

image = np.ones((3, 224, 224), np.float32)  # 0.6 MB, a ResNet-50 request's input


def faults_per_block():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    blocks = [image.copy() for _ in range(32)]  # a batch's requests, allocated then freed as the server does
    del blocks
    return (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 32


print(min(faults_per_block() for _ in range(5)))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator")
def test_server_allocator_settings_reuse_freed_request_blocks_without_page_faults():
    def faults_per_block(malloc):
        env = {**{k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}, **malloc}
        run = subprocess.run([sys.executable, "-c", _FRESH_BLOCKS], env=env, capture_output=True, text=True, check=True)
        return float(run.stdout)

    assert faults_per_block({}) > 100  # glibc's defaults: each 0.6 MB block comes back from the kernel (147 pages)
    assert faults_per_block(environment.MALLOC_ARGS) < 5  # the server's settings: the freed pages are reused warm


def test_prepare_sets_the_allocator_and_keeps_the_users_setting(monkeypatch):
    pytest.importorskip("pytriton", reason="the serve extra is not installed")
    monkeypatch.delenv("MALLOC_MMAP_THRESHOLD_", raising=False)
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "12345")
    got = environment.prepare_server_environment()
    assert (os.environ["MALLOC_MMAP_THRESHOLD_"], os.environ["MALLOC_TRIM_THRESHOLD_"]) == (str(32 << 20), "12345")
    assert (got["MALLOC_MMAP_THRESHOLD_"], got["MALLOC_TRIM_THRESHOLD_"]) == (str(32 << 20), "12345")


def test_without_pytriton_serving_says_which_extra_to_install(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "pytriton", None)  # as if not installed
    with pytest.raises(environment.ServeEnvironmentError, match=r"pip install 'netdef-trt\[serve\]'"):
        environment.prepare_server_environment()


def test_files_unpacked_without_modes_are_made_executable(tmp_path):
    tool = tmp_path / "tritonserver"
    tool.write_text("#!/bin/sh\n")
    tool.chmod(0o644)
    assert environment._make_executable(tool) is True
    assert tool.stat().st_mode & stat.S_IXUSR
    assert environment._make_executable(tool) is False


# --- the model repository for Triton's TensorRT backend --------------------------------------------------------

def _fake_engine(tmp_path, min_batch=1, **meta):
    """A plan file with a sidecar shaped like a YOLOv4-with-NMS engine built by TensorRT 8.6."""
    def io(name, dtype, shape):
        def at(b):
            return [b if d < 0 else d for d in shape]

        return {"name": name, "dtype": dtype, "shape": shape, "min": at(min_batch), "opt": at(8), "max": at(32)}

    sidecar = {"trt_flavor": "tensorrt", "trt_version": "8.6.0", "batch": [min_batch, 8, 32], "plugins": [],
               "inputs": [io("input", "FLOAT", [-1, 3, 416, 416])],
               "outputs": [io("num_detections", "INT32", [-1, 1]), io("det_boxes", "FLOAT", [-1, 100, 4]),
                           io("det_scores", "FLOAT", [-1, 100]), io("det_classes", "INT32", [-1, 100])]}
    sidecar.update(meta)
    return save_engine(b"not a real plan, only bytes to copy", tmp_path / "yolo.engine", **sidecar)


def _parse(text: str):
    pytest.importorskip("tritonclient.grpc", reason="the serve extra (tritonclient) is not installed")
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    return text_format.Parse(text, model_config_pb2.ModelConfig()), model_config_pb2


def test_repository_config_parses_as_tritons_model_config(tmp_path, caplog):
    engine = _fake_engine(tmp_path)
    with caplog.at_level(logging.WARNING, logger="netdef.serve"):
        folder = write_repository(engine, tmp_path / "repo", RepositoryOptions("yolo", instances=2))
    assert caplog.records == []  # a TensorRT plan: no warning about the flavor
    config, pb = _parse((folder / "config.pbtxt").read_text())
    assert (config.name, config.platform, config.max_batch_size) == ("yolo", "tensorrt_plan", 32)
    assert [(t.name, t.data_type, list(t.dims)) for t in config.output] == [
        ("num_detections", pb.TYPE_INT32, [1]), ("det_boxes", pb.TYPE_FP32, [100, 4]),
        ("det_scores", pb.TYPE_FP32, [100]), ("det_classes", pb.TYPE_INT32, [100])]
    assert list(config.dynamic_batching.preferred_batch_size) == [8, 32]
    (group,) = config.instance_group
    assert (group.count, group.kind, list(group.gpus), list(group.profile)) == (2, pb.ModelInstanceGroup.KIND_GPU, [], ["0"])
    assert (folder / "1" / "model.plan").read_bytes() == engine.read_bytes()


def test_repository_without_dynamic_batching_and_scalar_items(tmp_path):
    sig = ModelSignature.from_specs("m", [_spec("in", True, (-1, 3)), _spec("score", False, (-1,))])
    config, _ = _parse(config_text(sig, RepositoryOptions("m", dynamic_batching=False, max_queue_delay_us=5)))
    assert not config.HasField("dynamic_batching")
    (score,) = config.output
    assert list(score.dims) == [1] and score.HasField("reshape") and list(score.reshape.shape) == []


def test_repository_refusals_name_the_problem(tmp_path, caplog):
    with pytest.raises(ValueError, match="netdef plugin layers.*serve it with `netdef serve`"):
        plugin = {"name": "netdef.Mish", "module": "netdef.plugins.builtin.mish"}
        write_repository(_fake_engine(tmp_path, plugins=[plugin]), tmp_path / "r", RepositoryOptions("m"))
    with pytest.raises(SignatureError, match="m: the batch range starts at 4; Triton sends batches from 1"):
        write_repository(_fake_engine(tmp_path, min_batch=4), tmp_path / "r", RepositoryOptions("m"))
    sidecar = json.loads(_fake_engine(tmp_path).with_suffix(".engine.json").read_text())
    inside = save_engine(b"plan", tmp_path / "m" / "1" / "model.plan", **sidecar)
    with pytest.raises(ValueError, match="that is the engine itself; choose another --out"):
        write_repository(inside, tmp_path, RepositoryOptions("m"))
    rtx = _fake_engine(tmp_path, trt_flavor="tensorrt_rtx", trt_version="1.7.1.116")
    with caplog.at_level(logging.WARNING, logger="netdef.serve"):
        write_repository(rtx, tmp_path / "r2", RepositoryOptions("m"))
    assert "built with tensorrt_rtx 1.7.1.116" in caplog.text


# --- the CLI ------------------------------------------------------------------------------------------------------

def _serve_args(argv: list[str]) -> argparse.Namespace:
    from netdef.cli import make_parser

    return make_parser().parse_args(["serve", *argv])


def test_serve_models_from_arguments(tmp_path):
    from netdef.commands.serve import INSTANCE_FACTORY, build_models

    a, b = _fake_engine(tmp_path / "a"), _fake_engine(tmp_path / "b")
    models = build_models(_serve_args([str(a), str(b), "--name", "first", "--name", "second", "--device", "1",
                                       "--instances", "2", "--no-dynamic-batching", "--max-batch", "16"]))
    assert [(m.name, m.devices, m.dynamic_batching, m.factory) for m in models] == [
        ("first", ["1", "1"], False, INSTANCE_FACTORY), ("second", ["1", "1"], False, INSTANCE_FACTORY)]
    assert models[1].options == {"engine": str(b), "executor": "tensorrt", "arch": None, "weights": None,
                                 "precision": None}
    # TensorRT: the signature from the sidecar, here, without a GPU
    assert (models[0].signature.name, models[0].signature.batch_limit) == ("first", 16)
    assert json.loads(json.dumps(models[0].options)) == models[0].options  # travels in the Triton config
    (executor,) = build_models(_serve_args([str(a), "--executor", "netdef", "--weights", "w.h5", "--instances", "2"]))
    assert executor.signature is None and executor.devices == [None, None]  # read from a session when serving
    assert executor.options["torch_threads"] == max(1, len(os.sched_getaffinity(0)) // 2)
    with pytest.raises(ValueError, match="1 --name for 2 engines"):
        build_models(_serve_args([str(a), str(b), "--name", "x", "--device", "0"]))
    with pytest.raises(ValueError, match="--executor netdef serves one network"):
        build_models(_serve_args([str(a), str(b), "--executor", "netdef"]))


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_serve_stops_cleanly_on_sigint_and_sigterm(monkeypatch, capsys, sig):
    import netdef.serve.server as server_module
    from netdef.commands import serve

    events = []

    class FakeServer:
        def __init__(self, models, config):
            self.models = models

        def start(self):
            events.append("start")

        def describe(self):
            return ["m: 1 instance(s)"]

        def wait(self, stop):
            os.kill(os.getpid(), sig)  # as a user's Ctrl+C or a supervisor's SIGTERM
            return stop.wait(10)

        def stop(self):
            events.append("stop")

    monkeypatch.setattr(server_module, "ModelServer", FakeServer)
    monkeypatch.setattr(serve, "build_models", lambda args: [])
    before = signal.getsignal(sig)
    assert serve.run(_serve_args(["a.engine", "--device", "0"])) == 0
    assert events == ["start", "stop"] and signal.getsignal(sig) is before
    assert capsys.readouterr().out.splitlines()[-2:] == ["ready; stop with Ctrl+C or SIGTERM", "stopped"]
