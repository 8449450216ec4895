"""``mixed-linear``: exact forgetting for a :class:`~netfix.methods.mixed_linear.MixedLinear` model (Golatkar et al.
2021).

The user part of a mixed-linear model is a quadratic problem, so forgetting is one Newton step on the remaining
user data, solved by conjugate gradient (docs/methods.md §4). ``retain`` must be the *user* samples that remain (the
core's data never enters the user weights); the history records the bound on what is left.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ...data import LabeledData
from ...validation import Options, option
from .. import Context, register
from .model import MixedLinear
from .pipeline import remaining_user_data


@dataclass
class MixedLinearConfig(Options):
    """Options of ``mixed-linear`` forgetting."""

    tol: float = option(1e-4, "CG stops at this relative residual ‖Hδ − g‖ / ‖g‖ (MixedLinear.forget)", low=0,
                        low_open=True, high=1)
    max_iter: int = option(200, "Hessian-vector products at most", low=1, high=100_000)
    sigma: float = option(0.0, "std of the Gaussian noise added to the user weights; 0 = none (no KL bound)", low=0,
                          high=1e6)


@register("mixed-linear", MixedLinearConfig, guarded=False, retained_from_record=remaining_user_data,
          needs_retain="the Newton step is taken on the user samples that remain.",
          model_type=(MixedLinear, "wrap a core model with netfix.methods.mixed_linear.MixedLinear(core, "
                                   "linearize=[...]) and "
                                   "train its user weights with .fit_user(user_data)."))
def run(model: nn.Module, forget: LabeledData, retain: LabeledData, cfg: MixedLinearConfig,
        ctx: Context) -> list[dict[str, Any]]:
    """One exact Newton step on the remaining user data (mixed-privacy forgetting)."""
    assert isinstance(model, MixedLinear)
    out = model.forget(forget, retain, tol=cfg.tol, max_iter=cfg.max_iter, sigma=cfg.sigma, seed=ctx.seed)
    with torch.no_grad():
        for p, q in zip(model.user, out.model.user):
            p.copy_(q)
    return [out.report()]
