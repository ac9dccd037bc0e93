"""GPU benchmark, step 1 of 2: run in the GPU machine's own python3 (torch + CUDA).

Makes the models (seeded random init, realistic BatchNorm statistics) as netdef HDF5 files and ONNX
files, the inputs and their float64 reference outputs, the PyTorch timings (eager FP32/FP16 at batch 1
and 32, torch.compile reduce-overhead FP16 channels-last at batch 32), and netdef's INT8 calibration caches
(the executor on CUDA; needs a TensorRT binding for the definition: TensorRT-RTX is enough).
Step 2 (`bench/gpu.py`, TensorRT 8.6 in Python 3.10, no torch) builds and times the engines.

    python3 bench/gpu_prepare.py --work /tmp/nd [--models resnet50,yolov4]
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from netdef.atomic import write_text_atomic  # noqa: E402

MODELS = {"resnet18": {"input_size": (224, 224)}, "resnet50": {"input_size": (224, 224)},
          "yolov4": {"input_size": (416, 416)}}
BATCHES = (1, 32)


def make_resnet(arch: str, work: Path) -> tuple[Path, torch.nn.Module]:
    from networks.resnet import random_bn_init, torch_resnet
    from weights_export.pytorch import export_module

    model = random_bn_init(torch_resnet(arch, seed=0), seed=1).eval()
    path = work / f"{arch}.h5"
    export_module(model, path, arch, input_shape=(1, 3, 224, 224),
                  mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
    return path, model


def make_yolov4(arch: str, work: Path) -> tuple[Path, torch.nn.Module]:
    from networks.yolov4 import YOLOv4
    from weights_export.darknet import export_darknet
    from weights_export.darknet_synth import write_darknet_weights, yolov4_cfg

    cfg, weights = work / "yolov4.cfg", work / "yolov4.weights"
    cfg.write_text(yolov4_cfg(width=416, height=416, width_div=1, classes=80))  # full-size YOLOv4
    write_darknet_weights(cfg.read_text(), weights, seed=0, gain=1.2)
    path = work / "yolov4.h5"
    export_darknet(cfg, weights, path)
    return path, YOLOv4.from_hdf5(path).reference(nms="raw").eval()


def export_onnx(model: torch.nn.Module, x: torch.Tensor, path: Path, outputs: list[str]) -> None:
    """The inference graph (every module in eval mode) as ONNX; every module's training flag is left as it was.

    torch.onnx.export ends by calling train(flag) on the module it exported, which sets that flag on every
    submodule: a wrapper built in train mode (torch's default) switched the wrapped YOLOv4 reference to training,
    and its float64 references were then computed with BatchNorm on batch statistics (H200 run 2026-11-30:
    heads cosine 0.28-0.35 against engines that were right)."""
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        torch.onnx.export(model, (x,), str(path), input_names=["input"], output_names=outputs, opset_version=17,
                          dynamic_axes={"input": {0: "batch"}, **{o: {0: "batch"} for o in outputs}}, dynamo=False)
    finally:
        for module, training in modes:
            module.training = training


class WithHeads(torch.nn.Module):
    """The YOLOv4 reference returning (boxes, scores, head0, head1, ...): the ONNX model TensorRT's implicit INT8
    is built from, so its raw heads are judged against float64 like netdef's INT8 engine's."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> tuple:
        heads = self.model.heads(x)
        return (*self.model.decode(heads, (int(x.shape[-2]), int(x.shape[-1]))), *heads)


def cuda_time(fn, warmup: int = 10, iters: int = 50) -> dict[str, float]:
    """Median and p90 ms of fn() between CUDA events, after `warmup` calls. Eager PyTorch gets its best shot:
    cuDNN benchmarks its algorithms per input shape (torch.backends.cudnn.benchmark; the warmup runs the search),
    as one deploying eager with fixed shapes would set it (reports record it as `cudnn_benchmark`)."""
    torch.backends.cudnn.benchmark = True
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(iters):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return {"median_ms": float(np.median(times)), "p90_ms": float(np.percentile(times, 90))}


def torch_timings(model: torch.nn.Module, inputs: dict[int, np.ndarray], compile_: bool) -> dict[str, dict]:
    out: dict[str, dict] = {}
    dev = torch.device("cuda")
    with torch.inference_mode():
        for dtype, name in ((torch.float32, "fp32"), (torch.float16, "fp16")):
            m = model.to(dev, dtype)
            for b in BATCHES:
                x = torch.from_numpy(inputs[b]).to(dev, dtype)
                out[f"eager_{name}_b{b}"] = cuda_time(lambda: m(x))
        if compile_:
            m = model.to(dev, torch.float16).to(memory_format=torch.channels_last)
            x = torch.from_numpy(inputs[32]).to(dev, torch.float16).contiguous(memory_format=torch.channels_last)
            cm = torch.compile(m, mode="reduce-overhead")
            t0 = time.perf_counter()
            cm(x)
            cm(x)
            torch.cuda.synchronize()
            out["compile_fp16_b32"] = cuda_time(lambda: cm(x), warmup=10, iters=50)
            out["compile_fp16_b32"]["compile_s"] = round(time.perf_counter() - t0, 1)
    model.to("cpu", torch.float32)
    return out


def references(model: torch.nn.Module, inputs: dict[int, np.ndarray], device: str = "cuda") -> dict[str, np.ndarray]:
    """Float64 outputs of the model in eval mode (refuses a model with any module in training mode)."""
    training = [name or "(root)" for name, m in model.named_modules() if m.training]
    if training:
        raise RuntimeError(f"references from a model in training mode ({', '.join(training[:3])}...): BatchNorm "
                           "would use batch statistics; call .eval()")
    refs = {}
    with torch.inference_mode():
        m = model.to(device, torch.float64)
        for b, x in inputs.items():
            xt = torch.from_numpy(x).to(device, torch.float64)
            if hasattr(m, "heads"):  # YOLOv4: the raw [yolo] inputs too (INT8 is judged on them), one pass
                heads = m.heads(xt)
                refs.update({f"b{b}_head{i}": t.cpu().numpy() for i, t in enumerate(heads)})
                ys = m.decode(heads, tuple(x.shape[-2:]))
            else:
                ys = (m(xt),)
            for i, t in enumerate(ys):
                refs[f"b{b}_out{i}"] = t.cpu().numpy()
    model.to("cpu", torch.float32)
    return refs


def write_model_files(name: str, model: torch.nn.Module, inputs: dict[int, np.ndarray], work: Path,
                      onnx_heads: bool = False, device: str = "cuda") -> None:
    """<name>_inputs.npz, <name>_refs.npz (float64, computed before any export touches the model), <name>.onnx and,
    with `onnx_heads`, <name>_heads.onnx (YOLOv4: the raw heads as outputs too)."""
    np.savez(work / f"{name}_inputs.npz", **{f"b{b}": x for b, x in inputs.items()})
    np.savez(work / f"{name}_refs.npz", **references(model, inputs, device))
    outputs = ["logits"] if name.startswith("resnet") else ["boxes", "scores"]
    export_onnx(model, torch.from_numpy(inputs[1]), work / f"{name}.onnx", outputs)
    if onnx_heads:
        heads = [f"head{i}" for i in range(len(model.plan.heads))]
        export_onnx(WithHeads(model), torch.from_numpy(inputs[1]), work / f"{name}_heads.onnx", outputs + heads)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", default="/tmp/nd")
    ap.add_argument("--models", default="resnet50,yolov4")
    ap.add_argument("--calib-samples", type=int, default=256)
    ap.add_argument("--compile-models", default="resnet50,yolov4",
                    help="models timed with torch.compile (reduce-overhead) too; compiling takes minutes")
    ap.add_argument("--no-calibration", action="store_true")
    ap.add_argument("--no-torch-timings", action="store_true", help="skip the PyTorch eager/compile timings")
    ap.add_argument("--onnx-heads", default="",
                    help="models also exported as <model>_heads.onnx with the raw YOLO heads as outputs")
    args = ap.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    report: dict = {"torch": torch.__version__, "gpu": torch.cuda.get_device_name(0), "cudnn_benchmark": True,
                    "models": {}}
    for name in args.models.split(","):
        t0 = time.perf_counter()
        h5, model = (make_yolov4 if name.startswith("yolo") else make_resnet)(name, work)
        h, w = MODELS[name]["input_size"]
        rng = np.random.default_rng(123)
        inputs = {b: rng.standard_normal((b, 3, h, w)).astype(np.float32) if name.startswith("resnet")
                  else rng.random((b, 3, h, w), dtype=np.float32) for b in BATCHES}
        write_model_files(name, model, inputs, work, name in args.onnx_heads.split(","))
        entry = {"prepare_s": round(time.perf_counter() - t0, 1)}
        if not args.no_torch_timings:
            entry["torch"] = torch_timings(model, inputs, compile_=name in args.compile_models.split(","))
        report["models"][name] = entry
        if args.no_calibration:
            continue
        # INT8 calibration on the definition's own tensors, executed on CUDA (timed: issue 7's number).
        calib_data = work / f"{name}_calib.npy"
        crng = np.random.default_rng(7)
        data = (crng.standard_normal((args.calib_samples, 3, h, w)) if name.startswith("resnet")
                else crng.random((args.calib_samples, 3, h, w)))
        np.save(calib_data, data.astype(np.float32))
        t0 = time.perf_counter()
        cmd = [sys.executable, "-m", "netdef", "calibrate", name, "--weights", str(h5), "--data", str(calib_data),
               "--method", "entropy", "--out", str(work / f"{name}_calib.json"), "--device", "cuda",
               "--batch", "32"]
        rc = subprocess.run(cmd).returncode
        entry["calibration"] = {"rc": rc, "seconds": round(time.perf_counter() - t0, 1),
                                "samples": args.calib_samples, "method": "entropy", "device": "cuda"}
        report["models"][name] = entry
        print(json.dumps({name: entry}, indent=1), flush=True)
    write_text_atomic(work / "torch_report.json", json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
