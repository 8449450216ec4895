"""``netfix bench unlearn``: every registered unlearning method against retraining, measured the same way in the
same run (docs/methods.md §5–6).

Data: Fashion-MNIST when installed, else mnist5k (``--data`` picks). A stratified tenth of the training split is
held out as a **validation** set: the models never train on it, the test set is never used for a decision, and
the original model's accuracy on it is what ``ogd`` is told to unlearn random samples down to (a user knows their
model's held-out accuracy; a random sample the model never saw would be classified about that well); for a class
it is told 0 % (a forgotten class is never predicted). The methods that read held-out data (``unseen``,
``reference-guided``) get it as ``heldout=``. On
Fashion-MNIST the models train on a stratified 10,000-image subset of the rest so that they memorise it (≥ 99 %
train accuracy: membership signals are real) in minutes on a CPU.

Scenarios: ``random_forget`` (10 % of the training set) and ``class_forget`` (class 0). Models: the MLP and LeNet
(``--archs``), each trained with its default recipe for the epochs in :data:`EPOCHS`; the ``original`` row records
its train accuracy. Rows (mean and ``*_std`` over seeds): ``method``, ``scenario``, ``model``, ``UA`` (100 − forget
accuracy), ``RA`` (retain accuracy), ``TA`` (test accuracy), ``MIA`` (MIA-efficacy, SVC on true-class confidence),
``mia_loss_acc`` (loss-threshold attack accuracy, 50 = ideal), ``seconds``, ``rte`` (% of retrain's seconds, same
seed, same run), ``steps`` (optimizer steps taken, a guard's retries included; retrain's: epochs × ⌈N / batch⌉ of
the model's recipe), ``steps_pct`` (% of retrain's steps), ``gap`` (mean |difference| to that seed's retrain over
UA, RA, TA, MIA; retrain's is 0 by construction). A method that fails gets a row with its ``error`` instead of
stopping the run.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np
import torch

from .. import data as datasets
from .. import models, scenarios
from ..errors import ConfigError, unknown
from ..evaluation import accuracy as _accuracy
from ..evaluation import evaluate
from ..methods import available as available_methods
from ..methods import get as get_method
from ..methods import unlearn
from ..methods.mixed_linear import train_mixed_linear
from ..training import train
from . import WORK_COLUMNS, counted, pareto, percent, pick_dataset, show_work, summarise, with_std

log = logging.getLogger("netfix.bench")

COLUMNS = ("scenario", "model", "method", "UA", "RA", "TA", "MIA", "mia_loss_acc", "gap", "seconds", "rte",
           *WORK_COLUMNS, "n")
METRICS = ("UA", "RA", "TA", "MIA", "mia_loss_acc", "gap", "seconds", "rte", "rte_network", "steps", "steps_pct")
EPOCHS = {("mlp", "fashion-mnist"): 60, ("lenet", "fashion-mnist"): 30, ("mlp", "mnist5k"): 30,
          ("lenet", "mnist5k"): 20, ("mlp", "digits"): 30, ("lenet", "digits"): 20}
QUICK_METHODS = ("finetune", "neggrad", "random-label", "ogd", "ssd", "unseen")
SUBSET = {"fashion-mnist": 10_000, "mnist": 10_000}
MIA_SAMPLES = 2000  # each side of the SVC attack (its cost is quadratic)
# What a mixed-linear model linearises: the last hidden layer and the classifier.
MIXED_LINEARIZE = {"mlp": ["body.3", "fc"], "lenet": ["head.2", "fc"], "resnet": ["layer3", "fc"]}


def _stratified(y: torch.Tensor, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` indices with the class proportions of ``y``."""
    labels = y.numpy()
    out = []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        out.append(rng.choice(idx, size=int(round(n * len(idx) / len(labels))), replace=False))
    return np.sort(np.concatenate(out))


def _split(name: str, seed: int) -> tuple[datasets.LabeledData, datasets.LabeledData, datasets.LabeledData]:
    """(train, validation, test): a stratified tenth of the training split held out, then the subset."""
    full, test = datasets.load(name)
    rng = np.random.default_rng(seed)
    val_idx = _stratified(full.y, len(full) // 10, rng)
    rest = np.setdiff1d(np.arange(len(full)), val_idx)
    if name in SUBSET and len(rest) > SUBSET[name]:
        rest = rest[_stratified(full.y[torch.as_tensor(rest)], SUBSET[name], rng)]
    return full.subset(rest, f"{name}/train"), full.subset(val_idx, f"{name}/val"), test



def run(quick: bool, seeds: int | None, data: str | None, device: torch.device, progress: bool | None,
        methods: str | None = None, archs: str | None = None, scenario: str | None = None) -> dict[str, Any]:
    name = pick_dataset(data, quick)
    wanted = [m.strip() for m in methods.split(",")] if methods else \
        [m for m in (QUICK_METHODS if quick else available_methods()) if m in available_methods()]
    for m in wanted:
        if m not in available_methods():
            raise unknown("method", m, available_methods(), "--methods")
    wanted = ["retrain"] + [m for m in wanted if m != "retrain"]
    arch_list = [a.strip() for a in archs.split(",")] if archs else (["mlp"] if quick else ["mlp", "lenet"])
    for a in arch_list:
        if a not in ("mlp", "lenet", "resnet"):
            raise unknown("model", a, ["mlp", "lenet", "resnet"], "--archs")
    scenario_list = [scenario] if scenario else ["random_forget", "class_forget"]
    for sc in scenario_list:
        if sc not in ("random_forget", "class_forget"):
            raise ConfigError(f"--scenario: bench unlearn runs random_forget or class_forget; got {sc!r}.")
    seed_list = list(range(seeds if seeds else (1 if quick else 3)))
    train_set, val_set, test_set = _split(name, 0)
    raw: list[dict[str, Any]] = []
    references: list[float] = []
    for arch in arch_list:
        epochs = EPOCHS.get((arch, name), 20) if not quick else max(5, EPOCHS.get((arch, name), 20) // 3)
        for seed in seed_list:
            model = models.build(arch, train_set.input_shape, train_set.num_classes, seed=seed)
            log.info("%s / %s / seed %d: training the original (%d epochs)", name, arch, seed, epochs)
            original = train(model, train_set, epochs=epochs, seed=seed, device=device, progress=progress,
                             **models.recipe(arch))
            train_acc = _accuracy(original.model, train_set)
            val_acc = _accuracy(original.model, val_set)
            if train_acc < 99.0:
                log.warning("%s: train accuracy %.2f %% < 99 %%: membership signals will be weak", arch, train_acc)
            for sc in scenario_list:
                s = (scenarios.random_forget(train_set, test_set, fraction=0.1, seed=seed) if sc == "random_forget"
                     else scenarios.class_forget(train_set, test_set, cls=0))
                outcomes = _unlearn_all(wanted, original.model, s, val_acc, val_set, seed, device, progress)
                ref, ref_steps = outcomes["retrain"]
                if isinstance(ref, Exception):
                    raise ref
                references.append(ref.seconds)

                def measure(m: torch.nn.Module) -> dict[str, float]:
                    e = evaluate(m, scenario=s, reference=ref.model, seed=seed, device=device,
                                 mia_samples=MIA_SAMPLES)
                    return {"UA": e["ua"], "RA": e["retain_acc"], "TA": e["test_acc"], "MIA": e["mia_efficacy"],
                            "mia_loss_acc": e["mia_loss_acc"], "gap": e["gap"]}

                base = {"scenario": sc, "model": arch, "seed": seed}
                raw.append({**base, "method": "original", **measure(original.model), "seconds": None, "rte": None,
                            "train_acc": train_acc, "val_acc": val_acc})
                if "mixed-linear" in wanted:
                    raw.extend(_mixed_linear(arch, epochs, s, seed, device, progress, base, ref.seconds))
                for method in wanted:
                    if method == "mixed-linear":
                        continue
                    out, steps = outcomes[method]
                    if isinstance(out, Exception):
                        raw.append({**base, "method": method, "error": f"{type(out).__name__}: {out}"})
                        continue
                    raw.append({**base, "method": method, **measure(out.model), "seconds": out.seconds,
                                "rte": 100.0 * out.seconds / ref.seconds, "steps": steps,
                                "steps_pct": percent(steps, ref_steps), "options": out.config})
                log.info("%s", [(r["method"], round(r.get("gap") or 0, 2)) for r in raw[-len(wanted) - 1:]])
    rows = summarise(raw, ("scenario", "model", "method"), METRICS)
    for r in rows:  # say plainly where a method failed
        errors = [x["error"] for x in raw if x.get("error") and (x["scenario"], x["model"], x["method"]) ==
                  (r["scenario"], r["model"], r["method"])]
        if errors:
            r["error"] = errors[0]
    return {"dataset": name, "seeds": seed_list, "reference_seconds": float(np.mean(references)), "rows": rows,
            "fronts": pareto.summary(rows),
            "raw": raw, "methods": wanted, "models": arch_list, "train_size": len(train_set),
            "validation_size": len(val_set), "mia_samples": MIA_SAMPLES,
            "epochs": {a: EPOCHS.get((a, name), 20) if not quick else max(5, EPOCHS.get((a, name), 20) // 3)
                       for a in arch_list}}


def _unlearn_all(wanted: list[str], original: torch.nn.Module, s: scenarios.Scenario, val_acc: float,
                 val_set: datasets.LabeledData, seed: int, device: torch.device, progress: bool | None
                 ) -> dict[str, tuple[Any, int]]:
    """Every wanted method (``mixed-linear`` aside: see :func:`_mixed_linear`) on the request ``s``: method ->
    (its Outcome, or the exception it raised; the optimizer steps it took)."""
    outcomes: dict[str, tuple[Any, int]] = {}
    for method in wanted:
        if method == "mixed-linear":  # its own model and reference: see _mixed_linear
            continue
        options: dict[str, Any] = dict(get_method(method).bench)  # its defaults, but what it registered for benches
        if method == "ogd":  # what "forgotten" means is the request's, not the method's:
            # random samples -> classified like unseen ones; a class -> never predicted
            options["stop_acc"] = val_acc if s.name == "random_forget" else 0.0
        if get_method(method).heldout:  # the validation split: never trained on, never the test set
            options["heldout"] = val_set
        start = time.perf_counter()
        try:
            outcomes[method] = counted(lambda: unlearn(original, s.forget, s.retain, method=method, seed=seed,
                                                       device=device, progress=progress, **options))
        except Exception as e:  # one failing method must not sink the others' measurements
            log.warning("%s failed: %s: %s", method, type(e).__name__, e)
            outcomes[method] = (e, 0)
        log.info("%s: %.2f s, %d steps", method, time.perf_counter() - start, outcomes[method][1])
    return outcomes


def _mixed_linear(arch: str, epochs: int, s: scenarios.Scenario, seed: int, device: torch.device,
                  progress: bool | None, base: dict[str, Any], retrain_seconds: float) -> list[dict[str, Any]]:
    """The ``mixed-linear`` rows: a model *trained that way* on the same data — its core on a stratified 10 % of
    the retained samples (a deletion request never targets core data), its user weights on the rest of the
    training set — forgotten with ``netfix.unlearn(method="mixed-linear")``. Its reference is not the full
    retrain but ``retrain-linear``: the same core with the user weights retrained to the optimum on the remaining
    user data (gap and rte are against it, row ``mixed-linear (ref)``); ``rte_network`` is the same seconds as a %
    of the ordinary network's ``retrain`` in this run."""
    run = train_mixed_linear(arch, s.retain, linearize=MIXED_LINEARIZE[arch], core_fraction=0.1, core_epochs=epochs,
                             user_only=s.forget, seed=seed, device=device, progress=progress)
    fresh, trained = run.fresh, run.model
    user_keep = s.retain.subset(run.user_indices, "user-remaining")
    out, out_steps = counted(lambda: unlearn(trained, s.forget, user_keep, method="mixed-linear", seed=seed,
                                             device=device, progress=progress))
    ref, ref_steps = counted(lambda: fresh.fit_user(user_keep, seed=seed, progress=progress))
    rows = []
    for method, model, seconds, steps in (("mixed-linear (original)", trained, None, None),
                                          ("mixed-linear", out.model, out.seconds, out_steps),
                                          ("mixed-linear (ref)", ref.model, ref.seconds, ref_steps)):
        e = evaluate(model, scenario=s, reference=ref.model, seed=seed, device=device, mia_samples=MIA_SAMPLES)
        rows.append({**base, "method": method, "UA": e["ua"], "RA": e["retain_acc"], "TA": e["test_acc"],
                     "MIA": e["mia_efficacy"], "mia_loss_acc": e["mia_loss_acc"], "gap": e["gap"],
                     "seconds": seconds, "rte": 100.0 * seconds / ref.seconds if seconds is not None else None,
                     "rte_network": 100.0 * seconds / retrain_seconds if seconds is not None else None,
                     "steps": steps, "steps_pct": percent(steps, ref_steps) if steps is not None else None,
                     "reference": "retrain-linear"})
    return rows


def display(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Table cells: mean ± std over seeds; the work columns readable."""
    return show_work(with_std(rows, ("UA", "RA", "TA", "MIA", "mia_loss_acc", "gap", "rte"), digits=2))
