"""The guard every repair runs under: no default returns a collapsed model.

A method's step size that suits one architecture can wreck another (random labels at SGD 0.01 took a small ViT
from 98 % retained accuracy to 21 %). So the registry measures accuracy on a probe of the retained data before the
run and after it; a run that loses more than ``tolerance`` points — or diverges — is rolled back to the original
weights and redone with the method's step (its ``strength`` option, usually ``lr``) times ``factor``, at most
``tries`` runs in all. When none passes, the run that kept the most is returned, with a warning — unless even that
one lost more than ``collapse`` points: then the model is rolled back to where it started (nothing is changed, and
the warning says so), because a collapsed model is worth less than the original. The time of every try is counted
in the outcome's seconds: a guard is not free, and the benches show it.
"""

from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from ..data import LabeledData
from ..errors import ConfigError, DivergedError
from ..validation import Options, option

__all__ = ["Guard", "GuardWarning", "guarded"]


class GuardWarning(UserWarning):
    """Every try of a guarded run lost more retained accuracy than the guard allows."""


@dataclass
class Guard(Options):
    """How a repair is guarded (``netfix.unlearn(..., guard=Guard(...))``; ``guard=None`` runs unguarded)."""

    tolerance: float = option(3.0, "retained accuracy a run may lose before it is redone with a smaller step",
                              unit="points", low=0, high=100)
    tries: int = option(3, "runs at most (1 = measure only)", low=1, high=10)
    factor: float = option(0.25, "each retry's step, relative to the try before", low=0, high=1, low_open=True,
                           high_open=True)
    probe: int = option(2048, "retained samples measured before and after each try", unit="samples", low=16,
                        high=1 << 20)
    collapse: float = option(10.0, "when even the best try loses more than this, the model is rolled back to where "
                             "it started (nothing changed) instead", unit="points", low=0, high=100)

    def check(self) -> None:
        if self.collapse < self.tolerance:
            raise ConfigError(f"collapse: expected at least tolerance ({self.tolerance}); got {self.collapse}. Fix: "
                               "raise collapse, or lower tolerance.")


def _accuracy(model: nn.Module, data: LabeledData) -> float:
    from ..evaluation import predict

    return 100.0 * float((predict(model, data).argmax(1) == data.y).float().mean())


def guarded(run: Callable[[Any], list[dict[str, Any]]], model: nn.Module, net: nn.Module, retain: LabeledData,
            cfg: Any, strength: "str | None", mode: str, guard: "Guard | None", seed: int
            ) -> tuple[list[dict[str, Any]], Any, "dict[str, Any] | None"]:
    """``run(cfg)`` (the method, in place on ``model``, a view of ``net``) under ``guard``; returns the history,
    the config of the kept run and the guard's record (None when unguarded)."""
    if guard is None or len(retain) == 0:
        return run(cfg), cfg, None
    rng = np.random.default_rng(seed + 7919)  # its own stream: the method's random draws are not shifted
    idx = np.sort(rng.choice(len(retain), min(guard.probe, len(retain)), replace=False))
    probe = retain.subset(idx, "guard-probe")
    before = _accuracy(model, probe)
    start = {k: v.detach().clone() for k, v in net.state_dict().items()}
    tries: list[dict[str, Any]] = []
    best: "tuple[float, dict[str, torch.Tensor], list[dict[str, Any]], Any] | None" = None
    current = cfg
    for attempt in range(guard.tries):
        if attempt:
            net.load_state_dict(start)
        try:
            history = run(current)
            after = _accuracy(model, probe)
        except DivergedError as e:
            tries.append({"try": attempt + 1, "diverged": str(e)[:200], **_step(current, strength, mode)})
            history, after = [], float("-inf")
        else:
            tries.append({"try": attempt + 1, "retained_acc": after, **_step(current, strength, mode)})
            if best is None or after > best[0]:
                best = (after, {k: v.detach().clone() for k, v in net.state_dict().items()}, history, current)
            if before - after <= guard.tolerance:
                return history, current, {"tolerance": guard.tolerance, "retained_acc_before": before, "tries": tries}
        smaller = _smaller(current, strength, mode, guard.factor)
        if smaller is None:
            break
        current = smaller
    record = {"tolerance": guard.tolerance, "retained_acc_before": before, "tries": tries, "passed": False}
    if best is None:  # every try diverged
        raise DivergedError(f"every try diverged, down to {_step(current, strength, mode)}. Fix: pass a smaller "
                            f"{strength or 'step'}.")
    lost = before - best[0]
    if lost > guard.collapse:
        net.load_state_dict(start)
        record["rolled_back"] = True
        warnings.warn(GuardWarning(f"every try lost more than {guard.collapse:g} points of retained accuracy (the "
                                   f"best {lost:.1f}); the model is returned as it was, nothing changed. Fix: a "
                                   f"smaller {strength or 'step'}, or another method."), stacklevel=4)
        return best[2] + [{"rolled_back": True, "retained_acc_lost": lost}], best[3], record
    net.load_state_dict(best[1])
    warnings.warn(GuardWarning(f"the run lost {lost:.1f} points of retained accuracy even at "
                               f"{_step(best[3], strength, mode)}; the try that kept the most is returned. Fix: a "
                               f"smaller {strength or 'step'}, or another method."), stacklevel=4)
    return best[2], best[3], record


def _value(cfg: Any, strength: "str | None", mode: str) -> "float | None":
    if strength is None:
        return None
    value = getattr(cfg, strength)
    if value is None and hasattr(cfg, "resolved"):
        value = cfg.resolved(strength, mode)
    return value


def _step(cfg: Any, strength: "str | None", mode: str) -> dict[str, Any]:
    return {strength: _value(cfg, strength, mode)} if strength else {}


def _smaller(cfg: Any, strength: "str | None", mode: str, factor: float) -> Any:
    value = _value(cfg, strength, mode)
    if value is None:
        return None
    try:
        return dataclasses.replace(cfg, **{strength: value * factor})  # type: ignore[arg-type]
    except ConfigError:  # below the option's range: nothing smaller to try
        return None
