"""`netdef demo` end to end (small: ResNet-18 at 64x64; the default is ResNet-50 at 224)."""
from __future__ import annotations

import json

from netdef.cli import main, make_parser


def test_demo_exports_builds_saves_and_verifies(tmp_path, capsys) -> None:
    rc = main(["demo", "--arch", "resnet18", "--input-size", "64", "--batch", "2", "--work-dir", str(tmp_path),
               "--no-progress"])
    out = capsys.readouterr().out
    assert rc == 0, out
    rows = {line.split()[0]: line.split() for line in out.splitlines() if line.startswith(("fp32 ", "fp16 "))}
    assert set(rows) == {"fp32", "fp16"}
    for precision, tolerance in (("fp32", 1e-5), ("fp16", 5e-3)):
        row = rows[precision]
        layers, checked, worst, logits = int(row[1]), int(row[5]), float(row[6]), float(row[7])
        assert layers > 40 and checked > 40  # every module output of ResNet-18 was compared
        assert 0 < worst <= tolerance and 0 < logits <= tolerance
        assert row[-3] == "ok"
        side = json.loads((tmp_path / f"resnet18_{precision}.engine.json").read_text())
        assert side["precision"] == precision and side["weights_file"] == "resnet18.h5"
        assert (tmp_path / f"resnet18_{precision}.engine").stat().st_size == side["plan_bytes"]
    assert (tmp_path / "resnet18.h5").exists()


def test_demo_defaults_are_the_main_job() -> None:
    args = make_parser().parse_args(["demo"])
    assert (args.arch, args.input_size, args.work_dir) == ("resnet50", 224, None)
