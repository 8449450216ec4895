"""``netfix bench forget-score``: the NeurIPS 2023 unlearning challenge's forgetting score (docs/methods.md §6) of every
unlearning method, each run N times against N models retrained from scratch.

Setup: ``--data`` (mnist5k by default); a stratified tenth of its training split held out as a validation set
(never trained on: the ``heldout=`` of the methods that read one, and the held-out accuracy ``ogd`` unlearns a
random request down to, as in ``netfix bench unlearn``); a ``random_forget`` request for 10 % of the rest (seed 0),
and one
original MLP (784-128-10 on mnist5k) trained with its default recipe for :data:`EPOCHS` epochs so that it memorises
its training set (≥ 99 % train accuracy; the run records ``train_acc`` and warns below that). From that one original:

- N reference models: ``retrain`` with seeds 0..N−1 (fresh initialisation and data order per seed);
- per method, N unlearned models with seeds 0..N−1 and the method's default options;
- the ``retrain`` row: N more retrained models (seeds N..2N−1) scored against the reference set: what a perfect
  unlearner scores with N models, the ceiling to read the other rows against (each example's ε is a maximum over
  thousands of thresholds, so sampling noise alone gives ε > 0 and F well below 1).

Columns: ``method``; ``F`` (mean points over the forget set, 1 = indistinguishable); ``final`` (F × RA_U/RA_R ×
TA_U/TA_R); ``RA``, ``TA``, ``UA`` (retain accuracy, test accuracy, 100 − forget accuracy; % averaged over the N
unlearned models); ``separable`` (% of forget examples at ε = 50: perfectly separable, or the range rule fired);
``seconds`` (mean per model); ``rte`` (% of the mean reference retrain's seconds, same run); ``steps`` (optimizer
steps, mean per model; a retrain's: epochs × ⌈N / batch⌉); ``steps_pct`` (% of the mean reference retrain's steps);
``n`` (N). Defaults:
N = 16 and every registered unlearning method; ``--quick``: N = 4 and :data:`QUICK_METHODS`. A method whose output
does not depend on the seed would give N identical models, so every example would hit the range rule and F = 0: the
score asks for unlearning as random as retraining (and a method far less random than retraining, such as a few
epochs of fine-tuning from one original, scores low for the same reason). A method that fails gets a row with its
``error``.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch

from .. import data as datasets
from .. import scenarios
from ..errors import ConfigError, unknown
from ..evaluation import accuracy as _accuracy
from ..evaluation import forget_score
from ..methods import available as available_methods
from ..methods import get as get_method
from ..methods import unlearn
from ..models import build, recipe
from ..training import Outcome, train
from . import WORK_COLUMNS, counted, percent, show_work

log = logging.getLogger("netfix.bench")

COLUMNS = ("method", "F", "final", "RA", "TA", "UA", "separable", "seconds", "rte", *WORK_COLUMNS, "n", "error")
EPOCHS = {"mnist5k": 40, "digits": 80, "fashion-mnist": 40, "mnist": 40}  # enough to memorise (≥ 99 % train acc)
HIDDEN = (128,)
FRACTION = 0.1                       # share of the training set to forget
VALIDATION = 0.1                     # share of the training split held out (stratified): never trained on
MODELS, QUICK_MODELS = 16, 4         # N per method
QUICK_METHODS = ("retrain", "finetune", "neggrad", "neggrad+", "random-label")


def _method_list(methods: "str | list[str] | None", quick: bool) -> list[str]:
    """The methods to score, ``retrain`` (the ceiling row) first; unknown names are refused before any work."""
    registered = available_methods()
    if methods is None:
        pool = QUICK_METHODS if quick else ["retrain"] + registered
        wanted = [m for m in pool if m in registered]
    else:
        wanted = [m.strip() for m in (methods.split(",") if isinstance(methods, str) else methods) if m.strip()]
        if not wanted:
            raise ConfigError("--methods: no method named; expected comma-separated names, e.g. finetune,neggrad.")
    for m in wanted:
        if m not in registered:
            raise unknown("method", m, registered, "--methods")
        if "unlearn" not in get_method(m).modes:
            raise ConfigError(f"--methods: {m!r} cannot unlearn; the forget score measures unlearning methods.")
    ordered = sorted(dict.fromkeys(wanted), key=lambda m: m != "retrain")  # stable: retrain first, rest as given
    return ordered



def run(quick: bool, seeds: int | None, data: str | None, device: torch.device, progress: bool | None,
        methods: "str | list[str] | None" = None, models: int | None = None) -> dict[str, Any]:
    if seeds is not None:
        raise ConfigError("--seeds: forget-score trains N models per method with seeds 0..N-1; set N with --models.")
    n = models if models is not None else (QUICK_MODELS if quick else MODELS)
    if not isinstance(n, int) or isinstance(n, bool) or n < 3:
        raise ConfigError(f"--models: expected an int >= 3 (models per method); got {n!r}.")
    wanted = _method_list(methods, quick)
    name = data or "mnist5k"
    full, test_set = datasets.load(name)
    rng = np.random.default_rng(0)
    val_idx = np.sort(np.concatenate([rng.choice(np.flatnonzero(full.y.numpy() == c),
                                                 int(round(VALIDATION * int((full.y == c).sum()))), replace=False)
                                      for c in np.unique(full.y.numpy())]))
    val_set = full.subset(val_idx, f"{name}/val")
    train_set = full.subset(np.setdiff1d(np.arange(len(full)), val_idx), f"{name}/train")
    s = scenarios.random_forget(train_set, test_set, fraction=FRACTION, seed=0)
    epochs = EPOCHS.get(name, 40)
    log.info("%s: training the original MLP %s (%d epochs)", name, HIDDEN, epochs)
    net = build("mlp", train_set.input_shape, train_set.num_classes, hidden=HIDDEN, seed=0)
    original = train(net, s.train, epochs=epochs, seed=0, device=device, progress=progress, **recipe("mlp"))
    train_acc, test_acc = _accuracy(original.model, s.train), _accuracy(original.model, s.test)
    val_acc = _accuracy(original.model, val_set)
    if train_acc < 99.0:
        log.warning("original: train accuracy %.2f %% < 99 %%: the forget set is barely memorised", train_acc)

    def make(method: str, seed_list: range) -> list[tuple[Outcome, int]]:
        """N models of ``method``, each with the optimizer steps it took."""
        out = []
        options: dict[str, Any] = {}
        if method == "ogd":  # a random-forget request: unlearn to the held-out accuracy, as bench unlearn does
            options["stop_acc"] = val_acc
        if get_method(method).heldout:
            options["heldout"] = val_set
        for i in seed_list:
            out.append(counted(lambda: unlearn(original.model, s.forget, s.retain, method=method, seed=i,
                                               device=device, progress=progress, **options)))
            log.info("%s seed %d: %.2f s, %d steps", method, i, out[-1][0].seconds, out[-1][1])
        return out

    log.info("training %d reference models (retrain, seeds 0..%d)", n, n - 1)
    reference = make("retrain", range(n))
    ref_models = [o.model for o, _ in reference]
    ref_seconds = float(np.mean([o.seconds for o, _ in reference]))
    ref_steps = float(np.mean([steps for _, steps in reference]))
    rows: list[dict[str, Any]] = []
    epsilons: dict[str, list[float]] = {}
    reference_acc: dict[str, float] = {}  # the reference models' mean accuracies (from any score)
    for method in wanted:
        seed_list = range(n, 2 * n) if method == "retrain" else range(n)
        try:
            outcomes = make(method, seed_list)
            score = forget_score([o.model for o, _ in outcomes], ref_models, s.forget, s.retain, s.test, device=device)
        except Exception as e:  # one failing method must not sink the others' measurements
            log.warning("%s failed: %s: %s", method, type(e).__name__, e)
            rows.append({"method": method, "n": n, "error": f"{type(e).__name__}: {e}"})
            continue
        eps = np.asarray(score["epsilons"])
        seconds = float(np.mean([o.seconds for o, _ in outcomes]))
        steps = float(np.mean([st for _, st in outcomes]))
        rows.append({"method": method, "F": score["F"], "final": score["final"], "RA": score["retain_acc"],
                     "TA": score["test_acc"], "UA": 100.0 - score["forget_acc"],
                     "separable": float(100.0 * np.mean(eps >= 50.0)), "eps_median": float(np.median(eps)),
                     "seconds": seconds, "rte": 100.0 * seconds / ref_seconds, "steps": steps,
                     "steps_pct": percent(steps, ref_steps), "n": n,
                     "seeds": list(seed_list), "retain_ratio": score["retain_ratio"],
                     "test_ratio": score["test_ratio"]})
        epsilons[method] = [round(float(v), 4) for v in eps]
        reference_acc = {"RA": score["retain_acc_retrained"], "TA": score["test_acc_retrained"],
                         "UA": 100.0 - score["forget_acc_retrained"]}
        log.info("%s: F %.3f, final %.3f", method, score["F"], score["final"])
    return {"dataset": name, "seeds": list(range(n)), "reference_seconds": ref_seconds, "reference_steps": ref_steps,
            "rows": rows,
            "models": n, "methods": wanted, "scenario": s.describe(), "model": {"arch": "mlp", "hidden": list(HIDDEN)},
            "epochs": epochs, "recipe": recipe("mlp"), "train_acc": train_acc, "val_acc": val_acc,
            "validation_size": len(val_set),
            "original_test_acc": test_acc, "reference": reference_acc, "epsilons": epsilons}


def display(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Table cells: the work columns readable (:func:`netfix.bench.show_work`)."""
    return show_work(rows)
