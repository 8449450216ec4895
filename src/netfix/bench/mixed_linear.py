"""``netfix bench mixed-linear``: mixed-privacy forgetting against retraining the linear part (issue 7).

Data: Fashion-MNIST when installed, else mnist5k (``--data`` picks). A fixed, stratified 10 % of the training split
is the **core** (never forgotten), the rest is **user** data. The core MLP trains on the core set with its default
recipe; then:

- ``finetune-train``: the same architecture trained the ordinary way on core + user (the core model fine-tuned on
  everything with the MLP recipe, :data:`FINETUNE_EPOCHS` epochs);
- ``mixed-linear-train``: :class:`~netfix.methods.mixed_linear.MixedLinear` around the core, linearising
  :data:`LINEARIZE`, its conjugate-gradient solves preconditioned with the top :data:`RANK` eigenpairs of the
  Gauss–Newton matrix over the *core* data (no user information; built once, its seconds reported apart), its user
  weights trained on the user data (docs/methods.md §4 recipe, then a Newton step to the optimum)
  (:func:`~netfix.methods.mixed_linear.train_mixed_linear` trains the core and the user weights);
- per request (``1%`` and ``10%`` of the user data, drawn with the seed; ``class``: every user sample of class 0):
  ``mixed-linear-forget`` (one Newton step on the remaining user data, CG, library defaults),
  ``retrain-linear`` (the user weights retrained from 0 to the optimum on the remaining user data, the fastest
  exact way: the library default, a preconditioned Newton step from 0, to relative residual 1e-5) and
  ``retrain-linear-sgd`` (the same optimum reached the paper's way: 50 SGD epochs, then the Newton step).

Columns: ``test_acc``, ``forget_acc`` (accuracy on the forgotten samples), ``seconds``, ``rte`` (% of the same
request's ``retrain-linear`` seconds), ``rte_sgd`` (% of ``retrain-linear-sgd``'s), ``logit_rel_diff`` (max |logit
difference| to ``retrain-linear`` over the test set ÷ max |logit| of ``retrain-linear``), ``bound``
(‖∇L_r(w_u')‖/λ, a bound on the distance from the forgotten user weights to the retrained optimum),
``cg_iterations`` and ``steps`` (optimizer steps: SGD epochs × ⌈N / batch⌉ for the trainings; 0 for a Newton step,
whose work is its ``cg_iterations``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import torch

from .. import data as datasets
from .. import models
from ..evaluation import accuracy
from ..methods.mixed_linear import MixedLinear, UserTraining, train_mixed_linear
from ..training import train
from . import counted, pick_dataset, row_text, show_work

log = logging.getLogger("netfix.bench")

COLUMNS = ("request", "method", "test_acc", "forget_acc", "seconds", "rte", "rte_sgd", "logit_rel_diff", "bound",
           "cg_iterations", "steps")
LINEARIZE = ["body.3", "fc"]           # the MLP's last hidden layer and its classifier
RANK = 1024                            # eigenpairs of the core data's Gauss–Newton matrix preconditioning CG
LANCZOS_STEPS = 1280                   # Lanczos iterations that find them (reported apart: built once)
CORE_EPOCHS = {"fashion-mnist": 20, "mnist5k": 30, "mnist": 20}
FINETUNE_EPOCHS = {"fashion-mnist": 10, "mnist5k": 20, "mnist": 10}


def run(quick: bool, seeds: int | None, data: str | None, device: torch.device, progress: bool | None
        ) -> dict[str, Any]:
    name = pick_dataset(data, quick)
    train_set, test = datasets.load(name)
    seed = 0
    user_cfg = UserTraining()
    sgd_cfg = UserTraining(epochs=50) if not quick else UserTraining(epochs=5, polish_max_iter=200)
    steps: dict[str, int] = {}

    def measure(stage: str, fn: Callable[[], Any]) -> Any:
        out, steps[stage] = counted(fn)
        return out

    run_ml = train_mixed_linear("mlp", train_set, linearize=LINEARIZE, core_fraction=0.1,
                                core_epochs=CORE_EPOCHS.get(name, 20) if not quick else 10, user_training=user_cfg,
                                rank=RANK if not quick else 64, lanczos_steps=LANCZOS_STEPS if not quick else None,
                                seed=seed, device=device, progress=progress, measure=measure)
    core, core_data, user, fresh, trained, ml = (run_ml.core, run_ml.core_data, run_ml.user_data, run_ml.fresh,
                                                 run_ml.fit, run_ml.model)
    rows: list[dict[str, Any]] = [{"request": "", "method": "core", "test_acc": accuracy(core.model, test),
                                   "seconds": core.seconds, "steps": steps["core"]}]
    ft, ft_steps = counted(lambda: train(core.model, train_set, epochs=FINETUNE_EPOCHS.get(name, 10) if not quick
                                         else 3, seed=seed, device=device, progress=progress,
                                         **models.recipe("mlp")))
    rows.append({"request": "", "method": "finetune-train", "test_acc": accuracy(ft.model, test),
                 "seconds": ft.seconds, "steps": ft_steps})
    rows.append({"request": "", "method": "mixed-linear-train", "test_acc": accuracy(ml, test),
                 "seconds": trained.seconds, "steps": steps["user"], "user_parameters": ml.num_user_parameters,
                 "preconditioner_seconds": run_ml.preconditioner_seconds,
                 "grad_norm": trained.history[-1]["grad_norm"],
                 "newton_iterations": trained.history[-2].get("newton_iterations")})
    g = torch.Generator().manual_seed(seed)
    requests = {"1%": torch.randperm(len(user), generator=g)[:len(user) // 100],
                "10%": torch.randperm(len(user), generator=g)[:len(user) // 10],
                "class": torch.nonzero(user.y == 0).squeeze(1)}
    for request, idx in requests.items():
        rows += _request_rows(request, idx, user, ml, fresh, test, user_cfg, sgd_cfg, seed, progress)
    removed = ml.remove_user_data()
    with torch.no_grad():
        test_X = test.tensor.to(next(ml.parameters()).device)
        exact = bool(torch.equal(removed(test_X), core.model.to(test_X.device)(test_X)))
    return {"dataset": name, "seeds": [seed], "reference_seconds": None, "rows": rows,
            "core_size": len(core_data), "user_size": len(user), "linearize": LINEARIZE,
            "user_training": user_cfg.__dict__, "sgd_training": sgd_cfg.__dict__, "rank": RANK,
            "lanczos_steps": LANCZOS_STEPS, "remove_user_data_exact": exact,
            "ratio_to_finetune": rows[2]["test_acc"] / rows[1]["test_acc"]}


def _request_rows(request: str, idx: torch.Tensor, user: datasets.LabeledData, ml: MixedLinear, fresh: MixedLinear,
                  test: datasets.LabeledData, user_cfg: UserTraining, sgd_cfg: UserTraining, seed: int,
                  progress: bool | None) -> list[dict[str, Any]]:
    """One forget request ``idx`` of the user data: the Newton-step forget, the exact retrain of the linear part
    (the reference for rte) and the same optimum reached by SGD first (rte_sgd's reference)."""
    keep = torch.ones(len(user), dtype=torch.bool)
    keep[idx] = False
    forget, retain = user.subset(idx, f"user/forget-{request}"), user.subset(torch.nonzero(keep).squeeze(1))
    log.info("request %s: forgetting %d of %d user samples", request, len(forget), len(user))
    out, out_steps = counted(lambda: ml.forget(forget, retain))
    start = time.perf_counter()
    ref, ref_steps = counted(lambda: fresh.fit_user(retain, user_cfg, seed=seed, progress=progress))
    ref_seconds = time.perf_counter() - start
    sgd, sgd_steps = counted(lambda: fresh.fit_user(retain, sgd_cfg, seed=seed, progress=progress))
    with torch.no_grad():
        test_X = test.tensor.to(next(ml.parameters()).device)
        a, b, c = out.model(test_X), ref.model(test_X), sgd.model(test_X)
    rows = [{"request": request, "method": "mixed-linear-forget", "test_acc": accuracy(out.model, test),
             "forget_acc": accuracy(out.model, forget), "seconds": out.seconds,
             "rte": 100.0 * out.seconds / ref_seconds, "rte_sgd": 100.0 * out.seconds / sgd.seconds,
             "logit_rel_diff": float((a - b).abs().max() / b.abs().max()), "bound": out.distance_bound,
             "cg_iterations": out.cg_iterations, "steps": out_steps, "forget": out.report()},
            {"request": request, "method": "retrain-linear", "test_acc": accuracy(ref.model, test),
             "forget_acc": accuracy(ref.model, forget), "seconds": ref_seconds, "rte": 100.0,
             "rte_sgd": 100.0 * ref_seconds / sgd.seconds, "logit_rel_diff": 0.0,
             "cg_iterations": ref.history[-2].get("newton_iterations"), "steps": ref_steps},
            {"request": request, "method": "retrain-linear-sgd", "test_acc": accuracy(sgd.model, test),
             "forget_acc": accuracy(sgd.model, forget), "seconds": sgd.seconds,
             "rte": 100.0 * sgd.seconds / ref_seconds, "rte_sgd": 100.0,
             "logit_rel_diff": float((c - b).abs().max() / b.abs().max()),
             "cg_iterations": sgd.history[-2].get("newton_iterations"), "steps": sgd_steps}]
    log.info("%s", row_text(rows[0], ("request", "rte", "rte_sgd", "logit_rel_diff", "bound")))
    return rows


def display(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for r in rows:
        shown = {k: v for k, v in r.items() if k != "forget"}
        for k in ("test_acc", "forget_acc", "rte", "rte_sgd"):
            if isinstance(r.get(k), float):
                shown[k] = f"{r[k]:.2f}"
        for k in ("logit_rel_diff", "bound"):
            if isinstance(r.get(k), float):
                shown[k] = f"{r[k]:.2e}"
        if isinstance(r.get("seconds"), float):
            shown["seconds"] = f"{r['seconds']:.1f}"
        out.append(shown)
    return show_work(out)
