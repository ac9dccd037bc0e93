"""The netdef HDF5 weights format: exact round trips, lazy checked lookups, and clear errors for bad files."""
from __future__ import annotations

import os
import zlib

import h5py
import numpy as np
import pytest

from weights_export.errors import WeightsFileError
from weights_export.hdf5 import FORMAT_NAME, FORMAT_VERSION, WeightsFile, checksum, write_weights


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


def _blocksum64_by_the_doc(array):
    """docs/hdf5-format.md's plain definition, independent of the fast one."""
    data = np.asarray(array).tobytes() + bytes(-array.nbytes % 8)
    words = np.frombuffer(data, "<u8")
    sums = [int(words[i:i + 512].sum(dtype=np.uint64)) for i in range(0, len(words), 512)]
    return sum(sums) % 2**64, sum((b + 1) * s for b, s in enumerate(sums)) % 2**64


@pytest.mark.parametrize("array", [
    np.zeros(0, np.float32), np.array(7, np.int64), np.arange(13, dtype=np.int8), np.float16([1, 2, 3]),
    np.arange(512, dtype=np.uint64), np.random.default_rng(0).standard_normal((64, 3, 7, 7)).astype(np.float32),
    np.random.default_rng(1).standard_normal((33, 65)).T,  # not C-contiguous
])
def test_checksum_follows_its_documented_definition(array):
    assert checksum(array) == _blocksum64_by_the_doc(array)


def test_checksum_catches_every_flipped_byte_and_moved_blocks():
    data = np.random.default_rng(2).integers(0, 256, 3 * 4096 + 5, dtype=np.uint8)
    reference = checksum(data)
    for position in range(0, data.size, 97):
        flipped = data.copy()
        flipped[position] ^= 0x80
        assert checksum(flipped) != reference, position
    swapped = data.copy()
    swapped[:4096], swapped[4096:8192] = data[4096:8192], data[:4096]
    assert checksum(swapped)[0] == reference[0] and checksum(swapped) != reference  # the weighted sum sees it


def test_one_checksum_table_covers_every_dataset(sample_file):
    path, tensors = sample_file
    with h5py.File(path, "r") as f:
        paths = list(f.attrs["checksum_paths"])
        table = dict(zip(paths, map(tuple, f.attrs["checksum_blocksum64"].tolist())))
        datasets = []
        f.visititems(lambda name, obj: datasets.append(name) if isinstance(obj, h5py.Dataset) else None)
        assert sorted(paths) == sorted(datasets) and len(paths) == len(tensors) + 2  # and 2 activations
        assert table["conv1/weight"] == checksum(tensors["conv1.weight"])
        assert table["scale"] == checksum(tensors["scale"])
        assert table["activations/conv1"] == checksum(np.full((1, 8, 8, 8), 3.0, np.float32))
        assert all("crc32" not in f[name].attrs for name in datasets)
    with WeightsFile(path) as wf:
        assert not {"checksum_paths", "checksum_blocksum64"} & set(wf.attrs)  # metadata only


@pytest.mark.parametrize("dataset, read", [
    ("activations/conv1", lambda wf: wf.activations["conv1"]),
    ("scale", lambda wf: wf["scale"]),
])
def test_flipped_byte_in_activations_and_root_tensors_is_caught(sample_file, dataset, read):
    path, _ = sample_file
    offset = _data_offset(path, dataset)
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))
    layer, name = ("activations", "conv1") if "/" in dataset else ("<root>", "scale")
    with WeightsFile(path) as wf, \
            pytest.raises(WeightsFileError, match=rf"w\.h5: layer '{layer}', tensor '{name}': checksum mismatch"):
        read(wf)


def test_swapped_blocks_are_caught(tmp_path):
    path = tmp_path / "big.h5"
    weight = np.random.default_rng(3).standard_normal((4, 1024)).astype(np.float32)  # 16 KiB: 4 blocks
    write_weights(path, {"fc.weight": weight})
    offset = _data_offset(path, "fc/weight")
    data = bytearray(path.read_bytes())
    data[offset:offset + 4096], data[offset + 4096:offset + 8192] = \
        data[offset + 4096:offset + 8192], data[offset:offset + 4096]
    path.write_bytes(bytes(data))
    with WeightsFile(path) as wf, pytest.raises(WeightsFileError, match="layer 'fc', tensor 'weight': checksum"):
        wf["fc.weight"]


def _write_crc32_file(path, tensors):
    """A file as netdef wrote it before the checksum table: a crc32 attribute on every dataset."""
    with h5py.File(path, "w", track_order=True) as f:
        f.attrs.update(format=FORMAT_NAME, format_version=1, arch="old")
        for key, value in tensors.items():
            layer, _, name = key.rpartition(".")
            dataset = f.require_group(layer).create_dataset(name, data=value)
            dataset.attrs["crc32"] = np.uint32(zlib.crc32(value.tobytes()))


def test_files_with_crc32_attributes_are_still_verified(tmp_path):
    path = tmp_path / "old.h5"
    tensors = export_sample_tensors()
    del tensors["scale"]
    _write_crc32_file(path, tensors)
    with WeightsFile(path) as wf:
        assert all(wf[key].tobytes() == value.tobytes() for key, value in tensors.items())
        assert wf.groups() == ["conv1", "bn1", "head.fc"] and wf.attrs["arch"] == "old"
    offset = _data_offset(path, "bn1/running_var")
    data = bytearray(path.read_bytes())
    data[offset + 3] ^= 0x10
    path.write_bytes(bytes(data))
    with WeightsFile(path) as wf, pytest.raises(WeightsFileError, match="layer 'bn1', tensor 'running_var': checksum"):
        wf["bn1.running_var"]


def test_datasets_added_by_other_tools_read_unchecked(sample_file):
    path, _ = sample_file
    chunked = np.arange(1000, dtype=np.float32).reshape(10, 100)
    with h5py.File(path, "a") as f:
        extra = f.create_group("extra")
        extra.create_dataset("gzip", data=chunked, chunks=(5, 50), compression="gzip")
        extra.create_dataset("big_endian", data=np.arange(6, dtype=">i4"))
        extra.create_dataset("empty", shape=(0, 3), dtype=np.float32)
    with WeightsFile(path) as wf:
        np.testing.assert_array_equal(wf["extra.gzip"], chunked)
        np.testing.assert_array_equal(wf["extra.big_endian"], np.arange(6))
        assert wf["extra.empty"].shape == (0, 3) and wf.groups()[-1] == "extra"


def test_corrupt_checksum_table_is_a_clear_error(sample_file):
    path, _ = sample_file
    with h5py.File(path, "a") as f:
        del f.attrs["checksum_blocksum64"]
    with pytest.raises(WeightsFileError, match="w.h5: corrupt checksum table"):
        WeightsFile(path)


def test_thousands_of_tensors_need_a_checksum_table_over_64_kib(tmp_path):
    path = tmp_path / "many.h5"
    tensors = {f"blocks.{i}.scale": np.full(2, i, np.float32) for i in range(5000)}  # table: 80 KB of sums
    write_weights(path, tensors)
    with WeightsFile(path) as wf:
        assert len(wf) == 5000 and float(wf["blocks.4999.scale"][0]) == 4999.0


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
