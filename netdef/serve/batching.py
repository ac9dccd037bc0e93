"""One model instance's function: the requests Triton hands over in one call -> one session.infer -> responses.

Triton's dynamic batcher queues requests and gives an instance several at once (their batch sizes add up to
at most the signature's `batch_limit`). They are concatenated along the batch dim in arrival order, run as one
batch, and the outputs are cut back at the same offsets, so each response holds exactly its own request's items.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from netdef.serve.phases import Phases
from netdef.serve.signature import ModelSignature


class BatchedInfer:
    """An instance's batch function: `requests` (each {input name: array}) -> [{output name: array}] in order.

    Holds one InferenceSession (one execution context and stream on TensorRT), used only from its instance's
    one thread, which alone reads the counts too (no lock). Counts calls and items, so the batches Triton formed
    can be checked; with `phases`, marks the join and the inference of each batch.
    """

    def __init__(self, session: Any, signature: ModelSignature, phases: Phases | None = None) -> None:
        self.session = session
        self.phases = phases
        self.signature = signature
        self.input_names = [t.name for t in signature.inputs]
        self.output_names = [t.name for t in signature.outputs]
        self.calls = 0  # session.infer calls
        self.items = 0  # batch items inferred
        self.requests = 0

    def __call__(self, requests: Sequence[Mapping[str, np.ndarray]]) -> list[dict[str, np.ndarray]]:
        if not self.signature.batched:  # no batch dim to join along: one inference per request
            return [self._infer({n: r[n] for n in self.input_names}, 1) for r in requests]
        sizes = [int(r[self.input_names[0]].shape[0]) for r in requests]
        batch = {n: self._join(n, [r[n] for r in requests]) for n in self.input_names}
        if self.phases:
            self.phases.mark("join")
        outputs = self._infer(batch, len(requests))
        if self.phases:
            self.phases.mark("infer")
        bounds = np.cumsum([0] + sizes)
        return [{n: outputs[n][a:b] for n in self.output_names} for a, b in zip(bounds[:-1], bounds[1:])]

    def _join(self, name: str, parts: list[np.ndarray]) -> np.ndarray:
        """The requests' arrays as one batch, written straight into the session's input staging buffer where it
        has one (TensorRT: pinned memory, so the batch is copied once on its way to the GPU)."""
        shape = (sum(int(p.shape[0]) for p in parts), *parts[0].shape[1:])
        staging = self.session.input_buffer(name, shape)
        if staging is None:
            return parts[0] if len(parts) == 1 else np.concatenate(parts)
        return np.concatenate(parts, out=staging)

    def _infer(self, feeds: dict[str, np.ndarray], requests: int) -> dict[str, np.ndarray]:
        outputs = self.session.infer(feeds)
        items = int(next(iter(feeds.values())).shape[0]) if self.signature.batched else 1
        self.calls += 1
        self.items += items
        self.requests += requests
        return outputs

    def stats(self) -> dict[str, float]:
        return {"calls": self.calls, "requests": self.requests, "items": self.items,
                "mean_batch": self.items / self.calls if self.calls else 0.0}
