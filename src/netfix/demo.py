"""The main job on built-in data (``netfix demo`` / ``make demo``): a faulty model, its fault, its repair.

mnist5k with every training 7 labelled 1: a small convolutional network (LeNet, trained with its own recipe,
``netfix.models.recipe("lenet")``, for :data:`EPOCHS` epochs) learns the mislabel; the demo measures the fault (how
many test 7s come out as 1), repairs it with OGD — unlearn the wrong behaviour, then relearn the right one, every
step projected off the output gradients of retained samples (docs/methods.md §1) — and compares with the gold standard:
the same network retrained from scratch on the corrected data with the same recipe, timed in the same run.

Why a convolutional network: a repair pays off when retraining is the expensive part. OGD's cost is mostly fixed
(building its memory of retained output gradients, checking its stopping rule after each step) and its steps are
few; an MLP on these 4,000 images retrains in a few seconds, so those fixed costs decide and the repair can be the
slower one. LeNet's retrain takes thousands of optimizer steps (2,500 at 20 epochs) that each cost more, as on a
real job; the repair takes under a hundred.

Each row reports the work beside the seconds: ``steps`` (optimizer steps, :func:`netfix.bench.count_steps`; a
from-scratch training takes epochs × ⌈N / batch⌉), ``steps_pct`` (% of retrain's steps), ``memory_grads`` (the
output gradients in OGD's memories, its other work) and ``rte`` (% of retrain's seconds).
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
from .bench import counted, memory_grads, percent
from .evaluation import evaluate
from .io import atomic_write, save
from .methods import relearn, unlearn
from .training import Outcome, train

log = logging.getLogger("netfix.demo")

COLUMNS = ("method", "test_acc", "fault_rate", "class_acc", "other_classes_acc", "seconds", "rte", "steps",
           "steps_pct", "memory_grads")
ARCH = "lenet"
# Passes of the original training and of the retrain reference: what `netfix bench unlearn` trains LeNet for on
# mnist5k (20, set there so that the model fits its training set, as a finished job would); --quick, half of it.
# Fewer make the retrain as cheap as OGD's fixed costs (about 4-5 s here on one core), which is the MLP demo's
# trap again: at 6 epochs the repair measured 89 % of retraining's time.
EPOCHS = {"full": 20, "quick": 10}
SOURCE, TARGET = 7, 1  # every training SOURCE labelled TARGET


def run(quick: bool = False, out: "str | Path" = "runs/demo", seed: int = 0,
        device: "torch.device | str | None" = None, progress: bool | None = None) -> dict[str, Any]:
    """Run the demo; write models, ``metrics.json`` and ``report.html`` under ``out``; return ``{"rows": [...],
    ..., "report": path}``."""
    dev = resolve_device(device)
    out = Path(out)
    epochs = EPOCHS["quick" if quick else "full"]
    train_set, test_set = datasets.load("mnist5k")
    s = scenarios.mislabel(train_set, test_set, source=SOURCE, target=TARGET, fraction=1.0, seed=seed)
    log.info("scenario: every training 7 (%d images) labelled 1; %d test 7s measure the fault",
             len(s.forget), len(s.fault_test or []))
    outcomes = _outcomes(s, epochs, seed, dev, progress)
    reference, ref_steps = outcomes["retrain"]
    rows = []
    for name, (outcome, steps) in outcomes.items():
        rows.append(_row(name, outcome, steps, s, dev, reference.seconds, ref_steps))
        save(outcome.model, out / name.split(" ")[0],
             {"data_fingerprint": outcome.config.get("data_fingerprint"), "scenario": s.describe(),
              "method": outcome.method, "config": outcome.config})
    sets = {"forget": s.forget, "retain": s.retain, "test": s.test, "fault_test": s.fault_test}
    panel = report.panel({name.split(" ")[0]: o.model for name, (o, _) in outcomes.items()}, sets,
                         train_set.num_classes)
    result = {"bench": "demo", "dataset": "mnist5k", "quick": quick, "scenario": s.describe(),
              "model": ARCH, "epochs": epochs, "recipe": models.recipe(ARCH),
              "affected_class": SOURCE, "rows": rows, "columns": list(COLUMNS), "run_dir": str(out),
              "title": "demo: a faulty model, its fault, its repair", "headline": headline(rows, epochs),
              "tradeoff": tradeoff(rows),
              "report": panel, "env": env_info(dev),
              "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    atomic_write(out / "metrics.json", json.dumps(result, indent=2).encode())
    result["report"] = str(report.write(result, out / "report.html"))  # the path; metrics.json keeps the data
    return result


def _outcomes(s: scenarios.Scenario, epochs: int, seed: int, dev: torch.device, progress: bool | None
              ) -> dict[str, tuple[Outcome, int]]:
    """The faulty original, its OGD repair (unlearn + relearn, one Outcome) and the retrain reference, each with
    the optimizer steps it took."""
    corrected = s.corrected
    assert corrected is not None  # mislabel always sets it
    model = models.build(ARCH, s.train.input_shape, s.train.num_classes, seed=seed)
    common: dict[str, Any] = {"seed": seed, "device": dev, "progress": progress}
    log.info("training the faulty model (%s, %d epochs)", ARCH, epochs)
    original, original_steps = counted(lambda: train(model, s.train, epochs=epochs, **common,
                                                     **models.recipe(ARCH)))
    log.info("repairing with ogd: unlearn the 7s-as-1s, then relearn the 7s, projected off retained behaviour")
    forgot, forgot_steps = counted(lambda: unlearn(original.model, s.forget, s.retain, method="ogd", **common))
    fixed, fixed_steps = counted(lambda: relearn(forgot.model, corrected, protect=s.retain, method="ogd",
                                                 **common))
    repaired = Outcome(model=fixed.model, method="ogd", seconds=forgot.seconds + fixed.seconds,
                       config={"unlearn": forgot.config, "relearn": fixed.config,
                               "data_fingerprint": fixed.config.get("data_fingerprint")},
                       history=forgot.history + fixed.history)
    log.info("the reference: retrain from scratch on the corrected data (%d epochs)", epochs)
    reference, reference_steps = counted(lambda: relearn(original.model, corrected, protect=s.retain,
                                                         method="retrain", **common))
    return {"original": (original, original_steps), "ogd (unlearn + relearn)": (repaired, forgot_steps + fixed_steps),
            "retrain": (reference, reference_steps)}


def _row(name: str, outcome: Outcome, steps: int, s: scenarios.Scenario, dev: torch.device, ref_seconds: float,
         ref_steps: int) -> dict[str, Any]:
    """One table row: the fault and accuracy measures, then seconds and work (rte, steps_pct: % of retrain's;
    none for the original, which is not a repair)."""
    m = evaluate(outcome.model, test=s.test, fault_test=s.fault_test, fault_label=s.fault_label, device=dev)
    others = [v for c, v in m["per_class_acc"].items() if c != SOURCE]
    repair = name != "original"
    return {"method": name, "test_acc": m["test_acc"], "fault_rate": m["fault_rate"], "class_acc": m["fault_acc"],
            "other_classes_acc": sum(others) / len(others), "seconds": outcome.seconds,
            "rte": percent(outcome.seconds, ref_seconds) if repair else None, "steps": steps,
            "steps_pct": percent(steps, ref_steps) if repair else None,
            "memory_grads": memory_grads(outcome.history) if outcome.method == "ogd" else None}


def tradeoff(rows: list[dict[str, Any]]) -> str:
    """The trade-off as measured, in one line: the repair's seconds and optimizer steps against retraining's, and
    what its time goes to."""
    by = {r["method"]: r for r in rows}
    ogd, ref = by["ogd (unlearn + relearn)"], by["retrain"]
    took = (f"the repair took {ogd['rte']:.0f} % of retraining's time" if ogd["rte"] < 100 else
            f"the repair was slower than retraining here ({ogd['rte']:.0f} % of its time)")
    return (f"Trade-off: {took} for {ogd['steps_pct']:.0f} % of its optimizer steps ({ogd['steps']:,} vs "
            f"{ref['steps']:,}); OGD's few steps each check its stopping rule on the forget set, and it builds a "
            f"memory of {ogd['memory_grads']:,} retained output gradients: fixed costs, which decide when retraining "
            "is cheap (an MLP on these 4,000 images retrains in seconds).")


def headline(rows: list[dict[str, Any]], epochs: int) -> str:
    """The run in words: the setting, the trade-off as measured (:func:`tradeoff`) and what the columns mean."""
    return (f"Fault: every training 7 of mnist5k taught as 1 ({ARCH}, {epochs} epochs with its recipe). Repair: OGD "
            "unlearn + relearn. Reference: the same network retrained from scratch on the corrected data.\n"
            f"{tradeoff(rows)}\nclass_acc = accuracy on test 7s; fault_rate = % of test 7s predicted 1; rte = % of "
            "retrain's seconds; steps_pct = % of retrain's optimizer steps.")
