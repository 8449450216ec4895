"""``unseen``: make the model treat the forget set the way it treats data it never saw — the way a model retrained
without it would.

A model retrained without the forget set classifies those samples about as well, and about as confidently, as any
unseen sample: for scattered samples of classes it keeps, its forget accuracy is close to its held-out accuracy, and
a membership attack can't tell them from test data. Pushing the forget accuracy down (ascent, random labels,
"chance") overshoots that. So ``unseen`` gives each forget sample a **target distribution** — an estimate of the
retrained model's output on it — and distils the model toward those targets while it keeps fitting the retained
data (cross-entropy on retained batches in the same step):

- **scattered samples** (``targets="matched"``; needs ``heldout=``, data the model never trained on): within each
  class c, the forget samples are ranked by how typical of c their neighbourhood is — the share of their k nearest
  retained samples, in the model's last features, labelled c — and get the model's own output on held-out class-c
  samples at the same rank of true-class probability (quantile matching,
  :func:`netfix.methods._targets.matched_targets`). The targets so have the unseen data's distribution of
  confidences and errors, and the errors fall on the forget samples that sit among other classes, where the
  retrained model's errors fall.
- **a forgotten class, or a fault** (``targets="removed-label"``): every forget sample gets the model's own
  output with its label taken out and the rest renormalised — what a model that never learned that label (a class
  with no retained sample; a backdoor's or a mislabel's wrong label) would say. No held-out data needed.
- ``auto`` (default): ``removed-label`` for samples whose label no retained sample carries (class forgetting) and
  for a forget set that (nearly, ≥ 90 %) all carries one label — a fault, as ``ogd`` reads it; ``matched``
  otherwise (a deletion request of scattered samples; pass ``targets="matched"`` for one of a single class).

**Stopping.** The targets say what the retrained model's forget accuracy and mean true-class confidence are
likely to be; after every epoch (a pass over the forget set) both are measured on the forget set, and the run
stops once the model is within ``tolerance`` of them — forgetting further than a retrained model would is
overshooting. ``epochs`` caps the run.

Each step draws ``batch_size`` forget samples and ``retain_batch_size`` retained ones through one forward pass
(BatchNorm sees both); the loss is KL(target ‖ p(forget)) + ``retain_weight`` · CE(retain), with Adam. By default
the model trains in eval mode (BatchNorm normalises by its running statistics; Dropout off), as the other
repairs on a small set do.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .._runtime import eval_mode
from ..data import LabeledData, batches
from ..errors import DataError
from ..evaluation import accuracy as _accuracy
from ..training import TrainConfig, fit
from ..validation import MAX_BATCH, MAX_EPOCHS, Options, option
from . import Context, register
from ._targets import (Features, absent_labels, at_most, heldout_outputs, matched_targets, neighbour_votes,
                       removed_label_targets)
from .neggrad_plus import cycle
from ._common import single_label

TARGETS = ("auto", "matched", "removed-label")
RETAIN_PROBE = 1024  # retained samples the stopping rule measures


@dataclass
class DistilConfig(Options):
    """What ``unseen`` and ``reference-guided`` share: distilling the forget set toward targets while fitting the
    retained data."""

    epochs: int = option(30, "cap on passes over the forget set", low=1, high=MAX_EPOCHS)
    lr: float = option(1e-3, "Adam learning rate", unit="per step", low=0, high=10, low_open=True)
    batch_size: int = option(64, "forget samples per step", low=1, high=MAX_BATCH)
    retain_batch_size: int = option(64, "retained samples per step (cross-entropy on their labels)", low=1,
                                    high=MAX_BATCH)
    retain_weight: float = option(2.0, "weight of the retained cross-entropy against the forget KL", low=0, high=1e3)
    heldout_samples: int = option(10_000, "held-out samples read at most (a random subset of larger sets)",
                                  unit="samples", low=10, high=1 << 24)
    train_mode: bool = option(False, "True: BatchNorm batch statistics and Dropout on; False: eval mode")

    def recipe(self) -> TrainConfig:
        return TrainConfig(epochs=self.epochs, lr=self.lr, batch_size=self.batch_size, optimizer="adam")


@dataclass
class UnseenConfig(DistilConfig):
    """Options of ``unseen``. Defaults chosen on validation splits (benchmarks/unseen_select.py,
    docs/results.md)."""

    targets: str = option("auto", "what each forget sample is distilled toward (module docstring): 'matched' = "
                          "held-out outputs of its class at its rank, 'removed-label' = its own output without its "
                          "label, 'auto' = removed-label for a forgotten class or a fault, matched otherwise",
                          choices=TARGETS)
    neighbours: int = option(10, "retained neighbours that rank how typical a forget sample is of its class",
                             low=1, high=1000)
    tolerance: float = option(1.0, "stop once forget accuracy is within this of the targets' accuracy and mean "
                              "true-class confidence within this /100 of the targets' (checked after each epoch)",
                              unit="points", low=0, high=100)
    retain_tolerance: float = option(0.5, "... and once the accuracy on a probe of retained samples is back within "
                                     "this of where it started", unit="points", low=0, high=100)


def build_targets(model: nn.Module, forget: LabeledData, retain: LabeledData, heldout: "LabeledData | None",
                  how: str, neighbours: int, heldout_samples: int, batch_size: int, ctx: Context
                  ) -> tuple[torch.Tensor, dict[str, Any]]:
    """(N_forget, K) target distributions and a record of how they were made."""
    absent = absent_labels(forget, retain)
    if how == "auto":
        removed = absent | single_label(forget)  # a forgotten class, or a fault: one (wrong) label
    elif how == "removed-label":
        removed = torch.ones_like(absent)
    else:
        removed = torch.zeros_like(absent)
    q = torch.zeros(len(forget), forget.num_classes)
    if bool(removed.any()):
        q[removed] = removed_label_targets(model, forget, batch_size, ctx.device)[removed]
    matched = ~removed
    record: dict[str, Any] = {"phase": "targets", "removed_label": int(removed.sum()), "matched": int(matched.sum())}
    if bool(matched.any()):
        if heldout is None:
            raise DataError("heldout: missing; unseen estimates how the model treats data it never saw from "
                            "held-out samples, and this forget set is scattered samples of classes the model keeps "
                            f"({int(matched.sum())} of {len(forget)}). Fix: pass heldout= a validation split the "
                            "model never trained on (with every class of forget), or targets='removed-label' to "
                            "treat the set as a fault.")
        heldout = at_most(heldout, heldout_samples, ctx.generator)
        probs = heldout_outputs(model, heldout, max(batch_size, 256), ctx.device)
        example = next(batches(forget, 2, device=ctx.device))[0]
        votes, own = neighbour_votes(Features(model, example), forget, retain, neighbours, max(batch_size, 256),
                                     ctx.device)
        q[matched] = matched_targets(forget, heldout, probs, votes, own, matched, ctx.generator)[matched]
        record.update(heldout_acc=100.0 * float((probs.argmax(1) == heldout.y.cpu()).float().mean()),
                      n_heldout=len(heldout))
    y = forget.y.cpu()
    record.update(target_acc=100.0 * float((q.argmax(1) == y).float().mean()),
                  target_confidence=float(q[torch.arange(len(y)), y].mean()))
    return q, record


def forget_state(model: nn.Module, forget: LabeledData, q: torch.Tensor, batch_size: int, device: torch.device
                 ) -> tuple[float, float, float]:
    """(accuracy in %, mean true-class probability, mean KL(q ‖ p)) of ``model`` on ``forget``, in eval mode."""
    hits, conf, kl = 0, 0.0, 0.0
    at = 0
    with eval_mode(model), torch.no_grad():
        for X, y in batches(forget, batch_size, device=device, reuse=True):
            logp = model(X).float().log_softmax(1).cpu()
            y = y.cpu()
            hits += int((logp.argmax(1) == y).sum())
            conf += float(logp.gather(1, y[:, None]).exp().sum())
            target = q[at: at + len(y)]
            kl += float(F.kl_div(logp, target, reduction="sum"))
            at += len(y)
    n = max(1, len(forget))
    return 100.0 * hits / n, conf / n, kl / n


def distil_forget(model: nn.Module, forget: LabeledData, retain: LabeledData, q: torch.Tensor, cfg: Any,
                  ctx: Context, record: dict[str, Any], desc: str, stop_rule: bool = True) -> list[dict[str, Any]]:
    """Distil ``model`` toward the targets ``q`` on ``forget`` while fitting ``retain``'s labels, in place; stop
    at the targets' accuracy and confidence (``stop_rule``) or after ``cfg.epochs``."""
    by_index = forget.with_labels(torch.arange(len(forget)), forget.name)  # batches carry positions into q
    targets = q.to(ctx.device)
    retain_batches = cycle(retain, cfg.retain_batch_size, ctx)
    steps_per_epoch = max(1, math.ceil(len(forget) / cfg.batch_size))
    goal_acc, goal_conf = record["target_acc"], record["target_confidence"]
    size = max(cfg.batch_size, 256)
    kept = retain.subset(torch.randperm(len(retain), generator=ctx.generator)[:RETAIN_PROBE].sort().values.numpy(),
                         "retain-probe")
    kept_before = _accuracy(model, kept)

    def loss_fn(m: nn.Module, X: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        Xr, yr = next(retain_batches)
        logits = m(torch.cat([X, Xr]) if not isinstance(X, dict) else {k: torch.cat([X[k], Xr[k]]) for k in X})
        kl = F.kl_div(logits[: len(idx)].float().log_softmax(1), targets[idx], reduction="batchmean")
        return kl + cfg.retain_weight * F.cross_entropy(logits[len(idx):].float(), yr)

    def stop(m: nn.Module, step: int) -> "dict[str, Any] | None":
        if not stop_rule or step % steps_per_epoch:
            return None
        acc, conf, _ = forget_state(m, forget, q, size, ctx.device)
        if acc > goal_acc + cfg.tolerance or conf > goal_conf + cfg.tolerance / 100:
            return None
        kept_now = _accuracy(m, kept)
        if kept_now < kept_before - cfg.retain_tolerance:
            return None
        return {"stopped": "at the targets", "forget_acc": acc, "forget_confidence": conf,
                "retained_acc": kept_now, "epoch": step // steps_per_epoch}

    history = fit(model, by_index, cfg.recipe(), generator=ctx.generator, device=ctx.device, loss_fn=loss_fn,
                  stop=stop, train_mode=cfg.train_mode, progress=ctx.progress, desc=desc)
    acc, conf, kl = forget_state(model, forget, q, size, ctx.device)
    model.eval()
    return [record] + history + [{"phase": "done", "forget_acc": acc, "forget_confidence": conf, "forget_kl": kl,
                                  "retained_probe_acc": _accuracy(model, kept),
                                  "retained_probe_acc_before": kept_before}]


@register("unseen", UnseenConfig, modes=("unlearn",), strength="lr",
          needs_retain="unseen keeps the retained predictions by fitting the samples to keep as it distils.",
          heldout="the model's outputs on held-out samples: its behaviour on data it never saw (the targets of "
                  "scattered forget samples)", heldout_for=("random",), fast={"epochs": 2})
def run(model: nn.Module, forget: LabeledData, retain: LabeledData, cfg: UnseenConfig,
        ctx: Context) -> list[dict[str, Any]]:
    """Distil the forget set toward the model's behaviour on unseen data, fitting the retained data."""
    q, record = build_targets(model, forget, retain, ctx.heldout, cfg.targets, cfg.neighbours, cfg.heldout_samples,
                              max(cfg.batch_size, 256), ctx)
    return distil_forget(model, forget, retain, q, cfg, ctx, record, "unseen")

