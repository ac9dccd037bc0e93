"""YOLOv4 and YOLOv4-tiny (any Darknet cfg with [yolo] heads): the network class.

`YOLOv4.from_darknet(cfg, weights)` (in memory; `weights_export.darknet.load_darknet`) or `YOLOv4.from_hdf5(path)`
(an HDF5 written by `weights_export.darknet.export_darknet`, which keeps the cfg text in the root attribute
`darknet_cfg`). Class count, anchors and layers come from the cfg (`networks.darknet`); the input size is chosen
at build time (multiples of 32, non-square allowed). The input is an RGB image letterboxed to the input size,
0..1 (`netdef.detect.letterbox`).

Outputs, by `nms` ("auto": "engine" where the binding can build TensorRT's NMS layer, else "raw"):
- "raw": `boxes` (B, N, 4) input-pixel xyxy and `scores` (B, N, C) = objectness * class probability,
  all heads concatenated (N = sum of A*H*W); NMS is left to the host (`netdef.detect.detect`).
- "engine": TensorRT's NMS layer on those (`netdef.detect.engine_nms`), padded to fixed sizes per image:
  `num_detections` (B, 1) int32, `det_boxes` (B, K, 4), `det_scores` (B, K), `det_classes` (B, K) int32
  (padding: 0, 0, -1).
"""
from __future__ import annotations

import logging
import os
from typing import Any, Mapping

import numpy as np

from netdef import trt as shim
from netdef.darknet_cfg import parse_cfg
from netdef.detect import TRT_TOPK_LIMIT, check_nms_options, engine_nms
from netdef.engine import BuildError, BuildSettings, Plan
from netdef.network import Network
from netdef.preprocess import UNIT
from networks import register
from networks.base import NetworkModel, non_default_choices
from networks.darknet import Darknet, DarknetPlan, plan, reference_module

log = logging.getLogger("netdef.yolov4")

NMS_MODES = ("auto", "engine", "raw")
SHORTCUT_Q = ("conv", "activation")  # define(shortcut_q=...): R3c (the default), R3b (docs/int8.md 2)
# define(preact_q=...): which other convs INT8 quantizes at their raw output, before the activation: the stem and
# every leaky conv (the default: 0.29 ms faster than the stem alone on the H200), the stem (conv 0: 0.51 ms faster
# than none), none, every conv ending in Mish (docs/int8.md 4)
PREACT_Q = ("stem+leaky", "stem", "none", "mish")
# define(head_q=...): the head's last (linear) convs in floating point (R9, the default) or INT8 (an experiment)
HEAD_Q = ("float", "int8")
INT8_PLACEMENTS = {"shortcut_q": SHORTCUT_Q, "preact_q": PREACT_Q, "head_q": HEAD_Q}  # define() options, default first
RAW_OUTPUTS = ("boxes", "scores")
NMS_OUTPUTS = ("num_detections", "det_boxes", "det_scores", "det_classes")


def resolve_nms(nms: str) -> str:
    """"engine" or "raw" for an `nms` option ("auto": engine where the binding can build the NMS layer)."""
    if nms not in NMS_MODES:
        raise ValueError(f"nms={nms!r}: expected one of {', '.join(NMS_MODES)}")
    if nms != "auto":
        return nms
    resolved = "engine" if shim.nms_layer_builds() else "raw"
    log.info("nms=auto: %s (TensorRT's NMS layer %s)", resolved, "builds" if resolved == "engine" else "cannot build")
    return resolved


@register("yolov4", "yolov4-tiny", "darknet")
class YOLOv4(NetworkModel):
    arch = "yolov4"
    input_name = "input"
    pixels = UNIT

    def __init__(self, weights: Mapping[str, Any], path: str | os.PathLike | None = None, cfg: Any = None) -> None:
        from weights_export.darknet import guess_arch

        super().__init__(weights, path)
        attrs = dict(getattr(weights, "attrs", None) or {})
        cfg = cfg if cfg is not None else attrs.get("darknet_cfg")
        if cfg is None:
            raise ValueError(f"{path or 'weights'}: no Darknet cfg: the HDF5 root attribute 'darknet_cfg' is missing "
                             "(export with `netdef export --darknet-cfg ... --darknet-weights ...`)")
        self.cfg = parse_cfg(cfg) if isinstance(cfg, (str, os.PathLike)) else cfg
        self.plan: DarknetPlan = plan(self.cfg)
        self.arch = str(attrs.get("arch") or guess_arch(self.cfg))

    @classmethod
    def from_darknet(cls, cfg: str | os.PathLike, weights: str | os.PathLike,
                     out: str | os.PathLike | None = None) -> "YOLOv4":
        """Import Darknet cfg + .weights: in memory, or exported to the HDF5 file `out` and read from there."""
        from weights_export.darknet import export_darknet, load_darknet

        parsed = parse_cfg(cfg)
        plan(parsed)  # every cfg error (references, channels, sizes) before the weights are read
        if out is not None:
            export_darknet(parsed, weights, out)
            return cls.from_hdf5(out)
        return cls(load_darknet(parsed, weights), None, cfg=parsed)

    # --- definition ------------------------------------------------------------------------------------
    @property
    def num_classes(self) -> int:
        return self.plan.classes

    def input_size(self, input_size: Any = None) -> tuple[int, int]:
        """(H, W) from an int, "H,W" text or a pair, checked against the total stride; the cfg's size when None."""
        if input_size is None:
            size = self.plan.input_size
        elif isinstance(input_size, int):
            size = (input_size, input_size)
        elif isinstance(input_size, str):
            parts = [int(p) for p in input_size.replace("x", ",").split(",") if p.strip()]
            size = (parts[0], parts[-1])
        else:
            size = tuple(input_size)
        return self.plan.check_input_size(size)

    def module_key(self, input_size: Any = None) -> Any:
        return self.input_size(input_size)

    def make_module(self, input_size: Any = None) -> Darknet:
        return Darknet(self.plan, self.input_size(input_size))

    def define(self, precision: str = "fp32", input_size: Any = None, fp16_io: bool = False, nms: str = "auto",
               max_detections: int = 100, score_threshold: float = 0.25, iou_threshold: float = 0.45,
               topk: int = TRT_TOPK_LIMIT, calibration: Any = None, skip: tuple[str, ...] = (), heads: bool = False,
               input_dtype: str = "float32", shortcut_q: str = "conv", preact_q: str = "stem+leaky",
               head_q: str = "float", **options: Any) -> Network:
        """The definition: input `input` (B, C, H, W) letterboxed RGB 0..1; outputs per `nms` (module docstring).

        heads=True adds outputs `head0`.. (the raw [yolo] inputs, cfg order) after those, for accuracy checks
        against the reference's `heads(x)` (INT8 is judged on them: the decode squashes errors).

        int8: `calibration` (cache JSON, amax mapping or data) and `skip` (module paths kept in floating point)
        go to netdef.quantize.settings; the head's last convs stay FP16, the decode's scores FP16, its boxes and NMS
        FP32 (docs/int8.md).
        `net.meta` records the NMS settings (the define options: what `reference` takes).
        shortcut_q: where INT8 quantizes a [shortcut]'s branch, "conv" (R3c: the conv writes its raw output in
        INT8, the activation and the add run in one INT8 pointwise kernel; 0.42 ms faster on the H200) or
        "activation" (R3b: the conv computes the activation in its INT8 epilogue, the add reads both inputs
        quantized); one calibration serves both.
        preact_q: which other convs INT8 quantizes at their raw output (after BN, before the activation), so they
        write INT8 without an activation epilogue: "stem+leaky" (the default: the stem and every leaky conv; TensorRT
        8.6 moves the Q/DQ across leaky, which commutes with a positive scale, and runs the 3x3 leaky convs on
        Hopper kernels instead of the sm80 ones it gives a conv carrying a linked activation: 6.695 -> 6.409 ms on
        the H200, heads cosine 0.99543), "stem" (conv 0 alone: the first-layer kernel then writes INT8, not FP32
        into a reformat, and its Mish runs in an INT8 pointwise kernel; 7.16 -> 6.65 ms), "none" (each conv
        computes its activation, its consumers quantize it) or "mish" (every conv ending in Mish: 7.11 ms, the
        pointwise Mish kernels cost more than the epilogues did); docs/int8.md 4; one calibration serves them all.
        head_q: the head's last convs (the [yolo] layers' inputs) in floating point ("float", R9) or INT8 ("int8":
        no reformats around them; an experiment, docs/int8.md 4).
        """
        if options:
            raise TypeError(f"YOLOv4.define: unknown option(s) {', '.join(sorted(options))}")
        check_nms_options(max_detections, score_threshold, iou_threshold, topk)
        nms = resolve_nms(nms)
        model = self.module(input_size)
        h, w = model.input_size
        # in the sidecar either way: the engine's NMS applies them, or the host NMS on raw outputs does
        settings: dict[str, Any] = {"nms": nms, "max_detections": int(max_detections),
                                    "score_threshold": float(score_threshold), "iou_threshold": float(iou_threshold),
                                    "topk": int(topk)}
        int8 = self.int8_settings(precision, calibration, skip, (h, w))
        placement = non_default_choices("YOLOv4.define", INT8_PLACEMENTS, shortcut_q=shortcut_q, preact_q=preact_q,
                                        head_q=head_q)
        with Network(f"{self.arch}-{h}x{w}", precision, fp16_io, int8=int8) as net:
            net.quant.branch_at = shortcut_q
            preact = {"none": [], "stem": [self.plan.stem], "mish": self.plan.convs_ending_in("mish"),
                      "stem+leaky": [self.plan.stem, *self.plan.convs_ending_in("leaky")]}[preact_q]
            net.quant.before_activation = tuple(f"layers.{i}" for i in preact)
            if head_q == "float":
                net.quant.keep_float(*(f"layers.{i}" for i in self.plan.head_convs))  # R9: the head's last convs
            x = self.image_input(net, (-1, self.plan.in_channels, h, w), input_dtype)
            boxes, scores, raw_heads = model(x)
            if nms == "raw":
                names, outputs = RAW_OUTPUTS, (boxes, scores)
            else:
                names = NMS_OUTPUTS
                outputs = engine_nms(boxes, scores, max_detections, score_threshold, iou_threshold, topk)
            for name, tensor in zip(names, outputs):
                net.mark_output(tensor, name)
            for i, tensor in enumerate(raw_heads if heads else ()):
                net.mark_output(tensor, f"head{i}")
        net.meta.update(arch=self.arch, input_size=[h, w], classes=self.num_classes, preprocess="letterbox RGB 0..1",
                        **settings)
        self.record_options(net, **settings, **({"heads": True} if heads else {}), **placement)
        return net

    def build(self, precision: str = "fp32", batch: Any = 1, input_size: Any = None,
              settings: BuildSettings | None = None, **options: Any) -> Plan:
        """Define and build; nms="engine" fails early, and clearly, where the NMS layer cannot be built."""
        if options.get("nms") == "engine" and not shim.nms_layer_builds():
            feat = shim.features()
            raise BuildError(f"TensorRT {feat.flavor} {feat.version} offers add_nms but cannot build an NMS layer "
                             "(it has no implementation for it): build with nms='raw' (or 'auto') and run NMS on "
                             "the host with netdef.detect.detect")
        return super().build(precision, batch, input_size, settings, **options)

    # --- reference -------------------------------------------------------------------------------------
    def reference(self, nms: str = "raw", max_detections: int = 100, score_threshold: float = 0.25,
                  iou_threshold: float = 0.45, topk: int = TRT_TOPK_LIMIT) -> Any:
        """The PyTorch module with the same weights: heads + decode, forward returns (boxes, scores).

        nms="engine" (or "auto" where that resolves to it) ends the module in the host NMS
        (`netdef.detect.detect` with these settings): it returns the four fixed-size NMS outputs, as a definition
        with the same options does (`define(...).meta` holds them).
        """
        module = self.load_reference(reference_module(self.plan))
        if resolve_nms(nms) == "engine":
            module.postprocess = _host_nms(max_detections, score_threshold, iou_threshold, topk)
        return module

    def sample_input(self, batch: int = 1, input_size: Any = None, seed: int = 0) -> np.ndarray:
        """A random letterboxed-image-like input: (B, C, H, W) float32 in 0..1."""
        h, w = self.input_size(input_size)
        rng = np.random.default_rng(seed)
        return rng.random((batch, self.plan.in_channels, h, w), dtype=np.float32)


def _host_nms(max_detections: int, score_threshold: float, iou_threshold: float, topk: int) -> Any:
    """(boxes, scores) -> the engine NMS's four outputs, through netdef.detect.detect; set as the reference's
    `postprocess` (not a wrapper) so module paths, and so verification hooks, stay the same."""
    import torch

    from netdef.detect import detect

    def host_nms(boxes: Any, scores: Any) -> tuple[Any, ...]:
        det = detect(boxes.detach().cpu().numpy(), scores.detach().cpu().numpy(), max_detections,
                     iou_threshold, score_threshold, topk)
        return tuple(torch.from_numpy(np.asarray(a)) for a in det)

    return host_nms
