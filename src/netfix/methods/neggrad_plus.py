"""``neggrad+`` (NegGrad+): descend on the retain set and ascend on the forget set in the same step.

The loss is α·CE(retain batch) − (1−α)·CE(forget batch). An epoch is one pass over ``retain``; every retain batch
is paired with the next forget batch, the forget set being reshuffled and cycled whenever it runs out (it is
usually much smaller). Both batches go through the model in one forward pass, so BatchNorm in train mode sees
at least two samples even when a forget batch holds one. Source: Kurmanji et al. 2023 (meghdadk/SCRUB),
methods.md §5.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import RandomSampler

from ..data import LabeledData, batches
from ..training import TrainConfig, fit
from ..validation import MAX_BATCH, MAX_EPOCHS, Options, option
from . import Context, register
from ._common import sgd_recipe


@dataclass
class NegGradPlusConfig(Options):
    """Options of ``neggrad+`` (the source's setting, docs/methods.md §5: α = 0.95, 10 epochs, lr 0.01, SGD momentum 0.9,
    wd 5e-4).

    Defaults marked in docs/results.md were chosen on a validation split (benchmarks/unlearn_select.py).
    """

    alpha: float = option(0.95, "weight of the retain CE; the forget CE is ascended with 1-α (1 = plain "
                          "fine-tuning, 0 = ascent alone)", low=0, high=1)
    epochs: int = option(10, "passes over the retain set", low=1, high=MAX_EPOCHS)
    lr: float = option(3e-2, "SGD learning rate (constant)", unit="per step", low=0, high=10, low_open=True)
    momentum: float = option(0.9, "SGD momentum", low=0, high=1, high_open=True)
    weight_decay: float = option(5e-4, "SGD L2 penalty", low=0, high=1)
    batch_size: int = option(128, "retain samples per step", low=1, high=MAX_BATCH)
    forget_batch_size: int | None = option(None, "forget samples paired with each retain batch", low=1,
                                           high=MAX_BATCH, none="batch_size")
    grad_clip: float | None = option(None, "max global gradient norm per step", low=0, low_open=True, high=1e6,
                                     none="no clipping")
    train_mode: bool = option(True, "True: BatchNorm batch statistics and Dropout on, as the source trains; False: "
                              "eval mode (BatchNorm statistics frozen)")

    def recipe(self) -> TrainConfig:
        return sgd_recipe(self)


def cycle(data: LabeledData, batch_size: int, ctx: Context) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Batches of ``data`` without end, reshuffled (with ``ctx.generator``) at the start of every pass."""
    while True:
        yield from batches(data, batch_size, RandomSampler(data, generator=ctx.generator), ctx.device)


@register("neggrad+", NegGradPlusConfig, modes=("unlearn",), strength="lr",
          needs_retain=("neggrad+ descends on the samples to keep while ascending on forget"
                        " (neggrad needs only forget)."), fast={"epochs": 1})
def run(model: nn.Module, forget: LabeledData, retain: LabeledData, cfg: NegGradPlusConfig,
        ctx: Context) -> list[dict[str, Any]]:
    """Descend on retain batches while ascending on cycled forget batches."""
    forget_batches = cycle(forget, cfg.forget_batch_size or cfg.batch_size, ctx)
    parts: list[torch.Tensor] = []  # per step: (retain CE, forget CE, forget samples), kept on device until the end

    def loss_fn(m: nn.Module, X: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        Xf, yf = next(forget_batches)
        logits = m(torch.cat([X, Xf]))  # (B + Bf, K): one pass, so BatchNorm never sees a lone forget sample
        ce_r, ce_f = F.cross_entropy(logits[: len(y)], y), F.cross_entropy(logits[len(y):], yf)
        parts.append(torch.stack([ce_r.detach(), ce_f.detach(), ce_r.new_tensor(float(len(yf)))]))
        return cfg.alpha * ce_r - (1 - cfg.alpha) * ce_f

    history = fit(model, retain, cfg.recipe(), generator=ctx.generator, device=ctx.device, loss_fn=loss_fn,
                  train_mode=cfg.train_mode, progress=ctx.progress, desc="neggrad+")
    steps = torch.stack(parts).cpu() if parts else torch.zeros(0, 3)
    first = 0
    for h in history:
        if "loss" not in h:
            continue
        done = steps[first: h["step"]]
        first = h["step"]
        h["retain_loss"] = float(done[:, 0].mean()) if len(done) else float("nan")  # mean over steps
        h["forget_loss"] = float(done[:, 1].mean()) if len(done) else float("nan")
        h["forget_passes"] = float(done[:, 2].sum()) / len(forget)  # forget samples drawn / forget set size
    return history
