"""A custom layer described once: identity, typed fields, shape/dtype inference, the math, a native form.

A description is a `CustomLayer` subclass; one instance of it (kept by the registry) serves every layer
of that kind, and the per-layer attributes travel separately as `Fields`. The same description gives
the torch reference (executor, verification), the native decomposition and the TensorRT plugin.
"""
from __future__ import annotations

import typing
from typing import Any, Iterator, Mapping, Sequence

import numpy as np

REQUIRED: Any = object()  # Field default meaning "the layer must give a value"
_SCALARS = (int, float, bool, str)


class CustomLayerError(ValueError):
    """A custom layer used wrongly: unknown/missing/mistyped field, no lowering available, ..."""


class Field:
    """One attribute of a custom layer: `int`, `float`, `bool`, `str`, `list[int]` or `list[float]`."""

    def __init__(self, kind: Any, default: Any = REQUIRED, doc: str = "") -> None:
        if kind in _SCALARS:
            self.kind, self.item = kind, None
        elif typing.get_origin(kind) in (list, tuple) and typing.get_args(kind)[:1] in ((int,), (float,)):
            self.kind, self.item = list, typing.get_args(kind)[0]
        else:
            raise TypeError(f"Field kind {kind!r}: expected int, float, bool, str, list[int] or list[float]")
        self.name = ""  # set by CustomLayer.__init_subclass__
        self.doc = doc
        self.default = default if default is REQUIRED else self.coerce(default, "default")

    @property
    def required(self) -> bool:
        return self.default is REQUIRED

    @property
    def type_name(self) -> str:
        return f"list[{self.item.__name__}]" if self.kind is list else self.kind.__name__

    def coerce(self, value: Any, where: str) -> Any:
        """The value in canonical form (lists become tuples) or a CustomLayerError saying what is wrong."""
        if self.kind is list:
            if isinstance(value, (str, bytes)) or not isinstance(value, (Sequence, np.ndarray)):
                raise CustomLayerError(f"{where}: field {self.name!r} expects {self.type_name}, got {value!r}")
            return tuple(self._scalar(v, self.item, where) for v in value)
        return self._scalar(value, self.kind, where)

    def _scalar(self, value: Any, kind: type, where: str) -> Any:
        if isinstance(value, np.generic):
            value = value.item()
        ok = {
            bool: isinstance(value, bool),
            int: isinstance(value, int) and not isinstance(value, bool),
            float: isinstance(value, (int, float)) and not isinstance(value, bool),
            str: isinstance(value, str),
        }[kind]
        if not ok:
            raise CustomLayerError(f"{where}: field {self.name!r} expects {self.type_name}, got {value!r}")
        return kind(value)

    def __repr__(self) -> str:
        default = "required" if self.required else repr(self.default)
        return f"Field({self.type_name}, {default})"


class Fields(Mapping[str, Any]):
    """The validated field values of one layer; read as `fields.stride` or `fields["stride"]`."""

    def __init__(self, values: Mapping[str, Any]) -> None:
        self._values = dict(values)

    def __getattr__(self, name: str) -> Any:
        try:
            return self.__dict__["_values"][name]
        except KeyError:
            raise AttributeError(name) from None

    def __getitem__(self, key: str) -> Any:
        return self._values[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def to_json(self) -> dict[str, Any]:
        """Plain JSON values (tuples as lists), as they go into the engine sidecar."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in self._values.items()}

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Mapping) and dict(self) == dict(other)

    def __repr__(self) -> str:
        return f"Fields({self._values!r})"


class CustomLayer:
    """Base class of custom-layer descriptions. Subclass it, declare `Field`s, write `reference`.

    Class attributes: `namespace` ("netdef"), `name` (default: the class name), `version` ("1"),
    `num_outputs` (1). Override `output_shapes`/`output_dtypes` when outputs differ from input 0,
    and `native` to give a decomposition into standard TensorRT layers.
    """

    namespace: str = "netdef"
    name: str = ""
    version: str = "1"
    num_outputs: int = 1
    fields: dict[str, Field] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "name" not in cls.__dict__:
            cls.name = cls.__name__
        declared = dict(getattr(cls, "fields", {}))
        for attr, value in list(cls.__dict__.items()):
            if isinstance(value, Field):
                value.name = attr
                declared[attr] = value
        cls.fields = declared

    # --- identity ------------------------------------------------------------------------------------
    @property
    def key(self) -> tuple[str, str, str]:
        return (self.namespace, self.name, str(self.version))

    @property
    def qualified_name(self) -> str:
        return f"{self.namespace}::{self.name} v{self.version}"

    @property
    def has_native(self) -> bool:
        return type(self).native is not CustomLayer.native

    def make_fields(self, values: Mapping[str, Any] | None = None, where: str = "") -> Fields:
        """Validate field values: unknown and missing names and wrong types are reported together."""
        values = dict(values or {})
        where = where or self.qualified_name
        problems = [f"unknown field {k!r}" for k in values if k not in self.fields]
        out: dict[str, Any] = {}
        for name, field in self.fields.items():
            if name in values:
                try:
                    out[name] = field.coerce(values[name], where)
                except CustomLayerError as exc:
                    problems.append(str(exc).split(": ", 1)[-1])
            elif field.required:
                problems.append(f"missing field {name!r} ({field.type_name})")
            else:
                out[name] = field.default
        if problems:
            declared = ", ".join(f"{n}: {f!r}" for n, f in self.fields.items()) or "none"
            raise CustomLayerError(f"{where}: {'; '.join(problems)} (declared fields: {declared})")
        self.check_fields(Fields(out), where)
        return Fields(out)

    def check_fields(self, fields: Fields, where: str) -> None:
        """Cross-field checks (override and raise CustomLayerError); types are already checked."""

    # --- inference -----------------------------------------------------------------------------------
    def output_shapes(self, shapes: list[tuple[Any, ...]], fields: Fields) -> list[tuple[Any, ...]]:
        """Output shapes from input shapes. Write plain arithmetic (+, -, *, //): the same code runs on
        ints and on TensorRT's symbolic dimensions (`v3_adapter.SymbolicDim`). Default: like input 0."""
        return [tuple(shapes[0])] * self.num_outputs

    def output_dtypes(self, dtypes: list[np.dtype], fields: Fields) -> list[np.dtype]:
        """Output numpy dtypes from input dtypes. Default: input 0's dtype for every output."""
        return [np.dtype(dtypes[0])] * self.num_outputs

    # --- the three lowerings -------------------------------------------------------------------------
    def reference(self, fields: Fields, *inputs: Any) -> Any:
        """The math on torch tensors (any float dtype, any device): one tensor or a tuple of them."""
        raise NotImplementedError(f"{self.qualified_name}: reference() is not implemented")

    def native(self, net: Any, fields: Fields, *inputs: Any) -> Any:
        """Optional: the same math as standard TensorRT layers on `net` (a netdef Network)."""
        raise NotImplementedError(f"{self.qualified_name}: no native decomposition")

    def __repr__(self) -> str:
        return f"<custom layer {self.qualified_name}>"
