"""``finetune``: keep training on what should remain — the cheapest baseline every repair should beat.

Unlearning fine-tunes on ``retain`` (the forget set fades as the model drifts); relearning fine-tunes on
``protect`` plus the corrected ``data``. The original weights are the starting point, so it costs a few epochs,
not a full retrain. With a user's ``train_fn`` (:func:`netfix.unlearn`), their own loop fine-tunes instead
(from the trained weights; the epochs it runs are its own).

The unlearning defaults (SGD, momentum 0.9, peak lr 0.1 on a cosine schedule, 8 epochs) were chosen on a validation
split
(benchmarks/unlearn_select.py): a large learning rate is what makes fine-tuning forget — it knocks the model out of
its memorising minimum, and the retained data pulls it back without the forget set (validation, class forgetting:
gap 28 at lr 0.04 for 5 epochs, 0.7 at lr 0.1 for 6, 0.37 for 8; random forgetting 7.4 → 5.4), at 8-14 % of a
retrain. Each step is bounded to 0.3 % of the weights' norm (``max_update``): at lr 0.1 unbounded, fine-tuning
wrecked LeNet, a Mixer and a ViT on the 8-architecture validation study (retained accuracy down 78-88 points,
benchmarks/zoo_select.py); bounded, the worst loss there is 4.9 points and the bench MLP still forgets a class (gap
0.66). Relearning keeps lr 0.01 for 5 epochs, unbounded.
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


# Unlearning needs a large step (it must knock the model out of its memorising minimum); relearning a corrected set
# keeps the gentler one it always had.
MODE_DEFAULTS: dict[str, dict[str, Any]] = {"unlearn": {"lr": 0.1, "epochs": 8, "max_update": 3e-3},
                                            "relearn": {"lr": 1e-2, "epochs": 5, "max_update": None}}


@dataclass
class FinetuneConfig(Options):
    """Options of ``finetune`` (the literature's FT: SGD with momentum, a few epochs, docs/methods.md §5)."""

    epochs: int | None = option(None, "passes over the retained (+ corrected) data", low=1, high=100_000,
                                none="the mode's default: 8 to unlearn, 5 to relearn (MODE_DEFAULTS)")
    lr: float | None = option(None, "SGD learning rate (peak of the cosine schedule)", unit="per step", low=0,
                              high=10, low_open=True, none="the mode's default: 0.1 to unlearn, 0.01 to relearn")
    momentum: float = option(0.9, "SGD momentum", low=0, high=1, high_open=True)
    weight_decay: float = option(0.0, "L2 penalty", low=0, high=1)
    batch_size: int = option(128, "samples per step", low=1, high=1 << 20)
    lr_schedule: str = option("cosine", "learning-rate schedule", choices=("constant", "cosine"))
    max_update: float | None = option(None, "largest step, relative to the norm of the trained weights (the gradient "
                                      "is clipped to it): a scale-free bound that keeps a large learning rate from "
                                      "wrecking a model it does not suit", unit="relative", low=0, high=1,
                                      low_open=True, none="the mode's default: 3e-3 to unlearn, no bound to relearn")

    def resolved(self, name: str, mode: str) -> Any:
        """An option's value for ``mode``: its own, or the mode's default when left at None."""
        value = getattr(self, name)
        return MODE_DEFAULTS[mode][name] if value is None else value

    def recipe(self, mode: str) -> TrainConfig:
        fields = {k: v for k, v in asdict(self).items() if k != "max_update"}
        return TrainConfig(optimizer="sgd", **{**fields, "epochs": self.resolved("epochs", mode),
                                               "lr": self.resolved("lr", mode)})


@register("finetune", FinetuneConfig, modes=("unlearn", "relearn"), strength="lr", trains=True, fast={"epochs": 1})
def run(model: nn.Module, forget: LabeledData, retain: LabeledData, cfg: FinetuneConfig,
        ctx: Context) -> list[dict[str, Any]]:
    """Fine-tune on the retained data (plus the corrected data when relearning)."""
    data = kept_data(forget, retain, ctx)
    if len(data) == 0:
        raise DataError("retain: is empty; fine-tuning needs data to train on. Fix: pass the samples to keep.")
    if ctx.train_fn is not None:  # the user's own loop, from the trained weights (its budget is theirs to set)
        return train_with(ctx.train_fn, model, data, desc="finetune")
    return fit(model, data, cfg.recipe(ctx.mode), generator=ctx.generator, device=ctx.device, progress=ctx.progress,
               desc="finetune", max_update=cfg.resolved("max_update", ctx.mode))
