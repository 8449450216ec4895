"""The numbers behind a report's plots, computed while a command still holds the models (:func:`panel`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..data import LabeledData
from ..evaluation import predict

__all__ = ["panel", "BINS"]

BINS = 20  # confidence histograms: bins on [0, 1]


def panel(models: "dict[str, nn.Module]", sets: "dict[str, LabeledData | None]", num_classes: int,
          max_samples: int = 5000, forgotten: int | None = None) -> dict[str, Any]:
    """What the plots need, per model: accuracy on each split in ``sets`` (``forget``, ``retain``, ``test``,
    ``fault_test``; None entries skipped), per-class test accuracy, the test confusion matrix (rows: true class)
    and histograms (``BINS`` bins on [0, 1]) of the true-class confidence on forget and test. Splits are capped at
    ``max_samples`` samples (the first ones) to keep reports fast on big sets.

    ``forgotten``: for a class-forgetting request, the class forgotten. Its test samples are ``fault_test`` (the
    scenario's ``test`` leaves them out, see :func:`netfix.scenarios.class_forget`); the per-class accuracy and the
    confusion matrix then count them too, so the plots show the class, and the panel records ``forgotten`` for the
    report's headline. The per-split accuracies stay those of the scenario's sets."""
    out: dict[str, Any] = {"num_classes": num_classes, "models": {}}
    counted = ("test", "fault_test") if forgotten is not None else ("test",)
    if forgotten is not None:
        out["forgotten"] = int(forgotten)
    for name, model in models.items():
        out["models"][name] = _model_panel(model, sets, num_classes, max_samples, counted)
    return out


def _model_panel(model: nn.Module, sets: "dict[str, LabeledData | None]", num_classes: int, max_samples: int,
                 counted: Sequence[str]) -> dict[str, Any]:
    """One model's entry of :func:`panel`; the confusion matrix sums the splits named in ``counted``."""
    entry: dict[str, Any] = {"acc": {}, "confidence_hist": {}}
    edges = np.linspace(0.0, 1.0, BINS + 1)
    cm = torch.zeros(num_classes, num_classes, dtype=torch.long)
    for split, data in sets.items():
        if data is None or len(data) == 0:
            continue
        d = data if len(data) <= max_samples else data.subset(torch.arange(max_samples), data.name)
        logits = predict(model, d).cpu()
        pred = logits.argmax(1)
        entry["acc"][split] = float(100.0 * (pred == d.y).float().mean())
        if split in ("forget", "test"):
            conf = F.softmax(logits, 1).gather(1, d.y[:, None]).squeeze(1).numpy()
            entry["confidence_hist"][split] = np.histogram(conf, bins=edges)[0].tolist()
        if split in counted:
            cm.index_put_((d.y, pred), torch.ones(len(d.y), dtype=torch.long), accumulate=True)
    if int(cm.sum()):
        entry["confusion"] = cm.tolist()
        entry["per_class_acc"] = [float(100.0 * cm[c, c] / max(1, int(cm[c].sum()))) for c in range(num_classes)]
    return entry

