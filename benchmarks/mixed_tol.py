"""How loose may the forget's CG tolerance be? Measured on Fashion-MNIST's training data, never its test set.

The bench's setup (core = stratified 10 %, MLP core, user weights on ``body.3`` + ``fc``, core-data
preconditioner), then for the 1 % and class requests: ``retrain-linear`` once, and ``forget`` at each tolerance.
``logit_rel_diff`` here is measured on the **core images** (training data the user weights never saw), not on the
test set.

Run: ``.venv/bin/python benchmarks/mixed_tol.py`` (about 6 minutes on 2 cores).
"""

from __future__ import annotations

import json
import time

import torch

import netfix
from netfix.bench.mixed_linear import CORE_EPOCHS, LINEARIZE, RANK
from netfix.methods.mixed_linear import train_mixed_linear


def main() -> None:
    torch.set_num_threads(2)
    train, _ = netfix.datasets.load("fashion-mnist")
    run = train_mixed_linear("mlp", train, linearize=LINEARIZE, core_epochs=CORE_EPOCHS["fashion-mnist"], rank=RANK,
                             seed=0, progress=False)
    core_data, user, fresh, ml = run.core_data, run.user_data, run.fresh, run.model
    g = torch.Generator().manual_seed(0)
    requests = {"1%": torch.randperm(len(user), generator=g)[:len(user) // 100],
                "class": torch.nonzero(user.y == 0).squeeze(1)}
    for request, idx in requests.items():
        keep = torch.ones(len(user), dtype=torch.bool)
        keep[idx] = False
        forget, retain = user.subset(idx), user.subset(torch.nonzero(keep).squeeze(1))
        start = time.perf_counter()
        ref = fresh.fit_user(retain, progress=False).model
        ref_seconds = time.perf_counter() - start
        with torch.no_grad():
            b = ref(core_data.X)
        for tol in (1e-1, 3e-2, 1e-2, 1e-3, 1e-4):
            out = ml.forget(forget, retain, tol=tol)
            with torch.no_grad():
                a = out.model(core_data.X)
            print(json.dumps({"request": request, "tol": tol, "cg_iterations": out.cg_iterations,
                              "seconds": round(out.seconds, 2), "rte": round(100 * out.seconds / ref_seconds, 2),
                              "logit_rel_diff_core": float((a - b).abs().max() / b.abs().max()),
                              "bound": out.distance_bound}), flush=True)


if __name__ == "__main__":
    main()
