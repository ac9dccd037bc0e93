"""Precision policy: how one network class becomes an FP32, FP16 or INT8 definition.

The network emits the same layers for every precision; the policy decides dtypes of constants,
where casts go (strongly typed bindings) or which layers get precision constraints (weakly typed,
TensorRT 8.6), and - for INT8 - where quantization goes: `int8` holds the amax table and the FP16 sites
(skip + sensitivity), and the network's `Quantizer` (netdef.quantize.policy) emits Q/DQ from it while the
modules define, quantizing each tensor once with its scale group's scale (docs/int8.md).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from netdef.engine import PRECISIONS


@dataclass
class PrecisionPolicy:
    name: str = "fp32"
    strongly_typed: bool = True
    fp16_io: bool = False
    int8: Any = None  # netdef.quantize.policy.Int8Settings when name == "int8"

    def __post_init__(self) -> None:
        if self.name not in PRECISIONS:
            raise ValueError(f"precision {self.name!r}: expected one of {', '.join(PRECISIONS)}")

    @property
    def reduced(self) -> bool:
        """FP16 math anywhere (fp16, and int8's non-quantized layers)."""
        return self.name in ("fp16", "int8")

    @property
    def compute_dtype(self) -> np.dtype:
        """dtype of weights/constants and activations in the definition itself.

        Strongly typed: FP16 when reduced. Weakly typed (8.6): always FP32; the FP16 builder flag reduces
        fp16 builds, and int8 builds (INT8 + FP16 flags) run what the Q/DQ layers do not cover in FP16
        (see engine.py).
        """
        return np.dtype(np.float16 if self.reduced and self.strongly_typed else np.float32)

    @property
    def io_dtype(self) -> np.dtype:
        return np.dtype(np.float16 if self.fp16_io and self.reduced else np.float32)
