"""BatchNorm folding: a convolution and the norm after it are paired when the module tree is known.

Pairs are found by `declare_folds(root)`, which `Module.assign_paths` (and so `load_weights`) runs on every tree:
  (a) inside a Sequential, a conv-like module immediately followed by a BatchNorm2d;
  (b) sibling attributes `convX` and `bnX` with the same suffix (`conv1`/`bn1`, `conv`/`bn`): torchvision and
      HRNet blocks, Darknet layers;
  (c) declared: `fold(conv, norm)` pairs any two modules, `no_fold(norm)` keeps a norm a scale layer; the
      rules never override a declaration.
A paired conv emits kernel * scale and bias * scale + shift (the product in FP32, rounded to the compute
dtype once). Its norm adds no layer: it checks that it receives that conv's output and names the tensor after
its own path, so verification compares the norm's output (the conv's path is no comparison point).
A forward must apply the norm to the conv's output and use the raw conv output nowhere else (a use before the
norm is an error; declare `no_fold(norm)` for such a forward).

Conv-like modules join by subclassing `ConvLike` and writing `fold_norm` for their weight layout.
"""
from __future__ import annotations

from typing import Any

import weakref

import numpy as np

from netdef.module import Module, Sequential, WeightsError, tree_hooks
from netdef.network import Network, current

# A pair is kept as conv._norm (the norm) and norm._fold (a weak reference to the conv, or None): the module
# tree owns both, and no reference cycle keeps a dropped tree (and its weights) alive until a GC pass.


class ConvLike(Module):
    """A module whose output channels can absorb a following per-channel affine y * scale + shift."""

    out_channels: int

    def fold_norm(self, weight: np.ndarray, bias: np.ndarray | None, scale: np.ndarray,
                  shift: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(weight, bias) that compute norm(conv(x)); scale/shift are per output channel, float64. Take the
        kernel product in FP32 (it is rounded to the compute dtype once, afterwards). Conv2d scales axis 0 of
        (out, in/groups, kh, kw); a ConvTranspose2d's (in, out/groups, kh, kw) kernel viewed as
        (groups, in/groups, out/groups, kh, kw) takes scale.reshape(groups, 1, out/groups, 1, 1)."""
        raise NotImplementedError(f"{type(self).__name__}.fold_norm")

    @property
    def norm(self) -> Any:
        """The BatchNorm2d folded into this module's output, or None."""
        return self.__dict__.get("_norm")

    def records_output(self) -> bool:
        return self.norm is None  # folded: the norm's path names the output

    def weights_with_norm(self, weight: np.ndarray, bias: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None]:
        """The parameters to emit: as loaded, or with the paired norm folded in and rounded to the compute dtype
        once (emitting them costs no second conversion), checked to stay finite there (FP16 can overflow)."""
        norm = self.norm
        if norm is None:
            return weight, bias
        scale, shift = norm.scale_shift()
        dtype = np.dtype(current().compute_dtype)
        folded = [np.asarray(v) for v in self.fold_norm(weight, bias, scale, shift)]
        # rounds to inf from here on (max + half an ulp); max/min of the wide values are fast, FP16 reductions are not
        info = np.finfo(dtype)
        limit = float(info.max) + 2.0 ** (info.maxexp - info.nmant - 2)
        for name, value in zip(("weight", "bias"), folded):
            top = max(float(value.max()), -float(value.min()))  # NaN propagates to the test below
            if not top < limit:
                with np.errstate(over="ignore", invalid="ignore"):
                    bad = int((~np.isfinite(value.astype(dtype))).sum())
                origin = self.__dict__.get("_origin", "weights")
                raise WeightsError(f"{origin}: {self.path}.{name} folded with {norm.path} has {bad} non-finite "
                                   f"values in {dtype.name} (check {norm.path}.running_var and .weight)")
        return folded[0].astype(dtype, copy=False), folded[1].astype(dtype, copy=False)

    def hand_to_norm(self, y: Any) -> Any:
        """After emitting: when folded, the output awaits the norm (Network.__exit__ reports it if it never comes)."""
        norm = self.norm
        if norm is not None:
            net = current()
            net.pending_folds[y.name] = (self.path, norm.path, net.definition.num_layers - 1)
        return y


def take_folded(net: Network, x: Any, norm: Module) -> None:
    """The norm's side: `x` must be its conv's pending output, not yet read by any other layer."""
    conv = folded_into(norm)
    pending = net.pending_folds.get(x.name)
    if pending is None or pending[1] != norm.path:
        raise ValueError(f"{norm.path}: folded into {conv.path} (a conv+norm pair), but its input {x.name!r} is not "
                         f"{conv.path}'s output: call it as {norm.path}({conv.path}(x)), or declare "
                         f"netdef.nn.no_fold(...) for this norm")
    conv_path, _, index = net.pending_folds.pop(x.name)
    definition = net.definition
    for i in range(index + 1, definition.num_layers):  # usually none: the norm directly follows its conv
        layer = definition.get_layer(i)
        if any(layer.get_input(k) is not None and layer.get_input(k).name == x.name for k in range(layer.num_inputs)):
            raise ValueError(f"{norm.path}: layer {layer.name!r} reads {conv_path}'s output before {norm.path} does, "
                             f"but {conv_path} emits conv+norm folded; declare netdef.nn.no_fold(...) for this norm "
                             "when a forward needs the raw conv output")


def fold(conv: ConvLike, norm: Module) -> None:
    """Declare that `norm` (a BatchNorm2d) folds into `conv` (rule c: any pair the naming rules miss)."""
    if not isinstance(conv, ConvLike) or not hasattr(norm, "scale_shift"):
        raise TypeError(f"fold(conv, norm): expected a conv-like module and a BatchNorm2d, got "
                        f"{type(conv).__name__} and {type(norm).__name__}")
    if conv.out_channels != norm.num_features:
        raise ValueError(f"fold: {type(conv).__name__} has {conv.out_channels} output channels, the norm "
                         f"{norm.num_features} features")
    _pair(conv, norm, declared=True)


def no_fold(norm: Module) -> None:
    """Declare that `norm` stays a scale layer (its conv's raw output is used elsewhere)."""
    old = folded_into(norm)
    if old is not None:
        object.__setattr__(old, "_norm", None)
    object.__setattr__(norm, "_fold", None)
    object.__setattr__(norm, "_fold_declared", True)


def folded_into(norm: Module) -> ConvLike | None:
    """The conv a norm is folded into, or None."""
    ref = norm.__dict__.get("_fold")
    return ref() if ref is not None else None


def _pair(conv: ConvLike, norm: Module, declared: bool = False) -> None:
    if conv.norm is not None and conv.norm is not norm:
        object.__setattr__(conv.norm, "_fold", None)
    old_conv = folded_into(norm)
    if old_conv is not None and old_conv is not conv:
        object.__setattr__(old_conv, "_norm", None)
    object.__setattr__(conv, "_norm", norm)
    object.__setattr__(norm, "_fold", weakref.ref(conv))
    object.__setattr__(norm, "_fold_declared", declared)


def _free(conv: Any, norm: Any) -> bool:
    """Whether the rules may pair these two: a conv-like module and a norm of matching width, both undecided."""
    if not isinstance(conv, ConvLike) or not hasattr(norm, "scale_shift"):
        return False
    if norm.__dict__.get("_fold_declared") or (conv.norm is not None and conv.norm is not norm):
        return False
    return conv.out_channels == norm.num_features and folded_into(norm) in (None, conv)


def declare_folds(root: Module) -> None:
    """Pair every conv-like module with the norm after it by rules (a) and (b) (module docstring)."""
    for _, module in root.named_modules():
        if isinstance(module, Sequential):
            items = list(module)
            for conv, norm in zip(items, items[1:]):
                if _free(conv, norm):
                    _pair(conv, norm)
        children = dict(module.named_children())
        for name, norm in children.items():
            if name.startswith("bn"):
                conv = children.get("conv" + name[2:])
                if _free(conv, norm):
                    _pair(conv, norm)


tree_hooks.append(declare_folds)
