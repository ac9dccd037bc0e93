"""`netdef demo`: the main job end to end on the CPU.

A seeded random-init ResNet-50 with realistic BatchNorm statistics is exported to HDF5, rebuilt layer
by layer through the network API, built into engines (fp32 and fp16) with the TensorRT binding at hand
and saved with sidecars, then verified layer by layer against PyTorch in float64.
"""
from __future__ import annotations

import argparse
import logging
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from netdef.commands.arguments import positive_int
from netdef.engine import BuildSettings, save_engine

log = logging.getLogger("netdef.demo")
TOLERANCE = {"fp32": 1e-5, "fp16": 5e-3}


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="export, rebuild, build and verify a ResNet-50 (CPU, under a minute)",
                       description=__doc__)
    p.add_argument("--work-dir", type=Path, default=None,
                   help="where the HDF5 file and engines go (default: a temporary directory, removed afterwards)")
    p.add_argument("--arch", default="resnet50", help="ResNet depth (default resnet50)")
    p.add_argument("--input-size", type=positive_int, default=224, help="square input size (default 224)")
    p.add_argument("--batch", type=positive_int, default=1, help="verification batch (default 1)")
    p.add_argument("--precisions", default="fp32,fp16", help="comma-separated (default fp32,fp16)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-progress", action="store_true", help="no builder progress bars")
    p.set_defaults(func=run)


@dataclass
class DemoRow:
    precision: str
    layers: int
    define_s: float
    build_s: float
    engine_mb: float
    worst_layer: str
    worst_rel_err: float
    logits_rel_err: float
    layers_checked: int
    ok: bool


def run(args: argparse.Namespace) -> int:
    if args.work_dir is None:
        with tempfile.TemporaryDirectory(prefix="netdef-demo-") as tmp:
            return _run(args, Path(tmp))
    args.work_dir.mkdir(parents=True, exist_ok=True)
    return _run(args, args.work_dir)


def _run(args: argparse.Namespace, work: Path) -> int:
    rows = run_demo(work, arch=args.arch, input_size=(args.input_size, args.input_size), batch=args.batch,
                    precisions=[p.strip() for p in args.precisions.split(",") if p.strip()], seed=args.seed,
                    progress=not args.no_progress)
    print(format_report(rows, args.arch, work if args.work_dir else None))
    return 0 if all(r.ok for r in rows) else 1


def export_random_resnet(path: Path, arch: str, input_size: tuple[int, int], seed: int) -> Any:
    """Export a seeded random-init torch ResNet (realistic BN statistics) to HDF5; returns the torch module."""
    from networks.resnet import ResNet, random_bn_init, torch_resnet
    from weights_export.pytorch import export_module

    model = random_bn_init(torch_resnet(arch, seed=seed), seed=seed + 1)
    export_module(model, path, arch, input_shape=(1, 3, *input_size), mean=list(ResNet.mean),
                  std=list(ResNet.std), seed=seed)
    return model


def run_demo(work: Path, arch: str = "resnet50", input_size: tuple[int, int] = (224, 224), batch: int = 1,
             precisions: list[str] | None = None, seed: int = 0, progress: bool = True) -> list[DemoRow]:
    from networks.resnet import ResNet

    weights = work / f"{arch}.h5"
    t0 = time.perf_counter()
    reference = export_random_resnet(weights, arch, input_size, seed)
    log.info("exported %s in %.1f s", weights, time.perf_counter() - t0)
    model = ResNet.from_hdf5(weights)
    x = model.sample_input(batch, input_size, seed=seed + 2)
    rows = []
    for precision in precisions or ["fp32", "fp16"]:
        t0 = time.perf_counter()
        net = model.define(precision, input_size)
        define_s = time.perf_counter() - t0
        layers = net.definition.num_layers
        check = verify_layers(net, reference, x, TOLERANCE[precision])
        t0 = time.perf_counter()
        plan = net.build(BuildSettings(precision=precision, batch=(1, batch, max(batch, 8)), progress=progress),
                         arch=arch)
        build_s = time.perf_counter() - t0
        save_engine(plan, work / f"{arch}_{precision}.engine", weights=weights)
        rows.append(DemoRow(precision, layers, define_s, build_s, len(plan.data) / 1e6, check["worst_layer"],
                            check["worst_rel_err"], check["logits_rel_err"], check["layers_checked"], check["ok"]))
    return rows


def verify_layers(net: Any, reference: Any, x: np.ndarray, tolerance: float) -> dict[str, Any]:
    """Layer-by-layer comparison through netdef.verify (the verification issue); logits only without it."""
    try:
        from netdef.verify import verify_network
    except ImportError:
        log.warning("netdef.verify is not available: comparing the logits only")
        return _compare_logits(net, reference, x, tolerance)
    report = verify_network(net, reference, x, tolerance=tolerance)
    worst = report.worst
    return {"worst_layer": worst.name if worst else "-", "worst_rel_err": worst.rel if worst else float("nan"),
            "logits_rel_err": max((o.rel for o in report.outputs), default=float("nan")),
            "layers_checked": len(report.layers), "ok": bool(report.ok)}


def _compare_logits(net: Any, reference: Any, x: np.ndarray, tolerance: float) -> dict[str, Any]:
    import copy

    import torch

    from netdef.executor import execute

    logits = execute(net.definition, {"input": x})["logits"].double()
    with torch.no_grad():
        expected = copy.deepcopy(reference).double().eval()(torch.from_numpy(x).double())
    err = float((logits - expected).norm() / expected.norm())
    return {"worst_layer": "logits", "worst_rel_err": err, "logits_rel_err": err, "layers_checked": 1,
            "ok": err <= tolerance}


def format_report(rows: list[DemoRow], arch: str, kept: Path | None) -> str:
    head = (f"{'precision':<9} {'layers':>6} {'define s':>8} {'build s':>7} {'engine MB':>9} "
            f"{'checked':>7} {'worst layer rel err':>19} {'logits rel err':>14}  {'worst layer':<24} result")
    lines = [f"netdef demo: {arch} exported to HDF5, rebuilt with the network API, built and verified "
             "against float64 PyTorch", head, "-" * len(head)]
    for r in rows:
        lines.append(f"{r.precision:<9} {r.layers:>6} {r.define_s:>8.2f} {r.build_s:>7.2f} {r.engine_mb:>9.1f} "
                     f"{r.layers_checked:>7} {r.worst_rel_err:>19.2e} {r.logits_rel_err:>14.2e}  "
                     f"{r.worst_layer:<24} {'ok' if r.ok else 'FAIL'} (tol {TOLERANCE[r.precision]:.0e})")
    if kept is not None:
        lines.append(f"files in {kept}")
    return "\n".join(lines)
