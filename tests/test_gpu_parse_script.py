"""bench/gpu_parse.py without a GPU: every form builds (TensorRT-RTX) and is recorded, and the fastest accurate form
per size names the options the session's parsed engines take."""
from __future__ import annotations

import json
import sys

import numpy as np
import torch

from networks.higherhrnet_torch import torch_parse
from tests.bench_scripts import load_bench


def test_best_form_is_the_fastest_accurate_one_at_batch_8() -> None:
    script = load_bench("gpu_parse")

    def row(size, form, ms, err=1e-3):
        return {"size": size, "form": form, "b8": {"gpu_median_ms": ms, "scores_rel_err": err}}

    rows = [row(512, script.FORMS[0], 1.0), row(512, script.FORMS[1], 0.8), row(512, script.FORMS[2], 0.5, err=0.2),
            row(256, script.FORMS[0], 0.3), row(256, script.FORMS[2], 0.4), {"size": 256, "form": "x", "error": "no"}]
    assert script.best_options(rows, 512) == "nms_pool=shift"  # the faster form 2 is not accurate
    assert script.best_options(rows, 256) == ""  # the default form: no options
    assert script.best_options(rows, 128) is None


def test_every_form_builds_and_is_recorded(tmp_path, monkeypatch) -> None:
    """On this machine the engines build but do not open (no GPU): each row keeps its build, none is 'best'."""
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
    monkeypatch.setattr(sys, "argv", ["gpu_parse.py", "--work", str(tmp_path), "--sizes", "64", "--out", str(out),
                                      "--best", str(tmp_path / "best")])
    assert script.main() == 0
    rows = json.loads(out.read_text())["rows"]
    assert [r["form"] for r in rows] == list(script.FORMS)
    assert all(r["build_s"] is not None and "did not open" in r["error"] for r in rows)
    assert (tmp_path / "parse-64-nms_pool-shift-parse_resize-shift.engine").exists()
    assert not list(tmp_path.glob("best_*.txt"))
