"""bench/int8_kernels.py on the CPU: each form's definition places its Q/DQ as the networks do (netdef's INT8: the
activation's reader quantizes it; preact: the conv's raw output quantized too; FP16 and the implicit form's FP16
definition: none), every form builds with TensorRT-RTX, and the rows reduce to the conv's kernel and the block's
time. The GPU run itself is the H200's (bench/gpu_session.sh item int8_kernels)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from netdef.engine import BuildSettings
from netdef.executor import execute
from netdef.quantize.placement import check_placement
from tests.bench_scripts import load_bench


@pytest.fixture(scope="module")
def kernels():
    module = load_bench("int8_kernels")
    module.CASES["tiny"] = ("leaky", 8, 16, 3, (12, 12), 2)
    return module


def _quantized(net) -> int:
    d = net.definition
    return sum(d.get_layer(i).type.name == "QUANTIZE" for i in range(d.num_layers))


def test_forms_place_their_quantizers_and_build(kernels) -> None:
    int8, preact = kernels.define("tiny", "int8"), kernels.define("tiny", "preact")
    assert check_placement(int8).quantized_weighted_outputs == []  # the conv carries its activation
    assert check_placement(preact).quantized_weighted_outputs == ["block.conv"]  # its raw output quantized
    for net in (int8, preact):
        report = check_placement(net)
        assert report.requantized == [] and [(w.layer, w.int8_input, w.int8_weights) for w in report.weighted] == [
            ("block.conv", True, True), ("reader", True, True)]
    assert (_quantized(int8), _quantized(preact)) == (4, 5)  # input, act (the reader's), 2 kernels; + raw output
    fp32 = kernels.define("tiny", "fp32")
    assert _quantized(fp32) == 0 and _quantized(kernels.define("tiny", "fp16")) == 0
    assert _quantized(kernels.define("tiny", "implicit")) == 0  # TensorRT quantizes it itself
    assert fp32.quant.calibration_names() == ["block.act", "block.conv", "input"]
    for form, precision in (("fp16", "fp16"), ("int8", "int8"), ("preact", "int8"), ("implicit", "fp16")):
        plan = kernels.define("tiny", form).build(BuildSettings(precision=precision, batch=(1, 2, 2), progress=False))
        assert len(plan.data) > 10_000


def test_the_probe_is_the_conv_activation_and_reader_it_names(kernels) -> None:
    """FP32 definition against numpy on fresh inputs: leaky(conv(x)) read by the 1x1 reader."""
    x = np.random.default_rng().standard_normal((2, 8, 12, 12)).astype(np.float32)
    got = execute(kernels.define("tiny", "fp32").definition, {"input": x})["output"].double().numpy()
    w = {k: v.astype(np.float32).astype(np.float64) for k, v in kernels.weights(8, 16, 3).items()}
    padded = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (1, 1), (1, 1)))
    windows = np.lib.stride_tricks.sliding_window_view(padded, (3, 3), axis=(2, 3))  # N, C, H, W, 3, 3
    y = np.einsum("nchwij,ocij->nohw", windows, w["block.conv.weight"]) + w["block.conv.bias"][None, :, None, None]
    y = np.where(y > 0, y, 0.1 * y)
    want = np.einsum("nchw,oc->nohw", y, w["reader.weight"][:, :, 0, 0]) + w["reader.bias"][None, :, None, None]
    assert np.linalg.norm(got - want) / np.linalg.norm(want) < 1e-5


def test_rows_reduce_to_kernel_and_block_time(kernels) -> None:
    layers = [{"Name": "Reformatting CopyNode for Input Tensor 0 to block.conv"},
              {"Name": "block.conv/weight + block.conv + PWN(block.act)", "TacticName": "sm80_xmma_linkable"},
              {"Name": "reader", "TacticName": "sm90_xmma"}]
    every = {"block.conv/weight + block.conv + PWN(block.act)": 0.25, "Reformatting CopyNode for Input Tensor 0 to "
             "block.conv": 0.05, "reader": 0.4}
    assert kernels.kernels_of(layers, every) == {"conv_kernel": "sm80_xmma_linkable", "conv_ms": 0.25,
                                                 "block_ms": 0.3, "block_layers": 2}
    rows = [{"case": "tiny", "form": "fp16", "conv_kernel": "sm90_a", "conv_ms": 0.2, "block_ms": 0.2,
             "block_layers": 1},
            {"case": "tiny", "form": "int8", "conv_kernel": "sm80_b", "conv_ms": 0.15, "block_ms": 0.15,
             "block_layers": 1},
            {"case": "tiny", "form": "implicit", "error": "RuntimeError: no calibrator"}]
    text = kernels.table(rows)
    assert "tiny | int8 | sm80_b | 0.1500 | 0.15 (1) | 0.75" in text and "tiny | implicit | FAILED" in text


def test_measure_wires_each_form_to_its_build_and_reads_back_the_kernel(kernels, monkeypatch, tmp_path) -> None:
    """measure() on the CPU with the GPU parts stood in: each form builds its definition (TensorRT-RTX) with the
    bench's settings (the implicit form inside TensorRT's calibration hook), `gpu.evaluate` gets the batch and the
    profile, and the row carries the conv's kernel and the block's time from the files evaluate writes."""
    import gzip
    import json

    import gpu  # bench/ is on sys.path (the fixture loaded the script)
    import implicit_int8

    calls = []

    def evaluate(plan, path, inputs, refs, iters, warmup, *, batches, check, profile):
        calls.append((path.name, plan.meta["precision"], list(inputs), batches, profile, check(None, refs, 2, [])))
        layers = {"Layers": [{"Name": "block.conv + PWN(block.act)", "TacticName": "sm90_xmma_fake"}]}
        Path(f"{path}.layers.json.gz").write_bytes(gzip.compress(json.dumps(layers).encode()))
        Path(f"{path}.profile.json.gz").write_bytes(gzip.compress(json.dumps(
            {"block.conv + PWN(block.act)": 0.2, "reader": 0.1}).encode()))
        return {"b2": {"gpu_median_ms": 0.3}}

    hooked = []
    monkeypatch.setattr(gpu, "evaluate", evaluate)
    monkeypatch.setattr(implicit_int8, "calibrator", lambda data, batch, cache: ("calibrator", data.shape, batch))
    monkeypatch.setattr(implicit_int8, "implicit_int8", lambda calib: lambda config, builder, network:
                        hooked.append(calib))
    rows = {form: kernels.measure("tiny", form, tmp_path, 3, 5) for form in ("fp16", "int8", "preact", "implicit")}
    assert [c[0] for c in calls] == [f"tiny-{f}-level3.engine" for f in ("fp16", "int8", "preact", "implicit")]
    assert [c[1] for c in calls] == ["fp16", "int8", "int8", "fp16"]  # implicit: FP16 flags + TensorRT's INT8
    assert all(c[2:] == (["b2"], (2,), (2, 5), {}) for c in calls)
    assert hooked == [("calibrator", (2, 8, 12, 12), 2)]  # the implicit build alone, on one batch
    assert rows["int8"]["conv_kernel"] == "sm90_xmma_fake" and rows["int8"]["block_ms"] == 0.2
    assert rows["implicit"]["gpu_ms"] == 0.3
