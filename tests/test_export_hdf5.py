"""The netdef HDF5 weights format: exact round trips, lazy checked lookups, and clear errors for bad files."""
from __future__ import annotations

import os

import h5py
import numpy as np
import pytest

from weights_export.errors import WeightsFileError
from weights_export.hdf5 import FORMAT_NAME, FORMAT_VERSION, WeightsFile, write_weights


def export_sample_tensors(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "conv1.weight": rng.standard_normal((8, 3, 3, 3)).astype(np.float32),
        "bn1.weight": rng.uniform(0.5, 1.5, 8).astype(np.float32),
        "bn1.bias": rng.normal(0, 0.2, 8).astype(np.float32),
        "bn1.running_mean": rng.normal(0, 0.2, 8).astype(np.float32),
        "bn1.running_var": rng.uniform(0.5, 2.0, 8).astype(np.float32),
        "bn1.num_batches_tracked": np.array(1234, dtype=np.int64),
        "head.fc.weight": rng.standard_normal((4, 8)).astype(np.float16),
        "head.fc.bias": rng.standard_normal(4),  # float64 stays float64
        "scale": np.array([2.5], np.float32),  # a root-level parameter (no module path)
    }


@pytest.fixture
def sample_file(tmp_path):
    tensors = export_sample_tensors()
    path = tmp_path / "w.h5"
    write_weights(path, tensors,
                  layer_attrs={"conv1": {"type": "Conv2d", "kernel_size": (3, 3), "stride": [1, 1], "bias": False},
                               "bn1": {"type": "BatchNorm2d", "eps": 1e-5, "momentum": None},
                               "relu": {"type": "ReLU"}},
                  root_attrs={"arch": "tiny", "source": "pytorch", "input_shape": [1, 3, 8, 8],
                              "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25], "darknet_cfg": "[net]\nwidth=8\n"},
                  activations={"input": np.ones((1, 3, 8, 8), np.float32), "conv1": np.full((1, 8, 8, 8), 3.0,
                                                                                          np.float32)})
    return path, tensors


def test_round_trip_is_bit_identical_with_dtypes_and_attrs(sample_file):
    path, tensors = sample_file
    with WeightsFile(path) as wf:
        assert set(wf) == set(tensors) and len(wf) == len(tensors)
        for key, value in tensors.items():
            got = wf[key]
            assert isinstance(got, np.ndarray) and got.dtype == value.dtype and got.shape == value.shape, key
            assert got.tobytes() == value.tobytes(), key
        assert wf.groups()[:3] == ["conv1", "bn1", "relu"]  # module order, not alphabetical
        assert wf.layer_attrs("conv1") == {"type": "Conv2d", "kernel_size": [3, 3], "stride": [1, 1], "bias": False}
        assert wf.layer_attrs("bn1") == {"type": "BatchNorm2d", "eps": 1e-5}  # None is not stored
        assert wf.layer_attrs("relu") == {"type": "ReLU"}
        assert wf.attrs["format"] == FORMAT_NAME and wf.attrs["format_version"] == FORMAT_VERSION
        assert wf.attrs["arch"] == "tiny" and wf.attrs["input_shape"] == [1, 3, 8, 8]
        assert wf.attrs["darknet_cfg"] == "[net]\nwidth=8\n" and "created" in wf.attrs and "netdef_version" in wf.attrs
        assert wf.shape_of("conv1.weight") == (8, 3, 3, 3)
        acts = wf.activations
        assert set(acts) == {"input", "conv1"} and float(acts["conv1"].sum()) == 3.0 * 512


def test_file_opens_with_plain_h5py_one_group_per_layer(sample_file):
    path, tensors = sample_file
    with h5py.File(path, "r") as f:
        assert f["conv1/weight"].shape == (8, 3, 3, 3)
        assert f["head.fc/weight"].dtype == np.float16
        assert f.attrs["arch"] == "tiny"
        assert "activations" in f and "conv1" in f["activations"]


def test_get_checks_shape_dtype_and_presence_naming_file_layer_tensor(sample_file):
    path, tensors = sample_file
    with WeightsFile(path) as wf:
        np.testing.assert_array_equal(wf.get("conv1.weight", (8, 3, 3, 3), np.float32), tensors["conv1.weight"])
        assert wf.get("head.fc.weight", dtype=np.float32).dtype == np.float32  # float16 widens on request
        with pytest.raises(WeightsFileError, match=r"w\.h5.*layer 'conv1'.*tensor 'weight'.*shape \(8, 3, 3, 3\), "
                                                    r"expected \(8, 3, 1, 1\)"):
            wf.get("conv1.weight", (8, 3, 1, 1))
        with pytest.raises(WeightsFileError, match=r"layer 'bn1'.*tensor 'num_batches_tracked'.*expected float32"):
            wf.get("bn1.num_batches_tracked", dtype=np.float32)
        with pytest.raises(WeightsFileError, match=r"w\.h5.*layer 'layer9'.*tensor 'bias'.*missing"):
            wf.get("layer9.bias", (4,))
        with pytest.raises(KeyError, match="layer9"):
            wf["layer9.bias"]


def test_check_lists_missing_unexpected_misshaped_and_nan_together(tmp_path):
    tensors = export_sample_tensors()
    tensors["bn1.running_var"][3] = np.nan
    path = tmp_path / "bad.h5"
    write_weights(path, tensors)
    expected = {k: v.shape for k, v in tensors.items() if k not in ("scale", "bn1.num_batches_tracked")}
    expected["conv1.weight"] = (8, 3, 1, 1)
    expected["layer2.conv.weight"] = (4, 4, 3, 3)
    with WeightsFile(path) as wf, pytest.raises(WeightsFileError) as info:
        wf.check(expected)
    message = str(info.value)
    assert str(path) in message and "4 problem(s)" in message
    assert "layer 'conv1' tensor 'weight': shape (8, 3, 3, 3), expected (8, 3, 1, 1)" in message
    assert "layer 'layer2.conv' tensor 'weight': missing" in message
    assert "layer '<root>' tensor 'scale': unexpected" in message
    assert "layer 'bn1' tensor 'running_var': 1 of 8 values are NaN/Inf" in message
    assert "num_batches_tracked" not in message  # ignored: no meaning for inference


def test_nan_tensor_get_names_file_layer_tensor(tmp_path):
    path = tmp_path / "nan.h5"
    write_weights(path, {"layer1.0.conv1.weight": np.array([[1.0, np.inf]], np.float32)})
    with WeightsFile(path) as wf, pytest.raises(WeightsFileError, match=r"nan\.h5: layer 'layer1\.0\.conv1', "
                                                                         r"tensor 'weight': 1 of 2 values are NaN"):
        wf.get("layer1.0.conv1.weight")


def _data_offset(path, dataset):
    with h5py.File(path, "r") as f:
        return f[dataset].id.get_offset()


def test_flipped_byte_in_weights_is_a_read_error_naming_layer_and_tensor(sample_file):
    path, _ = sample_file
    offset = _data_offset(path, "conv1/weight")
    data = bytearray(path.read_bytes())
    data[offset + 17] ^= 0x40
    path.write_bytes(bytes(data))
    with WeightsFile(path) as wf:
        np.testing.assert_array_equal(wf["bn1.bias"], export_sample_tensors()["bn1.bias"])  # the rest still reads
        with pytest.raises(WeightsFileError, match=r"w\.h5: layer 'conv1', tensor 'weight': checksum mismatch"):
            wf["conv1.weight"]
    with WeightsFile(path, verify=False) as wf:  # plain h5py readers see the flipped value
        assert not np.array_equal(wf["conv1.weight"], export_sample_tensors()["conv1.weight"])


@pytest.mark.parametrize("keep", [0.3, 0.9])
def test_truncated_file_is_an_error_naming_the_file(sample_file, keep):
    path, _ = sample_file
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(WeightsFileError, match=r"w\.h5: not a readable HDF5 file \(truncated or corrupt\?\)"):
        WeightsFile(path)


def test_not_hdf5_missing_and_foreign_files(tmp_path):
    junk = tmp_path / "junk.h5"
    junk.write_bytes(b"\x89HDF not really" * 100)
    with pytest.raises(WeightsFileError, match="junk.h5: not a readable HDF5 file"):
        WeightsFile(junk)
    with pytest.raises(WeightsFileError, match="nope.h5: weights file not found"):
        WeightsFile(tmp_path / "nope.h5")
    foreign = tmp_path / "foreign.h5"
    with h5py.File(foreign, "w") as f:
        f["conv/weight"] = np.zeros(3)
    with pytest.raises(WeightsFileError, match="foreign.h5: not a netdef weights file"):
        WeightsFile(foreign)
    newer = tmp_path / "newer.h5"
    write_weights(newer, {"a.weight": np.ones(2, np.float32)})
    with h5py.File(newer, "a") as f:
        f.attrs["format_version"] = FORMAT_VERSION + 1
    with pytest.raises(WeightsFileError, match="newer than this reader"):
        WeightsFile(newer)


def test_failed_write_leaves_the_previous_file_intact(tmp_path):
    path = tmp_path / "keep.h5"
    write_weights(path, {"a.weight": np.ones(3, np.float32)})
    before = path.read_bytes()
    with pytest.raises(TypeError, match="tensor 'b.weight'"):
        write_weights(path, {"a.weight": np.zeros(3, np.float32), "b.weight": np.array(["x"], object)})
    with pytest.raises(ValueError, match="reserved"):
        write_weights(path, {"activations.weight": np.zeros(3, np.float32)})
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["keep.h5"]  # no temporary left behind


def test_closed_file_says_so(sample_file):
    path, _ = sample_file
    wf = WeightsFile(path)
    wf.close()
    with pytest.raises(WeightsFileError, match="closed"):
        wf["conv1.weight"]
    assert os.path.exists(path)
