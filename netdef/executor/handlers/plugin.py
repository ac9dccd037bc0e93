"""Plugin layers run through the torch reference of netdef's custom layer registry (plugins issue)."""
from __future__ import annotations

from typing import Any

from netdef.executor.context import LayerContext
from netdef.executor.registry import handles


@handles("PLUGIN", "PLUGIN_V2", "PLUGIN_V3", downcast=False)  # netdef.plugins does its own downcast
def plugin(layer: Any, ctx: LayerContext) -> Any:
    from netdef.plugins import reference_for_layer

    try:
        reference = reference_for_layer(layer)
    except Exception as exc:  # not a netdef custom layer: no torch reference to run
        ctx.unsupported("plugin", f"without a torch reference ({exc})")

    def run(inputs: list) -> Any:
        return list(reference(*inputs))

    return run
