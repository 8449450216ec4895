"""The user's own training loop (``train_fn``), which netfix runs instead of its own where a method trains on the
kept data (retrain, finetune, forget-relearn): checked before any work, run on the user's module, its result
checked for weights that fit and stay finite, and recorded by name.

Example:
    >>> def my_loop(model, dataset):            # the user's recipe: any optimiser, schedule, augmentation
    ...     ...
    >>> hist = train_with(my_loop, model, data, desc="retrain")
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from .adapter import unwrap
from .data import LabeledData
from .errors import ConfigError, DivergedError, ModelError

__all__ = ["TrainFn", "check_train_fn", "describe_train_fn", "train_with"]

# a user's own training recipe: trains ``model`` (a fresh or partly reset copy) on ``dataset`` — a torch Dataset of
# (input, label) items — in place, or returns the trained model
TrainFn = Callable[[nn.Module, "torch.utils.data.Dataset[Any]"], "nn.Module | None"]


def check_train_fn(train_fn: Any, argument: str = "train_fn") -> None:
    """Refuse a ``train_fn`` that is not a callable ``(model, dataset) -> model | None``, before any work."""
    if train_fn is not None and not callable(train_fn):
        raise ConfigError(f"{argument}: expected a function train_fn(model, dataset) -> model (your own training "
                          f"loop); got {type(train_fn).__name__}.")


def describe_train_fn(train_fn: Callable[..., Any]) -> str:
    """``module.qualname`` of a user's training function, for the run's record."""
    return f"{getattr(train_fn, '__module__', '?')}.{getattr(train_fn, '__qualname__', type(train_fn).__name__)}"


def train_with(train_fn: Callable[..., Any], model: nn.Module, data: LabeledData, desc: str = "train_fn"
               ) -> list[dict[str, Any]]:
    """Train ``model`` (a private copy, changed in place) with the user's own ``train_fn(model, dataset)``
    instead of netfix's loop: it gets the user's module (not netfix's logits view of it) in train mode and
    ``data`` as a Dataset of ``(input, label)`` items (streamed sets read through their own transforms); it trains
    in place or returns a model with the same weights' names and shapes. Weights that come back NaN/inf are an
    error. The history holds one record: the seconds it took."""
    inner = unwrap(model)
    inner.train()
    start = time.perf_counter()
    out = train_fn(inner, data)
    if out is not None and out is not inner:
        if not isinstance(out, nn.Module):
            raise ModelError(f"train_fn: returned a {type(out).__name__}; expected the trained model (an "
                             "nn.Module) or None after training the model it was given in place.")
        try:
            inner.load_state_dict(out.state_dict())
        except RuntimeError as e:
            raise ModelError(f"train_fn: returned a model whose weights do not fit the one it was given ({e}). Fix: "
                             "train the model you are given (in place, or return it).") from None
    model.eval()
    bad = [n for n, p in inner.named_parameters() if not bool(torch.isfinite(p).all())]
    if bad:
        raise DivergedError(f"train_fn: left NaN or infinite weights in {bad[0]} (and {len(bad) - 1} more). Fix: "
                            "check your training function's learning rate on this data.")
    return [{"train_fn": describe_train_fn(train_fn), "n": len(data), "seconds": time.perf_counter() - start,
             "desc": desc}]
