"""``ogd``: debugging as two-task continual learning with Orthogonal Gradient Descent (docs/methods.md §1).

What the model does right is task 1; removing the fault, then learning the right behaviour, is task 2. A memory
of output gradients at correctly handled retained samples spans the directions that would change their logits;
every update is projected off that span (g − U Uᵀ g, momentum after projection), so to first order the retained
predictions do not move.

- **unlearn** (forget = the faulty samples with the labels the model learned): one of four objectives —
  ``away`` (−log(1 − p_y): probability off the learned label, onto the model's next choices; what ``auto`` picks
  for a forget set of one label), ``ascent`` (gradient ascent on CE), ``uniform`` (CE to the uniform
  distribution) or ``random-label`` (CE to a fresh random wrong label; ``auto``'s pick otherwise) — until the
  forget-set accuracy on those labels is at or below ``stop_acc`` (chance,
  100/K, by default) or ``max_epochs`` passes.
- **relearn** (data = the corrected samples with their right labels): CE with the memory recomputed at the current
  weights on ``protect`` (OGD+ style), until the accuracy on ``data`` reaches ``target_acc`` while the accuracy on
  ``protect`` is still within ``keep_tolerance`` of where it started, or a plateau, or ``max_epochs``.
  ``replay`` mixes protect samples into the relearning batches (``replay`` × len(data) of them). They are the
  negatives a one-class correction lacks: learning "7" from 7s alone raises logit 7 on every input, and a memory of
  a few hundred points, which holds their logits only to first order and only at those points, does not stop it
  (measured in docs/results.md). The projection still keeps each replayed or memory sample's true-class logit.

``project=False`` runs the same steps without projection: the ablation that shows what the projection is worth.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .. import distributed
from ..data import LabeledData, concat
from ..errors import ConfigError, DataError
from ..evaluation import accuracy as _accuracy
from ..evaluation import predict
from ..gradients import VARIANTS, flat_grad, param_names
from ..jacobian import Basis, output_jacobian
from ..training import TrainConfig, fit
from ..validation import MAX_BATCH, MAX_EPOCHS, Options, option
from . import Context, register
from ._common import single_label

OBJECTIVES = ("auto", "away", "ascent", "uniform", "random-label")
# Options left at None take their mode's value, chosen on validation splits carved from the training sets of
# mnist5k and Fashion-MNIST (docs/results.md). Relearning starts where the loss is large (the corrected labels are
# exactly what the model gets wrong), so it takes bigger batches and a clipped step.
MODE_DEFAULTS: dict[str, dict[str, Any]] = {
    "unlearn": {"lr": 1e-2, "batch_size": 32, "grad_clip": 0.0},
    "relearn": {"lr": 4e-2, "batch_size": 128, "grad_clip": 5.0},
}
_DTYPES = {"float32": torch.float32, "float64": torch.float64, "bfloat16": torch.bfloat16}


@dataclass
class OGDConfig(Options):
    """Options of ``ogd``. Units: lr per step; sizes in samples; accuracies in percent."""

    objective: str = option("auto", "unlearn loss (see the module docstring). auto: 'away' when the forget set is "
                            "one class (a class to forget, or a fault: a backdoor's or a mislabel's wrong label), "
                            "'random-label' otherwise (a deletion request); random-label was chosen on validation "
                            "splits of mnist5k and Fashion-MNIST (docs/results.md): ascent stalls on a backdoor",
                            choices=OBJECTIVES)
    lr: float | None = option(None, "SGD step size (plain SGD: Adam's per-coordinate scaling breaks orthogonality)",
                              unit="per step", low=0, high=10, low_open=True, none="the mode's default (MODE_DEFAULTS)")
    momentum: float = option(0.0, "SGD momentum, applied after projection", low=0, high=1, high_open=True)
    grad_clip: float | None = option(None, "cap on the gradient's L2 norm (before projection, which only shrinks "
                                     "it); 0 = no cap", low=0, high=1e6, none="the mode's default")
    batch_size: int | None = option(None, "samples per step", unit="samples", low=1, high=MAX_BATCH,
                                    none="the mode's default")
    max_epochs: int = option(20, "cap on passes over forget (unlearn) / data (relearn)", low=1, high=MAX_EPOCHS)
    memory_size: int = option(300, "retained samples whose output gradients form the memory; 0 = no memory (no "
                              "protection)", unit="samples", low=0, high=MAX_BATCH)
    variant: str = option("gtl", "memory rows: 'gtl' (true-class logit), 'ave' (mean logit), 'all' (K logits)",
                          choices=VARIANTS)
    params: list[str] | None = option(None, "module-name prefixes to update (and protect)", none="every parameter")
    stop_acc: float | None = option(None, "unlearn stops when forget accuracy <= this (checked before the first "
                                    "step too: 100 stops at once)", unit="%", low=0, high=100,
                                    none="0 when the forget set is one class (a model that never saw it would not "
                                    "give these inputs that label), chance (100 / K) otherwise")
    target_acc: float | None = option(None, "relearn stops when accuracy on data >= this (while protect holds)",
                                      unit="%", low=0, high=100,
                                      none="the model's own accuracy on (a probe of) protect at the start: learn the "
                                      "fix as well as the model fits what it keeps")
    keep_tolerance: float = option(1.0, "relearn stops only while the accuracy on (a probe of) protect is within this "
                                   "many points of its start: the fix and the kept behaviour both hold",
                                   unit="points", low=0, high=100)
    patience: float = option(1.0, "relearn also stops when data + protect accuracy has not risen by 0.5 points for "
                             "this many epochs, and at least 25 steps (a plateau); 0 = never", unit="epochs", low=0,
                             high=MAX_EPOCHS)
    project: bool = option(True, "False: the same steps without projection (ablation)")
    memory_chunk: int | None = option(None, "samples per batched gradient computation (bounds memory use)",
                                      unit="samples", low=1, high=MAX_BATCH,
                                      none="automatic, about 256 MB of gradients per chunk")
    probe_size: int = option(512, "forget/data samples checked after each step for the stopping rule",
                             unit="samples", low=1, high=MAX_BATCH)
    replay: float = option(1.0, "relearn only: protect samples mixed into training, per sample of data; 0 = none",
                           low=0, high=1e6)
    factored: bool = option(True, "keep nn.Linear memory rows factored (inputs x output gradients): exact, and "
                            "10-100x cheaper to build and project with than dense rows")
    memory_dtype: str = option("float32", "dtype of the stored memory", choices=tuple(_DTYPES), kind="dtype")

    def resolved(self, name: str, mode: str) -> Any:
        """An option's value for ``mode``: its own, or the mode's default when left at None."""
        value = getattr(self, name)
        return MODE_DEFAULTS[mode].get(name) if value is None else value


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
    if distributed.is_distributed() and len(mem) >= distributed.world()[0]:
        # each rank its contiguous share of the memory, gathered in rank order: the single-process rows
        mine = mem.subset(torch.arange(len(mem))[distributed.share(len(mem))], mem.name)
        jac = output_jacobian(model, mine, cfg.variant, cfg.params, cfg.memory_chunk,
                              dtype=_DTYPES[cfg.memory_dtype], factored=cfg.factored)
        return Basis.from_rows(distributed.gather_jacobian(jac))
    return Basis.from_rows(output_jacobian(model, mem, cfg.variant, cfg.params, cfg.memory_chunk,
                                           dtype=_DTYPES[cfg.memory_dtype], factored=cfg.factored))


class ProjectedSGD(torch.optim.Optimizer):
    """SGD whose every step is projected off a :class:`~netfix.jacobian.Basis`: g ← g − U(Uᵀg), then momentum (on
    the projected gradient, so the momentum buffer stays in the orthogonal complement too), then θ ← θ − lr·g. No
    weight decay: it would pull the weights along directions the projection is there to protect.

    ``params`` must be the parameters the basis was built over, in the same order (e.g. ``[p for n, p in
    model.named_parameters() if n in param_names(model, prefixes)]``).

    Example:
        >>> basis = Basis.from_rows(output_jacobian(model, memory))
        >>> opt = ProjectedSGD(model.parameters(), basis, lr=1e-2)
        >>> loss.backward(); opt.step()      # retained samples' logits unchanged to first order
    """

    def __init__(self, params: Any, basis: "Basis | None", lr: float = 1e-2, momentum: float = 0.0) -> None:
        if not lr > 0:
            raise ConfigError(f"lr: expected a positive step size; got {lr!r}.")
        if not 0 <= momentum < 1:
            raise ConfigError(f"momentum: expected a value in [0, 1); got {momentum!r}.")
        super().__init__(params, {"lr": lr, "momentum": momentum})
        self.basis = basis
        dim = sum(p.numel() for g in self.param_groups for p in g["params"])
        if basis is not None and basis.J.dim != dim:
            raise ConfigError(f"params: hold {dim} numbers but the basis spans vectors of {basis.J.dim}; pass the "
                              "parameters the basis was built over, in the same order.")

    @torch.no_grad()
    def step(self, closure: Any = None) -> Any:  # type: ignore[override]
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        params = [p for g in self.param_groups for p in g["params"]]
        flat = flat_grad(params)
        if self.basis is not None:
            flat = self.basis.project(flat)
        offset = 0
        for group in self.param_groups:
            for p in group["params"]:
                n = p.numel()
                d = flat[offset:offset + n].view_as(p)
                offset += n
                if group["momentum"]:
                    state = self.state[p]
                    buf = state.get("momentum")
                    state["momentum"] = buf = d.clone() if buf is None else buf.mul_(group["momentum"]).add_(d)
                    d = buf
                p.add_(d, alpha=-group["lr"])
        return loss


def _unlearn_loss(objective: str, num_classes: int):  # type: ignore[no-untyped-def]
    def loss(model: nn.Module, X: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        logits = model(X)
        if objective == "away":  # -log(1 - p_y): probability off the learned label, onto the model's next choices
            others = logits.scatter(1, y[:, None], float("-inf"))
            return (torch.logsumexp(logits, 1) - torch.logsumexp(others, 1)).mean()
        if objective == "ascent":
            return -F.cross_entropy(logits, y)
        if objective == "uniform":
            return -F.log_softmax(logits, 1).mean(1).mean()  # CE to the uniform distribution
        shift = torch.randint(1, num_classes, y.shape, device=y.device)
        return F.cross_entropy(logits, (y + shift) % num_classes)  # a random label other than y
    return loss



# bench: ogd's library defaults serve another job too (they were chosen for debugging: relearning, faults), so
# `netfix bench unlearn` runs it with the options benchmarks/unlearn_select.py chose for unlearning on the
# validation split (docs/unlearn_select.json). Every other method's defaults were set by that study.
@register("ogd", OGDConfig, modes=("unlearn", "relearn"), strength="lr",
          fast={"max_epochs": 2}, bench={"objective": "ascent"})
def run(model: nn.Module, forget: LabeledData, retain: LabeledData, cfg: OGDConfig,
        ctx: Context) -> list[dict[str, Any]]:
    """Unlearn (or relearn) with gradients projected orthogonal to the retained samples' output gradients."""
    if len(retain) == 0 and cfg.project and cfg.memory_size > 0:
        raise DataError(f"{'retain' if ctx.mode == 'unlearn' else 'protect'}: is empty; OGD builds its memory from "
                        "the samples to keep. Fix: pass them, or memory_size=0 / project=False for no protection.")
    cfg = dataclasses.replace(cfg, **{k: v for k, v in MODE_DEFAULTS[ctx.mode].items() if getattr(cfg, k) is None})
    assert cfg.lr is not None and cfg.batch_size is not None
    names = param_names(model, cfg.params)
    trainable = {n: p.requires_grad for n, p in model.named_parameters()}
    for n, p in model.named_parameters():
        p.requires_grad_(n in names)
    chosen = [p for n, p in model.named_parameters() if n in names]
    start = time.perf_counter()
    basis = build_memory(model, retain, cfg, ctx.generator) if cfg.project else None
    memory_seconds = time.perf_counter() - start

    probe = forget.subset(torch.randperm(len(forget), generator=ctx.generator)[: cfg.probe_size], "probe").cached()
    steps_on = forget
    best: dict[str, Any] = {"state": None}  # relearn: the best state seen, restored if the stopping rule never holds
    if ctx.mode == "relearn" and cfg.replay > 0 and len(retain):
        count = min(len(retain), max(1, round(cfg.replay * len(forget))))
        extra = retain.subset(torch.randperm(len(retain), generator=ctx.generator)[:count])
        steps_on = concat([forget, extra], "data+replay")
    if ctx.mode == "unlearn":
        one_class = single_label(forget)
        objective = cfg.objective if cfg.objective != "auto" else ("away" if one_class else "random-label")
        threshold = cfg.stop_acc if cfg.stop_acc is not None else (0.0 if one_class else 100.0 / forget.num_classes)
        loss_fn = _unlearn_loss(objective, forget.num_classes)

        def done(m: nn.Module, step: int) -> dict[str, Any] | None:
            acc = _accuracy(m, probe)
            return {"reason": "forgotten", "forget_acc": acc} if acc <= threshold else None
    else:
        loss_fn = None
        kept = retain.subset(torch.randperm(len(retain), generator=ctx.generator)[: cfg.probe_size], "kept").cached()
        kept_start = _accuracy(model, kept) if len(kept) else 100.0
        target = kept_start if cfg.target_acc is None else cfg.target_acc
        per_epoch = max(1, math.ceil(len(steps_on) / cfg.batch_size))
        best.update(score=-1.0, step=0, top=-1.0, top_step=0)

        def done(m: nn.Module, step: int) -> dict[str, Any] | None:
            acc = _accuracy(m, probe)
            kept_acc = _accuracy(m, kept) if len(kept) else 100.0
            if acc >= target and kept_acc >= kept_start - cfg.keep_tolerance:
                best["state"] = None  # this state is the answer
                return {"reason": "learned", "data_acc": acc, "kept_acc": kept_acc}
            score = acc + kept_acc
            if score > best["top"]:  # the best state so far, restored if relearning ends without meeting the rule
                best.update(top=score, top_step=step,
                            state={k: v.detach().clone() for k, v in m.state_dict().items()})
            if score >= best["score"] + 0.5:
                best.update(score=score, step=step)
            if cfg.patience and step - best["step"] >= max(25, cfg.patience * per_epoch):
                return {"reason": "plateau", "data_acc": acc, "kept_acc": kept_acc, "target_acc": target}
            return None

    first = done(model, 0)
    history: list[dict[str, Any]] = [{"phase": ctx.mode, "memory_rank": basis.rank if basis else 0,
                                      "memory_seconds": memory_seconds, "params": len(names),
                                      "steps_on": len(steps_on), "lr": cfg.lr, "batch_size": cfg.batch_size,
                                      "grad_clip": cfg.grad_clip,
                                      **({"objective": objective, "stop_acc": threshold} if ctx.mode == "unlearn"
                                         else {})}]
    if first is not None:  # nothing to do: already forgotten / learned
        history.append({"step": 0, "stopped": True, **first})
    else:
        recipe = TrainConfig(epochs=cfg.max_epochs, lr=cfg.lr, batch_size=cfg.batch_size, optimizer="sgd",
                             momentum=cfg.momentum, grad_clip=cfg.grad_clip or None)
        opt = ProjectedSGD(chosen, basis if basis is not None and basis.rank else None, lr=cfg.lr,
                           momentum=cfg.momentum)
        history += fit(model, steps_on, recipe, generator=ctx.generator, device=ctx.device, loss_fn=loss_fn,
                       stop=done, train_mode=False, progress=ctx.progress, desc=f"ogd {ctx.mode}", optimizer=opt)
        if ctx.mode == "relearn" and best["state"] is not None:
            model.load_state_dict(best["state"])
            history.append({"restored_step": best["top_step"], "score": best["top"]})
    for n, p in model.named_parameters():
        p.requires_grad_(trainable[n])
    return history
