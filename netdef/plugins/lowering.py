"""Putting a custom layer into a network: as a TensorRT plugin, as native layers, or whichever the binding allows.

`lower` is the one entry point; `apply_custom` is its functional form and `CustomModule` its module
form (named by module path like every netdef module). The executor reaches plugin layers' math
through `reference_for_layer`.
"""
from __future__ import annotations

import logging
import weakref
from typing import Any, Callable, Mapping, Sequence

from netdef import trt as shim
from netdef.module import Module
from netdef.network import Network, current
from netdef.plugins.description import CustomLayer, CustomLayerError, Fields
from netdef.plugins.registry import plugin_record, registry, resolve

log = logging.getLogger("netdef.plugins")

LOWERINGS = ("auto", "plugin", "native")
LOWERING_META_KEY = "custom_lowering"  # net.meta[...] sets the lowering of every custom layer in one build
_alive: "weakref.WeakKeyDictionary[Network, list[Any]]" = weakref.WeakKeyDictionary()


def choose_lowering(layer: CustomLayer, requested: str, features: Any = None) -> str:
    """'plugin' or 'native' for `layer` under `requested`, or a CustomLayerError saying why neither works."""
    if requested not in LOWERINGS:
        raise CustomLayerError(f"{layer.qualified_name}: lowering {requested!r}: "
                               f"expected one of {', '.join(LOWERINGS)}")
    feat = features or shim.features()
    can_plugin = feat.python_plugins
    why_not_plugin = (f"TensorRT binding {feat.flavor} {feat.version} cannot add Python plugin layers "
                      "(no add_plugin_v3 with IPluginV3/IPluginCreatorV3One)")
    if requested == "plugin":
        if not can_plugin:
            raise CustomLayerError(f"{layer.qualified_name}: lowering 'plugin' impossible: {why_not_plugin}"
                                   + ("; use lowering='native'" if layer.has_native else ""))
        return "plugin"
    if requested == "native":
        if not layer.has_native:
            raise CustomLayerError(f"{layer.qualified_name}: lowering 'native' impossible: the description has "
                                   "no native() decomposition")
        return "native"
    if can_plugin:
        return "plugin"
    if layer.has_native:
        return "native"
    raise CustomLayerError(f"{layer.qualified_name} cannot be built with this binding: {why_not_plugin}, and the "
                           "description has no native() decomposition into standard layers")


def lower(layer: Any, inputs: Sequence[Any], fields: Mapping[str, Any] | Fields | None = None,
          lowering: str | None = None, net: Network | None = None) -> list[Any]:
    """Add custom layer `layer` (description, class or name) on `inputs`; returns its output tensors.

    `lowering` None takes `net.meta["custom_lowering"]`, else "auto".
    """
    net = net or current()
    desc = resolve(layer)
    where = f"{net.path or 'network'} ({desc.qualified_name})"
    values = fields if isinstance(fields, Fields) else desc.make_fields(fields, where)
    requested = lowering or net.meta.get(LOWERING_META_KEY, "auto")
    how = choose_lowering(desc, requested, net.features)
    inputs = list(inputs)
    if how == "plugin":
        outputs = _lower_plugin(net, desc, values, inputs)
    else:
        outputs = _lower_native(net, desc, values, inputs, where)
    log.debug("%s lowered as %s", where, how)
    return outputs


def _lower_native(net: Network, desc: CustomLayer, fields: Fields, inputs: list[Any], where: str) -> list[Any]:
    result = desc.native(net, fields, *inputs)
    outputs = list(result) if isinstance(result, (tuple, list)) else [result]
    if len(outputs) != desc.num_outputs:
        raise CustomLayerError(f"{where}: native() returned {len(outputs)} tensors, the description declares "
                               f"{desc.num_outputs}")
    expected = desc.output_shapes([tuple(t.shape) for t in inputs], fields)
    for i, (tensor, shape) in enumerate(zip(outputs, expected)):
        got = tuple(tensor.shape)
        same = len(got) == len(shape) and all(g == s or g < 0 or s < 0 for g, s in zip(got, shape))
        if not same:
            raise CustomLayerError(f"{where}: native output {i} ({tensor.name!r}) has shape {got}, "
                                   f"output_shapes() says {tuple(shape)}")
    return outputs


def _lower_plugin(net: Network, desc: CustomLayer, fields: Fields, inputs: list[Any]) -> list[Any]:
    from netdef.plugins.v3_adapter import encode_fields, ensure_creator

    creator = ensure_creator(desc)
    name = net.path or desc.name
    plugin = creator.create_plugin(name, encode_fields(desc, fields), net.trt.TensorRTPhase.BUILD)
    inputs = [net.to_compute(t) for t in inputs]
    layer = net.name_layer(net.definition.add_plugin_v3(inputs, [], plugin))
    _alive.setdefault(net, []).append(plugin)  # the Python plugin must outlive the build
    net.plugins.append(plugin_record(desc, fields, layer.name))
    return [layer.get_output(i) for i in range(layer.num_outputs)]


def apply_custom(layer: Any, inputs: Any, fields: Mapping[str, Any] | None = None,
                 lowering: str | None = None) -> Any:
    """Functional form: one output tensor, or a tuple when the layer has several."""
    inputs = list(inputs) if isinstance(inputs, (list, tuple)) else [inputs]
    outputs = lower(layer, inputs, fields, lowering)
    return outputs[0] if len(outputs) == 1 else tuple(outputs)


class CustomModule(Module):
    """A custom layer as a netdef module: `self.yolo = CustomModule(YoloLayer, anchors=..., stride=8, ...)`."""

    def __init__(self, layer: Any, lowering: str | None = None, **fields: Any) -> None:
        super().__init__()
        self.layer = resolve(layer)
        self.fields = self.layer.make_fields(fields)
        self.lowering = lowering

    def forward(self, *inputs: Any) -> Any:
        outputs = lower(self.layer, inputs, self.fields, self.lowering)
        if len(outputs) == 1:
            return outputs[0]
        if self.path:  # verification compares a module's first output, as torch hooks see tuples
            current().record_module_output(self.path, outputs[0])
        return tuple(outputs)


# --- the executor's view --------------------------------------------------------------------------------
class ReferenceCall:
    """callable(*torch_tensors) -> list of torch tensors: one plugin layer's math, from its description."""

    def __init__(self, layer: CustomLayer, fields: Fields) -> None:
        self.layer, self.fields = layer, fields

    def __call__(self, *inputs: Any) -> list[Any]:
        from netdef.plugins.v3_adapter import as_outputs

        if len(inputs) == 1 and isinstance(inputs[0], (list, tuple)):
            inputs = tuple(inputs[0])
        return as_outputs(self.layer, self.layer.reference(self.fields, *inputs))

    def __repr__(self) -> str:
        return f"ReferenceCall({self.layer.qualified_name}, {dict(self.fields)!r})"


def describe_plugin(plugin: Any, where: str = "plugin") -> tuple[CustomLayer, Fields]:
    """(description, fields) of a plugin object: netdef's adapter directly, any other IPluginV3 through its
    core interface (name, namespace, version) and serialized fields."""
    if hasattr(plugin, "netdef_layer") and hasattr(plugin, "netdef_fields"):
        return plugin.netdef_layer, plugin.netdef_fields
    from netdef.plugins.v3_adapter import decode_fields

    trt = shim.binding()
    caps = getattr(trt, "PluginCapabilityType", None)
    core = plugin.get_capability_interface(caps.CORE) if caps is not None else plugin
    runtime = plugin.get_capability_interface(caps.RUNTIME) if caps is not None else plugin
    name = getattr(core, "plugin_name", None) or getattr(plugin, "plugin_type", None)
    namespace = getattr(core, "plugin_namespace", "") or ""
    version = str(getattr(core, "plugin_version", "1"))
    key = (namespace, name, version)
    if key not in registry:
        raise CustomLayerError(f"{where}: plugin {namespace}::{name} v{version} is not a registered netdef custom "
                               "layer, so there is no reference implementation to run it with")
    desc = registry[key]
    return desc, decode_fields(desc, runtime.get_fields_to_serialize(), where)


def reference_for_layer(layer: Any) -> Callable[..., list[Any]]:
    """For the executor: a callable running a PLUGIN_V3 layer's torch reference (inputs -> list of outputs)."""
    trt = shim.binding()
    where = f"layer {getattr(layer, 'name', '?')!r}"
    kind = getattr(layer, "type", None)
    if kind is not None and kind != getattr(trt.LayerType, "PLUGIN_V3", None):
        raise CustomLayerError(f"{where}: {getattr(kind, 'name', kind)} layers are not netdef custom layers "
                               "(only IPluginV3 plugins built from a netdef description have a reference)")
    if not hasattr(layer, "plugin"):
        layer = shim.downcast(layer)  # type checked above; the downcast reaches .plugin
    desc, fields = describe_plugin(layer.plugin, where)
    return ReferenceCall(desc, fields)
