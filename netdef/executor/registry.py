"""Handler registry: one preparing function per TensorRT layer type.

A handler is called once per layer when an `Executor` is compiled. It receives the layer already downcast
to its interface and a `LayerContext`, reads every parameter it needs through the TensorRT API, converts
weights to torch tensors, and returns the function that runs the layer:
`run(inputs: list[torch.Tensor | None]) -> torch.Tensor | list[torch.Tensor]`.
A handler may also offer `run.inplace`, the same computation written into `inputs[0]`; the executor uses it
only where no other layer, kept tensor or observer can see that input.
"""
from __future__ import annotations

from typing import Any, Callable

Handler = Callable[[Any, Any], Callable[[list], Any]]

# LayerType name -> (interface class name on the binding, handler)
HANDLERS: dict[str, tuple[str | None, Handler]] = {}


def handles(*layer_types: str, interface: str | None = None) -> Callable[[Handler], Handler]:
    """Register a handler for LayerType names; `interface` is the I*Layer class to downcast to."""

    def deco(fn: Handler) -> Handler:
        for name in layer_types:
            HANDLERS[name] = (interface, fn)
        return fn

    return deco
