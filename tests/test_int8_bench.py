"""Issue 14's GPU benchmark as far as it runs without a GPU: engine layer counts (on the stored implicit-INT8
YOLOv4 engine), the INT8 table, the implicit-INT8 builder configuration and calibrator (fake binding), the
ONNX path with the raw heads and DETAILED profiling (TensorRT-RTX), netdef INT8 plans with their placement."""
from __future__ import annotations

import gzip
import json
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from netdef import trt as shim
from netdef.engine import BuildSettings, build_engine
from tests.bench_scripts import BENCH, load_bench

REFERENCE = BENCH / "results" / "yolov4-416-implicit-int8-h200-trt86-layers.json.gz"



@pytest.fixture(scope="module")
def gpu():
    return load_bench("gpu")  # puts bench/ on sys.path for its helpers


def test_layer_counts_of_the_implicit_int8_yolov4_engine(gpu) -> None:
    from engine_layers import conv_precision, layer_counts, read_layers

    counts = layer_counts(read_layers(REFERENCE))
    assert counts["layers"] == 200 and counts["reformats"] == 17 and counts["pointwise"] == 46
    assert counts["convolutions"] == counts["int8_weight_convolutions"] == counts["int8_input_convolutions"] == 105
    assert counts["conv_precisions"] == {"i8->f32": 4, "i8->i8": 101} and counts["merged_convolutions"] == 5
    assert counts["standalone_quantize"] == 0 and counts["noop_reformats"] == counts["dequantize_copies"] == 0
    assert conv_precision({"TacticName": "sm80_xmma_fprop_implicit_gemm_f16f16_f16f32_f32_nhwc"}) == "f16->f16"
    jit = {"TacticName": "sm80_xmma_fprop_implicit_gemm_interleaved_i8i8_i8i32_f32_nchw_vect_c_32",
           "Inputs": [{"Format/Datatype": "Thirty-two wide channel vectorized row major Int8 format"}],
           "Outputs": [{"Format/Datatype": "Thirty-two wide channel vectorized row major FP16 format"}]}
    assert conv_precision(jit) == "i8->f16"  # the resolved formats say what the JIT kernel's name does not
    q = layer_counts([{"Name": "layers.4/quantize", "LayerType": "Scale"}, {"Name": "a + b/quantize"}])
    assert q["standalone_quantize"] == 1


def test_layer_counts_of_the_h200_netdef_yolov4_engines(gpu) -> None:
    """The 2026-11-30 H200 run's engines as docs/int8.md section 4 reads them: INT8 (R3 placement) has 40 real
    reformats, 23 of them the shortcut skips dequantized for the float Mish + add; 25 INT8 convs write float (the
    23 shortcut branches, 137 and 148 before the FP16 head convs); FP16's 63 no-op reformats are free."""
    from engine_layers import layer_counts, read_layers

    run = BENCH / "results" / "gpu-2026-11-30-h200"
    int8 = layer_counts(read_layers(run / "int8_y_yolov4-netdef-int8-level1.engine.layers.json.gz"))
    assert (int8["layers"], int8["reformats"], int8["dequantize_copies"], int8["noop_reformats"]) == (215, 40, 23, 0)
    assert int8["conv_precisions"] == {"f16->f16": 3, "i8->f16": 25, "i8->f32": 2, "i8->i8": 80}
    assert int8["convolutions"] == 110 and int8["int8_weight_convolutions"] == int8["int8_input_convolutions"] == 107
    assert (int8["pointwise"], int8["int8_pointwise"], int8["elementwise"]) == (36, 0, 6)
    assert int8["merged_convolutions"] == 0
    fp16 = layer_counts(read_layers(run / "int8_y_yolov4-netdef-fp16-level1.engine.layers.json.gz"))
    assert (fp16["layers"], fp16["reformats"], fp16["noop_reformats"], fp16["merged_convolutions"]) == (258, 15, 63, 5)
    assert fp16["conv_precisions"] == {"f16->f16": 105}


def _row(model, precision, path, gpu_ms, heads_cos=None, cos=0.9999, rel=1e-3, level=1, **extra):
    outputs = {"logits": {"rel_err": rel, "cosine": cos}}
    if heads_cos is not None:
        outputs = {"boxes": {"rel_err": 0.5, "cosine": 0.5},
                   **{f"head{i}": {"rel_err": rel * (i + 1), "cosine": heads_cos + 0.001 * i} for i in range(3)}}
    return {"model": model, "precision": precision, "path": path, "opt_level": level,
            "b32": {"gpu_median_ms": gpu_ms, "outputs": outputs}, **extra}


def test_int8_table_ratios_accuracy_and_targets(gpu) -> None:
    from gpu_table import int8_summary, int8_table

    from engine_layers import layer_counts, read_layers

    counts = layer_counts(read_layers(REFERENCE))
    rows = [_row("yolov4", "int8", "implicit", 6.5, heads_cos=0.99, rel=0.03, engine_layers=counts),
            _row("yolov4", "fp16", "netdef", 8.4, heads_cos=0.9999, rel=1e-3),
            _row("yolov4", "int8", "netdef", 5.2, heads_cos=0.996, rel=0.01, placement={"requantized": 0}),
            _row("yolov4", "int8", "netdef", 9.0, level=3, error="BuildError: x"),
            _row("resnet50", "int8", "netdef", 0.80, level=3, cos=0.9996),
            _row("resnet50", "int8", "implicit", 0.78, level=3, cos=0.9990, rel=5e-3)]
    s = {(x["model"], x["level"]): x for x in int8_summary(rows)}
    y = s[("yolov4", 1)]
    assert y["ratios"]["vs_implicit"] == pytest.approx(0.8) and y["ratios"]["vs_fp16"] == pytest.approx(5.2 / 8.4)
    assert y["accuracy"]["netdef_int8"] == {"rel_err": pytest.approx(0.03), "cosine": pytest.approx(0.996),
                                            "on": "heads"}
    assert y["met"] == {"vs_implicit": True, "vs_fp16": True, "cosine": True, "at_least_implicit_accuracy": True}
    r = s[("resnet50", 3)]
    assert r["met"] == {"vs_implicit": False, "cosine": True, "at_least_implicit_accuracy": True}
    assert r["ratios"]["vs_fp16"] is None and r["accuracy"]["netdef_int8"]["on"] == "logits"
    assert s[("yolov4", 3)]["errors"] == {"netdef_int8": "BuildError: x"}
    table = int8_table(rows)
    assert "netdef INT8 / implicit INT8 = 0.80" in table and "placement: {'requantized': 0}" in table
    assert ("implicit_int8  engine: 200 layers, 17 reformats (0 dequantize copies, 0 no-op), 105/105 INT8 convs "
            "({'i8->f32': 4, 'i8->i8': 101}), 5 merged, 46 pointwise (0 INT8 in/out), 6 element-wise") in table
    assert "ONNX FP16" not in table  # the cross-check row is optional
    rows.append(_row("yolov4", "fp16", "onnx", 8.3, heads_cos=0.99995, rel=5e-4,
                     analysis_errors={"layers": "RuntimeError: x"}))
    table = int8_table(rows)
    assert "ONNX FP16      vs float64 (heads): rel err 1.50e-03, cosine 0.99995  (GPU ms 8.300)" in table
    assert "onnx_fp16 analysis errors (timings kept): {\"layers\": \"RuntimeError: x\"}" in table


class _Config:
    def __init__(self) -> None:
        self.flags, self.calibration_profile, self.int8_calibrator = [], None, None

    def set_flag(self, flag) -> None:
        self.flags.append(flag)

    def set_calibration_profile(self, profile) -> None:
        self.calibration_profile = profile


class _Profile(dict):
    def set_shape(self, name, lo, opt, hi) -> None:
        self[name] = (lo, opt, hi)


def _fake_binding(monkeypatch):
    class Calibrator:
        def __init__(self) -> None:
            pass

    mod = types.SimpleNamespace(IInt8EntropyCalibrator2=Calibrator,
                                BuilderFlag=types.SimpleNamespace(INT8="INT8"),
                                ProfilingVerbosity=types.SimpleNamespace(DETAILED="DETAILED"))
    monkeypatch.setattr(shim, "_binding", mod)
    return mod


def test_implicit_int8_calibrator_serves_full_batches_and_keeps_its_cache(gpu, tmp_path, monkeypatch) -> None:
    import implicit_int8

    _fake_binding(monkeypatch)
    copies = []

    class HostArray:  # stands in for the cudaMalloc array: records what was copied
        def __init__(self, shape, dtype) -> None:
            self.shape, self.buf = shape, types.SimpleNamespace(ptr=1234)

        def copy_from(self, array):
            assert array.shape == self.shape
            copies.append(np.array(array))
            return self

    monkeypatch.setitem(sys.modules, "device_array", types.SimpleNamespace(CudaArray=HostArray))
    data = np.random.default_rng().standard_normal((70, 3, 4, 4)).astype(np.float32)
    cache = tmp_path / "trt.cache"
    calib = implicit_int8.calibrator(data, 32, cache)
    assert calib.get_batch_size() == 32 and calib.read_calibration_cache() is None
    assert calib.get_batch(["input"]) == [1234] and calib.get_batch(["input"]) == [1234]
    assert calib.get_batch(["input"]) is None  # 6 samples left: no partial batch
    np.testing.assert_array_equal(copies[1], data[32:64])
    calib.write_calibration_cache(b"cache-bytes")
    assert cache.read_bytes() == b"cache-bytes" == calib.read_calibration_cache() and calib.seconds >= 0
    config = _Config()
    builder = types.SimpleNamespace(create_optimization_profile=_Profile)
    network = types.SimpleNamespace(num_inputs=1, get_input=lambda i: types.SimpleNamespace(name="input",
                                                                                            shape=(-1, 3, 4, 4)))
    implicit_int8.implicit_int8(calib)(config, builder, network)
    assert config.flags == ["INT8"] and config.int8_calibrator is calib
    assert config.calibration_profile == {"input": ((32, 3, 4, 4),) * 3}
    with pytest.raises(ValueError, match="fewer than one batch"):
        implicit_int8.calibrator(data[:8], 32, cache)


def test_onnx_path_with_heads_builds_with_detailed_profiling(gpu, tmp_path) -> None:
    """gpu_prepare's heads export of YOLOv4(-tiny), parsed by the binding's ONNX parser (TensorRT-RTX here), built
    through netdef's builder configuration with the bench's additions applied."""
    import implicit_int8
    import torch

    prepare = load_bench("gpu_prepare")
    reference = _tiny_yolo(tmp_path).reference(nms="raw").eval()
    x = torch.from_numpy(np.random.default_rng().random((1, 3, 96, 96), dtype=np.float32))
    onnx = tmp_path / "yolov4_heads.onnx"
    prepare.export_onnx(prepare.WithHeads(reference), x, onnx, ["boxes", "scores", "head0", "head1"])
    builder, network, _ = gpu.parse_onnx(onnx)
    assert [network.get_output(i).name for i in range(network.num_outputs)] == ["boxes", "scores", "head0", "head1"]
    seen = []
    with implicit_int8.builder_config(implicit_int8.detailed_profiling, lambda c, b, n: seen.append(c.profiling_verbosity)):
        plan = build_engine(network, BuildSettings(precision="fp16", progress=False), builder)
    assert seen == [shim.binding().ProfilingVerbosity.DETAILED] and len(plan.data) > 10_000
    import netdef.engine

    assert netdef.engine.configure.__module__ == "netdef.engine"  # restored after the block


def _tiny_yolo(tmp_path: Path):
    from networks.yolov4 import YOLOv4
    from weights_export.darknet_synth import write_synthetic_darknet, yolov4_tiny_cfg

    return YOLOv4.from_hdf5(write_synthetic_darknet(yolov4_tiny_cfg(width=96, height=96, width_div=8, classes=4),
                                                    tmp_path, "t", seed=1, gain=1.2))


def test_prepared_references_are_the_eval_models_despite_the_onnx_exports(gpu, tmp_path) -> None:
    """gpu_prepare's YOLOv4 files: the float64 references equal a fresh eval-mode reference's, after both ONNX
    exports (the heads export once switched the reference to training: BatchNorm on batch statistics, heads
    cosine 0.28-0.35 against right engines on the H200, 2026-11-30)."""
    import torch

    prepare = load_bench("gpu_prepare")
    yolo = _tiny_yolo(tmp_path)
    model = yolo.reference(nms="raw").eval()
    rng = np.random.default_rng()
    inputs = {b: rng.random((b, 3, 96, 96), dtype=np.float32) for b in (1, 2)}
    prepare.write_model_files("yolov4", model, inputs, tmp_path, onnx_heads=True, device="cpu")
    assert not any(m.training for m in model.modules())
    assert (tmp_path / "yolov4.onnx").exists() and (tmp_path / "yolov4_heads.onnx").exists()
    refs = dict(np.load(tmp_path / "yolov4_refs.npz"))
    fresh = yolo.reference(nms="raw").eval().double()
    with torch.no_grad():
        x = torch.from_numpy(inputs[2]).double()
        heads = fresh.heads(x)
        boxes, scores = fresh.decode(heads, (96, 96))
    for key, want in [("b2_head0", heads[0]), ("b2_head1", heads[1]), ("b2_out0", boxes), ("b2_out1", scores)]:
        np.testing.assert_allclose(refs[key], want.numpy(), rtol=1e-12, atol=1e-12, err_msg=key)
    wrapper = prepare.WithHeads(model)  # a training wrapper exported leaves every flag as it was
    wrapper.training = True
    prepare.export_onnx(wrapper, torch.from_numpy(inputs[1]), tmp_path / "again.onnx", ["boxes", "scores", "h0", "h1"])
    assert wrapper.training and not any(m.training for m in model.modules())
    with pytest.raises(RuntimeError, match="training mode"):
        prepare.references(model.train(), inputs, "cpu")


def test_netdef_int8_plan_carries_its_placement_report(gpu, tmp_path, monkeypatch) -> None:
    from netdef.quantize import calibrate
    from networks.resnet import ResNet
    from tests.test_int8_resnet import _resnet_h5

    _resnet_h5("resnet18", tmp_path / "resnet18.h5", seed=6)
    monkeypatch.setitem(gpu.INPUT_SIZE, "resnet18", (32, 32))
    model = ResNet.from_hdf5(tmp_path / "resnet18.h5")
    data = np.random.default_rng().standard_normal((4, 3, 32, 32)).astype(np.float32)
    calibrate(model, data, batch=4, input_size=(32, 32), out=tmp_path / "resnet18_calib.json", progress=False)
    engine = tmp_path / "r18.engine"
    plan = gpu.netdef_plan("resnet18", tmp_path, BuildSettings(precision="int8", progress=False), engine)
    assert plan.meta["placement"]["requantized"] == 0 and plan.meta["placement"]["int8_weighted_layers"] == 21
    report = json.loads(gzip.decompress(Path(f"{engine}.placement.json.gz").read_bytes()))
    assert report["summary"] == plan.meta["placement"] and len(report["activations"]) > 20


def test_yolo_placement_variants_share_the_default_calibration(gpu, tmp_path, monkeypatch):
    """One calibration cache (the default definition's) serves every YOLOv4 INT8 placement: R3c quantizes the
    branch conv's output (the one quantized weighted output), --yolo-shortcut-q activation (R3b) the activation's,
    --yolo-preact-q none leaves the stem's raw output alone, --yolo-head-q int8 quantizes the head conv; each
    recorded in the definition; FP16 definitions ignore them."""
    from netdef.quantize import calibrate
    from weights_export.darknet_synth import CfgWriter, write_synthetic_darknet
    from networks.yolov4 import YOLOv4

    w = CfgWriter(32, 32, 1, 1)
    w.conv(8, 3, 2, "mish")
    w.conv(8, 3, 1, "mish")
    w.section("shortcut", **{"from": "-2", "activation": "linear"})
    w.head_conv(1)
    w.yolo("0", "10,14", 1, 1.0)
    model = YOLOv4.from_hdf5(write_synthetic_darknet(w.text(), tmp_path, "yolov4", seed=2, gain=1.2))
    data = model.sample_input(4, 32, seed=int(np.random.default_rng().integers(1000)))
    calibrate(model, data, batch=4, input_size=(32, 32), out=tmp_path / "yolov4_calib.json", progress=False)
    monkeypatch.setitem(gpu.INPUT_SIZE, "yolov4", (32, 32))
    plan = gpu.netdef_plan("yolov4", tmp_path, BuildSettings(precision="int8", progress=False), tmp_path / "c.engine")
    assert not {"shortcut_q", "preact_q", "head_q"} & set(plan.meta["define_options"])
    assert plan.meta["placement"]["quantized_weighted_outputs"] == 2 and plan.meta["placement"]["requantized"] == 0
    monkeypatch.setitem(gpu.YOLO_INT8, "shortcut_q", "activation")
    plan = gpu.netdef_plan("yolov4", tmp_path, BuildSettings(precision="int8", progress=False), tmp_path / "a.engine")
    assert plan.meta["define_options"]["shortcut_q"] == "activation"
    assert plan.meta["placement"]["quantized_weighted_outputs"] == 1 and plan.meta["placement"]["requantized"] == 0
    monkeypatch.setitem(gpu.YOLO_INT8, "preact_q", "none")  # --yolo-preact-q none: conv 0 computes its Mish
    monkeypatch.setitem(gpu.YOLO_INT8, "head_q", "int8")  # --yolo-head-q int8: the head conv in INT8 too
    assert gpu.yolo_int8_options() == {"shortcut_q": "activation", "preact_q": "none", "head_q": "int8"}
    plan = gpu.netdef_plan("yolov4", tmp_path, BuildSettings(precision="int8", progress=False), tmp_path / "s.engine")
    assert plan.meta["define_options"]["preact_q"] == "none" and plan.meta["define_options"]["head_q"] == "int8"
    assert plan.meta["placement"]["quantized_weighted_outputs"] == 0
    assert plan.meta["placement"]["int8_weighted_layers"] == plan.meta["placement"]["weighted_layers"] == 3
    fp16 = gpu.netdef_plan("yolov4", tmp_path, BuildSettings(precision="fp16", progress=False), tmp_path / "f.engine")
    assert not {"shortcut_q", "preact_q", "head_q"} & set(fp16.meta["define_options"])


def test_variant_timing_cache_starts_from_its_base_engines(gpu, tmp_path) -> None:
    base = tmp_path / "yolov4-netdef-int8-level3.engine"
    variant = tmp_path / "yolov4-netdef-int8-shortcut-activation-level3.engine"
    assert not gpu.timing_cache_for(tmp_path, variant, base).exists()  # no base cache: none
    gpu.timing_cache_for(tmp_path, base).write_bytes(b"base timings")
    path = gpu.timing_cache_for(tmp_path, variant, base)
    assert path.read_bytes() == b"base timings" and path.name == f"{variant.stem}.cache"
    path.write_bytes(b"its own")
    assert gpu.timing_cache_for(tmp_path, variant, base).read_bytes() == b"its own"  # never overwritten
    assert gpu.timing_cache_for(tmp_path, base, base).read_bytes() == b"base timings"


# --- after the build: nothing lost (the H200 run's implicit YOLOv4 row died in the check after a 13-minute build) --

class _EngineOrderSession:
    """InferenceSession stand-in whose engine lists the heads model's outputs heads first (not the network's
    order, boxes, scores, head0, head1, which the sidecar records)."""

    def __init__(self, path, outputs) -> None:
        self.meta = json.loads(Path(f"{path}.json").read_text())
        self.outputs = outputs
        self.input_names = ["input"]
        self.backend = types.SimpleNamespace(engine=None, context=None)

    @classmethod
    def from_engine(cls, path):
        return cls(path, _EngineOrderSession.values)

    def infer(self, feed):
        batch = feed["input"].shape[0]
        return {name: value[:batch] for name, value in self.outputs.items()}

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        pass


def _yolo_like(rng, batch=32):
    return {"head0": rng.standard_normal((batch, 6, 4, 4)), "head1": rng.standard_normal((batch, 6, 2, 2)),
            "boxes": rng.random((batch, 60, 4)), "scores": rng.random((batch, 60, 2))}


def _plan(meta_outputs):
    from netdef.engine import Plan

    spec = lambda name: {"name": name, "dtype": "FLOAT", "shape": [-1, 1], "min": [1, 1], "opt": [32, 1],  # noqa: E731
                         "max": [32, 1]}
    return Plan(b"engine-bytes", {"trt_flavor": "tensorrt", "trt_version": "8.6.0", "precision": "int8",
                                  "build_seconds": 771.9, "outputs": [spec(n) for n in meta_outputs],
                                  "inputs": [{**spec("input")}]})


def test_outputs_are_checked_in_the_networks_order_and_analysis_errors_keep_the_timings(gpu, tmp_path, monkeypatch):
    rng = np.random.default_rng()
    values = _yolo_like(rng)
    refs = {}
    for b in (1, 32):  # the reference lists the decoded outputs by position (out0 boxes, out1 scores), heads by name
        noisy = {k: v[:b] + 1e-3 * rng.standard_normal(v[:b].shape) for k, v in values.items()}
        refs.update({f"b{b}_out0": noisy["boxes"], f"b{b}_out1": noisy["scores"], f"b{b}_head0": noisy["head0"],
                     f"b{b}_head1": noisy["head1"]})
    _EngineOrderSession.values = values
    monkeypatch.setattr(gpu, "InferenceSession", _EngineOrderSession)
    monkeypatch.setattr(gpu, "time_session", lambda s, x, iters, warmup: {"gpu_median_ms": 6.5 + x.shape[0] / 100})

    def no_inspector(engine, context):
        raise RuntimeError("engine inspector: nothing to inspect")

    monkeypatch.setattr(gpu, "engine_layers", no_inspector)
    inputs = {f"b{b}": np.zeros((b, 3, 8, 8), np.float32) for b in (1, 32)}
    engine = tmp_path / "yolov4-implicit-int8-level1.engine"
    row = gpu.evaluate(_plan(["boxes", "scores", "head0", "head1"]), engine, inputs, refs, 1, 0)
    assert engine.read_bytes() == b"engine-bytes" and row["build_s"] == 771.9  # saved first
    assert row["b32"]["gpu_median_ms"] == pytest.approx(6.82)  # timed
    assert set(row["b32"]["outputs"]) == {"boxes", "scores", "head0", "head1"} and "no_reference" not in row["b32"]
    assert row["b32"]["cosine"] > 0.99 and row["b32"]["rel_err"] < 1e-2 and row["b32"]["heads_cosine"] > 0.99
    assert row["analysis_errors"] == {"layers": "RuntimeError: engine inspector: nothing to inspect"}
    # an output no reference covers is named, never a crash
    check = gpu.compare({"extra": values["boxes"]}, refs, 32, ["boxes", "scores"])
    assert check == {"outputs": {}, "no_reference": ["extra"]}


def test_implicit_engine_is_reused_only_when_built_from_the_same_files_and_settings(gpu, tmp_path, monkeypatch):
    from netdef.engine import save_engine

    (tmp_path / "yolov4_heads.onnx").write_bytes(b"onnx-with-heads")
    np.save(tmp_path / "yolov4_calib.npy", np.zeros((32, 3, 4, 4), np.float32))
    settings = BuildSettings(precision="int8", batch=(1, 32, 32), optimization_level=1, progress=False)
    engine = tmp_path / "yolov4-implicit-int8-level1.engine"
    sources = {"onnx": gpu.sha256_file(tmp_path / "yolov4_heads.onnx"),
               "calibration_data": gpu.sha256_file(tmp_path / "yolov4_calib.npy")}
    monkeypatch.setattr(gpu.shim, "features", lambda: types.SimpleNamespace(flavor="tensorrt", version="8.6.0"))
    plan = _plan(["boxes"])
    plan.meta.update(sources=sources, optimization_level=1, batch=[1, 32, 32])
    save_engine(plan, engine)

    def would_build(path):
        raise AssertionError(f"built {path.name} again")

    monkeypatch.setattr(gpu, "parse_onnx", would_build)
    reused = gpu.implicit_plan("yolov4", tmp_path, settings, engine)
    assert reused.meta["reused"] is True and reused.data == b"engine-bytes" and reused.meta["build_seconds"] == 771.9
    with pytest.raises(AssertionError, match="built yolov4_heads.onnx again"):
        gpu.implicit_plan("yolov4", tmp_path, settings, engine, rebuild=True)
    level3 = BuildSettings(precision="int8", batch=(1, 32, 32), optimization_level=3, progress=False)
    with pytest.raises(AssertionError, match="built yolov4_heads.onnx again"):
        gpu.implicit_plan("yolov4", tmp_path, level3, engine)
    (tmp_path / "yolov4_heads.onnx").write_bytes(b"another export")
    with pytest.raises(AssertionError, match="built yolov4_heads.onnx again"):
        gpu.implicit_plan("yolov4", tmp_path, settings, engine)


# --- the session's queue: deadlines, failed preparations and missing result files never crash a table ---------

def _run_args(tmp_path, plan, deadline_at):
    import argparse

    return argparse.Namespace(work=str(tmp_path), plan=plan, opt_level=1, int8_skip="", iters=1, warmup=0,
                              out=str(tmp_path / "trt.json"), rebuild=False, deadline_at=deadline_at,
                              yolo_heads="fp16,int8", profile_iters=0, yolo_shortcut_q="conv",
                              yolo_preact_q="stem", yolo_head_q="float")


def test_rows_past_the_deadline_or_without_preparation_are_written_not_crashed(gpu, tmp_path, capsys):
    import time

    plan = "yolov4:fp16:netdef,yolov4:int8:netdef,yolov4:int8:implicit"
    assert gpu.run(_run_args(tmp_path, plan, time.time() - 1)) == 0  # nothing prepared either: no file is read
    rows = json.loads((tmp_path / "trt.json").read_text())["rows"]
    assert [(r["precision"], r["path"], r["skipped"]) for r in rows] == [
        ("fp16", "netdef", "deadline"), ("int8", "netdef", "deadline"), ("int8", "implicit", "deadline")]
    assert "netdef_fp16 not measured: skipped (deadline)" in capsys.readouterr().out
    assert gpu.run(_run_args(tmp_path, plan, time.time() + 600)) == 0  # the preparation failed: every row says so
    rows = json.loads((tmp_path / "trt.json").read_text())["rows"]
    assert len(rows) == 3 and all("yolov4_inputs.npz" in r["error"] for r in rows)


def test_int8_table_names_result_files_never_written(gpu, tmp_path, monkeypatch, capsys):
    import gpu_table

    written = tmp_path / "trt_yolo_netdef.json"
    written.write_text(json.dumps({"rows": [
        _row("yolov4", "fp16", "netdef", 8.4, heads_cos=0.9999), _row("yolov4", "int8", "netdef", 5.2, heads_cos=0.996),
        {"model": "yolov4", "precision": "int8", "path": "implicit", "opt_level": 1, "skipped": "deadline"}]}))
    never = tmp_path / "trt_r50.json"
    monkeypatch.setattr(sys, "argv", ["gpu_table.py", "--int8", str(written), str(never), "--json",
                                      str(tmp_path / "summary.json")])
    assert gpu_table.main() == 0
    out = capsys.readouterr().out
    assert "netdef INT8 / netdef FP16 = 0.62" in out and "implicit_int8 not measured: skipped (deadline)" in out
    assert f"no results in {never} (its step did not run or did not finish" in out
    assert json.loads((tmp_path / "summary.json").read_text())[0]["skipped"] == {"implicit_int8": "deadline"}


def test_int8_variant_rows_are_labelled_against_the_same_fp16_and_implicit(gpu) -> None:
    """A netdef INT8 row built with --int8-skip (docs/int8.md section 4: the stem in FP16) gets its own table
    entry, named, and is compared with the same level's FP16 and implicit rows."""
    from gpu_table import int8_summary, int8_table

    rows = [_row("yolov4", "fp16", "netdef", 8.0, heads_cos=0.9999), _row("yolov4", "int8", "implicit", 6.4, heads_cos=0.99),
            _row("yolov4", "int8", "netdef", 10.0, heads_cos=0.996),
            _row("yolov4", "int8", "netdef", 7.2, heads_cos=0.996, int8_skip=["layers.0"])]
    plain, stem = int8_summary(rows)
    assert plain["int8_skip"] == [] and stem["int8_skip"] == ["layers.0"]
    assert abs(stem["ratios"]["vs_fp16"] - 0.9) < 1e-12 and abs(plain["ratios"]["vs_implicit"] - 10.0 / 6.4) < 1e-12
    table = int8_table(rows)
    assert "yolov4 (level 1), batch 32" in table and "yolov4 (level 1, INT8 with layers.0 float), batch 32" in table
    # a --yolo-shortcut-q variant (INT8 only) answers to the same FP16 and implicit rows
    rows.append(_row("yolov4", "int8", "netdef", 7.6, heads_cos=0.996, shortcut_q="activation"))
    r3b = int8_summary(rows)[2]
    assert abs(r3b["ratios"]["vs_fp16"] - 7.6 / 8.0) < 1e-12 and abs(r3b["ratios"]["vs_implicit"] - 7.6 / 6.4) < 1e-12
    assert ("yolov4 (level 1, shortcuts quantized at the activation), batch 32, GPU ms: netdef FP16 8.000 | "
            "netdef INT8 7.600") in int8_table(rows)
