"""Functional ops on TensorRT tensors (`import netdef.functional as F`), each one or a few native layers.

Every op adds layers to the network being built (`netdef.network.current()`) and names them
`<module path>/<op>`; pass `op=None` to name a single-layer op after the module path itself (what the
one-layer modules in `netdef.nn` do). Operands may be tensors, Python numbers or numpy arrays: numbers
and arrays become constants in the other operand's dtype, broadcast by prepending size-1 dimensions.
Each op checks dtypes (a TypeError names the op and tensor) and follows torch's semantics; tensors also
take +, -, *, / and unary - (netdef.functional.operators).

elementwise: add sub mul div pow maximum minimum · eq gt lt ge le · logical_and/or/xor/not · where ·
             relu leaky_relu sigmoid tanh softplus silu mish hardswish clamp · exp log sqrt abs neg ·
             constant cast
shape:       reshape flatten permute transpose concat slice split pad shape_with size
reduce:      sum mean amax amin softmax
indexing:    gather index_select topk arange arange_like nms
spatial:     conv2d conv_transpose2d max_pool2d avg_pool2d interpolate
"""
from netdef import trt as _shim
from netdef.functional.core import is_tensor
from netdef.functional.elementwise import (abs, activation, add, cast, clamp, constant, div, eq, exp, ge, gt,
                                           hardswish, le, leaky_relu, log, logical_and, logical_not, logical_or,
                                           logical_xor, lt, maximum, minimum, mish, mul, neg, pow, relu, sigmoid,
                                           silu, softplus, sqrt, sub, tanh, unary, where)
from netdef.functional.indexing import arange, arange_like, gather, index_select, nms, topk
from netdef.functional.reduce import amax, amin, mean, softmax, sum
from netdef.functional.shape import (concat, flatten, pad, permute, reshape, shape_with, size, slice, split,
                                     transpose)
from netdef.functional.spatial import avg_pool2d, conv2d, conv_transpose2d, interpolate, max_pool2d

__all__ = [
    "abs", "activation", "add", "amax", "amin", "arange", "arange_like", "avg_pool2d", "cast", "clamp", "concat",
    "constant", "conv2d", "conv_transpose2d", "div", "eq", "exp", "flatten", "gather", "ge", "gt", "hardswish", "index_select",
    "interpolate", "is_tensor", "le", "leaky_relu", "log", "logical_and", "logical_not", "logical_or", "logical_xor",
    "lt", "max_pool2d", "maximum", "mean", "minimum", "mish", "mul", "neg", "nms", "pad", "permute", "pow", "relu",
    "reshape", "shape_with", "sigmoid", "silu", "size", "slice", "softmax", "softplus", "split", "sqrt", "sub",
    "sum", "tanh", "topk", "transpose", "unary", "where",
]

try:
    from netdef.functional.operators import install as _install_operators

    _install_operators(_shim.binding().ITensor)
except _shim.TensorRTNotFound:  # importable without a binding (docs, `netdef info`); building needs one anyway
    pass
