"""`netdef export`: a PyTorch checkpoint or a Darknet cfg + weights -> a netdef HDF5 weights file.

  netdef export --arch resnet50 --checkpoint ckpt.pth --out resnet50.h5 [--activations] [--input-shape 1,3,224,224]
  netdef export --darknet-cfg yolov4.cfg --darknet-weights yolov4.weights --out yolov4.h5
"""
from __future__ import annotations

import argparse
import inspect
import logging
from typing import Any

from netdef.commands.arguments import positive_int, refuse_same_files

log = logging.getLogger(__name__)


def _floats(text: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected comma-separated numbers") from None


def _shape(text: str) -> list[int]:
    try:
        shape = [int(v) for v in text.replace("x", ",").split(",") if v.strip()]
    except ValueError:
        shape = []
    if not shape or min(shape) <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a shape like 1,3,224,224")
    return shape


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="write a PyTorch checkpoint or Darknet cfg+weights as a netdef HDF5 file",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="output .h5 file (written atomically)")
    torch_group = p.add_argument_group("PyTorch")
    torch_group.add_argument("--arch", help="architecture name (netdef's registry, e.g. resnet50; a label for "
                             "Darknet exports)")
    torch_group.add_argument("--checkpoint", help="PyTorch checkpoint (.pth/.pt; loaded with weights_only=True)")
    torch_group.add_argument("--activations", action="store_true",
                             help="also store a seeded sample input and every layer's output on it")
    torch_group.add_argument("--input-shape", type=_shape, help="input shape N,C,H,W (needed for --activations "
                             "when the architecture has no default)")
    torch_group.add_argument("--num-classes", type=positive_int, help="classes of the checkpoint's head (default: the "
                             "architecture's)")
    torch_group.add_argument("--mean", type=_floats, help="per-channel input mean recorded in the file")
    torch_group.add_argument("--std", type=_floats, help="per-channel input std recorded in the file")
    torch_group.add_argument("--seed", type=int, default=0, help="seed of the --activations sample input")
    dark = p.add_argument_group("Darknet")
    dark.add_argument("--darknet-cfg", help="Darknet .cfg")
    dark.add_argument("--darknet-weights", help="Darknet .weights matching --darknet-cfg")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    progress = False if args.no_progress else None
    refuse_same_files(args, ["out"], ["checkpoint", "darknet_cfg", "darknet_weights"])
    if args.darknet_cfg or args.darknet_weights:
        if not (args.darknet_cfg and args.darknet_weights):
            raise ValueError("Darknet export needs both --darknet-cfg and --darknet-weights")
        if args.checkpoint:
            raise ValueError("give either --checkpoint or --darknet-cfg/--darknet-weights, not both")
        from weights_export.darknet import export_darknet

        export_darknet(args.darknet_cfg, args.darknet_weights, args.out, arch=args.arch, progress=progress)
    else:
        if not (args.arch and args.checkpoint):
            raise ValueError("PyTorch export needs --arch and --checkpoint (or --darknet-cfg and --darknet-weights)")
        export_checkpoint(args.arch, args.checkpoint, args.out, activations=args.activations,
                          input_shape=args.input_shape, num_classes=args.num_classes, mean=args.mean,
                          std=args.std, seed=args.seed, progress=progress)
    print(f"wrote {args.out}")
    return 0


def export_checkpoint(arch: str, checkpoint: str, out: str, activations: bool = False,
                      input_shape: list[int] | None = None, num_classes: int | None = None,
                      mean: list[float] | None = None, std: list[float] | None = None, seed: int = 0,
                      progress: bool | None = None) -> None:
    """Load `checkpoint` into the architecture's reference module (strictly: every name must match) and
    export it with layer attributes; without a reference module, export the state dict alone."""
    import networks
    from weights_export.pytorch import export_module, load_checkpoint

    cls = networks.get(arch)
    state = load_checkpoint(checkpoint)
    adapt = getattr(cls, "adapt_checkpoint", None)  # checkpoints in a port's own key layout (OpenPose)
    if adapt is not None:
        state = adapt(state)
    module = _reference_module(cls, arch, num_classes)
    input_shape = input_shape or _default(cls, "default_input_shape")
    if activations and input_shape is None:
        raise ValueError(f"{arch}: --activations needs --input-shape N,C,H,W")
    mean = mean if mean is not None else _default(cls, "mean")
    std = std if std is not None else _default(cls, "std")
    if module is None:
        if activations:
            raise ValueError(f"{arch}: --activations needs a reference module, and this architecture offers none")
        log.warning("%s has no torch_reference(): exporting the state dict without layer hyper-parameters", arch)
        export_module(state, out, arch, input_shape, mean=mean, std=std, checkpoint=checkpoint, progress=progress)
        return
    _load_strict(module, state, checkpoint, arch)
    export_module(module, out, arch, input_shape, activations=activations, mean=mean, std=std, seed=seed,
                  checkpoint=checkpoint, progress=progress)


def _default(cls: Any, name: str) -> Any:
    value = getattr(cls, name, None)
    return list(value) if value is not None else None


def _reference_module(cls: Any, arch: str, num_classes: int | None) -> Any:
    make = getattr(cls, "torch_reference", None)
    if make is None:
        return None
    kwargs: dict[str, Any] = {}
    if num_classes is not None:
        if "num_classes" not in inspect.signature(make).parameters:
            raise ValueError(f"{arch}: --num-classes is not a parameter of this architecture")
        kwargs["num_classes"] = num_classes
    return make(arch, **kwargs)


def _load_strict(module: Any, state: Any, checkpoint: str, arch: str) -> None:
    from weights_export.errors import CheckpointError
    from weights_export.pytorch import state_dict_mismatch

    expected = module.state_dict()
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError:  # torch lists every missing, unexpected and mis-shaped key: summarized here
        others = [a for a in _archs_with_these_tensors(state) if a != arch]
        if others:
            raise CheckpointError(f"{checkpoint}: not a {arch} checkpoint: its tensors are those of "
                                  f"{' or '.join(others)} (export it with --arch {others[0]})") from None
        differences = state_dict_mismatch(state, expected)
        hint = " (a different head size? pass --num-classes)" if "of another shape" in differences else ""
        raise CheckpointError(f"{checkpoint}: does not match {arch}{hint}: {differences}") from None


def _archs_with_these_tensors(state: Any) -> list[str]:
    """Registered architectures whose reference module has exactly the checkpoint's tensor names (built on
    torch's meta device: shapes only, no memory, no init cost)."""
    import torch

    import networks
    from weights_export.pytorch import matching_archs

    candidates = {}
    for name in networks.names():
        make = getattr(networks.get(name), "torch_reference", None)
        if make is None:
            continue
        try:
            with torch.device("meta"):
                candidates[name] = make(name).state_dict()
        except Exception as exc:  # an architecture that cannot be made this way is just not a candidate
            log.debug("%s: no meta reference (%s)", name, exc)
    return matching_archs(state, candidates)
