"""``l1-sparse``: fine-tune on the retain set with an L1 penalty that pushes the model towards sparsity.

The loss is CE(retain) + γ_t·‖θ‖₁ with γ_t = γ·(1 − t/T) in epoch t = 0 … T−1: strongest at the start, where it
prunes what only the forget set needed, decaying linearly so the last epochs mostly fine-tune. Sparsity makes
approximate unlearning closer to retraining (Jia et al. 2023, "Model sparsity can simplify machine unlearning";
OPTML-Group/Unlearn-Saliency), docs/methods.md §5.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from ..data import LabeledData
from ..training import TrainConfig, fit, make_optimizer
from ..validation import MAX_BATCH, MAX_EPOCHS, Options, option
from . import Context, register
from ._common import sgd_recipe


@dataclass
class L1SparseConfig(Options):
    """Options of ``l1-sparse`` (the source's setting, docs/methods.md §5: γ = 1e-4, lr 0.01, 10 epochs, SGD momentum
    0.9, wd 5e-4).

    Defaults marked in docs/results.md were chosen on a validation split (benchmarks/unlearn_select.py).
    """

    gamma: float = option(5e-4, "initial weight of ‖θ‖₁ (sum of |w| over all trainable weights), decayed linearly "
                          "to γ/T in the last epoch; 0 = plain fine-tuning", low=0, high=1e3)
    epochs: int = option(10, "passes over the retain set (T)", low=1, high=MAX_EPOCHS)
    lr: float = option(1e-2, "SGD learning rate (constant)", unit="per step", low=0, high=10, low_open=True)
    momentum: float = option(0.9, "SGD momentum", low=0, high=1, high_open=True)
    weight_decay: float = option(5e-4, "SGD L2 penalty", low=0, high=1)
    batch_size: int = option(128, "samples per step", low=1, high=MAX_BATCH)
    train_mode: bool = option(True, "True: BatchNorm batch statistics and Dropout on, as the source trains; False: "
                              "eval mode (BatchNorm statistics frozen)")

    def recipe(self) -> TrainConfig:
        return sgd_recipe(self)


def _penalised(params: list[nn.Parameter], weight: float, ces: list[torch.Tensor]
               ) -> Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]:
    """CE + ``weight``·‖params‖₁, recording each step's CE in ``ces``."""
    def loss_fn(m: nn.Module, X: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        ce = F.cross_entropy(m(X), y)
        ces.append(ce.detach())
        return ce + weight * sum(p.abs().sum() for p in params) if weight else ce
    return loss_fn


@register("l1-sparse", L1SparseConfig, modes=("unlearn",), strength="lr",
          needs_retain="l1-sparse fine-tunes on the samples to keep.", fast={"epochs": 1})
def run(model: nn.Module, forget: LabeledData, retain: LabeledData, cfg: L1SparseConfig,
        ctx: Context) -> list[dict[str, Any]]:
    """Fine-tune on the retain set with a linearly decaying L1 penalty on the weights."""
    recipe = cfg.recipe()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = make_optimizer(params, recipe)  # one optimizer across the per-epoch fits: momentum carries over
    one = dataclasses.replace(recipe, epochs=1)
    history: list[dict[str, Any]] = []
    step, start = 0, time.perf_counter()
    for t in tqdm(range(cfg.epochs), desc="l1-sparse", unit="epoch", disable=not ctx.progress, leave=False):
        weight = cfg.gamma * (1 - t / cfg.epochs)
        ces: list[torch.Tensor] = []  # per-step CE, without the penalty
        h = fit(model, retain, one, generator=ctx.generator, device=ctx.device,
                loss_fn=_penalised(params, weight, ces), train_mode=cfg.train_mode, optimizer=opt, desc="l1-sparse")[-1]
        step += h["step"]
        with torch.no_grad():
            l1 = float(sum(p.abs().sum() for p in params))
        history.append({"epoch": t + 1, "step": step, "loss": h["loss"],
                        "ce": float(torch.stack(ces).mean()) if ces else float("nan"),
                        "l1_weight": weight,  # γ_t = γ(1 - t/T)
                        "l1_norm": l1,        # ‖θ‖₁ at the end of the epoch
                        "lr": recipe.lr, "seconds": time.perf_counter() - start})
    model.eval()
    return history
