"""netdef.functional's ops against torch in float64 (through netdef's executor), their checks, names and engines.

Float outputs are compared by relative error (fp32 and fp16 networks); bool and integer outputs exactly, on
inputs chosen so FP16 rounding cannot flip them (comparisons against 0, distinct values for indices).
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np
import pytest
import torch
import torch.nn.functional as TF

import netdef.functional as F
from netdef.engine import BuildSettings
from netdef.executor import execute
from netdef.network import Network
from tests.test_layers import TOLERANCE, rel_err

torch.set_num_threads(2)
I32 = np.dtype(np.int32)


def define(fn: Callable[..., Any], shapes: list[tuple[int, ...]], precision: str) -> tuple[Network, int]:
    """Inputs `input`, `input1`, ... with a dynamic batch; outputs `out0`, `out1`, ... (fn's tensors)."""
    with Network("functional", precision) as net:
        xs = [net.add_input("input" if i == 0 else f"input{i}", (-1,) + tuple(s[1:])) for i, s in enumerate(shapes)]
        outs = fn(*xs)
        outs = outs if isinstance(outs, (tuple, list)) else (outs,)
        for i, t in enumerate(outs):
            net.mark_output(t, f"out{i}")
    return net, len(outs)


def run(net: Network, count: int, arrays: list[np.ndarray]) -> list[torch.Tensor]:
    names = [net.definition.get_input(i).name for i in range(net.definition.num_inputs)]
    result = execute(net.definition, dict(zip(names, arrays)), dtype=torch.float64)
    return [result[f"out{i}"] for i in range(count)]


def pad_then(pool: Callable[..., torch.Tensor], pads: tuple[int, ...], value: float) -> Callable[..., torch.Tensor]:
    return lambda a: pool(TF.pad(a, pads, value=value))


KERNEL = np.random.default_rng(7).standard_normal((6, 1, 3, 3)).astype(np.float32)  # depthwise, 6 channels
BIAS = np.linspace(-1, 1, 6).astype(np.float32)
COLUMNS = np.array([[0, 8], [3, 3], [7, 1]])

# (id, torch fn, netdef fn, input shapes); `exact` outputs are compared for equality
CASES: list[tuple[str, Callable[..., Any], Callable[..., Any], list[tuple[int, ...]]]] = [
    ("interpolate_bilinear_scale", lambda a: TF.interpolate(a, scale_factor=2, mode="bilinear"),
     lambda a: F.interpolate(a, scale_factor=2, mode="bilinear"), [(2, 3, 5, 7)]),
    ("interpolate_bilinear_size_align", lambda a: TF.interpolate(a, size=(9, 4), mode="bilinear", align_corners=True),
     lambda a: F.interpolate(a, size=(9, 4), mode="bilinear", align_corners=True), [(2, 3, 5, 7)]),
    ("interpolate_bicubic_size", lambda a: TF.interpolate(a, size=(11, 5), mode="bicubic"),
     lambda a: F.interpolate(a, size=(11, 5), mode="bicubic"), [(2, 3, 5, 7)]),
    ("interpolate_bicubic_scale_align", lambda a: TF.interpolate(a, scale_factor=(1.5, 2.5), mode="bicubic",
                                                                 align_corners=True),
     lambda a: F.interpolate(a, scale_factor=(1.5, 2.5), mode="bicubic", align_corners=True), [(2, 3, 6, 4)]),
    ("interpolate_nearest_exact", lambda a: TF.interpolate(a, size=(12, 5), mode="nearest-exact"),
     lambda a: F.interpolate(a, size=(12, 5), mode="nearest-exact"), [(2, 3, 5, 7)]),
    ("interpolate_nearest_down", lambda a: TF.interpolate(a, size=(3, 4), mode="nearest"),
     lambda a: F.interpolate(a, size=(3, 4)), [(2, 3, 5, 7)]),
    ("pad_constant", lambda a: TF.pad(a, (2, 1, 0, 3), value=0.5), lambda a: F.pad(a, (2, 1, 0, 3), value=0.5),
     [(2, 3, 5, 7)]),
    ("pad_reflect", lambda a: TF.pad(a, (2, 1, 3, 0), mode="reflect"),
     lambda a: F.pad(a, (2, 1, 3, 0), mode="reflect"), [(2, 3, 5, 7)]),
    ("pad_replicate", lambda a: TF.pad(a, (0, 4, 2, 2), mode="replicate"),
     lambda a: F.pad(a, (0, 4, 2, 2), mode="replicate"), [(2, 3, 5, 7)]),
    ("pad_circular", lambda a: TF.pad(a, (3, 1, 1, 2), mode="circular"),
     lambda a: F.pad(a, (3, 1, 1, 2), mode="circular"), [(2, 3, 5, 7)]),
    ("pad_crops_with_negative", lambda a: TF.pad(a, (-1, 2, 1, -2)), lambda a: F.pad(a, (-1, 2, 1, -2)),
     [(2, 3, 5, 7)]),
    ("max_pool_asymmetric", pad_then(lambda a: TF.max_pool2d(a, 3, 2), (0, 1, 1, 2), float("-inf")),
     lambda a: F.max_pool2d(a, 3, 2, ((1, 2), (0, 1))), [(2, 3, 8, 9)]),
    ("avg_pool_asymmetric", pad_then(lambda a: TF.avg_pool2d(a, (2, 3), 1), (1, 0, 0, 1), 0.0),
     lambda a: F.avg_pool2d(a, (2, 3), 1, ((0, 1), (1, 0))), [(2, 3, 6, 7)]),
    ("avg_pool_exclude_pad", lambda a: TF.avg_pool2d(a, 3, 2, 1, count_include_pad=False),
     lambda a: F.avg_pool2d(a, 3, 2, 1, count_include_pad=False), [(2, 3, 7, 7)]),
    ("conv2d_depthwise_constant", lambda a: TF.conv2d(TF.pad(a, (2, 0, 1, 1)), torch.from_numpy(KERNEL).double(),
                                                      torch.from_numpy(BIAS).double(), groups=6),
     lambda a: F.conv2d(a, KERNEL, BIAS, padding=((1, 1), (2, 0)), groups=6), [(2, 6, 7, 8)]),
    ("conv2d_strided_dilated", lambda a: TF.conv2d(a, torch.from_numpy(KERNEL[:4]).double().repeat(1, 2, 1, 1),
                                                   stride=2, padding=2, dilation=2),
     lambda a: F.conv2d(a, np.tile(KERNEL[:4], (1, 2, 1, 1)), stride=2, padding=2, dilation=2), [(2, 2, 9, 9)]),
    ("sum_keepdim", lambda a: a.sum((1, 3), keepdim=True), lambda a: F.sum(a, (1, 3), keepdim=True), [(2, 3, 4, 5)]),
    ("mean_last", lambda a: a.mean(-1), lambda a: F.mean(a, -1), [(2, 3, 4, 5)]),
    ("amax_amin", lambda a: a.amax(3) - a.amin((2, 3), keepdim=True).squeeze(-1),
     lambda a: F.sub(F.amax(a, 3), F.reshape(F.amin(a, (2, 3), keepdim=True), (0, 3, 1))), [(2, 3, 4, 5)]),
    ("where_gt_scalar", lambda a: torch.where(a > 0, a, -0.25 * a), lambda a: F.where(F.gt(a, 0.0), a, a * -0.25),
     [(2, 3, 4, 5)]),
    ("where_le_tensors", lambda a, b: torch.where(a <= 0, b, a), lambda a, b: F.where(F.le(a, 0.0), b, a),
     [(2, 3, 4, 5), (2, 3, 4, 5)]),
    ("index_select_2d_index", lambda a: a[:, :, :, COLUMNS], lambda a: F.index_select(a, 3, COLUMNS),
     [(2, 3, 4, 9)]),
    ("topk_values_then_gather", lambda a: torch.gather(a, 2, torch.topk(a, 3, 2).indices) * 2,
     lambda a: F.gather(a, 2, F.topk(a, 3, 2)[1]) * 2.0, [(2, 3, 6, 4)]),
    ("topk_smallest_values", lambda a: torch.topk(a, 2, -1, largest=False).values,
     lambda a: F.topk(a, 2, -1, largest=False)[0], [(2, 3, 5)]),
    ("operators", lambda a, b: -(2.0 * a + 1.0) / (b * b + 1.0) - a / 4,
     lambda a, b: -(2.0 * a + 1.0) / (b * b + 1.0) - a / 4, [(2, 3, 4), (2, 3, 4)]),
    ("unary_math", lambda a: torch.sqrt(a.abs() + 1).log() + torch.pow(a.abs(), 1.5) + a.clamp(-0.5, 0.7),
     lambda a: F.log(F.sqrt(F.abs(a) + 1.0)) + F.pow(F.abs(a), 1.5) + F.clamp(a, -0.5, 0.7), [(2, 3, 4)]),
    ("arange_like_batch_float", lambda a: a + torch.arange(a.shape[0], dtype=a.dtype).reshape(-1, 1, 1),
     lambda a: a + F.reshape(F.cast(F.arange_like(a, 0), a.dtype), (-1, 1, 1)), [(3, 2, 4)]),
]

# comparisons, logic and indices: (id, torch fn, netdef fn, shapes), compared exactly
EXACT_CASES: list[tuple[str, Callable[..., Any], Callable[..., Any], list[tuple[int, ...]]]] = [
    ("compare_logic", lambda a, b: (((a > 0) & (b < 0)) | ~(a >= 0)) ^ (b <= 0) | (a == 0),
     lambda a, b: F.logical_or(F.logical_xor(F.logical_or(F.logical_and(F.gt(a, 0.0), F.lt(b, 0.0)),
                                                          F.logical_not(F.ge(a, 0.0))), F.le(b, 0.0)), F.eq(a, 0.0)),
     [(2, 3, 4), (2, 3, 4)]),
    ("arange_like_dynamic_batch", lambda a: torch.arange(a.shape[0], dtype=torch.int32),
     lambda a: F.arange_like(a, 0), [(5, 2)]),
    ("arange_like_static_dim", lambda a: torch.arange(a.shape[1], dtype=torch.int32) * 3 + 1,
     lambda a: F.arange_like(a, 1) * 3 + 1, [(2, 7)]),
    ("topk_indices", lambda a: torch.topk(a, 3, 1).indices.int(), lambda a: F.topk(a, 3, 1)[1], [(2, 9, 2)]),
    ("int_sum_max", lambda a: (a > 0).int().sum(1, dtype=torch.int32) + (a > 0).int().amax(1),
     lambda a: F.sum(F.cast(F.gt(a, 0.0), I32), 1) + F.amax(F.cast(F.gt(a, 0.0), I32), 1), [(2, 6, 3)]),
]


def _inputs(name: str, shapes: list[tuple[int, ...]]) -> list[np.ndarray]:
    rng = np.random.default_rng(sum(map(ord, name)))
    return [rng.permutation(np.prod(s)).reshape(s).astype(np.float32) / np.prod(s) * 6 - 3 for s in shapes]


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_op_matches_torch(case: tuple, precision: str) -> None:
    name, torch_fn, netdef_fn, shapes = case
    xs = _inputs(name, shapes)  # distinct values: top-k and max pick one element, in FP16 too
    net, count = define(netdef_fn, shapes, precision)
    (actual,) = run(net, count, xs)
    expected = torch_fn(*[torch.from_numpy(x).double() for x in xs])
    err = rel_err(actual, expected)
    assert err <= TOLERANCE[precision], f"{name} {precision}: relative error {err:.2e}"


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
@pytest.mark.parametrize("case", EXACT_CASES, ids=[c[0] for c in EXACT_CASES])
def test_exact_op_matches_torch(case: tuple, precision: str) -> None:
    name, torch_fn, netdef_fn, shapes = case
    xs = _inputs(name, shapes)
    xs = [np.where(np.abs(x) < 0.2, 0.0, x).astype(np.float32) for x in xs]  # exact zeros for eq, far from 0 else
    net, count = define(netdef_fn, shapes, precision)
    (actual,) = run(net, count, xs)
    expected = torch_fn(*[torch.from_numpy(x).double() for x in xs])
    assert actual.dtype == expected.dtype and torch.equal(actual, expected), f"{name} {precision}"


def test_every_new_op_builds_into_an_engine() -> None:
    def forward(x: Any) -> tuple[Any, ...]:
        up = F.interpolate(F.interpolate(x, scale_factor=2, mode="bilinear"), size=(12, 14), mode="bicubic")
        padded = F.pad(F.pad(up, (1, 1, 2, 0), mode="reflect"), (1, 0, 0, 1), value=-1.0)
        pooled = F.avg_pool2d(F.max_pool2d(padded, 3, 2, ((1, 0), (0, 1))), 2, 1, ((0, 1), (1, 0)))
        smooth = F.conv2d(pooled, KERNEL, padding=1, groups=6)
        flat = F.reshape(smooth, (0, 6, -1))
        values, index = F.topk(flat, 4, 2)
        picked = F.gather(flat, 2, index) + F.index_select(flat, 2, np.array([0, 3, 1, 2]))
        kept = F.where(F.logical_and(F.gt(values, 0.0), F.le(picked, 2.0)), picked, F.amax(flat, 2, keepdim=True))
        batch = F.arange_like(x, 0)
        return F.sum(kept, 2) - F.mean(values, 2) + F.amin(picked, 2), F.cast(batch, np.float32)

    for precision in ("fp32", "fp16"):
        net, _ = define(forward, [(1, 6, 5, 6)], precision)
        plan = net.build(BuildSettings(precision=precision, batch=(1, 2, 4), progress=False))
        assert len(plan.data) > 10_000 and [o["name"] for o in plan.meta["outputs"]] == ["out0", "out1"]


def test_ops_are_named_after_the_module_path() -> None:
    import netdef.nn as nn

    class Head(nn.Module):
        def forward(self, x: Any) -> Any:
            values, _ = F.topk(x, 2, 1)
            return F.where(F.gt(values, 0.0), values * 2.0, 0.0)

    root = nn.Sequential(Head())
    root.assign_paths()
    with Network("names") as net:
        net.mark_output(root(net.add_input("input", (-1, 5))), "out")
    names = [net.definition.get_layer(i).name for i in range(net.definition.num_layers)]
    assert {"0/topk", "0/gt", "0/mul", "0/where"} <= set(names), names


@pytest.mark.parametrize("fn,error,match", [
    (lambda x, i: F.add(x, i), TypeError, r"net/add: operands differ in dtype \('input' float32, 'index' int32\)"),
    (lambda x, i: F.where(x, x, 0.0), TypeError, r"net/where: condition 'input' is float32, expected a bool"),
    (lambda x, i: F.logical_and(x, x), TypeError, r"net/and: operand 'input' is float32, expected a bool"),
    (lambda x, i: F.sum(F.gt(x, 0.0), 1), TypeError, r"net/sum: input 'net/gt' is bool"),
    (lambda x, i: F.gather(x, 1, x), TypeError, r"net/gather: index 'input' is float32, expected a integer"),
    (lambda x, i: F.topk(x, 9, 1), ValueError, r"net/topk: k=9 must be in 1\.\.8"),
    (lambda x, i: F.pad(x, (8, 0), mode="reflect"), ValueError, r"reflect padding \(8, 0\) of dim 1 must be smaller"),
    (lambda x, i: F.pad(x, (0, 0, 1, 1)), ValueError, r"dimension 0 of tensor 'input' .* is dynamic"),
    (lambda x, i: F.interpolate(F.reshape(x, (0, 2, 2, 2)), scale_factor=2, align_corners=True), ValueError,
     r"align_corners only applies to bilinear and bicubic"),
    (lambda x, i: F.conv2d(F.reshape(x, (0, 2, 2, 2)), KERNEL), ValueError, r"expected N,1,H,W"),
])
def test_ops_check_their_inputs(fn: Callable[..., Any], error: type, match: str) -> None:
    import netdef.nn as nn

    class Net(nn.Module):
        def forward(self, x: Any, i: Any) -> Any:
            return fn(x, i)

    root = nn.Sequential()
    root.net = Net()
    root.assign_paths()
    with Network("checks") as net:
        x = net.add_input("input", (-1, 8))
        i = net.add_input("index", (-1, 8), dtype=np.int32)
        with pytest.raises(error, match=match):
            root.net(x, i)
