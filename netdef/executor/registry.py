"""Handler registry: one preparing function per TensorRT layer type.

A handler is called once per layer when an `Executor` is compiled. It receives the layer already downcast
to its interface (`netdef.trt.downcast`) and a `LayerContext`, reads every parameter it needs through the TensorRT API, converts
weights to torch tensors, and returns the function that runs the layer:
`run(inputs: list[torch.Tensor | None]) -> torch.Tensor | list[torch.Tensor]`.
A handler may also offer `run.inplace`, the same computation written into `inputs[0]`; the executor uses it
only where no other layer, kept tensor or observer can see that input.
"""
from __future__ import annotations

from typing import Any, Callable

Handler = Callable[[Any, Any], Callable[[list], Any]]

# LayerType name -> (whether to downcast the layer first, handler)
HANDLERS: dict[str, tuple[bool, Handler]] = {}


def handles(*layer_types: str, downcast: bool = True) -> Callable[[Handler], Handler]:
    """Register a handler for LayerType names (downcast=False: the handler reaches the layer's interface itself)."""

    def deco(fn: Handler) -> Handler:
        for name in layer_types:
            HANDLERS[name] = (downcast, fn)
        return fn

    return deco
