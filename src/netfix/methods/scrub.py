"""``scrub``: SCRUB — a student that stays close to its teacher on what to keep and moves away from it on what to
forget (Kurmanji et al. 2023, "Towards Unbounded Machine Unlearning"; docs/methods.md §5, source meghdadk/SCRUB).

The teacher is the original model θ0, frozen; the student starts at θ0. With the distillation distance

    d(x) = T² · KL(p_t^T(x) ‖ p_s^T(x))      (p^T = softmax(logits / T))

each epoch e = 1 .. ``epochs`` does

1. while e ≤ ``msteps``: one pass over ``forget`` *maximising* d (the "max-steps": push the student away from the
   teacher where it should forget);
2. one pass over ``retain`` minimising γ·CE + α·d (the "min-steps": keep the retained behaviour and labels).

One optimizer carries its state across both phases. ``stop_max=True`` (or None: for class forgetting) stops the
max-steps for good as soon as the student no longer predicts the forget set's labels: on the MLP's validation split
(class forgetting) that kept more retained accuracy (95.1 → 97.8 %, gap 1.5 → 0.6), but on BatchNorm networks the
min-steps then brought most of the class back (tests/test_zoo.py), so it is off by default. The paper's small-scale
setting (our models are small) is Adam,
lr 5e-4, weight decay 0.1, T = 2, γ = 1, α = 0.5, msteps = 3, 10 epochs; netfix's defaults (stated once, on
:class:`ScrubConfig`'s fields) follow it except where a validation split chose otherwise. The large-scale setting
(CIFAR ResNet-18 in the paper) is ``optimizer="sgd", lr=5e-4, momentum=0.9, weight_decay=5e-4, temperature=4,
gamma=0.99, alpha=0.001, msteps=2, epochs=3, batch_size=256, forget_batch_size=512``.

At the start the student equals the teacher, where d and its gradient are 0: the max-steps get going only once
something separates the two — weight decay, Dropout or BatchNorm batch statistics in the student's train mode, or
the min-steps. With a small forget set (few max-steps per epoch) on a model without Dropout, the defaults may
forget little; a smaller ``forget_batch_size`` or larger ``lr`` gives the max-steps more room.

The student trains with Dropout on; its BatchNorm layers normalise by their running statistics unless
``train_mode=True`` (then batch statistics, as the source trains; batches of one sample are skipped); the teacher
always runs in eval mode.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from ..data import LabeledData
from ..errors import ConfigError
from ..streaming import move
from ..training import TrainConfig, fit, make_optimizer
from ..validation import MAX_BATCH, MAX_EPOCHS, Options, option
from . import Context, register
from ._common import distill_loss, frozen_copy


@dataclass
class ScrubConfig(Options):
    """Options of ``scrub`` (the paper's small-scale setting, docs/methods.md §5, with the validation picks below).

    Defaults marked in docs/results.md were chosen on a validation split (benchmarks/unlearn_select.py).
    """

    epochs: int = option(10, "passes over retain (the min-steps run every epoch)", low=1, high=MAX_EPOCHS)
    msteps: int = option(3, "epochs 1..msteps also start with one max-step pass over forget (capped at epochs); "
                         "0 = no max-steps", unit="epochs", low=0, high=MAX_EPOCHS)
    lr: float = option(1e-3, "learning rate, shared by both phases", unit="per step", low=0, high=10, low_open=True)
    optimizer: str = option("adam", "'adam' (small scale), 'adamw' or 'sgd' (large scale)",
                            choices=("adam", "adamw", "sgd"))
    momentum: float = option(0.9, "SGD momentum (ignored by Adam)", low=0, high=1, high_open=True)
    weight_decay: float = option(0.1, "L2 penalty (0.1 small scale; 5e-4 with SGD at large scale)", low=0, high=1)
    temperature: float = option(2.0, "distillation temperature T (4 at large scale); below 0.01 softmax(logits / T) "
                                "is a hard argmax and T² · KL no longer trains", low=0.01, high=100)
    gamma: float = option(1.0, "weight γ of cross-entropy on retain (0.99 at large scale)", low=0, high=1e3)
    alpha: float = option(0.5, "weight α of the distillation distance on retain (0.001 at large scale)", low=0,
                          high=1e3)
    batch_size: int = option(128, "retain samples per min-step (256 at large scale)", low=1, high=MAX_BATCH)
    forget_batch_size: int = option(32, "forget samples per max-step (512 at large scale)", low=1, high=MAX_BATCH)
    stop_max: bool | None = option(False, "stop the max-steps for good once the student's forget accuracy (eval "
                                   "mode, up to 1024 forget samples, checked after every max-step) is 0. Off by "
                                   "default: on the MLP's validation split it kept more retained accuracy, but on "
                                   "BatchNorm networks (a residual net, a Hugging Face ResNet) the min-steps then "
                                   "brought 62-66 % of a forgotten class back",
                                   none="when every forget sample has one class and retain has none of it")
    train_mode: bool = option(False, "False: the student's BatchNorm layers normalise by their running statistics "
                              "in both phases (Dropout stays on): on BatchNorm models the batch statistics of "
                              "forget and retain batches let the student 'forget' only in train mode "
                              "(benchmarks/zoo_select.py: 3 BatchNorm architectures passed only this way); True: "
                              "BatchNorm batch statistics, as the source trains")

    def check(self) -> None:
        if self.gamma == 0 and self.alpha == 0:
            raise ConfigError("gamma, alpha: expected at least one loss weight > 0 for the retain phase; got both 0. "
                              "Fix: set gamma=1 and/or alpha=0.5.")

    def recipe(self, batch_size: int | None = None) -> TrainConfig:
        """One pass of either phase (the optimizer itself is built once and shared)."""
        return TrainConfig(epochs=1, lr=self.lr, optimizer=self.optimizer, momentum=self.momentum,
                           weight_decay=self.weight_decay,
                           batch_size=self.batch_size if batch_size is None else batch_size)


@register("scrub", ScrubConfig, modes=("unlearn",), strength="lr",
          needs_retain="SCRUB's min-steps distil the original model on the samples to keep.", fast={"epochs": 1})
def run(model: nn.Module, forget: LabeledData, retain: LabeledData, cfg: ScrubConfig,
        ctx: Context) -> list[dict[str, Any]]:
    """SCRUB: move away from the original model on forget, stay close to it (and to the labels) on retain."""
    teacher = frozen_copy(model)
    T = float(cfg.temperature)

    def away(m: nn.Module, X: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            t = teacher(X)
        return -distill_loss(m(X), t, T)

    def stay(m: nn.Module, X: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        out = m(X)
        with torch.no_grad():
            t = teacher(X)
        return cfg.gamma * F.cross_entropy(out, y) + cfg.alpha * distill_loss(out, t, T)

    opt = make_optimizer([p for p in model.parameters() if p.requires_grad], cfg.recipe())
    max_epochs = min(cfg.msteps, cfg.epochs)
    total = (max_epochs * math.ceil(len(forget) / cfg.forget_batch_size)
             + cfg.epochs * math.ceil(len(retain) / cfg.batch_size))
    bar = tqdm(total=total, desc="scrub", unit="step", disable=not ctx.progress, leave=False)

    def tick(m: nn.Module) -> None:
        bar.update(1)

    classes = forget.y.unique()
    single = len(classes) == 1 and not bool((retain.y == classes[0]).any())
    watch = single if cfg.stop_max is None else cfg.stop_max
    probe = forget.subset(torch.randperm(len(forget), generator=ctx.generator)[:1024]) if watch else None
    stopped: list[int] = []

    def forgotten(m: nn.Module, step: int) -> dict[str, Any] | None:
        if probe is None:
            return None
        was = m.training
        m.eval()
        try:
            with torch.no_grad():
                hits = sum(int((m(move(X, ctx.device)).argmax(1) == y.to(ctx.device)).sum())
                           for X, y in ((probe.X[i:i + 512], probe.y[i:i + 512]) for i in range(0, len(probe), 512)))
        finally:
            m.train(was)
        if hits == 0:
            stopped.append(step)
            return {"stopped_max": step}
        return None

    history: list[dict[str, Any]] = []
    for epoch in range(1, cfg.epochs + 1):
        phases = [("max", forget, away, cfg.forget_batch_size)] if epoch <= cfg.msteps and not stopped else []
        phases.append(("min", retain, stay, cfg.batch_size))
        for phase, data, loss_fn, size in phases:
            h = fit(model, data, cfg.recipe(size), generator=ctx.generator, device=ctx.device, loss_fn=loss_fn,
                    after_step=tick, optimizer=opt, desc=f"scrub {phase}",
                    stop=forgotten if phase == "max" else None,
                    freeze_norm=phase == "max" or not cfg.train_mode)
            history.append({"epoch": epoch, "phase": phase, "steps": h[0]["step"], "loss": h[0]["loss"],
                            "seconds": h[0]["seconds"], "stopped_max": phase == "max" and bool(stopped)})
            bar.set_postfix(phase=phase, loss=f"{h[0]['loss']:.4f}")
    bar.close()
    return history
