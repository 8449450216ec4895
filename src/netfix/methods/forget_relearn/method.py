"""``forget-relearn``: repair an already-trained model by forgetting, then relearning (Zhou et al. 2022;
methods.md §3; :mod:`netfix.methods.forget_relearn`).

Each of ``generations`` rounds applies the forgetting operator (default: reinitialise the output layer) and then
relearns for ``epochs_per_generation`` epochs with a restarted cosine schedule. Relearning mode (``netfix.relearn``)
trains on ``data`` plus ``protect`` — typically the very training set whose labels are partly wrong, when you do not
know which: forgetting sheds the memorised noise disproportionately and a short relearning refits the consistent
signal first. Unlearning mode relearns on ``retain`` alone, so the forget set's information is shed by the operator
and not re-taught. A fraction of a from-scratch run's epochs. With a user's ``train_fn`` (:func:`netfix.unlearn`),
each generation relearns by calling it once instead of netfix's loop (give it the relearning budget you want).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from torch import nn

from ... import card
from ...data import LabeledData
from ...errors import ConfigError, DataError
from ...validation import MAX_BATCH, MAX_EPOCHS, Options, option
from .. import Context, kept_data, register
from ..retrain import _RECIPE, RetrainConfig, recipe_for
from .operators import operator
from .schedule import ForgetRelearn


@dataclass
class ForgetRelearnConfig(Options):
    """Options of ``forget-relearn``. Training options left at ``None`` come from the model's own recipe
    (its card's recipe), else :class:`~netfix.training.TrainConfig`'s defaults."""

    operator: str = option("llf", "forgetting operator spec NAME[:key=value,...] "
                           "(netfix.methods.forget_relearn.operators())")
    generations: int = option(2, "forget + relearn rounds", low=1, high=MAX_EPOCHS)
    epochs_per_generation: int = option(3, "relearning epochs per round", low=1, high=MAX_EPOCHS)
    lr: float | None = option(None, "peak learning rate of each round's schedule", unit="per step", low=0, high=10,
                              low_open=True, none=_RECIPE)
    batch_size: int | None = option(None, "samples per step", low=1, high=MAX_BATCH, none=_RECIPE)
    optimizer: str | None = option(None, "the optimizer", choices=("adam", "adamw", "sgd"),
                                   none=_RECIPE)
    momentum: float | None = option(None, "SGD momentum", low=0, high=1, high_open=True, none=_RECIPE)
    weight_decay: float | None = option(None, "L2 penalty", low=0, high=1, none=_RECIPE)
    lr_schedule: str | None = option("cosine", "learning-rate schedule, restarted every round",
                                     choices=("constant", "cosine"), none=_RECIPE)
    restart_lr: bool = option(True, "restart the schedule and optimizer state every round")

    def check(self) -> None:
        operator(self.operator)  # parses and validates the spec now, before any work
        if self.generations * self.epochs_per_generation > MAX_EPOCHS:
            raise ConfigError(f"generations, epochs_per_generation: expected at most {MAX_EPOCHS} epochs in all; "
                              f"got {self.generations} × {self.epochs_per_generation}. Fix: fewer generations or "
                              "epochs per generation.")


@register("forget-relearn", ForgetRelearnConfig, modes=("relearn", "unlearn"), trains=True, relearns_as_trained=True,
          summary="forgetting operator, then relearning, for a few generations (repairs noisy-label training)")
def run(model: nn.Module, forget: LabeledData, retain: LabeledData, cfg: ForgetRelearnConfig,
        ctx: Context) -> list[dict[str, Any]]:
    """Forget with the operator, relearn on the kept data; repeat."""
    data = kept_data(forget, retain, ctx)
    if len(data) == 0:
        raise DataError("retain: is empty; relearning needs data to train on. Fix: pass the samples to keep.")
    recipe = recipe_for(model, RetrainConfig(**{f.name: getattr(cfg, f.name) for f in fields(RetrainConfig)
                                                 if hasattr(cfg, f.name)}))
    schedule = ForgetRelearn(operator(cfg.operator), cfg.generations, cfg.epochs_per_generation, cfg.restart_lr)
    kept_recipe = card.of(model).recipe
    history = schedule.run(model, data, recipe, generator=ctx.generator, device=ctx.device, seed=ctx.seed,
                           progress=ctx.progress, fit_kwargs={}, first_forget=True, train_fn=ctx.train_fn)
    if kept_recipe is not None:
        card.update(model, recipe=kept_recipe)
    return history

