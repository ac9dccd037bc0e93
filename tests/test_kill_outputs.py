"""SIGKILL at random instants while `netdef export`, `build` and `calibrate` write over good outputs: every
kill leaves a loadable old or new output, and the next run leaves no temporary or staged file.

Each command runs in its own lane process (tests/kill_lane.py, which forks a child per run), the three
lanes in parallel; a tiny Darknet network keeps a run to a few tenths of a second.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

TRIALS = 30
ROOT = Path(__file__).resolve().parents[1]


def test_sigkill_at_random_instants_never_loses_an_output(tmp_path):
    lanes = {kind: subprocess.Popen([sys.executable, "-m", "tests.kill_lane", kind, str(tmp_path / kind), str(TRIALS),
                                     str(seed)], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for seed, kind in enumerate(("export", "build", "calibrate"))}
    results = {}
    for kind, proc in lanes.items():
        out, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, f"{kind} lane failed:\n{err[-3000:]}"
        results[kind] = json.loads(out.strip().splitlines()[-1])
    for kind, r in results.items():
        print(f"{kind}: {r['counts']} ({r['trials']} trials in {r['trial_seconds']} s, a run {r['run_seconds']} s, "
              f"its writing {r['writing_seconds']} s)")
        assert r["failures"] == [], f"{kind}: " + "\n".join(r["failures"][:5])
        counts = r["counts"]
        assert counts["x"] + counts["y"] == TRIALS  # every trial loadable, old (y) or new (x)
        assert counts["killed"] >= TRIALS // 3  # killed, not finished (the rest were killed after finishing)
    # the kills did land while files were being written: something was left for the next run to clean up
    assert sum(r["counts"]["left_temp"] + r["counts"]["left_staged"] for r in results.values()) > 0
