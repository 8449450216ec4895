"""Training and forgetting of a :class:`~netfix.methods.mixed_linear.model.MixedLinear` model's user weights: how
they are trained (:class:`UserTraining`), and what a training (:class:`FitOutcome`) and a forget request
(:class:`ForgetOutcome`) return. :meth:`MixedLinear.fit_user` and :meth:`MixedLinear.forget` run
:func:`fit_user` and :func:`forget_user`.

Example:
    >>> fitted = MixedLinear(core, ["fc"]).fit_user(user_data, UserTraining(epochs=5))
    >>> out = fitted.model.forget(user_data.subset(forget_idx), user_data.subset(keep_idx), sigma=1e-3)
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import torch

from ..._runtime import model_device, seeded, show_progress
from ...data import DataLike
from ...errors import ConfigError
from ...validation import MAX_BATCH, MAX_EPOCHS, Options, check_scalar, check_seed, option

if TYPE_CHECKING:
    from .model import MixedLinear

__all__ = ["UserTraining", "FitOutcome", "ForgetOutcome", "fit_user", "forget_user"]


@dataclass
class UserTraining(Options):
    """How the user weights are trained: SGD with momentum on the MSE + L2 loss, lr × 0.1 at epochs 24 and 39 of
    50 (docs/methods.md §4), then — since the loss is quadratic — a Newton step to its exact optimum (``polish``), so
    that the trained weights are the optimum every bound and every forget is measured against. The Newton step is
    taken ``polish_rounds`` times, each from the true gradient where the last ended: from w_u = 0 one step leaves
    ‖∇L‖ ≈ polish_tol·‖∇L(0)‖ (3e-4 on Fashion-MNIST, a distance of up to 0.6 from the optimum), the second takes it
    to the float32 floor.

    ``epochs=None`` (the default) picks the fastest way to that optimum: with a preconditioner
    (:meth:`MixedLinear.with_preconditioner`) the Newton step from w_u = 0 alone — on Fashion-MNIST 16–35
    conjugate-gradient iterations, 6–10 s, against 70–90 s for the 50 SGD epochs that end at the same optimum —
    and without one the 50 SGD epochs first (unpreconditioned CG from 0 needs hundreds of iterations)."""

    epochs: int | None = option(None, "SGD passes over the user data; 0 = the Newton step alone", low=0,
                                high=MAX_EPOCHS, none="automatic (see above)")
    lr: float = option(0.05, "SGD step size", unit="per step", low=0, high=10, low_open=True)
    momentum: float = option(0.9, "SGD momentum", low=0, high=1, high_open=True)
    batch_size: int = option(64, "samples per step", low=1, high=MAX_BATCH)
    decay_at: tuple[float, ...] = option((0.48, 0.78), "fractions of the epochs after which lr is multiplied by "
                                         "0.1; () = no decay", low=0, high=1, low_open=True, high_open=True)
    polish: bool = option(True, "finish with a Newton step (CG) to the optimum")
    polish_tol: float = option(1e-5, "its CG relative residual", low=0, high=1, low_open=True)
    polish_max_iter: int = option(500, "its Hessian-vector products at most", low=1, high=100_000)
    polish_rounds: int = option(2, "Newton steps, each from the true gradient where the last one ended", low=1,
                                high=100)

    def check(self) -> None:
        if self.epochs == 0 and not self.polish:
            raise ConfigError("epochs, polish: expected epochs >= 1 or polish=True; got epochs=0 with polish=False, "
                              "which trains nothing. Fix: set epochs >= 1 or polish=True.")


@dataclass
class FitOutcome:
    """The trained model (a new :class:`MixedLinear`), seconds, and per-epoch history (loss, gradient norm)."""

    model: "MixedLinear"
    seconds: float
    history: list[dict[str, float]] = field(default_factory=list)


@dataclass
class ForgetOutcome:
    """A forget request's result: the new model and what is left.

    ``grad_norm`` = ‖∇L_r(w_u')‖ before noise; ``distance_bound`` = grad_norm / λ bounds ‖w_u' − w_r*‖ (w_r* the
    optimum on the remaining data); ``kl_bound`` = grad_norm² / (2σ²λ²), in nats, bounds the KL divergence between
    the forgotten and the retrained weights' distributions when noise σ > 0 was added (``None`` without noise: the
    deterministic result carries no distributional guarantee beyond the distance)."""

    model: "MixedLinear"
    seconds: float
    cg_iterations: int
    cg_residual: float                 # final relative residual ‖H δ − g‖ / ‖g‖
    grad_norm: float
    distance_bound: float
    sigma: float
    kl_bound: float | None
    n_forget: int
    n_retain: int

    def report(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "model"}


def _kl_bound(grad_norm: float, sigma: float, lam: float) -> float:
    """grad_norm² / (2σ²λ²) nats, computed so that a tiny σ gives inf rather than a division by zero."""
    scale = sigma * lam
    if grad_norm == 0:
        return 0.0
    ratio = grad_norm / scale if scale > 0 else float("inf")
    return 0.5 * ratio * ratio  # a float product overflows to inf (``**`` would raise)


def fit_user(model: "MixedLinear", data: DataLike, config: UserTraining | None, *, seed: int,
             progress: bool | None) -> FitOutcome:
    """:meth:`MixedLinear.fit_user`: the user weights trained on ``data`` from their current value."""
    if config is not None and not isinstance(config, UserTraining):
        raise ConfigError("config: expected a netfix.methods.mixed_linear.UserTraining or None; got "
                          f"{type(config).__name__}. "
                          "Fix: pass e.g. config=UserTraining(epochs=5).")
    seed = check_seed(seed)
    cfg = config or UserTraining()
    epochs = cfg.epochs if cfg.epochs is not None else (0 if model.precond_values.numel() else 50)
    cfg = replace(cfg, epochs=epochs)
    data = model._check(data, "data")
    dev = model_device(model)
    start = time.perf_counter()
    with seeded(seed, dev) as g:
        feats = model.features(data.X)
        y = data.y.to(dev)
        w = model.user_vector().clone().requires_grad_(True)
        opt = torch.optim.SGD([w], lr=cfg.lr, momentum=cfg.momentum)
        k, n = model._num_classes(), len(y)
        decay = {max(1, int(round(f * epochs))) for f in cfg.decay_at}
        history = []
        from tqdm.auto import tqdm

        loss = torch.zeros(())
        for epoch in tqdm(range(epochs), desc="user weights", disable=not show_progress(progress),
                          leave=False):
            order = torch.randperm(n, generator=g)
            for s in model._batches(n, cfg.batch_size):
                idx = order[s]
                f = model.logits_from_features(tuple(t[idx].to(dev) for t in feats), w)
                loss = 0.5 * ((f - model._targets(y[idx.to(dev)], k)) ** 2).mean() + 0.5 * model.lam * (w @ w)
                opt.zero_grad()
                loss.backward()
                opt.step()
            if epoch + 1 in decay:
                for group in opt.param_groups:
                    group["lr"] *= 0.1
            history.append({"epoch": epoch + 1, "loss": float(loss.detach())})
        w = w.detach()
        if cfg.polish:  # a second round corrects the first's float32 CG error (iterative refinement)
            total_iters = 0
            for _ in range(cfg.polish_rounds):
                w, iters, residual = model._newton(feats, y, w, cfg.polish_tol, cfg.polish_max_iter)
                total_iters += iters
            history.append({"newton_iterations": total_iters, "newton_residual": residual})
        grad, full = model.gradient(feats, y, w)
        history.append({"full_loss": full, "grad_norm": float(grad.norm())})
    return FitOutcome(model.with_user_vector(w.detach()), time.perf_counter() - start, history)


def forget_user(model: "MixedLinear", forget: DataLike, retain: DataLike, *, tol: float, max_iter: int,
                sigma: float, seed: int) -> ForgetOutcome:
    """:meth:`MixedLinear.forget`: one Newton step on the remaining user data, then optional noise."""
    tol = check_scalar(tol, "tol", float, low=0, low_open=True, high=1, default=1e-4)
    max_iter = check_scalar(max_iter, "max_iter", int, low=1, high=100_000, default=200)
    sigma = check_scalar(sigma, "sigma", float, low=0, high=1e6, default=0.0)
    seed = check_seed(seed)
    forget_data = model._check(forget, "forget")
    retain_data = model._check(retain, "retain")
    dev = model_device(model)
    start = time.perf_counter()
    with torch.no_grad():
        feats = model.features(retain_data.X)
    y = retain_data.y.to(dev)
    w_new, iters, residual = model._newton(feats, y, model.user_vector(), tol, max_iter)
    grad_after, _ = model.gradient(feats, y, w_new)
    grad_norm = float(grad_after.norm())
    if sigma > 0:
        with seeded(seed, dev) as gen:
            w_new = w_new + sigma * torch.randn(w_new.shape, generator=gen).to(dev)
    seconds = time.perf_counter() - start
    return ForgetOutcome(model=model.with_user_vector(w_new), seconds=seconds, cg_iterations=iters,
                         cg_residual=residual, grad_norm=grad_norm, distance_bound=grad_norm / model.lam,
                         sigma=float(sigma),
                         kl_bound=_kl_bound(grad_norm, sigma, model.lam) if sigma > 0 else None,
                         n_forget=len(forget_data), n_retain=len(retain_data))

