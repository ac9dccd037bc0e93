"""Calibrator math (pure numpy), histogram collection, the calibration cache and calibration data."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from netdef.quantize import calibrators as C
from netdef.quantize.cache import CalibrationCacheError, load_cache, new_cache, weights_digest
from netdef.quantize.data import CalibrationDataError, classification_preprocess, load_data
from netdef.quantize.stats import TensorStats


def entropy_reference(counts: np.ndarray, hist_max: float, levels: int = 128) -> float:
    """TensorRT/NVIDIA's entropy method written out element by element (slow, obviously literal)."""
    bins = [float(c) for c in counts]
    bins[0] = bins[1]
    n = len(bins)
    divergences = {}
    for i in range(levels, n + 1):
        p = bins[:i]
        p[-1] += sum(bins[i:])
        group_sum = [0.0] * levels
        group_nonzero = [0] * levels
        for j in range(i):
            g = j * levels // i
            if bins[j] != 0:
                group_sum[g] += bins[j]
                group_nonzero[g] += 1
        q = [group_sum[j * levels // i] / group_nonzero[j * levels // i] if bins[j] != 0 else 0.0 for j in range(i)]
        sp, sq = sum(p), sum(q)
        kl = 0.0
        for pj, qj in zip(p, q):
            if pj > 0:
                if qj == 0:
                    kl = float("inf")
                    break
                kl += pj / sp * np.log((pj / sp) / (qj / sq))
        divergences[i] = kl
    best = min(divergences.values())
    return max(i for i, kl in divergences.items() if kl <= best + C.KL_TIE) * hist_max / n


def _histogram(x: np.ndarray, bins: int = 2048) -> tuple[np.ndarray, float]:
    a = np.abs(x)
    counts, _ = np.histogram(a, bins=bins, range=(0, a.max()))
    return counts.astype(np.float64), float(a.max())


@pytest.mark.parametrize("kind", ["gauss", "relu_laplace"])
def test_entropy_matches_literal_reference(kind: str) -> None:
    rng = np.random.default_rng()
    if kind == "gauss":
        x = rng.standard_normal(20000)
    else:  # ReLU output of a heavy-tailed pre-activation: half exact zeros, long tail
        x = np.maximum(rng.laplace(size=20000), 0)
    counts, top = _histogram(x, bins=512)  # a smaller histogram keeps the literal reference fast
    assert C.entropy_amax(counts, top) == pytest.approx(entropy_reference(counts, top), rel=1e-12)


def test_entropy_clips_sparse_outliers_and_ignores_the_relu_zero_spike() -> None:
    rng = np.random.default_rng()
    x = np.concatenate([rng.standard_normal(500000), rng.uniform(-50, 50, 500)])  # 0.1 % far outliers
    counts, top = _histogram(x)
    # Clipped well inside the outliers' range (|x| up to 50): usually 3.4-4.0, the Gaussian's range, but in
    # about 1.5 % of draws the KL curve's second minimum (12-19) wins, so the bound is the outliers' half.
    assert 3.0 < C.entropy_amax(counts, top) < 25.0
    relu = np.maximum(rng.laplace(size=100000), 0)
    with_zeros, top = _histogram(relu)
    without_zeros, _ = np.histogram(relu[relu > 0], bins=2048, range=(0, top))
    assert with_zeros[0] > 40000  # half the values are exact zeros, yet they do not move the threshold
    assert C.entropy_amax(with_zeros, top) == C.entropy_amax(without_zeros.astype(np.float64), top)


def test_entropy_keeps_the_range_of_a_discrete_input() -> None:
    """8-bit-like inputs: isolated spikes reach KL = 0 at the first spike and at the full range alike."""
    rng = np.random.default_rng()
    x = np.abs(rng.integers(0, 17, size=20000) / 8.0 - 1.0)  # digits pixels, normalized: 9 levels of |x|
    counts, top = _histogram(x)
    assert C.entropy_amax(counts, top) == pytest.approx(top)
    coarse = np.add.reduceat(counts, np.arange(0, 2048, 8))  # 256 bins keep the literal reference fast
    assert entropy_reference(coarse, top) == pytest.approx(top)


def test_percentile_and_minmax() -> None:
    x = np.random.default_rng().standard_normal(100000)
    counts, top = _histogram(x)
    width = top / 2048
    assert abs(C.percentile_amax(counts, top, 99.0) - np.percentile(np.abs(x), 99.0)) <= width
    assert abs(C.percentile_amax(counts, top, 50.0) - np.median(np.abs(x))) <= width
    assert C.percentile_amax(counts, top, 100.0) == pytest.approx(top)
    assert C.compute_amax("minmax", counts, top, top) == top
    with pytest.raises(ValueError, match="percentile"):
        C.percentile_amax(counts, top, 0)
    with pytest.raises(ValueError, match="method 'kl'"):
        C.compute_amax("kl", counts, top, top)


def _fake_quant_mse(x: np.ndarray, amax: float) -> float:
    s = amax / 127
    return float(np.mean((np.clip(np.rint(x / s), -128, 127) * s - x) ** 2))


def test_mse_picks_a_near_optimal_threshold_on_the_samples() -> None:
    rng = np.random.default_rng()
    x = np.concatenate([rng.laplace(size=50000), rng.uniform(20, 40, size=5)])  # a few far outliers
    counts, top = _histogram(x)
    amax = C.mse_amax(counts, top)
    grid = np.linspace(0.05, 1.0, 200) * top
    best = min(_fake_quant_mse(x, t) for t in grid)
    assert _fake_quant_mse(x, amax) <= 1.05 * best
    assert _fake_quant_mse(x, amax) < 0.95 * _fake_quant_mse(x, top)  # clipping the outliers a bit pays off


def test_weight_amax_per_channel_and_zero_channel_scale() -> None:
    w = np.random.default_rng().standard_normal((4, 3, 3, 3))
    w[2] = 0
    amax = C.weight_amax(w, axis=0)
    np.testing.assert_array_equal(amax, np.abs(w).reshape(4, -1).max(1))
    scale = C.scale_from_amax(amax)
    assert np.all(scale > 0) and scale[0] == amax[0] / 127
    m = np.random.default_rng().standard_normal((1, 5, 7))
    np.testing.assert_array_equal(C.weight_amax(m, axis=2), np.abs(m).max(axis=(0, 1)))


def test_stats_growing_range_is_exact_merging() -> None:
    rng = np.random.default_rng()
    a = rng.standard_normal(5000).astype(np.float32)
    b = (7 * rng.standard_normal(5000)).astype(np.float32)
    s = TensorStats("t", num_bins=256)
    s.update(torch.from_numpy(a))
    s.update(torch.from_numpy(b))
    both = np.abs(np.concatenate([a, b]))
    assert s.abs_max == pytest.approx(both.max())
    assert s.hist_max >= both.max() and s.counts.sum() == both.size
    # the first batch's range doubled k times: its counts merged 2^k bins at a time
    k = round(np.log2(s.hist_max / np.abs(a).max()))
    assert s.hist_max == pytest.approx(np.abs(a).max() * 2 ** k, rel=1e-6)
    direct, _ = np.histogram(both, bins=256, range=(0, s.hist_max))
    assert np.abs(direct - s.counts).sum() <= 4  # only values on a bin edge may land one bin apart
    with pytest.raises(ValueError, match="NaN"):
        s.update(torch.tensor([1.0, float("nan")]))


def _tiny_definition():
    from netdef import trt as shim
    from netdef.engine import create_builder, create_network

    trt = shim.binding()
    net = create_network(create_builder())
    x = net.add_input("x", trt.DataType.FLOAT, (-1, 3, 4, 4))
    relu = net.add_activation(x, trt.ActivationType.RELU)
    relu.name = "relu"
    net.mark_output(relu.get_output(0))
    return net


def test_cache_roundtrip_fingerprint_and_refusal(tmp_path) -> None:
    definition = _tiny_definition()
    weights = {"a.weight": np.ones((2, 2), np.float32)}
    cache = new_cache({"x": 1.5, "relu": 2.0}, "entropy", 256, definition, weights_digest(weights), arch="tiny")
    path = tmp_path / "calib.json"
    cache.save(path)
    assert [p.name for p in tmp_path.iterdir()] == ["calib.json"]  # atomic write leaves no temp file
    loaded = load_cache(path)
    assert loaded.amax == {"x": 1.5, "relu": 2.0} and loaded.algorithm == "entropy" and loaded.num_samples == 256
    assert loaded.fingerprint == cache.fingerprint
    loaded.check(cache.definition_sha256, cache.weights_sha256)
    other = new_cache({}, "entropy", 1, definition, weights_digest({"a.weight": np.zeros((2, 2), np.float32)}))
    with pytest.raises(CalibrationCacheError, match="calib.json.*weights differ.*--recalibrate"):
        loaded.check(other.definition_sha256, other.weights_sha256, origin=str(path))
    with pytest.raises(CalibrationCacheError, match="definition differs"):
        loaded.check("0" * 64, None)
    doc = json.loads(path.read_text())
    doc["tensors"]["relu"] = 3.0
    doc["definition_sha256"] = "f" * 64
    path.write_text(json.dumps(doc))
    with pytest.raises(CalibrationCacheError, match="fingerprint field does not match"):
        load_cache(path)
    path.write_text("{not json")
    with pytest.raises(CalibrationCacheError, match="calib.json: not a readable"):
        load_cache(path)


def test_calibration_data_arrays_and_images(tmp_path) -> None:
    from PIL import Image

    from netdef.preprocess import imagenet_preprocess

    arr = np.random.default_rng().standard_normal((10, 3, 8, 8)).astype(np.float32)
    np.save(tmp_path / "a.npy", arr)
    data = load_data(tmp_path / "a.npy", (3, 8, 8), limit=7)
    batches = list(data.batches(3))
    assert [len(b) for b in batches] == [3, 3, 1]
    np.testing.assert_array_equal(np.concatenate(batches), arr[:7])
    np.savez(tmp_path / "b.npz", input=arr, other=arr[:1])
    assert load_data(tmp_path / "b.npz", (3, 8, 8), input_name="input").count == 10
    with pytest.raises(CalibrationDataError, match="b.npz: holds arrays"):
        load_data(tmp_path / "b.npz", (3, 8, 8), input_name="data")
    shape_error = r"a.npy: calibration array has shape \(10, 3, 8, 8\), expected \(N, 3, 16, 16\)"
    with pytest.raises(CalibrationDataError, match=shape_error):
        load_data(tmp_path / "a.npy", (3, 16, 16))
    folder = tmp_path / "images"
    folder.mkdir()
    pixels = np.random.default_rng().integers(0, 256, (4, 40, 30, 3), dtype=np.uint8)
    for i, p in enumerate(pixels):
        Image.fromarray(p).save(folder / f"{i}.png")
    (folder / "notes.txt").write_text("not an image")
    with pytest.raises(CalibrationDataError, match="needs the network's preprocessing"):
        load_data(folder, (3, 16, 16))
    data = load_data(folder, (3, 16, 16), classification_preprocess())
    got = np.concatenate(list(data.batches(3)))
    want = np.stack([imagenet_preprocess(folder / f"{i}.png", size=16, resize=18) for i in range(4)])
    np.testing.assert_array_equal(got, want)
