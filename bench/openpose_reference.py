"""The reference's image-to-people pipeline (Hzzone/pytorch-openpose `Body.__call__`), re-stated for timing.

Written for this benchmark (not copied): the same steps with the same libraries and the same per-element
Python loops, so its time is the reference's. Per scale: cv2 INTER_CUBIC resize of the BGR image, pad right
and bottom to a multiple of 8 with 128, BGR / 256 - 0.5, the torch model (eager, on its device); both maps
transposed to HWC, resized x8 (INTER_CUBIC), the padding cropped, resized to the image (INTER_CUBIC); per
part scipy's gaussian_filter (sigma 3), peaks >= their 4 neighbours and > 0.1; per limb every pair of
candidates scored on 10 linspace samples of the PAF; greedy matching; people assembled limb by limb.
The limb connection tables are the reference's, 1-based with the PAF offset 19, as netdef.pose.skeleton
derives its CMU18_PAF_LIMBS (tests/test_openpose.py checks the two agree).

`maps=` replaces the network's outputs (after it ran, so its time counts) with given (paf, heatmap) arrays at
its output resolution: the benchmark times both pipelines' post-processing on the same synthetic people.
Needs cv2, scipy and torch (the GPU machine's python3); not part of netdef.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

LIMB_JOINTS = [[2, 3], [2, 6], [3, 4], [4, 5], [6, 7], [7, 8], [2, 9], [9, 10], [10, 11], [2, 12], [12, 13],
               [13, 14], [2, 1], [1, 15], [15, 17], [1, 16], [16, 18], [3, 17], [6, 18]]
LIMB_PAF = [[31, 32], [39, 40], [33, 34], [35, 36], [41, 42], [43, 44], [19, 20], [21, 22], [23, 24], [25, 26],
            [27, 28], [29, 30], [47, 48], [49, 50], [53, 54], [51, 52], [55, 56], [37, 38], [45, 46]]


def pad_to_stride(image: np.ndarray, stride: int = 8, value: int = 128) -> tuple[np.ndarray, tuple[int, int]]:
    h, w = image.shape[:2]
    down, right = (-h) % stride, (-w) % stride
    padded = np.full((h + down, w + right, image.shape[2]), value, dtype=image.dtype)
    padded[:h, :w] = image
    return padded, (down, right)


def preprocess(image: np.ndarray, boxsize: int, scale: float) -> tuple[np.ndarray, tuple[int, int], tuple[int, int]]:
    """BGR image -> ((1, 3, H, W) float32 network input, its padded (H, W), the padding (down, right))."""
    import cv2

    factor = scale * boxsize / image.shape[0]
    resized = cv2.resize(image, (0, 0), fx=factor, fy=factor, interpolation=cv2.INTER_CUBIC)
    padded, pad = pad_to_stride(resized)
    x = np.ascontiguousarray(np.float32(padded.transpose(2, 0, 1)[None]) / 256 - 0.5)
    return x, padded.shape[:2], pad


def upsample(maps: tuple[np.ndarray, np.ndarray], padded: tuple[int, int], pad: tuple[int, int],
             image_size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """The network's (paf, heatmap) (1, C, H/8, W/8) -> (heatmap (H, W, 19), paf (H, W, 38)) at the image's size,
    float64 as the reference accumulates them."""
    import cv2

    h0, w0 = image_size
    out = []
    for m in (maps[1], maps[0]):
        m = cv2.resize(np.transpose(np.squeeze(m, 0), (1, 2, 0)), (0, 0), fx=8, fy=8, interpolation=cv2.INTER_CUBIC)
        m = m[:padded[0] - pad[0], :padded[1] - pad[1]]
        out.append(np.zeros((h0, w0, m.shape[2])) + cv2.resize(m, (w0, h0), interpolation=cv2.INTER_CUBIC))
    return out[0], out[1]


def network_maps(model: Any, image: np.ndarray, boxsize: int, scale: float, device: str,
                 maps: tuple[np.ndarray, np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(heatmap (H, W, 19), paf (H, W, 38)) at the image's size, float64 as the reference accumulates them."""
    import torch

    x, padded, pad = preprocess(image, boxsize, scale)
    with torch.no_grad():
        paf_t, heat_t = model(torch.from_numpy(x).to(device))
    paf, heat = paf_t.cpu().numpy(), heat_t.cpu().numpy()
    return upsample(maps if maps is not None else (paf, heat), padded, pad, image.shape[:2])


def find_peaks(heatmap: np.ndarray, threshold: float = 0.1) -> list[list[tuple]]:
    """Per part: (x, y, score, id) of every peak, ids counted over all parts."""
    from scipy.ndimage import gaussian_filter

    peaks, next_id = [], 0
    for part in range(18):
        raw = heatmap[:, :, part]
        smooth = gaussian_filter(raw, sigma=3)
        up, down, left, right = (np.zeros(smooth.shape) for _ in range(4))
        up[1:, :], down[:-1, :] = smooth[:-1, :], smooth[1:, :]
        left[:, 1:], right[:, :-1] = smooth[:, :-1], smooth[:, 1:]
        is_peak = ((smooth >= up) & (smooth >= down) & (smooth >= left) & (smooth >= right)
                   & (smooth > threshold))
        rows, cols = np.nonzero(is_peak)
        found = []
        for x, y in zip(cols, rows):
            found.append((x, y, raw[y, x], next_id))
            next_id += 1
        peaks.append(found)
    return peaks


def connect(peaks: list, paf: np.ndarray, image_height: int, threshold: float = 0.05,
            samples: int = 10) -> tuple[list, list]:
    """Per limb: rows (id A, id B, score, i, j) picked greedily; and the limbs with a part missing."""
    connections, skipped = [], []
    for k, (joint_a, joint_b) in enumerate(LIMB_JOINTS):
        field = paf[:, :, [c - 19 for c in LIMB_PAF[k]]]
        cand_a, cand_b = peaks[joint_a - 1], peaks[joint_b - 1]
        if not cand_a or not cand_b:
            skipped.append(k)
            connections.append([])
            continue
        scored = []
        for i, a in enumerate(cand_a):
            for j, b in enumerate(cand_b):
                vec = np.subtract(b[:2], a[:2])
                norm = max(0.001, math.sqrt(vec[0] * vec[0] + vec[1] * vec[1]))
                vec = np.divide(vec, norm)
                points = list(zip(np.linspace(a[0], b[0], num=samples), np.linspace(a[1], b[1], num=samples)))
                vx = np.array([field[int(round(p[1])), int(round(p[0])), 0] for p in points])
                vy = np.array([field[int(round(p[1])), int(round(p[0])), 1] for p in points])
                along = vx * vec[0] + vy * vec[1]
                score = sum(along) / len(along) + min(0.5 * image_height / norm - 1, 0)
                if len(np.nonzero(along > threshold)[0]) > 0.8 * len(along) and score > 0:
                    scored.append([i, j, score, score + a[2] + b[2]])
        scored.sort(key=lambda c: c[2], reverse=True)
        chosen = np.zeros((0, 5))
        for i, j, s, _ in scored:
            if i not in chosen[:, 3] and j not in chosen[:, 4]:
                chosen = np.vstack([chosen, [cand_a[i][3], cand_b[j][3], s, i, j]])
                if len(chosen) >= min(len(cand_a), len(cand_b)):
                    break
        connections.append(chosen)
    return connections, skipped


def assemble(peaks: list, connections: list, skipped: list) -> tuple[np.ndarray, np.ndarray]:
    """(candidates (N, 4), people (P, 20): candidate id per part, total score, part count)."""
    candidates = np.array([p for part in peaks for p in part]).reshape(-1, 4)
    people = -1 * np.ones((0, 20))
    for k, (joint_a, joint_b) in enumerate(LIMB_JOINTS):
        if k in skipped:
            continue
        a, b = joint_a - 1, joint_b - 1
        for row in connections[k]:
            hits = [p for p in range(len(people)) if people[p][a] == row[0] or people[p][b] == row[1]][:2]
            if len(hits) == 1:
                person = people[hits[0]]
                if person[b] != row[1]:
                    person[b] = row[1]
                    person[-1] += 1
                    person[-2] += candidates[int(row[1]), 2] + row[2]
            elif len(hits) == 2:
                first, second = hits
                shared = ((people[first] >= 0).astype(int) + (people[second] >= 0).astype(int))[:-2]
                if not (shared == 2).any():
                    people[first][:-2] += people[second][:-2] + 1
                    people[first][-2:] += people[second][-2:]
                    people[first][-2] += row[2]
                    people = np.delete(people, second, 0)
                else:
                    people[first][b] = row[1]
                    people[first][-1] += 1
                    people[first][-2] += candidates[int(row[1]), 2] + row[2]
            elif k < 17:
                person = -1 * np.ones(20)
                person[a], person[b] = row[0], row[1]
                person[-1] = 2
                person[-2] = sum(candidates[row[:2].astype(int), 2]) + row[2]
                people = np.vstack([people, person])
    keep = [p for p in range(len(people)) if people[p][-1] >= 4 and people[p][-2] / people[p][-1] >= 0.4]
    return candidates, people[keep]


def body(model: Any, image: np.ndarray, boxsize: int = 368, scale: float = 0.5, device: str = "cuda",
         maps: tuple[np.ndarray, np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Image (H, W, 3) uint8 BGR -> (candidates, people), the reference's defaults (one scale, 0.5 x 368)."""
    heatmap, paf = network_maps(model, image, boxsize, scale, device, maps)
    peaks = find_peaks(heatmap)
    connections, skipped = connect(peaks, paf, image.shape[0])
    return assemble(peaks, connections, skipped)


def keypoints(candidates: np.ndarray, people: np.ndarray) -> list[np.ndarray]:
    """Per person (18, 3): x, y, score of each part, zeros where missing (netdef.pose.Person's layout)."""
    out = []
    for person in people:
        kp = np.zeros((18, 3))
        for part, cid in enumerate(person[:18]):
            if cid >= 0:
                kp[part] = candidates[int(cid), :3]
        out.append(kp)
    return out
