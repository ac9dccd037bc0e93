"""What every functional op shares: naming, operands, dtype checks, dimension arguments."""
from __future__ import annotations

from typing import Any, Iterable, Sequence

import numpy as np

from netdef.network import current, np_dtype

Operand = Any  # ITensor | float | int | bool | np.ndarray


def join(op: str | None, sub: str) -> str:
    """The name of a sub-layer of op `op` (`op/sub`; just `sub` when the op is named after the module)."""
    return f"{op}/{sub}" if op else sub


def site(op: str | None) -> str:
    """`<module path>/<op>` for error messages."""
    path = current().path or "network"
    return f"{path}/{op}" if op else path


def rank(x: Any) -> int:
    return len(tuple(x.shape))


def axis(dim: int, size: int, what: str) -> int:
    """A dim in 0..size-1 (negative dims count from the end)."""
    a = dim + size if dim < 0 else dim
    if not 0 <= a < size:
        raise ValueError(f"{what}: dim {dim} is out of range for a tensor of rank {size}")
    return a


def axes(dims: int | Iterable[int] | None, size: int, what: str) -> list[int]:
    """Sorted, distinct dims; None means every dim."""
    if dims is None:
        return list(range(size))
    dims = [dims] if isinstance(dims, (int, np.integer)) else list(dims)
    out = sorted({axis(int(d), size, what) for d in dims})
    if len(out) != len(dims):
        raise ValueError(f"{what}: dims {dims} name a dimension twice")
    return out


def out(layer: Any, op: str | None) -> Any:
    """Name `layer` `<module path>/<op>` (the path alone when op is None) and return its first output."""
    return current().name_layer(layer, op).get_output(0)


def is_tensor(value: Any) -> bool:
    return isinstance(value, current().trt.ITensor)


def kind(x: Any) -> str:
    """numpy's kind letter of a tensor's dtype: "f" floating, "i" integer, "b" bool, "u" unsigned."""
    return np_dtype(x.dtype).kind


def require(x: Any, kinds: str, op: str | None, role: str = "input") -> None:
    """A TypeError naming the op and tensor unless x's dtype is of one of `kinds` ("f", "i", "b")."""
    if kind(x) not in kinds:
        names = {"f": "floating", "i": "integer", "b": "bool", "u": "unsigned"}
        wanted = " or ".join(names[k] for k in kinds)
        raise TypeError(f"{site(op)}: {role} {x.name!r} is {np_dtype(x.dtype)}, expected a {wanted} tensor")


def same_dtype(tensors: Sequence[Any], op: str | None) -> None:
    if len({t.dtype for t in tensors}) > 1:
        raise TypeError(f"{site(op)}: operands differ in dtype ("
                        + ", ".join(f"{t.name!r} {np_dtype(t.dtype)}" for t in tensors)
                        + "); cast one first (F.cast)")


def constant_like(value: Operand, like: Any, op: str | None, dtype: Any = None) -> Any:
    """A tensor for `value`: tensors pass through; numbers/arrays become constants in `like`'s dtype (or `dtype`)
    with size-1 dims prepended up to `like`'s rank, so they broadcast."""
    if is_tensor(value):
        return value
    array = np.asarray(value, dtype=dtype if dtype is not None else np_dtype(like.dtype))
    r = rank(like)
    if array.ndim > r:
        raise ValueError(f"{site(op)}: constant of shape {array.shape} has more dims than tensor {like.name!r} "
                         f"{tuple(like.shape)}")
    array = array.reshape((1,) * (r - array.ndim) + array.shape)
    return current().constant(array, dtype=array.dtype, op=join(op, "const"))


def index_tensor(index: Any, op: str | None) -> Any:
    """Indices as an integer tensor: tensors are checked, arrays and lists become int32 constants."""
    if is_tensor(index):
        require(index, "i", op, "index")
        return index
    array = np.asarray(index)
    if array.dtype.kind not in "iu":
        raise TypeError(f"{site(op)}: index must be integers, got {array.dtype}")
    return current().constant(array.astype(np.int32), dtype=np.int32, op=join(op, "index"))


def broadcast_rank(tensors: Sequence[Any], op: str | None) -> list[Any]:
    """Tensors of different rank broadcast like numpy: size-1 dims are prepended to the lower-rank ones."""
    from netdef.functional.shape import reshape

    top = max(rank(t) for t in tensors)
    return [t if rank(t) == top else reshape(t, (1,) * (top - rank(t)) + tuple(t.shape), op=join(op, f"broadcast{i}"))
            for i, t in enumerate(tensors)]


def pair(v: int | Sequence[int], what: str = "value") -> tuple[int, int]:
    """torch.nn's int-or-pair arguments (kernel_size, stride, ...) as a pair."""
    if isinstance(v, (int, np.integer)):
        return (int(v), int(v))
    values = tuple(int(x) for x in v)
    if len(values) != 2:
        raise ValueError(f"{what}: expected an int or a pair, got {v!r}")
    return values  # type: ignore[return-value]


def padding_pairs(padding: Any, what: str) -> tuple[tuple[int, int], tuple[int, int]]:
    """Spatial padding as ((top, bottom), (left, right)) from p, (ph, pw) or ((top, bottom), (left, right))."""
    if isinstance(padding, (int, np.integer)):
        p = int(padding)
        return (p, p), (p, p)
    items = list(padding)
    if len(items) == 2 and all(isinstance(i, (int, np.integer)) for i in items):
        return (int(items[0]),) * 2, (int(items[1]),) * 2  # type: ignore[return-value]
    if len(items) == 2 and all(not isinstance(i, (int, np.integer)) and len(list(i)) == 2 for i in items):
        (t, b), (left, r) = (tuple(int(v) for v in i) for i in items)
        return (t, b), (left, r)
    raise ValueError(f"{what}: padding {padding!r}: expected p, (ph, pw) or ((top, bottom), (left, right))")
