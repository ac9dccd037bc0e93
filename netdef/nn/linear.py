"""Linear: y = x @ weight.T + bias as a matrix multiply with a constant (TensorRT 10 dropped the FC layer).

INT8: x per tensor and the weight per output channel (the columns of the stored (in, out) matrix), quantized by
the network's quantizer; the bias add stays float."""
from __future__ import annotations

from typing import Any

import numpy as np

import netdef.functional as F
from netdef.module import Module, Parameter
from netdef.network import current


class Linear(Module):
    def __init__(self, in_features: int, out_features: int, bias: bool = True) -> None:
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.weight = Parameter(out_features, in_features)
        self.bias = Parameter(out_features) if bias else None

    def forward(self, x: Any) -> Any:
        net = current()
        shape = tuple(x.shape)
        if not shape or shape[-1] != self.in_features:
            raise ValueError(f"{self.path}: Linear({self.in_features}, {self.out_features}) got tensor {x.name!r} "
                             f"of shape {shape} (last dim must be {self.in_features})")
        rank = len(shape)
        # The weight constant is stored transposed (in, out) with leading 1s so it broadcasts over batch dims.
        weight_t = np.ascontiguousarray(self.weight.data.T).reshape((1,) * (rank - 2) + (self.in_features,
                                                                                         self.out_features))
        x, w = net.quant.weighted(net.to_compute(x), weight_t, weight_t.ndim - 1, self.path or "linear")
        if w is None:
            w = net.constant(weight_t, op="weight")
        none = net.trt.MatrixOperation.NONE
        layer = net.definition.add_matrix_multiply(x, none, w, none)
        if self.bias is None:
            return net.quant.weighted_output(net.name_layer(layer).get_output(0))
        y = net.quant.weighted_output(net.name_layer(layer, "matmul").get_output(0))
        return F.add(y, self.bias.data.reshape((1,) * (rank - 1) + (self.out_features,)), op=None)
