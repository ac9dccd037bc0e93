"""PyTorch -> netdef weights file: from an nn.Module (hyper-parameters and activations recorded) or a checkpoint.

torch is imported inside the functions: `weights_export` itself stays importable on the build path.
"""
from __future__ import annotations

import logging
import os
from collections import OrderedDict
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from weights_export.errors import CheckpointError, WeightsExportError
from weights_export.hdf5 import all_finite, write_weights

log = logging.getLogger(__name__)

# Prefixes wrappers add to every key: DataParallel/DDP (`module.`) and torch.compile (`_orig_mod.`).
WRAPPER_PREFIXES = ("module.", "_orig_mod.")
# Where training scripts commonly nest the state dict inside a checkpoint.
STATE_DICT_KEYS = ("state_dict", "model", "model_state_dict")
# Module attributes recorded as layer hyper-parameters when present (torch.nn's own names).
HYPER_PARAMETERS = (
    "in_channels", "out_channels", "kernel_size", "stride", "padding", "dilation", "groups", "padding_mode",
    "output_padding", "num_features", "eps", "momentum", "affine", "track_running_stats", "in_features",
    "out_features", "negative_slope", "output_size", "ceil_mode", "count_include_pad", "divisor_override",
    "scale_factor", "size", "mode", "align_corners", "start_dim", "end_dim", "dim", "p", "alpha", "min_val",
    "max_val", "approximate", "beta", "threshold", "normalized_shape", "elementwise_affine", "num_groups",
    "num_channels", "num_embeddings", "embedding_dim", "num_parameters", "upscale_factor", "lambd",
)


# --- checkpoints ---------------------------------------------------------------------------------------------
def strip_wrapper_prefixes(state: Mapping[str, Any], origin: str = "state dict") -> "OrderedDict[str, Any]":
    """Remove `module.` / `_orig_mod.` (repeatedly, e.g. `_orig_mod.module.`) from the front of every key."""
    out: OrderedDict[str, Any] = OrderedDict()
    for key, value in state.items():
        name = key
        while name.startswith(WRAPPER_PREFIXES):
            name = name.split(".", 1)[1]
        if name in out:
            raise CheckpointError(f"{origin}: keys {key!r} and another both become {name!r} once wrapper "
                                  "prefixes are stripped")
        out[name] = value
    return out


HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
ZIP_SIGNATURE = b"PK\x03\x04"
SAVE_STATE_DICT = "save the weights with torch.save(model.state_dict(), PATH) and export that file"


def load_checkpoint(path: str | os.PathLike) -> "OrderedDict[str, Any]":
    """A checkpoint's state dict (name -> torch.Tensor), loaded with weights_only=True.

    Accepts a bare state dict or one nested under `state_dict` / `model` / `model_state_dict`, and strips
    the `module.` (DataParallel/DDP) and `_orig_mod.` (torch.compile) prefixes. Files that are not a
    weights-only checkpoint get an error saying what they are (empty, HDF5, a pickled model, corrupt).
    """
    import torch

    path = os.fspath(path)
    _check_checkpoint_file(path)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle, zip and weights_only refusals all land here
        raise CheckpointError(_unloadable(path, exc)) from None
    for key in STATE_DICT_KEYS:
        if isinstance(obj, Mapping) and isinstance(obj.get(key), Mapping):
            log.info("%s: using the state dict under %r", path, key)
            obj = obj[key]
            break
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{path}: expected a state dict (a mapping of names to tensors), got "
                              f"{type(obj).__name__}")
    if not obj:
        raise CheckpointError(f"{path}: the checkpoint holds no tensors (an empty state dict)")
    not_tensors = [k for k, v in obj.items() if not isinstance(v, torch.Tensor)]
    if not_tensors:
        raise CheckpointError(f"{path}: not a state dict: entries {not_tensors[:8]} are not tensors "
                              f"(nested under one of {', '.join(STATE_DICT_KEYS)}?)")
    return strip_wrapper_prefixes(obj, path)


def _check_checkpoint_file(path: str) -> None:
    if not os.path.exists(path):
        raise CheckpointError(f"{path}: checkpoint not found")
    if os.path.isdir(path):
        raise CheckpointError(f"{path}: is a directory, not a checkpoint file")
    with open(path, "rb") as f:
        head = f.read(8)
    if not head:
        raise CheckpointError(f"{path}: the file is empty (0 bytes), not a PyTorch checkpoint")
    if head.startswith(HDF5_SIGNATURE):
        raise CheckpointError(f"{path}: is an HDF5 file (a netdef weights file?), not a PyTorch checkpoint; "
                              "netdef weights files go to `netdef build --weights`, export reads .pth/.pt files")


def _unloadable(path: str, exc: Exception) -> str:
    """Why torch.load(weights_only=True) refused a file, in our words (torch's advice to drop weights_only,
    which would run code from the file, is never repeated)."""
    import torch

    try:
        classes = sorted(torch.serialization.get_unsafe_globals_in_checkpoint(path))
    except Exception:  # not a zip checkpoint: nothing to list
        classes = []
    if classes:
        return (f"{path}: holds pickled Python objects ({', '.join(classes[:3])}"
                f"{', ...' if len(classes) > 3 else ''}), not just tensors: a whole model saved with "
                f"torch.save(model)? netdef loads only weights (weights_only=True); {SAVE_STATE_DICT}")
    with open(path, "rb") as f:
        head = f.read(4)
    if head == ZIP_SIGNATURE:
        return f"{path}: a corrupt or truncated PyTorch checkpoint (its zip archive cannot be read)"
    if isinstance(exc, EOFError):
        return f"{path}: a truncated checkpoint (the data ends early)"
    return (f"{path}: not a PyTorch weights checkpoint (neither a zip checkpoint nor a pickle of tensors); "
            f"if it is a model saved some other way, {SAVE_STATE_DICT}")


def state_dict_mismatch(state: Mapping[str, Any], expected: Mapping[str, Any], limit: int = 3) -> str:
    """What differs between a checkpoint's state dict and an architecture's, counted, with a few examples."""
    ignored = IGNORED_SUFFIX
    missing = [k for k in expected if k not in state and not k.endswith(ignored)]
    unexpected = [k for k in state if k not in expected and not k.endswith(ignored)]
    reshaped = [f"{k} {tuple(state[k].shape)} vs {tuple(expected[k].shape)}" for k in expected
                if k in state and tuple(state[k].shape) != tuple(expected[k].shape)]
    parts = []
    for what, keys in (("missing", missing), ("unexpected", unexpected), ("of another shape", reshaped)):
        if keys:
            more = ", ..." if len(keys) > limit else ""
            parts.append(f"{len(keys)} {what} ({', '.join(keys[:limit])}{more})")
    return "; ".join(parts) or "no difference"


def matching_archs(state: Mapping[str, Any], candidates: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Architectures whose state dict has exactly the checkpoint's tensor names, those whose shapes all agree
    first (a differing classifier size still matches: --num-classes)."""
    names = {k for k in state if not k.endswith(IGNORED_SUFFIX)}
    exact, renamed_head = [], []
    for arch, expected in candidates.items():
        if {k for k in expected if not k.endswith(IGNORED_SUFFIX)} != names:
            continue
        same = all(tuple(state[k].shape) == tuple(expected[k].shape) for k in names)
        (exact if same else renamed_head).append(arch)
    return exact + renamed_head


IGNORED_SUFFIX = "num_batches_tracked"


# --- tensors and attributes --------------------------------------------------------------------------------
def _to_numpy(key: str, tensor: Any) -> tuple[np.ndarray, dict[str, Any]]:
    """A tensor as numpy in its own dtype; bfloat16 (unknown to numpy/HDF5) widens exactly to float32."""
    import torch

    tensor = tensor.detach().cpu()
    if tensor.dtype == torch.bfloat16:
        return tensor.float().numpy(), {"torch_dtype": "bfloat16"}
    try:
        return tensor.contiguous().numpy(), {}
    except TypeError as exc:
        raise WeightsExportError(f"tensor {key!r}: dtype {tensor.dtype} cannot be exported ({exc})") from None


def _check_finite(arrays: Mapping[str, np.ndarray], origin: str) -> None:
    bad = [f"{k} ({int((~np.isfinite(a)).sum())} of {a.size})" for k, a in arrays.items() if not all_finite(a)]
    if bad:
        raise WeightsExportError(f"{origin}: NaN/Inf values in tensor(s): {', '.join(bad)} "
                                 "(pass allow_nonfinite=True to export anyway)")


def _attr_value(value: Any) -> Any:
    """A module attribute as an HDF5-storable value, or None to skip it."""
    if isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (tuple, list)) and value and all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                                         for v in value):
        return list(value)
    return None


def module_attrs(module: Any) -> dict[str, Any]:
    """A module's type and hyper-parameters (kernel_size, stride, eps, negative_slope, ...)."""
    cls = type(module)
    attrs: dict[str, Any] = {"type": cls.__name__, "class": f"{cls.__module__}.{cls.__qualname__}"}
    for name in HYPER_PARAMETERS:
        value = _attr_value(vars(module).get(name))  # torch.nn keeps hyper-parameters as instance attributes
        if value is not None:
            attrs[name] = value
    if "bias" in module._parameters:  # registered as None when a conv/linear has bias=False
        attrs["bias"] = module._parameters["bias"] is not None
    return attrs


def layer_attributes(model: Any) -> dict[str, dict[str, Any]]:
    """Attributes for every layer: leaf modules (ReLU, pools too) and modules holding tensors directly."""
    out: dict[str, dict[str, Any]] = {}
    for path, module in model.named_modules():
        holds_tensors = bool(module._parameters) or bool(module._buffers)
        if path and (holds_tensors or not module._modules):
            out[path] = module_attrs(module)
    return out


def inferred_layer_attributes(state: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """What a state dict alone tells about its layers (no module at hand): conv / linear / batch-norm shapes."""
    groups: dict[str, dict[str, tuple[int, ...]]] = {}
    for key, value in state.items():
        layer, _, name = key.rpartition(".")
        groups.setdefault(layer, {})[name] = tuple(value.shape)
    out: dict[str, dict[str, Any]] = {}
    for layer, shapes in groups.items():
        weight = shapes.get("weight")
        if "running_mean" in shapes:
            attrs = {"type": "BatchNorm", "num_features": shapes["running_mean"][0]}
        elif weight is not None and len(weight) >= 3:
            attrs = {"type": f"Conv{len(weight) - 2}d", "out_channels": weight[0], "kernel_size": list(weight[2:]),
                     "bias": "bias" in shapes}
        elif weight is not None and len(weight) == 2:
            attrs = {"type": "Linear", "in_features": weight[1], "out_features": weight[0], "bias": "bias" in shapes}
        else:
            attrs = {"type": "unknown"}
        if layer:
            out[layer] = {**attrs, "inferred": True}
    return out


# --- activations -----------------------------------------------------------------------------------------
def record_activations(model: Any, input_shape: Sequence[int], seed: int = 0) -> dict[str, np.ndarray]:
    """Run `model` on a seeded N(0,1) input and return {"input": x, module path: output, ...}.

    A module called more than once gets `path`, `path#1`, `path#2`, ... (netdef's naming); the root
    module's output is stored as "output". Outputs that are not a single tensor are skipped.
    """
    import torch

    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(*input_shape, generator=generator, dtype=torch.float32)
    recorded: dict[str, np.ndarray] = {"input": x.numpy().copy()}

    def hook_for(path: str) -> Any:
        def hook(_module: Any, _inputs: Any, output: Any) -> None:
            if not isinstance(output, torch.Tensor):
                return
            name, k = path, 1
            while name in recorded:
                name, k = f"{path}#{k}", k + 1
            recorded[name] = output.detach().float().cpu().numpy().copy()
        return hook

    handles = [m.register_forward_hook(hook_for(path or "output")) for path, m in model.named_modules()]
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(x)
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    return recorded


# --- export ----------------------------------------------------------------------------------------------
def export_module(model: Any, out: str | os.PathLike, arch: str, input_shape: Sequence[int] | None = None,
                  activations: bool = False, mean: Iterable[float] | None = None,
                  std: Iterable[float] | None = None, seed: int = 0, *, input_name: str = "input",
                  source: str = "pytorch", checkpoint: str | os.PathLike | None = None,
                  allow_nonfinite: bool = False, progress: bool | None = None) -> None:
    """Write `model` (an nn.Module, a state dict, or a checkpoint path) to `out` as a netdef weights file.

    With a module, every layer's type and hyper-parameters are recorded and `activations=True` stores a
    seeded sample input and each module's output on it (needs `input_shape`). With a state dict only,
    layer attributes are what the tensor shapes tell (marked `inferred`).
    """
    import torch

    from netdef.atomic import refuse_overwriting_inputs

    origin = os.fspath(checkpoint) if checkpoint is not None else "model"
    refuse_overwriting_inputs({"out": out}, {"checkpoint": model if isinstance(model, (str, os.PathLike)) else checkpoint})
    if isinstance(model, (str, os.PathLike)):
        origin = os.fspath(model)
        model = load_checkpoint(model)
    if isinstance(model, torch.nn.Module):
        state = strip_wrapper_prefixes(model.state_dict(), origin)
        attrs = layer_attributes(_unwrap(model))
    elif isinstance(model, Mapping):
        state = strip_wrapper_prefixes(model, origin)
        attrs = inferred_layer_attributes(state)
    else:
        raise TypeError(f"export_module: expected an nn.Module, a state dict or a checkpoint path, got "
                        f"{type(model).__name__}")
    if activations and input_shape is None:
        raise ValueError("export_module: activations=True needs input_shape (e.g. (1, 3, 224, 224))")
    if activations and not isinstance(model, torch.nn.Module):
        raise ValueError("export_module: activations need a module to run, not just a state dict")

    arrays: dict[str, np.ndarray] = {}
    tensor_attrs: dict[str, dict[str, Any]] = {}
    for key, tensor in state.items():
        arrays[key], extra = _to_numpy(key, tensor)
        if extra:
            tensor_attrs[key] = extra
    if not allow_nonfinite:
        _check_finite(arrays, origin)

    root: dict[str, Any] = {"arch": arch, "source": source, "input_name": input_name,
                            "input_shape": list(input_shape) if input_shape is not None else None,
                            "input_dtype": "float32",
                            "mean": list(mean) if mean is not None else None,
                            "std": list(std) if std is not None else None,
                            "checkpoint": os.path.basename(origin) if origin != "model" else None,
                            "torch_version": torch.__version__,
                            "activations_seed": seed if activations else None}
    recorded = record_activations(_unwrap(model), input_shape, seed) if activations else None
    write_weights(out, arrays, layer_attrs=attrs, root_attrs=root, activations=recorded,
                  tensor_attrs=tensor_attrs, progress=progress)
    log.info("exported %s (%s, %d tensors) to %s", origin, arch, len(arrays), out)


def _unwrap(model: Any) -> Any:
    """The module inside DataParallel/DDP (`.module`) or torch.compile (`._orig_mod`) wrappers."""
    import torch

    while True:
        if isinstance(model, (torch.nn.DataParallel, torch.nn.parallel.DistributedDataParallel)):
            model = model.module
        elif hasattr(model, "_orig_mod") and isinstance(model._orig_mod, torch.nn.Module):
            model = model._orig_mod
        else:
            return model
