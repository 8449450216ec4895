"""``mixed-linear``: exact forgetting for a :class:`~netfix.mixed.MixedLinear` model (Golatkar et al. 2021).

The user part of a mixed-linear model is a quadratic problem, so forgetting is one Newton step on the remaining
user data, solved by conjugate gradient (methods.md §4). ``retain`` must be the *user* samples that remain (the
core's data never enters the user weights); the history records the bound on what is left.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..data import LabeledData
from ..errors import ConfigError
from ..mixed import MixedLinear
from . import Context, register


@dataclass
class MixedLinearConfig:
    """Options of ``mixed-linear`` forgetting."""

    tol: float = 1e-4                  # CG stops at this relative residual ‖Hδ − g‖ / ‖g‖ (MixedLinear.forget)
    max_iter: int = 200                # Hessian-vector products at most
    sigma: float = 0.0                 # std of the Gaussian noise added to the user weights (0 = none)

    def __post_init__(self) -> None:
        if not self.tol > 0 or not isinstance(self.max_iter, int) or self.max_iter < 1 or not self.sigma >= 0:
            raise ConfigError(f"mixed-linear: expected tol > 0, max_iter >= 1 and sigma >= 0; got tol={self.tol!r}, "
                              f"max_iter={self.max_iter!r}, sigma={self.sigma!r}.")


@register("mixed-linear", MixedLinearConfig,
          needs_retain="the Newton step is taken on the user samples that remain.",
          model_type=(MixedLinear, "wrap a core model with netfix.mixed.MixedLinear(core, linearize=[...]) and "
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
