"""Which kernel TensorRT gives one INT8 convolution, by how it is quantized (issue 14; docs/int8.md 4).

One convolution with its activation, read by a 1x1 convolution (the reader quantizes what it reads, as in the
networks), at shapes of YOLOv4 416 (batch 32) and OpenPose 480x640 (batch 8), built four ways at one builder level:

    fp16      the FP16 engine: the activation fused into the convolution
    int8      netdef's placement: input and kernel quantized, the activation and the reader's Q in the epilogue
    preact    the raw output quantized (as YOLOv4.define(preact_q=...)): the activation in a pointwise kernel
    implicit  the FP16 definition (no Q/DQ) with TensorRT's implicit INT8 (entropy calibrator on one random batch;
              bench/ is the only place the calibrator may appear)

Per case and form: the convolution's kernel (engine inspector), the GPU ms of its kernel and of the activation's
own kernel where there is one (per-layer profile), the engine's GPU ms. Minutes on the H200, where a YOLOv4 build
takes ten: the quick way to see whether a placement reaches the kernels the implicit engine uses.

    PYTHONPATH=. /tmp/gpu-trt/python bench/int8_kernels.py --work /tmp/k --out kernels.json [--cases a,b] [--level 3]
"""
from __future__ import annotations

import argparse
import datetime
import gzip
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from netdef import nn  # noqa: E402
from netdef.network import Network, current  # noqa: E402
from netdef.quantize import Int8Settings  # noqa: E402

# name: (activation, in channels, out channels, kernel, (H, W), batch): the networks' shapes
CASES = {
    "leaky-1x1-1024-512-13": ("leaky", 1024, 512, 1, (13, 13), 32),  # YOLOv4 neck (conv 105)
    "leaky-1x1-512-256-26": ("leaky", 512, 256, 1, (26, 26), 32),  # conv 116
    "leaky-3x3-256-512-26": ("leaky", 256, 512, 3, (26, 26), 32),  # conv 123
    "leaky-3x3-128-256-52": ("leaky", 128, 256, 3, (52, 52), 32),  # conv 133
    "mish-1x1-64-64-208": ("mish", 64, 64, 1, (208, 208), 32),  # CSP stage 1 (convs 2, 4, 8)
    "mish-3x3-128-128-52": ("mish", 128, 128, 3, (52, 52), 32),  # stage 3's residual convs
    "relu-7x7-128-128-60x80": ("relu", 128, 128, 7, (60, 80), 8),  # OpenPose's stage convs at 480x640
}
FORMS = ("fp16", "int8", "preact", "implicit")
ACTIVATIONS = {"leaky": lambda: nn.LeakyReLU(0.1), "mish": nn.Mish, "relu": nn.ReLU}
AMAX = 4.0  # every range alike: kernels and their times do not depend on the scales


class ConvAct(nn.Module):
    """conv -> (its raw output, quantized where the network's placement says: `preact`) -> activation."""

    def __init__(self, activation: str, cin: int, cout: int, kernel: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, padding=kernel // 2)
        self.act = ACTIVATIONS[activation]()

    def forward(self, x: Any) -> Any:
        return self.act(current().quant.preactivation(self.conv(x)))


class Probe(nn.Module):
    def __init__(self, activation: str, cin: int, cout: int, kernel: int) -> None:
        super().__init__()
        self.block = ConvAct(activation, cin, cout, kernel)
        self.reader = nn.Conv2d(cout, cout, 1)

    def forward(self, x: Any) -> Any:
        return self.reader(self.block(x))


def weights(cin: int, cout: int, kernel: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    fan = cin * kernel * kernel
    return {"block.conv.weight": rng.standard_normal((cout, cin, kernel, kernel)) * np.sqrt(2.0 / fan),
            "block.conv.bias": rng.standard_normal(cout) * 0.1,
            "reader.weight": rng.standard_normal((cout, cout, 1, 1)) * np.sqrt(2.0 / cout),
            "reader.bias": rng.standard_normal(cout) * 0.1}


def define(case: str, form: str) -> Network:
    """The case's definition for `form`: FP16 for "implicit" too (no Q/DQ: TensorRT quantizes it itself, as the
    ONNX path's anchor; the builder gets the INT8 flag and the calibrator), or "fp32" (its calibration names)."""
    activation, cin, cout, kernel, (h, w), _ = CASES[case]
    probe = Probe(activation, cin, cout, kernel).load_weights(
        {k: v.astype(np.float32) for k, v in weights(cin, cout, kernel).items()})
    if form in ("int8", "preact"):
        names = define(case, "fp32").quant.calibration_names()
        net = Network(case, "int8", int8=Int8Settings({n: AMAX for n in names}))
    else:
        net = Network(case, {"fp16": "fp16", "implicit": "fp16", "fp32": "fp32"}[form])
    with net:
        net.quant.before_activation = ("block",) if form == "preact" else ()
        net.mark_output(probe(net.add_input("input", (-1, cin, h, w))), "output")
    return net


def kernels_of(layers: list[dict[str, Any]], every: dict[str, float]) -> dict[str, Any]:
    """The block's convolution (kernel, ms) and the ms of the block's other kernels (its activation where it runs
    apart, reformats), from the layer list and the per-layer profile."""
    conv = next((la for la in layers if "block.conv" in la.get("Name", "") and la.get("TacticName")), None)
    block = {name: ms for name, ms in every.items() if "block" in name}
    conv_ms = every.get(conv["Name"], 0.0) if conv else None
    return {"conv_kernel": conv.get("TacticName") if conv else None, "conv_ms": conv_ms,
            "block_ms": round(sum(block.values()), 4), "block_layers": len(block)}


def measure(case: str, form: str, work: Path, level: int, iters: int) -> dict[str, Any]:
    from engine_layers import read_layers
    from gpu import evaluate
    from implicit_int8 import builder_config, calibrator, implicit_int8

    from netdef.engine import BuildSettings

    _, cin, _, _, (h, w), batch = CASES[case]
    x = np.random.default_rng(1).standard_normal((batch, cin, h, w)).astype(np.float32)
    net = define(case, form)
    settings = BuildSettings(precision=net.policy.name, batch=(1, batch, batch), optimization_level=level,
                             progress=False)
    path = work / f"{case}-{form}-level{level}.engine"
    implicit = (implicit_int8(calibrator(x, batch, work / f"{case}_trt_entropy.cache")),) if form == "implicit" else ()
    with builder_config(*implicit):
        plan = net.build(settings)
    row = evaluate(plan, path, {f"b{batch}": x}, {}, iters, 10, batches=(batch,),
                   check=lambda *args: {}, profile=(batch, iters))
    every = json.loads(gzip.decompress(Path(f"{path}.profile.json.gz").read_bytes()))
    row.update(kernels_of(read_layers(f"{path}.layers.json.gz"), every))
    row["gpu_ms"] = row.get(f"b{batch}", {}).get("gpu_median_ms")
    return row


def table(rows: list[dict[str, Any]]) -> str:
    """Per case: each form's conv kernel family, conv ms, block ms and block / FP16 block."""
    lines = ["case | form | conv kernel | conv ms | block ms (kernels) | block / fp16"]
    fp16 = {r["case"]: r.get("block_ms") for r in rows if r["form"] == "fp16"}
    for r in rows:
        if "error" in r:
            lines.append(f"{r['case']} | {r['form']} | FAILED: {r['error'][:120]}")
            continue
        kernel = (r.get("conv_kernel") or "-")[:48]
        base = fp16.get(r["case"])
        ratio = f"{r['block_ms'] / base:.2f}" if base and r.get("block_ms") is not None else "-"
        conv = f"{r['conv_ms']:.4f}" if r.get("conv_ms") is not None else "-"
        lines.append(f"{r['case']} | {r['form']} | {kernel} | {conv} | {r.get('block_ms')} "
                     f"({r.get('block_layers')}) | {ratio}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from gpu import write_results
    from implicit_int8 import with_layer_lists

    from netdef import trt as shim

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    feat = shim.features()
    results = {"date": datetime.date.today().isoformat(), "trt": f"{feat.flavor} {feat.version}",
               "level": args.level, "rows": []}
    for case in args.cases.split(","):
        for form in args.forms.split(","):
            if time.time() > args.deadline_at:
                row: dict[str, Any] = {"skipped": "deadline"}
            else:
                t0 = time.perf_counter()
                try:
                    row = with_layer_lists(measure, case, form, work, args.level, args.iters)
                except Exception as exc:  # one form that does not build must not lose the others
                    row = {"error": f"{type(exc).__name__}: {exc}"[:2000]}
                row["wall_s"] = round(time.perf_counter() - t0, 1)
            row.update(case=case, form=form)
            results["rows"].append(row)
            print(json.dumps({k: v for k, v in row.items() if not k.startswith("profile")}), flush=True)
            write_results(Path(args.out), results)
    print(table(results["rows"]))
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", default="/tmp/int8-kernels")
    ap.add_argument("--out", default="int8_kernels.json")
    ap.add_argument("--cases", default=",".join(CASES))
    ap.add_argument("--forms", default=",".join(FORMS))
    ap.add_argument("--level", type=int, default=3)
    ap.add_argument("--iters", type=int, default=50)
    ap.add_argument("--deadline-at", type=float, default=float("inf"),
                    help="start no build after this time (seconds since the epoch: the session queue's deadline)")
    return run(ap.parse_args())


if __name__ == "__main__":
    raise SystemExit(main())
