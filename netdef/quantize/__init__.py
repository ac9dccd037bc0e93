"""Native INT8: calibrate on the definition's own tensors, then write explicit Q/DQ into it.

- `calibrate(model, data, method=...)`: run calibration batches through the model's FP32 definition
  with netdef's executor, collect |x| statistics of every tensor that will be quantized, compute one
  amax per tensor and return (and optionally save) a `CalibrationCache`.
- `apply(net, calibration, skip)`: called by a network class's `define` for precision="int8"; appends a
  finalizer to `net.finalizers` that inserts Q/DQ (netdef.quantize.qdq) before the build. Sites a
  sensitivity ranking chose to keep in FP16 (`calibrate(..., sensitivity=K)`) are skipped too.
- `groups` (scale groups), `placement` (placement report of a built INT8 definition) and `sensitivity`
  (ranking sites by the error quantizing each alone causes) serve the placement rules of docs/int8.md.
Names are the contract: the FP32 and INT8 definitions share tensor names, so the cache is keyed by them.
"""
from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np

from netdef.quantize.cache import (CalibrationCache, CalibrationCacheError, definition_digest, load_cache,
                                   new_cache, weights_digest)
from netdef.quantize.calibrators import DEFAULT_PERCENTILE, METHODS
from netdef.quantize.data import CalibrationData, CalibrationDataError, load_data, preprocessing_for
from netdef.quantize.qdq import CalibrationMissingError, insert_qdq, plan_qdq
from netdef.quantize.stats import StatsCollector, TensorStats

log = logging.getLogger("netdef.quantize")

__all__ = ["CalibrationCache", "CalibrationCacheError", "CalibrationData", "CalibrationDataError",
           "CalibrationMissingError", "CalibrationResult", "METHODS", "apply", "calibrate", "calibrate_definition",
           "collect_statistics", "insert_qdq", "load_cache", "plan_qdq"]


def collect_statistics(definition: Any, batches: Iterable[np.ndarray], names: Iterable[str],
                       device: str = "cpu", total: int | None = None, progress: bool = True) -> dict[str, TensorStats]:
    """Run every batch through `definition` with the executor, keeping |x| statistics of `names`."""
    from tqdm import tqdm

    from netdef.executor import compile as compile_definition

    if definition.num_inputs != 1:
        raise ValueError(f"calibration feeds one input; network {definition.name!r} has {definition.num_inputs}")
    input_name = definition.get_input(0).name
    executor = compile_definition(definition, device=device)
    collector = StatsCollector(names)
    samples = 0
    for batch in tqdm(batches, total=total, desc="calibrating", unit="batch", disable=not progress or None):
        collector.start_batch()
        executor({input_name: batch}, observer=collector)
        samples += len(batch)
        if collector.missing():
            raise CalibrationMissingError(f"calibration: the executor produced no tensor named "
                                          f"{collector.missing()[:5]} in network {definition.name!r}")
    if samples == 0:
        raise CalibrationDataError("calibration: no samples")
    return collector.stats


def _amax_table(stats: Mapping[str, TensorStats], method: str, percentile: float) -> dict[str, float]:
    if method not in METHODS:
        raise ValueError(f"calibration method {method!r}: expected one of {', '.join(METHODS)}")
    return {name: s.amax(method, percentile) for name, s in stats.items()}


@dataclass
class CalibrationResult:
    amax: dict[str, float]
    num_samples: int
    collect_s: float  # running the batches and histogramming
    amax_s: float  # the calibrator on the histograms


def calibrate_definition(definition: Any, data: Any, method: str = "entropy", batch: int = 32,
                         device: str = "cpu", samples: int | None = None, percentile: float = DEFAULT_PERCENTILE,
                         skip: Iterable[str] = (), progress: bool = True) -> CalibrationResult:
    """amax per tensor to quantize in `definition` (before Q/DQ), from `samples` of `data`."""
    if method not in METHODS:
        raise ValueError(f"calibration method {method!r}: expected one of {', '.join(METHODS)}")
    inp = definition.get_input(0)
    data = load_data(data, tuple(inp.shape)[1:], limit=samples, input_name=inp.name)
    names = plan_qdq(definition, skip).activation_tensors
    start = time.perf_counter()
    stats = collect_statistics(definition, data.batches(batch), names, device, data.num_batches(batch), progress)
    collected = time.perf_counter()
    amax = _amax_table(stats, method, percentile)
    result = CalibrationResult(amax, data.count, collected - start, time.perf_counter() - collected)
    log.info("calibrated %d tensors on %d samples (%s): statistics %.1f s, amax %.1f s", len(amax), data.count,
             method, result.collect_s, result.amax_s)
    return result


def calibrate(model: Any, data: Any, method: str = "entropy", samples: int | None = 256, batch: int = 32,
              device: str = "cpu", input_size: tuple[int, int] | None = None, out: str | os.PathLike | None = None,
              recalibrate: bool = False, percentile: float = DEFAULT_PERCENTILE, skip: Iterable[str] = (),
              progress: bool = True, sensitivity: int | None = None, sensitivity_samples: int = 8,
              sensitivity_depth: int = 2) -> CalibrationCache:
    """Calibrate a network class (`networks.base.NetworkModel`) on its FP32 definition.

    `data`: image folder (the network's preprocessing), .npy/.npz path or array. With `out`, an existing
    cache is reused when its fingerprint and method match, refused when they do not (unless
    `recalibrate`), and a new one is written atomically.
    `sensitivity=K`: also rank the quantization sites (module paths cut to `sensitivity_depth`) by the
    output error quantizing each alone causes on the first `sensitivity_samples` samples, and keep the
    worst K in FP16; the ranking is stored in `cache.meta["sensitivity"]` (reused when present).
    """
    if out is not None:  # never over an input
        from netdef.atomic import refuse_overwriting_inputs

        refuse_overwriting_inputs({"out": out}, {"weights": getattr(model, "path", None),
                                                 "data": data if isinstance(data, (str, os.PathLike)) else None})
    net = model.define(precision="fp32", input_size=input_size)
    definition = net.definition
    digest = definition_digest(definition)
    weights_sha = weights_digest(model.path if getattr(model, "path", None) else model.weights)
    if out is not None and Path(out).exists() and not recalibrate:
        cache = load_cache(out)
        cache.check(digest, weights_sha, origin=str(out))
        if cache.algorithm != method:
            raise CalibrationCacheError(f"{out}: was calibrated with {cache.algorithm!r}, {method!r} asked; "
                                        "pass recalibrate=True (--recalibrate) to replace it")
        log.info("%s: fingerprint matches, reusing the calibration cache", out)
        if sensitivity is not None:
            _add_sensitivity(cache, model, data, sensitivity, sensitivity_samples, sensitivity_depth, device,
                             input_size, skip, progress, out)
        return cache
    inp = definition.get_input(0)
    if not isinstance(data, (np.ndarray, CalibrationData)) and Path(data).is_dir():
        data = load_data(data, tuple(inp.shape)[1:], preprocessing_for(model), limit=samples)
    result = calibrate_definition(definition, data, method, batch, device, samples, percentile, skip, progress)
    cache = new_cache(result.amax, method, result.num_samples, definition, weights_sha, arch=getattr(model, "arch", None) or None, device=device, batch=batch,
                      seconds={"statistics": round(result.collect_s, 3), "amax": round(result.amax_s, 3)},
                      **({"percentile": percentile} if method == "percentile" else {}))
    if sensitivity is not None:
        _add_sensitivity(cache, model, data, sensitivity, sensitivity_samples, sensitivity_depth, device,
                         input_size, skip, progress, None)
    if out is not None:
        cache.save(out)
        log.info("wrote calibration cache %s (%d tensors)", out, len(result.amax))
    return cache


def _add_sensitivity(cache: CalibrationCache, model: Any, data: Any, k: int, samples: int, depth: int, device: str,
                     input_size: Any, skip: Iterable[str], progress: bool, out: str | os.PathLike | None) -> None:
    """Rank the sites (or reuse a ranking made with the same settings) and keep the worst `k` in FP16."""
    from netdef.quantize.sensitivity import SensitivityResult, rank_model

    if k < 0 or samples < 1:
        raise ValueError(f"sensitivity: keep K >= 0 sites in FP16 on >= 1 samples (got K={k}, samples={samples})")
    stored = cache.meta.get("sensitivity")
    if stored and stored.get("samples") == samples and stored.get("depth") == depth:
        result = SensitivityResult.from_json(stored)
    else:
        inp = model.define(precision="fp32", input_size=input_size).definition.get_input(0)
        if not isinstance(data, (np.ndarray, CalibrationData)) and Path(data).is_dir():
            data = load_data(data, tuple(inp.shape)[1:], preprocessing_for(model), limit=samples)
        data = load_data(data, tuple(inp.shape)[1:], limit=samples, input_name=inp.name)
        inputs = next(data.batches(samples))
        result = rank_model(model, cache.amax, inputs, device, input_size, depth, skip, progress)
    result.fp16 = result.worst(k)
    cache.meta["sensitivity"] = {**result.to_json(), "depth": depth}
    if out is not None:
        cache.save(out)
    log.info("sensitivity: keeping %s in FP16", result.fp16 or "nothing")


def _as_cache_or_amax(calibration: Any) -> CalibrationCache | dict[str, float] | None:
    """A cache (object or JSON path) or a plain amax mapping; None when `calibration` is data."""
    if isinstance(calibration, CalibrationCache):
        return calibration
    if isinstance(calibration, Mapping):
        return {str(k): float(v) for k, v in calibration.items()}
    if isinstance(calibration, (str, os.PathLike)) and Path(calibration).suffix.lower() == ".json":
        return load_cache(calibration)
    return None


def apply(net: Any, calibration: Any, skip: Iterable[str] = (), weights: Any = None, method: str = "entropy",
          batch: int = 32, device: str = "cpu") -> None:
    """Make an INT8 network quantized: Q/DQ are inserted by a finalizer right before the build.

    `calibration`: a cache JSON path or `CalibrationCache` (fingerprint checked against this definition and,
    when known, `weights` or net.meta["weights_sha256"]), an {tensor name: amax} mapping, or calibration data
    (array / .npy / .npz), which is then run through this definition itself before Q/DQ are added.
    `skip`: layer names or module paths kept in floating point.
    """
    if net.policy.name != "int8":
        raise ValueError(f"netdef.quantize.apply: network {net.definition.name!r} is {net.policy.name}, not int8")
    if calibration is None:
        raise ValueError(f"network {net.definition.name!r}: precision int8 needs calibration= (a cache from "
                         "`netdef calibrate`, an amax mapping or calibration data)")
    skip = tuple(skip) + tuple(net.policy.skip)
    source = _as_cache_or_amax(calibration)

    def finalize(net: Any) -> None:
        definition = net.definition
        info: dict[str, Any] = {}
        if isinstance(source, CalibrationCache):
            origin = str(calibration) if isinstance(calibration, (str, os.PathLike)) else "calibration cache"
            known_weights = weights_digest(weights) if weights is not None else net.meta.get("weights_sha256")
            if known_weights is None:
                log.warning("%s: weights not known here, checking the definition fingerprint only", origin)
            source.check(definition_digest(definition), known_weights, origin)
            amax = source.amax
            info = {"algorithm": source.algorithm, "num_samples": source.num_samples,
                    "fingerprint": source.fingerprint}
            fp16 = tuple((source.meta.get("sensitivity") or {}).get("fp16", ()))
            if fp16:
                info["sensitivity_fp16"] = list(fp16)
        elif source is not None:
            amax = source
            info = {"algorithm": "given"}
        else:
            result = calibrate_definition(definition, calibration, method, batch, device, skip=skip)
            amax = result.amax
            info = {"algorithm": method, "num_samples": result.num_samples}
        kept = tuple(skip) + tuple(info.get("sensitivity_fp16", ()))
        plan = insert_qdq(definition, amax, net.policy.compute_dtype, net.keep, kept, unique=net.unique)
        info["quantized_tensors"] = len(plan.sites)
        info["skip"] = list(kept)
        net.meta["int8"] = info

    net.finalizers.append(finalize)
