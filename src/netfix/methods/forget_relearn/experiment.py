"""The paper's analysis of forgetting operators: which examples does an operator make the network forget?

:func:`disproportionate_forgetting` trains a copy of a model and, at checkpoints, applies an operator to a copy
**without relearning**, comparing what clean, noisy and low-margin examples lose.

Example:
    >>> res = disproportionate_forgetting(model, s.train, "llf", noisy_mask, epochs=30)
    >>> res["ratio"]  # accuracy lost on the noisy labels per point lost on the clean ones
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..._runtime import copy_model, eval_mode, resolve_device, seeded, show_progress
from ...data import DataLike, LabeledData, as_data, batches
from ...errors import DataError
from ...training import TrainConfig, fit, make_optimizer, model_view
from ...validation import MAX_EPOCHS, check_scalar, check_seed
from .operators import Operator, label_margins, operator

__all__ = ["disproportionate_forgetting"]


def disproportionate_forgetting(model: nn.Module, data: DataLike, operator_: "Operator | str", noisy: Any, *,
                                epochs: int = 30, every: int = 1, margin_fraction: float = 0.1, seed: int = 0,
                                device: "torch.device | str | None" = None, progress: bool | None = None,
                                **recipe: Any) -> dict[str, Any]:
    """The paper's analysis: train a copy of ``model`` on ``data`` (whose labels are wrong where the boolean
    ``noisy`` is true) for ``epochs`` with ``recipe`` (:func:`netfix.train` options), and after every ``every``
    epochs apply ``operator_`` to a copy **without relearning**, recording accuracy and loss before and after on
    three groups of training examples (one optimizer and one learning-rate schedule over all ``epochs``):
    ``clean`` (correct label), ``noisy`` (wrong label, as trained on) and ``low_margin`` (the ``margin_fraction``
    of clean examples with the smallest label margin at that checkpoint).

    Returns ``{"checkpoints": [...], "ratio": R, ...}`` where R = Σ accuracy drop on noisy ÷ Σ accuracy drop on
    clean over the checkpoints at which the network had fit at least half of the noisy labels (the ratio is only
    meaningful once there is something memorised to forget; ``None`` if that never happens or if the operator
    changed no prediction of either group), and
    ``low_margin_ratio`` likewise for the low-margin group."""
    op = operator(operator_)
    ds = as_data(data, "data")
    noisy_set, clean_set = _groups(ds, noisy)
    epochs = check_scalar(epochs, "epochs", int, low=1, high=MAX_EPOCHS, default=30)
    every = check_scalar(every, "every", int, low=1, high=MAX_EPOCHS, default=1)
    margin_fraction = check_scalar(margin_fraction, "margin_fraction", float, low=0, high=1, low_open=True,
                                   default=0.1)
    seed = check_seed(seed)
    dev = resolve_device(device)
    cfg = TrainConfig(epochs=every, **recipe)
    checkpoints: list[dict[str, Any]] = []
    with seeded(seed, dev) as g:
        net, _ = model_view(copy_model(model, dev), ds)
        op.begin(net, seed)
        rounds = math.ceil(epochs / every)
        steps = max(1, math.ceil(len(ds) / cfg.batch_size))
        opt = make_optimizer([p for p in net.parameters() if p.requires_grad], cfg)  # one run, one optimizer
        constrain = None  # the operator acts on copies only: training itself is unconstrained
        for r in range(1, rounds + 1):
            fit(net, ds, replace(cfg, epochs=min(every, epochs - (r - 1) * every)), generator=g, device=dev,
                progress=show_progress(progress), desc=f"analysis {r}/{rounds}", optimizer=opt,
                lr_steps=((r - 1) * every * steps, epochs * steps), after_step=constrain)
            k = max(1, round(margin_fraction * len(clean_set)))
            sets = {"clean": clean_set, "noisy": noisy_set,
                    "low_margin": clean_set.subset(label_margins(net, clean_set).argsort()[:k], "low_margin")}
            before = _measure(net, sets, dev)
            after = _measure(op(net, seed=seed + r, data=ds if op.needs_data else None), sets, dev)
            checkpoints.append({"epoch": min(r * every, epochs), **{
                key: {"acc_before": before[key]["acc"], "acc_after": after[key]["acc"],
                      "acc_drop": before[key]["acc"] - after[key]["acc"],
                      "loss_before": before[key]["loss"], "loss_after": after[key]["loss"]}
                for key in sets}})
    memorised: list[dict[str, Any]] = [c for c in checkpoints if c["noisy"]["acc_before"] >= 50.0]
    return {"operator": op.describe(), "checkpoints": checkpoints, "ratio": _ratio(memorised, "noisy"),
            "low_margin_ratio": _ratio(memorised, "low_margin"), "memorised_checkpoints": len(memorised)}


def _groups(data: LabeledData, noisy: Any) -> tuple[LabeledData, LabeledData]:
    """The noisy and the clean samples of ``data``, by the boolean flags ``noisy`` (one per sample, both kinds)."""
    mask = torch.as_tensor(noisy, dtype=torch.bool).flatten()
    if len(mask) != len(data):
        raise DataError(f"noisy: expected one flag per sample of data ({len(data)}); got {len(mask)}.")
    if not mask.any() or mask.all():
        raise DataError("noisy: needs both noisy and clean samples to compare what each loses.")
    return data.subset(torch.nonzero(mask).squeeze(1), "noisy"), data.subset(torch.nonzero(~mask).squeeze(1), "clean")


def _measure(model: nn.Module, sets: dict[str, LabeledData], device: torch.device) -> dict[str, dict[str, float]]:
    """Accuracy (%) and mean cross-entropy of ``model`` on each named set."""
    out = {}
    with eval_mode(model), torch.no_grad():
        for key, s in sets.items():
            correct, loss = 0.0, 0.0
            for X, y in batches(s, 1024, None, device):
                z = model(X)
                correct += float((z.argmax(1) == y).sum())
                loss += float(F.cross_entropy(z, y, reduction="sum"))
            out[key] = {"acc": 100.0 * correct / len(s), "loss": loss / len(s)}
    return out


def _ratio(memorised: list[dict[str, Any]], group: str) -> float | None:
    """Σ accuracy drop on ``group`` ÷ Σ accuracy drop on clean over the ``memorised`` checkpoints."""
    if not memorised:
        return None
    clean = sum(c["clean"]["acc_drop"] for c in memorised)
    other = sum(c[group]["acc_drop"] for c in memorised)
    if clean > 0:
        return other / clean
    return float("inf") if other > 0 else None  # nothing was forgotten: no ratio
