"""The netdef weights file: one HDF5 group per layer, keyed by module path (format: docs/hdf5-format.md).

`write_weights` writes it atomically; `WeightsFile` reads it lazily as a Mapping of dotted names
("layer1.0.conv1.weight") to numpy arrays and checks what a network expects in one pass. Only numpy and
h5py are needed here: this module is on the build path.
"""
from __future__ import annotations

import datetime as _dt
import logging
import os
import zlib
from typing import Any, Iterable, Iterator, Mapping, NamedTuple

import h5py
import numpy as np

from netdef.atomic import atomic_path
from weights_export.errors import WeightsFileError

log = logging.getLogger(__name__)

FORMAT_NAME = "netdef-weights"
FORMAT_VERSION = 1  # bump on incompatible layout changes; readers accept <= their own
ACTIVATIONS_GROUP = "activations"
# Names of state-dict entries that carry no information for inference (ignored by `check`).
IGNORED_TENSORS = ("num_batches_tracked",)
# Show a progress bar when writing more than this many bytes.
PROGRESS_BYTES = 64 << 20
# Root attributes: the checksum table, one row per dataset (see `checksum`).
CHECKSUM_PATHS_ATTR = "checksum_paths"  # str[n]: HDF5 paths of the datasets ("conv1/weight")
CHECKSUM_ATTR = "checksum_blocksum64"  # uint64[n, 2]: their checksums
CHECKSUM_ATTRS = (CHECKSUM_PATHS_ATTR, CHECKSUM_ATTR)
CHECKSUM_BLOCK = 512  # uint64 words (4 KiB) per block of the blocksum64
_MASK64 = (1 << 64) - 1
CRC_ATTR = "crc32"  # dataset attribute of files written before the table: zlib CRC-32 of the bytes


def split_key(key: str) -> tuple[str, str]:
    """'layer1.0.conv1.weight' -> ('layer1.0.conv1', 'weight'); a name without a dot lives in the root group."""
    group, _, name = key.rpartition(".")
    return group, name


def _check_name(key: str, what: str) -> None:
    if not isinstance(key, str) or not key or "/" in key or key.startswith(".") or key.endswith("."):
        raise ValueError(f"invalid {what} name {key!r}: a non-empty dotted name without '/'")


# --- attributes ------------------------------------------------------------------------------------------
def _to_attr(value: Any) -> Any:
    """Python values -> something h5py stores and gives back unchanged (tuples become arrays)."""
    if isinstance(value, str):
        return str(value)  # a str subclass (torch's version string) is not an HDF5 string to h5py
    if isinstance(value, (bytes, bool, int, float, np.generic)):
        return value
    if isinstance(value, (list, tuple, np.ndarray)):
        array = np.asarray(value)
        if array.dtype.kind in "U":
            return [str(v) for v in value]
        if array.dtype.kind not in "biuf":
            raise TypeError(f"attribute value {value!r}: only numbers, strings and lists of them are stored")
        return array
    raise TypeError(f"attribute value {value!r} of type {type(value).__name__}: only numbers, strings and lists "
                    "of them are stored")


def _from_attr(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, np.ndarray):
        return [v.decode("utf-8", "replace") if isinstance(v, bytes) else v for v in value.tolist()]
    if isinstance(value, np.generic):
        return value.item()
    return value


def _read_attrs(obj: Any) -> dict[str, Any]:
    return {name: _from_attr(value) for name, value in obj.attrs.items()}


# --- writing ---------------------------------------------------------------------------------------------
def _as_array(key: str, value: Any) -> np.ndarray:
    array = np.asarray(value)
    if array.dtype.kind not in "biuf":
        raise TypeError(f"tensor {key!r}: dtype {array.dtype} cannot be stored (numbers only)")
    return array


def checksum(array: np.ndarray) -> tuple[int, int]:
    """The blocksum64 of an array's bytes in C order (docs/hdf5-format.md).

    The bytes are read as little-endian uint64 words (the last one zero-padded) in blocks of 512 words
    (4 KiB); the result is (sum of all words, sum over blocks of (block index + 1) * block sum), both mod 2**64.
    Any change within one word (a flipped byte) changes the first; moved or swapped blocks change the second.
    numpy sums at memory speed, about 8x faster than zlib.crc32, which would cost as much as the read itself.
    """
    data = np.asarray(array, order="C").reshape(-1).view(np.uint8)
    end = data.size - data.size % 8
    words = data[:end].view("<u8")
    full = words.size - words.size % CHECKSUM_BLOCK
    last = int(words[full:].sum(dtype=np.uint64)) + int.from_bytes(data[end:].tobytes(), "little")
    if not full:  # one block: both sums are its sum
        return last & _MASK64, last & _MASK64
    sums = words[:full].reshape(-1, CHECKSUM_BLOCK).sum(axis=1, dtype=np.uint64)  # wraps mod 2**64
    weights = np.arange(1, sums.size + 1, dtype=np.uint64)
    total = int(sums.sum(dtype=np.uint64)) + last
    weighted = int((sums * weights).sum(dtype=np.uint64)) + (sums.size + 1) * last
    return total & _MASK64, weighted & _MASK64


class _Writer:
    """Creates groups, datasets and attributes through h5py's low-level API with cached types, dataspaces
    and property lists: an export makes thousands of them and the high-level API costs about 2x."""

    def __init__(self, f: h5py.File) -> None:
        self.file = f
        self.types: dict[str, tuple[Any, Any]] = {}
        self.spaces: dict[tuple[int, ...] | None, Any] = {}
        self.dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
        self.dcpl.set_obj_track_times(False)  # as h5py does: no timestamps, same bytes for the same export
        self.groups: dict[str, Any] = {"": f.id}

    def _types(self, dtype: np.dtype) -> tuple[Any, Any]:
        """(file type, memory type); they differ for strings (h5py converts its Python objects itself)."""
        key = "str" if dtype.kind == "O" else dtype.str
        if key not in self.types:
            self.types[key] = (h5py.h5t.py_create(dtype, logical=True), h5py.h5t.py_create(dtype))
        return self.types[key]

    def _space(self, shape: tuple[int, ...]) -> Any:
        if shape not in self.spaces:
            self.spaces[shape] = h5py.h5s.create_simple(shape) if shape else h5py.h5s.create(h5py.h5s.SCALAR)
        return self.spaces[shape]

    def group(self, name: str, track_order: bool = False) -> Any:
        if name not in self.groups:
            gcpl = None
            if track_order:
                gcpl = h5py.h5p.create(h5py.h5p.GROUP_CREATE)
                gcpl.set_link_creation_order(h5py.h5p.CRT_ORDER_TRACKED | h5py.h5p.CRT_ORDER_INDEXED)
            self.groups[name] = h5py.h5g.create(self.file.id, name.encode(), gcpl=gcpl)
        return self.groups[name]

    def attr(self, obj: Any, name: str, value: Any) -> None:
        array = np.asarray(value)
        if array.dtype.kind in "UO":
            array = np.array(value, dtype=h5py.string_dtype())
        ftype, mtype = self._types(array.dtype)
        attr = h5py.h5a.create(obj, name.encode(), ftype, self._space(array.shape))
        try:
            attr.write(array, mtype)  # h5py would build the memory type on every call
        finally:
            attr.close()

    def attrs(self, obj: Any, attrs: Mapping[str, Any], where: str) -> None:
        for name, value in attrs.items():
            if value is None:
                continue
            try:
                self.attr(obj, name, _to_attr(value))
            except TypeError as exc:
                raise TypeError(f"{where}: attribute {name!r}: {exc}") from None

    def dataset(self, group: Any, name: str, array: np.ndarray) -> Any:
        # Contiguous storage writes and reads as fast as torch.save/torch.load; HDF5's own Fletcher-32 filter
        # needs chunking and costs 2-3x.
        array = np.asarray(array, order="C")  # (np.ascontiguousarray makes 0-d arrays 1-d)
        ftype, mtype = self._types(array.dtype)
        dataset = h5py.h5d.create(group, name.encode(), ftype, self._space(array.shape), dcpl=self.dcpl)
        if array.size:
            dataset.write(h5py.h5s.ALL, h5py.h5s.ALL, array, mtype)
        return dataset


def _check_names(arrays: Mapping[str, np.ndarray], layer_attrs: Mapping[str, Any],
                 tensor_attrs: Mapping[str, Mapping[str, Any]], activations: Mapping[str, np.ndarray]) -> None:
    for key in arrays:
        _check_name(key, "tensor")
    for group in layer_attrs:
        _check_name(group, "layer")
    for key in activations:
        _check_name(key, "activation")
    for key, extra in tensor_attrs.items():
        if key not in arrays:
            raise KeyError(f"tensor_attrs names {key!r}, which is not among the tensors")
        if CRC_ATTR in extra:
            raise ValueError(f"tensor_attrs[{key!r}]: {CRC_ATTR!r} is reserved for checksums")
    if ACTIVATIONS_GROUP in layer_attrs or any(split_key(k)[0] == ACTIVATIONS_GROUP for k in arrays):
        raise ValueError(f"layer name {ACTIVATIONS_GROUP!r} is reserved for the activations group")


def dataset_path(key: str) -> str:
    """A tensor's HDF5 path: 'layer1.0.conv1.weight' -> 'layer1.0.conv1/weight' ('scale' stays 'scale')."""
    layer, name = split_key(key)
    return f"{layer}/{name}" if layer else name


def write_weights(path: str | os.PathLike, tensors: Mapping[str, Any],
                  layer_attrs: Mapping[str, Mapping[str, Any]] | None = None,
                  root_attrs: Mapping[str, Any] | None = None,
                  activations: Mapping[str, Any] | None = None,
                  tensor_attrs: Mapping[str, Mapping[str, Any]] | None = None,
                  progress: bool | None = None) -> None:
    """Write a weights file atomically.

    tensors: dotted name -> array, stored in its own dtype as dataset `name` of group `layer path`.
    layer_attrs: layer path -> attributes (type, hyper-parameters); a layer may have attributes and no tensors.
    root_attrs: arch, source, input_name, input_shape, mean, std, ... (format, version, time and the
    checksum table are added).
    activations: module path (or "input") -> array, stored flat in the `/activations` group.
    tensor_attrs: dotted name -> attributes of that dataset (e.g. the torch dtype of a bfloat16 tensor).
    progress: show a tqdm bar; None = only for large files.
    """
    layer_attrs = layer_attrs or {}
    tensor_attrs = tensor_attrs or {}
    arrays = {key: _as_array(key, value) for key, value in tensors.items()}
    activation_arrays = {key: _as_array(key, value) for key, value in (activations or {}).items()}
    _check_names(arrays, layer_attrs, tensor_attrs, activation_arrays)
    total = sum(a.nbytes for a in arrays.values()) + sum(a.nbytes for a in activation_arrays.values())
    show = total > PROGRESS_BYTES if progress is None else progress
    attrs = {k: v for k, v in (root_attrs or {}).items() if k not in CHECKSUM_ATTRS}
    attrs.update(format=FORMAT_NAME, format_version=FORMAT_VERSION, netdef_version=_netdef_version(),
                 created=attrs.get("created") or _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"))

    from tqdm import tqdm

    # (HDF5 path, tensor name or None for an activation, array) in writing order
    items = [(dataset_path(key), key, array) for key, array in arrays.items()]
    items += [(f"{ACTIVATIONS_GROUP}/{key}", None, array) for key, array in activation_arrays.items()]
    # track_order also gives the root HDF5's newer object header, which stores attributes over 64 KiB (the
    # checksum table of a model with thousands of tensors).
    with atomic_path(path) as tmp, h5py.File(tmp, "w", track_order=True) as f, \
            tqdm(total=total, unit="B", unit_scale=True, desc=f"writing {os.path.basename(os.fspath(path))}",
                 disable=not show, leave=False) as bar:
        sums = []  # on this thread: a second one made the export slower (GIL hand-offs for every small tensor)
        w = _Writer(f)
        w.attrs(f.id, attrs, "root")
        # Groups in module order: attributes' order first (export walks modules), then any tensor-only layer.
        for layer, la in layer_attrs.items():
            w.attrs(w.group(layer), la, f"layer {layer!r}")
        if activations is not None:
            w.group(ACTIVATIONS_GROUP, track_order=True)
        for hpath, key, array in items:
            layer, _, name = hpath.rpartition("/")
            dataset = w.dataset(w.group(layer), name, array)
            if key in tensor_attrs:
                w.attrs(dataset, tensor_attrs[key], f"tensor {key!r}")
            sums.append(checksum(array))
            bar.update(array.nbytes)
        # One table for all datasets: one attribute per dataset would cost as much as the datasets themselves.
        w.attr(f.id, CHECKSUM_PATHS_ATTR, np.array([hpath for hpath, _, _ in items], dtype=h5py.string_dtype()))
        w.attr(f.id, CHECKSUM_ATTR, np.array(sums, dtype=np.uint64).reshape(-1, 2))
    log.info("wrote %s: %d tensors, %.1f MB", path, len(arrays), total / 1e6)


def _netdef_version() -> str:
    from netdef import __version__

    return __version__


# --- reading ---------------------------------------------------------------------------------------------
class WeightsFile(Mapping[str, np.ndarray]):
    """A netdef weights file opened read-only; tensors are read from disk (and checksum-verified) when looked up.

    `wf["layer1.0.conv1.weight"]` -> np.ndarray in its stored dtype; `wf.get(key, shape, dtype)` checks;
    `wf.check({key: shape})` reports every missing, unexpected, mis-shaped and non-finite tensor at once.
    """

    def __init__(self, path: str | os.PathLike, verify: bool = True) -> None:
        self.path = os.fspath(path)
        self.verify = verify  # check each tensor's checksum when it is read
        if not os.path.exists(self.path):
            raise WeightsFileError(self.path, "weights file not found")
        try:
            self._file = h5py.File(self.path, "r")
        except OSError as exc:
            raise WeightsFileError(self.path, f"not a readable HDF5 file (truncated or corrupt?): {exc}") from None
        try:
            self.attrs = _read_attrs(self._file)
            self._check_format()
            self._checksums = self._checksum_table()
            self._index = self._build_index()
        except BaseException:
            self._file.close()
            raise

    def _check_format(self) -> None:
        name, version = self.attrs.get("format"), self.attrs.get("format_version")
        if name != FORMAT_NAME:
            raise WeightsFileError(self.path, f"not a netdef weights file (root attribute format={name!r}, "
                                   f"expected {FORMAT_NAME!r}); write it with weights_export")
        if not isinstance(version, int) or version > FORMAT_VERSION:
            raise WeightsFileError(self.path, f"format_version {version!r} is newer than this reader "
                                   f"({FORMAT_VERSION}); update netdef")

    def _checksum_table(self) -> dict[str, tuple[int, int]] | None:
        """HDF5 path -> blocksum64, taken out of `attrs`; None for files with per-dataset crc32 instead."""
        paths, sums = (self.attrs.pop(name, None) for name in CHECKSUM_ATTRS)
        if paths is None and sums is None:
            return None
        if not isinstance(paths, list) or not isinstance(sums, list) or len(paths) != len(sums) \
                or any(len(row) != 2 for row in sums):
            raise WeightsFileError(self.path, f"corrupt checksum table (root attributes {CHECKSUM_PATHS_ATTR}, "
                                   f"{CHECKSUM_ATTR})")
        return {p: (int(a), int(b)) for p, (a, b) in zip(paths, sums)}

    def _build_index(self) -> dict[str, "_Entry"]:
        # One HDF5 traversal that opens no object: opening every dataset here cost more than reading them.
        kinds: dict[str, int] = {}
        try:
            h5py.h5o.visit(self._file.id, lambda name, info: kinds.__setitem__(name.decode(), info.type), info=True)
            roots = list(self._file)  # creation order (module order)
        except (OSError, RuntimeError, KeyError, UnicodeDecodeError) as exc:
            raise WeightsFileError(self.path, f"cannot list the file's contents (corrupt or truncated?): {exc}") \
                from None
        members: dict[str, list[str]] = {}
        for hpath, kind in kinds.items():  # visited in name order within each group
            layer, _, name = hpath.partition("/")
            if kind == h5py.h5o.TYPE_DATASET and name and "/" not in name:
                members.setdefault(layer, []).append(name)
        index: dict[str, _Entry] = {}
        self._groups: list[str] = []
        for layer in roots:
            kind = kinds.get(layer)
            if kind == h5py.h5o.TYPE_DATASET:
                index[layer] = _Entry("", layer, layer)
            elif kind == h5py.h5o.TYPE_GROUP and layer != ACTIVATIONS_GROUP:
                self._groups.append(layer)
                for name in members.get(layer, ()):
                    index[f"{layer}.{name}"] = _Entry(layer, name, f"{layer}/{name}")
        return index

    # --- Mapping ---------------------------------------------------------------------------------------
    def __getitem__(self, key: str) -> np.ndarray:
        try:
            entry = self._index[key]
        except KeyError:
            raise KeyError(f"{self.path}: no tensor {key!r}") from None
        return self._read(entry)

    def __iter__(self) -> Iterator[str]:
        return iter(self._index)

    def __len__(self) -> int:
        return len(self._index)

    def __contains__(self, key: object) -> bool:
        return key in self._index

    def _read(self, entry: "_Entry") -> np.ndarray:
        self._require_open()
        try:
            dsid = h5py.h5d.open(self._file.id, entry.path.encode())
            array = _read_whole(dsid)
            ok = self._verified(entry.path, dsid, array) if self.verify else True
        except (OSError, RuntimeError, KeyError, ValueError) as exc:
            raise WeightsFileError(self.path, f"cannot read data (corrupt or truncated file?): {exc}",
                                   layer=entry.layer or "<root>", tensor=entry.name) from None
        if not ok:
            raise WeightsFileError(self.path, "checksum mismatch: the data is corrupt (or was edited without "
                                   "updating its checksum)", layer=entry.layer or "<root>", tensor=entry.name)
        return array

    def _verified(self, path: str, dsid: Any, array: np.ndarray) -> bool:
        """Whether the data matches its checksum; a dataset without one (added by another tool) passes."""
        if self._checksums is not None:
            expected = self._checksums.get(path)
            return expected is None or checksum(array) == expected
        crc = _read_crc(dsid)  # written before the checksum table
        return crc is None or zlib.crc32(memoryview(np.ascontiguousarray(array)).cast("B")) == crc

    def _require_open(self) -> None:
        if not self._file:
            raise WeightsFileError(self.path, "file is closed")

    # --- checked access --------------------------------------------------------------------------------
    def shape_of(self, key: str) -> tuple[int, ...]:
        """A tensor's shape without reading its data."""
        self._require_open()
        return tuple(h5py.h5d.open(self._file.id, self._index[key].path.encode()).shape)

    def get(self, key: str, shape: Iterable[int] | None = None,  # type: ignore[override]
            dtype: Any = None) -> np.ndarray:
        """The tensor `key`, checked: present, of `shape` (when given), finite, and of `dtype`'s kind
        (float/int; when given it is converted to `dtype`). Errors name the file, layer and tensor."""
        layer, name = split_key(key)
        if key not in self._index:
            raise WeightsFileError(self.path, "missing" + (f" (expected shape {tuple(shape)})" if shape else ""),
                                   layer=layer or "<root>", tensor=name)
        array = self[key]
        problem = _problem(array, tuple(shape) if shape is not None else None, dtype)
        if problem:
            raise WeightsFileError(self.path, problem, layer=layer or "<root>", tensor=name)
        return array.astype(dtype, copy=False) if dtype is not None else array

    def check(self, expected: Mapping[str, Iterable[int] | None], ignore: Iterable[str] = IGNORED_TENSORS,
              finite: bool = True) -> None:
        """Raise one WeightsFileError listing every missing, unexpected, mis-shaped (and, with `finite`,
        NaN/Inf) tensor. `expected` maps dotted names to shapes (None: any shape). Names whose last
        part is in `ignore` (num_batches_tracked) are never unexpected."""
        ignored = set(ignore)
        problems: list[str] = []
        for key, shape in expected.items():
            layer, name = split_key(key)
            where = f"layer {layer or '<root>'!r} tensor {name!r}"
            if key not in self._index:
                problems.append(f"{where}: missing" + (f" (expected shape {tuple(shape)})" if shape else ""))
                continue
            if shape is not None and self.shape_of(key) != tuple(shape):
                problems.append(f"{where}: shape {self.shape_of(key)}, expected {tuple(shape)}")
                continue
            if finite:
                problem = _problem(self[key], None, None)
                if problem:
                    problems.append(f"{where}: {problem}")
        for key in self._index:
            if key not in expected and split_key(key)[1] not in ignored:
                layer, name = split_key(key)
                problems.append(f"layer {layer or '<root>'!r} tensor {name!r}: unexpected (not used by the network)")
        if problems:
            raise WeightsFileError(self.path, f"{len(problems)} problem(s) with the weights:\n  "
                                   + "\n  ".join(problems))

    # --- layers and metadata ---------------------------------------------------------------------------
    def groups(self) -> list[str]:
        """Layer groups (module paths) in file order, the activations group excluded."""
        return list(self._groups)

    def layer_attrs(self, group: str) -> dict[str, Any]:
        """A layer's attributes: `type` and its hyper-parameters (lists for tuples)."""
        self._require_open()
        if group not in self._groups:
            raise WeightsFileError(self.path, "no such layer group", layer=group)
        return _read_attrs(self._file[group])

    def tensor_attrs(self, key: str) -> dict[str, Any]:
        self._require_open()
        return _read_attrs(self._file[self._index[key].path])

    @property
    def activations(self) -> "Activations | None":
        """Module path (and "input") -> recorded output, or None when the file has none."""
        self._require_open()
        group = self._file.get(ACTIVATIONS_GROUP)
        return Activations(self, group) if isinstance(group, h5py.Group) else None

    # --- lifetime ----------------------------------------------------------------------------------------
    def close(self) -> None:
        if self._file:
            self._file.close()

    def __enter__(self) -> "WeightsFile":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"WeightsFile({self.path!r}, {len(self._index)} tensors, arch={self.attrs.get('arch')!r})"


class Activations(Mapping[str, np.ndarray]):
    """The `/activations` group of a weights file, read lazily."""

    def __init__(self, owner: WeightsFile, group: h5py.Group) -> None:
        self._owner = owner
        self._group = group
        self._names = list(group.keys())
        self.attrs = _read_attrs(group)

    def __getitem__(self, key: str) -> np.ndarray:
        if key not in self._names:
            raise KeyError(f"{self._owner.path}: no recorded activation {key!r}")
        return self._owner._read(_Entry(ACTIVATIONS_GROUP, key, f"{ACTIVATIONS_GROUP}/{key}"))

    def __iter__(self) -> Iterator[str]:
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)


class _Entry(NamedTuple):
    """Where a tensor lives: its layer group, dataset name and HDF5 path."""

    layer: str
    name: str
    path: str


def all_finite(array: np.ndarray) -> bool:
    """No NaN/Inf in a float array. The sum propagates both and needs no boolean temporary; only when it
    is not finite (NaN/Inf, or finite values overflowing) is every element checked."""
    if array.dtype.kind != "f" or array.size == 0:
        return True
    with np.errstate(over="ignore", invalid="ignore"):
        total = array.sum()
    return bool(np.isfinite(total)) or bool(np.isfinite(array).all())


def _read_whole(dsid: Any) -> np.ndarray:
    """A whole dataset as an array (0-d for scalars) through the low-level API: no selection parsing."""
    dtype = dsid.dtype
    if dtype.kind not in "biuf":
        return np.asarray(h5py.Dataset(dsid)[()])
    array = np.empty(dsid.shape, dtype)
    if array.size:
        dsid.read(h5py.h5s.ALL, h5py.h5s.ALL, array)
    return array


def _read_crc(dsid: Any) -> int | None:
    if not h5py.h5a.exists(dsid, CRC_ATTR.encode()):
        return None  # written by another tool: nothing to verify
    attr = h5py.h5a.open(dsid, CRC_ATTR.encode())
    try:
        value = np.empty((), np.uint32)
        attr.read(value)
        return int(value)
    finally:
        attr.close()


def _problem(array: np.ndarray, shape: tuple[int, ...] | None, dtype: Any) -> str | None:
    """What is wrong with a tensor for a caller expecting `shape` and `dtype`'s kind, or None."""
    if shape is not None and tuple(array.shape) != shape:
        return f"shape {tuple(array.shape)}, expected {shape}"
    if dtype is not None:
        want = np.dtype(dtype)
        compatible = array.dtype.kind == "f" if want.kind == "f" else array.dtype.kind in "biu"
        if not compatible:
            return f"dtype {array.dtype}, expected {want} (a {'floating' if want.kind == 'f' else 'integer'} type)"
    if array.dtype.kind == "f" and not all_finite(array):
        bad = int((~np.isfinite(array)).sum())
        return f"{bad} of {array.size} values are NaN/Inf"
    return None
