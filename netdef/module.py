"""A module tree that mirrors torch.nn: named children and parameters, loading by dotted name.

A netdef network class has the same attribute names as its PyTorch reference, so
`layer1.0.conv1.weight` in the state dict, in the HDF5 file and here are one name.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Any, Callable, Iterable, Iterator, Mapping

import numpy as np

from netdef.network import current


class WeightsError(ValueError):
    """Missing, unexpected, mis-shaped, wrongly typed or non-finite weights, all listed in one message."""


# Run on the root whenever a tree's paths are assigned (so before any forward): netdef.nn.fold pairs each
# convolution with the norm after it there.
tree_hooks: list[Callable[["Module"], None]] = []


class Parameter:
    """A named tensor the module reads from the weights file (shape checked at load)."""

    def __init__(self, *shape: int, dtype: Any = np.float32, required: bool = True) -> None:
        self.shape = tuple(int(s) for s in shape)
        self.dtype = np.dtype(dtype)
        self.required = required
        self.value: np.ndarray | None = None

    @property
    def data(self) -> np.ndarray:
        if self.value is None:
            raise RuntimeError("parameter has no value: load weights first (Module.load_weights)")
        return self.value

    def __repr__(self) -> str:
        return f"Parameter{self.shape}"


class Module:
    """Base class: assign Modules and Parameters as attributes, write `forward` with netdef ops."""

    # Entries of a PyTorch state dict that carry no information for inference.
    ignored_keys: tuple[str, ...] = ("num_batches_tracked",)

    def __init__(self) -> None:
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_path", "")

    def __setattr__(self, name: str, value: Any) -> None:
        if "_modules" not in self.__dict__:
            raise RuntimeError(f"{type(self).__name__}.__init__ must call super().__init__() first")
        self._modules.pop(name, None)
        self._parameters.pop(name, None)
        if isinstance(value, Module):
            self._modules[name] = value
        elif isinstance(value, Parameter):
            self._parameters[name] = value
        object.__setattr__(self, name, value)

    def add_module(self, name: str, module: "Module | None") -> None:
        setattr(self, name, module)

    # --- tree ------------------------------------------------------------------------------------------
    def named_children(self) -> Iterator[tuple[str, "Module"]]:
        return iter(self._modules.items())

    def children(self) -> Iterator["Module"]:
        return iter(self._modules.values())

    def named_modules(self, prefix: str = "") -> Iterator[tuple[str, "Module"]]:
        yield prefix, self
        for name, child in self._modules.items():
            yield from child.named_modules(f"{prefix}.{name}" if prefix else name)

    def named_parameters(self, prefix: str = "") -> Iterator[tuple[str, Parameter]]:
        for path, module in self.named_modules(prefix):
            for name, p in module._parameters.items():
                yield (f"{path}.{name}" if path else name), p

    def assign_paths(self, prefix: str = "") -> "Module":
        """Give every module its dotted path (the root's is `prefix`, usually empty), then run `tree_hooks`."""
        for path, module in self.named_modules(prefix):
            object.__setattr__(module, "_path", path)
        for hook in tree_hooks:
            hook(self)
        return self

    @property
    def path(self) -> str:
        return self._path

    # --- weights ---------------------------------------------------------------------------------------
    def load_weights(self, source: Mapping[str, Any], origin: str = "weights", strict: bool = True) -> "Module":
        """Read every parameter by dotted name from `source` (a mapping, e.g. weights_export's file).

        Every problem is collected and reported together: missing, unexpected (when strict),
        mis-shaped, non-float where float is expected, NaN/Inf.
        """
        self.assign_paths()
        expected = dict(self.named_parameters())
        keys = set(source.keys())
        problems: list[str] = []
        for name, p in expected.items():
            if name not in keys:
                if p.required:
                    problems.append(f"missing: {name} (expected shape {p.shape})")
                continue
            value = np.asarray(source[name])
            if tuple(value.shape) != p.shape:
                problems.append(f"shape mismatch: {name} is {tuple(value.shape)}, expected {p.shape}")
                continue
            if p.dtype.kind == "f" and value.dtype.kind != "f":
                problems.append(f"wrong dtype: {name} is {value.dtype}, expected a floating type")
                continue
            if value.dtype.kind == "f" and not np.isfinite(value).all():
                bad = int((~np.isfinite(value)).sum())
                problems.append(f"non-finite values: {name} has {bad} NaN/Inf of {value.size}")
                continue
            p.value = value.astype(p.dtype, copy=False)
        if not problems:  # values each module checks itself (a BatchNorm's variance)
            for _, module in self.named_modules():
                object.__setattr__(module, "_origin", origin)
                problems += module.check_loaded()
        if strict:
            for key in sorted(keys - set(expected)):
                if key.rsplit(".", 1)[-1] not in self.ignored_keys:
                    problems.append(f"unexpected: {key} (no such parameter in {type(self).__name__})")
        if problems:
            raise WeightsError(f"{origin}: {len(problems)} problem(s) loading {type(self).__name__}:\n  "
                               + "\n  ".join(problems))
        return self

    def check_loaded(self) -> list[str]:
        """Problems with this module's loaded values that shapes and dtypes do not show (override; one line each,
        naming the tensor by its dotted path)."""
        return []

    # --- forward -----------------------------------------------------------------------------------
    def forward(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError(f"{type(self).__name__}.forward")

    def records_output(self) -> bool:
        """Whether this module's output is named after its path and compared in verification (a conv folded
        with its norm says no: the norm's path names that tensor)."""
        return True

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        net = current()
        with net.module_scope(self._path):
            out = self.forward(*args, **kwargs)
        if self._path and out is not None and not isinstance(out, (tuple, list, dict)) and self.records_output():
            net.record_module_output(self._path, out)
        return out


class ModuleList(Module):
    """A list of modules indexed like torch.nn.ModuleList; a None entry keeps its index (HRNet's fuse layers).
    A child added by name (`add_module`, as torch's Sequential is often built) takes the next index."""

    def __init__(self, modules: Iterable["Module | None"] = ()) -> None:
        super().__init__()
        object.__setattr__(self, "_names", [])  # the children's names in index order
        for m in modules:
            self.append(m)

    def append(self, module: "Module | None") -> None:
        self.add_module(str(len(self._names)), module)

    def add_module(self, name: str, module: "Module | None") -> None:
        if name not in self._names:
            self._names.append(name)
        super().add_module(name, module)

    def __getitem__(self, i: int) -> "Module | None":
        if not -len(self._names) <= i < len(self._names):
            raise IndexError(f"ModuleList index {i} out of range (length {len(self._names)})")
        return getattr(self, self._names[i])

    def __len__(self) -> int:
        return len(self._names)

    def __iter__(self) -> Iterator["Module | None"]:
        return (getattr(self, name) for name in self._names)


class Sequential(ModuleList):
    """Children `0`, `1`, ... applied in order (a ModuleList with a forward)."""

    def __init__(self, *modules: Module) -> None:
        super().__init__(modules)

    def forward(self, x: Any) -> Any:
        for m in self:
            x = m(x)
        return x
