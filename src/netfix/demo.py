"""The main job on built-in data (``netfix demo`` / ``make demo``): a faulty model, its fault, its repair.

mnist5k with every training 7 labelled 1: an MLP learns the mislabel, the demo measures the fault (how many test
7s come out as 1), repairs it with OGD — unlearn the wrong behaviour, then relearn the right one, every step
projected off the output gradients of retained samples (methods.md §1) — and compares with the gold standard: a
model retrained from scratch on the corrected data, timed in the same run (``rte`` = % of its seconds).
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import torch

from . import data as datasets
from . import models, report, scenarios
from ._runtime import env_info, resolve_device
from .evaluation import evaluate
from .io import atomic_write, save
from .methods import relearn, unlearn
from .training import Outcome, train

log = logging.getLogger("netfix.demo")

COLUMNS = ("method", "test_acc", "fault_rate", "class_acc", "other_classes_acc", "seconds", "rte")


def run(quick: bool = False, out: "str | Path" = "runs/demo", seed: int = 0,
        device: "torch.device | str | None" = None, progress: bool | None = None) -> dict[str, Any]:
    """Run the demo; write models, ``metrics.json`` and ``report.html`` under ``out``; return ``{"rows": [...],
    ..., "report": path}``."""
    dev = resolve_device(device)
    out = Path(out)
    epochs = 8 if quick else 30
    train_set, test_set = datasets.load("mnist5k")
    s = scenarios.mislabel(train_set, test_set, source=7, target=1, fraction=1.0, seed=seed)
    log.info("scenario: every training 7 (%d images) labelled 1; %d test 7s measure the fault",
             len(s.forget), len(s.fault_test or []))
    model = models.build("mlp", train_set.input_shape, train_set.num_classes, seed=seed)

    log.info("training the faulty model (%d epochs)", epochs)
    original = train(model, s.train, epochs=epochs, seed=seed, device=dev, progress=progress,
                     **models.recipe("mlp"))
    assert s.corrected is not None  # mislabel always sets it
    log.info("repairing with ogd: unlearn the 7s-as-1s, then relearn the 7s, projected off retained behaviour")
    forgot = unlearn(original.model, s.forget, s.retain, method="ogd", seed=seed, device=dev, progress=progress)
    fixed = relearn(forgot.model, s.corrected, protect=s.retain, method="ogd", seed=seed, device=dev,
                    progress=progress)
    repaired = Outcome(model=fixed.model, method="ogd", seconds=forgot.seconds + fixed.seconds,
                       config={"unlearn": forgot.config, "relearn": fixed.config,
                               "data_fingerprint": fixed.config.get("data_fingerprint")},
                       history=forgot.history + fixed.history)
    log.info("the reference: retrain from scratch on the corrected data")
    reference = relearn(original.model, s.corrected, protect=s.retain, method="retrain", seed=seed, device=dev,
                        progress=progress)

    rows = []
    for name, outcome in (("original", original), ("ogd (unlearn + relearn)", repaired), ("retrain", reference)):
        m = evaluate(outcome.model, test=s.test, fault_test=s.fault_test, fault_label=s.fault_label, device=dev)
        others = [v for c, v in m["per_class_acc"].items() if c != 7]
        row = {"method": name, "test_acc": m["test_acc"], "fault_rate": m["fault_rate"],
               "class_acc": m["fault_acc"], "other_classes_acc": sum(others) / len(others),
               "seconds": outcome.seconds,
               "rte": None if name == "original" else 100.0 * outcome.seconds / reference.seconds}
        rows.append(row)
        fingerprint = outcome.config.get("data_fingerprint")
        save(outcome.model, out / name.split(" ")[0], {"data_fingerprint": fingerprint, "scenario": s.describe(),
                                         "method": outcome.method, "config": outcome.config})
    sets = {"forget": s.forget, "retain": s.retain, "test": s.test, "fault_test": s.fault_test}
    panel = report.panel({"original": original.model, "ogd": repaired.model, "retrain": reference.model}, sets,
                         train_set.num_classes)
    result = {"bench": "demo", "dataset": "mnist5k", "quick": quick, "scenario": s.describe(),
              "affected_class": 7, "rows": rows, "columns": list(COLUMNS), "run_dir": str(out),
              "title": "demo: a faulty model, its fault, its repair",
              "headline": "Fault: every training 7 of mnist5k taught as 1 (MLP). Repair: OGD unlearn + relearn. "
                          "Reference: retrained from scratch on the corrected data. class_acc = accuracy on test "
                          "7s; fault_rate = % of test 7s predicted 1; rte = % of retrain's seconds.",
              "report": panel, "env": env_info(dev),
              "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    atomic_write(out / "metrics.json", json.dumps(result, indent=2).encode())
    result["report"] = str(report.write(result, out / "report.html"))  # the path; metrics.json keeps the data
    return result
