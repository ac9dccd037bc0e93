"""INT8 placed while defining: the precision policy's definition-time side (docs/int8.md, section 5).

Every Network has a `Quantizer` (`net.quant`); the functional ops ask it while they emit their layers:
- `weighted(x, kernel, axis, name)`: a convolution, deconvolution or matrix multiply reads its data input
  quantized per tensor and its constant kernel as constant -> Q (per channel on `axis`) -> DQ (R1);
- `input(x)`: average pooling (R8) and the skip of a residual add read x quantized per tensor. One Q/DQ pair
  per tensor, shared by every consumer (R2);
- `summands(inputs, skip, quantize_branch)`: the add input the network file names as the residual's skip is read
  through that shared Q/DQ; the other input stays float, so the convolution producing it fuses the add (R3); a
  branch that ends in an activation (the network file says so) is quantized at its convolution's output, before
  the activation (`preactivation`), so the activation and the add run as one INT8 pointwise kernel (R3c,
  `branch_at = "conv"`: YOLOv4's default), or after it, in the skip's scale (R3b, `branch_at = "activation"`:
  the quantizer's default); each placement's calibration observes the other's tensors too, so one calibration
  serves both;
- `share_scale(*tensors)`: concatenation, max pooling, nearest resize, slice and reshape declare that their inputs
  and output form one scale group; they emit nothing (R4-R6).
Sites are recorded in every precision: the FP32 definition records what the INT8 one quantizes and emits nothing,
so calibration reads there which tensors to observe (`sites`, `groups`), by the same canonical names (casts and
identities looked through). Module paths a network file keeps in floating point (`keep_float`: a detection head's
last convs; calibration still observes their weighted layers' inputs, for a placement that quantizes them) and
`unquantized()` / `float32()` regions are never quantized, in any precision; in an INT8 definition
(`Int8Settings`) neither are module paths in `fp16` (skip + the sensitivity ranking). Scale values are final once
the definition is complete (`finish`): a tensor's scale is its group's, known only after the group's last layer.

TensorRT 8.6 has no kernel for a convolution with an INT8 input whose fused residual add (+ activation) ends in a
float tensor. Such tensors are tracked, and a consumer that would read one in floating point (an FP16 site, a
float region's weighted layer, the other input of a further add) reads it through its shared Q/DQ instead.
"""
from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator, Sequence

import numpy as np

from netdef.quantize.calibrators import scale_from_amax, weight_amax
from netdef.quantize.groups import ScaleGroups

log = logging.getLogger("netdef.quantize")


class CalibrationMissingError(KeyError):
    """A tensor that must be quantized has no amax in the calibration."""

    def __str__(self) -> str:
        return str(self.args[0])


def is_skipped(path: str, skip: Iterable[str]) -> bool:
    """Whether `skip` names the module path `path` or a module containing it (`layer4`, `fc`)."""
    for s in skip:
        if s and (path == s or any(path.startswith(s + sep) for sep in "./#:")):
            return True
    return False


@dataclass
class Int8Settings:
    """What an INT8 definition needs before its first layer: the ranges and the sites kept in floating point;
    and what to check the finished definition against (the calibration cache's fingerprint)."""

    amax: dict[str, float]  # canonical tensor name -> amax, stored group amax already applied
    fp16: tuple[str, ...] = ()  # module paths kept in floating point (skip + sensitivity)
    cache: Any = None  # a CalibrationCache to check against the finished definition
    origin: str = "calibration cache"
    weights_sha256: str | None = None
    info: dict[str, Any] = field(default_factory=dict)  # recorded in net.meta["int8"]


def _floating(x: Any) -> bool:
    return getattr(x.dtype, "name", str(x.dtype)).split(".")[-1] in ("FLOAT", "HALF")


class Quantizer:
    """Where INT8 goes in one Network, decided as its layers are emitted (module docstring)."""

    def __init__(self, net: Any, settings: Int8Settings | None = None) -> None:
        self.net = net
        self.settings = settings
        self.fp16 = tuple(settings.fp16) if settings is not None else ()
        self.floating: tuple[str, ...] = ()  # module paths the network file keeps in floating point
        self._off = 0
        self._reads: list[tuple[Any, str, bool]] = []  # (tensor, consumer path, read only for TensorRT 8.6)
        self._weighted: list[str] = []
        self._shared: list[list[Any]] = []
        self._dequantized: dict[str, Any] = {}  # tensor name -> its shared DQ output
        self._scales: list[tuple[Any, Any, np.ndarray]] = []  # (quantized tensor, its scale constant layer, value)
        self._int8_outputs: set[str] = set()  # raw outputs of weighted layers with INT8 input and weights
        self._observed: list[Any] = []  # tensors calibration observes though no layer reads them quantized
        # where a residual branch ending in an activation is quantized: "activation" (R3b) needs nothing more from the
        # network file; "conv" (R3c) needs its branch convs' outputs passed through preactivation (Darknet)
        self.branch_at = "activation"
        self.before_activation: tuple[str, ...] = ()  # convs whose raw output is quantized, not their activation's
        self.placement: dict[str, str] = {}  # a network file's own placement options, read by its modules (placed)
        self._fused: set[str] = set()  # what a fused INT8 conv + add (+ activation) ends in
        # filled by finish(): canonical tensor -> consumer paths, weighted layers' paths, scale groups
        self.sites: dict[str, list[str]] = {}
        self.weight_sites: list[str] = []
        self.groups = ScaleGroups()
        self.guarded: list[str] = []
        self.observed: list[str] = []

    @property
    def emits(self) -> bool:
        """Whether Q/DQ layers are emitted (an INT8 definition) or sites only recorded."""
        return self.settings is not None

    # --- where ---------------------------------------------------------------------------------------
    def region_on(self) -> bool:
        """Outside `unquantized()` and `float32()` regions."""
        return not self._off and not self.net.in_float32

    def quantizes(self, path: str | None = None) -> bool:
        """Whether a layer emitted at module path `path` (default: the current one) runs in INT8."""
        path = self.net.path if path is None else path
        return self.region_on() and not is_skipped(path, self.floating) and not is_skipped(path, self.fp16)

    def keep_float(self, *paths: str) -> None:
        """Keep the modules at these paths (and inside them) in floating point, in every precision: a rule of the
        network (its output heads), so the FP32 definition calibration reads does not record them either."""
        self.floating += tuple(p for p in paths if p)

    @contextlib.contextmanager
    def unquantized(self) -> Iterator[None]:
        """Layers emitted inside are not quantized and declare no scale groups."""
        self._off += 1
        try:
            yield
        finally:
            self._off -= 1

    # --- what the ops call ----------------------------------------------------------------------------
    def input(self, x: Any) -> Any:
        """x as the current layer reads it: through x's shared Q/DQ where the layer runs in INT8 (or where x is
        what a fused INT8 conv + add ends in: TensorRT 8.6 needs that tensor in INT8), else x itself."""
        if not _floating(x):
            return x
        guard = not self.quantizes()
        if guard and x.name not in self._fused:
            return x
        self._reads.append((x, self.net.path, guard))
        if not self.emits:
            return x
        dq = self._dequantized.get(x.name)
        if dq is None:
            # the calibration's value where it knows this name; finish() sets the scale group's (the same when the
            # cache's groups are this definition's, so the constant is usually written once)
            value = scale_from_amax(self.settings.amax.get(x.name, 127.0)).astype(np.float32).reshape(())
            scale = self._constant(value, f"{x.name}/scale")
            self._scales.append((x, scale, value))
            dq = self._dequantized[x.name] = self._qdq(x, scale.get_output(0), None, x.name, x.dtype)
        return dq

    def weighted(self, x: Any, kernel: np.ndarray, axis: int, name: str) -> tuple[Any, Any]:
        """(data input, kernel tensor or None) of a weighted layer named `name`: in INT8, x's shared Q/DQ and
        constant -> Q(axis) -> DQ of the kernel (create the layer with an empty kernel and set input 1 to it);
        else x (through the 8.6 guard) and None (the layer takes its kernel as weights)."""
        int8 = self.quantizes()
        if not int8 and self.region_on() and is_skipped(self.net.path, self.floating) and _floating(x):
            self._observed.append(x)  # kept float by the network's rule; a placement without it quantizes x
        x = self.input(x)
        if not int8:
            return x, None
        self._weighted.append(self.net.path)
        if not self.emits:
            return x, None
        kernel = np.asarray(kernel, dtype=np.float32)
        scale = self._constant(scale_from_amax(weight_amax(kernel, axis)).astype(np.float32), f"{name}/weight/scale")
        weights = self._constant(kernel, f"{name}/weight").get_output(0)
        dtype = self.net.trt_dtype(self.net.compute_dtype)
        return x, self._qdq(weights, scale.get_output(0), axis, f"{name}/weight", dtype)

    def weighted_output(self, y: Any) -> Any:
        """Note the raw output of a weighted layer just emitted (INT8 when the current layer quantizes)."""
        if self.quantizes():
            self._int8_outputs.add(y.name)
        return y

    def summands(self, inputs: Sequence[Any], skip: int | None = None, quantize_branch: bool = False) -> list[Any]:
        """An add's two inputs as it reads them: `skip` (0, 1 or None) through its shared Q/DQ (R3); any input that
        is what a fused INT8 conv + add ends in (a chain of adds) too, since on TensorRT 8.6 it must end in INT8;
        the others as they are. `quantize_branch` (the branch ends in an activation of a conv, which the network file
        passes through `preactivation`): unless the branch is a raw INT8 conv output, R3c reads it as it is
        (its conv output was quantized before the activation: DQ -> activation -> add -> Q is one INT8 pointwise
        kernel), R3b quantizes it, in one scale group with the skip (the conv computes the activation, the add is
        INT8)."""
        inputs = list(inputs)
        if skip not in (None, 0, 1) or len(inputs) != 2:
            raise ValueError(f"{self.net.path or 'network'}: skip={skip!r}: an add's skip is input 0 or 1")
        if quantize_branch and skip is None:
            raise ValueError(f"{self.net.path or 'network'}: quantize_branch needs the skip named (skip=0 or 1)")
        if quantize_branch and inputs[1 - skip].name not in self._int8_outputs:  # a raw conv output fuses the add
            if self.branch_at == "activation":
                self.share_scale(*inputs)
                return [self.input(t) for t in inputs]
            self.observe(inputs[1 - skip])  # what R3b would quantize: one calibration serves both
        return [self.input(t) if k == skip or t.name in self._fused else t for k, t in enumerate(inputs)]

    def preactivation(self, y: Any, branch: bool = False) -> Any:
        """y, a convolution's raw output (after its BN) as its activation reads it: through y's Q/DQ where the
        placement quantizes it there, so the convolution writes INT8 and the activation runs in an INT8 pointwise
        kernel: a residual branch's last conv (`branch`) with `branch_at = "conv"` (R3c: TensorRT's implicit INT8
        engine's choice), or a conv at a module path in `before_activation` (a network's stem); else y itself,
        observed so that one calibration serves either placement."""
        return self.placed(y, (branch and self.branch_at == "conv")
                           or is_skipped(self.net.path, self.before_activation))

    def placed(self, x: Any, quantized: bool) -> Any:
        """x through its shared Q/DQ where a placement option of the network says so (`quantized`), else x itself,
        observed, so that one calibration serves either placement."""
        if quantized:
            return self.input(x)
        self.observe(x)
        return x

    def observe(self, x: Any) -> None:
        """Calibration observes x (another placement of this network quantizes it); nothing is emitted."""
        if self.quantizes() and _floating(x):
            self._observed.append(x)

    def summed(self, y: Any, operands: Sequence[Any]) -> Any:
        """Note an add of two tensors: when one is the raw output of an INT8 weighted layer, TensorRT fuses the
        add into it, and the sum is what that kernel ends in."""
        if any(t.name in self._int8_outputs for t in operands):
            self._fused.add(y.name)
        return y

    def activated(self, x: Any, y: Any) -> Any:
        """Note an activation: it fuses into the kernel producing x, so it ends that kernel instead."""
        if x.name in self._fused:
            self._fused.add(y.name)
        return y

    def share_scale(self, *tensors: Any) -> None:
        """Declare that quantizers of these tensors share one scale (inputs and output of a layer TensorRT moves
        a quantize across; the two inputs of an R3b add); no layer is emitted."""
        if self.region_on():
            floating = [t for t in tensors if _floating(t)]
            if len(floating) > 1:
                self._shared.append(floating)

    def rename(self, old: str, new: str) -> None:
        """A tensor is renamed (a module's output takes the module's path): keep what is known about it."""
        for table in (self._int8_outputs, self._fused):
            if old in table:
                table.discard(old)
                table.add(new)
        if old in self._dequantized:
            self._dequantized[new] = self._dequantized.pop(old)

    # --- emitting ------------------------------------------------------------------------------------------
    def _name(self, layer: Any, name: str) -> Any:
        name = self.net.unique(name)
        layer.name = name
        layer.get_output(0).name = name
        return layer

    def _constant(self, array: np.ndarray, name: str) -> Any:
        array = self.net.keep(array)
        return self._name(self.net.definition.add_constant(tuple(array.shape), self.net.trt.Weights(array)), name)

    def _qdq(self, x: Any, scale: Any, axis: int | None, name: str, dtype: Any) -> Any:
        """x -> Q (INT8) -> DQ (`dtype`; FP32 on weakly typed bindings, where builder flags reduce precision)."""
        definition, trt = self.net.definition, self.net.trt
        if self.net.features.strongly_typed:
            q = definition.add_quantize(x, scale, trt.DataType.INT8)
            dq = definition.add_dequantize(q.get_output(0), scale, dtype)
        else:
            q = definition.add_quantize(x, scale)
            dq = definition.add_dequantize(q.get_output(0), scale)
        if axis is not None:
            q.axis = dq.axis = axis
        self._name(q, f"{name}/quantize")
        return self._name(dq, f"{name}/dequantize").get_output(0)

    # --- the complete definition ---------------------------------------------------------------------------
    def finish(self) -> None:
        """Resolve sites and groups by their final canonical names; in INT8, check the calibration against the
        definition and set every scale to its group's amax / 127."""
        from netdef.quantize.placement import Graph, float_residuals

        graph = Graph(self.net.definition)
        canonical = graph.canonical
        self.sites = {}
        for tensor, path, guard in self._reads:
            paths = self.sites.setdefault(canonical(tensor.name), [])
            if path not in paths:
                paths.append(path)
            if guard and tensor.name not in self.guarded:
                self.guarded.append(tensor.name)
        self.weight_sites = list(dict.fromkeys(self._weighted))
        self.observed = list(dict.fromkeys(canonical(t.name) for t in self._observed))
        self.groups = ScaleGroups()
        for members in self._shared:
            self.groups.union(*(canonical(t.name) for t in members))
        if not self.emits:
            return
        self._set_scales(canonical)
        problems = float_residuals(graph)
        if problems:
            log.warning("%s: INT8 convolution + residual add ending in a float tensor (TensorRT 8.6 has no kernel "
                        "for it): %s", self.net.definition.name, ", ".join(problems[:5]))
        if self.guarded:
            log.info("%s: read through Q/DQ for TensorRT 8.6 (fused INT8 conv + add outputs read by float "
                     "layers): %s", self.net.definition.name, ", ".join(self.guarded[:5]))

    def calibration_names(self) -> list[str]:
        """The tensors calibration observes: every quantized one, every member of their scale groups and those
        observed for another placement of the same network (`preactivation`)."""
        names = set(self.sites) | set(self.observed)
        for group in self.groups.groups():
            if names.intersection(group):
                names.update(group)
        return sorted(names)

    def _set_scales(self, canonical: Any) -> None:
        from netdef.quantize.cache import definition_digest

        settings = self.settings
        if settings.cache is not None:
            settings.cache.check(definition_digest(self.net), settings.weights_sha256, settings.origin)
        table = self.groups.amax(settings.amax)
        missing = [f"{name} (read by {paths[0]})" for name, paths in self.sites.items() if name not in table]
        if missing:
            raise CalibrationMissingError(
                f"the calibration has no amax for {len(missing)} tensor(s) of network {self.net.definition.name!r}: "
                + ", ".join(missing[:10]) + (" ..." if len(missing) > 10 else "")
                + ". Recalibrate with the same network and input size.")
        for tensor, layer, value in self._scales:
            final = scale_from_amax(table[canonical(tensor.name)]).astype(np.float32).reshape(())
            if final != value:
                layer.weights = self.net.trt.Weights(self.net.keep(final))
        self.net.meta["int8"] = {**settings.info, "quantized_tensors": len(self._scales) + len(self.weight_sites),
                                 "activations": len(self._scales), "weights": len(self.weight_sites),
                                 "fp16": list(self.fp16), "guarded": list(self.guarded)}
        log.info("INT8 %s: %d activation and %d weight quantizations, %d scale groups", self.net.definition.name,
                 len(self._scales), len(self.weight_sites), len(self.groups.groups()))
