"""``retrain``: train from scratch on what should remain — the gold-standard reference every repair is
compared with.

Unlearning retrains on ``retain``; relearning retrains on ``protect`` plus the corrected ``data``. The recipe is
the one the model was trained with (its card's recipe, set by :func:`netfix.train` and kept in model files),
so the reference differs from the original only in its data; options given here override it. A user's own
training loop (``train_fn``, :func:`netfix.unlearn`) replaces netfix's loop and the recipe altogether.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from torch import nn

from .. import card
from ..data import LabeledData
from ..errors import DataError
from ..models import reinit
from ..training import TrainConfig, fit, train_with
from ..validation import MAX_BATCH, MAX_EPOCHS, SEED_MAX, Options, option
from . import Context, kept_data, register

_RECIPE = "the model's training recipe, else TrainConfig's default"


@dataclass
class RetrainConfig(Options):
    """Options of ``retrain``; ``None`` = take the value from the model's own training recipe
    (its card's recipe), else :class:`~netfix.training.TrainConfig`'s default."""

    epochs: int | None = option(None, "passes over the data", low=1, high=MAX_EPOCHS, none=_RECIPE)
    lr: float | None = option(None, "peak learning rate", unit="per step", low=0, high=10, low_open=True,
                              none=_RECIPE)
    batch_size: int | None = option(None, "samples per step", low=1, high=MAX_BATCH, none=_RECIPE)
    optimizer: str | None = option(None, "the optimizer", choices=("adam", "adamw", "sgd"), none=_RECIPE)
    momentum: float | None = option(None, "SGD momentum (ignored by Adam)", low=0, high=1, high_open=True,
                                    none=_RECIPE)
    weight_decay: float | None = option(None, "L2 penalty (decoupled for adamw)", low=0, high=1, none=_RECIPE)
    lr_schedule: str | None = option(None, "learning-rate schedule", choices=("constant", "cosine"), none=_RECIPE)
    label_smoothing: float | None = option(None, "cross-entropy label smoothing", low=0, high=1, high_open=True,
                                           none=_RECIPE)
    grad_clip: float | None = option(None, "max global gradient norm", low=0, low_open=True, high=1e6,
                                     none=_RECIPE + " (which may be no clipping)")
    precision: str | None = option(None, "arithmetic of the forward pass", choices=("fp32", "bf16"), none=_RECIPE)
    init_seed: int | None = option(None, "seed of the fresh initialisation", low=0, high=SEED_MAX,
                                   none="the run's seed")


def recipe_for(model: nn.Module, cfg: RetrainConfig) -> TrainConfig:
    """The model's training recipe with ``cfg``'s non-None options laid over it."""
    base: dict[str, Any] = dict(card.of(model).recipe or {})
    base = {k: v for k, v in base.items() if k in {f.name for f in fields(TrainConfig)}}
    for f in fields(TrainConfig):
        v = getattr(cfg, f.name, None)
        if v is not None:
            base[f.name] = v
    return TrainConfig(**base)


@register("retrain", RetrainConfig, modes=("unlearn", "relearn"), guarded=False, trains=True, fast={"epochs": 1})
def run(model: nn.Module, forget: LabeledData, retain: LabeledData, cfg: RetrainConfig,
        ctx: Context) -> list[dict[str, Any]]:
    """Retrain from scratch on the retained data (plus the corrected data when relearning)."""
    recipe = recipe_for(model, cfg)
    data = kept_data(forget, retain, ctx)
    if len(data) == 0:
        raise DataError("retain: is empty; retraining needs data to train on. Fix: pass the samples to keep.")
    fresh = reinit(model, ctx.seed if cfg.init_seed is None else cfg.init_seed)
    model.load_state_dict(fresh.state_dict())
    if ctx.train_fn is not None:  # the user's own loop: a reference trained exactly like their original
        return train_with(ctx.train_fn, model, data, desc="retrain")
    history = fit(model, data, recipe, generator=ctx.generator, device=ctx.device, progress=ctx.progress,
                  desc="retrain")
    card.update(model, recipe={f.name: getattr(recipe, f.name) for f in fields(TrainConfig)})
    return history
