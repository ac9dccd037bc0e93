"""`netdef infer ENGINE --image IMG`: classify (ResNet), detect (YOLOv4) or find people (pose networks) with an
engine or netdef's executor.

The engine sidecar's `arch` decides the pre/post-processing: ImageNet crop + top-k for ResNet, letterbox
+ boxes mapped back to the image for YOLO, people in image pixels for pose networks (boxes or skeletons drawn
with Pillow when `--save` is given).
"""
from __future__ import annotations

import argparse
import json
import logging
import os
from typing import Any

import numpy as np

from netdef.commands.arguments import add_nms_arguments, positive_int, refuse_same_files
from netdef.runtime.factory import EXECUTORS

log = logging.getLogger("netdef.infer")
# arch prefix -> the module whose `estimate(session, images)` returns people per image
POSE_ESTIMATORS = {"higherhrnet": "netdef.pose.higherhrnet", "openpose": "netdef.pose.openpose"}


def add_session_arguments(p: argparse.ArgumentParser) -> None:
    """ENGINE and the executor choice, shared by `infer` and `bench`."""
    p.add_argument("engine", nargs="?", help="engine file (its .json sidecar names the arch); optional with "
                   "--executor netdef when --arch and --weights are given")
    p.add_argument("--executor", choices=EXECUTORS, default="tensorrt",
                   help="tensorrt: run the engine; netdef: run the network definition with netdef's executor "
                        "(torch, CPU or CUDA), where TensorRT cannot run")
    p.add_argument("--arch", help="architecture (default: the engine sidecar's or the weights file's)")
    p.add_argument("--weights", help="HDF5 weights (needed for --executor netdef and --compare-torch)")
    p.add_argument("--device", help="netdef executor: cpu or cuda (default cpu); tensorrt: GPU index")
    p.add_argument("--precision", choices=("fp32", "fp16"), help="netdef executor precision (default: the engine's)")


def open_from_args(args: argparse.Namespace, graph: bool = False) -> Any:
    from netdef.runtime.factory import open_session

    define = definition_builder(args) if args.executor == "netdef" else None
    return open_session(args.engine, args.executor, define, args.device, graph)


def definition_builder(args: argparse.Namespace) -> Any:
    """For --executor netdef: sidecar meta -> the Network of `--weights` defined as `--arch` (or the arch the
    sidecar or the HDF5 records), with the engine's precision, input size and the define() options its network
    class recorded (networks.base.DEFINE_OPTIONS: YOLO's NMS settings, the pose networks' outputs and parsing)."""

    def define(meta: dict[str, Any]) -> Any:
        import networks
        from netdef.sidecar import weights_for_engine
        from networks.base import DEFINE_OPTIONS

        # the engine's own weights (default: the file its sidecar records, when found beside it and matching)
        weights = weights_for_engine(args.engine, meta, args.weights) if meta else args.weights
        if weights is None:
            raise ValueError("--executor netdef needs --weights W.h5 (and --arch unless the engine sidecar or the "
                             "weights file records it)")
        model = networks.get(args.arch or meta.get("arch") or _hdf5_arch(weights)).from_hdf5(weights)
        input_size = meta.get("input_size")
        if input_size is None and meta.get("inputs"):
            input_size = meta["inputs"][0]["shape"][2:4]
        net = model.define(precision=args.precision or meta.get("precision", "fp32"),
                           input_size=tuple(input_size) if input_size else None,
                           **meta.get(DEFINE_OPTIONS, {}))
        net.meta["weights_file"] = os.path.basename(os.fspath(weights))
        return net

    return define


def _hdf5_arch(weights: str | os.PathLike) -> str:
    from weights_export.hdf5 import WeightsFile

    with WeightsFile(weights) as f:
        arch = f.attrs.get("arch")
    if not arch:
        raise ValueError(f"{os.fspath(weights)}: no arch attribute; pass --arch")
    return str(arch)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("infer", help="classify or detect objects in images with an engine",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_session_arguments(p)
    p.add_argument("--image", required=True, action="append", help="image file (repeat for a batch)")
    p.add_argument("--topk", type=positive_int, default=5, help="classes to print per image (classification)")
    p.add_argument("--labels", help="class names, one per line")
    p.add_argument("--save", help="detection / pose: draw the boxes or skeletons on the (first) image and save it "
                   "here")
    p.add_argument("--json", dest="json_out", help="also write the results as JSON here")
    add_nms_arguments(p.add_argument_group("host NMS of engines built with --nms raw (default: the settings "
                                           "recorded at build time)"), "host NMS")
    p.set_defaults(func=run)


INPUT_ARGUMENTS = ("engine", "weights", "image", "labels")


def engine_sidecar_input(engine: str | None) -> dict[str, Any]:
    """The engine's sidecar as an input no output may replace."""
    from netdef.engine import sidecar_path

    return {"the sidecar of ENGINE": sidecar_path(engine)} if engine else {}


def family(arch: str | None, session: Any) -> str:
    """'detect' for YOLO/Darknet networks, 'pose' for pose networks, 'classify' for the rest."""
    if arch and (arch.startswith("yolo") or arch == "darknet"):
        return "detect"
    if arch and arch.startswith(tuple(POSE_ESTIMATORS)):
        return "pose"
    return "classify"


def input_hw(session: Any) -> tuple[int, int]:
    spec = session.inputs[0]
    if len(spec.shape) != 4:
        raise ValueError(f"{session.name}: expected an image input (N, C, H, W), got {spec.describe()}")
    return int(spec.shape[2]), int(spec.shape[3])


def classify(session: Any, images: list[str], topk_n: int, labels: list[str] | None) -> list[dict[str, Any]]:
    from netdef.preprocess import image_input, imagenet_preprocess, recorded_mean_std, topk

    h, w = input_hw(session)
    if h != w:
        raise ValueError(f"{session.name}: ImageNet preprocessing needs a square input, the engine takes {h}x{w}")
    mean, std = recorded_mean_std(session.meta)
    batch = np.stack([imagenet_preprocess(im, size=h, resize=round(h * 256 / 224), mean=mean, std=std)
                      for im in images])
    outputs = session.infer({session.input_names[0]: image_input(session, batch)})
    logits = outputs.get("logits", next(iter(outputs.values())))
    results = []
    for image, row in zip(images, topk(logits, topk_n, labels)):
        print(f"{image}:")
        for rank, p in enumerate(row, 1):
            print(f"  {rank}. {p.probability:7.4f}  {p.label}")
        results.append({"image": image, "top": [vars(p) for p in row]})
    return results


HOST_NMS_OPTIONS = ("max_detections", "score_threshold", "iou_threshold")
HOST_NMS_DEFAULTS = {"max_detections": 100, "score_threshold": 0.25, "iou_threshold": 0.45}


def decode_detections(outputs: dict[str, np.ndarray], meta: dict[str, Any],
                      overrides: dict[str, Any] | None = None) -> Any:
    """netdef.detect.Detections from engine outputs: the NMS outputs as they are, or host NMS on raw boxes/scores
    with the settings recorded at build time (sidecar), `overrides` (given options) first."""
    from netdef.detect import Detections, detect

    given = {k: v for k, v in (overrides or {}).items() if v is not None}
    names = ("num_detections", "det_boxes", "det_scores", "det_classes")
    if all(n in outputs for n in names):
        if given:
            raise ValueError(f"--{next(iter(given)).replace('_', '-')}: this engine runs NMS itself with the "
                             f"settings it was built with ({', '.join(f'{k} {meta.get(k)}' for k in HOST_NMS_OPTIONS)}"
                             "); rebuild it with those options, or with --nms raw to choose them here")
        return Detections(*(outputs[n] for n in names))
    if "boxes" in outputs and "scores" in outputs:
        settings = {k: given.get(k, meta.get(k, HOST_NMS_DEFAULTS[k])) for k in HOST_NMS_OPTIONS}
        return detect(outputs["boxes"], outputs["scores"], max_detections=int(settings["max_detections"]),
                      iou_threshold=float(settings["iou_threshold"]),
                      score_threshold=float(settings["score_threshold"]), topk=int(meta.get("topk", 5000)))
    raise ValueError(f"cannot read detections from outputs {list(outputs)}: expected {', '.join(names)} "
                     "or boxes + scores")


def detect_images(session: Any, images: list[str], labels: list[str] | None, save: str | None,
                  nms: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    from netdef.detect import unletterbox_boxes
    from netdef.preprocess import image_input, label_name, yolo_preprocess

    h, w = input_hw(session)
    prepared = [yolo_preprocess(im, (h, w)) for im in images]
    outputs = session.infer({session.input_names[0]: image_input(session, np.stack([x for x, _ in prepared]))})
    dets = decode_detections(outputs, session.meta, nms)
    results = []
    for b, (image, (_, info)) in enumerate(zip(images, prepared)):
        n = int(dets.num_detections[b, 0])
        boxes = unletterbox_boxes(dets.boxes[b, :n], info)
        found = [{"class": int(c), "label": label_name(labels, int(c)), "score": float(s),
                  "box": [round(float(v), 1) for v in bx]}
                 for c, s, bx in zip(dets.classes[b, :n], dets.scores[b, :n], boxes)]
        print(f"{image}: {n} detection(s)")
        for d in found:
            x1, y1, x2, y2 = d["box"]
            print(f"  {d['score']:6.3f}  {d['label']:<20} ({x1:.0f}, {y1:.0f}) - ({x2:.0f}, {y2:.0f})")
        results.append({"image": image, "detections": found})
    if save:
        draw_boxes(images[0], results[0]["detections"], save)
        print(f"saved {save}")
    return results


def draw_boxes(image: str, detections: list[dict[str, Any]], path: str) -> None:
    """Draw labelled boxes on a copy of the image and save it atomically (format from the file suffix)."""
    from PIL import Image, ImageDraw

    from netdef.atomic import atomic_path
    from netdef.preprocess import load_image

    canvas = load_image(image).copy()
    draw = ImageDraw.Draw(canvas)
    palette = [(230, 25, 75), (60, 180, 75), (0, 130, 200), (245, 130, 48), (145, 30, 180), (70, 240, 240)]
    for d in detections:
        color = palette[d["class"] % len(palette)]
        draw.rectangle(d["box"], outline=color, width=2)
        draw.text((d["box"][0] + 2, d["box"][1] + 1), f"{d['label']} {d['score']:.2f}", fill=color)
    fmt = Image.registered_extensions().get(os.path.splitext(path)[1].lower())
    if fmt is None:
        raise ValueError(f"{path}: unknown image format (use .jpg or .png)")
    with atomic_path(path) as tmp:
        canvas.save(tmp, format=fmt)


def pose_images(session: Any, images: list[str], arch: str, save: str | None) -> list[dict[str, Any]]:
    """People per image (pose networks), printed; `save` draws the skeletons on the first image."""
    import importlib

    module = next(m for prefix, m in POSE_ESTIMATORS.items() if arch.startswith(prefix))
    found = importlib.import_module(module).estimate(session, images)
    results = []
    for image, persons in zip(images, found):
        print(f"{image}: {len(persons)} people")
        for i, person in enumerate(persons):
            print(f"  {i}: score {person.score:.3f}, {len(person.found())} keypoints")
        results.append({"image": image, "people": [p.as_dict() for p in persons]})
    if save:
        from netdef.pose.draw import draw_people

        draw_people(images[0], found[0], save)
        print(f"saved {save}")
    return results


def run(args: argparse.Namespace) -> int:
    from netdef.preprocess import load_labels

    refuse_same_files(args, ["save", "json_out"], INPUT_ARGUMENTS, extra_inputs=engine_sidecar_input(args.engine))
    refuse_same_files(args, ["save"], ["json_out"])
    labels = load_labels(args.labels) if args.labels else None
    with open_from_args(args) as session:
        arch = session.arch or args.arch
        log.info("%s (%s, arch %s)", session.name, session.kind, arch)
        kind = family(arch, session)
        if kind == "detect":
            nms = {k: getattr(args, k, None) for k in HOST_NMS_OPTIONS}
            results = detect_images(session, args.image, labels, args.save, nms)
        elif kind == "pose":
            results = pose_images(session, args.image, arch, args.save)
        else:
            if args.save:
                log.warning("--save draws detections; %s is a classifier, nothing saved", arch)
            results = classify(session, args.image, args.topk, labels)
    if args.json_out:
        from netdef.atomic import write_text_atomic

        write_text_atomic(args.json_out, json.dumps({"arch": arch, "results": results}, indent=2) + "\n")
    return 0
