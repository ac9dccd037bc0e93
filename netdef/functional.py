"""Functional ops on TensorRT tensors (`import netdef.functional as F`), each one or a few native layers.

Every op adds layers to the network being built (`netdef.network.current()`) and names them
`<module path>/<op>`; pass `op=None` to name a single-layer op after the module path itself (what the
one-layer modules in `netdef.nn` do). Operands may be tensors, Python numbers or numpy arrays: numbers
and arrays become constants in the other operand's dtype, broadcast by prepending size-1 dimensions.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from netdef.network import current, np_dtype

Operand = Any  # ITensor | float | int | np.ndarray
_py_slice = slice  # `slice` below is the tensor op


def _join(op: str | None, sub: str) -> str:
    return f"{op}/{sub}" if op else sub


def _rank(x: Any) -> int:
    return len(tuple(x.shape))


def _axis(dim: int, rank: int, what: str) -> int:
    axis = dim + rank if dim < 0 else dim
    if not 0 <= axis < rank:
        raise ValueError(f"{what}: dim {dim} is out of range for a tensor of rank {rank}")
    return axis


def _out(layer: Any, op: str | None) -> Any:
    return current().name_layer(layer, op).get_output(0)


# --- constants and casts -------------------------------------------------------------------------------
def constant(array: Any, dtype: Any = None, op: str | None = "const") -> Any:
    """A constant tensor; floating arrays take the compute dtype unless `dtype` says otherwise."""
    return current().constant(np.asarray(array), dtype=dtype, op=op or "const")


def cast(x: Any, dtype: Any, op: str | None = "cast") -> Any:
    """Cast to a numpy dtype (or TensorRT DataType); no layer when `x` already has it."""
    return current().cast(x, dtype, op or "cast")


def is_tensor(value: Any) -> bool:
    return isinstance(value, current().trt.ITensor)


def _operand(value: Operand, like: Any, op: str | None) -> Any:
    """A tensor for `value`: tensors pass through, numbers/arrays become constants shaped for broadcasting."""
    if is_tensor(value):
        return value
    array = np.asarray(value, dtype=np_dtype(like.dtype))
    rank = _rank(like)
    if array.ndim > rank:
        raise ValueError(f"{current().path or 'network'}: constant of shape {array.shape} has more dims than "
                         f"tensor {like.name!r} {tuple(like.shape)}")
    array = array.reshape((1,) * (rank - array.ndim) + array.shape)
    return current().constant(array, dtype=array.dtype, op=_join(op, "const"))


def _match_rank(a: Any, b: Any, op: str | None) -> tuple[Any, Any]:
    """Tensors of different rank broadcast like numpy: prepend size-1 dims to the lower-rank one."""
    ra, rb = _rank(a), _rank(b)
    if ra == rb:
        return a, b
    low, high = (a, b) if ra < rb else (b, a)
    low = reshape(low, (1,) * abs(ra - rb) + tuple(low.shape), op=_join(op, "broadcast"))
    return (low, high) if ra < rb else (high, low)


def _elementwise(a: Operand, b: Operand, kind: str, op: str | None) -> Any:
    net = current()
    if not is_tensor(a):
        if not is_tensor(b):
            raise TypeError(f"{net.path or 'network'}/{op}: at least one operand must be a tensor")
        a = _operand(a, b, op)
    b = _operand(b, a, op)
    a, b = _match_rank(a, b, op)
    if a.dtype != b.dtype:
        raise TypeError(f"{net.path or 'network'}/{op}: operands {a.name!r} ({a.dtype}) and {b.name!r} "
                        f"({b.dtype}) differ in dtype; cast one first (F.cast)")
    layer = net.definition.add_elementwise(a, b, getattr(net.trt.ElementWiseOperation, kind))
    return _out(layer, op)


def add(a: Operand, b: Operand, op: str | None = "add") -> Any:
    return _elementwise(a, b, "SUM", op)


def sub(a: Operand, b: Operand, op: str | None = "sub") -> Any:
    return _elementwise(a, b, "SUB", op)


def mul(a: Operand, b: Operand, op: str | None = "mul") -> Any:
    return _elementwise(a, b, "PROD", op)


def div(a: Operand, b: Operand, op: str | None = "div") -> Any:
    return _elementwise(a, b, "DIV", op)


def maximum(a: Operand, b: Operand, op: str | None = "max") -> Any:
    return _elementwise(a, b, "MAX", op)


def minimum(a: Operand, b: Operand, op: str | None = "min") -> Any:
    return _elementwise(a, b, "MIN", op)


# --- activations -------------------------------------------------------------------------------------
def activation(x: Any, kind: str, op: str | None, alpha: float | None = None, beta: float | None = None) -> Any:
    """One IActivationLayer of `ActivationType.<kind>` (alpha/beta as TensorRT defines them for it)."""
    net = current()
    layer = net.definition.add_activation(x, getattr(net.trt.ActivationType, kind))
    if alpha is not None:
        layer.alpha = float(alpha)
    if beta is not None:
        layer.beta = float(beta)
    return _out(layer, op)


def relu(x: Any, op: str | None = "relu") -> Any:
    return activation(x, "RELU", op)


def leaky_relu(x: Any, negative_slope: float = 0.01, op: str | None = "leaky_relu") -> Any:
    return activation(x, "LEAKY_RELU", op, alpha=negative_slope)


def sigmoid(x: Any, op: str | None = "sigmoid") -> Any:
    return activation(x, "SIGMOID", op)


def tanh(x: Any, op: str | None = "tanh") -> Any:
    return activation(x, "TANH", op)


def softplus(x: Any, op: str | None = "softplus") -> Any:
    """log(1 + exp(x)): TensorRT's SOFTPLUS is alpha*log(exp(beta*x) + 1)."""
    return activation(x, "SOFTPLUS", op, alpha=1.0, beta=1.0)


def silu(x: Any, op: str | None = "silu") -> Any:
    """x * sigmoid(x) (no native SiLU activation)."""
    return mul(x, sigmoid(x, op=_join(op, "sigmoid")), op=_join(op, "mul"))


def mish(x: Any, op: str | None = "mish") -> Any:
    """x * tanh(softplus(x)), exact; for large x softplus -> x (or inf in FP16) and tanh -> 1, so it stays finite."""
    t = tanh(softplus(x, op=_join(op, "softplus")), op=_join(op, "tanh"))
    return mul(x, t, op=_join(op, "mul"))


def hardswish(x: Any, op: str | None = "hardswish") -> Any:
    """x * clip(x + 3, 0, 6) / 6, with TensorRT's HARD_SIGMOID max(0, min(1, x/6 + 1/2))."""
    gate = activation(x, "HARD_SIGMOID", _join(op, "hard_sigmoid"), alpha=1.0 / 6.0, beta=0.5)
    return mul(x, gate, op=_join(op, "mul"))


def unary(x: Any, kind: str, op: str | None) -> Any:
    net = current()
    return _out(net.definition.add_unary(x, getattr(net.trt.UnaryOperation, kind)), op)


def exp(x: Any, op: str | None = "exp") -> Any:
    return unary(x, "EXP", op)


def softmax(x: Any, dim: int, op: str | None = "softmax") -> Any:
    net = current()
    layer = net.definition.add_softmax(x)
    layer.axes = 1 << _axis(dim, _rank(x), f"{net.path}/softmax")
    return _out(layer, op)


# --- shapes --------------------------------------------------------------------------------------------
def reshape(x: Any, shape: Sequence[int], op: str | None = "reshape") -> Any:
    """Reshape; 0 copies the input's dimension (keeps a dynamic batch), one -1 is inferred."""
    net = current()
    layer = net.definition.add_shuffle(x)
    layer.reshape_dims = tuple(int(s) for s in shape)
    return _out(layer, op)


def flatten(x: Any, start_dim: int = 1, end_dim: int = -1, op: str | None = "flatten") -> Any:
    """torch.flatten: dims start_dim..end_dim become one (dims before it are copied, so batch stays dynamic)."""
    rank = _rank(x)
    where = f"{current().path}/flatten"
    start, end = _axis(start_dim, rank, where), _axis(end_dim, rank, where)
    dims = list(x.shape)
    if any(d < 0 for d in dims[start:]) and end != rank - 1:
        raise ValueError(f"{where}: cannot flatten dims {start}..{end} of {x.name!r} {tuple(dims)}: "
                         "a dynamic dimension would have to be inferred twice")
    # Leading dims are copied (0 keeps a dynamic batch); the merged one is inferred when it is the last.
    merged = -1 if end == rank - 1 else int(np.prod(dims[start:end + 1]))
    new = [0] * start + [merged] + [int(d) for d in dims[end + 1:]]
    return reshape(x, new, op=op)


def permute(x: Any, dims: Sequence[int], op: str | None = "permute") -> Any:
    net = current()
    layer = net.definition.add_shuffle(x)
    layer.first_transpose = tuple(_axis(d, _rank(x), f"{net.path}/permute") for d in dims)
    return _out(layer, op)


def transpose(x: Any, dim0: int, dim1: int, op: str | None = "transpose") -> Any:
    rank = _rank(x)
    perm = list(range(rank))
    a, b = _axis(dim0, rank, "transpose"), _axis(dim1, rank, "transpose")
    perm[a], perm[b] = perm[b], perm[a]
    return permute(x, perm, op=op)


def concat(tensors: Sequence[Any], dim: int = 1, op: str | None = "concat") -> Any:
    net = current()
    tensors = list(tensors)
    if not tensors:
        raise ValueError(f"{net.path}/concat: no tensors to concatenate")
    dtypes = {t.dtype for t in tensors}
    if len(dtypes) > 1:
        raise TypeError(f"{net.path}/concat: inputs differ in dtype: "
                        + ", ".join(f"{t.name!r} {t.dtype}" for t in tensors))
    layer = net.definition.add_concatenation(tensors)
    layer.axis = _axis(dim, _rank(tensors[0]), f"{net.path}/concat")
    return _out(layer, op)


def slice(x: Any, dim: int, start: int, stop: int | None = None, step: int = 1, op: str | None = "slice") -> Any:
    """x[..., start:stop:step, ...] along `dim` (a non-dynamic dimension); other dims whole."""
    net = current()
    rank = _rank(x)
    where = f"{net.path}/{op or 'slice'}"
    axis = _axis(dim, rank, where)
    dims = list(x.shape)
    if dims[axis] < 0:
        raise ValueError(f"{where}: cannot slice dynamic dimension {dim} of tensor {x.name!r} {tuple(dims)}")
    begin, end, stride = _py_slice(start, stop, step).indices(dims[axis])
    count = len(range(begin, end, stride))
    if count <= 0:
        raise ValueError(f"{where}: empty slice {start}:{stop}:{step} of dim {dim} (size {dims[axis]}) "
                         f"of tensor {x.name!r}")
    starts = [0] * rank
    starts[axis] = begin
    strides = [1] * rank
    strides[axis] = stride
    shape = list(dims)
    shape[axis] = count
    # A dynamic batch needs the output shape as a tensor; made first so layers stay in topological order.
    dynamic = shape_with(x, {axis: count}, _join(op, "shape")) if any(d < 0 for d in dims) else None
    layer = net.definition.add_slice(x, tuple(starts), tuple(max(s, 0) for s in shape), tuple(strides))
    if dynamic is not None:
        layer.set_input(2, dynamic)
    return _out(layer, op)


def shape_with(x: Any, sizes: dict[int, int], op: str = "shape") -> Any:
    """shape(x) as a shape tensor with the dimensions in `sizes` replaced (static sizes beside a dynamic batch)."""
    net = current()
    shape = net.name_layer(net.definition.add_shape(x), op).get_output(0)
    int_dtype = np_dtype(shape.dtype)
    rank = _rank(x)
    keep = np.ones(rank, dtype=int_dtype)
    put = np.zeros(rank, dtype=int_dtype)
    for axis, size in sizes.items():
        keep[axis], put[axis] = 0, size
    kept = mul(shape, net.constant(keep, dtype=int_dtype, op=f"{op}/keep"), op=f"{op}/mul")
    return add(kept, net.constant(put, dtype=int_dtype, op=f"{op}/size"), op=f"{op}/add")


def split(x: Any, split_size_or_sections: int | Sequence[int], dim: int = 1, op: str | None = "split") -> list[Any]:
    """torch.split: equal chunks of `split_size` (last one smaller) or explicit section sizes."""
    size = int(tuple(x.shape)[_axis(dim, _rank(x), f"{current().path}/split")])
    if isinstance(split_size_or_sections, int):
        n = split_size_or_sections
        sections = [min(n, size - s) for s in range(0, size, n)]
    else:
        sections = [int(s) for s in split_size_or_sections]
    if sum(sections) != size:
        raise ValueError(f"{current().path}/split: sections {sections} do not add up to dim {dim} size {size}")
    out, begin = [], 0
    for i, n in enumerate(sections):
        out.append(slice(x, dim, begin, begin + n, op=_join(op, str(i))))
        begin += n
    return out
