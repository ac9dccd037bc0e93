"""Native INT8: calibrate on the definition's own tensors; quantization is emitted while defining.

- `calibrate(model, data, method=...)`: define the model in FP32 (its quantizer records which tensors the INT8
  definition quantizes and which share a scale: netdef.quantize.policy), run calibration batches through it with
  netdef's executor, collect |x| statistics of those tensors and return (and optionally save) a
  `CalibrationCache`: one amax per tensor, one per scale group (the method on the members' merged histogram).
- `settings(calibration, skip, ...)`: what a network class's `define(precision="int8", calibration=...)` gives
  its Network: the ranges, the FP16 sites (`skip` plus a sensitivity ranking's choice) and the cache to check
  against the finished definition.
- `groups` (scale groups), `placement` (placement report of an INT8 definition) and `sensitivity` (ranking sites
  by the error quantizing each alone causes) serve the placement rules of docs/int8.md.
Names are the contract: the FP32 and INT8 definitions share tensor names, so the cache is keyed by them.
"""
from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np

from netdef.quantize.cache import (CalibrationCache, CalibrationCacheError, definition_digest, load_cache,
                                   new_cache, weights_digest)
from netdef.quantize.calibrators import DEFAULT_PERCENTILE, METHODS
from netdef.quantize.data import CalibrationData, CalibrationDataError, load_data, preprocessing_for
from netdef.quantize.policy import CalibrationMissingError, Int8Settings
from netdef.quantize.stats import StatsCollector, TensorStats

log = logging.getLogger("netdef.quantize")

__all__ = ["CalibrationCache", "CalibrationCacheError", "CalibrationData", "CalibrationDataError",
           "CalibrationMissingError", "CalibrationResult", "Int8Settings", "METHODS", "calibrate", "calibrate_network",
           "collect_statistics", "load_cache", "settings"]


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
    amax: dict[str, float]  # each observed tensor's own amax
    num_samples: int
    collect_s: float  # running the batches and histogramming
    amax_s: float  # the calibrator on the histograms
    groups: list[tuple[list[str], float]] = field(default_factory=list)  # (members, amax of the merged histogram)


def calibrate_network(net: Any, data: Any, method: str = "entropy", batch: int = 32, device: str = "cpu",
                      samples: int | None = None, percentile: float = DEFAULT_PERCENTILE,
                      progress: bool = True) -> CalibrationResult:
    """amax of every tensor an FP32 Network's quantizer recorded (quantized or grouped with one), and of every
    scale group, from `samples` of `data`."""
    if method not in METHODS:
        raise ValueError(f"calibration method {method!r}: expected one of {', '.join(METHODS)}")
    definition = net.definition
    inp = definition.get_input(0)
    data = load_data(data, tuple(inp.shape)[1:], limit=samples, input_name=inp.name)
    names = net.quant.calibration_names()
    start = time.perf_counter()
    stats = collect_statistics(definition, data.batches(batch), names, device, data.num_batches(batch), progress)
    collected = time.perf_counter()
    amax = _amax_table(stats, method, percentile)
    quantized = set(net.quant.sites)
    grouped = net.quant.groups.amax(amax, stats, method, percentile)
    groups = [(members, grouped[members[0]]) for members in net.quant.groups.groups()
              if quantized.intersection(members)]
    result = CalibrationResult(amax, data.count, collected - start, time.perf_counter() - collected, groups)
    log.info("calibrated %d tensors and %d scale groups on %d samples (%s): statistics %.1f s, amax %.1f s",
             len(amax), len(groups), data.count, method, result.collect_s, result.amax_s)
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
    worst K in FP16; the ranking is stored in `cache.meta["sensitivity"]` (reused when present). `skip`: module
    paths kept in floating point while ranking.
    """
    if out is not None:  # never over an input
        from netdef.atomic import refuse_overwriting_inputs

        refuse_overwriting_inputs({"out": out}, {"weights": getattr(model, "path", None),
                                                 "data": data if isinstance(data, (str, os.PathLike)) else None})
    net = model.define(precision="fp32", input_size=input_size)
    definition = net.definition
    digest = definition_digest(net)
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
    result = calibrate_network(net, data, method, batch, device, samples, percentile, progress)
    cache = new_cache(result.amax, method, result.num_samples, net, weights_sha,
                      arch=getattr(model, "arch", None) or None, groups=result.groups, device=device, batch=batch,
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
        result = rank_model(model, cache.resolved_amax(), inputs, device, input_size, depth, skip, progress)
    result.fp16 = result.worst(k)
    cache.meta["sensitivity"] = {**result.to_json(), "depth": depth}
    if out is not None:
        cache.save(out)
    log.info("sensitivity: keeping %s in FP16", result.fp16 or "nothing")


def settings(calibration: Any, skip: Iterable[str] = (), weights: Any = None, model: Any = None,
             input_size: Any = None, method: str = "entropy") -> Int8Settings:
    """What an INT8 definition needs before its first layer (netdef.quantize.policy.Int8Settings).

    `calibration`: a cache JSON path or `CalibrationCache` (checked, when the definition is complete, against it
    and against `weights`: a path or mapping), an {tensor name: amax} mapping, or calibration data (array /
    .npy / .npz / image folder), which `model` (a network class) is calibrated on first. `skip`: module paths
    kept in floating point; a cache's sensitivity ranking adds the sites it chose.
    """
    if calibration is None:
        raise ValueError("precision int8 needs calibration= (a cache from `netdef calibrate`, an amax mapping or "
                         "calibration data)")
    skip = tuple(s for s in skip if s)
    origin = str(calibration) if isinstance(calibration, (str, os.PathLike)) else "calibration cache"
    if isinstance(calibration, Mapping):
        return Int8Settings({str(k): float(v) for k, v in calibration.items()}, skip, info={"algorithm": "given"})
    if isinstance(calibration, (str, os.PathLike)) and Path(calibration).suffix.lower() == ".json":
        calibration = load_cache(calibration)
    elif not isinstance(calibration, CalibrationCache):
        if model is None:
            raise ValueError("calibration data needs the network class to calibrate on (model=)")
        calibration = calibrate(model, calibration, method=method, samples=None, input_size=input_size,
                                progress=False)
        origin = "calibration data"
    cache = calibration
    fp16 = tuple((cache.meta.get("sensitivity") or {}).get("fp16", ()))
    if weights is None:
        log.warning("%s: weights not known here, checking the definition fingerprint only", origin)
    info = {"algorithm": cache.algorithm, "num_samples": cache.num_samples, "fingerprint": cache.fingerprint,
            "skip": list(skip), **({"sensitivity_fp16": list(fp16)} if fp16 else {})}
    return Int8Settings(cache.resolved_amax(), skip + fp16, cache, origin,
                        weights_digest(weights) if weights is not None else None, info)
