"""Helpers several methods share (distillation, the shape of a forget set): here, so that no method imports
another's module for them."""

from __future__ import annotations

import copy
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..data import LabeledData
from ..recipe import TrainConfig

__all__ = ["distill_loss", "frozen_copy", "single_label"]


def distill_loss(student: torch.Tensor, teacher: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """T² · KL(softmax(teacher / T) ‖ softmax(student / T)), averaged over the batch; logits (B, K) -> scalar.

    Example:
        >>> distill_loss(torch.zeros(2, 3), torch.zeros(2, 3), temperature=2.0)
        tensor(0.)
    """
    return temperature ** 2 * F.kl_div(F.log_softmax(student / temperature, 1),
                                       F.log_softmax(teacher / temperature, 1), log_target=True,
                                       reduction="batchmean")


def frozen_copy(model: nn.Module) -> nn.Module:
    """A copy of ``model`` in eval mode with gradients off: a teacher."""
    teacher = copy.deepcopy(model).eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher


def single_label(forget: LabeledData, share: float = 0.9) -> bool:
    """Whether (nearly) the whole forget set carries one label: a class to forget, or a fault — a backdoor's target
    or a mislabel's wrong label — rather than a scattered deletion request."""
    counts = torch.bincount(forget.y, minlength=forget.num_classes)
    return bool(counts.max() >= share * len(forget))


def sgd_recipe(cfg: Any) -> TrainConfig:
    """The SGD training recipe of a method whose options hold ``epochs``, ``lr``, ``batch_size``, ``momentum`` and
    ``weight_decay`` (and ``grad_clip`` where it has one)."""
    clip = {"grad_clip": cfg.grad_clip} if hasattr(cfg, "grad_clip") else {}
    return TrainConfig(epochs=cfg.epochs, lr=cfg.lr, batch_size=cfg.batch_size, optimizer="sgd",
                       momentum=cfg.momentum, weight_decay=cfg.weight_decay, **clip)
