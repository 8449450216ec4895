"""``netfix bench ogd-debug``: the OGD debugging paper's two experiments (methods.md §1.2), measured against
retraining in the same run.

Scenarios (on ``--data``, mnist5k by default, or fashion-mnist):

- ``mislabel``: every training 7 taught as 1. The fault shows on test 7s.
- ``backdoor``: a 4×4 white square stamped on 5 % of the training images (not of class 0), labelled 0. The fault
  shows on triggered test images: the fault rate is the attack success rate.

The faulty model is an MLP (784-256-256-10) trained with its default recipe (netfix.models.recipe("mlp")). Rows
(``method``): ``original`` (the faulty model); ``ogd-unlearn`` (unlearning the forget set with projected gradients);
``ogd-unlearn-relearn`` (then relearning the corrected labels, memory recomputed); ``unprojected-unlearn-relearn``
(the same steps without projection); ``finetune`` (plain SGD on retain + corrected data); ``retrain`` (from scratch
on the clean data, the same recipe as the original — the reference for ``rte``).

Columns: ``test_acc`` (clean test accuracy), ``fault_rate`` (% of fault inputs given the faulty label),
``affected_class_acc`` (accuracy on the fault inputs with their true labels: test 7s, or triggered test images),
``other_classes_acc`` (clean test accuracy over the classes the fault does not involve: all but the mislabelled
source class, or all but the backdoor's target class), ``mean_confidence`` (mean max-softmax on the clean test set,
%), ``seconds`` (the repair's wall time; for ``ogd-unlearn-relearn`` both phases), ``rte`` (% of retrain's seconds).

The full run adds ablations of the ``ogd-unlearn-relearn`` row on seed 0: memory variant GTL / AVE / ALL and
memory size 50 / 300 / 1000 (column ``ablation``).
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch

from .. import data as datasets
from .. import models, scenarios
from ..evaluation import evaluate, predict
from ..methods import relearn, unlearn
from ..methods.ogd import OGDConfig
from ..training import train
from . import row_text, summarise

log = logging.getLogger("netfix.bench")

COLUMNS = ("scenario", "method", "ablation", "test_acc", "fault_rate", "affected_class_acc", "other_classes_acc",
           "mean_confidence", "seconds", "rte", "n")
METRICS = ("test_acc", "fault_rate", "affected_class_acc", "other_classes_acc", "mean_confidence", "seconds", "rte")
EPOCHS = {"mnist5k": (30, 8), "fashion-mnist": (20, 3), "mnist": (20, 3), "digits": (30, 10)}  # (full, quick)
ABLATIONS: list[dict[str, Any]] = [{"variant": "ave"}, {"variant": "all", "memory_size": 100}, {"variant": "all"},
             {"memory_size": 50}, {"memory_size": 1000}]


def _scenario(name: str, train_set: datasets.LabeledData, test_set: datasets.LabeledData,
              seed: int) -> scenarios.Scenario:
    if name == "mislabel":
        return scenarios.mislabel(train_set, test_set, source=7, target=1, fraction=1.0, seed=seed)
    return scenarios.backdoor(train_set, test_set, target=0, fraction=0.05, trigger="square", seed=seed)


def _measure(model: torch.nn.Module, s: scenarios.Scenario, device: torch.device) -> dict[str, float]:
    m = evaluate(model, test=s.test, fault_test=s.fault_test, fault_label=s.fault_label, device=device)
    excluded = s.args["source"] if s.name == "mislabel" else s.args["target"]
    logits = predict(model.to(device), s.test)
    conf = torch.softmax(logits, 1).max(1).values.mean()
    return {"test_acc": m["test_acc"], "fault_rate": m["fault_rate"], "affected_class_acc": m["fault_acc"],
            "other_classes_acc": float(np.mean([v for c, v in m["per_class_acc"].items() if c != excluded])),
            "mean_confidence": float(100.0 * conf)}


def run(quick: bool, seeds: int | None, data: str | None, device: torch.device, progress: bool | None,
        scenario: str | None = None) -> dict[str, Any]:
    name = data or "mnist5k"
    train_set, test_set = datasets.load(name)
    full_epochs, quick_epochs = EPOCHS.get(name, (20, 3))
    epochs = quick_epochs if quick else full_epochs
    seed_list = list(range(seeds if seeds else (1 if quick else 3)))
    wanted = [scenario] if scenario else ["mislabel", "backdoor"]
    defaults = OGDConfig()
    raw: list[dict[str, Any]] = []
    references: list[float] = []
    for sc in wanted:
        for seed in seed_list:
            s = _scenario(sc, train_set, test_set, seed)
            assert s.corrected is not None
            log.info("%s / %s / seed %d: training the faulty model (%d epochs)", name, sc, seed, epochs)
            model = models.build("mlp", train_set.input_shape, train_set.num_classes, seed=seed)
            original = train(model, s.train, epochs=epochs, seed=seed, device=device, progress=progress,
                             **models.recipe("mlp"))
            common: dict[str, Any] = {"seed": seed, "device": device, "progress": progress}
            retrain = relearn(original.model, s.corrected, protect=s.retain, method="retrain", **common)
            ref = retrain.seconds
            references.append(ref)

            def row(method: str, model: torch.nn.Module, seconds: float | None, ablation: str = "",
                    history: Any = None) -> None:
                r = {"scenario": sc, "method": method, "ablation": ablation, "seed": seed,
                     **_measure(model, s, device), "seconds": seconds,
                     "rte": None if seconds is None else 100.0 * seconds / ref, "reference_seconds": ref}
                if history is not None:
                    r["steps"] = history
                raw.append(r)
                log.info("%s", row_text(r))

            row("original", original.model, None)
            u = unlearn(original.model, s.forget, s.retain, method="ogd", **common)
            row("ogd-unlearn", u.model, u.seconds, history=_steps(u.history))
            r = relearn(u.model, s.corrected, protect=s.retain, method="ogd", **common)
            row("ogd-unlearn-relearn", r.model, u.seconds + r.seconds, history=_steps(u.history) + _steps(r.history))
            pu = unlearn(original.model, s.forget, s.retain, method="ogd", project=False, **common)
            pr = relearn(pu.model, s.corrected, protect=s.retain, method="ogd", project=False, **common)
            row("unprojected-unlearn-relearn", pr.model, pu.seconds + pr.seconds)
            ft = relearn(original.model, s.corrected, protect=s.retain, method="finetune", **common)
            row("finetune", ft.model, ft.seconds)
            row("retrain", retrain.model, ref)
            if not quick and seed == seed_list[0]:
                for ab in ABLATIONS:
                    label = ", ".join(f"{k}={v}" for k, v in ab.items())
                    log.info("ablation: %s", label)
                    au = unlearn(original.model, s.forget, s.retain, method="ogd", **common, **ab)
                    ar = relearn(au.model, s.corrected, protect=s.retain, method="ogd", **common, **ab)
                    row("ogd-unlearn-relearn", ar.model, au.seconds + ar.seconds, ablation=label)
    rows = summarise(raw, ("scenario", "method", "ablation"), METRICS)
    return {"dataset": name, "seeds": seed_list, "reference_seconds": float(np.mean(references)), "rows": rows,
            "raw": raw, "epochs": epochs, "model": "mlp", "recipe": models.recipe("mlp"),
            "ogd_defaults": {k: getattr(defaults, k) for k in defaults.__dataclass_fields__}}


def _steps(history: list[dict[str, Any]]) -> int:
    return max((int(h.get("step", 0)) for h in history), default=0)
