"""Engine building, saving and loading: the build utilities every network uses.

`build_engine` takes a finished INetworkDefinition and returns a `Plan` (serialized bytes plus the
metadata that goes into the JSON sidecar). `save_engine` writes plan + sidecar as one (a kill at any
instant leaves the old pair or the new pair: netdef.atomic.write_pair); `load_engine` checks the sidecar
(netdef.sidecar) before handing the plan to TensorRT, and the engine against the sidecar after.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np

from netdef import trt as shim
from netdef.atomic import atomic_path, recover_pair, refuse_overwriting_inputs, sha256_file, write_pair
from netdef.sidecar import (SidecarError, check_engine, check_fields, definition_digest, enum_name,
                            recorded_plan_sha256, seal)

log = logging.getLogger("netdef.engine")

PRECISIONS = ("fp32", "fp16", "int8")
OPTIMIZATION_LEVELS = range(0, 6)  # TensorRT's builder_optimization_level: 0..5
# How a serialized timing cache begins (measured: TensorRT-RTX 1.7). Other bindings' caches are recognised by
# the binding itself accepting them (it logs a deserialization error for anything else).
TIMING_CACHE_TAG = b"ptrt"


class BuildError(RuntimeError):
    pass


class EngineFileError(RuntimeError):
    pass


@dataclass
class BuildSettings:
    """Builder configuration for one build. `batch` is (min, opt, max) for every input's dim 0."""

    precision: str = "fp32"
    batch: tuple[int, int, int] = (1, 1, 1)
    workspace_mib: int | None = None
    optimization_level: int | None = None
    timing_cache: str | os.PathLike | None = None
    progress: bool = True
    tf32: bool = True
    # cuBLAS/cuDNN tactic sources are off: TensorRT's own kernels only (and the only ones the GPU bundle links).
    tensorrt_tactics_only: bool = True

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision {self.precision!r}: expected one of {', '.join(PRECISIONS)}")
        self.batch = parse_batch(self.batch)
        integer = (int, np.integer)
        if self.workspace_mib is not None and not (isinstance(self.workspace_mib, integer) and self.workspace_mib >= 1):
            raise ValueError(f"workspace {self.workspace_mib!r} MiB: expected a positive integer")
        if self.optimization_level is not None and not (isinstance(self.optimization_level, integer)
                                                        and self.optimization_level in OPTIMIZATION_LEVELS):
            raise ValueError(f"optimization level {self.optimization_level!r}: expected an integer in 0..5")


def parse_batch(batch: int | str | Iterable[int]) -> tuple[int, int, int]:
    """1 -> (1,1,1); "1:8:32" -> (1,8,32); (1, 8, 32) as is; checks min <= opt <= max."""
    if isinstance(batch, int):
        values = (batch, batch, batch)
    elif isinstance(batch, str):
        parts = [int(p) for p in batch.split(":")]
        values = tuple(parts * 3 if len(parts) == 1 else parts)
    else:
        values = tuple(int(b) for b in batch)
    if len(values) != 3 or not (1 <= values[0] <= values[1] <= values[2]):
        raise ValueError(f"batch {batch!r}: expected N or MIN:OPT:MAX with 1 <= MIN <= OPT <= MAX")
    return values  # type: ignore[return-value]


@dataclass
class Plan:
    """A serialized engine and what the sidecar records about it."""

    data: bytes
    meta: dict[str, Any] = field(default_factory=dict)

    def __bytes__(self) -> bytes:
        return self.data


def create_builder() -> Any:
    return shim.binding().Builder(shim.logger())


def create_network(builder: Any) -> Any:
    """A network definition of the binding's generation: strongly typed where it can be."""
    trt = shim.binding()
    return builder.create_network(shim.network_creation_flags(shim.features(), trt))


def _progress_monitor(trt: Any) -> Any:
    from tqdm import tqdm

    class TqdmProgress(trt.IProgressMonitor):
        """Builder phases as nested tqdm bars (the outermost one shows the overall progress)."""

        def __init__(self) -> None:
            trt.IProgressMonitor.__init__(self)
            self.bars: dict[str, Any] = {}

        def phase_start(self, phase_name: str, parent_phase: str | None, num_steps: int) -> None:
            self.bars[phase_name] = tqdm(total=num_steps, desc=phase_name, leave=parent_phase is None,
                                         position=len(self.bars), disable=None)

        def step_complete(self, phase_name: str, step: int) -> bool:
            bar = self.bars.get(phase_name)
            if bar is not None:
                bar.update(step + 1 - bar.n)
            return True

        def phase_finish(self, phase_name: str) -> None:
            bar = self.bars.pop(phase_name, None)
            if bar is not None:
                bar.close()

    return TqdmProgress()


def io_tensors(network: Any) -> tuple[list[Any], list[Any]]:
    inputs = [network.get_input(i) for i in range(network.num_inputs)]
    outputs = [network.get_output(i) for i in range(network.num_outputs)]
    return inputs, outputs


def _profile_shapes(shape: Iterable[int], batch: tuple[int, int, int]) -> list[list[int]]:
    dims = list(shape)
    if any(d < 0 for d in dims[1:]):
        raise BuildError(f"only the batch dimension may be dynamic, got input shape {dims}")
    return [[b] + dims[1:] for b in batch]


def configure(builder: Any, network: Any, settings: BuildSettings) -> Any:
    """A builder config: memory pool, optimization level, precision flags, timing cache, batch profile."""
    trt = shim.binding()
    feat = shim.features()
    config = builder.create_builder_config()
    if settings.workspace_mib:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, settings.workspace_mib << 20)
    if settings.optimization_level is not None and feat.optimization_level:
        config.builder_optimization_level = settings.optimization_level
    if not settings.tf32 and hasattr(trt.BuilderFlag, "TF32"):
        config.clear_flag(trt.BuilderFlag.TF32)
    if settings.tensorrt_tactics_only and feat.tactic_sources:
        sources = 0
        for name in ("EDGE_MASK_CONVOLUTIONS", "JIT_CONVOLUTIONS"):
            if hasattr(trt.TacticSource, name):
                sources |= 1 << int(getattr(trt.TacticSource, name))
        config.set_tactic_sources(sources)
    if not feat.strongly_typed:
        _weak_precision_flags(config, network, settings.precision, trt)
    if settings.progress and feat.progress_monitor:
        config.progress_monitor = _progress_monitor(trt)
    inputs, _ = io_tensors(network)
    if any(-1 in tuple(t.shape) for t in inputs):
        profile = builder.create_optimization_profile()
        for t in inputs:
            profile.set_shape(t.name, *_profile_shapes(t.shape, settings.batch))
        config.add_optimization_profile(profile)
    return config


def weak_precision_flag_names(precision: str, constrained: bool, quantized: bool = True) -> list[str]:
    """Builder flags a weakly typed network needs for a precision (strongly typed networks need none).

    INT8 gets the INT8 and FP16 flags: the Q/DQ layers say what runs in INT8, and what they do not cover runs
    in FP16, as it does on strongly typed bindings (the INT8 policy's compute dtype) and as NVIDIA builds its
    QAT engines (`trtexec --int8 --fp16`). The INT8 flag alone left Mish, residual adds and the YOLO decode in
    FP32. An INT8 network without any Q/DQ (every layer skipped) builds as FP16: TensorRT 8.6 refuses the
    INT8 flag without scales.
    """
    names = {"fp32": [], "fp16": ["FP16"], "int8": ["INT8", "FP16"] if quantized else ["FP16"]}[precision]
    if constrained and names:
        names.append("OBEY_PRECISION_CONSTRAINTS")
    return names


def _weak_precision_flags(config: Any, network: Any, precision: str, trt: Any) -> None:
    all_layers = [network.get_layer(i) for i in range(network.num_layers)]
    constrained = any(layer.precision_is_set for layer in all_layers)
    quantized = any(layer.type == trt.LayerType.QUANTIZE for layer in all_layers)
    if precision == "int8" and not quantized:
        log.warning("network %r is int8 but has no quantize layer (all skipped?): built in FP16", network.name)
    for name in weak_precision_flag_names(precision, constrained, quantized):
        config.set_flag(getattr(trt.BuilderFlag, name))


class TimingCacheError(BuildError):
    """--timing-cache names a file that is not a TensorRT timing cache: it is neither read nor written."""


# What TensorRT logs when it refuses a timing cache. TensorRT 8.6 on the H200 refused every cache that another
# network's build had written ("[myelinCache.h::deserializeFromBuffer::52] ... Myelin error from unknown graph",
# then "The timing cache will not be used!"); TensorRT-RTX without a GPU refuses its own. The build then times
# every layer.
TIMING_CACHE_REFUSALS = ("the timing cache will not be used", "myelincache")


class _TimingCacheWatch(logging.Handler):
    """Collects TensorRT's refusals of the timing cache while it is attached to the `tensorrt` logger."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.refusals: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if any(k in message.lower() for k in TIMING_CACHE_REFUSALS):
            self.refusals.append(message)


def _load_timing_cache(config: Any, path: Path) -> tuple[Any, int]:
    """The timing cache in `path` (empty when the file does not exist or is empty) and its size in bytes;
    refuses any other file."""
    if path.exists() and not path.is_file():
        raise TimingCacheError(f"timing cache {path}: not a regular file")
    data = path.read_bytes() if path.exists() else b""
    bridge = shim.logger()
    bridge.recent.clear()
    with warnings.catch_warnings():  # TensorRT-RTX keeps the API but makes it a no-op (deprecation warning)
        warnings.simplefilter("ignore", DeprecationWarning)
        cache = config.create_timing_cache(data)
        if data and not data.startswith(TIMING_CACHE_TAG):
            refused = [line for line in bridge.recent if ("cache" in line.lower() or "serializ" in line.lower())
                       and not any(k in line.lower() for k in TIMING_CACHE_REFUSALS)]
            if refused or cache is None:
                raise TimingCacheError(
                    f"timing cache {path}: not a TensorRT timing cache ({len(data)} bytes; TensorRT said: "
                    f"{' '.join(refused) or 'nothing'}); refusing to read or overwrite it: pass a timing cache "
                    "file or a new file name")
        config.set_timing_cache(cache, ignore_mismatch=False)
    return cache, len(data)


def _save_timing_cache(cache: Any, path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        data = bytes(cache.serialize())
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def _settle_timing_cache(cache: Any, path: Path, loaded_bytes: int, refusals: list[str]) -> dict[str, Any]:
    """After a build: write the cache back, unless TensorRT refused the one it was given. A refused cache is
    never written back (every later build would refuse it again): it is moved to `<path>.rejected` and the
    next build starts a new one. Returns what the sidecar records about it."""
    record: dict[str, Any] = {"file": path.name, "loaded_bytes": loaded_bytes}
    if refusals:
        aside = path.with_name(path.name + ".rejected")
        if path.exists():
            os.replace(path, aside)
        log.warning("timing cache %s: TensorRT refused it (%s), so this build timed every layer; moved to %s, the "
                    "next build starts a new cache (TensorRT 8.6 on the H200 refused every cache another network had "
                    "written: keep one cache per network)", path, refusals[-1], aside.name)
        return {**record, "used": False, "refused": " | ".join(refusals)[:500]}
    _save_timing_cache(cache, path)
    return {**record, "used": loaded_bytes > 0}


def build_engine(network: Any, settings: BuildSettings | None = None, builder: Any = None,
                 meta: dict[str, Any] | None = None) -> Plan:
    """Build a serialized engine from a finished definition; raise BuildError with TensorRT's log lines on failure."""
    settings = settings or BuildSettings()
    builder = builder or create_builder()
    config = configure(builder, network, settings)
    cache_path = Path(settings.timing_cache) if settings.timing_cache else None
    watch = _TimingCacheWatch()
    trt_log = logging.getLogger("tensorrt")
    trt_log.addHandler(watch)  # TensorRT may refuse the cache when it is loaded or during the build
    try:
        cache, loaded = _load_timing_cache(config, cache_path) if cache_path else (None, 0)
        bridge = shim.logger()
        bridge.recent.clear()
        t0 = time.perf_counter()
        serialized = builder.build_serialized_network(network, config)
        seconds = time.perf_counter() - t0
    finally:
        trt_log.removeHandler(watch)
    if serialized is None:
        lines = "\n".join(bridge.recent) or "(TensorRT logged no warnings or errors)"
        raise BuildError(f"TensorRT could not build network {network.name!r} "
                         f"({network.num_layers} layers, precision {settings.precision}). TensorRT said:\n{lines}")
    data = bytes(serialized)
    log.info("built %s in %.2f s (%.1f MB)", network.name, seconds, len(data) / 1e6)
    full_meta = describe(network, settings)
    full_meta["definition_sha256"] = definition_digest(network)
    full_meta["build_seconds"] = round(seconds, 3)
    if cache_path and cache is not None:
        full_meta["timing_cache"] = _settle_timing_cache(cache, cache_path, loaded, watch.refusals)
    full_meta.update(meta or {})
    return Plan(data, full_meta)


def _dtype_name(dtype: Any) -> str:
    return getattr(dtype, "name", str(dtype)).split(".")[-1]


def describe(network: Any, settings: BuildSettings) -> dict[str, Any]:
    """Sidecar fields derivable from the definition and settings: binding, precision, ordered I/O."""
    from netdef import __version__

    feat = shim.features()
    inputs, outputs = io_tensors(network)

    def spec(t: Any, dynamic: bool) -> dict[str, Any]:
        shape = list(t.shape)
        ranges = _profile_shapes(shape, settings.batch) if dynamic and -1 in shape else [shape] * 3
        return {"name": t.name, "dtype": enum_name(t.dtype), "shape": shape,
                "min": ranges[0], "opt": ranges[1], "max": ranges[2]}

    return {
        "netdef_version": __version__,
        "trt_flavor": feat.flavor,
        "trt_version": feat.version,
        "typing": feat.typing,
        "precision": settings.precision,
        "batch": list(settings.batch),
        "optimization_level": settings.optimization_level,
        "network": network.name,
        "inputs": [spec(t, True) for t in inputs],
        "outputs": [spec(t, True) for t in outputs],
        "plugins": [],
    }


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sidecar_path(engine_path: str | os.PathLike) -> Path:
    return Path(f"{os.fspath(engine_path)}.json")


def save_engine(plan: Plan | bytes, path: str | os.PathLike, weights: str | os.PathLike | None = None,
                **extra: Any) -> Path:
    """Write the plan and its sidecar `<path>.json` (sha256 of plan and of the weights file, sealed) as one.

    The pair is replaced through netdef.atomic.write_pair: a kill at any instant leaves the old pair or the
    new pair, and the next save or load finishes or undoes an interrupted one.
    """
    path = Path(path)
    refuse_overwriting_inputs({"engine": path, "sidecar": sidecar_path(path)}, {"weights": weights})
    if not isinstance(plan, Plan):
        plan = Plan(bytes(plan), {})
    meta = dict(plan.meta)
    meta.update(extra)
    meta["plan_sha256"] = sha256_bytes(plan.data)
    meta["plan_bytes"] = len(plan.data)
    if weights is not None:
        meta["weights_file"] = os.path.basename(os.fspath(weights))
        meta["weights_sha256"] = sha256_file(weights)
    meta.setdefault("trt_flavor", shim.features().flavor)
    meta.setdefault("trt_version", shim.features().version)
    text = json.dumps(seal(meta), indent=2) + "\n"
    write_pair(path, plan.data, sidecar_path(path), text.encode(), recorded_plan_sha256)
    return path


def recover_engine_pair(path: str | os.PathLike) -> str | None:
    """Finish or undo an interrupted save of this engine (see netdef.atomic); a read-only folder is left as is."""
    try:
        return recover_pair(path, sidecar_path(path), recorded_plan_sha256)
    except OSError as exc:
        log.warning("%s: could not recover an interrupted save (%s)", path, exc)
        return None


def read_sidecar(path: str | os.PathLike, check_binding: bool = True) -> dict[str, Any]:
    """Read and check the sidecar of an engine: its fields (netdef.sidecar.check_fields), plan hash and size,
    TensorRT flavor and version. An interrupted save of the pair is finished or undone first."""
    path = Path(path)
    side = sidecar_path(path)
    recover_engine_pair(path)
    if not path.exists():
        raise EngineFileError(f"{path}: engine file not found")
    if not side.exists():
        raise EngineFileError(f"{path}: sidecar {side.name} not found (engines saved by netdef.save_engine have one)")
    try:
        meta = json.loads(side.read_bytes())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise EngineFileError(f"{side}: not valid JSON ({exc})") from None
    try:
        check_fields(meta, str(side))
    except SidecarError as exc:
        raise EngineFileError(str(exc)) from None
    problems = []
    size = path.stat().st_size
    if meta["plan_bytes"] != size:
        problems.append(f"plan is {size} bytes, sidecar records {meta['plan_bytes']}")
    actual = sha256_file(path)
    if meta.get("plan_sha256") != actual:
        problems.append(f"plan sha256 is {actual[:16]}..., sidecar records {str(meta.get('plan_sha256'))[:16]}... "
                        "(the plan was modified or belongs to another sidecar)")
    if check_binding:
        feat = shim.features()
        for key, have in (("trt_flavor", feat.flavor), ("trt_version", feat.version)):
            if meta.get(key) != have:
                problems.append(f"{key}: engine built with {meta.get(key)!r}, this process has {have!r}")
    if problems:
        raise EngineFileError(f"{path}: refusing to load: " + "; ".join(problems))
    return meta


@dataclass
class LoadedEngine:
    """A deserialized ICudaEngine with the runtime that must outlive it and its sidecar."""

    engine: Any
    runtime: Any
    meta: dict[str, Any]
    path: Path


def load_engine(path: str | os.PathLike, check_binding: bool = True,
                register_plugins: Callable[[list[dict[str, Any]]], Any] | None = None) -> LoadedEngine:
    """Deserialize an engine after checking its sidecar.

    An engine with custom layers needs their plugin creators registered first: `register_plugins` gets the
    sidecar's plugin records (netdef.plugins.register_for_engine; the runtime passes it). Nothing named in
    the sidecar is ever imported.
    """
    meta = read_sidecar(path, check_binding)
    if meta.get("plugins"):
        if register_plugins is None:
            names = ", ".join(sorted({str(r.get("name")) for r in meta["plugins"]}))
            raise EngineFileError(f"{path}: the engine uses custom layers ({names}): pass register_plugins="
                                  "netdef.plugins.register_for_engine, or open it with netdef's runtime")
        register_plugins(meta["plugins"])
    trt = shim.binding()
    runtime = trt.Runtime(shim.logger())
    bridge = shim.logger()
    bridge.recent.clear()
    engine = runtime.deserialize_cuda_engine(Path(path).read_bytes())
    if engine is None:
        said = "\n".join(bridge.recent) or "(TensorRT logged nothing)"
        raise EngineFileError(
            f"{path}: TensorRT ({shim.features().flavor} {shim.features().version}) could not deserialize the engine. "
            f"Deserializing needs a CUDA GPU this binding supports; TensorRT said:\n{said}")
    check_loaded_engine(meta, engine, path)
    return LoadedEngine(engine, runtime, meta, Path(path))


def check_loaded_engine(meta: dict[str, Any], engine: Any, path: str | os.PathLike) -> None:
    """The deserialized engine's I/O must be what its sidecar says (netdef.sidecar.check_engine)."""
    try:
        check_engine(meta, engine, os.fspath(path))
    except SidecarError as exc:
        raise EngineFileError(str(exc)) from None
