"""``ssd``: Selective Synaptic Dampening — shrink the weights that matter far more to the forget set than to the
training data as a whole (Foster et al. AAAI 2024; docs/methods.md §5, source if-loops/selective-synaptic-dampening).

The importance of weight i on a set S is the mean over minibatches of S of the squared cross-entropy gradient,
I_S[i] = mean_b (∂ CE_b / ∂θ_i)² (a diagonal Fisher estimate). With I_D on the whole training data
D = retain ∪ forget and I_f on the forget set,

    θ_i ← θ_i · min(λ · I_D[i] / I_f[i], 1)    where I_f[i] > α · I_D[i]; every other weight is left exactly as is.

No training: two passes of gradients, then one multiplication. α = 10 and λ = 1 are the paper's values for
ResNets (α = 5 for ViTs); netfix's λ default, 0.5, was chosen on a validation split (benchmarks/unlearn_select.py).
Gradients are taken in eval mode (BatchNorm running statistics, no Dropout), on
minibatches drawn in a random order (as from a shuffled training loader).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..data import LabeledData, concat
from ..gradients import squared_gradient_importance
from ..validation import MAX_BATCH, Options, option
from . import Context, register


@dataclass
class SSDConfig(Options):
    """Options of ``ssd`` (the paper's defaults, docs/methods.md §5).

    Defaults marked in docs/results.md were chosen on a validation split (benchmarks/unlearn_select.py).
    """

    alpha: float = option(10.0, "selection weighting α: dampen where I_f > α · I_D (5 for ViTs)", low=0,
                          low_open=True, high=1e6)
    lam: float = option(0.5, "dampening constant λ: scale by min(λ · I_D / I_f, 1)", low=0, low_open=True, high=1e6)
    batch_size: int = option(64, "samples per minibatch of the importance estimates", low=1, high=MAX_BATCH)


def importance(model: nn.Module, data: LabeledData, batch_size: int, generator: torch.Generator,
               progress: bool = False) -> dict[str, torch.Tensor]:
    """Mean over minibatches (in a random order drawn from ``generator``) of the squared gradient of the mean
    cross-entropy, per trainable parameter, in eval mode (:func:`netfix.gradients.squared_gradient_importance`)."""
    return squared_gradient_importance(model, data, batch_size, generator, progress, desc="ssd importance")


@torch.no_grad()
def dampen(model: nn.Module, full: dict[str, torch.Tensor], forget: dict[str, torch.Tensor], alpha: float,
           lam: float) -> int:
    """Scale, in place, each weight with ``forget`` importance > ``alpha`` × ``full`` importance by
    min(``lam`` · full / forget, 1); the others are not touched. Returns how many weights were selected."""
    params = dict(model.named_parameters())
    selected = 0
    for name, i_full in full.items():
        p = params[name]
        sel = forget[name] > alpha * i_full  # implies forget[name] > 0 there
        p[sel] *= (lam * i_full[sel] / forget[name][sel]).clamp(max=1.0).to(p.dtype)
        selected += int(sel.sum())
    return selected


@register("ssd", SSDConfig, modes=("unlearn",),
          needs_retain="SSD compares the forget set's importance with the whole training data's (retain + forget).")
def run(model: nn.Module, forget: LabeledData, retain: LabeledData, cfg: SSDConfig,
        ctx: Context) -> list[dict[str, Any]]:
    """Selective Synaptic Dampening: shrink the weights far more important to forget than to all the data."""
    everything = concat([retain, forget], "retain+forget")
    i_full = importance(model, everything, cfg.batch_size, ctx.generator, ctx.progress)
    i_forget = importance(model, forget, cfg.batch_size, ctx.generator, ctx.progress)
    selected = dampen(model, i_full, i_forget, cfg.alpha, cfg.lam)
    total = sum(t.numel() for t in i_full.values())
    return [{"dampened": selected, "dampened_fraction": selected / max(1, total), "params": total}]
