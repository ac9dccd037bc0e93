"""A device array for the GPU benchmarks (no torch there): cudaMalloc memory behind __cuda_array_interface__."""
from __future__ import annotations

import numpy as np

from netdef.runtime import cuda


class CudaArray:
    """A device array (cudaMalloc) exposing __cuda_array_interface__, so the runtime reads/writes it in place."""

    def __init__(self, shape: tuple[int, ...], dtype: object) -> None:
        self.shape, self.dtype = tuple(shape), np.dtype(dtype)
        self.buf = cuda.DeviceBuffer(int(np.prod(shape)) * self.dtype.itemsize)

    @property
    def __cuda_array_interface__(self) -> dict:
        return {"shape": self.shape, "typestr": self.dtype.str, "data": (self.buf.ptr, False), "version": 3}

    def copy_from(self, array: np.ndarray) -> "CudaArray":
        """Copy a host array of this shape and dtype in (synchronous)."""
        host = np.ascontiguousarray(array, dtype=self.dtype)
        if host.shape != self.shape:
            raise ValueError(f"copy_from: array of shape {host.shape} into a device array of shape {self.shape}")
        rt = cuda.cudart()
        cuda.check(rt.cudaMemcpy(self.buf.ptr, host.ctypes.data, host.nbytes,
                                 rt.cudaMemcpyKind.cudaMemcpyHostToDevice), "cudaMemcpy(HostToDevice)")
        return self

    @classmethod
    def from_host(cls, array: np.ndarray) -> "CudaArray":
        return cls(array.shape, array.dtype).copy_from(array)
