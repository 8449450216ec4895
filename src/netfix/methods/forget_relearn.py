"""``forget-relearn``: repair an already-trained model by forgetting, then relearning (Zhou et al. 2022;
methods.md §3; :mod:`netfix.forgetting`).

Each of ``generations`` rounds applies the forgetting operator (default: reinitialise the output layer) and then
relearns for ``epochs_per_generation`` epochs with a restarted cosine schedule. Relearning mode (``netfix.relearn``)
trains on ``data`` plus ``protect`` — typically the very training set whose labels are partly wrong, when you do not
know which: forgetting sheds the memorised noise disproportionately and a short relearning refits the consistent
signal first. Unlearning mode relearns on ``retain`` alone, so the forget set's information is shed by the operator
and not re-taught. A fraction of a from-scratch run's epochs.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from torch import nn

from ..data import LabeledData
from ..errors import ConfigError, DataError
from ..forgetting import ForgetRelearn, operator
from . import Context, kept_data, register
from .retrain import RetrainConfig, recipe_for


@dataclass
class ForgetRelearnConfig:
    """Options of ``forget-relearn``. Training options left at ``None`` come from the model's own recipe
    (``model.netfix_recipe``), else :class:`~netfix.training.TrainConfig`'s defaults."""

    operator: str = "llf"              # forgetting operator spec NAME[:key=value,...] (netfix.forgetting.operators())
    generations: int = 2               # forget + relearn rounds
    epochs_per_generation: int = 3     # relearning epochs per round
    lr: float | None = None            # peak learning rate of each round's schedule
    batch_size: int | None = None      # samples per step
    optimizer: str | None = None       # "adam", "adamw" or "sgd"
    momentum: float | None = None      # SGD momentum
    weight_decay: float | None = None  # weight decay
    lr_schedule: str | None = "cosine"  # restarted every round
    restart_lr: bool = True            # restart the schedule and optimizer state every round

    def __post_init__(self) -> None:
        operator(self.operator)  # validates the spec now, before any work
        for name in ("generations", "epochs_per_generation"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ConfigError(f"{name}: expected a whole number >= 1; got {v!r}.")


@register("forget-relearn", ForgetRelearnConfig, modes=("relearn", "unlearn"),
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
    kept_recipe = getattr(model, "netfix_recipe", None)
    history = schedule.run(model, data, recipe, generator=ctx.generator, device=ctx.device, seed=ctx.seed,
                           progress=ctx.progress, fit_kwargs={}, first_forget=True)
    if kept_recipe is not None:
        model.netfix_recipe = kept_recipe  # type: ignore[assignment]
    return history

