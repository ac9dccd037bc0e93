"""Compile an INetworkDefinition into an ordered list of torch steps, and run it.

The layers are read back through the TensorRT API once (parameters and weights become torch tensors on
the device) and sorted by tensor dependencies, so layers a post-pass appended out of order still run
after their producers. Running is then a loop over prepared closures with no numpy round trips.
"""
from __future__ import annotations

import heapq
import logging
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping

import numpy as np
import torch

from netdef import trt as shim
from netdef.executor import handlers as _handlers  # noqa: F401  (registers every layer handler)
from netdef.executor.context import LayerContext, enum_name
from netdef.executor.dtypes import storage_dtype
from netdef.executor.errors import ExecutorError, UnsupportedLayerError
from netdef.executor.registry import HANDLERS

log = logging.getLogger("netdef.executor")

Observer = Callable[[str, torch.Tensor], None]


@dataclass
class Step:
    """One layer, ready to run."""

    name: str
    type_name: str
    run: Callable[[list], Any]
    inputs: list[str | None]
    outputs: list[str]
    output_dtypes: list[torch.dtype]
    input_casts: list[tuple[int, torch.dtype]]  # floating inputs brought to the layer's compute dtype
    free_after: list[str] = field(default_factory=list)
    run_inplace: Callable[[list], Any] | None = None  # overwrites input 0: set only where that is safe


# Layers whose output is a tensor of its own (never a view of another tensor, a constant or a network input).
FRESH_OUTPUTS = frozenset({"CONVOLUTION", "DECONVOLUTION", "POOLING", "MATRIX_MULTIPLY", "CONCATENATION",
                           "ELEMENTWISE", "ACTIVATION", "SCALE", "REDUCE", "SOFTMAX", "RESIZE"})


def _device(device: str | torch.device) -> torch.device:
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ExecutorError("device 'cuda' requested but torch sees no CUDA device")
    return dev


def _float_dtype(dtype: Any) -> torch.dtype:
    """torch.float32/float64 from a torch dtype, numpy dtype or name."""
    if isinstance(dtype, torch.dtype):
        result = dtype
    else:
        result = getattr(torch, np.dtype(dtype).name, None)
    if result not in (torch.float32, torch.float64):
        raise ValueError(f"dtype {dtype!r}: FLOAT tensors are held in float32 or float64")
    return result


def _layers_in_dependency_order(definition: Any, input_names: set[str]) -> list[Any]:
    """Layers sorted so each runs after the producers of its inputs (ties keep definition order)."""
    layers = [definition.get_layer(i) for i in range(definition.num_layers)]
    producer: dict[str, int] = {}
    for i, layer in enumerate(layers):
        for k in range(layer.num_outputs):
            name = layer.get_output(k).name
            if name in producer or name in input_names:
                other = "a network input" if name in input_names else f"layer '{layers[producer[name]].name}'"
                raise ExecutorError(f"tensor '{name}' is produced by layer '{layer.name}' and by {other}: "
                                    "tensor names must be unique to execute a definition")
            producer[name] = i
    waiting = [0] * len(layers)
    consumers: dict[int, list[int]] = {i: [] for i in range(len(layers))}
    for i, layer in enumerate(layers):
        for k in range(layer.num_inputs):
            t = layer.get_input(k)
            if t is None or t.name in input_names:
                continue
            if t.name not in producer:
                raise ExecutorError(f"layer '{layer.name}' input {k} '{t.name}' is neither a network input "
                                    "nor produced by any layer")
            waiting[i] += 1
            consumers[producer[t.name]].append(i)
    ready = [i for i in range(len(layers)) if waiting[i] == 0]
    heapq.heapify(ready)
    order: list[int] = []
    while ready:
        i = heapq.heappop(ready)
        order.append(i)
        for j in consumers[i]:
            waiting[j] -= 1
            if waiting[j] == 0:
                heapq.heappush(ready, j)
    if len(order) != len(layers):
        stuck = [layers[i].name for i in range(len(layers)) if waiting[i] > 0]
        raise ExecutorError(f"the definition has a dependency cycle through layers {stuck[:5]}")
    return [layers[i] for i in order]


def _prepare(layer: Any, device: torch.device, float_dtype: torch.dtype) -> Step:
    type_name = enum_name(layer.type)  # dispatch on the type before any downcast (a wrong one can crash)
    entry = HANDLERS.get(type_name)
    if entry is None:
        raise UnsupportedLayerError(layer.name, type_name)
    downcast, handler = entry
    if downcast:
        shim.downcast(layer)
    ctx = LayerContext(layer, type_name, device, float_dtype)
    run = handler(layer, ctx)
    inputs = [None if ctx.input(k) is None else ctx.input(k).name for k in range(layer.num_inputs)]
    casts = []
    for k in range(layer.num_inputs):
        t = ctx.input(k)
        if t is not None and storage_dtype(t.dtype, float_dtype).is_floating_point:
            if storage_dtype(t.dtype, float_dtype) != ctx.compute_dtype:
                casts.append((k, ctx.compute_dtype))
    outputs = [layer.get_output(k).name for k in range(layer.num_outputs)]
    return Step(layer.name, type_name, run, inputs, outputs, ctx.output_dtypes, casts)


class Executor:
    """A definition compiled for one device: call it with {input name: array} to get torch tensors.

    `definition`: an INetworkDefinition (keep its builder and weight arrays alive while compiling) or a
    netdef `Network`. Compiling copies every parameter, so the definition is not needed afterwards.

    `keep`: which tensors a call returns: "outputs" (the marked outputs), "all" (every tensor) or tensor names
    (plus the outputs); the others are freed after their last consumer. `dtype=torch.float64` (or "float64")
    holds FLOAT tensors in float64 for reference-quality checks; HALF tensors stay float16 either way.
    """

    def __init__(self, definition: Any, device: str | torch.device = "cpu",
                 keep: str | Iterable[str] = "outputs", dtype: Any = torch.float32) -> None:
        # a netdef Network is accepted too; it owns the builder and weight arrays the definition points into, so it
        # is held (CPython frees an argument that is no longer bound, even while the call runs)
        self.owner = definition
        definition = getattr(definition, "definition", definition)
        self.device = _device(device)
        self.float_dtype = float_dtype = _float_dtype(dtype)
        self.inputs = {definition.get_input(i).name: definition.get_input(i) for i in range(definition.num_inputs)}
        self.input_shapes = {n: tuple(t.shape) for n, t in self.inputs.items()}
        self.input_dtypes = {n: storage_dtype(t.dtype, float_dtype) for n, t in self.inputs.items()}
        self.output_names = [definition.get_output(i).name for i in range(definition.num_outputs)]
        self.steps = [_prepare(layer, self.device, float_dtype)
                      for layer in _layers_in_dependency_order(definition, set(self.inputs))]
        self.tensor_names = list(self.inputs) + [n for s in self.steps for n in s.outputs]
        self.keep = self._resolve_keep(keep)
        self._plan_frees(self.keep)
        self._plan_inplace()

    def _resolve_keep(self, keep: str | Iterable[str]) -> set[str]:
        if keep == "outputs":
            return set(self.output_names)
        if keep == "all":
            return set(self.tensor_names)
        names = set([keep] if isinstance(keep, str) else keep)
        unknown = sorted(names - set(self.tensor_names))
        if unknown:
            raise ExecutorError(f"keep: no tensor named {unknown[:5]} in the definition")
        return names | set(self.output_names)

    def _plan_frees(self, keep: set[str]) -> None:
        """Drop each intermediate tensor after its last consumer, so large batches fit in memory."""
        last_use: dict[str, int] = {}
        for i, step in enumerate(self.steps):
            for name in step.inputs:
                if name is not None:
                    last_use[name] = i
            for name in step.outputs:
                last_use.setdefault(name, i)
        for step in self.steps:
            step.free_after = []
        for name, i in last_use.items():
            if name not in keep:
                self.steps[i].free_after.append(name)

    def _plan_inplace(self) -> None:
        """Let a layer overwrite its first input when nothing else can see that tensor: it comes from a layer
        with an output of its own, this layer is its only consumer, and it is neither kept nor an output.
        Saves an allocation (and its page faults on CPU) per activation and residual add."""
        consumers: dict[str, int] = {}
        producer_type: dict[str, str] = {}
        for step in self.steps:
            for name in step.inputs:
                if name is not None:
                    consumers[name] = consumers.get(name, 0) + 1
            for name in step.outputs:
                producer_type[name] = step.type_name
        for step in self.steps:
            first = step.inputs[0] if step.inputs else None
            step.run_inplace = None
            inplace = getattr(step.run, "inplace", None)  # handlers offer it as an attribute of `run`
            if (inplace is not None and first is not None and consumers.get(first) == 1
                    and producer_type.get(first) in FRESH_OUTPUTS and first not in self.keep
                    and all(k != 0 for k, _ in step.input_casts)):
                step.run_inplace = inplace

    def _input_tensor(self, name: str, value: Any) -> torch.Tensor:
        t = value if isinstance(value, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(value))
        t = t.to(device=self.device, dtype=self.input_dtypes[name])
        expected = self.input_shapes[name]
        if t.dim() != len(expected) or any(e >= 0 and e != s for e, s in zip(expected, t.shape)):
            raise ExecutorError(f"input '{name}': shape {tuple(t.shape)} does not match the definition's "
                                f"{expected} (-1 = any)")
        return t

    def __call__(self, inputs: Mapping[str, Any] | Any,
                 observer: Observer | None = None) -> dict[str, torch.Tensor]:
        if not isinstance(inputs, Mapping):
            if len(self.inputs) != 1:
                raise ExecutorError(f"the definition has inputs {list(self.inputs)}: pass a dict")
            inputs = {next(iter(self.inputs)): inputs}
        missing = sorted(set(self.inputs) - set(inputs))
        extra = sorted(set(inputs) - set(self.inputs))
        if missing or extra:
            raise ExecutorError(f"inputs: missing {missing}, unexpected {extra}; "
                                f"the definition takes {list(self.inputs)}")
        with torch.inference_mode():
            env: dict[str, torch.Tensor] = {n: self._input_tensor(n, v) for n, v in inputs.items()}
            if observer is not None:
                for n, t in env.items():
                    observer(n, t)
            for step in self.steps:
                self._run_step(step, env, observer)
            return {n: env[n] for n in self.tensor_names if n in self.keep}

    def _run_step(self, step: Step, env: dict[str, torch.Tensor], observer: Observer | None) -> None:
        args = [None if n is None else env[n] for n in step.inputs]
        for k, dtype in step.input_casts:
            args[k] = args[k].to(dtype)
        run = step.run_inplace if step.run_inplace is not None and observer is None else step.run
        try:
            result = run(args)
        except (ExecutorError, KeyboardInterrupt):
            raise
        except Exception as exc:  # name the layer and what it was given; the traceback keeps the detail
            shapes = ", ".join(f"'{n}' {tuple(a.shape)} {a.dtype}"
                               for n, a in zip(step.inputs, args) if a is not None)
            raise ExecutorError(f"layer '{step.name}' ({step.type_name}) failed on inputs {shapes}: {exc}") from exc
        outs = result if isinstance(result, (list, tuple)) else [result]
        for name, out, dtype in zip(step.outputs, outs, step.output_dtypes):
            if out.dtype != dtype:
                out = out.to(dtype)
            env[name] = out
            if observer is not None:
                observer(name, out)
        for name in step.free_after:
            env.pop(name, None)


def compile(definition: Any, device: str | torch.device = "cpu", keep: str | Iterable[str] = "outputs",
            dtype: Any = torch.float32) -> Executor:
    """Prepare a definition once for repeated execution (calibration, runtime fallback, benchmarks)."""
    return Executor(definition, device, keep, dtype)


def execute(definition: Any, inputs: Mapping[str, Any], device: str | torch.device = "cpu",
            keep: str | Iterable[str] = "outputs", observer: Observer | None = None,
            dtype: Any = torch.float32) -> dict[str, torch.Tensor]:
    """Run a definition once on `inputs` ({input name: array}); returns the kept tensors by name."""
    return Executor(definition, device, keep, dtype)(inputs, observer)
