"""Export and load speed of the netdef HDF5 weights file against torch.save / torch.load of the same state dict.

    python bench/export.py [--repeat 5] [--json bench/results/export.json]

For ResNet-50 (export_module from a torch module: tensors, layer attributes, checksums) and a full-size YOLOv4
(export_darknet from a synthesized cfg + .weights pair: parse, read, write), prints the best of `--repeat`
runs of each and the ratios, all measured in this run. netdef writes atomically (temporary file, fsync,
rename), so torch.save is timed both plain and written the same way ("atomic save"); loads are timed with
the checksum verification WeightsFile does by default and without it (verify=False). Both loads read every
tensor into fresh memory (see `fixed_mmap_threshold`).
Targets (2-core machine): ResNet-50 export <= 2 s, YOLOv4 <= 5 s, ratios <= 1.5.
"""
from __future__ import annotations

import argparse
import ctypes
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from netdef.atomic import atomic_path, write_text_atomic  # noqa: E402
from weights_export.darknet import export_darknet  # noqa: E402
from weights_export.hdf5 import WeightsFile  # noqa: E402
from weights_export.pytorch import export_module  # noqa: E402


def fixed_mmap_threshold() -> bool:
    """Keep glibc's mmap threshold at its default 128 KiB. Left dynamic, it rises after the first large free,
    and whether a load then gets pages already faulted in depends on what the step before it freed:
    torch.load of the same ResNet-50 file took 0.03 s or 0.08 s (0 or 23,600 page faults) from one round to
    the next, and its best of 5 swung between the two from run to run. Fixed, every large array of either
    loader is fresh memory, as in a process that loads its weights once. Returns whether it could be set
    (glibc only)."""
    try:
        return bool(ctypes.CDLL(None).mallopt(-3, 128 * 1024))  # M_MMAP_THRESHOLD
    except (OSError, AttributeError):
        return False


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def load_all(path: Path, verify: bool = True) -> dict[str, np.ndarray]:
    with WeightsFile(path, verify=verify) as wf:
        return {key: wf[key] for key in wf}


def torch_save_atomic(state: dict[str, torch.Tensor], path: Path) -> None:
    """torch.save written the way netdef writes every file (temporary file, fsync, rename)."""
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def measure(name: str, export: Callable[[Path], object], state: dict[str, torch.Tensor], work: Path,
            repeat: int) -> dict[str, float | str]:
    """Best of `repeat` rounds; each round runs all six steps back to back, so load from other processes
    hits netdef and torch alike."""
    h5, pt = work / f"{name}.h5", work / f"{name}.pt"
    steps: dict[str, Callable[[], object]] = {
        "export_s": lambda: export(h5),
        "torch_save_s": lambda: torch.save(state, pt),
        "torch_save_atomic_s": lambda: torch_save_atomic(state, pt),
        "load_s": lambda: load_all(h5),
        "load_unverified_s": lambda: load_all(h5, verify=False),
        "torch_load_s": lambda: torch.load(pt, weights_only=True),
    }
    for step in steps.values():  # warm-up: imports, page cache
        step()
    times: dict[str, list[float]] = {k: [] for k in steps}
    for _ in range(repeat):
        for key, step in steps.items():
            times[key].append(timed(step))
    row: dict[str, float | str] = {"model": name,
                                   "MB": sum(t.numel() * t.element_size() for t in state.values()) / 1e6}
    row.update({key: min(values) for key, values in times.items()})
    row["export_ratio"] = row["export_s"] / row["torch_save_s"]
    row["export_ratio_atomic"] = row["export_s"] / row["torch_save_atomic_s"]
    row["load_ratio"] = row["load_s"] / row["torch_load_s"]
    row["load_unverified_ratio"] = row["load_unverified_s"] / row["torch_load_s"]
    return row


def resnet50_case(work: Path) -> tuple[Callable[[Path], object], dict[str, torch.Tensor]]:
    from networks.resnet import random_bn_init, resnet50_reference

    model = random_bn_init(resnet50_reference(seed=0), seed=1)
    return (lambda out: export_module(model, out, "resnet50", input_shape=(1, 3, 224, 224), progress=False)), \
        model.state_dict()


def yolov4_case(work: Path) -> tuple[Callable[[Path], object], dict[str, torch.Tensor]]:
    from weights_export.darknet_synth import write_darknet_weights, yolov4_cfg

    cfg_text = yolov4_cfg(608, 608, width_div=1, classes=80)  # full width: the real YOLOv4's 64M parameters
    cfg, weights = work / "yolov4.cfg", work / "yolov4.weights"
    cfg.write_text(cfg_text)
    write_darknet_weights(cfg_text, weights)
    export = lambda out: export_darknet(cfg, weights, out, progress=False)  # noqa: E731
    export(work / "state.h5")
    state = {k: torch.from_numpy(v) for k, v in load_all(work / "state.h5").items()}
    return export, state


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--json", help="also write the rows as JSON here")
    args = parser.parse_args(argv)
    torch.set_num_threads(2)
    fixed = fixed_mmap_threshold()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for name, case in (("resnet50", resnet50_case), ("yolov4", yolov4_case)):
            export, state = case(work)
            rows.append({**measure(name, export, state, work, args.repeat), "fixed_mmap_threshold": fixed})
    print(f"best of {args.repeat} interleaved rounds, {os.cpu_count()} CPUs, load average "
          f"{os.getloadavg()[0]:.1f} at the end, mmap threshold {'fixed' if fixed else 'dynamic'}; "
          "ratios = netdef / torch")
    print(f"{'model':<9}{'MB':>7}{'export s':>10}{'torch.save s':>14}{'ratio':>7}{'atomic save s':>15}{'ratio':>7}"
          f"{'load s':>9}{'ratio':>7}{'unverified s':>15}{'ratio':>7}{'torch.load s':>14}")
    for r in rows:
        print(f"{r['model']:<9}{r['MB']:>7.1f}{r['export_s']:>10.3f}{r['torch_save_s']:>14.3f}"
              f"{r['export_ratio']:>7.2f}{r['torch_save_atomic_s']:>15.3f}{r['export_ratio_atomic']:>7.2f}"
              f"{r['load_s']:>9.3f}{r['load_ratio']:>7.2f}{r['load_unverified_s']:>15.3f}"
              f"{r['load_unverified_ratio']:>7.2f}{r['torch_load_s']:>14.3f}")
    if args.json:
        write_text_atomic(args.json, json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
