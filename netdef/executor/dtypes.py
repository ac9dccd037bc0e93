"""TensorRT DataType -> torch dtype of the tensors the executor keeps."""
from __future__ import annotations

from typing import Any

import torch

_STORAGE = {
    "HALF": torch.float16,
    "BF16": torch.bfloat16,
    "INT8": torch.int8,
    "UINT8": torch.uint8,
    "INT32": torch.int32,
    "INT64": torch.int64,
    "BOOL": torch.bool,
}


def enum_name(value: Any) -> str:
    """The member name of a TensorRT enum value (DataType.HALF -> "HALF", LayerType.CONVOLUTION -> ...)."""
    return getattr(value, "name", str(value)).split(".")[-1]


def storage_dtype(trt_dtype: Any, float_dtype: torch.dtype) -> torch.dtype:
    """How a tensor of this TensorRT type is held: FLOAT in `float_dtype` (float32, or float64 for
    reference-quality checks), HALF in float16 so FP16 rounding shows up as it would in TensorRT."""
    name = enum_name(trt_dtype)
    if name == "FLOAT":
        return float_dtype
    try:
        return _STORAGE[name]
    except KeyError:
        raise TypeError(f"TensorRT data type {name} has no executor representation") from None
