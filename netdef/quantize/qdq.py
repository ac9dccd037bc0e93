"""The Q/DQ placement pass: explicit quantization written into an INetworkDefinition before the build.

Placement follows TensorRT's explicit-quantization guidance, so the builder fuses well:
- convolutions and matrix multiplies: their data input is quantized per tensor (scale = amax / 127
  from calibration) and their weights per output channel (symmetric, after BatchNorm folding);
  a convolution's kernel becomes constant -> quantize(axis 0) -> dequantize on input 1, bias stays;
- residual adds (an elementwise SUM with a convolution on one side): the other, shortcut input is
  quantized, so the add fuses into that convolution as its residual;
- average pooling inputs (ResNet's global pool), as NVIDIA's QAT models do: the last residual block then
  ends in INT8 too. TensorRT 8.6 on Hopper rejects a conv + residual add with INT8 input and a float
  output ("All of the candidates were removed"), so without this ResNet-50 does not build there;
- nothing else: decode, NMS, softmax and every layer named in `skip` stay in floating point.
One Q/DQ pair per tensor is shared by all its consumers. Scales are FP32 constants; on strongly
typed bindings the dequantized tensor takes the compute dtype (FP16 for the INT8 policy).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping

import numpy as np

from netdef import trt as shim
from netdef.quantize.calibrators import scale_from_amax, weight_amax

log = logging.getLogger("netdef.quantize")


class CalibrationMissingError(KeyError):
    """A tensor that must be quantized has no amax in the calibration."""

    def __str__(self) -> str:
        return str(self.args[0])


# --- reading a definition --------------------------------------------------------------------------

def layers(definition: Any) -> list[Any]:
    return [definition.get_layer(i) for i in range(definition.num_layers)]


def producers(definition: Any) -> dict[str, Any]:
    """tensor name -> the layer producing it."""
    out: dict[str, Any] = {}
    for layer in layers(definition):
        for i in range(layer.num_outputs):
            out[layer.get_output(i).name] = layer
    return out


def canonical_name(tensor: Any, produced_by: Mapping[str, Any]) -> str:
    """The tensor's name after walking back through casts and identities.

    The FP32 and the INT8/FP16 definitions of one network differ only by such layers (to_compute
    casts), so calibration is keyed by the name of the tensor a real layer produced.
    """
    trt = shim.binding()
    passthrough = {trt.LayerType.CAST, trt.LayerType.IDENTITY}
    seen = 0
    while True:
        layer = produced_by.get(tensor.name)
        if layer is None or layer.type not in passthrough or layer.num_inputs < 1 or seen > 64:
            return tensor.name
        tensor = layer.get_input(0)
        seen += 1


def is_skipped(layer_name: str, skip: Iterable[str]) -> bool:
    """A layer is skipped when `skip` names it or a module path containing it (`layer4`, `fc`)."""
    for s in skip:
        if layer_name == s or any(layer_name.startswith(s + sep) for sep in "./#:"):
            return True
    return False


@dataclass
class Site:
    """One tensor to quantize: what feeds which layer."""

    layer: str
    input_index: int
    tensor: str  # canonical name (key of the calibration)
    kind: str  # "activation" | "weight"


@dataclass
class QDQPlan:
    """Where Q/DQ go in one definition; activation tensors are what calibration must observe."""

    sites: list[Site] = field(default_factory=list)

    @property
    def activation_tensors(self) -> list[str]:
        return sorted({s.tensor for s in self.sites if s.kind == "activation"})


def _is_constant(layer: Any) -> bool:
    return layer is not None and layer.type == shim.binding().LayerType.CONSTANT


def plan_qdq(definition: Any, skip: Iterable[str] = ()) -> QDQPlan:
    """Find the Q/DQ sites of a definition (does not change it)."""
    trt = shim.binding()
    skip = tuple(skip)
    produced_by = producers(definition)
    plan = QDQPlan()
    conv_outputs = {layer.get_output(0).name for layer in layers(definition)
                    if layer.type == trt.LayerType.CONVOLUTION and not is_skipped(layer.name, skip)}
    for layer in layers(definition):
        if is_skipped(layer.name, skip):
            continue
        if layer.type == trt.LayerType.CONVOLUTION:
            plan.sites.append(Site(layer.name, 0, canonical_name(layer.get_input(0), produced_by), "activation"))
            if layer.num_inputs < 2 or layer.get_input(1) is None:
                plan.sites.append(Site(layer.name, 1, layer.name, "weight"))
        elif layer.type == trt.LayerType.MATRIX_MULTIPLY:
            for idx in (0, 1):
                t = layer.get_input(idx)
                source = produced_by.get(t.name)
                kind = "weight" if _is_constant(source) else "activation"
                plan.sites.append(Site(layer.name, idx, canonical_name(t, produced_by) if kind == "activation"
                                       else t.name, kind))
        elif layer.type == trt.LayerType.POOLING and _is_average(layer):
            plan.sites.append(Site(layer.name, 0, canonical_name(layer.get_input(0), produced_by), "activation"))
        elif layer.type == trt.LayerType.ELEMENTWISE and _is_sum(layer):
            shortcut = _shortcut_input(layer, conv_outputs, produced_by)
            if shortcut is not None:
                plan.sites.append(Site(layer.name, shortcut,
                                       canonical_name(layer.get_input(shortcut), produced_by), "activation"))
    return plan


def _is_average(layer: Any) -> bool:
    return shim.downcast(layer).type == shim.binding().PoolingType.AVERAGE


def _is_sum(layer: Any) -> bool:
    return shim.downcast(layer).op == shim.binding().ElementWiseOperation.SUM


def _shortcut_input(layer: Any, conv_outputs: set[str], produced_by: Mapping[str, Any]) -> int | None:
    """Index of the residual add's input to quantize: the one that is not a convolution's output.

    Both from convolutions (a projection shortcut): input 1, the `out + identity` operand.
    Neither (decode arithmetic, say): None - the add stays in floating point.
    """
    if layer.num_inputs != 2:
        return None
    inputs = [layer.get_input(i) for i in (0, 1)]
    if any(_is_constant(produced_by.get(canonical_name(t, produced_by))) for t in inputs):
        return None  # a bias or offset constant, not a residual branch
    from_conv = [canonical_name(t, produced_by) in conv_outputs or t.name in conv_outputs for t in inputs]
    if from_conv == [True, False]:
        return 1
    if from_conv == [False, True]:
        return 0
    if from_conv == [True, True]:
        return 1
    return None


# --- rewriting a definition ---------------------------------------------------------------------

class QDQWriter:
    """Adds Q/DQ layers to a definition; `keep` holds numpy arrays alive until the build."""

    def __init__(self, definition: Any, compute_dtype: np.dtype, keep: Callable[[np.ndarray], np.ndarray],
                 unique: Callable[[str], str] | None = None) -> None:
        self.trt = shim.binding()
        self.strongly_typed = shim.features().strongly_typed
        self.definition = definition
        self.compute = self.trt.DataType.HALF if np.dtype(compute_dtype) == np.float16 else self.trt.DataType.FLOAT
        self.keep = keep
        self.unique = unique or (lambda name: name)
        self.dequantized: dict[str, Any] = {}  # tensor name -> its shared DQ output

    def _constant(self, array: np.ndarray, name: str) -> Any:
        array = np.asarray(array)
        if not array.flags.c_contiguous:  # (np.ascontiguousarray would make a 0-D per-tensor scale 1-D)
            array = array.copy(order="C")
        array = self.keep(array)
        layer = self.definition.add_constant(tuple(array.shape), self.trt.Weights(array))
        return self._name(layer, name).get_output(0)

    def _name(self, layer: Any, name: str) -> Any:
        name = self.unique(name)
        layer.name = name
        layer.get_output(0).name = name
        return layer

    def quantize_dequantize(self, tensor: Any, scale: np.ndarray, axis: int | None, name: str) -> Any:
        """tensor -> Q(int8) -> DQ(compute dtype); per-tensor (axis None) or per-channel on `axis`."""
        scale32 = np.asarray(scale, dtype=np.float32).reshape(-1 if axis is not None else ())
        scale_t = self._constant(scale32, f"{name}/scale")
        if self.strongly_typed:
            q = self.definition.add_quantize(tensor, scale_t, self.trt.DataType.INT8)
            dq = self.definition.add_dequantize(q.get_output(0), scale_t, self.compute)
        else:  # TensorRT 8.6: no output type; the DQ gives FP32, builder flags reduce precision
            q = self.definition.add_quantize(tensor, scale_t)
            dq = self.definition.add_dequantize(q.get_output(0), scale_t)
        if axis is not None:
            q.axis = axis
            dq.axis = axis
        self._name(q, f"{name}/quantize")
        return self._name(dq, f"{name}/dequantize").get_output(0)

    def activation(self, tensor: Any, amax: float) -> Any:
        """The shared per-tensor Q/DQ of an activation."""
        if tensor.name not in self.dequantized:
            self.dequantized[tensor.name] = self.quantize_dequantize(tensor, scale_from_amax(amax), None,
                                                                     tensor.name)
        return self.dequantized[tensor.name]

    def conv_weights(self, layer: Any) -> Any:
        """constant kernel -> Q(axis 0) -> DQ -> input 1 of a convolution that replaces `layer`; bias stays.

        TensorRT accepts tensor weights only on a convolution created with an empty kernel (a kernel
        cannot be emptied later), so a twin takes over the name, the output name and every consumer.
        """
        trt = self.trt
        layer = shim.downcast(layer)
        k = layer.num_output_maps
        size = tuple(layer.kernel_size_nd)
        kernel = np.asarray(layer.kernel, dtype=np.float32)
        kernel = kernel.reshape((k, kernel.size // (k * int(np.prod(size))), *size))
        scale = scale_from_amax(weight_amax(kernel, axis=0))
        bias = np.asarray(layer.bias)
        bias_w = trt.Weights(self.keep(bias)) if bias.size else trt.Weights(self.compute)
        twin = self.definition.add_convolution_nd(layer.get_input(0), k, size, trt.Weights(self.compute), bias_w)
        for attr in ("stride_nd", "padding_nd", "dilation_nd", "num_groups", "padding_mode"):
            setattr(twin, attr, getattr(layer, attr))
        if layer.padding_mode == trt.PaddingMode.EXPLICIT_ROUND_DOWN:
            twin.pre_padding, twin.post_padding = layer.pre_padding, layer.post_padding
        name, old_out = layer.name, layer.get_output(0)
        out_name = old_out.name
        layer.name = old_out.name = self.unique(f"{name}/unquantized")
        weights = self._constant(kernel, f"{name}/weight")
        twin.set_input(1, self.quantize_dequantize(weights, scale, 0, f"{name}/weight"))
        twin.name = name
        twin.get_output(0).name = out_name
        self._reroute(old_out, twin.get_output(0), skip_layer=twin)
        self._starve(layer)
        return twin

    def _reroute(self, old: Any, new: Any, skip_layer: Any) -> None:
        """Every consumer of `old` reads `new` instead (and an output marking moves along)."""
        for i in range(self.definition.num_layers):
            consumer = self.definition.get_layer(i)
            if consumer.name == skip_layer.name:
                continue
            for j in range(consumer.num_inputs):
                t = consumer.get_input(j)
                if t is not None and t.name == old.name:
                    consumer.set_input(j, new)
        for i in range(self.definition.num_outputs):
            if self.definition.get_output(i).name == old.name:
                self.definition.unmark_output(old)
                self.definition.mark_output(new)
                break

    def _starve(self, layer: Any) -> None:
        """The replaced convolution stays in the definition (TensorRT cannot remove a layer): feed it a
        minimal constant so executing the definition spends nothing on it; the builder drops it."""
        x = layer.get_input(0)
        dims = [1, int(x.shape[1])] + [d * (k - 1) + 1 for d, k in zip(layer.dilation_nd, layer.kernel_size_nd)]
        dtype = np.float16 if x.dtype == self.trt.DataType.HALF else np.float32
        layer.set_input(0, self._constant(np.zeros(dims, dtype=dtype), f"{layer.name}/input"))

    def matmul_weights(self, layer: Any, index: int, constant_layer: Any) -> None:
        """A constant matrix-multiply operand, quantized per output channel."""
        layer, constant_layer = shim.downcast(layer), shim.downcast(constant_layer)  # plan_qdq checked their types
        tensor = layer.get_input(index)
        values = np.asarray(constant_layer.weights, dtype=np.float32).reshape(tuple(constant_layer.shape))
        op = layer.op1 if index == 1 else layer.op0
        transposed = op == self.trt.MatrixOperation.TRANSPOSE
        ndim = values.ndim
        # output channels: columns of B (rows when transposed); rows of A (columns when transposed)
        if index == 1:
            axis = ndim - 2 if transposed else ndim - 1
        else:
            axis = ndim - 1 if transposed else ndim - 2
        if ndim < 2:
            axis = 0
        scale = scale_from_amax(weight_amax(values, axis=axis))
        layer.set_input(index, self.quantize_dequantize(tensor, scale, axis, tensor.name))


def insert_qdq(definition: Any, amax: Mapping[str, float], compute_dtype: Any,
               keep: Callable[[np.ndarray], np.ndarray], skip: Iterable[str] = (),
               unique: Callable[[str], str] | None = None) -> QDQPlan:
    """Write Q/DQ into `definition` at the sites `plan_qdq` finds; `amax` is keyed by canonical tensor name.

    Every missing amax is reported at once (tensor and the layer it feeds).
    """
    plan = plan_qdq(definition, skip)
    missing = sorted({f"{s.tensor} (feeds {s.layer})" for s in plan.sites
                      if s.kind == "activation" and s.tensor not in amax})
    if missing:
        raise CalibrationMissingError(
            f"the calibration has no amax for {len(missing)} tensor(s) of network {definition.name!r}: "
            + ", ".join(missing[:10]) + (" ..." if len(missing) > 10 else "")
            + ". Recalibrate with the same network and input size.")
    writer = QDQWriter(definition, compute_dtype, keep, unique)
    by_name = {layer.name: layer for layer in layers(definition)}
    produced_by = producers(definition)
    for site in plan.sites:
        layer = by_name[site.layer]
        if site.kind == "activation":
            layer.set_input(site.input_index, writer.activation(layer.get_input(site.input_index),
                                                                float(amax[site.tensor])))
        elif layer.type == shim.binding().LayerType.CONVOLUTION:
            by_name[site.layer] = writer.conv_weights(layer)
        else:
            writer.matmul_weights(layer, site.input_index, produced_by[layer.get_input(site.input_index).name])
    log.info("Q/DQ: %d activation and %d weight sites in %s", sum(s.kind == "activation" for s in plan.sites),
             sum(s.kind == "weight" for s in plan.sites), definition.name)
    return plan
