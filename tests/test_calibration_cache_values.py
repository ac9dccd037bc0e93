"""A calibration cache is trusted for its values too: the fingerprint covers every amax exactly, and ranges
that are not finite and positive are refused, whether edited in or passed in."""
from __future__ import annotations

import json

import numpy as np
import pytest

from netdef.quantize.cache import MIN_AMAX, VERSION, CalibrationCacheError, load_cache, new_cache, weights_digest
from tests.test_quantize_calibrators import _tiny_definition


@pytest.fixture
def saved(tmp_path):
    cache = new_cache({"x": 1.5, "relu": 2.0}, "entropy", 64, _tiny_definition(),
                      weights_digest({"a.weight": np.ones((2, 2), np.float32)}), arch="tiny")
    path = tmp_path / "calib.json"
    cache.save(path)
    return cache, path


@pytest.mark.parametrize("value", [0.0, 1e30, 1e-30, 2.0000000000000004, -1.0])
def test_edited_range_is_refused(saved, value):
    cache, path = saved
    doc = json.loads(path.read_text())
    doc["tensors"]["relu"] = value
    path.write_text(json.dumps(doc))
    with pytest.raises(CalibrationCacheError, match="calib.json: (fingerprint field does not match its contents|"
                                                    "invalid amax for 1 tensor\\(s\\): relu=)"):
        load_cache(path)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf"), 0.0, -2.0, 1e39, "3"])
def test_non_finite_or_non_positive_range_is_refused_even_with_a_matching_fingerprint(saved, value):
    """A cache written by hand with a recomputed fingerprint still cannot carry a range TensorRT cannot use."""
    from dataclasses import replace

    cache, path = saved
    doc = json.loads(path.read_text())
    doc["tensors"]["relu"] = value
    if not isinstance(value, str):
        doc["fingerprint"] = replace(cache, amax={**cache.amax, "relu": value}).fingerprint
    path.write_text(json.dumps(doc))
    with pytest.raises(CalibrationCacheError, match="invalid amax for 1 tensor\\(s\\): relu=|malformed calibration"):
        load_cache(path)


def test_fingerprint_covers_values_method_and_samples(saved):
    cache, path = saved
    assert load_cache(path).fingerprint == cache.fingerprint
    prints = {cache.fingerprint}
    for change in ({"amax": {"x": 1.5, "relu": np.nextafter(2.0, 3.0)}}, {"algorithm": "minmax"}, {"num_samples": 65}):
        other = new_cache(change.get("amax", cache.amax), change.get("algorithm", cache.algorithm),
                          change.get("num_samples", cache.num_samples), _tiny_definition(), cache.weights_sha256)
        assert other.identity == cache.identity  # the same network and weights ...
        prints.add(other.fingerprint)  # ... but other values: another fingerprint
    assert len(prints) == 4


def test_dead_tensor_is_stored_as_the_smallest_range(tmp_path):
    cache = new_cache({"x": 0.0, "relu": 1.0}, "minmax", 8, _tiny_definition())
    assert cache.amax["x"] == MIN_AMAX
    cache.save(tmp_path / "c.json")
    assert load_cache(tmp_path / "c.json").amax["x"] == MIN_AMAX
    with pytest.raises(CalibrationCacheError, match="invalid amax"):
        new_cache({"x": float("nan")}, "minmax", 8, _tiny_definition())


@pytest.mark.parametrize("old", [3, 4])
def test_caches_of_an_old_format_are_refused_with_the_remedy(saved, old):
    """Caches an older netdef wrote are refused with the remedy (v4's digest left out the inside of Mish)."""
    _, path = saved
    assert VERSION == 5
    doc = json.loads(path.read_text())
    doc["version"] = old
    path.write_text(json.dumps(doc))
    with pytest.raises(CalibrationCacheError, match=f"cache version {old}, this netdef reads 5: calibrate again"):
        load_cache(path)
