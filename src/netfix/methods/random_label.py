"""``random-label`` (RL): overwrite what the model learned on ``forget`` with noise, then repair the rest.

Each epoch makes two passes with one SGD optimizer (its momentum carries over): first over ``forget`` with fresh
random labels — a uniformly random *other* class by default, so every step pushes away from the true one — then
over ``retain`` with the true labels, which keeps (and re-sharpens) what should remain. Source: RL as defined and
benchmarked by Jia et al. 2023 and Fan et al. ICLR 2024 (OPTML-Group/Unlearn-Saliency), docs/methods.md §5.
:func:`relabel_then_retain` is the loop; ``salun`` reuses it with masked gradients.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from ..data import LabeledData
from ..errors import DataError
from ..training import TrainConfig, fit, make_optimizer
from ..validation import MAX_BATCH, MAX_EPOCHS, Options, option
from . import Context, register
from ._common import sgd_recipe

LABELS = ("other", "uniform")


@dataclass
class RandomLabelConfig(Options):
    """Options of ``random-label`` (the source's setting, docs/methods.md §5: 10 epochs, lr 0.01–0.1, SGD momentum 0.9,
    wd 5e-4)."""

    epochs: int = option(10, "rounds of (forget with random labels, then retain with true labels)", low=1,
                         high=MAX_EPOCHS)
    lr: float = option(1e-3, "SGD learning rate (constant); chosen over 8 architectures on validation splits (benchmarks/zoo_select.py)", unit="per step", low=0, high=10,
                       low_open=True)
    max_update: float | None = option(1e-3, "largest step of a forget pass, relative to the norm of the trained "
                                      "weights (the gradient is clipped to it): random labels on a confidently fit "
                                      "set give huge gradients, and the bound is the same for any architecture",
                                      unit="relative", low=0, high=1, low_open=True, none="no bound")
    momentum: float = option(0.9, "SGD momentum", low=0, high=1, high_open=True)
    weight_decay: float = option(5e-4, "SGD L2 penalty", low=0, high=1)
    batch_size: int = option(128, "samples per step, in both passes", low=1, high=MAX_BATCH)
    labels: str = option("other", "random labels: 'other' = uniform over the K-1 wrong classes; 'uniform' = over "
                         "all K classes, as the source draws them (about 1 in K is then the true one)",
                         choices=LABELS, kind="label mode")
    train_mode: bool = option(False, "False: the retain passes run in eval mode (BatchNorm normalises by its "
                              "running statistics; 14/16 vs 10/16 validation passes, benchmarks/zoo_select.py); "
                              "True: BatchNorm batch statistics and Dropout on, "
                              "as the source trains. Forget passes always normalise by the "
                              "running statistics (a forget batch's statistics are not the population's)")

    def recipe(self) -> TrainConfig:
        return sgd_recipe(self)


def random_labels(data: LabeledData, how: str, generator: torch.Generator) -> LabeledData:
    """``data`` with a random label per sample: another class (``how="other"``) or any class (``"uniform"``)."""
    k = data.num_classes
    if how == "uniform":
        y = torch.randint(0, k, data.y.shape, generator=generator)
    else:
        if k < 2:
            raise DataError(f"{data.name}: the model has {k} class; a wrong label needs at least two. "
                            "Fix: use labels=\"uniform\", or a model with more outputs.")
        y = (data.y.cpu() + torch.randint(1, k, data.y.shape, generator=generator)) % k
    return data.with_labels(y, data.name + "/random-labels")


def relabel_then_retain(model: nn.Module, forget: LabeledData, retain: LabeledData, recipe: TrainConfig,
                        labels: str, ctx: Context, *, train_mode: bool = True, desc: str = "random-label",
                        max_update: float | None = None,
                        optimizer: torch.optim.Optimizer | None = None,
                        before_step: Callable[[nn.Module], None] | None = None,
                        after_step: Callable[[nn.Module], None] | None = None) -> list[dict[str, Any]]:
    """RL's epochs, in place on ``model``: each one passes over ``forget`` with fresh random labels, then over
    ``retain`` with the true ones, through :func:`~netfix.training.fit` with one shared optimizer and its hooks.
    Returns one dict per epoch."""
    opt = optimizer or make_optimizer([p for p in model.parameters() if p.requires_grad], recipe)
    one = dataclasses.replace(recipe, epochs=1)
    common: dict[str, Any] = {"generator": ctx.generator, "device": ctx.device, "train_mode": train_mode,
                              "before_step": before_step, "after_step": after_step, "optimizer": opt}
    history: list[dict[str, Any]] = []
    step, start = 0, time.perf_counter()
    for epoch in tqdm(range(recipe.epochs), desc=desc, unit="epoch", disable=not ctx.progress, leave=False):
        f = fit(model, random_labels(forget, labels, ctx.generator), one, desc=f"{desc} forget", freeze_norm=True,
                max_update=max_update, **common)[-1]
        r = fit(model, retain, one, desc=f"{desc} retain", **common)[-1]
        step += f["step"] + r["step"]
        n_f, n_r = len(forget), len(retain)
        history.append({"epoch": epoch + 1, "step": step,
                        "loss": (f["loss"] * n_f + r["loss"] * n_r) / (n_f + n_r),
                        "forget_loss": f["loss"],   # CE to the random labels
                        "retain_loss": r["loss"],   # CE to the true labels
                        "lr": recipe.lr, "seconds": time.perf_counter() - start})
    model.eval()
    return history


@register("random-label", RandomLabelConfig, modes=("unlearn",), strength="lr",
          needs_retain=("random-label trains on the samples to keep after each random-label pass"
                        " (neggrad needs only forget)."), fast={"epochs": 1})
def run(model: nn.Module, forget: LabeledData, retain: LabeledData, cfg: RandomLabelConfig,
        ctx: Context) -> list[dict[str, Any]]:
    """Train on the forget set with random labels, then on the retain set with true labels, each epoch."""
    return relabel_then_retain(model, forget, retain, cfg.recipe(), cfg.labels, ctx, train_mode=cfg.train_mode,
                               max_update=cfg.max_update)
