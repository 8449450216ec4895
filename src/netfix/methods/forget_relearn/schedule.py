"""The forget-and-relearn training schedule: ``generations`` rounds of relearning with a forgetting operator applied
before every round but the first (a ``schedule=`` of :func:`netfix.train`).

Example:
    >>> out = netfix.train(model, noisy_train, schedule=ForgetRelearn("llf:start=body.3", generations=5,
    ...                                                               epochs_per_generation=10))
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import nn

from ..._runtime import seeded
from ...data import LabeledData, as_data
from ...errors import ConfigError
from ...validation import MAX_EPOCHS, Options, option
from .operators import MagnitudeRewind, Operator, operator

__all__ = ["ForgetRelearn"]

@dataclass
class ForgetRelearn(Options):
    """A ``schedule=`` for :func:`netfix.train`: ``generations`` rounds of relearning for
    ``epochs_per_generation`` epochs each, with ``operator`` applied before every round but the first.

    ``restart_lr``: each generation restarts the learning-rate schedule and the optimizer state (the paper's
    setting); ``False`` runs one schedule over all generations. ``monitor``: optional held-out data whose accuracy
    is logged after every generation (with the training accuracy and loss) in the history."""

    operator: "Operator | str" = option(dataclasses.MISSING, "the forgetting operator, or its spec "
                                        "NAME[:key=value,...] (operators())")
    generations: int = option(5, "forget + relearn rounds (the operator acts before every round but the first)",
                              low=1, high=MAX_EPOCHS)
    epochs_per_generation: int = option(10, "relearning epochs per round", low=1, high=MAX_EPOCHS)
    restart_lr: bool = option(True, "restart the learning-rate schedule and optimizer state every round")
    monitor: Any = option(None, "held-out data (LabeledData, a Dataset or (X, y)) whose accuracy is logged after "
                          "every generation", none="no monitoring")

    def check(self) -> None:
        self.operator = operator(self.operator)
        if self.generations * self.epochs_per_generation > MAX_EPOCHS:
            raise ConfigError(f"generations, epochs_per_generation: expected at most {MAX_EPOCHS} epochs in all; "
                              f"got {self.generations} × {self.epochs_per_generation}. Fix: fewer generations or "
                              "epochs per generation.")
        if self.monitor is not None:
            self.monitor = as_data(self.monitor, "monitor")

    @property
    def epochs(self) -> int:
        return self.generations * self.epochs_per_generation

    def describe(self) -> dict[str, Any]:
        assert isinstance(self.operator, Operator)
        return {"schedule": "forget-relearn", **self.operator.describe(), "generations": self.generations,
                "epochs_per_generation": self.epochs_per_generation, "restart_lr": self.restart_lr}

    def run(self, model: nn.Module, data: LabeledData, cfg: Any, *, generator: torch.Generator,
            device: torch.device, seed: int, progress: bool, fit_kwargs: dict[str, Any],
            first_forget: bool = False, train_fn: "Callable[..., Any] | None" = None) -> list[dict[str, Any]]:
        """Train ``model`` (a private copy, changed in place) generation by generation; the history holds the
        per-epoch records (with their ``generation``) and one summary record per generation. ``train_fn``: the
        user's own loop relearns each generation (:func:`netfix.training.train_with`) instead of netfix's."""
        from ...evaluation import accuracy
        from ...training import fit, make_optimizer, train_with

        op = self.operator
        assert isinstance(op, Operator)
        if not first_forget:
            op.begin(model, seed)
        gen_cfg = replace(cfg, epochs=self.epochs_per_generation)
        steps_per_gen = self.epochs_per_generation * max(1, math.ceil(len(data) / cfg.batch_size))
        total = self.generations * steps_per_gen
        shared_opt = None if self.restart_lr else make_optimizer([p for p in model.parameters()
                                                                  if p.requires_grad], cfg)
        history: list[dict[str, Any]] = []
        start = time.perf_counter()
        for gen in range(1, self.generations + 1):
            forgot = None
            if gen > 1 or first_forget:
                with seeded(seed + 1000 * gen, device):
                    new = op(model, seed=seed + 1000 * gen, data=data if op.needs_data else None)
                model.load_state_dict(new.state_dict())
                forgot = accuracy(model, data)
            if train_fn is not None:
                hist = train_with(train_fn, model, data, desc=f"generation {gen}/{self.generations}")
                if op.has_constraint:
                    op.constrain(model)
            else:
                hist = fit(model, data, gen_cfg, generator=generator, device=device, progress=progress,
                           desc=f"generation {gen}/{self.generations}", optimizer=shared_opt,
                           after_step=op.constrain if op.has_constraint else None,
                           lr_steps=None if self.restart_lr else ((gen - 1) * steps_per_gen, total), **fit_kwargs)
            history += [{"generation": gen, **h} for h in hist]
            record: dict[str, Any] = {"generation": gen, "loss": hist[-1].get("loss") if hist else None,
                                      "train_acc": accuracy(model, data),
                                      "seconds": time.perf_counter() - start}
            if forgot is not None:
                record["train_acc_after_forgetting"] = forgot
            if self.monitor is not None:
                assert isinstance(self.monitor, LabeledData)
                record["monitor_acc"] = accuracy(model, self.monitor)
            if isinstance(op, MagnitudeRewind):
                record["sparsity"] = op.sparsity()
            history.append(record)
        return history

