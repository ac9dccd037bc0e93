"""The one place that imports TensorRT.

Picks `tensorrt` when importable, else `tensorrt_rtx`; `NETDEF_TRT=tensorrt|tensorrt_rtx` forces one.
Everything else asks this module for the binding (`binding()`) and for feature probes (`features()`),
never for version strings: behaviour is decided by what the binding has, not by what it is called.
"""
from __future__ import annotations

import importlib
import logging
import os
from collections import deque
from dataclasses import asdict, dataclass
from types import ModuleType
from typing import Any

FLAVORS = ("tensorrt", "tensorrt_rtx")
INSTALL_HINT = (
    "Install one TensorRT Python binding: `pip install tensorrt-rtx-cu13==1.7.1.116` "
    "(TensorRT-RTX, builds engines on the CPU; or `pip install -e \".[rtx]\"` in a netdef checkout), "
    "or full TensorRT (`pip install tensorrt` from NVIDIA's package index; TensorRT 8.6.0 installs from PyPI for Python 3.10)."
)

log = logging.getLogger("netdef.trt")
_binding: ModuleType | None = None


class TensorRTNotFound(ImportError):
    pass


def binding() -> ModuleType:
    """The imported TensorRT module (tensorrt or tensorrt_rtx), imported once on first use."""
    global _binding
    if _binding is None:
        _binding = _import_binding(os.environ.get("NETDEF_TRT", "").strip())
    return _binding


def _import_binding(forced: str) -> ModuleType:
    if forced and forced not in FLAVORS:
        raise ValueError(f"NETDEF_TRT={forced!r}: expected one of {', '.join(FLAVORS)}")
    errors = []
    for name in [forced] if forced else list(FLAVORS):
        try:
            return importlib.import_module(name)
        except ImportError as exc:  # a broken install is reported with the hint, not as a traceback
            errors.append(f"{name}: {exc}")
    raise TensorRTNotFound(f"No TensorRT binding could be imported ({'; '.join(errors)}). {INSTALL_HINT}")


@dataclass(frozen=True)
class Features:
    """What a binding can do, probed from its attributes (works on a real module or a stand-in)."""

    flavor: str
    version: str
    strongly_typed: bool  # NetworkDefinitionCreationFlag.STRONGLY_TYPED exists: we build strongly typed networks
    explicit_batch_flag: bool  # EXPLICIT_BATCH must be passed (8.6); deprecated and skipped where strong typing exists
    progress_monitor: bool
    plugin_v2_layers: bool  # add_plugin_v2 (C++ creators only in 8.6)
    plugin_v3_layers: bool  # add_plugin_v3: Python IPluginV3 plugins can be added
    python_plugins: bool  # IPluginV3 + IPluginCreatorV3One subclassable from Python and addable as layers
    nms_layer: bool
    quantize_layers: bool
    cast_layer: bool
    fp16_builder_flag: bool  # weakly typed precision control exists
    int8_builder_flag: bool
    precision_constraints: bool  # OBEY_PRECISION_CONSTRAINTS exists
    tactic_sources: bool
    optimization_level: bool
    fill_output_type: bool  # add_fill(shape, op, output_type): 10+; 8.6 takes the type from its start/delta inputs
    sample_modes: tuple[str, ...]  # ISliceLayer modes (SampleMode, SliceMode in 8.x): FILL, CLAMP, REFLECT, ...

    @property
    def typing(self) -> str:
        return "strong" if self.strongly_typed else "weak"

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["typing"] = self.typing
        return d


def probe(mod: Any) -> Features:
    """Feature probes for a TensorRT-like module; tests feed stand-ins for bindings not installed here."""
    net_flags = getattr(mod, "NetworkDefinitionCreationFlag", None)
    builder_flags = getattr(mod, "BuilderFlag", None)
    network = getattr(mod, "INetworkDefinition", None)
    config = getattr(mod, "IBuilderConfig", None)
    strongly = hasattr(net_flags, "STRONGLY_TYPED")
    v3 = hasattr(network, "add_plugin_v3")
    sample_mode = getattr(mod, "SampleMode", None) or getattr(mod, "SliceMode", None)
    return Features(
        flavor=getattr(mod, "__name__", "unknown"),
        version=str(getattr(mod, "__version__", "0")),
        strongly_typed=strongly,
        explicit_batch_flag=hasattr(net_flags, "EXPLICIT_BATCH") and not strongly,
        progress_monitor=hasattr(mod, "IProgressMonitor") and hasattr(config, "progress_monitor"),
        plugin_v2_layers=hasattr(network, "add_plugin_v2"),
        plugin_v3_layers=v3,
        python_plugins=v3 and hasattr(mod, "IPluginV3") and hasattr(mod, "IPluginCreatorV3One"),
        nms_layer=hasattr(network, "add_nms"),
        quantize_layers=hasattr(network, "add_quantize") and hasattr(network, "add_dequantize"),
        cast_layer=hasattr(network, "add_cast"),
        fp16_builder_flag=hasattr(builder_flags, "FP16"),
        int8_builder_flag=hasattr(builder_flags, "INT8"),
        precision_constraints=hasattr(builder_flags, "OBEY_PRECISION_CONSTRAINTS"),
        tactic_sources=hasattr(mod, "TacticSource") and hasattr(config, "set_tactic_sources"),
        optimization_level=hasattr(config, "builder_optimization_level"),
        fill_output_type="output_type" in (getattr(getattr(network, "add_fill", None), "__doc__", None) or ""),
        sample_modes=tuple(getattr(sample_mode, "__members__", {}) or ()),
    )


_features: Features | None = None


def features() -> Features:
    global _features
    if _features is None:
        _features = probe(binding())
    return _features


def downcast(layer: Any) -> Any:
    """The layer as its own interface (IConvolutionLayer, ...), so its attributes can be read back.

    The bindings return every layer of `get_layer` as ILayer; the interface is chosen from `layer.type`
    (downcasting to a wrong one can crash the process). Returns the same object."""
    trt = binding()
    if type(layer) is not trt.ILayer:  # added layers come typed; only get_layer's need the downcast
        return layer
    interface = _INTERFACES.get(layer.type.name)
    if interface is None or not hasattr(trt, interface):
        raise TypeError(f"layer {layer.name!r}: no interface known for layer type {layer.type.name}")
    layer.__class__ = getattr(trt, interface)  # the one place netdef changes a layer's Python class
    return layer


# LayerType name -> interface class name (on every binding that has the layer type)
_INTERFACES = {
    "ACTIVATION": "IActivationLayer", "ASSERTION": "IAssertionLayer", "CAST": "ICastLayer",
    "CONCATENATION": "IConcatenationLayer", "CONSTANT": "IConstantLayer", "CONVOLUTION": "IConvolutionLayer",
    "DECONVOLUTION": "IDeconvolutionLayer", "DEQUANTIZE": "IDequantizeLayer", "ELEMENTWISE": "IElementWiseLayer",
    "FILL": "IFillLayer", "GATHER": "IGatherLayer", "IDENTITY": "IIdentityLayer",
    "MATRIX_MULTIPLY": "IMatrixMultiplyLayer", "NMS": "INMSLayer", "PADDING": "IPaddingLayer",
    "PARAMETRIC_RELU": "IParametricReLULayer", "PLUGIN_V2": "IPluginV2Layer", "PLUGIN_V3": "IPluginV3Layer",
    "POOLING": "IPoolingLayer", "QUANTIZE": "IQuantizeLayer", "REDUCE": "IReduceLayer", "RESIZE": "IResizeLayer",
    "SCALE": "IScaleLayer", "SELECT": "ISelectLayer", "SHAPE": "IShapeLayer", "SHUFFLE": "IShuffleLayer",
    "SLICE": "ISliceLayer", "SOFTMAX": "ISoftMaxLayer", "SQUEEZE": "ISqueezeLayer", "TOPK": "ITopKLayer",
    "UNARY": "IUnaryLayer", "UNSQUEEZE": "IUnsqueezeLayer",
}


def sample_mode(name: str) -> Any:
    """The ISliceLayer mode `name` (FILL, CLAMP, REFLECT, WRAP, STRICT_BOUNDS) of this binding."""
    trt = binding()
    if name not in features().sample_modes:
        feat = features()
        raise NotImplementedError(f"TensorRT {feat.flavor} {feat.version} has no slice mode {name} "
                                  f"(it has {', '.join(feat.sample_modes) or 'none'})")
    return getattr(getattr(trt, "SampleMode", None) or trt.SliceMode, name)


def from_uint8(network: Any, tensor: Any, dtype: Any) -> Any:
    """The layer turning a UINT8 tensor (8-bit pixels of a network input) into floating point `dtype`.

    Strongly typed networks cast; weakly typed ones (TensorRT 8.6) convert through an identity layer with its
    output type set, the path 8.6 documents for UINT8 network inputs."""
    trt, feat = binding(), features()
    if not hasattr(trt.DataType, "UINT8"):
        raise NotImplementedError(f"TensorRT {feat.flavor} {feat.version} has no UINT8 data type")
    if feat.strongly_typed:
        return network.add_cast(tensor, dtype)
    layer = network.add_identity(tensor)
    layer.precision = dtype
    layer.set_output_type(0, dtype)
    return layer


def add_fill(network: Any, shape: Any, operation: Any, output_type: Any) -> Any:
    """network.add_fill with an output type where the binding takes one (8.6 derives it from the inputs
    start/delta, which callers must set in that type)."""
    if features().fill_output_type:
        return network.add_fill(shape, operation, output_type)
    return network.add_fill(shape, operation)


_nms_builds: bool | None = None


def nms_layer_builds() -> bool:
    """Whether this binding can build an NMS layer: TensorRT-RTX 1.7 has `add_nms` but no implementation
    ("has no runners that implement it"), so `features().nms_layer` alone does not tell. Probed once by
    building a tiny network (about half a second), with TensorRT's error for the failing case silenced."""
    global _nms_builds
    if _nms_builds is None:
        _nms_builds = features().nms_layer and _probe_nms_build()
    return _nms_builds


def _probe_nms_build() -> bool:
    import numpy as np

    trt = binding()
    builder = trt.Builder(logger())
    network = builder.create_network(network_creation_flags(features(), trt))
    boxes = network.add_input("boxes", trt.DataType.FLOAT, (1, 4, 4))
    scores = network.add_input("scores", trt.DataType.FLOAT, (1, 4, 2))
    limit = np.array(2, np.int32)
    layer = network.add_nms(boxes, scores, network.add_constant((), trt.Weights(limit)).get_output(0))
    for i in range(2):
        network.mark_output(layer.get_output(i))
    quiet = logging.getLogger("tensorrt")
    was_disabled, quiet.disabled = quiet.disabled, True
    try:
        plan = builder.build_serialized_network(network, builder.create_builder_config())
    finally:
        quiet.disabled = was_disabled
    log.debug("NMS layer probe on %s %s: %s", features().flavor, features().version,
              "builds" if plan is not None else "cannot build")
    return plan is not None


def network_creation_flags(feat: Features, mod: Any) -> int:
    """Creation flags: STRONGLY_TYPED where it exists, EXPLICIT_BATCH where it is still required."""
    flags = 0
    cf = mod.NetworkDefinitionCreationFlag
    if feat.strongly_typed:
        flags |= 1 << int(cf.STRONGLY_TYPED)
    if feat.explicit_batch_flag:
        flags |= 1 << int(cf.EXPLICIT_BATCH)
    return flags


# --- logger bridge ---------------------------------------------------------------------------------

_LEVELS = {
    "INTERNAL_ERROR": logging.CRITICAL,
    "ERROR": logging.ERROR,
    "WARNING": logging.WARNING,
    "INFO": logging.INFO,
    "VERBOSE": logging.DEBUG,
}
_logger: Any = None


def severity_level(severity: Any) -> int:
    """Python logging level for a TensorRT severity (enum member or its name)."""
    name = getattr(severity, "name", str(severity)).split(".")[-1]
    return _LEVELS.get(name, logging.INFO)


def logger() -> Any:
    """The process-wide TensorRT logger, forwarding to the `tensorrt` Python logger.

    It keeps the last 200 warnings/errors so a failed build can quote them.
    """
    global _logger
    if _logger is None:
        trt = binding()

        class LoggingBridge(trt.ILogger):
            def __init__(self) -> None:
                trt.ILogger.__init__(self)
                self.pylog = logging.getLogger("tensorrt")
                self.recent: deque[str] = deque(maxlen=200)

            def log(self, severity: Any, msg: str) -> None:
                level = severity_level(severity)
                if level >= logging.WARNING:
                    self.recent.append(f"[{logging.getLevelName(level)}] {msg}")
                self.pylog.log(level, msg)

        _logger = LoggingBridge()
    return _logger


def __getattr__(name: str) -> Any:  # `from netdef.trt import trt` gives the binding, imported lazily
    if name == "trt":
        return binding()
    raise AttributeError(name)
