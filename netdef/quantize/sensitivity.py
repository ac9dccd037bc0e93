"""The measured fallback: rank quantization sites by the output error that quantizing each one alone causes.

`rank_sites(run, sites)` needs only a `SiteRunner`: a function that defines the network with exactly a given
set of sites quantized, executes it on fixed inputs and returns its outputs (the empty set: nothing
quantized, the reference). The worst K sites are then kept in FP16 (`SensitivityResult.worst(k)`); the
ranking goes into the calibration cache (`meta["sensitivity"]`) and a report.

`model_runner` is the runner for a network class: the definition-time policy defines it in INT8 with every
other site kept in floating point (`skip`). A site is a module path cut to `depth` components (`layer1.0` for a
ResNet block, `layers.5` for a Darknet layer), so a residual block is ranked as one unit; the sites are those the
FP32 definition's quantizer records (its weighted layers, average pools and residual skips).
"""
from __future__ import annotations

import inspect
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

log = logging.getLogger("netdef.quantize")

SiteRunner = Callable[[frozenset], Mapping[str, Any]]


@dataclass
class SiteError:
    site: str
    rel_err: float  # max over judged outputs of ||a - ref|| / ||ref||
    cosine: float  # min over judged outputs


@dataclass
class SensitivityResult:
    """Sites ranked worst first by the error quantizing each alone causes, against the unquantized run."""

    ranking: list[SiteError]
    all_quantized: SiteError  # every site quantized at once, for scale
    outputs: list[str]
    samples: int
    seconds: float
    fp16: list[str] = field(default_factory=list)  # the sites chosen to stay in floating point

    def worst(self, k: int) -> list[str]:
        return [e.site for e in self.ranking[:max(0, k)]]

    def to_json(self) -> dict[str, Any]:
        return {"metric": "rel_err", "outputs": self.outputs, "samples": self.samples,
                "seconds": round(self.seconds, 2), "fp16": list(self.fp16),
                "all_quantized": [self.all_quantized.rel_err, self.all_quantized.cosine],
                "ranking": [[e.site, e.rel_err, e.cosine] for e in self.ranking]}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> "SensitivityResult":
        ranking = [SiteError(str(s), float(r), float(c)) for s, r, c in d["ranking"]]
        r, c = d["all_quantized"]
        return cls(ranking, SiteError("all", float(r), float(c)), list(d["outputs"]), int(d["samples"]),
                   float(d.get("seconds", 0.0)), list(d.get("fp16", [])))

    def format(self, top: int = 20) -> str:
        lines = [f"sensitivity: {len(self.ranking)} sites, {self.samples} samples, outputs {', '.join(self.outputs)}; "
                 f"all quantized: rel err {self.all_quantized.rel_err:.3e}, cosine {self.all_quantized.cosine:.6f}",
                 f"{'rank':>4}  {'site':<28} {'rel err':>10} {'cosine':>10}  kept in"]
        for i, e in enumerate(self.ranking[:top]):
            lines.append(f"{i + 1:>4}  {e.site:<28} {e.rel_err:>10.3e} {e.cosine:>10.6f}  "
                         f"{'fp16' if e.site in self.fp16 else 'int8'}")
        if len(self.ranking) > top:
            lines.append(f"   ... {len(self.ranking) - top} more")
        return "\n".join(lines)


def _error(site: str, outputs: Mapping[str, Any], reference: Mapping[str, Any]) -> SiteError:
    from netdef.verify import compare

    rel, cos = 0.0, 1.0
    for name, ref in reference.items():
        _, r, c = compare(outputs[name], ref)
        rel, cos = max(rel, r), min(cos, c)
    return SiteError(site, rel, cos)


def rank_sites(run: SiteRunner, sites: Sequence[str], progress: bool = True) -> SensitivityResult:
    """Quantize each site alone through `run`, rank by output error (worst first, ties by name)."""
    from tqdm import tqdm

    if not sites:
        raise ValueError("sensitivity: no quantization sites to rank")
    start = time.perf_counter()
    reference = dict(run(frozenset()))
    errors = [_error(s, run(frozenset([s])), reference)
              for s in tqdm(list(sites), desc="sensitivity", unit="site", disable=not progress or None)]
    everything = _error("all", run(frozenset(sites)), reference)
    errors.sort(key=lambda e: (-e.rel_err, e.site))
    samples = int(next(iter(reference.values())).shape[0]) if reference else 0
    result = SensitivityResult(errors, everything, sorted(reference), samples, time.perf_counter() - start)
    log.info("sensitivity: %d sites ranked in %.1f s; worst %s", len(errors), result.seconds, result.worst(3))
    return result


# --- sites of a network class: module paths where its quantizer quantizes, one site alone = skip all others -----

def site_of(layer: str, depth: int) -> str:
    """The module path of a layer name (`layer1.0.conv1`, `layers.5/mish/mul#1`) cut to `depth` components."""
    path = layer.split("/", 1)[0].split("#", 1)[0]
    return ".".join(path.split(".")[:depth]) if depth > 0 else path


def quantized_sites(net: Any, depth: int = 2, skip: Iterable[str] = ()) -> list[str]:
    """The sites (module paths cut to `depth`) of an FP32 Network's quantizer, in definition order."""
    from netdef.quantize.policy import is_skipped

    paths = [p for paths in net.quant.sites.values() for p in paths] + net.quant.weight_sites
    sites = dict.fromkeys(site_of(p, depth) for p in paths if not is_skipped(p, tuple(skip)))
    return list(sites)


def _judged(outputs: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """The outputs errors are measured on: a detector's raw heads where it has them (its decode squashes
    errors), else all outputs; as float64 numpy."""
    names = [n for n in outputs if n.startswith("head")] or list(outputs)
    return {n: np.asarray(outputs[n].detach().cpu().double().numpy() if hasattr(outputs[n], "detach")
                          else outputs[n], dtype=np.float64) for n in names}


def _judging_options(model: Any) -> dict[str, Any]:
    params = inspect.signature(model.define).parameters
    return {k: v for k, v in (("nms", "raw"), ("heads", True)) if k in params}


def model_runner(model: Any, amax: Mapping[str, float], inputs: np.ndarray, sites: Sequence[str],
                 device: str = "cpu", input_size: Any = None, skip: Iterable[str] = ()) -> SiteRunner:
    """A `SiteRunner` over `model.define(precision="int8", ...)`: the sites not asked for are kept in floating point.

    Detection networks are defined with their raw heads as outputs (`nms="raw", heads=True` where `define`
    takes them). The empty set runs the INT8 definition with every site in floating point (the same FP16 layers).
    """
    from netdef.executor import execute

    options = _judging_options(model)
    fixed = tuple(skip)

    def run(quantized: frozenset) -> dict[str, np.ndarray]:
        unknown = sorted(set(quantized) - set(sites))
        if unknown:
            raise KeyError(f"sensitivity: unknown site(s) {unknown[:5]}")
        net = model.define(precision="int8", input_size=input_size, calibration=dict(amax),
                           skip=fixed + tuple(s for s in sites if s not in quantized), **options)
        name = net.definition.get_input(0).name
        return _judged(execute(net.definition, {name: inputs}, device=device))

    return run


def rank_model(model: Any, amax: Mapping[str, float], inputs: np.ndarray, device: str = "cpu",
               input_size: Any = None, depth: int = 2, skip: Iterable[str] = (), progress: bool = True
               ) -> SensitivityResult:
    """Rank `model`'s quantization sites (module paths cut to `depth`) on `inputs`."""
    fp32 = model.define(precision="fp32", input_size=input_size, **_judging_options(model))
    sites = quantized_sites(fp32, depth, skip)
    return rank_sites(model_runner(model, amax, inputs, sites, device, input_size, skip), sites, progress)
