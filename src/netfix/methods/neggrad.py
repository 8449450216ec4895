"""``neggrad`` (GA, gradient ascent): climb the cross-entropy of the forget set, ignoring everything else.

SGD steps along +∇θ CE(forget) for a few epochs at a small learning rate: the simplest unlearning baseline, and
the only one here that needs no retained data. Nothing holds the rest of the model in place, so a large learning
rate or many epochs wrecks the test accuracy too (and can drive the loss to infinity; ``grad_clip`` bounds each
step). Source: GA as defined and benchmarked by Jia et al. 2023 and Fan et al. ICLR 2024
(OPTML-Group/Unlearn-Saliency), docs/methods.md §5.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..data import LabeledData
from ..training import TrainConfig, fit
from ..validation import MAX_BATCH, MAX_EPOCHS, Options, option
from . import Context, register
from ._common import sgd_recipe


@dataclass
class NegGradConfig(Options):
    """Options of ``neggrad`` (the source's setting, docs/methods.md §5: 5 epochs, lr 1e-4 (1e-5–1e-3), SGD momentum 0.9,
    wd 5e-4)."""

    epochs: int = option(5, "passes over the forget set", low=1, high=MAX_EPOCHS)
    lr: float = option(1e-4, "SGD learning rate (constant); ascent diverges quickly above ~1e-3", unit="per step",
                       low=0, high=10, low_open=True)
    momentum: float = option(0.9, "SGD momentum", low=0, high=1, high_open=True)
    weight_decay: float = option(5e-4, "SGD L2 penalty", low=0, high=1)
    batch_size: int = option(128, "forget samples per step", low=1, high=MAX_BATCH)
    grad_clip: float | None = option(None, "max global gradient norm per step", low=0, low_open=True, high=1e6,
                                     none="no clipping")
    train_mode: bool = option(True, "True: Dropout on during the ascent, as the source trains; False: off. "
                              "BatchNorm always normalises by its running statistics here (a forget batch's "
                              "statistics are not the population's)")

    def recipe(self) -> TrainConfig:
        return sgd_recipe(self)


def _ascent(model: nn.Module, X: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return -F.cross_entropy(model(X), y)


@register("neggrad", NegGradConfig, modes=("unlearn",), strength="lr", fast={"epochs": 1})
def run(model: nn.Module, forget: LabeledData, retain: LabeledData, cfg: NegGradConfig,
        ctx: Context) -> list[dict[str, Any]]:
    """Gradient ascent on the forget set's cross-entropy."""
    history = fit(model, forget, cfg.recipe(), generator=ctx.generator, device=ctx.device, loss_fn=_ascent,
                  train_mode=cfg.train_mode, progress=ctx.progress, desc="neggrad", freeze_norm=True)
    for h in history:
        if "loss" in h:
            h["forget_loss"] = -h["loss"]  # the CE being climbed ("loss" is the objective minimised: -CE)
    return history
