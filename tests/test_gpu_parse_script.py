"""bench/gpu_parse.py without a GPU: each form of the parse builds (TensorRT-RTX) and is recorded with its options."""
from __future__ import annotations

import json
import sys

import numpy as np
import torch

from networks.higherhrnet_torch import torch_parse
from tests.bench_scripts import load_bench


def test_forms_name_parse_options() -> None:
    script = load_bench("gpu_parse")
    assert script.form_options("default") == {}
    assert script.form_options("tile=1:nms_kernel=3") == {"tile": 1, "nms_kernel": 3}


def test_every_form_builds_and_is_recorded(tmp_path, monkeypatch) -> None:
    """On this machine the engines build but do not open (no GPU): each row keeps its build and its form."""
    script = load_bench("gpu_parse")
    rng = np.random.default_rng()
    refs = {}
    for b in (1, 8):
        raw = (rng.standard_normal((b, 34, 16, 16)), rng.standard_normal((b, 17, 32, 32)))
        refs.update({f"b{b}_output0": raw[0], f"b{b}_output1": raw[1]})
        refs.update(zip((f"b{b}_scores", f"b{b}_keypoints", f"b{b}_tags"),
                        (t.numpy() for t in torch_parse(*(torch.from_numpy(a) for a in raw)))))
    np.savez(tmp_path / "higherhrnet-w32-64_refs.npz", **refs)
    np.savez(tmp_path / "higherhrnet-w32-64_inputs.npz", b1=np.zeros(1))
    out = tmp_path / "parse.json"
    monkeypatch.setattr(sys, "argv", ["gpu_parse.py", "--work", str(tmp_path), "--sizes", "64", "--forms",
                                      "default,tile=4,tile=3", "--out", str(out)])
    assert script.main() == 0
    rows = json.loads(out.read_text())["rows"]
    assert [r["form"] for r in rows] == ["default", "tile=4", "tile=3"]
    assert all(r["build_s"] is not None and "did not open" in r["error"] for r in rows[:2])
    assert "tile=3" in rows[2]["error"] and "build_s" not in rows[2]  # not a divisor of 64: the form fails alone
    assert (tmp_path / "parse-64-default.engine").exists() and (tmp_path / "parse-64-tile-4.engine").exists()
