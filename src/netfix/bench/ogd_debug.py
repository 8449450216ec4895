"""``netfix bench ogd-debug``: the OGD debugging paper's two experiments (docs/methods.md §1.2), measured against
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
%), ``seconds`` (the repair's wall time; for ``ogd-unlearn-relearn`` both phases), ``rte`` (% of retrain's seconds),
``steps`` (optimizer steps taken, both phases; retrain's: epochs × ⌈N / 128⌉), ``steps_pct`` (% of retrain's steps)
and ``memory_grads`` (OGD rows: the retained samples' output gradients in its memories, one memory per phase).

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
from ..training import Outcome, train
from . import WORK_COLUMNS, counted, memory_grads, percent, row_text, show_work, summarise

log = logging.getLogger("netfix.bench")

COLUMNS = ("scenario", "method", "ablation", "test_acc", "fault_rate", "affected_class_acc", "other_classes_acc",
           "mean_confidence", "seconds", "rte", *WORK_COLUMNS, "memory_grads", "n")
METRICS = ("test_acc", "fault_rate", "affected_class_acc", "other_classes_acc", "mean_confidence", "seconds", "rte",
           "steps", "steps_pct", "memory_grads")
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
    for sc in wanted:
        for seed in seed_list:
            s = _scenario(sc, train_set, test_set, seed)
            log.info("%s / %s / seed %d: training the faulty model (%d epochs)", name, sc, seed, epochs)
            model = models.build("mlp", train_set.input_shape, train_set.num_classes, seed=seed)
            original = train(model, s.train, epochs=epochs, seed=seed, device=device, progress=progress,
                             **models.recipe("mlp"))
            raw += _seed_rows(s, original.model, seed, device, progress,
                              ablations=not quick and seed == seed_list[0])
    rows = summarise(raw, ("scenario", "method", "ablation"), METRICS)
    references = [r["seconds"] for r in raw if r["method"] == "retrain"]
    return {"dataset": name, "seeds": seed_list, "reference_seconds": float(np.mean(references)), "rows": rows,
            "raw": raw, "epochs": epochs, "model": "mlp", "recipe": models.recipe("mlp"),
            "ogd_defaults": {k: getattr(defaults, k) for k in defaults.__dataclass_fields__}}


def _seed_rows(s: scenarios.Scenario, original: torch.nn.Module, seed: int, device: torch.device,
               progress: bool | None, ablations: bool) -> list[dict[str, Any]]:
    """One scenario and seed: the original, every repair and the retrain reference, each with its seconds and
    optimizer steps (rte and steps_pct against this retrain); with ``ablations``, the OGD ablation rows too."""
    assert s.corrected is not None
    corrected = s.corrected
    common: dict[str, Any] = {"seed": seed, "device": device, "progress": progress}
    retrain, ref_steps = counted(lambda: relearn(original, corrected, protect=s.retain, method="retrain", **common))
    ref = retrain.seconds
    rows: list[dict[str, Any]] = []

    def row(method: str, model: torch.nn.Module, outcomes: "list[Outcome] | None", steps: int | None = None,
            ablation: str = "") -> None:
        seconds = None if outcomes is None else sum(o.seconds for o in outcomes)
        r = {"scenario": s.name, "method": method, "ablation": ablation, "seed": seed, **_measure(model, s, device),
             "seconds": seconds, "rte": percent(seconds, ref), "reference_seconds": ref, "steps": steps,
             "steps_pct": percent(steps, ref_steps) if outcomes is not None else None}
        if outcomes is not None and all(o.method == "ogd" for o in outcomes):
            r["memory_grads"] = sum(memory_grads(o.history) for o in outcomes)
        rows.append(r)
        log.info("%s", row_text(r))

    row("original", original, None)
    u, u_steps, r, r_steps = _ogd_repair(original, s, common)
    row("ogd-unlearn", u.model, [u], u_steps)
    row("ogd-unlearn-relearn", r.model, [u, r], u_steps + r_steps)
    pu, pu_steps, pr, pr_steps = _ogd_repair(original, s, common, project=False)
    row("unprojected-unlearn-relearn", pr.model, [pu, pr], pu_steps + pr_steps)
    ft, steps = counted(lambda: relearn(original, corrected, protect=s.retain, method="finetune", **common))
    row("finetune", ft.model, [ft], steps)
    row("retrain", retrain.model, [retrain], ref_steps)
    for ab in ABLATIONS if ablations else []:
        label = ", ".join(f"{k}={v}" for k, v in ab.items())
        log.info("ablation: %s", label)
        au, au_steps, ar, ar_steps = _ogd_repair(original, s, common, **ab)
        row("ogd-unlearn-relearn", ar.model, [au, ar], au_steps + ar_steps, ablation=label)
    return rows


def _ogd_repair(original: torch.nn.Module, s: scenarios.Scenario, common: dict[str, Any], **options: Any
                ) -> tuple[Outcome, int, Outcome, int]:
    """OGD's two phases, each with its optimizer steps: unlearn the forget set, then relearn the corrected labels
    (memory recomputed)."""
    corrected = s.corrected
    assert corrected is not None
    u, u_steps = counted(lambda: unlearn(original, s.forget, s.retain, method="ogd", **common, **options))
    r, r_steps = counted(lambda: relearn(u.model, corrected, protect=s.retain, method="ogd", **common, **options))
    return u, u_steps, r, r_steps


def display(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Table cells: the work columns readable (:func:`netfix.bench.show_work`)."""
    return show_work(rows)
