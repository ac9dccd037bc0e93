"""What every user-facing network class offers (ResNet, YOLOv4, ...).

A subclass implements `make_module` (the netdef module tree), `define` (emit the definition into a Network)
and `reference` (the PyTorch module with the same weights, for verification; it depends only on its
arguments, never on an earlier `define`); `module`, `int8_settings`, `build` and `from_hdf5` are shared.

A define() records the options that shaped its definition (besides precision, input size and calibration) with
`record_options`, in `net.meta[DEFINE_OPTIONS]`: the engine sidecar keeps them, `netdef infer --executor netdef`
passes them back to define() and `netdef verify` to reference() (those it takes), so both rebuild like with like.

`input_dtype="uint8"` (every define()): the input holds RGB pixels 0..255, already resized / letterboxed as the
network's preprocessing does, and the engine normalizes them itself (`image_input`), as the class declares
(`pixels`, a netdef.preprocess.PixelNormalization; the weights file's mean/std attributes where it has them).
Calibration always runs the float-input definition: the tensors it keys on have the same names in both.

`side_class` makes one side's class of a network written once: a `...Layers` class (architecture and forward)
on netdef's or torch's Module, with that side's namespace and ops as class attributes.
"""
from __future__ import annotations

import os
from dataclasses import replace
from typing import Any, Mapping, Sequence

import numpy as np

from netdef.engine import BuildSettings, Plan
from netdef.module import Module
from netdef.network import Network
from netdef.sidecar import INPUT_DTYPES


DEFINE_OPTIONS = "define_options"  # net.meta key: {define() option: value} (JSON values)


def non_default_choices(owner: str, choices: Mapping[str, Sequence[str]], **given: str) -> dict[str, str]:
    """Check define() options that take one of fixed `choices` (the default first) and return those given a value
    other than their default: what `record_options` records and what names a variant engine."""
    for name, value in given.items():
        if value not in choices[name]:
            raise ValueError(f"{owner}: {name}={value!r}: expected one of {', '.join(choices[name])}")
    return {name: value for name, value in given.items() if value != choices[name][0]}


def side_class(name: str, layers: type, base: type, module: str, **attrs: Any) -> type:
    """`layers` (a class written once against `self.ns` and the side ops in `attrs`) on `base` (netdef.nn.Module
    or torch.nn.Module), named `name` in `module`."""
    return type(name, (layers, base), {"__module__": module, "__doc__": layers.__doc__, **attrs})


class NetworkModel:
    arch: str = ""
    input_name: str = "input"
    pixels: Any = None  # netdef.preprocess.PixelNormalization: how the float input is made from 8-bit RGB pixels

    def __init__(self, weights: Any, path: str | os.PathLike | None = None) -> None:
        self.weights = weights  # a mapping of dotted names -> arrays (weights_export's WeightsFile)
        self.path = path
        self._modules: dict[Any, Module] = {}

    @classmethod
    def from_hdf5(cls, path: str | os.PathLike) -> "NetworkModel":
        from weights_export.hdf5 import WeightsFile

        return cls(WeightsFile(path), path)

    # --- to implement ----------------------------------------------------------------------------
    def make_module(self, input_size: Any = None) -> Module:
        """A new netdef module tree for `input_size` (weights not loaded yet)."""
        raise NotImplementedError

    def module_key(self, input_size: Any = None) -> Any:
        """What a module tree depends on besides the weights: None (one tree) unless the tree depends on the size."""
        return None

    def define(self, precision: str = "fp32", input_size: tuple[int, int] | None = None,
               fp16_io: bool = False, **options: Any) -> Network:
        """A Network holding the definition (inputs with a dynamic batch dim, outputs marked), not built."""
        raise NotImplementedError

    def reference(self) -> Any:
        """The PyTorch module with the same weights (imports torch)."""
        raise NotImplementedError

    def sample_input(self, batch: int = 1, input_size: tuple[int, int] | None = None, seed: int = 0) -> np.ndarray:
        raise NotImplementedError

    # --- shared --------------------------------------------------------------------------------------
    def module(self, input_size: Any = None) -> Module:
        """The netdef module tree with the weights loaded (every problem reported at once), made once per
        `module_key`: loading reads every tensor, and defining never changes the loaded arrays."""
        key = self.module_key(input_size)
        if key not in self._modules:
            origin = os.fspath(self.path) if self.path is not None else "weights"
            self._modules[key] = self.make_module(input_size).load_weights(self.weights, origin=origin)
        return self._modules[key]

    def load_reference(self, module: Any) -> Any:
        """`module` (this network's torch twin) with these weights as float32, in eval mode; every parameter and
        buffer it needs must be there (all missing names reported at once)."""
        import torch

        names = [k for k in module.state_dict() if not k.endswith("num_batches_tracked")]
        missing = [k for k in names if k not in self.weights]
        if missing:
            origin = os.fspath(self.path) if self.path is not None else "weights"
            raise ValueError(f"{origin}: the {self.arch} reference needs {len(missing)} tensor(s) the weights lack: "
                             f"{', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}")
        module.load_state_dict({k: torch.as_tensor(np.asarray(self.weights[k], dtype=np.float32)) for k in names},
                               strict=False)
        return module.eval()

    @staticmethod
    def record_options(net: Network, **options: Any) -> None:
        """Record the define() options that shaped `net` (module docstring): what a rebuild passes back."""
        net.meta.setdefault(DEFINE_OPTIONS, {}).update(options)

    def normalization(self) -> Any:
        """The network's PixelNormalization: the class's `pixels`, with the weights file's mean/std where present."""
        if self.pixels is None:
            raise NotImplementedError(f"{self.arch or type(self).__name__}: declares no pixel normalization, so it "
                                      "cannot take uint8 input")
        attrs = getattr(self.weights, "attrs", None) or {}
        found = {k: tuple(float(v) for v in np.ravel(attrs[k])) for k in ("mean", "std") if attrs.get(k) is not None}
        return replace(self.pixels, **found)

    def image_input(self, net: Network, shape: tuple[int, ...], input_dtype: str = "float32") -> Any:
        """The network's image input: float32 as its preprocessing makes it, or uint8 RGB pixels the first layers
        normalize (recorded in the sidecar: `input_dtype`, `pixels`, and the define option)."""
        if input_dtype not in INPUT_DTYPES:
            raise ValueError(f"{self.arch}: input_dtype={input_dtype!r}: expected one of {', '.join(INPUT_DTYPES)}")
        net.meta["input_dtype"] = input_dtype
        if input_dtype == "float32":
            return net.add_input(self.input_name, shape)
        norm = self.normalization()
        net.meta["pixels"] = norm.as_meta()
        self.record_options(net, input_dtype=input_dtype)
        return net.add_pixel_input(self.input_name, shape, norm)

    def int8_settings(self, precision: str, calibration: Any, skip: tuple[str, ...] = (),
                      input_size: Any = None) -> Any:
        """The `int8=` of an INT8 definition's Network (None for other precisions): ranges from `calibration` (a
        cache, checked against these weights - the file when there is one, else the arrays -, an amax mapping or
        data to calibrate on first) and the module paths in `skip` kept in floating point (netdef.quantize)."""
        if precision != "int8":
            return None
        from netdef import quantize

        return quantize.settings(calibration, skip, weights=self.path if self.path is not None else self.weights,
                                 model=self, input_size=input_size)

    def build(self, precision: str = "fp32", batch: Any = 1, input_size: tuple[int, int] | None = None,
              settings: BuildSettings | None = None, **options: Any) -> Plan:
        """Define and build an engine plan; `batch` is N or (min, opt, max)."""
        if settings is None:
            settings = BuildSettings(precision=precision, batch=batch)
        net = self.define(precision=settings.precision, input_size=input_size, **options)
        meta: dict[str, Any] = {"arch": self.arch}
        if self.path is not None:
            from netdef.engine import sha256_file

            meta["weights_file"] = os.path.basename(os.fspath(self.path))
            meta["weights_sha256"] = sha256_file(self.path)
        return net.build(settings, **meta)
