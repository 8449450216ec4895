"""``reference-guided``: Reference-Guided Unlearning (ReGUn, Mirlach, Laguna & Vogt 2026) — distil the forget set
toward the model's class-conditioned behaviour on a disjoint held-out set.

The reference for a forget sample of class c is the original model's mean output over held-out samples of class c
(the paper draws, per forget batch, held-out samples with the batch's class histogram and averages the reference
model's outputs on them; netfix uses that draw's expectation, the class mean over the whole held-out set). The
model minimises KL(reference ‖ p(forget)) plus ``retain_weight`` · CE on retained batches in the same step, with
Adam, for a fixed number of epochs (passes over the forget set). It needs ``heldout=`` (data the model never
trained on). The reference is defined for classes the model keeps: for a class with no retained sample the held-out
samples of it are still predicted as it, so the method does not forget a class (use ``unseen``, ``ogd``).

netfix's own ``unseen`` differs in three ways: each forget sample gets one held-out output at its own rank rather
than the class mean (the targets keep the unseen data's spread of confidences and its errors, where the mean is one
confident vector), a forgotten class or a fault gets targets without its label, and the run stops at the targets'
accuracy and confidence.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..data import LabeledData
from ..errors import DataError
from ..validation import MAX_BATCH, MAX_EPOCHS, option
from . import Context, register
from ._targets import at_most, class_mean_targets, heldout_outputs
from .unseen import DistilConfig, distil_forget


@dataclass
class ReferenceGuidedConfig(DistilConfig):
    """Options of ``reference-guided`` (defaults chosen on validation splits, benchmarks/unseen_select.py)."""

    epochs: int = option(30, "passes over the forget set", low=1, high=MAX_EPOCHS)
    lr: float = option(4e-3, "Adam learning rate", unit="per step", low=0, high=10, low_open=True)
    batch_size: int = option(256, "forget samples per step", low=1, high=MAX_BATCH)
    retain_batch_size: int = option(256, "retained samples per step (cross-entropy on their labels)", low=1,
                                    high=MAX_BATCH)


@register("reference-guided", ReferenceGuidedConfig, modes=("unlearn",), strength="lr",
          needs_retain="reference-guided keeps the retained predictions by fitting the samples to keep.",
          heldout="the model's mean output per class on held-out samples: the reference each forget sample is "
                  "distilled toward", fast={"epochs": 2})
def run(model: nn.Module, forget: LabeledData, retain: LabeledData, cfg: ReferenceGuidedConfig,
        ctx: Context) -> list[dict[str, Any]]:
    """Distil each forget sample toward the model's mean held-out output for its class."""
    heldout = ctx.heldout
    if heldout is None:
        raise DataError("heldout: missing; reference-guided distils the forget set toward the model's outputs on "
                        "held-out samples of the same classes. Fix: pass heldout= a validation split the model "
                        "never trained on.")
    heldout = at_most(heldout, cfg.heldout_samples, ctx.generator)
    probs = heldout_outputs(model, heldout, max(cfg.batch_size, 256), ctx.device)
    q = class_mean_targets(forget, heldout, probs, torch.ones(len(forget), dtype=torch.bool))
    y = forget.y.cpu()
    record = {"phase": "targets", "n_heldout": len(heldout),
              "target_acc": 100.0 * float((q.argmax(1) == y).float().mean()),
              "target_confidence": float(q[torch.arange(len(y)), y].mean())}
    return distil_forget(model, forget, retain, q, cfg, ctx, record, "reference-guided", stop_rule=False)
