"""One line per queue item of bench/gpu_session.sh, in the queue's order of value (runs anywhere: json only).

bench/gpu_session.sh keeps WORK/status/NN-<item>.json per item: waiting, running, done, failed, stopped (the
session's end) or skipped, where it runs (gpu0, gpu1; gpus for serving), why (the reason of a skip, failure or
stop; what a waiting item waits for), its seconds, and the result files it writes. Per item this prints the
state with its reason, and per result file how many rows were measured, failed or skipped, e.g.

     3 yolo_implicit    gpu1  done 803 s                         int8/y/trt_yolo_implicit.json: 1 ok
     9 pose512_more     -     skipped (deadline: needs ~180 s, 95 s left)

    python3 bench/session_status.py /tmp/gs
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def rows_of(data: dict) -> list[dict]:
    """The result rows of a bench/gpu.py, gpu_pose.py, gpu_openpose.py or serve.py file (OpenPose's parse check
    and image-to-people runs included)."""
    rows = list(data.get("rows", []))
    rows += [dict(check, what=f"parse {size}") for size, check in (data.get("parse") or {}).items()]
    rows += [dict(run, what=f"image to people {key}") for key, run in (data.get("end_to_end") or {}).items()]
    return rows


def count(work: Path, name: str) -> str:
    """'N ok, N error, N skipped' for one result file (`name`, relative to `work`), or why there is none."""
    path = work / name
    if not path.is_file():
        return f"{name}: none"
    try:
        data = json.loads(path.read_text())
    except (ValueError, OSError) as exc:
        return f"{name}: unreadable ({type(exc).__name__})"
    rows = rows_of(data)
    if not rows:
        return f"{name}: written"
    tally = {"ok": 0, "error": 0, "skipped": 0, "with analysis errors": 0}
    for row in rows:
        tally["skipped" if row.get("skipped") else "error" if row.get("error") else "ok"] += 1
        tally["with analysis errors"] += bool(row.get("analysis_errors"))
    return f"{name}: " + ", ".join(f"{n} {k}" for k, n in tally.items() if n)


def last_line(path: Path) -> str:
    try:
        lines = [line for line in path.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return ""
    return lines[-1][:160] if lines else ""


def state_text(status: dict, now: float) -> str:
    state, why = status.get("state", "?"), status.get("why") or ""
    if state == "running":
        text = f"running {now - status.get('since', now):.0f} s"
        if status.get("builds_until"):
            left = status["builds_until"] - now
            text += f" (builds start for {left:.0f} s more)" if left > 0 else " (no new build)"
        return text
    if state in ("done", "failed", "stopped"):
        text = f"{state} {status.get('seconds', 0):.0f} s"
        return f"{text} ({why})" if why else text
    return f"{state} ({why})" if why else state


def item_line(status: dict, work: Path, now: float) -> str:
    files = "; ".join(count(work, f) for f in status.get("results", []))
    line = f"{status.get('position', 0):>2} {status.get('item', '?'):<16} {status.get('where', '-'):<5} "
    line += f"{state_text(status, now):<40} {files}"
    if status.get("state") == "running":  # the newest of its logs
        logs = [work / p for p in status.get("logs", []) if (work / p).is_file()]
        log = last_line(max(logs, key=lambda p: p.stat().st_mtime)) if logs else ""
        line += f" | log: {log}" if log else ""
    return line.rstrip()


def report(work: Path, now: float | None = None) -> str:
    now = time.time() if now is None else now
    statuses = []
    for p in sorted((work / "status").glob("*.json")):
        try:
            statuses.append(json.loads(p.read_text()))
        except (ValueError, OSError):  # being rewritten this instant
            statuses.append({"item": p.stem, "state": "?"})
    if not statuses:
        return "no queue items yet"
    states = [s.get("state", "?") for s in statuses]
    lines = [item_line(s, work, now) for s in statuses]
    lines.append("items: " + ", ".join(f"{states.count(s)} {s}" for s in dict.fromkeys(states)))
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("work", help="the session's work folder ($W of bench/gpu_session.sh)")
    print(report(Path(ap.parse_args().work)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
