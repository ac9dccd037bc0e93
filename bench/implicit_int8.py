"""The anchor row of issue 14: the ONNX path with TensorRT's own implicit INT8 calibration (TensorRT 8.6).

`calibrator(data, batch, cache)`: an IInt8EntropyCalibrator2 over the same calibration array netdef calibrates
on (`<model>_calib.npy`), in batches of the calibration profile's size; TensorRT's calibration cache is kept
beside it, so a rebuild skips calibration. `builder_config(adjust)` lets bench/gpu.py add what netdef's
builder configuration does not have (profiling verbosity, the calibrator) to every build of a run.
bench/ is the only place the deprecated calibrator may appear: netdef itself calibrates with its executor and
writes explicit Q/DQ (TensorRT 11 removed the calibrator).
"""
from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

import netdef.engine as engine
from netdef import trt as shim
from netdef.atomic import atomic_path

Adjust = Callable[[Any, Any, Any], None]  # (config, builder, network)


@contextlib.contextmanager
def builder_config(*adjust: Adjust) -> Iterator[None]:
    """Builds inside see netdef's builder configuration with `adjust(config, builder, network)` applied after it."""
    original = engine.configure

    def configure(builder: Any, network: Any, settings: Any) -> Any:
        config = original(builder, network, settings)
        for fn in adjust:
            fn(config, builder, network)
        return config

    engine.configure = configure
    try:
        yield
    finally:
        engine.configure = original


def detailed_profiling(config: Any, builder: Any, network: Any) -> None:
    """Layer parameters and kernels in the engine inspector (what the layer counts read)."""
    config.profiling_verbosity = shim.binding().ProfilingVerbosity.DETAILED


def with_layer_lists(fn: Callable[..., Any], *args: Any) -> Any:
    """fn(*args) with every engine it builds keeping its layers' formats and kernels (`detailed_profiling`), for
    the layer lists the benchmarks record."""
    with builder_config(detailed_profiling):
        return fn(*args)


def calibrator(data: np.ndarray, batch: int, cache: Path) -> Any:
    """An IInt8EntropyCalibrator2 serving `data` (N, C, H, W) float32 in full batches of `batch`."""
    from device_array import CudaArray

    trt = shim.binding()

    class EntropyCalibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self) -> None:
            trt.IInt8EntropyCalibrator2.__init__(self)
            self.data, self.batch, self.next = data, batch, 0
            self.device = CudaArray((batch, *data.shape[1:]), np.float32)
            self.started: float | None = None
            self.seconds: float | None = None
            self.batches = 0

        def get_batch_size(self) -> int:
            return self.batch

        def get_batch(self, names: Any, *args: Any) -> Any:
            if self.started is None:
                self.started = time.perf_counter()
            if self.next + self.batch > len(self.data):
                return None
            self.device.copy_from(self.data[self.next:self.next + self.batch])
            self.next += self.batch
            self.batches += 1
            return [self.device.buf.ptr]

        def read_calibration_cache(self) -> Any:
            return cache.read_bytes() if cache.exists() else None

        def write_calibration_cache(self, blob: Any) -> None:
            if self.started is not None:
                self.seconds = time.perf_counter() - self.started
            with atomic_path(cache) as tmp:
                tmp.write_bytes(bytes(blob))

    if len(data) < batch:
        raise ValueError(f"calibration data has {len(data)} samples, fewer than one batch of {batch}")
    return EntropyCalibrator()


def implicit_int8(calib: Any) -> Adjust:
    """INT8 (with the FP16 flag the fp16 settings already set) calibrated by `calib` on full batches."""

    def adjust(config: Any, builder: Any, network: Any) -> None:
        trt = shim.binding()
        config.set_flag(trt.BuilderFlag.INT8)
        config.int8_calibrator = calib
        profile = builder.create_optimization_profile()
        for i in range(network.num_inputs):
            t = network.get_input(i)
            shape = (calib.batch, *tuple(t.shape)[1:])
            profile.set_shape(t.name, shape, shape, shape)
        config.set_calibration_profile(profile)

    return adjust
