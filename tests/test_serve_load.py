"""`netdef serve` under load, on the real Triton Inference Server (PyTriton's tritonserver): a ResNet-18 engine
(64x64, 10 classes, batch 1:4:8, built with TensorRT-RTX on the CPU) served through `--executor netdef` with
two instances. 8 concurrent tritonclient clients, half HTTP and half gRPC, send 200 requests of mixed batch
sizes; every response must equal a direct InferenceSession.infer of the same input (a request's items never
mixed with another's by the dynamic batcher), none may be lost, the server must have joined requests into
larger batches (Triton's own metrics), and SIGTERM must stop it cleanly. Traffic goes to 127.0.0.1 only;
the ports are free ones chosen here; the test stops the server itself.
Also `netdef triton-repo` on the same engine, its config parsed with Triton's model-config protobuf."""
from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("pytriton", reason="the serve extra (nvidia-pytriton) is not installed")
grpcclient = pytest.importorskip("tritonclient.grpc", reason="the serve extra (tritonclient[all]) is not installed")
httpclient = pytest.importorskip("tritonclient.http", reason="the serve extra (tritonclient[all]) is not installed")

from netdef.verify import relative_error as rel_err  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SIZE, CLASSES, BATCH = 64, 10, (1, 4, 8)
CLIENTS, REQUESTS = 8, 200
START_TIMEOUT_S, STOP_TIMEOUT_S = 90, 30


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory):
    from netdef.engine import BuildSettings, save_engine
    from networks.resnet import ResNet, random_bn_init, torch_resnet
    from weights_export.pytorch import export_module

    torch.set_num_threads(2)
    tmp = tmp_path_factory.mktemp("serve")
    model = random_bn_init(torch_resnet("resnet18", num_classes=CLASSES, seed=0), seed=1)
    h5 = tmp / "r18.h5"
    export_module(model, h5, "resnet18", input_shape=(1, 3, SIZE, SIZE))
    plan = ResNet.from_hdf5(h5).build(input_size=(SIZE, SIZE), settings=BuildSettings(batch=BATCH, progress=False))
    return {"h5": str(h5), "engine": str(save_engine(plan, tmp / "r18.engine", weights=h5)), "tmp": tmp}


def free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def child_pids(pid: int) -> set[int]:
    """Every descendant of `pid` (tritonserver and its backend stubs)."""
    found, todo = set(), [pid]
    while todo:
        parent = todo.pop()
        for task in Path(f"/proc/{parent}/task").glob("*"):
            try:
                kids = {int(k) for k in (task / "children").read_text().split()}
            except OSError:
                continue
            todo += list(kids - found)
            found |= kids
    return found


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"  # a zombie has exited, only its parent (maybe init) has not reaped it yet


@pytest.fixture(scope="module")
def server(artifacts):
    http_port, grpc_port, metrics_port = free_ports(3)
    log_path = artifacts["tmp"] / "serve.log"
    cmd = [sys.executable, "-m", "netdef", "serve", artifacts["engine"], "--executor", "netdef",
           "--weights", artifacts["h5"], "--instances", "2", "--max-queue-delay-us", "2000", "--host", "127.0.0.1",
           "--http-port", str(http_port), "--grpc-port", str(grpc_port), "--metrics-port", str(metrics_port),
           "--log-file", str(artifacts["tmp"] / "triton.log")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=env)
    info = {"proc": proc, "log": log_path, "http": f"127.0.0.1:{http_port}", "grpc": f"127.0.0.1:{grpc_port}",
            "metrics": f"http://127.0.0.1:{metrics_port}/metrics"}
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while "ready; stop with" not in log_path.read_text():
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"netdef serve did not become ready (rc {proc.poll()}):\n{log_path.read_text()[-4000:]}")
            time.sleep(0.2)
        yield info
    finally:
        if proc.poll() is None:  # a failed test left it running
            proc.kill()
            proc.wait(STOP_TIMEOUT_S)


def _requests() -> list[np.ndarray]:
    rng = np.random.default_rng(7)
    sizes = rng.choice([1, 1, 2, 3, 4], REQUESTS)  # mixed, mostly small, so the batcher has joining to do
    return [rng.standard_normal((int(n), 3, SIZE, SIZE)).astype(np.float32) for n in sizes]


def _client_loop(k: int, server: dict, inputs: list[np.ndarray], results: dict, errors: list) -> None:
    grpc = k % 2 == 1
    module = grpcclient if grpc else httpclient
    client = module.InferenceServerClient(server["grpc"] if grpc else server["http"])
    try:
        for i in range(k, len(inputs), CLIENTS):
            x = module.InferInput("input", list(inputs[i].shape), "FP32")
            x.set_data_from_numpy(inputs[i])
            try:
                response = client.infer("r18", [x], outputs=[module.InferRequestedOutput("logits")])
                results[i] = response.as_numpy("logits")
            except Exception as exc:  # collected: a lost request is a failure with its reason
                errors.append(f"request {i} ({'grpc' if grpc else 'http'}): {exc}")
    finally:
        client.close()


def _metric(text: str, name: str) -> float:
    match = re.search(rf'^{name}{{model="r18",version="1"}} (\S+)$', text, re.M)
    assert match, f"{name} for r18 not in the metrics"
    return float(match.group(1))


def test_eight_clients_over_http_and_grpc_get_their_own_results(server, artifacts):
    from netdef.cli import make_parser
    from netdef.commands.serve import instance_options, open_instance

    inputs = _requests()
    results: dict[int, np.ndarray] = {}
    errors: list[str] = []
    threads = [threading.Thread(target=_client_loop, args=(k, server, inputs, results, errors)) for k in range(CLIENTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert errors == [] and sorted(results) == list(range(REQUESTS)), errors[:5]
    threads = torch.get_num_threads()
    args = make_parser().parse_args(["serve", artifacts["engine"], "--executor", "netdef", "--weights", artifacts["h5"]])
    try:
        with open_instance(None, **instance_options(args, artifacts["engine"])) as session:  # as an instance does
            torch.set_num_threads(1)  # 200 small batches: one thread is fastest, on busy cores by far
            direct = [session.infer(x)["logits"] for x in inputs]
    finally:
        torch.set_num_threads(threads)
    for i, x in enumerate(inputs):
        assert results[i].shape == (len(x), CLASSES)
        assert rel_err(results[i], direct[i]) < 1e-4, f"request {i} (batch {len(x)})"
    # the server joined requests: fewer executions than requests, more items per execution than per request
    metrics = urllib.request.urlopen(server["metrics"], timeout=10).read().decode()
    items = sum(len(x) for x in inputs)
    assert _metric(metrics, "nv_inference_request_success") == REQUESTS
    assert _metric(metrics, "nv_inference_count") == items
    executions = _metric(metrics, "nv_inference_exec_count")
    assert executions < REQUESTS and items / executions > items / REQUESTS


def test_triton_repo_of_the_served_engine(artifacts):
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    from netdef.cli import main

    out = artifacts["tmp"] / "repo"
    assert main(["triton-repo", artifacts["engine"], "--out", str(out), "--instances", "2", "--gpus", "0,1",
                 "--max-queue-delay-us", "500"]) == 0
    config = text_format.Parse((out / "r18" / "config.pbtxt").read_text(), model_config_pb2.ModelConfig())
    assert (config.name, config.platform, config.max_batch_size) == ("r18", "tensorrt_plan", BATCH[2])
    assert [(t.name, t.data_type, list(t.dims)) for t in config.input] == \
        [("input", model_config_pb2.TYPE_FP32, [3, SIZE, SIZE])]
    assert [(t.name, t.data_type, list(t.dims)) for t in config.output] == \
        [("logits", model_config_pb2.TYPE_FP32, [CLASSES])]
    assert list(config.dynamic_batching.preferred_batch_size) == [BATCH[1], BATCH[2]]
    assert config.dynamic_batching.max_queue_delay_microseconds == 500
    (group,) = config.instance_group
    assert (group.count, group.kind, list(group.gpus), list(group.profile)) == \
        (2, model_config_pb2.ModelInstanceGroup.KIND_GPU, [0, 1], ["0"])
    assert (out / "r18" / "1" / "model.plan").read_bytes() == Path(artifacts["engine"]).read_bytes()


def test_sigterm_stops_the_server_and_its_processes(server):
    proc = server["proc"]
    children = child_pids(proc.pid)
    assert children, "tritonserver should run as a child of netdef serve"
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(STOP_TIMEOUT_S) == 0, server["log"].read_text()[-4000:]
    assert "\nstopped\n" in server["log"].read_text()
    deadline = time.monotonic() + 10  # helpers (multiprocessing's resource tracker) leave once their pipes close
    while [p for p in children if _running(p)] and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not [p for p in children if _running(p)], "server processes outlived netdef serve"


def consecutive_free_ports(n: int) -> int:
    """The first of `n` consecutive ports free on 127.0.0.1 now (bench/serve.py takes a base port)."""
    for _ in range(50):
        base = free_ports(1)[0]
        if base + n > 65535:
            continue
        socks = [socket.socket() for _ in range(n)]
        try:
            for offset, s in enumerate(socks):
                s.bind(("127.0.0.1", base + offset))
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError(f"no {n} consecutive free ports found")


def test_bench_serve_check_env_serves_netdef_models_and_pytriton_callables():
    """What the GPU session runs before serving (its setup failed there once on a PyTriton argument)."""
    done = subprocess.run([sys.executable, "bench/serve.py", "--check-env", "--port-base",
                           str(consecutive_free_ports(3))], cwd=ROOT, capture_output=True, text=True,
                          timeout=START_TIMEOUT_S + STOP_TIMEOUT_S)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    for line in ("ok: http numpy_model", "ok: grpc plain_callable", "stopped cleanly"):
        assert line in done.stdout, done.stdout[-2000:]
