"""What a handler sees while preparing one layer: its name, dtypes, device and error helpers."""
from __future__ import annotations

from typing import Any, NoReturn

import numpy as np
import torch

from netdef.executor.dtypes import enum_name, storage_dtype
from netdef.executor.errors import UnsupportedLayerError


class LayerContext:
    def __init__(self, layer: Any, type_name: str, device: torch.device, float_dtype: torch.dtype) -> None:
        self.layer = layer
        self.name: str = layer.name
        self.type_name = type_name
        self.device = device
        self.float_dtype = float_dtype
        self.output_dtypes = [storage_dtype(layer.get_output(i).dtype, float_dtype) for i in range(layer.num_outputs)]
        half_out = any(enum_name(layer.get_output(i).dtype) == "HALF" for i in range(layer.num_outputs))
        # FP16 layers compute in FP16 on CUDA; on CPU in float32/64 and their outputs are rounded to FP16.
        self.compute_dtype = torch.float16 if half_out and device.type == "cuda" else float_dtype

    # --- inputs ------------------------------------------------------------------------------------
    def input(self, index: int) -> Any:
        """The layer's index-th input tensor, or None where the optional input is not set."""
        if index >= self.layer.num_inputs:
            return None
        return self.layer.get_input(index)

    def has_input(self, index: int) -> bool:
        return self.input(index) is not None

    def input_rank(self, index: int = 0) -> int:
        return len(tuple(self.input(index).shape))

    # --- parameters --------------------------------------------------------------------------------
    def tensor(self, array: Any, shape: tuple[int, ...] | None = None,
               dtype: torch.dtype | None = None) -> torch.Tensor:
        """A weight array as a torch tensor in the layer's compute dtype (or `dtype`), on the device, once."""
        arr = np.asarray(array)
        if shape is not None:
            arr = arr.reshape(shape)
        if dtype is None:
            dtype = self.compute_dtype if arr.dtype.kind == "f" else None
        t = torch.from_numpy(np.array(arr, copy=True))
        return t.to(device=self.device, dtype=dtype) if dtype is not None else t.to(self.device)

    def unsupported(self, parameter: str | None = None, value: Any = None) -> NoReturn:
        raise UnsupportedLayerError(self.name, self.type_name, parameter, value)

    def require(self, ok: bool, parameter: str, value: Any) -> None:
        if not ok:
            self.unsupported(parameter, value)


def axes_from_mask(mask: int, rank: int) -> list[int]:
    """TensorRT's reduce/softmax axes bitmask as a list of dims."""
    return [d for d in range(rank) if mask & (1 << d)]
