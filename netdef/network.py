"""The network being built: one INetworkDefinition plus naming scope and precision policy.

Modules find the network under construction through `current()` (set by `with Network(...)`), the way
a tkDNN layer adds itself to the network it is constructed in. Names are the contract:

- a layer is named after the module path (`layer1.0.conv1`), `path/op` when a module emits several
  layers (`act/sigmoid`), with `#k` appended on the k-th repeat of a name;
- the tensor a module returns is named after the module path (`#k` for its k-th call), and
  `module_outputs` maps path -> tensor name, which is what verification compares with PyTorch hooks.

Quantization is decided while defining: `net.quant` (netdef.quantize.policy.Quantizer) is what the ops ask where
INT8 goes; an FP32 definition records the same sites and emits nothing (docs/int8.md).
"""
from __future__ import annotations

import contextlib
import contextvars
import logging
from typing import Any, Iterator, Sequence

import numpy as np

from netdef import trt as shim
from netdef.engine import BuildSettings, Plan, build_engine, create_builder, create_network
from netdef.precision import PrecisionPolicy
from netdef.quantize.policy import Int8Settings, Quantizer

log = logging.getLogger("netdef.network")
_current: contextvars.ContextVar["Network | None"] = contextvars.ContextVar("netdef_network", default=None)

_NP_TO_TRT = {"float32": "FLOAT", "float16": "HALF", "int32": "INT32", "int64": "INT64", "int8": "INT8",
              "bool": "BOOL", "uint8": "UINT8"}


def trt_dtype(dtype: Any) -> Any:
    """TensorRT DataType for a numpy dtype."""
    return getattr(shim.binding().DataType, _NP_TO_TRT[np.dtype(dtype).name])


def np_dtype(dtype: Any) -> np.dtype:
    """numpy dtype for a TensorRT DataType."""
    name = getattr(dtype, "name", str(dtype)).split(".")[-1]
    for np_name, trt_name in _NP_TO_TRT.items():
        if trt_name == name:
            return np.dtype(np_name)
    raise TypeError(f"no numpy dtype for TensorRT {name}")


def current() -> "Network":
    net = _current.get()
    if net is None:
        raise RuntimeError("no netdef Network is being built: call modules inside `with Network(...) as net:`")
    return net


class Network:
    """Build context for one INetworkDefinition."""

    def __init__(self, name: str = "netdef", precision: str | PrecisionPolicy = "fp32", fp16_io: bool = False,
                 builder: Any = None, int8: Int8Settings | None = None) -> None:
        self.trt = shim.binding()
        self.features = shim.features()
        self.builder = builder or create_builder()
        self.definition = create_network(self.builder)
        self.definition.name = name
        if isinstance(precision, PrecisionPolicy):
            self.policy = precision
        else:
            self.policy = PrecisionPolicy(precision, strongly_typed=self.features.strongly_typed, fp16_io=fp16_io,
                                          int8=int8)
        if (self.policy.name == "int8") != (self.policy.int8 is not None):
            raise ValueError(f"network {name!r}: int8 settings (ranges from calibration) go with precision int8 and "
                             f"only with it (precision {self.policy.name}); a network class's define(precision="
                             "'int8', calibration=...) makes them")
        self.quant = Quantizer(self, self.policy.int8)
        self.module_outputs: dict[str, str] = {}
        self.output_names: list[str] = []
        self.plugins: list[dict[str, Any]] = []  # custom layers lowered as TensorRT plugins (for the sidecar)
        # conv outputs emitted with their norm folded in, awaiting that norm: tensor name -> (conv, norm, layer index)
        self.pending_folds: dict[str, tuple[str, str, int]] = {}
        self.meta: dict[str, Any] = {}
        self._scope: list[str] = []
        self._names: dict[str, int] = {}
        self._keep: list[np.ndarray] = []  # TensorRT holds pointers to weights until the build
        self._float32_depth = 0
        self._token: Any = None

    # --- context -------------------------------------------------------------------------------
    def __enter__(self) -> "Network":
        self._token = _current.set(self)
        return self

    def __exit__(self, exc_type: Any, *exc: Any) -> None:
        _current.reset(self._token)
        if exc_type is not None:
            return
        if self.pending_folds:
            missing = ", ".join(f"{conv} -> {norm}" for conv, norm, _ in self.pending_folds.values())
            raise ValueError(f"network {self.definition.name!r}: convolutions emitted with their norm folded in, "
                             f"but the norm never received their output ({missing}); apply the norm in forward "
                             "or declare netdef.nn.no_fold(norm)")
        if self.policy.name != "fp16":  # FP16 quantizes nothing and is calibrated on by nobody
            self.quant.finish()

    @contextlib.contextmanager
    def scope(self, name: str) -> Iterator[None]:
        """Names of layers added inside are prefixed with `name` (a module path is one scope)."""
        self._scope.append(name)
        try:
            yield
        finally:
            self._scope.pop()

    @contextlib.contextmanager
    def module_scope(self, path: str) -> Iterator[None]:
        """Layers added inside are named by a module's absolute path, whatever scope encloses the call."""
        saved, self._scope = self._scope, [path]
        try:
            yield
        finally:
            self._scope = saved

    @property
    def path(self) -> str:
        return ".".join(p for p in self._scope if p)

    def unique(self, name: str) -> str:
        k = self._names.get(name, 0)
        self._names[name] = k + 1
        return name if k == 0 else f"{name}#{k}"

    def name_layer(self, layer: Any, op: str | None = None) -> Any:
        """Name a layer after the current module path (and op); its outputs after the layer."""
        base = self.path
        if op:
            base = f"{base}/{op}" if base else op
        name = self.unique(base or layer.type.name.lower())
        layer.name = name
        for i in range(layer.num_outputs):
            layer.get_output(i).name = name if i == 0 else f"{name}:{i}"
        if self._float32_depth and not self.features.strongly_typed:
            self._constrain_float32(layer)
        return layer

    def record_module_output(self, path: str, tensor: Any) -> Any:
        """Name a module's output tensor after its path (`#k` for repeated calls) and remember it."""
        name = path
        k = 1
        while name in self.module_outputs:
            name = f"{path}#{k}"
            k += 1
        if tensor.name not in self.module_outputs.values() and not self._is_network_input(tensor):
            self.quant.rename(tensor.name, name)
            tensor.name = name
        self.module_outputs[name] = tensor.name
        return tensor

    def _is_network_input(self, tensor: Any) -> bool:
        return any(self.definition.get_input(i).name == tensor.name for i in range(self.definition.num_inputs))

    # --- precision -------------------------------------------------------------------------------
    @property
    def compute_dtype(self) -> np.dtype:
        return np.dtype(np.float32) if self._float32_depth else self.policy.compute_dtype

    @property
    def in_float32(self) -> bool:
        return self._float32_depth > 0

    def unquantized(self) -> Any:
        """Layers added inside are not quantized (an INT8 network's detection head, say); they run FP16."""
        return self.quant.unquantized()

    @staticmethod
    def trt_dtype(dtype: Any) -> Any:
        return trt_dtype(dtype)

    @contextlib.contextmanager
    def float32(self) -> Iterator[None]:
        """Layers added inside stay in FP32: explicit casts (strong typing) or precision constraints (weak); they
        are not quantized either."""
        self._float32_depth += 1
        try:
            yield
        finally:
            self._float32_depth -= 1

    def _constrain_float32(self, layer: Any) -> None:
        FLOAT, HALF = self.trt.DataType.FLOAT, self.trt.DataType.HALF
        if layer.type in (self.trt.LayerType.CONSTANT, self.trt.LayerType.SHAPE):
            return
        floating = [i for i in range(layer.num_outputs) if layer.get_output(i).dtype in (FLOAT, HALF)]
        if not floating:  # shape arithmetic and index layers: nothing to keep in FP32
            return
        layer.precision = FLOAT
        for i in floating:
            layer.set_output_type(i, FLOAT)

    def cast(self, tensor: Any, dtype: Any, op: str = "cast") -> Any:
        """Cast to a numpy/TensorRT dtype; no layer when it already has it."""
        target = dtype if not isinstance(dtype, (np.dtype, type, str)) else trt_dtype(dtype)
        if tensor.dtype == target:
            return tensor
        layer = self.definition.add_cast(tensor, target)
        return self.name_layer(layer, op).get_output(0)

    def to_compute(self, tensor: Any) -> Any:
        """Bring a floating tensor to the current compute dtype (strongly typed networks only need this)."""
        if not self.features.strongly_typed:
            return tensor
        if tensor.dtype not in (self.trt.DataType.FLOAT, self.trt.DataType.HALF):
            return tensor
        return self.cast(tensor, self.compute_dtype, "to_compute")

    # --- weights and constants -------------------------------------------------------------------------
    def keep(self, array: np.ndarray) -> np.ndarray:
        array = np.asarray(array)
        if not array.flags.c_contiguous:  # np.ascontiguousarray would turn a 0-D array into 1-D
            array = array.copy(order="C")
        self._keep.append(array)
        return array

    def weights(self, array: np.ndarray | None, dtype: Any = None) -> Any:
        """trt.Weights in the compute dtype (or `dtype`), kept alive until the build; None -> empty."""
        if array is None:
            return self.trt.Weights(trt_dtype(dtype or self.compute_dtype))
        return self.trt.Weights(self.keep(np.asarray(array, dtype=dtype or self.compute_dtype)))

    def constant(self, array: np.ndarray, dtype: Any = None, op: str = "const") -> Any:
        """A constant tensor; floating arrays take the compute dtype unless `dtype` says otherwise."""
        array = np.asarray(array)
        if dtype is None:
            dtype = self.compute_dtype if array.dtype.kind == "f" else array.dtype
        array = self.keep(np.asarray(array, dtype=dtype))
        layer = self.definition.add_constant(tuple(array.shape), self.trt.Weights(array))
        return self.name_layer(layer, op).get_output(0)

    # --- inputs and outputs -----------------------------------------------------------------------
    def add_input(self, name: str, shape: Sequence[int], dtype: Any = None) -> Any:
        """A network input (dim 0 = -1 for dynamic batch), cast to the compute dtype for the layers."""
        dtype = np.dtype(dtype or self.policy.io_dtype)
        if not all(isinstance(d, (int, np.integer)) and (d >= 1 or d == -1) for d in shape):
            raise ValueError(f"network {self.definition.name!r}: input '{name}' shape {tuple(shape)}: every dimension "
                             "must be a positive integer (-1: the dynamic batch); check the input size")
        tensor = self.definition.add_input(name, trt_dtype(dtype), tuple(shape))
        if dtype.kind == "f":
            with self.scope(name):
                tensor = self.to_compute(tensor)
        return tensor

    def add_pixel_input(self, name: str, shape: Sequence[int], normalization: Any) -> Any:
        """A UINT8 input (N, 3, H, W) of RGB pixels 0..255, made into the float input the network reads by its first
        layers, in FP32: `name/to_float`, `name/bgr` (a gather, for networks reading BGR), `name/normalize` (one
        per-channel scale and shift from `normalization`, a netdef.preprocess.PixelNormalization)."""
        pixels = self.add_input(name, shape, np.uint8)
        FLOAT = self.trt.DataType.FLOAT
        with self.scope(name), self.float32():
            x = self.name_layer(shim.from_uint8(self.definition, pixels, FLOAT), "to_float").get_output(0)
            if normalization.bgr:
                order = self.constant(np.array([2, 1, 0], np.int32), op="bgr/order")
                x = self.name_layer(self.definition.add_gather(x, order, 1), "bgr").get_output(0)
            scale, shift = (self.weights(v, np.float32) for v in normalization.scale_shift())
            layer = self.definition.add_scale_nd(x, self.trt.ScaleMode.CHANNEL, shift, scale,
                                                 self.weights(None, np.float32), 1)
            x = self.name_layer(layer, "normalize").get_output(0)
        with self.scope(name):
            return self.to_compute(x)

    def mark_output(self, tensor: Any, name: str, dtype: Any = None) -> Any:
        """Mark a network output under `name`, in the declared order; floats are cast to the I/O dtype."""
        if name in self.output_names:
            raise ValueError(f"output name {name!r} is declared twice")
        if tensor.dtype in (self.trt.DataType.FLOAT, self.trt.DataType.HALF):
            target = np.dtype(dtype or self.policy.io_dtype)
            if self.features.strongly_typed and np_dtype(tensor.dtype) != target:
                tensor = self.cast(tensor, target, f"output/{name}")
            elif tensor.name in self.module_outputs.values() or self._is_network_input(tensor):
                tensor = self.name_layer(self.definition.add_identity(tensor), f"output/{name}").get_output(0)
        self.quant.rename(tensor.name, name)
        tensor.name = name
        self.definition.mark_output(tensor)
        self.output_names.append(name)
        return tensor

    # --- build -----------------------------------------------------------------------------------------
    def build(self, settings: BuildSettings | None = None, **meta: Any) -> Plan:
        """Build with `build_serialized_network`."""
        settings = settings or BuildSettings(precision=self.policy.name)
        if settings.precision != self.policy.name:
            raise ValueError(f"network was defined for {self.policy.name}, settings ask for {settings.precision}")
        full = dict(self.meta)
        full.update(meta)
        full["plugins"] = list(self.plugins)
        full["output_order"] = list(self.output_names)
        return build_engine(self.definition, settings, self.builder, full)
