"""``bad-teacher``: distil from an incompetent teacher on the forget set and a competent one on the rest
(Chundawat et al. AAAI 2023, "Can Bad Teaching Induce Forgetting?"; docs/methods.md §5, source
if-loops/selective-synaptic-dampening).

The student starts at the original model θ0. Each training sample gets a teacher: a randomly initialised copy of
the architecture (the "bad" teacher, whose near-uniform outputs carry no knowledge) for forget samples, the frozen
θ0 (the "good" teacher) for retained ones. The student minimises KL(p_teacher ‖ p_student) at temperature T over
the forget set plus a random share of retain, with Adam. The paper's setting is one epoch, T = 1, 30% of retain,
lr 1e-4 and batches of 256; netfix's defaults (stated once, on :class:`BadTeacherConfig`'s fields) follow
it except where a validation split chose otherwise. The student trains in train mode (batches of one sample are
skipped on BatchNorm models); both teachers run in eval mode.

Defaults: 2 epochs at lr 1e-3, batches of 64. On the MLP's validation split (benchmarks/unlearn_select.py, mean gap
over 10 % random and class forgetting) 2 epochs at 5e-4 scored 6.0, 1 epoch at 1e-3 9.9 and the paper's 1 epoch /
1e-4 / 256 14.9 (on the bench's 3,600 samples that is 14 steps, which forget under half of a class); across 8
architectures (benchmarks/zoo_select.py, class forgetting) 2 epochs at 1e-3 passed 7 of 16 runs, 2 at 5e-4 3 and 1
at 1e-3 1, so the step stays at 1e-3 and the second epoch is what the validation split added. The loss, the mixing
(forget
and retain shuffled together, each sample tagged with its teacher) and the random teacher (near-uniform outputs:
mean top probability 0.11 over 10 classes) were checked against the paper; what limits the method on random
forgetting is that a near-uniform target rarely flips a memorised sample's argmax before retained accuracy drops.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..data import LabeledData, concat
from ..models import reinit
from ..training import TrainConfig, fit
from ..validation import Options, option
from . import Context, register
from ._common import distill_loss, frozen_copy


@dataclass
class BadTeacherConfig(Options):
    """Options of ``bad-teacher`` (docs/methods.md §5).

    Defaults marked in docs/results.md were chosen on a validation split (benchmarks/unlearn_select.py).
    """

    epochs: int = option(2, "passes over forget + the retain share", low=1, high=100_000)
    lr: float = option(1e-3, "Adam learning rate", unit="per step", low=0, high=10, low_open=True)
    batch_size: int = option(64, "samples per step", low=1, high=1 << 20)
    retain_fraction: float = option(0.3, "share of retain (random) distilled from the good teacher", low=0, high=1,
                                    low_open=True)
    temperature: float = option(1.0, "distillation temperature T; the loss is T² · KL, as in scrub (so below 0.01 "
                                "it no longer trains)", low=0.01, high=100)

    def recipe(self) -> TrainConfig:
        return TrainConfig(epochs=self.epochs, lr=self.lr, batch_size=self.batch_size, optimizer="adam")


@register("bad-teacher", BadTeacherConfig, modes=("unlearn",), strength="lr",
          needs_retain="the good teacher keeps the original behaviour on the samples to keep.", fast={"epochs": 1})
def run(model: nn.Module, forget: LabeledData, retain: LabeledData, cfg: BadTeacherConfig,
        ctx: Context) -> list[dict[str, Any]]:
    """Bad teacher: distil a random network on forget and the original model on (part of) retain."""
    good = frozen_copy(model)
    bad = frozen_copy(reinit(model, int(torch.randint(2 ** 31 - 1, (1,), generator=ctx.generator))))
    count = max(1, round(cfg.retain_fraction * len(retain)))
    kept = retain.subset(torch.randperm(len(retain), generator=ctx.generator)[:count])
    # the "label" of each sample names its teacher: 1 = bad (forget), 0 = good (retain)
    teacher_of = torch.cat([torch.ones(len(forget), dtype=torch.int64), torch.zeros(count, dtype=torch.int64)])
    both = concat([forget, kept], "forget+retain share")
    data = LabeledData(both.X, teacher_of, 2, both.name)
    T = float(cfg.temperature)

    def loss_fn(m: nn.Module, X: torch.Tensor, use_bad: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            target = torch.where(use_bad.bool().unsqueeze(1), bad(X), good(X))  # (B, K)
        return distill_loss(m(X), target, T)

    history = fit(model, data, cfg.recipe(), generator=ctx.generator, device=ctx.device, loss_fn=loss_fn,
                  progress=ctx.progress, desc="bad-teacher")
    return [{"forget": len(forget), "retain_used": count}] + history
