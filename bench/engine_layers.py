"""What TensorRT built: an engine's layer list (IEngineInspector, DETAILED profiling verbosity) and its counts.

`engine_layers(engine)` reads the inspector's JSON; `layer_counts(layers)` counts what issue 14 compares between
netdef's INT8 engine and TensorRT's implicit-INT8 engine (docs/int8.md section 4 predicts them): engine layers,
reformats that copy (`Reformat` layers; the free `NoOp` "Reformatting CopyNode"s apart), the copies that dequantize
a tensor for a float reader (`.../dequantize_clone_N`), convolution kernels of every kind (implicit GEMM, JIT, GEMM,
conv + pool) by input/output precision (the resolved tensor formats; without them the tactic name, e.g.
`..._i8i8_i8i32_f32_...` = INT8 in, INT8 out), INT8-weight convolutions, horizontally merged convolutions
(`a || b`), pointwise kernels (and those reading and writing only INT8) and standalone quantize layers.
Counting is pure JSON (runs anywhere; tests use the stored reference engine). The inspector part needs TensorRT.

    python bench/engine_layers.py layers.json.gz [...]      # counts of saved layer lists
"""
from __future__ import annotations

import gzip
import json
import re
import sys
from collections import Counter
from pathlib import Path
from typing import Any

CONV_TYPES = ("CaskConvolution", "Convolution", "CaskDeconvolution", "CudnnConvolution", "CaskJitConv",
              "CaskGemmConvolution", "CaskConvActPool")
POINTWISE_TYPES = ("PointWiseV2", "PointWise")
_TACTIC_TYPES = re.compile(r"_(i8|f16|f32|tf32|bf16)(i8|f16|f32|tf32|bf16)_")
_FORMAT_TYPES = (("Int8", "i8"), ("FP16", "f16"), ("Half", "f16"), ("FP32", "f32"), ("Float", "f32"),
                 ("BF16", "bf16"))


def read_layers(path: str | Path) -> list[dict[str, Any]]:
    """Layers from an inspector JSON file (.json or .json.gz; TensorRT writes raw control characters in
    pointwise source, hence the non-strict parse)."""
    raw = Path(path).read_bytes()
    if str(path).endswith(".gz"):
        raw = gzip.decompress(raw)
    return parse_layers(raw.decode())


def parse_layers(text: str) -> list[dict[str, Any]]:
    doc = json.loads(text, strict=False)
    layers = doc["Layers"] if isinstance(doc, dict) else doc
    return [layer if isinstance(layer, dict) else {"Name": str(layer)} for layer in layers]


def engine_layers(engine: Any, context: Any = None) -> tuple[str, list[dict[str, Any]]]:
    """(raw JSON text, layers) of a deserialized ICudaEngine (TensorRT). With an execution context whose input
    shapes are set, tensor formats and data types are resolved too (else "N/A due to dynamic shapes")."""
    from netdef import trt as shim

    trt = shim.binding()
    inspector = engine.create_engine_inspector()
    if context is not None:
        inspector.execution_context = context
    text = inspector.get_engine_information(trt.LayerInformationFormat.JSON)
    return text, parse_layers(text)


def _tensor_type(tensor: Any) -> str | None:
    """`i8`, `f16`, `f32`... of a resolved tensor format ("Thirty-two wide channel vectorized row major Int8
    format"), None where the inspector had no shapes ("N/A due to dynamic shapes")."""
    text = str(tensor.get("Format/Datatype", "")) if isinstance(tensor, dict) else ""
    return next((short for word, short in _FORMAT_TYPES if word in text.split()), None)


def conv_precision(layer: dict[str, Any]) -> str:
    """"in->out" of a convolution kernel (`i8->i8`, `i8->f16`, `f16->f16`): from its resolved data input and
    output formats (a JIT kernel's tactic name says `i8i8` while it writes FP16), else from its tactic name; "?"."""
    ins, outs = layer.get("Inputs") or [None], layer.get("Outputs") or [None]
    a, b = _tensor_type(ins[0]), _tensor_type(outs[0])
    if a and b:
        return f"{a}->{b}"
    m = _TACTIC_TYPES.search(str(layer.get("TacticName", "")))
    return f"{m.group(1)}->{m.group(2)}" if m else "?"


def _is_noop_reformat(layer: dict[str, Any]) -> bool:
    return layer.get("LayerType") == "NoOp" and str(layer.get("Name", "")).startswith("Reformatting CopyNode")


def _is_int8_pointwise(layer: dict[str, Any]) -> bool:
    """A pointwise or element-wise kernel that reads and writes only INT8 tensors (resolved formats)."""
    if layer.get("LayerType") not in POINTWISE_TYPES + ("ElementWise",):
        return False
    types = [_tensor_type(t) for t in (layer.get("Inputs") or []) + (layer.get("Outputs") or [])]
    return bool(types) and all(t == "i8" for t in types)


def _is_standalone_quantize(layer: dict[str, Any]) -> bool:
    name = str(layer.get("Name", ""))
    return layer.get("LayerType") in ("Quantize", "Dequantize") or (
        "+" not in name and (name.endswith("/quantize") or name.endswith("/dequantize")))


def layer_counts(layers: list[dict[str, Any]]) -> dict[str, Any]:
    convs = [layer for layer in layers if layer.get("LayerType") in CONV_TYPES]
    weights = Counter(str((layer.get("Weights") or layer.get("ConvWeights") or {}).get("Type", "?")) for layer in convs)
    precisions = Counter(conv_precision(layer) for layer in convs)
    return {
        "layers": len(layers),
        "reformats": sum(layer.get("LayerType") == "Reformat" for layer in layers),
        "noop_reformats": sum(_is_noop_reformat(layer) for layer in layers),
        "dequantize_copies": sum(layer.get("LayerType") == "Reformat" and "/dequantize_clone" in
                                 str(layer.get("Name", "")) for layer in layers),
        "convolutions": len(convs),
        "int8_weight_convolutions": weights.get("Int8", 0),
        "int8_input_convolutions": sum(n for p, n in precisions.items() if p.startswith("i8")),
        "conv_precisions": dict(sorted(precisions.items())),
        "merged_convolutions": sum(" || " in str(layer.get("Name", "")) for layer in convs),
        "pointwise": sum(layer.get("LayerType") in POINTWISE_TYPES for layer in layers),
        "int8_pointwise": sum(_is_int8_pointwise(layer) for layer in layers),
        "elementwise": sum(layer.get("LayerType") == "ElementWise" for layer in layers),
        "standalone_quantize": sum(_is_standalone_quantize(layer) for layer in layers),
        "layer_types": dict(sorted(Counter(str(layer.get("LayerType", "?")) for layer in layers).items())),
        "output_types": dict(sorted(Counter(_output_type(layer) for layer in layers).items())),
    }


def _output_type(layer: dict[str, Any]) -> str:
    """The data type of a layer's first output ("Int8", "Half", "Float"; "N/A" without resolved shapes)."""
    outputs = layer.get("Outputs") or [{}]
    text = str(outputs[0].get("Format/Datatype", "?")) if isinstance(outputs[0], dict) else "?"
    return "N/A" if text.startswith("N/A") else text.split(" ")[0]


def main() -> int:
    for path in sys.argv[1:]:
        print(path, json.dumps(layer_counts(read_layers(path)), indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
