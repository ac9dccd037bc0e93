"""Per-tensor I/O buffers, by name: a pinned host buffer and a device buffer sized for the profile's max shape.

Also the description of one I/O tensor (`TensorSpec`, shared by every backend) and `DeviceArray`, the
view of a caller's device array (torch, cupy, pycuda: anything with `__cuda_array_interface__`) that the
runtime reads or writes in place.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable

import numpy as np

from netdef.runtime.cuda import DeviceBuffer, PinnedBuffer


@dataclass(frozen=True)
class TensorSpec:
    """One I/O tensor of an engine or definition; `shape` may hold -1 (dynamic batch)."""

    name: str
    is_input: bool
    dtype: np.dtype
    shape: tuple[int, ...]
    min_shape: tuple[int, ...]
    max_shape: tuple[int, ...]

    @property
    def max_nbytes(self) -> int:
        return int(np.prod(self.max_shape, dtype=np.int64)) * self.dtype.itemsize

    def describe(self) -> str:
        dims = ",".join("N" if d < 0 else str(d) for d in self.shape)
        return f"{self.name} {self.dtype.name}[{dims}]"


class DeviceArray:
    """A caller's device array, read through `__cuda_array_interface__` (v2/v3): pointer, shape, dtype."""

    def __init__(self, obj: Any) -> None:
        cai = obj.__cuda_array_interface__
        self.obj = obj
        self.ptr = int(cai["data"][0])
        self.shape = tuple(int(d) for d in cai["shape"])
        self.dtype = np.dtype(cai["typestr"])
        strides = cai.get("strides")
        if strides is not None and tuple(strides) != _contiguous_strides(self.shape, self.dtype.itemsize):
            raise ValueError(f"device array with shape {self.shape} and strides {tuple(strides)} is not "
                             "C-contiguous; pass a contiguous array (e.g. tensor.contiguous())")

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) * self.dtype.itemsize

    @staticmethod
    def wrap(obj: Any) -> "DeviceArray | None":
        return DeviceArray(obj) if hasattr(obj, "__cuda_array_interface__") else None


def _contiguous_strides(shape: tuple[int, ...], itemsize: int) -> tuple[int, ...]:
    strides, step = [], itemsize
    for d in reversed(shape):
        strides.append(step)
        step *= max(d, 1)
    return tuple(reversed(strides))


class IOBuffer:
    """Pinned host + device memory for one I/O tensor, sized for its max shape."""

    def __init__(self, spec: TensorSpec) -> None:
        self.spec = spec
        self.host = PinnedBuffer(spec.max_nbytes)
        try:
            self.device = DeviceBuffer(spec.max_nbytes)
        except BaseException:
            self.host.free()
            raise

    def host_view(self, shape: tuple[int, ...]) -> np.ndarray:
        return self.host.view(self.spec.dtype, shape)

    def free(self) -> None:
        self.device.free()
        self.host.free()


def allocate(specs: Iterable[TensorSpec]) -> dict[str, IOBuffer]:
    """One IOBuffer per tensor, in spec order; on a failed allocation what was allocated is freed."""
    buffers: dict[str, IOBuffer] = {}
    try:
        for spec in specs:
            buffers[spec.name] = IOBuffer(spec)
    except BaseException:
        free_all(buffers)
        raise
    return buffers


def free_all(buffers: dict[str, IOBuffer]) -> None:
    for buf in buffers.values():
        buf.free()
    buffers.clear()


def total_bytes(buffers: dict[str, IOBuffer]) -> int:
    """Device bytes held by the buffers (the pinned host side is the same size again)."""
    return sum(b.device.nbytes for b in buffers.values())
