"""The TensorRT IPluginV3 adapter generated from a custom-layer description.

One adapter class serves every description: it answers shape and dtype queries from the description,
serializes the fields as PluginFields, and its enqueue runs the torch reference on TensorRT's CUDA
stream over TensorRT's own device buffers (wrapped zero-copy through `__cuda_array_interface__`).
The classes are created on first use because their bases come from the binding (`shim.binding()`).
"""
from __future__ import annotations

import contextlib
import logging
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from netdef import trt as shim
from netdef.plugins.description import CustomLayer, CustomLayerError, Field, Fields

log = logging.getLogger("netdef.plugins")

_creators: dict[tuple[str, str, str], Any] = {}  # TensorRT keeps raw pointers: the creators must stay alive
_classes: dict[str, type] = {}


class PluginsUnsupported(CustomLayerError):
    """The binding cannot host Python plugins (no IPluginV3 / IPluginCreatorV3One)."""


# --- fields <-> PluginFieldCollection -------------------------------------------------------------------
def _plugin_type(field: Field) -> str:
    """PluginFieldType name of a field: floats travel as FLOAT64 so they round-trip exactly."""
    if field.kind is str:
        return "CHAR"
    item = field.item if field.kind is list else field.kind
    return "FLOAT64" if item is float else "INT32"


def _field_array(field: Field, value: Any) -> np.ndarray:
    kind = _plugin_type(field)
    if kind == "CHAR":
        return np.frombuffer(value.encode("utf-8"), dtype=np.int8).copy()
    return np.asarray(value, dtype=np.float64 if kind == "FLOAT64" else np.int32).reshape(-1)


def _collection(fields: list[Any], arrays: list[np.ndarray]) -> Any:
    """A PluginFieldCollection that owns its arrays: PluginField only points at the data."""
    if "collection" not in _classes:
        class OwningFieldCollection(shim.binding().PluginFieldCollection):
            def __init__(self, fields: list[Any], arrays: list[np.ndarray]) -> None:
                super().__init__(fields)
                self.arrays = arrays

        _classes["collection"] = OwningFieldCollection
    return _classes["collection"](fields, arrays)


def encode_fields(layer: CustomLayer, fields: Fields) -> Any:
    """A PluginFieldCollection with every declared field of `layer` (what get_fields_to_serialize returns)."""
    trt = shim.binding()
    arrays = [_field_array(field, fields[name]) for name, field in layer.fields.items()]
    out = [trt.PluginField(name, data, getattr(trt.PluginFieldType, _plugin_type(field)))
           for (name, field), data in zip(layer.fields.items(), arrays)]
    return _collection(out, arrays)


def decode_fields(layer: CustomLayer, collection: Any, where: str = "") -> Fields:
    """Fields from PluginFields (TensorRT hands back what get_fields_to_serialize gave), checked like user input."""
    values: dict[str, Any] = {}
    for pf in collection:
        field = layer.fields.get(pf.name)
        data = np.asarray(pf.data)
        if field is None:
            values[pf.name] = data  # make_fields reports it as unknown
        elif field.kind is str:
            values[pf.name] = data.astype(np.int8).tobytes().decode("utf-8")
        elif field.kind is list:
            values[pf.name] = data.reshape(-1).tolist()
        else:
            values[pf.name] = data.reshape(-1)[0].item() if data.size else None
            if field.kind is bool:
                values[pf.name] = bool(values[pf.name])
    return layer.make_fields(values, where or f"plugin {layer.qualified_name}")


def field_names(layer: CustomLayer) -> Any:
    """The creator's field_names: every declared field with its type and no data."""
    trt = shim.binding()
    arrays = [np.array([]) for _ in layer.fields]
    out = [trt.PluginField(name, data, getattr(trt.PluginFieldType, _plugin_type(field)))
           for (name, field), data in zip(layer.fields.items(), arrays)]
    return _collection(out, arrays)


# --- symbolic shapes ------------------------------------------------------------------------------------
class SymbolicDim:
    """A TensorRT dimension expression that does arithmetic, so `output_shapes` runs on it unchanged."""

    def __init__(self, expr: Any, builder: Any) -> None:
        self.expr, self.builder = expr, builder

    def _lift(self, other: Any) -> Any:
        if isinstance(other, SymbolicDim):
            return other.expr
        if isinstance(other, (int, np.integer)) and not isinstance(other, bool):
            return self.builder.constant(int(other))
        raise TypeError(f"cannot combine a TensorRT dimension with {other!r}")

    def _op(self, other: Any, name: str, swap: bool = False) -> "SymbolicDim":
        a, b = self.expr, self._lift(other)
        if swap:
            a, b = b, a
        op = getattr(shim.binding().DimensionOperation, name)
        return SymbolicDim(self.builder.operation(op, a, b), self.builder)

    def __add__(self, o: Any) -> "SymbolicDim":
        return self._op(o, "SUM")

    def __radd__(self, o: Any) -> "SymbolicDim":
        return self._op(o, "SUM", True)

    def __sub__(self, o: Any) -> "SymbolicDim":
        return self._op(o, "SUB")

    def __rsub__(self, o: Any) -> "SymbolicDim":
        return self._op(o, "SUB", True)

    def __mul__(self, o: Any) -> "SymbolicDim":
        return self._op(o, "PROD")

    def __rmul__(self, o: Any) -> "SymbolicDim":
        return self._op(o, "PROD", True)

    def __floordiv__(self, o: Any) -> "SymbolicDim":
        return self._op(o, "FLOOR_DIV")

    def __rfloordiv__(self, o: Any) -> "SymbolicDim":
        return self._op(o, "FLOOR_DIV", True)

    def __int__(self) -> int:
        if self.expr.is_constant():
            return int(self.expr.get_constant_value())
        raise TypeError("dimension is not known until runtime")

    __index__ = __int__


def _dim(value: Any) -> Any:
    """Constant expressions become ints, so descriptions may use them in range() or as list sizes."""
    return int(value.expr.get_constant_value()) if value.expr.is_constant() else value


def symbolic_output_shapes(layer: CustomLayer, fields: Fields, inputs: Sequence[Sequence[Any]],
                           builder: Any) -> list[list[Any]]:
    """Output dimension expressions from input dimension expressions, via `layer.output_shapes`."""
    shapes = [tuple(_dim(SymbolicDim(e, builder)) for e in dims) for dims in inputs]
    out = layer.output_shapes(shapes, fields)
    return [[d.expr if isinstance(d, SymbolicDim) else builder.constant(int(d)) for d in shape] for shape in out]


def output_trt_dtypes(layer: CustomLayer, fields: Fields, input_types: Sequence[Any]) -> list[Any]:
    from netdef.network import np_dtype, trt_dtype

    return [trt_dtype(d) for d in layer.output_dtypes([np_dtype(t) for t in input_types], fields)]


# --- zero-copy device buffers ---------------------------------------------------------------------------
class CudaBuffer:
    """A TensorRT device pointer seen as an array through `__cuda_array_interface__` (no copy)."""

    def __init__(self, ptr: int, shape: Sequence[int], dtype: Any) -> None:
        self.__cuda_array_interface__ = {"shape": tuple(int(s) for s in shape), "typestr": np.dtype(dtype).str,
                                         "data": (int(ptr), False), "version": 3, "strides": None, "stream": None}


def device_tensor(ptr: int, shape: Sequence[int], dtype: Any) -> Any:
    import torch

    shape = tuple(int(s) for s in shape)
    if int(np.prod(shape)) == 0:
        return torch.empty(shape, dtype=getattr(torch, np.dtype(dtype).name), device="cuda")
    return torch.as_tensor(CudaBuffer(ptr, shape, dtype), device="cuda")


@contextlib.contextmanager
def on_stream(stream: int) -> Iterator[None]:
    """torch work inside runs on TensorRT's CUDA stream, so it is ordered with the engine's kernels."""
    import torch

    with torch.cuda.stream(torch.cuda.ExternalStream(int(stream))):
        yield


def run_reference(layer: CustomLayer, fields: Fields, input_desc: Sequence[Any], output_desc: Sequence[Any],
                  inputs: Sequence[int], outputs: Sequence[int], stream: int,
                  wrap: Callable[[int, Sequence[int], Any], Any] = device_tensor,
                  stream_scope: Callable[[int], Any] = on_stream) -> None:
    """The body of enqueue: wrap TensorRT's buffers, run the reference, write into the output buffers."""
    from netdef.network import np_dtype

    ins = [wrap(p, tuple(d.dims), np_dtype(d.type)) for p, d in zip(inputs, input_desc)]
    outs = [wrap(p, tuple(d.dims), np_dtype(d.type)) for p, d in zip(outputs, output_desc)]
    with stream_scope(stream):
        results = as_outputs(layer, layer.reference(fields, *ins))
        for out, result in zip(outs, results):
            out.copy_(result.reshape(out.shape))


def as_outputs(layer: CustomLayer, result: Any) -> list[Any]:
    results = list(result) if isinstance(result, (tuple, list)) else [result]
    if len(results) != layer.num_outputs:
        raise CustomLayerError(f"{layer.qualified_name}: reference returned {len(results)} outputs, "
                               f"the description declares {layer.num_outputs}")
    return results


# --- the adapter classes ----------------------------------------------------------------------------------
def plugin_class() -> type:
    """The IPluginV3 adapter class of the current binding."""
    if "plugin" not in _classes:
        _make_classes()
    return _classes["plugin"]


def creator_class() -> type:
    if "creator" not in _classes:
        _make_classes()
    return _classes["creator"]


def _make_classes() -> None:
    trt = shim.binding()
    missing = [n for n in ("IPluginV3", "IPluginV3OneCore", "IPluginV3OneBuild", "IPluginV3OneRuntime",
                           "IPluginCreatorV3One", "PluginFieldCollection") if not hasattr(trt, n)]
    if missing:
        feat = shim.features()
        raise PluginsUnsupported(f"TensorRT binding {feat.flavor} {feat.version} has no {', '.join(missing)}: "
                                 "netdef custom layers cannot become TensorRT plugins here (use lowering='native')")

    class CustomLayerPlugin(trt.IPluginV3, trt.IPluginV3OneCore, trt.IPluginV3OneBuild, trt.IPluginV3OneRuntime):
        """IPluginV3 for one layer of a netdef custom layer; `netdef_layer`/`netdef_fields` say which."""

        def __init__(self, layer: CustomLayer, fields: Fields, phase: Any = None) -> None:
            trt.IPluginV3.__init__(self)
            trt.IPluginV3OneCore.__init__(self)
            trt.IPluginV3OneBuild.__init__(self)
            trt.IPluginV3OneRuntime.__init__(self)
            self.netdef_layer = layer
            self.netdef_fields = fields
            self.phase = phase
            self.num_outputs = layer.num_outputs
            self.plugin_namespace = layer.namespace
            self.plugin_name = layer.name
            self.plugin_version = str(layer.version)

        def get_capability_interface(self, type: Any) -> Any:
            return self

        def clone(self) -> Any:
            return CustomLayerPlugin(self.netdef_layer, self.netdef_fields, self.phase)

        def get_fields_to_serialize(self) -> Any:
            self.serialized = encode_fields(self.netdef_layer, self.netdef_fields)  # alive while TensorRT reads it
            return self.serialized

        def get_output_data_types(self, input_types: Sequence[Any]) -> list[Any]:
            return output_trt_dtypes(self.netdef_layer, self.netdef_fields, input_types)

        def get_output_shapes(self, inputs: Sequence[Any], shape_inputs: Sequence[Any], expr_builder: Any) -> list:
            dims = [[d[i] for i in range(len(d))] for d in inputs]
            out = symbolic_output_shapes(self.netdef_layer, self.netdef_fields, dims, expr_builder)
            return [trt.DimsExprs(shape) for shape in out]

        def supports_format_combination(self, pos: int, in_out: Sequence[Any], num_inputs: int) -> bool:
            desc = in_out[pos].desc
            if desc.format != trt.TensorFormat.LINEAR:
                return False
            if pos < num_inputs:  # float inputs in FP32 or FP16, all alike
                return desc.type in (trt.DataType.FLOAT, trt.DataType.HALF) and (
                    pos == 0 or desc.type == in_out[0].desc.type)
            types = [in_out[i].desc.type for i in range(num_inputs)]
            return desc.type == self.get_output_data_types(types)[pos - num_inputs]

        def configure_plugin(self, inp: Sequence[Any], out: Sequence[Any]) -> None:
            pass

        def get_workspace_size(self, input_desc: Sequence[Any], output_desc: Sequence[Any]) -> int:
            return 0

        def get_valid_tactics(self) -> list[int]:
            return []

        def set_tactic(self, tactic: int) -> None:
            pass

        def on_shape_change(self, inp: Sequence[Any], out: Sequence[Any]) -> None:
            pass

        def attach_to_context(self, context: Any) -> Any:
            return self.clone()

        def enqueue(self, input_desc: Sequence[Any], output_desc: Sequence[Any], inputs: Sequence[int],
                    outputs: Sequence[int], workspace: int, stream: int) -> None:
            run_reference(self.netdef_layer, self.netdef_fields, input_desc, output_desc, inputs, outputs, stream)

        def destroy(self) -> None:
            pass

    class CustomLayerCreator(trt.IPluginCreatorV3One):
        """Creates the adapter from PluginFields (at build from netdef, at load from the serialized engine)."""

        def __init__(self, layer: CustomLayer) -> None:
            trt.IPluginCreatorV3One.__init__(self)
            self.netdef_layer = layer
            self.name = layer.name
            self.plugin_namespace = layer.namespace
            self.plugin_version = str(layer.version)
            self.field_names = field_names(layer)

        def create_plugin(self, name: str, fc: Any, phase: Any) -> Any:
            fields = decode_fields(self.netdef_layer, fc, f"plugin layer {name!r} ({self.netdef_layer.qualified_name})")
            return CustomLayerPlugin(self.netdef_layer, fields, phase)

    _classes["plugin"] = CustomLayerPlugin
    _classes["creator"] = CustomLayerCreator


def make_plugin(layer: CustomLayer, fields: Fields, phase: Any = None) -> Any:
    return plugin_class()(layer, fields, phase)


def ensure_creator(layer: CustomLayer) -> Any:
    """Register the adapter's creator for `layer` in TensorRT's plugin registry (namespace = layer.namespace)."""
    if layer.key in _creators:
        return _creators[layer.key]
    trt = shim.binding()
    creator = creator_class()(layer)
    plugin_registry = trt.get_plugin_registry()
    if not plugin_registry.register_creator(creator, layer.namespace):
        raise CustomLayerError(f"TensorRT refused to register the plugin creator for {layer.qualified_name} "
                               "(another creator with that name, version and namespace exists)")
    _creators[layer.key] = creator
    log.debug("registered plugin creator %s", layer.qualified_name)
    return creator
