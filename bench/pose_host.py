"""The pose networks' host side on the CPU (issues 17, 18): netdef against the reference pipelines' host steps.

The engines' parts run on the GPU (bench/gpu_openpose.py, bench/gpu_pose.py); what stays on the host is timed
here, on synthetic outputs with known people at the real sizes, median of --iters runs:
- OpenPose 480x640 and 224x224 (a row of people as the GPU bench's, and a crowd with partial, touching people):
  netdef = `netdef.pose.openpose.preprocess` of an HxWx3 uint8 image + `people()` on the parsed engine outputs
  (top-K peaks per part with scores, K x K limb scores per limb; the torch float64 parse of the maps, in FP32 as
  the engine emits them); reference = bench/openpose_reference.py (Hzzone's body.py steps: cv2 resize, pad and
  normalise; the maps resized x8 and to the image with cv2, scipy's gaussian_filter, peaks, PAF line integrals
  and greedy assembly in Python loops) at the same resolution on the same maps. Both must find the same people
  (keypoints within a pixel). Bytes: what each copies from the device (parsed outputs vs the raw maps).
- HigherHRNet 512 (k=30 candidates per joint with tags, bench's scenes of 3 / 10 / 20 people with missing and
  faint joints, some with stray detections): netdef.pose.grouping.group against bench/higherhrnet_reference.py
  (the official HeatmapParser's match_by_tag with Munkres, refinement over the same candidates); same people
  counted over --seeds fresh scenes (the grouping's costs tie often, where strays or people without the first
  joint come in: only Munkres' own tie-breaks give the reference's people; "before" used another solver).

    python bench/pose_host.py [--iters 50] [--seeds 20] [--out bench/results/pose_host_cpu.json]
Times in brackets: netdef's host code as it was before it was optimized (--before, a git revision: its
netdef/preprocess.py, netdef/pose/{paf,openpose,grouping}.py loaded from git), timed in the same run.
Needs cv2, scipy and torch (the reference pipelines and the float64 parse) and, for the reference's assignment,
munkres 1.1.x as the reference used it (`pip install 'munkres<2'`; scipy's solver otherwise, whose tie-breaks differ).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any, Callable

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from gpu_table import fmt  # noqa: E402

OPENPOSE_SIZES = ((480, 640), (224, 224))
MAX_PEAKS = 32  # the GPU bench's K
HRNET_SIZE, HRNET_K = 512, 30
BEFORE_REV = "c0774d3"  # main before the host code was optimized


def before_modules(rev: str) -> dict[str, ModuleType] | None:
    """netdef's host code as it was at `rev` (read with git show, run beside today's), or None without git."""
    root = Path(__file__).resolve().parents[1]
    modules: dict[str, ModuleType] = {}
    try:
        for name in ("preprocess", "pose/paf", "pose/openpose", "pose/grouping"):
            text = subprocess.run(["git", "-C", str(root), "show", f"{rev}:netdef/{name}.py"], capture_output=True,
                                  text=True, check=True).stdout
            module = ModuleType(f"before_{name.split('/')[-1]}")
            sys.modules[module.__name__] = module  # dataclasses look their module up
            exec(compile(text, f"{rev}:netdef/{name}.py", "exec"), module.__dict__)
            modules[name.split("/")[-1]] = module
    except (OSError, subprocess.CalledProcessError) as exc:
        print(f"no 'before' times: {exc}", file=sys.stderr)
        return None
    modules["openpose"].OPENPOSE = modules["preprocess"].OPENPOSE  # its imports bound today's modules
    modules["openpose"].image_people = modules["paf"].image_people
    return modules


def median_ms(fn: Callable[[], Any], iters: int) -> tuple[float, Any]:
    """(median wall ms over `iters` calls after two warm-ups, the last result)."""
    for _ in range(2):
        result = fn()
    times = []
    for _ in range(iters):
        t0 = time.perf_counter()
        result = fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return float(np.median(times)), result


# --- OpenPose ----------------------------------------------------------------------------------------------------

def crowd(low: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, list]:
    """Maps at network resolution `low`: rows of people 8 cells apart (limb fields of neighbours touch), every third
    one partial (head and arms only, or legs only)."""
    from netdef.pose.synthetic import people_maps

    h, w = low
    scale = min(1.0, h / 48)  # two rows at 224x224
    offsets = [(1 + r, 1 + c) for r in range(0, h - int(20 * scale) - 1, int(24 * scale) + 1)
               for c in np.arange(0, w - 8 * scale, 8 * scale)]
    partial = {i: ([0, 1, 2, 3, 4, 5, 6, 7, 14, 15, 16, 17] if i % 2 else [1, 8, 9, 10, 11, 12, 13])
               for i in range(2, len(offsets), 3)}
    return people_maps(offsets, low, joints_of=partial, scale=scale)


def float64_parse(paf: np.ndarray, heat: np.ndarray) -> dict[str, np.ndarray]:
    """The parsed outputs of the maps as the engine returns them (FP32)."""
    import torch

    from netdef.pose.paf import PafSettings
    from networks.openpose_torch import torch_parse

    out = torch_parse(torch.from_numpy(paf), torch.from_numpy(heat), PafSettings(max_peaks=MAX_PEAKS))
    return {name: t.numpy().astype(np.int32 if name == "peak_counts" else np.float32)
            for name, t in zip(("peaks", "peak_counts", "limb_scores"), out)}


def reference_post(maps: tuple[np.ndarray, np.ndarray], padded: tuple[int, int], pad: tuple[int, int],
                   size: tuple[int, int]) -> list[np.ndarray]:
    import openpose_reference as ref

    heat, paf = ref.upsample(maps, padded, pad, size)
    peaks = ref.find_peaks(heat)
    connections, skipped = ref.connect(peaks, paf, size[0])
    return ref.keypoints(*ref.assemble(peaks, connections, skipped))


def same_people(ours: list[np.ndarray], theirs: list[np.ndarray]) -> float | None:
    """Max |dx|, |dy| between matched people's found keypoints (people sorted by position), None if the found
    parts or the counts differ."""
    if len(ours) != len(theirs):
        return None
    key = lambda kp: sorted(kp[kp[:, 2] > 0, :2].round().tolist())  # noqa: E731
    ours, theirs = sorted(ours, key=key), sorted(theirs, key=key)
    worst = 0.0
    for a, b in zip(ours, theirs):
        if not np.array_equal(a[:, 2] > 0, b[:, 2] > 0):
            return None
        worst = max(worst, float(np.abs(a[:, :2] - b[:, :2]).max()))
    return worst


def openpose_rows(iters: int, before: dict[str, ModuleType] | None) -> list[dict]:
    import openpose_reference as ref
    from gpu_openpose import synthetic_people

    from netdef.pose.openpose import people, preprocess

    rows = []
    for size in OPENPOSE_SIZES:
        low = (size[0] // 8, size[1] // 8)
        image = np.random.default_rng(5).integers(0, 256, (*size, 3), dtype=np.uint8)
        for scene, make in (("row", synthetic_people), ("crowd", crowd)):
            paf, heat, joints = make(low)
            parsed = float64_parse(paf, heat)
            row: dict = {"size": f"{size[0]}x{size[1]}", "scene": scene, "people_planted": len(joints)}
            row["netdef_preprocess_ms"], (_, info) = median_ms(lambda: preprocess(image, size), iters)
            row["netdef_assembly_ms"], found = median_ms(lambda: people(parsed, [info]), iters)
            if before:
                row["before_preprocess_ms"], (x_before, _) = median_ms(
                    lambda: before["openpose"].preprocess(image, size), iters)
                row["before_assembly_ms"], found_before = median_ms(lambda: before["openpose"].people(parsed, [info]),
                                                                    iters)
                row["before_host_ms"] = row["before_preprocess_ms"] + row["before_assembly_ms"]
                row["same_as_before"] = bool(np.array_equal(x_before, preprocess(image, size)[0]) and all(
                    np.array_equal(a.keypoints, b.keypoints) and a.score == b.score
                    for a, b in zip(found[0], found_before[0])) and len(found[0]) == len(found_before[0]))
            bgr = np.ascontiguousarray(image[:, :, ::-1])
            row["reference_preprocess_ms"], (_, padded, pad) = median_ms(
                lambda: ref.preprocess(bgr, size[0], 1.0), iters)
            r_iters = max(3, iters // 10)  # the reference is slow
            row["reference_post_ms"], theirs = median_ms(
                lambda: reference_post((paf, heat), padded, pad, size), r_iters)
            heat_up, paf_up = ref.upsample((paf, heat), padded, pad, size)
            peaks = ref.find_peaks(heat_up)
            row["reference_paf_assembly_ms"], _ = median_ms(
                lambda: ref.assemble(peaks, *ref.connect(peaks, paf_up, size[0])), r_iters)
            ours = [p.keypoints for p in found[0]]
            row.update(people_netdef=len(ours), people_reference=len(theirs),
                       keypoints_max_abs_px=same_people(ours, theirs),
                       device_to_host_bytes_netdef=int(sum(v[0].nbytes for v in parsed.values())),
                       device_to_host_bytes_reference=int((paf.size + heat.size) * 4))
            row["netdef_host_ms"] = row["netdef_preprocess_ms"] + row["netdef_assembly_ms"]
            row["reference_host_ms"] = row["reference_preprocess_ms"] + row["reference_post_ms"]
            rows.append(row)
            print(json.dumps(row), flush=True)
    return rows


# --- HigherHRNet -------------------------------------------------------------------------------------------------

def hrnet_people(result: list[tuple[np.ndarray, float]]) -> list[np.ndarray]:
    return [np.asarray(kp, np.float64) for kp, _ in result]


def hrnet_rows(iters: int, seeds: int, before: dict[str, ModuleType] | None) -> list[dict]:
    import higherhrnet_reference as ref

    from netdef.pose.grouping import group
    from netdef.pose.synthetic import tag_candidates

    solver_name, solve = ref.assignment_solver()
    rows = []
    for people, strays in ((3, 0), (10, 0), (20, 0), (10, 2)):
        row: dict = {"size": HRNET_SIZE, "k": HRNET_K, "people_planted": people, "strays": strays,
                     "reference_assignment": solver_name}
        scene = tag_candidates(people, HRNET_K, HRNET_SIZE, seed=0, strays=strays)[:3]
        row["netdef_grouping_ms"], ours = median_ms(lambda: group(*scene), iters)
        row["reference_grouping_ms"], theirs = median_ms(lambda: ref.group(*scene, solve=solve), max(3, iters // 5))
        if before:
            row["before_grouping_ms"], _ = median_ms(lambda: before["grouping"].group(*scene), iters)
        agree, agree_before, worst = 0, 0, 0.0
        for seed in range(seeds):
            s, k, t, _ = tag_candidates(people, HRNET_K, HRNET_SIZE, seed=1000 + seed, strays=strays)
            expected = hrnet_people(ref.group(s, k, t, solve=solve))
            diff = same_people(hrnet_people(group(s, k, t)), expected)
            agree += diff is not None and diff <= 1.0
            worst = max(worst, diff or 0.0)
            if before:
                diff = same_people(hrnet_people(before["grouping"].group(s, k, t)), expected)
                agree_before += diff is not None and diff <= 1.0
        if before:
            row["before_same_people_scenes"] = f"{agree_before}/{seeds}"
        row.update(people_netdef=len(ours), people_reference=len(theirs), same_people_scenes=f"{agree}/{seeds}",
                   keypoints_max_abs_px=worst)
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


# --- the table ---------------------------------------------------------------------------------------------------

def table(results: dict) -> str:
    lines = [f"host side on the CPU ({results['machine']}), median ms per image; reference = bench/openpose_reference.py "
             "/ bench/higherhrnet_reference.py", "",
             "OpenPose | scene | people planted/netdef/ref | preprocess netdef (before) / ref | netdef assembly (before) | ref "
             "maps->people (PAF+assembly alone) | host netdef (before) / ref = ratio | same people (max px) | "
             "D2H KB netdef / ref"]
    for r in results["openpose"]:
        same = "yes" if r["keypoints_max_abs_px"] is not None and r["keypoints_max_abs_px"] <= 1 else "NO"
        same += {True: ", = before", False: ", NOT as before", None: ""}[r.get("same_as_before")]
        lines.append(
            f"{r['size']} | {r['scene']} | {r['people_planted']}/{r['people_netdef']}/{r['people_reference']} | "
            f"{fmt(r['netdef_preprocess_ms'])} ({fmt(r.get('before_preprocess_ms'))}) / "
            f"{fmt(r['reference_preprocess_ms'])} | {fmt(r['netdef_assembly_ms'])} ({fmt(r.get('before_assembly_ms'))}) | "
            f"{fmt(r['reference_post_ms'], '.1f')} ({fmt(r['reference_paf_assembly_ms'], '.1f')}) | "
            f"{fmt(r['netdef_host_ms'])} ({fmt(r.get('before_host_ms'))}) / {fmt(r['reference_host_ms'], '.1f')} = "
            f"{r['reference_host_ms'] / r['netdef_host_ms']:.0f}x | {same} ({fmt(r['keypoints_max_abs_px'], '.3f')}) | "
            f"{r['device_to_host_bytes_netdef'] / 1024:.0f} / {r['device_to_host_bytes_reference'] / 1024:.0f}")
    lines += ["", "HigherHRNet | people planted (strays) | grouping netdef (before) / ref = ratio | people netdef/ref | "
                  "same people (scenes; before) | ref assignment"]
    for r in results["higherhrnet"]:
        lines.append(
            f"{r['size']} k={r['k']} | {r['people_planted']} ({r['strays']}) | {fmt(r['netdef_grouping_ms'])} "
            f"({fmt(r.get('before_grouping_ms'))}) / "
            f"{fmt(r['reference_grouping_ms'])} = {r['reference_grouping_ms'] / r['netdef_grouping_ms']:.1f}x | "
            f"{r['people_netdef']}/{r['people_reference']} | {r['same_people_scenes']}; "
            f"{r.get('before_same_people_scenes', '-')} | {r['reference_assignment']}")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--iters", type=int, default=50)
    ap.add_argument("--seeds", type=int, default=20, help="fresh HigherHRNet scenes checked per row")
    ap.add_argument("--only", choices=("openpose", "higherhrnet"), default=None)
    ap.add_argument("--out", default=None, help="JSON result file (written atomically)")
    ap.add_argument("--before", default=BEFORE_REV, help="git revision of netdef's host code to time in brackets "
                                                         "('' for none)")
    args = ap.parse_args()
    before = before_modules(args.before) if args.before else None
    results = {"before_revision": args.before if before else None,
               "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
               "openpose": openpose_rows(args.iters, before) if args.only != "higherhrnet" else [],
               "higherhrnet": hrnet_rows(args.iters, args.seeds, before) if args.only != "openpose" else []}
    text = table(results)
    print(text)
    if args.out:
        from netdef.atomic import write_text_atomic

        write_text_atomic(args.out, json.dumps({**results, "table": text}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
