"""YOLOv4 and YOLOv4-tiny (any Darknet cfg with [yolo] heads): decoding and NMS inside the engine.

`YOLOv4.from_darknet(cfg, weights)` or `YOLOv4.from_hdf5(path)` (an HDF5 written by
`weights_export.darknet.export_darknet`, which keeps the cfg text in the root attribute `darknet_cfg`).
Class count, anchors and layers come from the cfg; the input size is chosen at build time (multiples of 32,
non-square allowed). The input is an RGB image letterboxed to the input size, 0..1 (`netdef.detect.letterbox`).

Outputs, by `nms` ("auto": "engine" where the binding can build TensorRT's NMS layer, else "raw"):
- "raw": `boxes` (B, N, 4) input-pixel xyxy and `scores` (B, N, C) = objectness * class probability,
  all heads concatenated (N = sum of A*H*W); NMS is left to the host (`netdef.detect.detect`).
- "engine": TensorRT's NMS layer on those, padded to fixed sizes per image: `num_detections` (B, 1) int32,
  `det_boxes` (B, K, 4), `det_scores` (B, K), `det_classes` (B, K) int32 (padding: 0, 0, -1).
"""
from __future__ import annotations

import logging
import os
import tempfile
from typing import Any, Mapping

import numpy as np

import netdef.functional as F
from netdef import trt as shim
from netdef.detect import TRT_TOPK_LIMIT, check_nms_options
from netdef.engine import BuildError, BuildSettings, Plan, nms_layer_builds
from netdef.network import Network, current
from networks import register
from networks.base import NetworkModel
from networks.darknet import Darknet, DarknetPlan, plan, reference_module

log = logging.getLogger("netdef.yolov4")

NMS_MODES = ("auto", "engine", "raw")
RAW_OUTPUTS = ("boxes", "scores")
NMS_OUTPUTS = ("num_detections", "det_boxes", "det_scores", "det_classes")


@register("yolov4", "yolov4-tiny", "darknet")
class YOLOv4(NetworkModel):
    arch = "yolov4"
    input_name = "input"

    def __init__(self, weights: Mapping[str, Any], path: str | os.PathLike | None = None, cfg: Any = None) -> None:
        from weights_export.darknet import guess_arch, parse_cfg

        super().__init__(weights, path)
        attrs = dict(getattr(weights, "attrs", None) or {})
        cfg = cfg if cfg is not None else attrs.get("darknet_cfg")
        if cfg is None:
            raise ValueError(f"{path or 'weights'}: no Darknet cfg: the HDF5 root attribute 'darknet_cfg' is missing "
                             "(export with `netdef export --darknet-cfg ... --darknet-weights ...`)")
        self.cfg = parse_cfg(cfg) if isinstance(cfg, (str, os.PathLike)) else cfg
        self.plan: DarknetPlan = plan(self.cfg)
        self.arch = str(attrs.get("arch") or guess_arch(self.cfg))
        self._defined_nms: dict[str, Any] = {}

    @classmethod
    def from_darknet(cls, cfg: str | os.PathLike, weights: str | os.PathLike,
                     out: str | os.PathLike | None = None) -> "YOLOv4":
        """Import Darknet cfg + .weights (through the HDF5 exporter; kept at `out` when given, else in memory)."""
        from weights_export.darknet import parse_cfg
        from weights_export.hdf5 import WeightsFile

        parsed = parse_cfg(cfg)
        plan(parsed)  # every cfg error (references, channels, sizes) before the weights are read
        if out is not None:
            _export_naming_cfg_line(parsed, weights, out)
            return cls.from_hdf5(out)
        with tempfile.TemporaryDirectory(prefix="netdef-darknet-") as tmp:
            h5 = os.path.join(tmp, "weights.h5")
            _export_naming_cfg_line(parsed, weights, h5)
            with WeightsFile(h5) as wf:
                arrays = {key: np.asarray(wf[key]) for key in wf}
                attrs = dict(wf.attrs)
        model = cls(arrays, None, cfg=parsed)
        model.arch = str(attrs.get("arch") or model.arch)
        return model

    # --- definition ------------------------------------------------------------------------------------
    @property
    def num_classes(self) -> int:
        return self.plan.classes

    def input_size(self, input_size: Any = None) -> tuple[int, int]:
        """(H, W) from an int, "H,W" text or a pair; the cfg's [net] size when None."""
        if input_size is None:
            return self.plan.input_size
        if isinstance(input_size, int):
            return (input_size, input_size)
        if isinstance(input_size, str):
            parts = [int(p) for p in input_size.replace("x", ",").split(",") if p.strip()]
            return (parts[0], parts[-1])
        h, w = input_size
        return (int(h), int(w))

    def module(self, input_size: Any = None) -> Darknet:
        """The netdef module tree with weights loaded (every problem with the weights reported at once)."""
        size = self.plan.check_input_size(self.input_size(input_size))
        origin = os.fspath(self.path) if self.path is not None else "Darknet weights"
        return Darknet(self.plan, size).load_weights(self.weights, origin=origin)  # type: ignore[return-value]

    def define(self, precision: str = "fp32", input_size: Any = None, fp16_io: bool = False, nms: str = "auto",
               max_detections: int = 100, score_threshold: float = 0.25, iou_threshold: float = 0.45,
               topk: int = TRT_TOPK_LIMIT, calibration: Any = None, skip: tuple[str, ...] = (), heads: bool = False,
               **options: Any) -> Network:
        """The definition: input `input` (B, C, H, W) letterboxed RGB 0..1; outputs per `nms` (module docstring).

        heads=True adds outputs `head0`.. (the raw [yolo] inputs, cfg order) after those, for accuracy checks
        against the reference's `heads(x)` (INT8 is judged on them: the decode squashes errors).

        int8: `calibration` (cache JSON, amax mapping or data) and `skip` go to netdef.quantize.apply; the
        decode and NMS stay FP32 either way.
        """
        if options:
            raise TypeError(f"YOLOv4.define: unknown option(s) {', '.join(sorted(options))}")
        if nms not in NMS_MODES:
            raise ValueError(f"nms={nms!r}: expected one of {', '.join(NMS_MODES)}")
        check_nms_options(max_detections, score_threshold, iou_threshold, topk)
        if nms == "auto":
            nms = "engine" if nms_layer_builds() else "raw"
            log.info("nms=auto: %s (TensorRT's NMS layer %s)", nms, "builds" if nms == "engine" else "cannot build")
        model = self.module(input_size)
        h, w = model.input_size
        net = Network(f"{self.arch}-{h}x{w}", precision, fp16_io)
        with net:
            x = net.add_input(self.input_name, (-1, self.plan.in_channels, h, w))
            boxes, scores, raw_heads = model(x)
            if nms == "raw":
                names, outputs = RAW_OUTPUTS, (boxes, scores)
            else:
                names = NMS_OUTPUTS
                outputs = engine_nms(net, boxes, scores, max_detections, score_threshold, iou_threshold, topk)
            for name, tensor in zip(names, outputs):
                net.mark_output(tensor, name)
            for i, tensor in enumerate(raw_heads if heads else ()):
                net.mark_output(tensor, f"head{i}")
            if precision == "int8":
                from netdef import quantize

                quantize.apply(net, calibration, skip, weights=self.path if self.path is not None else None)
        # in the sidecar either way: the engine's NMS applies them, or the host NMS on raw outputs does
        self._defined_nms = {"nms": nms, "max_detections": int(max_detections),
                             "score_threshold": float(score_threshold), "iou_threshold": float(iou_threshold),
                             "topk": int(topk)}
        net.meta.update(arch=self.arch, input_size=[h, w], classes=self.num_classes, preprocess="letterbox RGB 0..1",
                        **self._defined_nms)
        return net

    def build(self, precision: str = "fp32", batch: Any = 1, input_size: Any = None,
              settings: BuildSettings | None = None, **options: Any) -> Plan:
        """Define and build; nms="engine" fails early, and clearly, where the NMS layer cannot be built."""
        if options.get("nms") == "engine" and not nms_layer_builds():
            feat = shim.features()
            raise BuildError(f"TensorRT {feat.flavor} {feat.version} offers add_nms but cannot build an NMS layer "
                             "(it has no implementation for it): build with nms='raw' (or 'auto') and run NMS on "
                             "the host with netdef.detect.detect")
        return super().build(precision, batch, input_size, settings, **options)

    # --- reference -------------------------------------------------------------------------------------
    def reference(self, nms: str | None = None) -> Any:
        """The PyTorch module with the same weights: heads + decode, forward returns (boxes, scores).

        With nms="engine" (default: what the last `define` emitted) the module ends with the host NMS
        (`netdef.detect.detect`, the engine's settings) and returns the four fixed-size NMS outputs.
        """
        import torch

        module = reference_module(self.plan)
        state = module.state_dict()
        for key in state:
            if not key.endswith("num_batches_tracked"):
                state[key] = torch.as_tensor(np.asarray(self.weights[key], dtype=np.float32))
        module.load_state_dict(state)
        module.eval()
        if (nms or self._defined_nms.get("nms", "raw")) == "engine":
            return _with_host_nms(module, **{k: v for k, v in self._defined_nms.items() if k != "nms"})
        return module

    def sample_input(self, batch: int = 1, input_size: Any = None, seed: int = 0) -> np.ndarray:
        """A random letterboxed-image-like input: (B, C, H, W) float32 in 0..1."""
        h, w = self.plan.check_input_size(self.input_size(input_size))
        rng = np.random.default_rng(seed)
        return rng.random((batch, self.plan.in_channels, h, w), dtype=np.float32)


def _with_host_nms(module: Any, max_detections: int = 100, score_threshold: float = 0.25,
                   iou_threshold: float = 0.45, topk: int = TRT_TOPK_LIMIT) -> Any:
    """`module` ending in netdef.detect.detect: outputs as the engine's NMS (num, boxes, scores, classes).

    Set as the module's `postprocess` (not a wrapper) so module paths, and so verification hooks, stay the same.
    """
    import torch

    from netdef.detect import detect

    def host_nms(boxes: Any, scores: Any) -> tuple[Any, ...]:
        det = detect(boxes.detach().cpu().numpy(), scores.detach().cpu().numpy(), max_detections,
                     iou_threshold, score_threshold, topk)
        return tuple(torch.from_numpy(np.asarray(a)) for a in det)

    module.postprocess = host_nms
    return module


def _export_naming_cfg_line(cfg: Any, weights: str | os.PathLike, out: str | os.PathLike) -> None:
    """export_darknet, with a weights error about layer i also naming that layer's cfg line."""
    from weights_export.darknet import export_darknet
    from weights_export.errors import DarknetWeightsError

    try:
        export_darknet(cfg, weights, out)
    except DarknetWeightsError as exc:
        index = (exc.layer or "").split(".")
        if len(index) < 2 or not index[1].isdigit() or int(index[1]) >= len(cfg.layers):
            raise
        section = cfg.layers[int(index[1])]
        raise DarknetWeightsError(exc.path, f"{exc.detail} ({cfg.path}:{section.line}: [{section.type}] layer "
                                  f"{section.index})", layer=exc.layer, tensor=exc.tensor) from None


# --- NMS inside the engine ------------------------------------------------------------------------------

def engine_nms(net: Network, boxes: Any, scores: Any, max_detections: int, score_threshold: float,
               iou_threshold: float, topk: int = TRT_TOPK_LIMIT) -> tuple[Any, Any, Any, Any]:
    """TensorRT's NMS layer, then the selected rows of each image gathered into K fixed slots.

    The NMS layer returns (batch, class, box) rows for all images, ordered by image then by decreasing
    score, with a data-dependent count. Image b's rows start at offsets[b] = #rows of earlier images;
    slot k of image b reads row offsets[b] + k when k < counts[b], else a padding row appended at the end.
    """
    if not net.features.nms_layer:
        raise RuntimeError(f"TensorRT {net.features.flavor} {net.features.version} has no NMS layer: "
                           "build with nms='raw' and run NMS on the host (netdef.detect.detect)")
    k = int(max_detections)
    if k <= 0 or not 0 < int(topk) <= TRT_TOPK_LIMIT:
        raise ValueError(f"max_detections must be positive and topk in 1..{TRT_TOPK_LIMIT}, got {k} and {topk}")
    trt, d = net.trt, net.definition
    n, classes = int(tuple(boxes.shape)[1]), int(tuple(scores.shape)[2])
    # no net.float32() scope: most layers here are integer index arithmetic, every float constant is typed
    with net.scope("nms"):
        boxes, scores = net.cast(boxes, np.float32), net.cast(scores, np.float32)
        layer = d.add_nms(boxes, scores, _scalar(net, k, np.int32, "max_per_class"))
        layer.set_input(3, _scalar(net, iou_threshold, np.float32, "iou_threshold"))
        layer.set_input(4, _scalar(net, score_threshold, np.float32, "score_threshold"))
        layer.bounding_box_format = trt.BoundingBoxFormat.CORNER_PAIRS
        layer.topk_box_limit = int(topk)
        net.name_layer(layer)
        selected, count = layer.get_output(0), layer.get_output(1)  # (M, 3) int32, () int32

        image = F.slice(selected, 1, 0, 1, op="image")  # (M, 1)
        cls = F.slice(selected, 1, 1, 2, op="class")
        row = F.add(F.mul(image, n, op="row/mul"), F.slice(selected, 1, 2, 3, op="box"), op="row")  # b*N + box
        sel_boxes = _gather(F.reshape(boxes, (-1, 4), op="flat_boxes"), F.reshape(row, (-1,), op="row/flat"),
                            "sel_boxes")
        score_index = F.reshape(F.add(F.mul(row, classes, op="score_index/mul"), cls, op="score_index/add"), (-1,),
                                op="score_index")
        sel_scores = _gather(F.reshape(scores, (-1,), op="flat_scores"), score_index, "sel_scores")
        sel_classes = F.reshape(cls, (-1,), op="sel_classes")

        images = F.reshape(_arange_batch(net, boxes), (1, -1), op="images")  # (1, B)
        counts = _count_rows(net, image, images, "EQUAL", "counts")  # (B, 1)
        offsets = _count_rows(net, image, images, "LESS", "offsets")
        slot = net.constant(np.arange(k, dtype=np.int32)[None], op="slots")  # (1, K)
        rows = _select(net, _compare(net, slot, counts, "LESS", "valid"), F.add(offsets, slot, op="rows"),
                       F.reshape(count, (1, 1), op="padding_row"), "slot_rows")  # (B, K)

        num = F.minimum(counts, k, op="num_detections")
        det_boxes = _gather(_pad(sel_boxes, np.zeros((1, 4), np.float32), "boxes"), rows, "det_boxes")
        det_scores = _gather(_pad(sel_scores, np.zeros(1, np.float32), "scores"), rows, "det_scores")
        det_classes = _gather(_pad(sel_classes, np.full(1, -1, np.int32), "classes"), rows, "det_classes")
    return num, det_boxes, det_scores, det_classes


def _scalar(net: Network, value: float, dtype: Any, op: str) -> Any:
    """A 0-D constant (NMS and fill take scalars)."""
    return net.constant(np.array(value, dtype=dtype), dtype=dtype, op=op)


def _gather(data: Any, indices: Any, op: str, axis: int = 0) -> Any:
    net = current()
    layer = net.definition.add_gather(data, indices, axis)
    return net.name_layer(layer, op).get_output(0)


def _pad(x: Any, row: np.ndarray, op: str) -> Any:
    """x with one padding row appended on axis 0 (what empty slots read)."""
    return F.concat([x, F.constant(row, dtype=row.dtype, op=f"pad_{op}/value")], dim=0, op=f"pad_{op}")


def _compare(net: Network, a: Any, b: Any, kind: str, op: str) -> Any:
    layer = net.definition.add_elementwise(a, b, getattr(net.trt.ElementWiseOperation, kind))
    return net.name_layer(layer, op).get_output(0)


def _select(net: Network, condition: Any, then: Any, otherwise: Any, op: str) -> Any:
    return net.name_layer(net.definition.add_select(condition, then, otherwise), op).get_output(0)


def _arange_batch(net: Network, like: Any) -> Any:
    """0, 1, ..., B-1 (int32) for the dynamic batch size B of `like` (a LINSPACE fill)."""
    shape = net.name_layer(net.definition.add_shape(like), "batch/shape").get_output(0)
    size = F.slice(shape, 0, 0, 1, op="batch/size")
    try:
        layer = net.definition.add_fill((1,), net.trt.FillOperation.LINSPACE, net.trt.DataType.INT32)
    except TypeError:  # TensorRT 8.6: no output type argument, the int32 start/step tensors decide it
        layer = net.definition.add_fill((1,), net.trt.FillOperation.LINSPACE)
    layer.set_input(0, size)
    layer.set_input(1, _scalar(net, 0, np.int32, "batch/start"))
    layer.set_input(2, net.constant(np.array([1], np.int32), op="batch/step"))
    return net.name_layer(layer, "batch/arange").get_output(0)


def _count_rows(net: Network, image: Any, images: Any, kind: str, op: str) -> Any:
    """(B, 1) int32: for each image b, how many selected rows have image `kind` (EQUAL / LESS) b."""
    hits = net.cast(_compare(net, image, images, kind, f"{op}/compare"), np.float32, f"{op}/cast")  # (M, B)
    total = net.definition.add_reduce(hits, net.trt.ReduceOperation.SUM, 1, False)  # over rows -> (B,)
    total = net.name_layer(total, f"{op}/sum").get_output(0)
    return F.reshape(net.cast(total, np.int32, f"{op}/int"), (-1, 1), op=op)
