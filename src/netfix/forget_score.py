"""The NeurIPS 2023 unlearning challenge's forgetting score (docs/methods.md §6, "DeepMind forget score").

An unlearning method forgets well when, on every forget example, the confidences of N models it produced cannot be
told apart from those of N models retrained from scratch without the forget set. Per example the score estimates the
privacy loss ε of the best threshold attack that separates the two sets of N values, buckets ε into points
(1 for ε < 0.5, halving per 0.5 of ε), and averages the points over the forget set:

1. c = log p_y − log Σ_{k≠y} p_k per forget example and model (the logit-scaled confidence);
2. the "positive" set is the one with the larger median; when one set's range is under 1 % of the other's, ε = 50;
3. single thresholds (positive when c ≥ t) and fixed-width windows (positive when t_l ≤ c ≤ t_r, the peakier set
   positive, width = its range, swept ±2 beyond the data), 100 per unit of c;
4. ε_t = max(log(1−δ−FPR) − log FNR, log(1−δ−FNR) − log FPR) ≥ 0; ∞ when FPR = FNR = 0; discarded when exactly one
   is 0; the example's ε is the maximum over thresholds, clipped to [0, 50];
5. ε in [0.5k, 0.5k + 0.5) earns 2^(−k) points, ε ≥ ⌈ln(N−1)⌉ earns 0 (with N models no finite ε estimate can reach
   ln(N−1), so that bucket holds only the perfectly separable examples); F = mean points;
6. Final = F × (RA_U/RA_R) × (TA_U/TA_R), accuracies averaged over the N models.

A method that returns the same model for every seed gives N identical values per example (range 0), so the range rule
sets ε = 50 and F = 0: the score rewards unlearning whose output is as random as retraining's. This module is apart
from :mod:`netfix.evaluation` (which re-exports :func:`forget_score`) because it is one self-contained metric.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from ._runtime import check_model, copy_model, model_device, resolve_device
from .data import DataLike, LabeledData, as_data
from .errors import ConfigError, ModelError
from .outputs import predict
from .training import num_outputs

__all__ = ["forget_score"]

EPS_MAX = 50.0        # ε of a perfectly separable (or degenerate) example
PER_UNIT = 100        # thresholds per unit of logit-scaled confidence
WINDOW_BUFFER = 2.0   # how far beyond the data the window thresholds are swept
RANGE_RATIO = 0.01    # smaller/larger range below this: ε = EPS_MAX without a sweep


def forget_score(unlearned_models: Sequence[nn.Module], retrained_models: Sequence[nn.Module], forget: DataLike,
                 retain: DataLike | None = None, test: DataLike | None = None, *, delta: float = 1e-5,
                 device: "torch.device | str | None" = None, batch_size: int = 1024) -> dict[str, Any]:
    """The challenge's forgetting score F of N unlearned models against N retrained ones, and its Final score.

    ``unlearned_models``: N models from one unlearning method run with N seeds; ``retrained_models``: N models
    retrained from scratch on ``retain`` with N seeds. ``retain`` and ``test`` add the accuracy ratios, and with
    both, ``final``. The models are not changed.

    Returns a dict with ``F`` (mean points over the forget set, in [0, 1]), ``epsilons`` (ε per forget example, in
    [0, 50]), ``n_models``, ``forget_acc`` / ``forget_acc_retrained`` (mean % over the models), and when given:
    ``retain_acc``, ``retain_acc_retrained``, ``retain_ratio`` (RA_U/RA_R), the same three for ``test``, and
    ``final`` = F × retain_ratio × test_ratio. Keys that don't apply are absent.

    Example:
        >>> unlearned = [netfix.unlearn(model, s.forget, s.retain, method="finetune", seed=i).model for i in range(16)]
        >>> retrained = [netfix.unlearn(model, s.forget, s.retain, method="retrain", seed=i).model for i in range(16)]
        >>> out = netfix.evaluation.forget_score(unlearned, retrained, s.forget, s.retain, s.test)
        >>> 0.0 <= out["F"] <= 1.0, len(out["epsilons"]) == len(s.forget)
        (True, True)
    """
    unl = _check_models(unlearned_models, "unlearned_models")
    ret = _check_models(retrained_models, "retrained_models")
    if len(unl) != len(ret):
        raise ConfigError(f"retrained_models: got {len(ret)} models but unlearned_models has {len(unl)}; expected "
                          "the same N. Fix: run the method and the retraining with the same N seeds.")
    if not (isinstance(delta, (int, float)) and 0.0 < delta < 1.0):
        raise ConfigError(f"delta: expected a number in (0, 1); got {delta!r}.")
    if not (isinstance(batch_size, int) and batch_size >= 1):
        raise ConfigError(f"batch_size: expected an int >= 1; got {batch_size!r}.")
    f = as_data(forget, "forget")
    k = _num_classes(unl, ret, f)
    f = as_data(f, "forget", num_classes=k)
    sets = {"forget": f}
    for name, d in (("retain", retain), ("test", test)):
        if d is not None:
            sets[name] = as_data(d, name, num_classes=k)
    dev = resolve_device(device)

    logits = {side: [_logits(m, sets, dev, batch_size) for m in models] for side, models in
              (("unlearned", unl), ("retrained", ret))}
    for side, per_model in logits.items():
        for i, lg in enumerate(per_model):
            if not all(bool(torch.isfinite(t).all()) for t in lg.values()):
                raise ModelError(f"{side}_models[{i}]: produced NaN or infinite logits; the score needs finite "
                                 "outputs. Fix: check the model (a diverged unlearning run?).")
    conf_u = np.stack([_confidence(lg["forget"], f.y) for lg in logits["unlearned"]], 1)   # (M, N)
    conf_r = np.stack([_confidence(lg["forget"], f.y) for lg in logits["retrained"]], 1)  # (M, N)
    eps = example_epsilons(conf_u, conf_r, delta)
    out: dict[str, Any] = {"F": float(points(eps, len(unl)).mean()), "epsilons": eps.tolist(), "n_models": len(unl)}
    ratios = []
    for name, d in sets.items():
        acc_u = float(np.mean([_acc(lg[name], d.y) for lg in logits["unlearned"]]))
        acc_r = float(np.mean([_acc(lg[name], d.y) for lg in logits["retrained"]]))
        out[f"{name}_acc"], out[f"{name}_acc_retrained"] = acc_u, acc_r
        if name == "forget":
            continue
        if acc_r == 0.0:
            raise ModelError(f"retrained_models: have 0 % accuracy on {name}, so the ratio of accuracies is "
                             "undefined. Fix: pass models retrained on retain (and check the labels).")
        out[f"{name}_ratio"] = acc_u / acc_r
        ratios.append(out[f"{name}_ratio"])
    if len(ratios) == 2:
        out["final"] = out["F"] * ratios[0] * ratios[1]
    return out


def logit_confidence(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """c = log p_y − log Σ_{k≠y} p_k = z_y − logsumexp_{k≠y} z_k, per row of ``logits`` (B, K); float64."""
    z = logits.double()
    zy = z.gather(1, y[:, None]).squeeze(1)
    others = z.scatter(1, y[:, None], float("-inf"))
    return zy - torch.logsumexp(others, 1)


def example_epsilons(conf_u: np.ndarray, conf_r: np.ndarray, delta: float = 1e-5) -> np.ndarray:
    """ε per example from the confidences (M examples, N models) of the unlearned and the retrained models."""
    return np.array([_epsilon(u, r, delta) for u, r in zip(conf_u, conf_r)], dtype=np.float64)


def points(eps: np.ndarray, n_models: int) -> np.ndarray:
    """Points per example: 2^(−k) for ε in [0.5k, 0.5k + 0.5); 0 for ε ≥ ⌈ln(N−1)⌉."""
    cutoff = math.ceil(math.log(n_models - 1))
    return np.where(eps >= cutoff, 0.0, 2.0 ** -np.floor(2.0 * eps))


def _epsilon(u: np.ndarray, r: np.ndarray, delta: float) -> float:
    """One example's ε from its N unlearned and N retrained confidences (steps 3-6)."""
    pos, neg = (u, r) if np.median(u) >= np.median(r) else (r, u)
    range_pos, range_neg = float(np.ptp(pos)), float(np.ptp(neg))
    small, large = min(range_pos, range_neg), max(range_pos, range_neg)
    # Both sets constant (large == 0) is left to the sweep: equal constants score 0, different ones 50.
    if large > 0.0 and small / large < RANGE_RATIO:
        return EPS_MAX
    n = len(pos)
    sp, sn = np.sort(pos), np.sort(neg)
    lo, hi = float(min(sp[0], sn[0])), float(max(sp[-1], sn[-1]))

    t = _grid(lo, hi)  # single thresholds: positive when c >= t
    fnr = np.searchsorted(sp, t, "left") / n
    fpr = (n - np.searchsorted(sn, t, "left")) / n
    best = _threshold_eps(fpr, fnr, delta).max()

    peaky, other = (sp, sn) if range_pos <= range_neg else (sn, sp)
    tl = _grid(lo - WINDOW_BUFFER, hi + WINDOW_BUFFER - small)  # windows [tl, tl + small], peakier set positive
    tr = tl + small
    inside_p = np.searchsorted(peaky, tr, "right") - np.searchsorted(peaky, tl, "left")
    inside_o = np.searchsorted(other, tr, "right") - np.searchsorted(other, tl, "left")
    best = max(best, _threshold_eps(inside_o / n, (n - inside_p) / n, delta).max())
    return float(min(best, EPS_MAX))


def _grid(lo: float, hi: float) -> np.ndarray:
    """Thresholds from lo to hi, both included, PER_UNIT per unit."""
    return np.linspace(lo, hi, max(math.ceil((hi - lo) * PER_UNIT), 0) + 1)


def _threshold_eps(fpr: np.ndarray, fnr: np.ndarray, delta: float) -> np.ndarray:
    """ε_t per threshold, clipped at 0: ∞ when FPR = FNR = 0; 0 (discarded) when exactly one of them is 0."""
    both, valid = (fpr == 0) & (fnr == 0), (fpr > 0) & (fnr > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        # log of a non-positive 1−δ−rate is −∞: that term then cannot be the maximum
        a = np.log(np.clip(1.0 - delta - fpr, 0.0, None)) - np.log(fnr)
        b = np.log(np.clip(1.0 - delta - fnr, 0.0, None)) - np.log(fpr)
        eps = np.where(valid, np.maximum(a, b), 0.0)
    return np.maximum(np.where(both, np.inf, eps), 0.0)


def _check_models(models: Any, argument: str) -> list[nn.Module]:
    if isinstance(models, nn.Module) or not isinstance(models, Sequence):
        raise ConfigError(f"{argument}: expected a list of N models (one per seed); got {type(models).__name__}. "
                          "Fix: pass [model_seed0, model_seed1, ...].")
    if len(models) < 3:
        raise ConfigError(f"{argument}: got {len(models)} model(s); expected at least 3. With N models an example "
                          f"earns points only while ε < ⌈ln(N−1)⌉, which is 0 for N = 2. Fix: train N >= 3 models "
                          "per set (the challenge used 512; 16 or more gives a usable estimate).")
    return [check_model(m, f"{argument}[{i}]") for i, m in enumerate(models)]


def _num_classes(unl: list[nn.Module], ret: list[nn.Module], forget: LabeledData) -> int:
    """Every model's number of outputs (run on two forget inputs); they must agree and be >= 2."""
    k = num_outputs(unl[0], forget, "forget")
    for side, models in (("unlearned_models", unl), ("retrained_models", ret)):
        for i, m in enumerate(models):
            ki = num_outputs(m, forget, "forget")
            if ki != k:
                raise ModelError(f"{side}[{i}]: has {ki} outputs but unlearned_models[0] has {k}; expected every "
                                 "model to predict the same classes.")
    if k < 2:
        raise ModelError(f"unlearned_models: the models have {k} output; the confidence log p_y − log Σ_(k≠y) p_k "
                         "needs at least 2 classes.")
    return k


def _logits(model: nn.Module, sets: dict[str, LabeledData], dev: torch.device,
            batch_size: int) -> dict[str, torch.Tensor]:
    net = model if model_device(model) == dev else copy_model(model, dev)
    return {name: predict(net, d, batch_size) for name, d in sets.items()}


def _confidence(logits: torch.Tensor, y: torch.Tensor) -> np.ndarray:
    return logit_confidence(logits, y).numpy()


def _acc(logits: torch.Tensor, y: torch.Tensor) -> float:
    return float(100.0 * (logits.argmax(1) == y).double().mean())

