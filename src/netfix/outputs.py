"""A model's outputs over a dataset: the one inference pass every metric reads (:mod:`netfix.evaluation`,
:mod:`netfix.forget_score`). Below both, so neither imports the other for it."""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import nn

from ._runtime import eval_mode, model_device
from .adapter import as_logits
from .data import LabeledData, batches
from .streaming import move

__all__ = ["outputs", "predict"]


@torch.no_grad()  # a generator: torch turns gradients off around each step of it, not in the caller's code
def outputs(model: nn.Module, data: LabeledData, batch_size: int) -> Iterator[tuple[int, torch.Tensor, torch.Tensor]]:
    """``(offset, logits, labels)`` per batch, on the CPU, with ``model`` in eval mode and no gradients: the one
    inference pass every metric reads (a streamed set fills one reused batch buffer)."""
    dev = model_device(model)
    view = as_logits(model, move(data.X[:2], dev)) if len(data) else model
    at = 0
    with eval_mode(model):
        for X, y in batches(data, batch_size, device=dev, reuse=True):
            yield at, view(X).float().cpu(), y.cpu()
            at += len(y)


def predict(model: nn.Module, data: LabeledData, batch_size: int = 1024) -> torch.Tensor:
    """Logits (N, K) of ``model`` in eval mode on ``data``, on the CPU. The model's train/eval flags are
    restored afterwards."""
    out: "torch.Tensor | None" = None
    for at, logits, _ in outputs(model, data, batch_size):
        if out is None:  # one (N, K) buffer filled in place: no per-batch pieces held until a final cat,
            out = torch.empty((len(data), logits.shape[1]))  # which fragments the heap on a streamed set
        out[at:at + len(logits)] = logits
    return out if out is not None else torch.empty(0, 0)
