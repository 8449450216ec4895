"""The gradient engine: per-sample gradients of model outputs, their Jacobian, projection bases, and diagonal
Fisher estimates.

This module is where the engine's public names are read (``netfix.gradients.X``):

- per-sample output gradients (:func:`output_gradients`, :func:`param_names`, ...) from :mod:`netfix._per_sample`;
- their rows as a linear operator and its span (:class:`Jacobian`, :func:`output_jacobian`, :class:`Basis`) from
  :mod:`netfix.jacobian`;
- defined here, statistics of loss gradients that methods weigh parameters by: :func:`squared_gradient_importance`
  (SSD's importance, the targeted forgetting operator's) and :func:`sampled_fisher_diagonal` (the ``fisher``
  baseline's).

Other methods (mixed-linear forgetting, Fisher) reuse :func:`param_names` and the flat-vector helpers.
"""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch import nn
from torch.func import functional_call, grad, vmap

from ._per_sample import (VARIANTS, _check_chunk, _rows, auto_chunk, flat_grad, output_gradients,
                          output_gradients_loop, param_names)
from ._runtime import eval_mode
from .data import LabeledData
from .errors import ConfigError
from .jacobian import Basis, Jacobian, output_jacobian
from .streaming import move

__all__ = ["VARIANTS", "param_names", "output_gradients", "output_jacobian", "output_gradients_loop", "Jacobian",
           "Basis", "flat_grad", "squared_gradient_importance", "sampled_fisher_diagonal", "auto_chunk"]


def squared_gradient_importance(model: nn.Module, data: LabeledData, batch_size: int,
                                generator: "torch.Generator | None" = None, progress: bool = False,
                                desc: str = "importance") -> dict[str, torch.Tensor]:
    """Mean over minibatches of the squared gradient of the mean cross-entropy, per trainable parameter, in eval
    mode — a diagonal Fisher estimate (SSD's importance; the targeted forgetting operator's). Batches are drawn in
    a random order from ``generator``, or in order when it is None.

    Example:
        >>> imp = squared_gradient_importance(model, forget, 64, torch.Generator().manual_seed(0))
        >>> imp["fc.weight"].shape == model.fc.weight.shape
        True
    """
    import math

    from torch.utils.data import RandomSampler
    from tqdm.auto import tqdm

    from .data import batches

    params = dict(model.named_parameters())
    names = param_names(model)
    chosen = [params[n] for n in names]
    dev = chosen[0].device
    total = [torch.zeros_like(p) for p in chosen]
    count = 0
    order = RandomSampler(data, generator=generator) if generator is not None else None
    with eval_mode(model):
        for X, y in tqdm(batches(data, batch_size, order, dev), total=math.ceil(len(data) / batch_size),
                         desc=desc, unit="batch", disable=not progress, leave=False):
            grads = torch.autograd.grad(torch.nn.functional.cross_entropy(model(X), y), chosen, allow_unused=True)
            for t, g in zip(total, grads):
                if g is not None:
                    t += g.detach().pow(2)
            count += 1
    return {n: t / max(1, count) for n, t in zip(names, total)}


def sampled_fisher_diagonal(model: nn.Module, data: LabeledData, generator: "torch.Generator | None" = None,
                            chunk_size: int | None = None, draws: int = 1, progress: bool = False,
                            desc: str = "fisher") -> dict[str, torch.Tensor]:
    """A Monte-Carlo estimate of the diagonal Fisher information of ``model``'s predictive distribution on
    ``data``, per trainable parameter: the mean over x and over ``draws`` labels ŷ ~ p(·|x) of
    (∂ log p(ŷ|x) / ∂θ)². Its expectation over the draws is exactly Σ_y p(y|x) (∂ log p(y|x) / ∂θ)², the true
    Fisher (not the "empirical" one of the given labels), at one per-sample gradient per draw instead of one per
    class. Labels are drawn from ``generator`` (on the CPU, so the same on every device). Everything runs in eval
    mode, ``chunk_size`` samples at a time (None: about 256 MB of per-sample gradients per chunk).

    The squared per-sample gradients of an ``nn.Linear`` layer applied once per forward to (B, in) inputs need
    no per-sample gradients at all: with inputs a_i and output gradients g_i of one batched backward pass of
    Σ_i log p(ŷ_i|x_i), they are Σ_i (g_i²)(a_i²)ᵀ for the weight and Σ_i g_i² for the bias — one matrix product.
    Every other parameter (convolutions, normalisation scales, a layer used twice) gets vmapped per-sample
    gradients of the same draws.

    Example:
        >>> fim = sampled_fisher_diagonal(model, retain.subset(range(500)), torch.Generator().manual_seed(0))
        >>> fim["fc.weight"].shape == model.fc.weight.shape
        True
    """
    from tqdm.auto import tqdm

    _check_chunk(chunk_size)
    if not isinstance(draws, int) or draws < 1:
        raise ConfigError(f"draws: expected a whole number >= 1; got {draws!r}.")
    names = param_names(model)
    dev = next(iter(model.parameters())).device
    all_params = dict(model.named_parameters())
    total = {n: torch.zeros_like(all_params[n]) for n in names}
    if len(data) == 0:
        return total
    linears = _closed_form_linears(model, data, total, dev)
    closed_params = {f"{n}.{p}" if n else p: (n, p) for n, m in linears.items()
                     for p, _ in m.named_parameters(recurse=False)}
    rest = [n for n in names if n not in closed_params]
    chosen = {n: all_params[n].detach() for n in rest}
    rows_of, log_probs = _log_prob_rows(model, chosen)
    size = chunk_size or auto_chunk(sum(chosen[n].numel() for n in rest) if rest else 1)
    loop = [False]
    seen: dict[str, list[torch.Tensor]] = {}
    outs: dict[str, list[torch.Tensor]] = {}
    hooks = _record_io(linears, seen, outs)
    try:
        with eval_mode(model):
            for start in tqdm(range(0, len(data), size), desc=desc, unit="chunk", disable=not progress,
                              leave=False):
                X = move(data.X[start:start + size], dev)
                seen.clear()
                outs.clear()
                with torch.enable_grad():
                    z = model(X)
                logp = torch.log_softmax(z.float(), 1)
                probs = logp.detach().exp().cpu()
                for d in range(draws):
                    y = torch.multinomial(probs, 1, generator=generator).squeeze(1).to(dev)
                    if linears:
                        _add_closed_form(total, logp, y, closed_params, seen, outs, retain=d < draws - 1)
                    if rest:
                        per_sample = _rows(rows_of, chosen, X, y, log_probs, "gtl", loop)
                        for n in rest:
                            total[n] += per_sample[n].pow(2).sum(0)
    finally:
        for h in hooks:
            h.remove()
    return {n: t / (len(data) * draws) for n, t in total.items()}


def _record_io(modules: dict[str, nn.Module], seen: dict[str, list[torch.Tensor]],
               outs: dict[str, list[torch.Tensor]]) -> list[Any]:
    """Forward hooks that keep, by module name, each call's input (detached) in ``seen`` and output in ``outs``."""
    def record(inp: Any, out: Any, name: str) -> None:
        seen.setdefault(name, []).append(inp[0].detach())
        outs.setdefault(name, []).append(out)

    return [m.register_forward_hook(lambda mod, i, o, name=name: record(i, o, name)) for name, m in modules.items()]


def _closed_form_linears(model: nn.Module, data: LabeledData, total: dict[str, torch.Tensor], dev: torch.device
                         ) -> dict[str, nn.Module]:
    """The ``nn.Linear`` layers whose squared per-sample gradients have the closed form: every parameter of theirs
    trainable, called once per forward on a (B, in) input (one probe forward of two samples says)."""
    linears: dict[str, nn.Module] = {}
    for mname, m in model.named_modules():
        own = [f"{mname}.{n}" if mname else n for n, _ in m.named_parameters(recurse=False)]
        if isinstance(m, nn.Linear) and own and all(n in total for n in own):
            linears[mname] = m
    seen: dict[str, list[torch.Tensor]] = {}
    outs: dict[str, list[torch.Tensor]] = {}
    hooks = _record_io(linears, seen, outs)
    try:
        with eval_mode(model), torch.enable_grad():
            model(move(data.X[:2], dev))
    finally:
        for h in hooks:
            h.remove()
    return {n: m for n, m in linears.items() if len(seen.get(n, [])) == 1 and seen[n][0].ndim == 2
            and outs[n][0].ndim == 2 and outs[n][0].requires_grad}


def _log_prob_rows(model: nn.Module, chosen: dict[str, torch.Tensor]
                   ) -> tuple[Callable[..., dict[str, torch.Tensor]], Callable[..., torch.Tensor]]:
    """``(rows_of, log_probs)``: vmapped per-sample gradients of log p(y|x) over the ``chosen`` parameters, and
    the one-sample log-probabilities that :func:`_rows`' one-at-a-time fallback differentiates."""
    all_params = dict(model.named_parameters())
    fixed = {n: p.detach() for n, p in all_params.items() if n not in chosen}
    fixed.update(dict(model.named_buffers()))

    def logits(p: dict[str, torch.Tensor], x: Any) -> torch.Tensor:  # one sample -> (K,)
        one = {k: v.unsqueeze(0) for k, v in x.items()} if isinstance(x, dict) else x.unsqueeze(0)
        return functional_call(model, {**p, **fixed}, (one,)).squeeze(0)

    def log_prob(p: dict[str, torch.Tensor], x: Any, y: torch.Tensor) -> torch.Tensor:
        return torch.log_softmax(logits(p, x), 0).gather(0, y.unsqueeze(0)).squeeze(0)

    def log_probs(p: dict[str, torch.Tensor], x: Any) -> torch.Tensor:
        return torch.log_softmax(logits(p, x), 0)

    return vmap(grad(log_prob), in_dims=(None, 0, 0)), log_probs


def _add_closed_form(total: dict[str, torch.Tensor], logp: torch.Tensor, y: torch.Tensor,
                     closed_params: dict[str, tuple[str, str]], seen: dict[str, list[torch.Tensor]],
                     outs: dict[str, list[torch.Tensor]], retain: bool) -> None:
    """Add one draw's squared per-sample gradients of the closed-form linears to ``total``: from one backward of
    Σ_i log p(ŷ_i|x_i) to the layers' outputs, Σ_i (g_i²)(a_i²)ᵀ for a weight and Σ_i g_i² for a bias."""
    closed = list(dict.fromkeys(n for n, _ in closed_params.values()))  # the layers, in the model's order
    picked = logp.gather(1, y.unsqueeze(1)).sum()
    gouts = torch.autograd.grad(picked, [outs[n][0] for n in closed], retain_graph=retain)
    for n, g in zip(closed, gouts):
        a2, g2 = seen[n][0].float().pow(2), g.detach().float().pow(2)
        for full, (_, p) in ((f, v) for f, v in closed_params.items() if v[0] == n):
            total[full] += (g2.T @ a2 if p == "weight" else g2.sum(0)).to(total[full].dtype)
