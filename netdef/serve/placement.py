"""Where each model instance runs: instances spread round-robin over the GPUs (TensorRT) or all on the
executor's device (netdef's executor on CPU or CUDA)."""
from __future__ import annotations

from typing import Sequence


def parse_gpus(text: str | None) -> list[int] | None:
    """"0,1" -> [0, 1]; None or "" -> None (every visible GPU)."""
    if not text:
        return None
    try:
        gpus = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise ValueError(f"--gpus {text!r}: expected GPU indices like 0,1") from None
    if not gpus or any(g < 0 for g in gpus) or len(set(gpus)) != len(gpus):
        raise ValueError(f"--gpus {text!r}: expected distinct GPU indices like 0,1")
    return gpus


def instance_devices(executor: str, instances: int, gpus: Sequence[int] | None = None, device: str | None = None,
                     visible_gpus: int | None = None) -> list[str | None]:
    """One device string per instance, in the form the session factory takes (`--device`).

    tensorrt: GPU indices, round-robin over `gpus` (default: every visible GPU), so 2 instances on 2 GPUs get one
    GPU each and 4 get two each. netdef: `device` (cpu, cuda) for every instance.
    """
    if instances < 1:
        raise ValueError(f"--instances {instances}: at least 1")
    if executor != "tensorrt":
        if gpus:
            raise ValueError("--gpus places TensorRT instances; the netdef executor runs on --device (cpu or cuda)")
        return [device] * instances
    if device is not None and gpus:
        raise ValueError("give either --device (one GPU) or --gpus (several), not both")
    if device is not None:
        return [device] * instances
    if gpus is None:
        if visible_gpus is None:
            from netdef.runtime import cuda

            visible_gpus = cuda.device_count()
        if visible_gpus < 1:
            raise ValueError("no CUDA GPU is visible for the tensorrt executor (use --executor netdef on a CPU)")
        gpus = range(visible_gpus)
    gpus = list(gpus)
    return [str(gpus[i % len(gpus)]) for i in range(instances)]
