"""``salun`` (SalUn, saliency unlearning): random-label unlearning confined to the weights that matter for
``forget``.

The saliency of a weight is |∂ CE(θ0; forget) / ∂θ|, the forget-set gradient at the original weights summed over
forget batches (computed in eval mode: BatchNorm statistics untouched, no Dropout noise). The top ``mask_fraction``
of all weights — one global threshold across every parameter tensor — form the mask. Then ``random-label``'s epochs
run with the gradients masked; after every step the non-salient weights are put back to θ0 and their momentum to
zero, so weight decay and momentum cannot move them either: they end exactly at θ0. Source: Fan et al. ICLR 2024
(OPTML-Group/Unlearn-Saliency), docs/methods.md §5.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .._runtime import eval_mode
from ..data import LabeledData, batches
from ..training import TrainConfig, make_optimizer
from ..validation import MAX_BATCH, MAX_EPOCHS, Options, option
from . import Context, register
from ._common import sgd_recipe
from .random_label import LABELS, relabel_then_retain


@dataclass
class SalUnConfig(Options):
    """Options of ``salun`` (the source's setting, docs/methods.md §5: mask = top 50% by saliency, 10 epochs, lr ≈ 0.013,
    SGD momentum 0.9, wd 5e-4).

    Defaults marked in docs/results.md were chosen on a validation split (benchmarks/unlearn_select.py).
    """

    mask_fraction: float = option(0.5, "share of all trainable weights that may change (the most salient)", low=0,
                                  high=1, low_open=True)
    epochs: int = option(15, "rounds of (forget with random labels, then retain with true labels); 15 with lr "
                         "2e-3 chosen over 8 architectures on validation splits (benchmarks/zoo_select.py; 10 rounds "
                         "left a small class partly remembered on a BatchNorm net)", low=1, high=MAX_EPOCHS)
    lr: float = option(2e-3, "SGD learning rate (constant); chosen over 8 architectures on validation splits "
                       "(benchmarks/zoo_select.py)", unit="per step", low=0, high=10, low_open=True)
    max_update: float | None = option(1e-3, "largest step of a forget pass, relative to the norm of the trained "
                                      "weights (the gradient is clipped to it): random labels on a confidently fit "
                                      "set give huge gradients, and the bound is the same for any architecture",
                                      unit="relative", low=0, high=1, low_open=True, none="no bound")
    momentum: float = option(0.9, "SGD momentum", low=0, high=1, high_open=True)
    weight_decay: float = option(5e-4, "SGD L2 penalty (salient weights only: the others are pinned to θ0)", low=0,
                                 high=1)
    batch_size: int = option(128, "samples per step, in both passes and in the saliency pass", low=1,
                             high=MAX_BATCH)
    labels: str = option("other", "random labels: 'other' = uniform over the K-1 wrong classes; 'uniform' = over "
                         "all K classes, as the source draws them", choices=LABELS, kind="label mode")
    train_mode: bool = option(False, "False: the retain passes run in eval mode (BatchNorm normalises by its "
                              "running statistics; 13/16 vs 11/16 validation passes, benchmarks/zoo_select.py); "
                              "True: BatchNorm batch statistics and Dropout on, "
                              "as the source trains. Forget passes always normalise by the "
                              "running statistics (a forget batch's statistics are not the population's); the "
                              "saliency pass is in eval mode")

    def recipe(self) -> TrainConfig:
        return sgd_recipe(self)


def saliency_mask(model: nn.Module, forget: LabeledData, fraction: float, batch_size: int,
                  device: torch.device) -> dict[str, torch.Tensor]:
    """Boolean masks (by parameter name, on ``device``) of the ``fraction`` of trainable weights with the largest
    |forget-set gradient| at the current weights: one global top-k over all of them."""
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    total = {n: torch.zeros_like(p) for n, p in params.items()}
    with eval_mode(model):
        for X, y in batches(forget, batch_size, None, device):
            grads = torch.autograd.grad(F.cross_entropy(model(X), y), list(params.values()), allow_unused=True)
            for t, g in zip(total.values(), grads):
                if g is not None:
                    t.add_(g)
    scores = torch.cat([t.abs().flatten() for t in total.values()])  # (P,) every trainable weight
    k = max(1, round(fraction * scores.numel()))
    flat = torch.zeros_like(scores, dtype=torch.bool)
    flat[torch.topk(scores, k, sorted=False).indices] = True
    parts = flat.split([t.numel() for t in total.values()])
    return {n: m.view_as(total[n]) for n, m in zip(total, parts)}


@register("salun", SalUnConfig, modes=("unlearn",), strength="lr",
          needs_retain="salun trains on the samples to keep after each random-label pass (neggrad needs only forget).",
          fast={"epochs": 1})
def run(model: nn.Module, forget: LabeledData, retain: LabeledData, cfg: SalUnConfig,
        ctx: Context) -> list[dict[str, Any]]:
    """Random-label unlearning restricted to the weights most salient for the forget set."""
    start = time.perf_counter()
    masks = saliency_mask(model, forget, cfg.mask_fraction, cfg.batch_size, ctx.device)
    named = dict(model.named_parameters())
    pinned = [(named[n], m, named[n].detach().clone()) for n, m in masks.items()]  # (weight, mask, θ0)
    header = {"phase": "mask", "salient": int(sum(int(m.sum()) for m in masks.values())),
              "weights": sum(m.numel() for m in masks.values()), "mask_seconds": time.perf_counter() - start}
    recipe = cfg.recipe()
    opt = make_optimizer([p for p in model.parameters() if p.requires_grad], recipe)

    def mask_grads(_: nn.Module) -> None:
        for p, m, _p0 in pinned:
            if p.grad is not None:
                p.grad.mul_(m)

    @torch.no_grad()
    def pin(_: nn.Module) -> None:
        # masked gradients alone would still let weight decay and old momentum move the non-salient weights
        for p, m, p0 in pinned:
            p.copy_(torch.where(m, p, p0))
            buf = opt.state.get(p, {}).get("momentum_buffer")
            if buf is not None:
                buf.mul_(m)

    return [header] + relabel_then_retain(model, forget, retain, recipe, cfg.labels, ctx, train_mode=cfg.train_mode,
                                          desc="salun", optimizer=opt, before_step=mask_grads, after_step=pin,
                                          max_update=cfg.max_update)
