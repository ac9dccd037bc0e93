"""Read a built INT8 definition back and report where quantization is and where TensorRT must requantize.

The report is what docs/int8.md's placement rules are checked against, in tests and in bench results:
- activation sites: every per-tensor quantize (the tensor it reads, its scale, who reads the dequantized value);
- convolutions and matrix multiplies: whether their data input and their weights arrive INT8;
- shared scales: activation tensors quantized with one scale value;
- requantized tensors: a tensor some consumers need in INT8 and others in float, or in INT8 with two
  different scales. TensorRT moves a quantize backward across layers that commute with it (max pooling,
  concatenation, slice, reshape/transpose, nearest resize, identity/cast), so the needs of a tensor are
  collected through them; its producer can fuse the quantize and write INT8 only when every consumer wants
  the same one scale. Anything else costs a standalone quantize, a reformat or a requantize kernel.
- quantized weighted outputs: a quantize reading a convolution's or matrix multiply's raw output;
- float residuals: what a fused INT8 convolution + residual add (+ activation) ends in, read by a layer in
  floating point. TensorRT 8.6 has no kernel for that fusion ("All of the candidates were removed").
Dead layers (nothing reaches an output from them) are ignored.
Pure TensorRT API (no torch): usable under TensorRT 8.6 in bench/gpu.py.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from netdef import trt as shim

if TYPE_CHECKING:
    from netdef.quantize.groups import ScaleGroups

WEIGHTED = ("CONVOLUTION", "DECONVOLUTION", "MATRIX_MULTIPLY")
_PASS_THROUGH = ("CAST", "IDENTITY")  # a quantized tensor is named after what real layer produced it
_COMMUTE_ANY_INPUT = ("CONCATENATION",)
_PIXEL_CHAIN = ("CAST", "IDENTITY", "GATHER", "SCALE")  # what Network.add_pixel_input emits after a UINT8 input
_COMMUTE_FIRST_INPUT = ("SLICE", "SHUFFLE", "SQUEEZE", "UNSQUEEZE") + _PASS_THROUGH


def _name(enum_value: Any) -> str:
    return getattr(enum_value, "name", str(enum_value)).split(".")[-1]


@dataclass
class ActivationSite:
    tensor: str  # the quantized tensor, named after the real layer that produced it
    quantize: str  # the quantize layer
    scale: float
    readers: list[str] = field(default_factory=list)  # "layer:input" reading the dequantized value


@dataclass
class WeightedLayer:
    layer: str
    type: str
    int8_input: bool
    int8_weights: bool


@dataclass
class Requantization:
    tensor: str
    producer: str
    float_readers: list[str]
    scales: list[float]

    @property
    def kind(self) -> str:
        if self.float_readers and self.scales:
            return "float+int8"
        return "scales"


@dataclass
class PlacementReport:
    network: str
    activations: list[ActivationSite]
    weights: list[str]  # layers whose weights are quantized (per channel)
    weighted: list[WeightedLayer]
    requantized: list[Requantization]
    quantized_weighted_outputs: list[str]  # conv/matmul raw outputs read by a quantize
    shared: list[list[str]]  # activation tensors quantized with one scale value (groups of two or more)
    float_residuals: list[str] = field(default_factory=list)  # fused INT8 conv + add outputs read in float

    def int8_layers(self) -> list[str]:
        """Convolutions / matrix multiplies with both data input and weights in INT8."""
        return [w.layer for w in self.weighted if w.int8_input and w.int8_weights]

    def site(self, tensor: str) -> ActivationSite | None:
        return next((s for s in self.activations if s.tensor == tensor), None)

    def dequantized_inputs(self, layer: str) -> list[int]:
        """Input indices of `layer` that read a dequantized value directly."""
        return sorted(int(r.rsplit(":", 1)[1]) for s in self.activations for r in s.readers
                      if r.rsplit(":", 1)[0] == layer)

    def same_scale(self, *tensors: str) -> bool:
        """Whether all `tensors` are quantized, with one scale value."""
        scales = {s.scale for s in self.activations if s.tensor in tensors}
        found = {s.tensor for s in self.activations if s.tensor in tensors}
        return found == set(tensors) and len(scales) == 1

    def summary(self) -> dict[str, int]:
        return {"activation_sites": len(self.activations), "weight_sites": len(self.weights),
                "weighted_layers": len(self.weighted), "int8_weighted_layers": len(self.int8_layers()),
                "requantized": len(self.requantized),
                "float_and_int8": sum(r.kind == "float+int8" for r in self.requantized),
                "two_scales": sum(len(r.scales) > 1 for r in self.requantized),
                "quantized_weighted_outputs": len(self.quantized_weighted_outputs),
                "shared_scale_groups": len(self.shared), "float_residuals": len(self.float_residuals)}

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["summary"] = self.summary()
        return d

    def format(self, limit: int = 40) -> str:
        """A short text report: the counts, then each requantized tensor with what its consumers want."""
        lines = [f"{self.network}: " + ", ".join(f"{k} {v}" for k, v in self.summary().items())]
        for r in self.requantized[:limit]:
            wants = [f"float ({', '.join(r.float_readers[:3])})"] if r.float_readers else []
            wants += [f"int8 scale {s:.4g}" for s in r.scales]
            lines.append(f"  {r.tensor} (from {r.producer}): {r.kind}: " + "; ".join(wants))
        if len(self.requantized) > limit:
            lines.append(f"  ... {len(self.requantized) - limit} more")
        return "\n".join(lines)


class Graph:
    """Index of a definition: layers, types, producers, consumers, live layers, canonical tensor names.

    Takes a TensorRT definition or a netdef Network, which it holds (`owner`): the Network owns the arrays the
    definition's constants point into (scales read through `scale`), and CPython frees a temporary passed as an
    argument once nothing binds it, even while the call runs."""

    def __init__(self, definition: Any) -> None:
        self.owner = definition
        definition = self.definition = getattr(definition, "definition", definition)
        self.layers = [definition.get_layer(i) for i in range(definition.num_layers)]
        self.types = [_name(layer.type) for layer in self.layers]
        self.producer: dict[str, int] = {}
        self.consumers: dict[str, list[tuple[int, int]]] = {}
        for i, layer in enumerate(self.layers):
            for k in range(layer.num_outputs):
                self.producer[layer.get_output(k).name] = i
            for k in range(layer.num_inputs):
                t = layer.get_input(k)
                if t is not None:
                    self.consumers.setdefault(t.name, []).append((i, k))
        self.inputs = {definition.get_input(i).name for i in range(definition.num_inputs)}
        self.outputs = {definition.get_output(i).name for i in range(definition.num_outputs)}
        self.pixel_layers = self._pixel_layers(definition)
        self.live = self._live()
        self._scales: dict[int, np.ndarray] = {}

    def _pixel_layers(self, definition: Any) -> set[int]:
        """The layers turning a UINT8 network input into the float input they stand for (netdef.network's
        add_pixel_input: cast, channel gather, scale): canonical names pass through them, and the calibration
        cache's digest leaves them out, so a uint8-input definition uses the float-input one's calibration."""
        found: set[int] = set()
        for t in (definition.get_input(i) for i in range(definition.num_inputs)):
            tensor = t.name if _name(t.dtype) == "UINT8" else None
            while tensor is not None:
                readers = self.consumers.get(tensor, [])
                if len(readers) != 1 or readers[0][1] != 0 or self.types[readers[0][0]] not in _PIXEL_CHAIN:
                    break
                i = readers[0][0]
                found.add(i)
                tensor = None if self.types[i] == "SCALE" else self.layers[i].get_output(0).name
        return found

    def _live(self) -> set[int]:
        live: set[int] = set()
        stack = [self.producer[n] for n in self.outputs if n in self.producer]
        while stack:
            i = stack.pop()
            if i in live:
                continue
            live.add(i)
            layer = self.layers[i]
            for k in range(layer.num_inputs):
                t = layer.get_input(k)
                if t is not None and t.name in self.producer:
                    stack.append(self.producer[t.name])
        return live

    def input_name(self, i: int, k: int) -> str | None:
        t = self.layers[i].get_input(k)
        return None if t is None else t.name

    def live_consumers(self, tensor: str) -> list[tuple[int, int]]:
        return [(i, k) for i, k in self.consumers.get(tensor, []) if i in self.live]

    def scale(self, i: int) -> np.ndarray:
        """The scale values of quantize/dequantize layer i (its constant input 1)."""
        if i not in self._scales:
            source = self.producer.get(self.input_name(i, 1) or "")
            if source is None or self.types[source] != "CONSTANT":
                raise ValueError(f"layer '{self.layers[i].name}': scale is not a constant; cannot read it")
            const = shim.downcast(self.layers[source])
            self._scales[i] = np.asarray(const.weights, dtype=np.float32).reshape(-1)
        return self._scales[i]

    def commutes(self, i: int, k: int) -> bool:
        """Whether layer i passes input k through in a way a quantize can move across."""
        t = self.types[i]
        if t in _COMMUTE_ANY_INPUT:
            return True
        if k != 0:
            return False
        if t in _COMMUTE_FIRST_INPUT:
            return True
        if t == "POOLING":
            return _name(shim.downcast(self.layers[i]).type) == "MAX"
        if t == "RESIZE":
            return _name(shim.downcast(self.layers[i]).resize_mode) == "NEAREST"
        return False

    def canonical(self, tensor: str) -> str:
        """Follow casts/identities back to the tensor a real layer (or the network input) produced."""
        seen = 0
        while tensor in self.producer and seen < 64:
            i = self.producer[tensor]
            if self.types[i] not in _PASS_THROUGH and i not in self.pixel_layers:
                break
            tensor = self.input_name(i, 0) or tensor
            seen += 1
        return tensor

    def label(self, i: int, k: int) -> str:
        return f"{self.layers[i].name}:{k}"


def commuting_groups(definition: Any) -> "ScaleGroups":
    """The scale groups a definition's layers imply: every input and the output of each layer a quantize
    commutes with (concatenation, max pooling, nearest resize, slice, reshape), by canonical tensor name.

    What the modules declare at definition time must give the same groups (tests compare the two); applied
    to a calibration (`ScaleGroups.amax`) they remove the two-scale requantizations this report finds.
    """
    from netdef.quantize.groups import ScaleGroups

    g = Graph(definition)
    groups = ScaleGroups()
    for i in sorted(g.live):
        t = g.types[i]
        if t in _PASS_THROUGH or t in ("QUANTIZE", "DEQUANTIZE") or not g.commutes(i, 0):
            continue
        indices = range(g.layers[i].num_inputs) if t in _COMMUTE_ANY_INPUT else (0,)
        names = [g.canonical(n) for n in (g.input_name(i, k) for k in indices) if n is not None]
        groups.union(*names, g.layers[i].get_output(0).name)
    return groups


def _needs(g: Graph, tensor: str, memo: dict[str, tuple[frozenset, frozenset]]) -> tuple[frozenset, frozenset]:
    """(float readers, int8 scales) a tensor must be delivered as, through commuting layers."""
    if tensor in memo:
        return memo[tensor]
    memo[tensor] = (frozenset(), frozenset())  # guards against cycles
    floats: set[str] = {"<network output>"} if tensor in g.outputs else set()
    scales: set[float] = set()
    for i, k in g.live_consumers(tensor):
        t = g.types[i]
        if t == "QUANTIZE" and k == 0:
            scale = g.scale(i)
            if scale.size == 1:
                scales.add(float(scale[0]))
            else:
                floats.add(g.layers[i].name)  # a per-channel quantize of an activation: reported as its own need
        elif t in ("QUANTIZE", "DEQUANTIZE") or t == "SHAPE":
            continue  # a scale input; a shape layer reads no values
        elif g.commutes(i, k):
            f, s = _needs(g, g.layers[i].get_output(0).name, memo)
            floats |= f
            scales |= s
        else:
            floats.add(g.layers[i].name)
    memo[tensor] = (frozenset(floats), frozenset(scales))
    return memo[tensor]


def _reaches_dequantize(g: Graph, tensor: str | None, depth: int = 0) -> bool:
    """Whether `tensor` is a dequantized value, possibly through layers that commute with quantization."""
    if tensor is None or tensor not in g.producer or depth > 64:
        return False
    i = g.producer[tensor]
    t = g.types[i]
    if t == "DEQUANTIZE":
        return True
    if t in _COMMUTE_ANY_INPUT:
        return all(_reaches_dequantize(g, g.input_name(i, k), depth + 1) for k in range(g.layers[i].num_inputs))
    if g.commutes(i, 0):
        return _reaches_dequantize(g, g.input_name(i, 0), depth + 1)
    return False


def _quantized_constant(g: Graph, tensor: str | None) -> bool:
    """constant -> quantize -> dequantize (or an INT8 constant -> dequantize): quantized weights."""
    i = g.producer.get(tensor or "")
    if i is None or g.types[i] != "DEQUANTIZE":
        return False
    j = g.producer.get(g.input_name(i, 0) or "")
    if j is not None and g.types[j] == "QUANTIZE":
        j = g.producer.get(g.input_name(j, 0) or "")
    return j is not None and g.types[j] == "CONSTANT"


def check_placement(definition: Any) -> PlacementReport:
    """The placement report of an INetworkDefinition (or a netdef Network) holding Q/DQ layers."""
    g = Graph(definition)
    activations: list[ActivationSite] = []
    weights: list[str] = []
    quantized_outputs: list[str] = []
    for i in sorted(g.live):
        if g.types[i] != "QUANTIZE":
            continue
        source = g.input_name(i, 0) or ""
        origin = g.producer.get(source)
        if origin is not None and g.types[origin] == "CONSTANT":
            continue  # weights: reported with their layer
        scale = g.scale(i)
        tensor = g.canonical(source)
        if scale.size != 1:
            continue
        readers = []
        for dq, _ in g.live_consumers(g.layers[i].get_output(0).name):
            if g.types[dq] == "DEQUANTIZE":
                readers += [g.label(c, k) for c, k in g.live_consumers(g.layers[dq].get_output(0).name)]
        activations.append(ActivationSite(tensor, g.layers[i].name, float(scale[0]), readers))
        producer = g.producer.get(tensor)
        if producer is not None and g.types[producer] in WEIGHTED:
            quantized_outputs.append(tensor)
    weighted = []
    for i in sorted(g.live):
        if g.types[i] not in WEIGHTED:
            continue
        name = g.layers[i].name
        if g.types[i] == "MATRIX_MULTIPLY":
            operands = [g.input_name(i, k) for k in (0, 1)]
            constant = [_quantized_constant(g, t) for t in operands]
            int8_weights = any(constant)
            data = [t for t, c in zip(operands, constant) if not c]
            int8_input = bool(data) and all(_reaches_dequantize(g, t) for t in data)
        else:
            int8_weights = g.layers[i].num_inputs > 1 and _quantized_constant(g, g.input_name(i, 1))
            int8_input = _reaches_dequantize(g, g.input_name(i, 0))
        if int8_weights:
            weights.append(name)
        weighted.append(WeightedLayer(name, g.types[i], int8_input, bool(int8_weights)))
    requantized = _requantized(g)
    by_scale: dict[float, list[str]] = {}
    for s in activations:
        by_scale.setdefault(s.scale, []).append(s.tensor)
    shared = [sorted(set(names)) for names in by_scale.values() if len(set(names)) > 1]
    return PlacementReport(g.definition.name, activations, weights, weighted, requantized, quantized_outputs, shared,
                           float_residuals(g))


def _requantized(g: Graph) -> list[Requantization]:
    """Tensors whose producer cannot write one INT8 tensor for all its consumers.

    Counted at real producers (and network inputs): the outputs of layers a quantize moves across carry
    no need of their own, it is collected into their inputs'. A dequantized value is requantized when
    it reaches a quantize with another scale.
    """
    memo: dict[str, tuple[frozenset, frozenset]] = {}
    found = []
    for tensor in sorted(g.inputs):
        floats, scales = _needs(g, tensor, memo)
        if (floats and scales) or len(scales) > 1:
            found.append(Requantization(tensor, "<network input>", sorted(floats), sorted(scales)))
    for i in sorted(g.live):
        kind = g.types[i]
        if kind in ("QUANTIZE", "CONSTANT", "SHAPE") or g.commutes(i, 0):
            continue
        for k in range(g.layers[i].num_outputs):
            tensor = g.layers[i].get_output(k).name
            floats, scales = _needs(g, tensor, memo)
            if kind == "DEQUANTIZE":
                own = g.scale(i)
                others = sorted(s for s in scales if own.size != 1 or s != float(own[0]))
                if others:
                    q = g.producer.get(g.input_name(i, 0) or "")
                    source = g.input_name(q, 0) if q is not None and g.types[q] == "QUANTIZE" else None
                    found.append(Requantization(g.canonical(source or tensor), g.layers[i].name, [],
                                                [float(own[0]) if own.size == 1 else float("nan"), *others]))
            elif (floats and scales) or len(scales) > 1:
                found.append(Requantization(tensor, g.layers[i].name, sorted(floats), sorted(scales)))
    return found


def _int8_weighted_output(g: Graph, tensor: str | None) -> bool:
    """Whether `tensor` is the raw output of a convolution / matrix multiply with INT8 data input and weights."""
    i = g.producer.get(tensor or "")
    if i is None or g.types[i] not in WEIGHTED:
        return False
    if g.types[i] == "MATRIX_MULTIPLY":
        operands = [g.input_name(i, k) for k in (0, 1)]
        constant = [_quantized_constant(g, t) for t in operands]
        return any(constant) and all(_reaches_dequantize(g, t) for t, c in zip(operands, constant) if not c)
    return (g.layers[i].num_inputs > 1 and _quantized_constant(g, g.input_name(i, 1))
            and _reaches_dequantize(g, g.input_name(i, 0)))


def float_residuals(g: Graph) -> list[str]:
    """Tensors a fused INT8 weighted layer + add of two tensors (+ activations) ends in, read by some layer in
    floating point (or a network output): TensorRT 8.6 builds no kernel for that fusion (docs/int8.md, R8)."""
    found = []
    for i in sorted(g.live):
        layer = g.layers[i]
        if g.types[i] != "ELEMENTWISE" or layer.num_inputs != 2 or _name(shim.downcast(layer).op) != "SUM":
            continue
        names = [g.input_name(i, k) for k in (0, 1)]
        if any(g.types[g.producer[n]] == "CONSTANT" for n in names if n in g.producer):
            continue  # a bias, not a residual
        if not any(_int8_weighted_output(g, n) for n in names):
            continue
        end = layer.get_output(0).name
        while True:  # the activations the kernel ends in
            readers = g.live_consumers(end)
            if len(readers) != 1 or g.types[readers[0][0]] != "ACTIVATION":
                break
            end = g.layers[readers[0][0]].get_output(0).name
        floats, _ = _needs(g, end, {})
        if floats:
            found.append(end)
    return found
