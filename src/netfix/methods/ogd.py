"""``ogd``: debugging as two-task continual learning with Orthogonal Gradient Descent (methods.md §1).

What the model does right is task 1; removing the fault, then learning the right behaviour, is task 2. A memory
of output gradients at correctly handled retained samples spans the directions that would change their logits;
every update is projected off that span (g − U Uᵀ g, momentum after projection), so to first order the retained
predictions do not move.

- **unlearn** (forget = the faulty samples with the labels the model learned): one of three objectives —
  ``ascent`` (gradient ascent on CE), ``uniform`` (CE to the uniform distribution) or ``random-label`` (CE to a
  fresh random wrong label) — until the forget-set accuracy on those labels is at or below ``stop_acc`` (chance,
  100/K, by default) or ``max_epochs`` passes.
- **relearn** (data = the corrected samples with their right labels): CE with the memory recomputed at the current
  weights on ``protect`` (OGD+ style), until the accuracy on ``data`` reaches ``target_acc`` or ``max_epochs``.

``project=False`` runs the same steps without projection: the ablation that shows what the projection is worth.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..data import LabeledData
from ..errors import ConfigError, DataError, unknown
from ..evaluation import predict
from ..gradients import VARIANTS, Basis, flat_grad, output_gradients, param_names, set_flat_grad
from ..training import TrainConfig, fit
from . import Context, register

OBJECTIVES = ("ascent", "uniform", "random-label")


@dataclass
class OGDConfig:
    """Options of ``ogd``. Units: lr per step; sizes in samples; accuracies in percent."""

    objective: str = "random-label"    # unlearn loss: "ascent", "uniform" or "random-label" (see module docstring;
    #                                    the default was chosen on a validation split, docs/results.md)
    lr: float = 1e-2                   # SGD step size (plain SGD: Adam's per-coordinate scaling breaks orthogonality)
    momentum: float = 0.0              # SGD momentum, applied after projection
    batch_size: int = 32               # samples per step
    max_epochs: int = 20               # cap on passes over forget (unlearn) / data (relearn)
    memory_size: int = 300             # retained samples whose output gradients form the memory
    variant: str = "gtl"               # memory rows: "gtl" (true-class logit), "ave" (mean logit), "all" (K logits)
    params: list[str] | None = None    # module-name prefixes to update (and protect); None = every parameter
    stop_acc: float | None = None      # unlearn stops when forget accuracy <= this; None = chance (100 / K)
    target_acc: float = 100.0          # relearn stops when accuracy on data >= this
    project: bool = True               # False: the same steps without projection (ablation)
    memory_chunk: int = 128            # samples per batched gradient computation (bounds memory use)
    probe_size: int = 1024             # forget/data samples checked after each step for the stopping rule

    def __post_init__(self) -> None:
        if self.objective not in OBJECTIVES:
            raise unknown("objective", self.objective, list(OBJECTIVES), "objective")
        if self.variant not in VARIANTS:
            raise unknown("variant", self.variant, list(VARIANTS), "variant")
        for name in ("batch_size", "max_epochs", "memory_chunk", "probe_size"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ConfigError(f"{name}: expected a whole number >= 1; got {getattr(self, name)!r}.")
        if not isinstance(self.memory_size, int) or self.memory_size < 0:
            raise ConfigError(f"memory_size: expected a whole number >= 0; got {self.memory_size!r}.")
        if not self.lr > 0:
            raise ConfigError(f"lr: expected a positive step size; got {self.lr!r}.")
        if not 0 <= self.momentum < 1:
            raise ConfigError(f"momentum: expected a value in [0, 1); got {self.momentum!r}.")
        if self.stop_acc is not None and not 0 <= self.stop_acc <= 100:
            raise ConfigError(f"stop_acc: expected a percentage in [0, 100]; got {self.stop_acc!r}.")


def memory_samples(model: nn.Module, pool: LabeledData, size: int, generator: torch.Generator) -> LabeledData:
    """Up to ``size`` random samples of ``pool`` that ``model`` classifies correctly (the behaviour to keep)."""
    if size == 0 or len(pool) == 0:
        return pool.subset([], "memory")
    order = torch.randperm(len(pool), generator=generator)
    candidates = pool.subset(order[: min(len(pool), 4 * size)])
    correct = (predict(model, candidates).argmax(1) == candidates.y).nonzero().squeeze(1)
    return candidates.subset(correct[:size], "memory")


def build_memory(model: nn.Module, pool: LabeledData, cfg: OGDConfig, generator: torch.Generator) -> Basis:
    """The orthonormal basis of the output gradients at the memory samples, at the current weights."""
    names = param_names(model, cfg.params)
    dim = sum(dict(model.named_parameters())[n].numel() for n in names)
    mem = memory_samples(model, pool, cfg.memory_size, generator)
    dev = next(iter(model.parameters())).device
    if len(mem) == 0:
        return Basis(dim, dev)
    return Basis.from_rows(output_gradients(model, mem, cfg.variant, cfg.params, cfg.memory_chunk))


def _unlearn_loss(objective: str, num_classes: int):  # type: ignore[no-untyped-def]
    def loss(model: nn.Module, X: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        logits = model(X)
        if objective == "ascent":
            return -F.cross_entropy(logits, y)
        if objective == "uniform":
            return -F.log_softmax(logits, 1).mean(1).mean()  # CE to the uniform distribution
        shift = torch.randint(1, num_classes, y.shape, device=y.device)
        return F.cross_entropy(logits, (y + shift) % num_classes)  # a random label other than y
    return loss


def _accuracy(model: nn.Module, probe: LabeledData) -> float:
    return float(100.0 * (predict(model, probe).argmax(1) == probe.y).float().mean())


@register("ogd", OGDConfig, modes=("unlearn", "relearn"))
def run(model: nn.Module, forget: LabeledData, retain: LabeledData, cfg: OGDConfig,
        ctx: Context) -> list[dict[str, Any]]:
    """Unlearn (or relearn) with gradients projected orthogonal to the retained samples' output gradients."""
    if len(retain) == 0 and cfg.project and cfg.memory_size > 0:
        raise DataError(f"{'retain' if ctx.mode == 'unlearn' else 'protect'}: is empty; OGD builds its memory from "
                        "the samples to keep. Fix: pass them, or memory_size=0 / project=False for no protection.")
    names = param_names(model, cfg.params)
    trainable = {n: p.requires_grad for n, p in model.named_parameters()}
    for n, p in model.named_parameters():
        p.requires_grad_(n in names)
    chosen = [p for n, p in model.named_parameters() if n in names]
    start = time.perf_counter()
    basis = build_memory(model, retain, cfg, ctx.generator) if cfg.project else None
    memory_seconds = time.perf_counter() - start

    def project(_: nn.Module) -> None:
        if basis is not None and basis.rank:
            set_flat_grad(chosen, basis.project(flat_grad(chosen)))

    probe = forget.subset(torch.randperm(len(forget), generator=ctx.generator)[: cfg.probe_size], "probe")
    if ctx.mode == "unlearn":
        threshold = 100.0 / forget.num_classes if cfg.stop_acc is None else cfg.stop_acc
        loss_fn = _unlearn_loss(cfg.objective, forget.num_classes)

        def done(m: nn.Module, step: int) -> dict[str, Any] | None:
            acc = _accuracy(m, probe)
            return {"reason": "forgotten", "forget_acc": acc} if acc <= threshold else None
    else:
        loss_fn = None

        def done(m: nn.Module, step: int) -> dict[str, Any] | None:
            acc = _accuracy(m, probe)
            return {"reason": "learned", "data_acc": acc} if acc >= cfg.target_acc else None

    first = done(model, 0)
    history: list[dict[str, Any]] = [{"phase": ctx.mode, "memory_rank": basis.rank if basis else 0,
                                      "memory_seconds": memory_seconds, "params": len(names)}]
    if first is not None:  # nothing to do: already forgotten / learned
        history.append({"step": 0, "stopped": True, **first})
    else:
        recipe = TrainConfig(epochs=cfg.max_epochs, lr=cfg.lr, batch_size=cfg.batch_size, optimizer="sgd",
                             momentum=cfg.momentum)
        history += fit(model, forget, recipe, generator=ctx.generator, device=ctx.device, loss_fn=loss_fn,
                       before_step=project, stop=done, train_mode=False, progress=ctx.progress,
                       desc=f"ogd {ctx.mode}")
    for n, p in model.named_parameters():
        p.requires_grad_(trainable[n])
    return history
