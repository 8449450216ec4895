"""``netfix bench forget-relearn``: forget-and-relearn schedules against an equal-compute long baseline on small,
noisy data (issue 8; docs/methods.md §3).

Data: 2,000 training images of Fashion-MNIST (fallback mnist5k), drawn per seed, with symmetric label noise 0, 0.2
and 0.4 (:func:`netfix.scenarios.label_noise`); the test split is clean. Model: netfix's MLP (784-256-256-10),
trained with :data:`RECIPE`. Every method gets the same number of epochs (:data:`GENERATIONS` ×
:data:`EPOCHS_PER_GENERATION`):

- ``long-baseline``: one run with one cosine schedule over all epochs;
- ``llf``, ``ke``, ``imp``, ``shrink-perturb``, ``targeted``: :class:`~netfix.methods.forget_relearn.ForgetRelearn`
  with that operator (:data:`OPERATORS`), the schedule restarted every generation.

The operators' settings were chosen on a clean validation split of 2,000 other training images (seed 100, never the
test set; ``benchmarks/forget_relearn_select.py``). Rows: ``method``, ``noise``, ``test_acc`` (mean over seeds),
``test_acc_std``, ``delta`` (points over ``long-baseline`` at the same noise), ``seconds``, ``steps`` (optimizer
steps: the same for every method, generations × epochs per generation × ⌈N / 128⌉ — equal compute).

Also in the JSON: ``analysis`` — the disproportionate-forgetting analysis (each operator applied without relearning
at checkpoints of a noise-0.2 run, at its relearning setting and at its :data:`ANALYSIS_OPERATORS` setting; R =
accuracy drop on noisy-label examples ÷ drop on clean ones; ``noisy_to_clean_forgetting`` is the largest R, named in
``best_operator``, and ``best_schedule_ratio`` the R of the best schedule's operator), and ``repair`` — a 40 %-noise
long-baseline model repaired with ``netfix.relearn(method="forget-relearn")`` for one generation, its test accuracy
before and after and its seconds and optimizer steps as shares of the from-scratch run's (``time_share``,
``step_share``); ``controls`` — the same schedule with an identity operator (``restarts-only``: is the gain the
forgetting, or only the restarted learning rate?) and one generation's epochs without the rest (``short-baseline``:
an early-stopped run, which a noisy-label practitioner would also try).
"""

from __future__ import annotations

import logging
from typing import Any

import torch

from .. import data as datasets
from .. import models, scenarios
from ..evaluation import accuracy
from ..methods.forget_relearn import ForgetRelearn, disproportionate_forgetting, operator
from ..methods import relearn
from ..training import train
from . import counted, pick_dataset, show_work, summarise, with_std

log = logging.getLogger("netfix.bench")

COLUMNS = ("method", "noise", "test_acc", "delta", "seconds", "steps")
NOISES = (0.0, 0.2, 0.4)
TRAIN_SIZE = 2000
GENERATIONS = 6
EPOCHS_PER_GENERATION = 15
RECIPE: dict[str, Any] = {"optimizer": "adam", "lr": 2e-3, "lr_schedule": "cosine", "batch_size": 128}  # the MLP's own recipe
# chosen on the validation split (benchmarks/forget_relearn_select.py, docs/forget_relearn_select.jsonl)
OPERATORS = {
    "llf": "llf:start=body.3",
    "ke": "ke:keep=0.5",
    "imp": "imp:keep=0.3",
    "shrink-perturb": "shrink-perturb:shrink=0.2,noise=0.3",
    "targeted": "targeted:fraction=0.1,reinit=0.5",
}
REPAIR_EPOCHS = EPOCHS_PER_GENERATION  # one generation of relearning
RESTARTS_ONLY = "shrink-perturb:shrink=1.0,noise=0.0"  # the identity: the restarted schedule without forgetting
# The analysis applies each operator at the strength with the largest R on seed 100 (training examples only;
# benchmarks/forget_relearn_analysis_select.py, docs/forget_relearn_analysis_select.jsonl). The relearning settings
# above erase most of the network at once, which takes clean and noisy examples down to chance alike (R ≈ 1).
ANALYSIS_OPERATORS = {
    "llf": "llf:start=body.3",
    "ke": "ke:keep=0.8",
    "imp": "imp:keep=0.3",
    "shrink-perturb": "shrink-perturb:shrink=0.5,noise=0.3",
    "targeted": "targeted:fraction=0.1,reinit=0.03",
    "random": "random:keep=0.9,keep_output=1.0",
}
ANALYSIS_NOISE = 0.2
ANALYSIS_EVERY = EPOCHS_PER_GENERATION


def small_split(train_set: datasets.LabeledData, size: int, seed: int, exclude: "torch.Tensor | None" = None
                ) -> torch.Tensor:
    """``size`` training indices drawn with ``seed`` (not in ``exclude``)."""
    g = torch.Generator().manual_seed(seed)
    pool = torch.randperm(len(train_set), generator=g)
    if exclude is not None:
        pool = pool[~torch.isin(pool, exclude)]
    return pool[:size]


def run_schedule(method: str, spec: str | None, data: datasets.LabeledData, seed: int, device: torch.device,
                 progress: bool | None, generations: int = GENERATIONS,
                 epochs_per_generation: int = EPOCHS_PER_GENERATION) -> Any:
    """Train a fresh MLP on ``data``: the long baseline (``spec`` None) or forget-relearn with operator ``spec``."""
    model = models.build("mlp", data.input_shape, data.num_classes, seed=seed)
    if spec is None:
        return train(model, data, epochs=generations * epochs_per_generation, seed=seed, device=device,
                     progress=progress, **RECIPE)
    schedule = ForgetRelearn(operator(spec), generations, epochs_per_generation)
    return train(model, data, schedule=schedule, seed=seed, device=device, progress=progress, **RECIPE)


def run(quick: bool, seeds: int | None, data: str | None, device: torch.device, progress: bool | None
        ) -> dict[str, Any]:
    name = pick_dataset(data, quick)
    train_set, test = datasets.load(name)
    n_seeds = seeds or (1 if quick else 3)
    gens, epg = (3, 5) if quick else (GENERATIONS, EPOCHS_PER_GENERATION)
    size = min(TRAIN_SIZE, len(train_set) // 2)
    raw: list[dict[str, Any]] = []
    keep: dict[tuple[float, int], Any] = {}
    controls: list[dict[str, Any]] = []
    for seed in range(n_seeds):
        small = train_set.subset(small_split(train_set, size, seed), f"{name}/small")
        for noise in NOISES:
            noisy = scenarios.label_noise(small, test, fraction=noise, seed=seed).train if noise else small
            for method, spec in [("long-baseline", None), *OPERATORS.items()]:
                out, steps = counted(lambda: run_schedule(method, spec, noisy, seed, device, progress, gens, epg))
                acc = accuracy(out.model, test)
                raw.append({"method": method, "noise": noise, "seed": seed, "test_acc": acc,
                            "seconds": out.seconds, "steps": steps})
                log.info("seed %d noise %.1f %s: %.2f%% (%.1f s, %d steps)", seed, noise, method, acc, out.seconds,
                         steps)
                if method == "long-baseline" and noise == max(NOISES):
                    keep[(noise, seed)] = (out, noisy, steps)
            # controls: is it the forgetting, or only the restarted schedule / the shorter fit?
            for control, spec, g_, e_ in (("restarts-only", RESTARTS_ONLY, gens, epg),
                                          ("short-baseline", None, 1, epg)):
                out, steps = counted(lambda: run_schedule(control, spec, noisy, seed, device, progress, g_, e_))
                controls.append({"method": control, "noise": noise, "seed": seed,
                                 "test_acc": accuracy(out.model, test), "seconds": out.seconds, "steps": steps})
    rows = summarise(raw, ("method", "noise"), ("test_acc", "seconds", "steps"))
    base = {r["noise"]: r["test_acc"] for r in rows if r["method"] == "long-baseline"}
    for r in rows:
        r["delta"] = r["test_acc"] - base[r["noise"]]
    schedules = [r for r in rows if r["method"] != "long-baseline"]
    best_by_noise = {noise: max((r for r in schedules if r["noise"] == noise), key=lambda r: r["test_acc"])
                     for noise in NOISES}
    noisy_best = max(OPERATORS, key=lambda m: sum(r["test_acc"] for r in schedules
                                                  if r["method"] == m and r["noise"] > 0))
    small = train_set.subset(small_split(train_set, size, 0), f"{name}/small")
    analysis = _analysis(small, test, gens, epg, noisy_best, device, progress)
    repair = _repair(keep, OPERATORS[noisy_best], epg if quick else REPAIR_EPOCHS, test, device, progress)
    return {"dataset": name, "seeds": list(range(n_seeds)), "reference_seconds": None, "rows": rows,
            "train_size": size, "generations": gens, "epochs_per_generation": epg, "recipe": RECIPE,
            "operators": OPERATORS, "best_by_noise": {str(k): v["method"] for k, v in best_by_noise.items()},
            "analysis": analysis, "repair": repair, "raw": raw,
            "controls": summarise(controls, ("method", "noise"), ("test_acc", "seconds", "steps")),
            "controls_raw": controls}


def _analysis(small: datasets.LabeledData, test: datasets.LabeledData, gens: int, epg: int, noisy_best: str,
              device: torch.device, progress: bool | None) -> dict[str, Any]:
    """The disproportionate-forgetting analysis on ``small`` (seed 0) at noise :data:`ANALYSIS_NOISE`: every
    operator at its relearning and at its analysis setting; ``noisy_best`` is the best schedule's operator."""
    s = scenarios.label_noise(small, test, fraction=ANALYSIS_NOISE, seed=0)
    mask = torch.zeros(len(s.train), dtype=torch.bool)
    mask[torch.as_tensor(s.forget_indices)] = True
    by_operator = {}
    for method, spec in {**{m: OPERATORS[m] for m in OPERATORS}, **{f"{m}@analysis": v
                                                                  for m, v in ANALYSIS_OPERATORS.items()}}.items():
        res = disproportionate_forgetting(models.build("mlp", small.input_shape, small.num_classes, seed=0),
                                          s.train, spec, mask, epochs=gens * epg, every=epg, seed=0, device=device,
                                          progress=progress, **RECIPE)
        by_operator[method] = res
        log.info("analysis %s: R = %s", method, res["ratio"])
    best_op = max(by_operator, key=lambda m: by_operator[m]["ratio"] or 0.0)
    return {"noise": ANALYSIS_NOISE, "best_operator": best_op,
            "best_operator_spec": by_operator[best_op]["operator"],
            "noisy_to_clean_forgetting": by_operator[best_op]["ratio"],
            "low_margin_to_clean_forgetting": by_operator[best_op]["low_margin_ratio"],
            "best_schedule": noisy_best,
            "best_schedule_ratio": by_operator[noisy_best]["ratio"],
            "ratio_by_operator": {m: r["ratio"] for m, r in by_operator.items()},
            "low_margin_ratio_by_operator": {m: r["low_margin_ratio"] for m, r in by_operator.items()},
            "operators": {m: r["operator"] for m, r in by_operator.items()},
            "checkpoints": {m: r["checkpoints"] for m, r in by_operator.items()}}


def _repair(keep: dict[tuple[float, int], Any], spec: str, epochs: int, test: datasets.LabeledData,
            device: torch.device, progress: bool | None) -> dict[str, Any]:
    """Repair mode: each kept 40 %-noise long-baseline model given one generation of forget-relearn with operator
    ``spec``; its seconds and steps as shares of the from-scratch run's."""
    repairs = []
    for (noise, seed), (out, noisy, scratch_steps) in sorted(keep.items()):
        fixed, steps = counted(lambda: relearn(out.model, noisy, method="forget-relearn", operator=spec,
                                               generations=1, epochs_per_generation=epochs, seed=seed,
                                               device=device, progress=progress,
                                               **{k: RECIPE[k] for k in ("optimizer", "lr", "batch_size")}))
        repairs.append({"seed": seed, "noise": noise, "before": accuracy(out.model, test),
                        "after": accuracy(fixed.model, test), "seconds": fixed.seconds,
                        "scratch_seconds": out.seconds, "time_share": fixed.seconds / out.seconds,
                        "steps": steps, "scratch_steps": scratch_steps, "step_share": steps / scratch_steps})
    return {"operator": spec, "generations": 1, "epochs": epochs, "runs": repairs,
            **{k: sum(r[k] for r in repairs) / len(repairs) for k in ("before", "after", "time_share", "step_share")}}


def display(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = with_std(rows, ("test_acc",))
    for r, o in zip(rows, out):
        o["noise"] = f"{r['noise']:.1f}"
        o["delta"] = "—" if r["method"] == "long-baseline" else f"{r['delta']:+.2f}" + \
            ("" if r["delta"] > 0 else " (does not help)")
        o["seconds"] = f"{r['seconds']:.1f}"
        if r.get("n", 1) <= 1:
            o["test_acc"] = f"{r['test_acc']:.2f}"
    return show_work(out)
