"""Custom layers: one description (fields, shapes, torch math, optional native form), three lowerings.

    @register
    class MyLayer(CustomLayer):
        alpha = Field(float, 1.0)
        def reference(self, fields, x): ...          # torch: the executor and verification run this
        def native(self, net, fields, x): ...        # optional: standard TensorRT layers

    y = apply_custom(MyLayer, x, {"alpha": 0.5})     # or CustomModule(MyLayer, alpha=0.5) in a network class

Lowering per build: "plugin" (IPluginV3 adapter, needs a binding with Python plugin layers), "native",
or "auto" (plugin where possible, else native). See docs/custom-layers.md. Engines with plugin layers load
through `register_for_engine` (the runtime passes it to netdef.engine.load_engine); the descriptions must be
known first: built-ins, imported modules, `--plugin MODULE` or `netdef.plugins` entry points (`load_plugins`).
"""
from netdef.plugins.description import CustomLayer, CustomLayerError, Field, Fields
from netdef.plugins.lowering import (LOWERINGS, CustomModule, ReferenceCall, apply_custom, choose_lowering,
                                     describe_plugin, lower, reference_for_layer)
from netdef.plugins.registry import (CustomLayerNotFound, Registry, load_plugins, plugin_record, register,
                                     register_for_engine, registry, resolve)
from netdef.plugins import builtin  # noqa: E402,F401  (registers the built-in custom layers)

__all__ = [
    "CustomLayer", "CustomLayerError", "CustomLayerNotFound", "CustomModule", "Field", "Fields", "LOWERINGS",
    "ReferenceCall", "Registry", "apply_custom", "builtin", "choose_lowering", "describe_plugin", "load_plugins",
    "lower", "plugin_record", "reference_for_layer", "register", "register_for_engine", "registry", "resolve",
]
