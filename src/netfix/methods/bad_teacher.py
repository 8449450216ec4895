"""``bad-teacher``: distil from an incompetent teacher on the forget set and a competent one on the rest
(Chundawat et al. AAAI 2023, "Can Bad Teaching Induce Forgetting?"; methods.md §5, source
if-loops/selective-synaptic-dampening).

The student starts at the original model θ0. Each training sample gets a teacher: a randomly initialised copy of
the architecture (the "bad" teacher, whose near-uniform outputs carry no knowledge) for forget samples, the frozen
θ0 (the "good" teacher) for retained ones. The student minimises KL(p_teacher ‖ p_student) at temperature T = 1
over the forget set plus a random 30% of retain, for one epoch with Adam, lr 1e-4, batches of 256 — the paper's
setting and the defaults here. The student trains in train mode (batches of one sample are skipped on BatchNorm
models); both teachers run in eval mode.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..data import LabeledData
from ..errors import ConfigError
from ..models import reinit
from ..training import TrainConfig, fit
from . import Context, register
from .scrub import distill_loss, frozen_copy


@dataclass
class BadTeacherConfig:
    """Options of ``bad-teacher`` (the paper's defaults, methods.md §5).

    Defaults marked in docs/results.md were chosen on a validation split (benchmarks/unlearn_select.py).
    """

    epochs: int = 1                # passes over forget + the retain share
    lr: float = 1e-3               # Adam learning rate (per step)
    batch_size: int = 64           # samples per step
    retain_fraction: float = 0.3   # share of retain (random, in (0, 1]) distilled from the good teacher
    temperature: float = 1.0       # distillation temperature T (> 0); the loss is T² · KL, as in scrub

    def __post_init__(self) -> None:
        self.recipe()  # validates epochs, lr, batch_size
        f = self.retain_fraction
        if not (isinstance(f, (int, float)) and not isinstance(f, bool) and 0 < f <= 1):
            raise ConfigError(f"retain_fraction: expected a share in (0, 1] like 0.3; got {f!r}.")
        t = self.temperature
        if not (isinstance(t, (int, float)) and not isinstance(t, bool) and t > 0 and math.isfinite(t)):
            raise ConfigError(f"temperature: expected a positive number like 1; got {t!r}.")

    def recipe(self) -> TrainConfig:
        return TrainConfig(epochs=self.epochs, lr=self.lr, batch_size=self.batch_size, optimizer="adam")


@register("bad-teacher", BadTeacherConfig, modes=("unlearn",),
          needs_retain="the good teacher keeps the original behaviour on the samples to keep.")
def run(model: nn.Module, forget: LabeledData, retain: LabeledData, cfg: BadTeacherConfig,
        ctx: Context) -> list[dict[str, Any]]:
    """Bad teacher: distil a random network on forget and the original model on (part of) retain."""
    good = frozen_copy(model)
    bad = frozen_copy(reinit(model, int(torch.randint(2 ** 31 - 1, (1,), generator=ctx.generator))))
    count = max(1, round(cfg.retain_fraction * len(retain)))
    kept = retain.subset(torch.randperm(len(retain), generator=ctx.generator)[:count])
    # the "label" of each sample names its teacher: 1 = bad (forget), 0 = good (retain)
    teacher_of = torch.cat([torch.ones(len(forget), dtype=torch.int64), torch.zeros(count, dtype=torch.int64)])
    data = LabeledData(torch.cat([forget.X, kept.X]), teacher_of, 2, "forget+retain share")
    T = float(cfg.temperature)

    def loss_fn(m: nn.Module, X: torch.Tensor, use_bad: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            target = torch.where(use_bad.bool().unsqueeze(1), bad(X), good(X))  # (B, K)
        return distill_loss(m(X), target, T)

    history = fit(model, data, cfg.recipe(), generator=ctx.generator, device=ctx.device, loss_fn=loss_fn,
                  progress=ctx.progress, desc="bad-teacher")
    return [{"forget": len(forget), "retain_used": count}] + history
