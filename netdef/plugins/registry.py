"""The custom layers this process knows, by (namespace, name, version); engines' plugins registered on load.

Descriptions come only from code the user chose to run: netdef's built-ins, modules they import themselves or
name on the command line (`--plugin MODULE`, `load_plugins`), and installed entry points of the group
`netdef.plugins`. A module named in a data file (an engine sidecar records one as a hint) is never imported.
"""
from __future__ import annotations

import importlib
import logging
from typing import Any, Iterable, Iterator, Mapping

from netdef.plugins.description import CustomLayer, CustomLayerError

log = logging.getLogger("netdef.plugins")

ENTRY_POINT_GROUP = "netdef.plugins"


class CustomLayerNotFound(CustomLayerError, LookupError):
    """An engine or a network asks for a custom layer that no imported module describes."""


class Registry(Mapping[tuple[str, str, str], CustomLayer]):
    """Descriptions keyed by (namespace, name, version); one instance per description class."""

    def __init__(self) -> None:
        self._layers: dict[tuple[str, str, str], CustomLayer] = {}

    def add(self, layer: CustomLayer) -> CustomLayer:
        old = self._layers.get(layer.key)
        if old is not None and _origin(old) != _origin(layer):
            raise CustomLayerError(f"custom layer {layer.qualified_name} is already registered by "
                                   f"{_origin(old)}; {_origin(layer)} must use another name or version")
        self._layers[layer.key] = layer  # same class again (a re-import) replaces the old instance
        return layer

    def find(self, name: str, namespace: str = "netdef", version: str | None = None) -> CustomLayer:
        """The description called `name` (latest version unless `version` is given)."""
        if version is not None and (namespace, name, str(version)) in self._layers:
            return self._layers[(namespace, name, str(version))]
        matches = sorted((k for k in self._layers if k[:2] == (namespace, name)), key=lambda k: _version_key(k[2]))
        if version is None and matches:
            return self._layers[matches[-1]]
        known = ", ".join(sorted(d.qualified_name for d in self._layers.values())) or "none"
        wanted = f"{namespace}::{name}" + (f" v{version}" if version is not None else "")
        raise CustomLayerNotFound(f"no custom layer {wanted} is registered (known: {known})")

    def __getitem__(self, key: tuple[str, str, str]) -> CustomLayer:
        return self._layers[key]

    def __iter__(self) -> Iterator[tuple[str, str, str]]:
        return iter(self._layers)

    def __len__(self) -> int:
        return len(self._layers)


def _origin(layer: CustomLayer) -> str:
    return f"{type(layer).__module__}.{type(layer).__qualname__}"


def _version_key(version: str) -> tuple:
    return tuple(int(p) if p.isdigit() else p for p in version.split("."))


registry = Registry()


def register(cls: type[CustomLayer]) -> type[CustomLayer]:
    """Class decorator: make a CustomLayer subclass known by its namespace, name and version."""
    if not (isinstance(cls, type) and issubclass(cls, CustomLayer)):
        raise TypeError(f"@register expects a CustomLayer subclass, got {cls!r}")
    registry.add(cls())
    return cls


def resolve(spec: Any) -> CustomLayer:
    """A description from a registered instance, a CustomLayer subclass (registered on first use) or a name
    ("Name" or "namespace::Name")."""
    if isinstance(spec, CustomLayer):
        return spec
    if isinstance(spec, type) and issubclass(spec, CustomLayer):
        key = (spec.namespace, spec.name, str(spec.version))
        if key in registry and type(registry[key]) is spec:
            return registry[key]
        return registry.add(spec())
    if isinstance(spec, str):
        namespace, _, name = spec.rpartition("::")
        return registry.find(name, namespace or "netdef")
    raise TypeError(f"expected a CustomLayer (class, instance or name), got {spec!r}")


def plugin_record(layer: CustomLayer, fields: Mapping[str, Any], layer_name: str) -> dict[str, Any]:
    """What the engine sidecar says about one plugin layer; enough to register its creator on load."""
    return {"namespace": layer.namespace, "name": layer.name, "version": str(layer.version),
            "fields": dict(fields.to_json() if hasattr(fields, "to_json") else fields),
            "module": type(layer).__module__, "layer": layer_name}


def _find_for_record(record: Mapping[str, Any]) -> CustomLayer:
    namespace, name = record.get("namespace", "netdef"), record.get("name")
    version = str(record.get("version", "1"))
    if not name:
        raise CustomLayerError(f"engine sidecar plugin record without a name: {dict(record)!r}")
    key = (namespace, name, version)
    if key in registry:
        return registry[key]
    where = f" (layer {record['layer']!r})" if record.get("layer") else ""
    module = record.get("module")
    hint = f"the module that defines it (the sidecar says {module!r})" if module else "the module that defines it"
    raise CustomLayerNotFound(f"the engine uses custom layer {namespace}::{name} v{version}{where}, which is not "
                              f"registered in this process: pass --plugin MODULE naming {hint}, install it with a "
                              f"'{ENTRY_POINT_GROUP}' entry point, or import it before loading the engine")


def load_plugins(modules: Iterable[str] = (), entry_points: bool = True) -> list[str]:
    """Import the modules the user named (`--plugin MODULE`) and the installed `netdef.plugins` entry points,
    so the custom layers they register are known; returns what was loaded. An import error names the module."""
    loaded = []
    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise CustomLayerError(f"--plugin {module}: cannot import it ({exc})") from exc
        loaded.append(module)
    if entry_points:
        from importlib.metadata import entry_points as installed

        for ep in installed(group=ENTRY_POINT_GROUP):
            ep.load()
            loaded.append(f"{ep.name} ({ep.value})")
    if loaded:
        log.info("custom layers from %s", ", ".join(loaded))
    return loaded


def register_for_engine(records: Iterable[Mapping[str, Any]]) -> list[CustomLayer]:
    """Register TensorRT plugin creators for an engine's netdef plugins (from its sidecar), before deserializing.

    Raises CustomLayerNotFound naming the layer when its description cannot be imported.
    """
    from netdef.plugins.v3_adapter import ensure_creator

    layers = []
    for record in records:
        layer = _find_for_record(record)
        ensure_creator(layer)
        layers.append(layer)
    return layers
