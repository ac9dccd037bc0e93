"""Verify a netdef definition layer by layer against PyTorch (or against activations stored in the HDF5).

The definition is executed with `netdef.executor` (parameters read back through the TensorRT API), the
reference runs in float64 with forward hooks keyed by module path (`path#k` on the k-th call, as
`Network.record_module_output` names tensors), and every matched tensor is compared in float64:
max abs error, relative error ||a - b|| / ||b|| and cosine similarity. The first layer beyond tolerance
is where a wrong kernel layout or padding shows up.

How close is close enough (FP32, no explicit tolerance): as close as PyTorch itself gets. The reference
also runs in float32 on the same input; its error against float64 at each layer is what float32 costs in
that network at that depth (it grows with depth and with the network's conditioning: ~1e-7 after a few
layers, far more through a deep, badly conditioned stack). Each layer may be FP32_FACTOR times that error
(at least FP32_FLOOR): a correct definition is within it (its error, float32 weights and folded
BatchNorm, measured at 0.2-0.6x PyTorch's own on ResNet and full-size YOLOv4), a wrong layer is orders of
magnitude beyond it. FP16/INT8 and an explicit tolerance use one fixed number for every layer; an INT8 definition
must also quantize something (the report counts its quantized activations and kernels).
"""
from __future__ import annotations

import copy
import json
import logging
import math
import os
from dataclasses import asdict, dataclass, field
from typing import Any, Iterable, Mapping

import numpy as np

from netdef.atomic import write_text_atomic

log = logging.getLogger("netdef.verify")

DEFAULT_TOLERANCE = {"fp32": 1e-5, "fp16": 5e-3, "int8": 1e-1}
FP32_FACTOR = 4.0  # times PyTorch float32's own relative error at the same layer
FP32_FLOOR = 1e-6  # where float32 costs (almost) nothing: a few float32 roundings
ROOT_OUTPUT = "output"  # weights_export's key for the root module's output among stored activations


@dataclass
class LayerComparison:
    """One matched tensor: the module path, the TensorRT tensor name, and its errors."""

    name: str
    tensor: str
    shape: tuple[int, ...]
    max_abs: float
    rel: float
    cosine: float
    ok: bool
    is_output: bool = False
    note: str = ""
    tolerance: float | None = None  # this layer's limit
    reference_rel: float | None = None  # PyTorch float32's own relative error here (relative tolerance only)


@dataclass
class VerifyReport:
    layers: list[LayerComparison]
    tolerance: float
    precision: str = "fp32"
    reference: str = "pytorch"
    unmatched: list[str] = field(default_factory=list)  # module outputs with no reference value to compare
    relative: bool = False  # per-layer limits from PyTorch float32's own error (module docstring)
    quantized: dict[str, int] | None = None  # INT8: activation and weight tensors the definition quantizes

    @property
    def rule(self) -> str:
        if self.relative:
            return f"{FP32_FACTOR:g} x PyTorch float32's own error per layer, at least {self.tolerance:g}"
        return f"tolerance {self.tolerance:g}"

    @property
    def outputs(self) -> list[LayerComparison]:
        return [c for c in self.layers if c.is_output]

    @property
    def ok(self) -> bool:
        """Every output within tolerance; with per-layer limits (`relative`) every layer, since each limit is
        what float32 costs there (with one fixed number, intermediate layers only explain where an error starts)."""
        checked = self.layers if self.relative else (self.outputs or self.layers)
        if self.precision == "int8" and not (self.quantized or {}).get("activations"):
            return False  # an "INT8" definition without Q/DQ would only be checked as FP16
        return bool(checked) and all(c.ok for c in checked)

    @property
    def first_failure(self) -> LayerComparison | None:
        return next((c for c in self.layers if not c.ok), None)

    @property
    def worst(self) -> LayerComparison | None:
        return max(self.layers, key=lambda c: c.rel, default=None)

    def to_json(self) -> dict[str, Any]:
        first, worst = self.first_failure, self.worst
        return {
            "ok": self.ok,
            "precision": self.precision,
            "reference": self.reference,
            "tolerance": self.tolerance,
            "tolerance_rule": self.rule,
            "first_failure": first.name if first else None,
            "worst": worst.name if worst else None,
            "layers": [_finite(asdict(c)) for c in self.layers],
            "unmatched": list(self.unmatched),
            "quantized": self.quantized,
        }

    def write_json(self, path: str | os.PathLike) -> None:
        write_text_atomic(path, json.dumps(self.to_json(), indent=2) + "\n")

    def table(self) -> str:
        first = self.first_failure
        width = max([len(c.name) for c in self.layers] + [5])
        limits = f" {'limit':>10} {'torch f32':>10}" if self.relative else ""
        lines = [f"{'layer':<{width}}  {'shape':<20} {'max abs':>10} {'rel err':>10}{limits} {'cosine':>10}  status"]
        for c in self.layers:
            status = "ok" if c.ok else "FAIL"
            if c is first:
                status += "  <-- first beyond tolerance"
            if c.is_output:
                status += "  (output)"
            if c.note:
                status += f"  {c.note}"
            extra = ""
            if self.relative:
                extra = f" {c.tolerance or self.tolerance:>10.3e} " + \
                    (f"{c.reference_rel:>10.3e}" if c.reference_rel is not None else f"{'-':>10}")
            lines.append(f"{c.name:<{width}}  {str(tuple(c.shape)):<20} {c.max_abs:>10.3e} {c.rel:>10.3e}{extra} "
                         f"{c.cosine:>10.6f}  {status}")
        verdict = "PASS" if self.ok else "FAIL"
        lines.append(f"{verdict}: {len(self.layers)} tensors compared against {self.reference} "
                     f"({self.precision}, {self.rule})"
                     + (f"; first beyond tolerance: {first.name}" if first else "")
                     + (f"; quantized: {(self.quantized or {}).get('activations', 0)} activations, "
                        f"{(self.quantized or {}).get('weights', 0)} kernels" if self.precision == "int8" else ""))
        return "\n".join(lines)

    def plot(self, path: str | os.PathLike) -> None:
        from netdef.report_plot import plot_relative_errors

        plot_relative_errors(self, path)


def _finite(d: dict[str, Any]) -> dict[str, Any]:
    """JSON has no inf/nan: write them as strings."""
    return {k: (str(v) if isinstance(v, float) and not math.isfinite(v) else v) for k, v in d.items()}


def compare(actual: Any, expected: Any) -> tuple[float, float, float]:
    """(max abs error, relative error ||a-b||/||b||, cosine similarity) in float64."""
    a = np.asarray(_numpy(actual), dtype=np.float64).reshape(-1)
    b = np.asarray(_numpy(expected), dtype=np.float64).reshape(-1)
    if not np.isfinite(a).all():
        return math.inf, math.inf, 0.0
    diff = a - b
    max_abs = float(np.abs(diff).max()) if diff.size else 0.0
    nb, na, nd = float(np.linalg.norm(b)), float(np.linalg.norm(a)), float(np.linalg.norm(diff))
    rel = nd / nb if nb > 0 else (0.0 if nd == 0 else math.inf)
    cosine = float(a @ b) / (na * nb) if na > 0 and nb > 0 else (1.0 if na == nb == 0 else 0.0)
    return max_abs, rel, cosine


def relative_error(actual: Any, expected: Any) -> float:
    """||a - b|| / ||b|| in float64 (numpy arrays or torch tensors)."""
    return compare(actual, expected)[1]


def cosine_similarity(actual: Any, expected: Any) -> float:
    return compare(actual, expected)[2]


def _numpy(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):
        return x.detach().to("cpu").double().numpy()
    return np.asarray(x)


def _comparison(name: str, tensor: str, actual: Any, expected: Any, tolerance: float,
                is_output: bool, float32: Any = None) -> LayerComparison:
    """One tensor against the reference; with `float32` (the reference's float32 value) the limit is
    FP32_FACTOR times the float32 reference's own error, at least `tolerance`."""
    a_shape, b_shape = tuple(np.shape(_numpy(actual))), tuple(np.shape(_numpy(expected)))
    if int(np.prod(a_shape)) != int(np.prod(b_shape)):
        return LayerComparison(name, tensor, a_shape, math.inf, math.inf, 0.0, False, is_output,
                               f"shape {a_shape} vs reference {b_shape}", tolerance)
    max_abs, rel, cosine = compare(actual, expected)
    note = "" if a_shape == b_shape else f"reference shape {b_shape}"
    reference_rel = None
    if float32 is not None and int(np.prod(np.shape(_numpy(float32)))) == int(np.prod(b_shape)):
        reference_rel = compare(float32, expected)[1]
        if math.isfinite(reference_rel):
            tolerance = max(tolerance, FP32_FACTOR * reference_rel)
    return LayerComparison(name, tensor, a_shape, max_abs, rel, cosine, rel <= tolerance, is_output, note,
                           tolerance, reference_rel)


# --- running the two sides -----------------------------------------------------------------------------------

def reference_activations(reference: Any, inputs: Any, dtype: Any = None) -> tuple[dict[str, Any], list[Any]]:
    """Run a torch module in float64 (or `dtype`) with forward hooks: ({module path[#k]: output}, [outputs])."""
    import torch

    dtype = dtype or torch.float64
    model = copy.deepcopy(reference).to(dtype).eval()
    seen: dict[str, Any] = {}
    handles = []
    for path, module in model.named_modules():
        if not path:
            continue

        def hook(_m: Any, _inp: Any, out: Any, path: str = path) -> None:
            key, k = path, 1
            while key in seen:
                key, k = f"{path}#{k}", k + 1
            seen[key] = _first_tensor(out)

        handles.append(module.register_forward_hook(hook))
    try:
        with torch.no_grad():
            args = [torch.as_tensor(np.asarray(v), dtype=dtype) for v in _as_list(inputs)]
            result = model(*args)
    finally:
        for h in handles:
            h.remove()
    return {k: v for k, v in seen.items() if v is not None}, _flatten_outputs(result)


def _first_tensor(out: Any) -> Any:
    """A copy of a module's output: a later in-place op (ReLU(inplace=True)) must not change what we saw."""
    if isinstance(out, (list, tuple)) and out:
        out = out[0]
    return out.detach().clone() if hasattr(out, "detach") else None


def _flatten_outputs(result: Any) -> list[Any]:
    if isinstance(result, Mapping):
        return list(result.values())
    if isinstance(result, (list, tuple)):
        return [v for r in result for v in _flatten_outputs(r)]
    return [result]


def _as_list(inputs: Any) -> list[Any]:
    if isinstance(inputs, Mapping):
        return list(inputs.values())
    return [inputs]


def _definition_inputs(net: Any, inputs: Any) -> dict[str, Any]:
    names = [net.definition.get_input(i).name for i in range(net.definition.num_inputs)]
    if isinstance(inputs, Mapping):
        return dict(inputs)
    if len(names) != 1:
        raise ValueError(f"the network has inputs {names}: pass a dict of arrays")
    return {names[0]: inputs}


def _execute(net: Any, inputs: Mapping[str, Any], device: str,
             keep: Iterable[str]) -> tuple[dict[str, Any], list[str]]:
    import torch

    from netdef.executor import compile

    executor = compile(net.definition, device, keep=[k for k in keep if k], dtype=torch.float64)
    return executor(inputs), executor.tensor_names


def _tolerance(net: Any, tolerance: float | None, relative: bool = False) -> tuple[str, float]:
    """(precision, tolerance): the given one, else the floor of the relative rule, else the fixed default."""
    precision = getattr(getattr(net, "policy", None), "name", "fp32")
    if tolerance is not None:
        tolerance = float(tolerance)
        if not (math.isfinite(tolerance) and tolerance > 0):
            raise ValueError(f"tolerance {tolerance!r}: expected a positive number")
        return precision, tolerance
    return precision, FP32_FLOOR if relative and precision == "fp32" else DEFAULT_TOLERANCE.get(precision, 1e-5)


def verify_network(net: Any, reference: Any, inputs: Any, device: str = "cpu",
                   tolerance: float | None = None, reference_inputs: Any = None) -> "VerifyReport":
    """Compare every module output of a netdef `Network` and its marked outputs with the torch reference.

    FP32 without `tolerance`: each layer is judged against PyTorch float32's own error there (module docstring).
    `reference_inputs`: what the reference reads where it differs from the definition's input (a uint8-input
    definition's pixels, normalized: `PixelNormalization.exact`).
    """
    import torch

    precision, tol = _tolerance(net, tolerance, relative=True)
    relative = tolerance is None and precision == "fp32"
    feeds = _definition_inputs(net, inputs)
    ref_feeds = feeds if reference_inputs is None else _definition_inputs(net, reference_inputs)
    expected, ref_outputs = reference_activations(reference, ref_feeds)
    if len(ref_outputs) != len(net.output_names):
        raise ValueError(f"the reference returns {len(ref_outputs)} outputs, the network declares "
                         f"{len(net.output_names)} ({net.output_names})")
    float32, f32_outputs = reference_activations(reference, ref_feeds, torch.float32) if relative else ({}, [])
    keep = set(net.module_outputs.values()) & _tensor_names(net) | set(net.output_names)
    produced, order = _execute(net, feeds, device, keep)
    layers, unmatched = _module_comparisons(net, produced, order, expected, tol, float32)
    for k, (name, ref) in enumerate(zip(net.output_names, ref_outputs)):
        f32 = f32_outputs[k] if k < len(f32_outputs) and _is_float(f32_outputs[k]) else None
        layers.append(_comparison(name, name, produced[name], ref, tol, True, f32))
    if unmatched:
        log.info("no reference value for %d module outputs: %s", len(unmatched), ", ".join(unmatched[:10]))
    return VerifyReport(layers, tol, precision, "pytorch", unmatched, relative, _quantized(net))


def _is_float(x: Any) -> bool:
    return bool(getattr(x, "is_floating_point", lambda: np.asarray(x).dtype.kind == "f")())


def _module_comparisons(net: Any, produced: Mapping[str, Any], order: list[str], expected: Mapping[str, Any],
                        tol: float, float32: Mapping[str, Any] | None = None
                        ) -> tuple[list["LayerComparison"], list[str]]:
    """One comparison per module output that has a reference value, in execution order; the rest unmatched."""
    position = {name: i for i, name in enumerate(order)}
    layers, unmatched = [], []
    for path, tensor in net.module_outputs.items():
        if path not in expected or tensor not in produced:
            unmatched.append(path)
            continue
        f32 = (float32 or {}).get(path)
        layers.append(_comparison(path, tensor, produced[tensor], expected[path], tol, False,
                                  f32 if f32 is not None and _is_float(f32) else None))
    layers.sort(key=lambda c: position.get(c.tensor, len(position)))
    return layers, unmatched


def verify_activations(net: Any, activations: Mapping[str, Any], inputs: Any = None, device: str = "cpu",
                       tolerance: float | None = None) -> "VerifyReport":
    """Compare with activations stored in an HDF5 file (module path -> output, plus "input").

    The root module's stored output ("output") is compared with a one-output network's output; where no
    output is stored, every compared layer must be within tolerance for the report to pass.
    """
    precision, tol = _tolerance(net, tolerance)
    if inputs is None:
        if "input" not in activations:
            raise ValueError("the stored activations have no 'input' entry: pass inputs")
        inputs = np.asarray(activations["input"])
    feeds = _definition_inputs(net, inputs)
    stored = set(activations)
    keep = ({t for p, t in net.module_outputs.items() if p in stored} & _tensor_names(net)) | set(net.output_names)
    produced, order = _execute(net, feeds, device, keep)
    layers, unmatched = _module_comparisons(net, produced, order, activations, tol)
    for name in net.output_names:
        # the exporter stores the root module's output as "output"; a one-output network's output is it
        key = name if name in stored else ROOT_OUTPUT if len(net.output_names) == 1 and ROOT_OUTPUT in stored else None
        if key is not None:
            layers.append(_comparison(name, name, produced[name], activations[key], tol, True))
    return VerifyReport(layers, tol, precision, "hdf5 activations", unmatched, quantized=_quantized(net))


def _quantized(net: Any) -> dict[str, int]:
    """What an INT8 Network quantizes (its quantizer's count, net.meta["int8"]); empty otherwise."""
    info = getattr(net, "meta", {}).get("int8") or {}
    return {k: int(info[k]) for k in ("activations", "weights") if k in info}


def _tensor_names(net: Any) -> set[str]:
    d = net.definition
    names = {d.get_input(i).name for i in range(d.num_inputs)}
    for i in range(d.num_layers):
        layer = d.get_layer(i)
        names.update(layer.get_output(k).name for k in range(layer.num_outputs))
    return names
