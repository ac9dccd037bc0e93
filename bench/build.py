"""Definition + build time through netdef versus the ONNX path, on the same TensorRT builder.

    python bench/build.py [--repeat 3] [--cases resnet50] [--precisions fp32,fp16] [--json bench/results/build.json]

netdef path: HDF5 file -> `from_hdf5` -> `define` (network API) -> `build_serialized_network`.
ONNX path:   the same torch module -> `torch.onnx.export` -> the binding's ONNX parser -> the same build call,
             with torch's default exporter (dynamo=True since torch 2.9) and with the legacy TorchScript one.
Both build with the same `BuildSettings` (batch 1, default optimization level, no timing cache) and the
same builder; each is the best of `--repeat` runs, and the ratio netdef / ONNX is from this one run.
Target: ResNet-50 netdef <= 0.3x the ONNX path (with the exporter `torch.onnx.export` uses by default).

A case is one entry of CASES: a name, the input size and a function writing the HDF5 file and returning
(network class, torch module). YOLOv4 at 416 is added by appending a Case.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from netdef import trt as shim  # noqa: E402
from netdef.atomic import write_text_atomic  # noqa: E402
from netdef.engine import BuildSettings, build_engine, create_builder, create_network  # noqa: E402


@dataclass
class Case:
    name: str
    input_size: tuple[int, int]
    prepare: Callable[[Path], tuple[Any, Any]]  # writes <dir>/<name>.h5, returns (NetworkModel class, torch module)
    input_name: str = "input"


def resnet_case(arch: str) -> Callable[[Path], tuple[Any, Any]]:
    def prepare(path: Path) -> tuple[Any, Any]:
        from networks.resnet import ResNet, random_bn_init, torch_resnet
        from weights_export.pytorch import export_module

        model = random_bn_init(torch_resnet(arch, seed=0), seed=1)
        export_module(model, path, arch, input_shape=(1, 3, 224, 224), progress=False)
        return ResNet, model

    return prepare


CASES: list[Case] = [
    Case("resnet50", (224, 224), resnet_case("resnet50")),
    Case("resnet18", (224, 224), resnet_case("resnet18")),
]


def yolov4_case(path: Path) -> tuple[Any, Any]:
    """Full-width YOLOv4 (AlexeyAB yolov4.cfg structure, 80 classes) with random Darknet weights, imported
    through the Darknet exporter. The netdef path includes the decode; NMS is "auto" (engine where the binding
    can build TensorRT's NMS layer, raw otherwise); the ONNX path exports the reference (heads + decode)."""
    from networks.yolov4 import YOLOv4
    from weights_export.darknet_synth import write_darknet_weights, yolov4_cfg
    from weights_export.darknet import export_darknet

    text = yolov4_cfg(416, 416, width_div=1, classes=80)
    cfg = path.with_suffix(".cfg")
    cfg.write_text(text)
    weights = write_darknet_weights(text, path.with_suffix(".weights"), gain=1.2)
    export_darknet(cfg, weights, path, progress=False)
    return YOLOv4, YOLOv4.from_hdf5(path).reference()


CASES.append(Case("yolov4", (416, 416), yolov4_case))


def best_of(repeat: int, fn: Callable[[], dict[str, float]]) -> dict[str, float]:
    """Run `fn` (returning named stage times) `repeat` times; keep the run with the smallest total."""
    runs = [fn() for _ in range(repeat)]
    return min(runs, key=lambda r: r["total"])


def netdef_path(cls: Any, weights: Path, case: Case, precision: str, builder: Any) -> dict[str, float]:
    t0 = time.perf_counter()
    model = cls.from_hdf5(weights)
    net = model.define(precision, case.input_size)
    t1 = time.perf_counter()
    build_engine(net.definition, BuildSettings(precision=precision, progress=False), builder)
    t2 = time.perf_counter()
    return {"define": t1 - t0, "build": t2 - t1, "total": t2 - t0}


EXPORTERS = ("dynamo", "torchscript")  # torch.onnx.export's default since torch 2.9, and the legacy one


def export_onnx(model: Any, x: Any, input_name: str, exporter: str, work: Path) -> bytes:
    path = work / "model.onnx"
    with warnings.catch_warnings(), torch.no_grad(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        if exporter == "dynamo":  # weights inline (the default writes them beside the file)
            torch.onnx.export(model, (x,), str(path), input_names=[input_name], output_names=["output"],
                              opset_version=18, dynamo=True, external_data=False)
        else:
            torch.onnx.export(model, (x,), str(path), input_names=[input_name], output_names=["output"],
                              opset_version=17, dynamo=False)
    return path.read_bytes()


def onnx_path(module: Any, case: Case, precision: str, builder: Any, exporter: str, work: Path) -> dict[str, float]:
    """torch.onnx.export (FP16 weights and input for fp16: strongly typed networks take the ONNX types) + parse + build."""
    trt = shim.binding()
    half = precision == "fp16"
    model = module.half() if half else module.float()
    x = torch.randn(1, 3, *case.input_size, dtype=torch.float16 if half else torch.float32)
    t0 = time.perf_counter()
    data = export_onnx(model, x, case.input_name, exporter, work)
    t1 = time.perf_counter()
    network = create_network(builder)
    parser = trt.OnnxParser(network, shim.logger())
    if not parser.parse(data):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f"{case.name}: the ONNX parser refused the export: {errors}")
    t2 = time.perf_counter()
    build_engine(network, BuildSettings(precision=precision, progress=False), builder)
    t3 = time.perf_counter()
    module.float()
    return {"export": t1 - t0, "parse": t2 - t1, "build": t3 - t2, "total": t3 - t0}


def measure(case: Case, precisions: list[str], repeat: int, work: Path,
            exporters: tuple[str, ...] = EXPORTERS) -> list[dict[str, Any]]:
    weights = work / f"{case.name}.h5"
    cls, module = case.prepare(weights)
    module.eval()
    builder = create_builder()
    rows = []
    for precision in precisions:
        netdef_path(cls, weights, case, precision, builder)  # warm-up: imports, first-build setup
        nd = best_of(repeat, lambda: netdef_path(cls, weights, case, precision, builder))
        for exporter in exporters:
            try:
                onnx_path(module, case, precision, builder, exporter, work)
                ox = best_of(repeat, lambda: onnx_path(module, case, precision, builder, exporter, work))
            except Exception as exc:  # an exporter that cannot handle the model is a row, not a crash
                logging.warning("%s %s: %s export failed: %s", case.name, precision, exporter, exc)
                continue
            rows.append({"case": case.name, "precision": precision, "exporter": exporter,
                         "netdef_define_s": nd["define"], "netdef_build_s": nd["build"], "netdef_total_s": nd["total"],
                         "onnx_export_s": ox["export"], "onnx_parse_s": ox["parse"], "onnx_build_s": ox["build"],
                         "onnx_total_s": ox["total"], "ratio": nd["total"] / ox["total"]})
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    head = (f"{'case':<10} {'prec':<5} {'exporter':<11} {'netdef define':>13} {'build':>6} {'total':>6} | {'onnx export':>11} "
            f"{'parse':>6} {'build':>6} {'total':>6} | {'netdef/onnx':>11}")
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(f"{r['case']:<10} {r['precision']:<5} {r['exporter']:<11} {r['netdef_define_s']:>13.2f} {r['netdef_build_s']:>6.2f} "
                     f"{r['netdef_total_s']:>6.2f} | {r['onnx_export_s']:>11.2f} {r['onnx_parse_s']:>6.2f} "
                     f"{r['onnx_build_s']:>6.2f} {r['onnx_total_s']:>6.2f} | {r['ratio']:>10.2f}x")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--cases", default="resnet50", help=f"comma-separated, of: {', '.join(c.name for c in CASES)}")
    parser.add_argument("--precisions", default="fp32,fp16")
    parser.add_argument("--exporters", default=",".join(EXPORTERS), help="ONNX exporters to time: dynamo, torchscript")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows as JSON")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("tensorrt").setLevel(logging.ERROR)
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)  # the dynamo exporter's notes on absent torchvision ops
    torch.set_num_threads(2)
    known = {c.name: c for c in CASES}
    wanted = [n.strip() for n in args.cases.split(",") if n.strip()]
    unknown = [n for n in wanted if n not in known]
    if unknown:
        parser.error(f"unknown case(s) {unknown}; known: {', '.join(known)}")
    precisions = [p.strip() for p in args.precisions.split(",") if p.strip()]
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="netdef-bench-build-") as tmp:
        for name in wanted:
            rows += measure(known[name], precisions, args.repeat, Path(tmp), tuple(args.exporters.split(",")))
    feat = shim.features()
    print(f"definition + build time, best of {args.repeat}, {feat.flavor} {feat.version} "
          f"(seconds; target netdef/onnx <= 0.30x for resnet50)")
    print(table(rows))
    if args.json:
        write_text_atomic(args.json, json.dumps({"binding": f"{feat.flavor} {feat.version}", "rows": rows},
                                                indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
