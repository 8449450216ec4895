"""``fisher``: Fisher forgetting — noise where the retained data does not pin the weights down (Golatkar et al.
2020, "Eternal Sunshine of the Spotless Net"; docs/methods.md §5, source AdityaGolatkar/SelectiveForgetting).

The diagonal of the Fisher information on ``retain``,

    F = mean over x of Σ_y p(y|x) (∂ log p(y|x) / ∂θ)²,

says how much each weight matters to the retained predictions. Each weight gets Gaussian noise of variance
α · min(1/F, 1000): large where F is small (the weight serves only the forget set, or nothing), small where the
retained data needs it. For weight matrices / kernels the variance is averaged over each output unit (row), and it
is ×10 for the output layer and for 1-D parameters (biases, normalisation scales), with the output layer's
min(1/F, ·) capped at 100. For *class* forgetting (every forget sample has one class c and retain has none of it)
the output layer's row c (and bias c) is set to 0 with variance 1e-4, which removes class c's own evidence; then
(``forgotten_bias="below"``, the default) bias c is lowered until class c's logit is at least 1 below the top other
logit on every forget sample. A zeroed row alone leaves logit c at about 0, which still wins wherever every other
logit is negative (validation: 84 % of the forgotten class forgotten, gap 5.6); a retrain, which never saw c,
never predicts it (validation: 100 %, gap 0.2).

F is estimated by default (``estimator="sampled"``) with one label ŷ ~ p(·|x) per sample:
E_ŷ[(∂ log p(ŷ|x) / ∂θ)²] is exactly the sum above, at one gradient per sample instead of K, and for linear layers
without any per-sample gradient (:func:`netfix.gradients.sampled_fisher_diagonal`) — about 100× faster than the
exact sum on the bench's MLP (0.04 s instead of 4 s for 2000 samples). ``estimator="exact"`` computes the sum over
all K classes (``vmap`` over ``jacrev``). Both run in eval mode, on at most ``max_samples`` random retained samples
(2000 by default; None = all of retain).

α = 1e-6 (the public implementations use 1e-6..1e-8), picked on the validation split
(benchmarks/unlearn_select.py; mean gap 3.87 against 3.94 at 1e-7 and 3.98 at 1e-8): α barely moves random
forgetting (gap 7.3 at 1e-6, 7.7 at 1e-7: noise this small forgets few samples, and larger α costs retained
accuracy first), and class forgetting is done by the row reset and bias (gap 0.45 at 1e-6, 0.19 at 1e-7).

The output layer is found by running the model once: every module with its own parameters whose output has the
logits' shape (B, K) (several when branches are summed into the logits). A hidden layer exactly K wide would be
taken for one: name the output layers with ``last_layer`` then.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, jacrev, vmap
from tqdm.auto import tqdm

from .._runtime import eval_mode
from ..data import LabeledData
from ..errors import ConfigError, DataError
from ..gradients import auto_chunk, param_names, sampled_fisher_diagonal
from ..validation import Options, option
from ..streaming import move
from . import Context, register

BOOST = 10.0  # variance factor of the output layer and of 1-D parameters (Golatkar et al.)


@dataclass
class FisherConfig(Options):
    """Options of ``fisher``. Variances are in squared weight units, as multiples of α.

    Defaults marked in docs/results.md were chosen on a validation split (benchmarks/unlearn_select.py).
    """

    alpha: float = option(1e-6, "noise scale α: variance = α · min(1/F, max_variance); 0 = no noise (class "
                          "forgetting then only resets the forgotten class's row)", unit="squared weight units",
                          low=0, high=1e3)
    max_variance: float = option(1000.0, "cap on 1/F (before α) for every weight", low=0, high=1e12, low_open=True)
    last_layer_max_variance: float = option(100.0, "cap on 1/F (before α) for the output layer", low=0, high=1e12,
                                            low_open=True)
    forgotten_variance: float = option(1e-4, "class forgetting: variance of the zeroed output row (absolute, no "
                                       "α); 0 = exactly zero", unit="squared weight units", low=0, high=1e6)
    forgotten_bias: str = option("below", "class forgetting: the zeroed row's bias: 'zero' (the source's reset) "
                                 "or 'below' (then lowered until the class's logit is at least 1 below the top "
                                 "other logit on every forget sample, as a retrain that never saw the class)",
                                 choices=("zero", "below"))
    class_forget: bool | None = option(None, "zero the forgotten class's output row",
                                       none="when every forget sample has one class and retain has none of it")
    max_samples: int | None = option(2000, "retained samples the Fisher is estimated on (random)", unit="samples",
                                     low=1, high=1 << 31, none="all of retain")
    last_layer: list[str] | None = option(None, "module names of the output layer(s)", none="found automatically")
    estimator: str = option("sampled", "'sampled': one per-sample gradient of log p(ŷ|x) with ŷ drawn from p(·|x) "
                            "(unbiased, K times cheaper); 'exact': the sum over all K classes",
                            choices=("sampled", "exact"))
    draws: int = option(1, "sampled estimator: labels drawn per sample", low=1, high=1000)
    chunk_size: int | None = option(None, "samples per batched Fisher computation", unit="samples", low=1,
                                    high=1 << 20, none="automatic, about 256 MB of Jacobians per chunk")


def fisher_diagonal(model: nn.Module, data: LabeledData, chunk_size: int | None = None,
                    progress: bool = False) -> dict[str, torch.Tensor]:
    """The diagonal Fisher information of ``model``'s predictive distribution on ``data``, per trainable
    parameter: mean over x of Σ_y p(y|x) (∂ log p(y|x) / ∂θ)², computed in eval mode ``chunk_size`` samples at a
    time (None: about 256 MB of per-sample Jacobians per chunk).

    Example:
        >>> fim = fisher_diagonal(model, retain.subset(range(500)))
        >>> fim["fc.weight"].shape == model.fc.weight.shape
        True
    """
    names = param_names(model)
    dev = next(iter(model.parameters())).device
    params = dict(model.named_parameters())
    chosen = {n: params[n].detach() for n in names}
    fixed = {n: p.detach() for n, p in params.items() if n not in chosen}
    fixed.update(dict(model.named_buffers()))

    def log_probs(p: dict[str, torch.Tensor], x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logp = F.log_softmax(functional_call(model, {**p, **fixed}, (x.unsqueeze(0),)).squeeze(0), 0)  # (K,)
        return logp, logp.detach().exp()

    per_sample = vmap(jacrev(log_probs, has_aux=True), in_dims=(None, 0))
    total = {n: torch.zeros_like(t) for n, t in chosen.items()}
    if len(data) == 0:
        return total
    with eval_mode(model), torch.no_grad():
        k = int(model(move(data.X[:1], dev)).shape[1])
    size = chunk_size or auto_chunk(k * sum(t.numel() for t in chosen.values()))
    with eval_mode(model):
        for start in tqdm(range(0, len(data), size), desc="fisher", unit="chunk", disable=not progress,
                          leave=False):
            X = move(data.X[start:start + size], dev)
            jac, prob = per_sample(chosen, X)  # name -> (B, K, *shape); prob (B, K)
            for n in names:
                weights = prob.reshape(*prob.shape, *([1] * chosen[n].ndim))
                total[n] += (weights * jac[n].pow(2)).sum((0, 1))
    return {n: t / len(data) for n, t in total.items()}


def output_layers(model: nn.Module, X: torch.Tensor) -> list[str]:
    """Names of the modules with their own parameters whose output has the logits' shape (B, K), found by one
    eval-mode forward on ``X``."""
    shapes: dict[str, tuple[int, ...]] = {}
    hooks = []
    for name, m in model.named_modules():
        if any(True for _ in m.parameters(recurse=False)):
            def record(mod: nn.Module, inp: Any, out: Any, name: str = name) -> None:
                if isinstance(out, torch.Tensor):
                    shapes[name] = tuple(out.shape)
            hooks.append(m.register_forward_hook(record))
    try:
        with eval_mode(model), torch.no_grad():
            logits = model(X)
    finally:
        for h in hooks:
            h.remove()
    return [n for n, s in shapes.items() if s == tuple(logits.shape)]


def _forgotten_class(forget: LabeledData, retain: LabeledData, cfg: FisherConfig) -> int | None:
    """The class to zero out, or None for sample-wise forgetting."""
    classes = forget.y.unique()
    single = len(classes) == 1 and not bool((retain.y == classes[0]).any())
    if cfg.class_forget is None:
        return int(classes[0]) if single else None
    if not cfg.class_forget:
        return None
    if len(classes) != 1:
        raise DataError(f"forget: class_forget=True needs every forget sample to have one class; got classes "
                        f"{classes.tolist()}. Fix: pass one class's samples, or class_forget=None.")
    return int(classes[0])


def _layer_params(model: nn.Module, layers: Sequence[str]) -> set[str]:
    modules = dict(model.named_modules())
    for name in layers:
        if name not in modules or not any(True for _ in modules[name].parameters(recurse=False)):
            valid = [n for n, m in modules.items() if any(True for _ in m.parameters(recurse=False))]
            raise ConfigError(f"last_layer: {name!r} is not a module with parameters. Valid names: "
                              f"{', '.join(valid)}.")
    return {f"{layer}.{n}" if layer else n for layer in layers
            for n, _ in modules[layer].named_parameters(recurse=False)}


@register("fisher", FisherConfig, modes=("unlearn",), strength="alpha",
          needs_retain="Fisher forgetting measures which weights the samples to keep need.", fast={"max_samples": 256})
def run(model: nn.Module, forget: LabeledData, retain: LabeledData, cfg: FisherConfig,
        ctx: Context) -> list[dict[str, Any]]:
    """Fisher forgetting: Gaussian noise scaled by the inverse Fisher information on the retained data."""
    dev = next(iter(model.parameters())).device
    layers = cfg.last_layer if cfg.last_layer is not None else output_layers(model, move(forget.X[:2], dev))
    last = _layer_params(model, layers)
    cls = _forgotten_class(forget, retain, cfg)
    if cls is not None and not last:
        raise ConfigError("last_layer: found no layer that outputs the logits, so the forgotten class's row "
                          "cannot be zeroed. Fix: name it, e.g. last_layer=['fc'], or class_forget=False.")
    start = time.perf_counter()
    used = retain
    if cfg.max_samples is not None and len(retain) > cfg.max_samples:
        used = retain.subset(torch.randperm(len(retain), generator=ctx.generator)[: cfg.max_samples], "fisher")
    if cfg.estimator == "exact":
        fim = fisher_diagonal(model, used, cfg.chunk_size, ctx.progress)
    else:
        fim = sampled_fisher_diagonal(model, used, ctx.generator, cfg.chunk_size, cfg.draws, ctx.progress)
    fisher_seconds = time.perf_counter() - start

    params = dict(model.named_parameters())
    std_sum, count = 0.0, 0
    with torch.no_grad():
        for name, f in fim.items():  # parameter order: the noise draws are the same on every device
            p = params[name]
            var = f.reciprocal().clamp(max=cfg.max_variance)
            if name in last:
                var = var.clamp(max=cfg.last_layer_max_variance)
            var = cfg.alpha * var
            if p.ndim > 1:  # one variance per output unit
                var = var.flatten(1).mean(1).reshape(-1, *([1] * (p.ndim - 1))).expand_as(p).clone()
            if name in last or p.ndim == 1:
                var = var * BOOST
            mean = p.detach().clone()
            if cls is not None and name in last:
                mean[cls] = 0.0
                var[cls] = cfg.forgotten_variance
            noise = torch.randn(p.shape, generator=ctx.generator).to(dev, p.dtype)
            std = var.sqrt()
            p.copy_(mean + std * noise)
            std_sum += float(std.sum())
            count += p.numel()
    lowered = _lower_bias(model, forget, last, cls, dev) if cls is not None and cfg.forgotten_bias == "below" \
        else None
    return [{"samples": len(used), "fisher_seconds": fisher_seconds, "class_forget": cls is not None,
             "forgotten_class": cls, "last_layer": list(layers), "mean_noise_std": std_sum / max(1, count),
             "forgotten_bias": lowered}]


def _lower_bias(model: nn.Module, forget: LabeledData, last: set[str], cls: int, dev: torch.device,
                margin: float = 1.0, batch: int = 1024) -> float | None:
    """Lower the output bias of class ``cls`` until its logit is ``margin`` below the largest other logit on every
    forget sample (eval mode); return the new bias, or None when the output layer has no bias."""
    params = dict(model.named_parameters())
    bias = next((n for n in sorted(last) if n.endswith("bias") and params[n].ndim == 1), None)
    if bias is None:
        return None
    worst = float("inf")
    with eval_mode(model), torch.no_grad():
        for start in range(0, len(forget), batch):
            z = model(move(forget.X[start:start + batch], dev)).float()
            others = torch.cat([z[:, :cls], z[:, cls + 1:]], 1).amax(1)
            worst = min(worst, float((others - z[:, cls]).min()))
        params[bias][cls] += worst - margin
    return float(params[bias].detach()[cls])
