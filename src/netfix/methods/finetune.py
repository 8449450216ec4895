"""``finetune``: keep training on what should remain — the cheapest baseline every repair should beat.

Unlearning fine-tunes on ``retain`` (the forget set fades as the model drifts); relearning fine-tunes on
``protect`` plus the corrected ``data``. The original weights are the starting point, so it costs a few epochs,
not a full retrain. With a user's ``train_fn`` (:func:`netfix.unlearn`), their own loop fine-tunes instead
(from the trained weights; the epochs it runs are its own).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from torch import nn

from ..data import LabeledData
from ..errors import DataError
from ..training import TrainConfig, fit, train_with
from ..validation import Options, option
from . import Context, kept_data, register


@dataclass
class FinetuneConfig(Options):
    """Options of ``finetune`` (the literature's FT: SGD with momentum, a few epochs, methods.md §5)."""

    epochs: int = option(5, "passes over the retained (+ corrected) data", low=1, high=100_000)
    lr: float = option(1e-2, "SGD learning rate", unit="per step", low=0, high=10, low_open=True)
    momentum: float = option(0.9, "SGD momentum", low=0, high=1, high_open=True)
    weight_decay: float = option(0.0, "L2 penalty", low=0, high=1)
    batch_size: int = option(128, "samples per step", low=1, high=1 << 20)
    lr_schedule: str = option("cosine", "learning-rate schedule", choices=("constant", "cosine"))

    def recipe(self) -> TrainConfig:
        return TrainConfig(optimizer="sgd", **asdict(self))


@register("finetune", FinetuneConfig, modes=("unlearn", "relearn"), strength="lr", trains=True)
def run(model: nn.Module, forget: LabeledData, retain: LabeledData, cfg: FinetuneConfig,
        ctx: Context) -> list[dict[str, Any]]:
    """Fine-tune on the retained data (plus the corrected data when relearning)."""
    data = kept_data(forget, retain, ctx)
    if len(data) == 0:
        raise DataError("retain: is empty; fine-tuning needs data to train on. Fix: pass the samples to keep.")
    if ctx.train_fn is not None:  # the user's own loop, from the trained weights (its budget is theirs to set)
        return train_with(ctx.train_fn, model, data, desc="finetune")
    return fit(model, data, cfg.recipe(), generator=ctx.generator, device=ctx.device, progress=ctx.progress,
               desc="finetune")
