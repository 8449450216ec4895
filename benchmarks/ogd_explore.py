"""OGD debugging on mnist5k, measured on a validation split: which unlearning objective, memory and parameter
subset work — the evidence behind ``ogd``'s defaults while issue 4's ``netfix bench ogd-debug`` is unfinished.

Scenario: every training 7 labelled 1 (mislabel). The validation set is 800 images carved (seed 0) from mnist5k's
training split; the model trains on the other 3,200; the test split is never used. Columns: ``val_acc``,
``fault_rate`` (% of validation 7s predicted 1), ``acc7`` (accuracy on validation 7s), ``other_acc`` (mean
accuracy over the other classes), ``seconds`` (unlearn + relearn), ``rte`` (% of retrain's seconds, same run).

Run: ``.venv/bin/python benchmarks/ogd_explore.py --json docs/ogd_explore.json`` (about 2 minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch

import netfix

CONFIGS = [
    {"objective": "ascent"},
    {"objective": "uniform"},
    {"objective": "random-label"},
    {"objective": "random-label", "project": False},
    {"objective": "random-label", "params": ["body.3", "fc"], "memory_size": 1000},
    {"objective": "random-label", "params": ["body.3", "fc"], "variant": "all", "memory_size": 100},
]


def main() -> None:
    ap = argparse.ArgumentParser(description="OGD debugging exploration on a validation split of mnist5k")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    torch.set_num_threads(2)
    train, _ = netfix.datasets.load("mnist5k")
    perm = np.random.default_rng(0).permutation(len(train))
    s = netfix.scenarios.mislabel(train.subset(perm[800:]), train.subset(perm[:800]), source=7, target=1)
    model = netfix.models.build("mlp", train.input_shape, 10, seed=0)
    original = netfix.train(model, s.train, epochs=30, seed=0, progress=False)
    retrain = netfix.relearn(original.model, s.corrected, protect=s.retain, method="retrain", progress=False)
    finetune = netfix.relearn(original.model, s.corrected, protect=s.retain, method="finetune", progress=False)
    rows = []

    def row(method: str, config: dict, m: torch.nn.Module, seconds: float, extra: dict | None = None) -> None:
        e = netfix.evaluate(m, scenario=s)
        rows.append({"method": method, "config": config, "val_acc": e["test_acc"], "fault_rate": e["fault_rate"],
                     "acc7": e["fault_acc"], "other_acc": float(np.mean([v for k, v in e["per_class_acc"].items()
                                                                         if k != 7])),
                     "seconds": seconds, "rte": 100 * seconds / retrain.seconds, **(extra or {})})
        print(json.dumps(rows[-1]), flush=True)

    row("original", {}, original.model, original.seconds)
    row("retrain", {}, retrain.model, retrain.seconds)
    row("finetune", {}, finetune.model, finetune.seconds)
    for cfg in CONFIGS:
        u = netfix.unlearn(original.model, s.forget, s.retain, method="ogd", progress=False, **cfg)
        row("ogd-unlearn", cfg, u.model, u.seconds, {"stop": u.history[-1].get("reason", "max_epochs")})
        relearn_cfg = {k: v for k, v in cfg.items() if k != "objective"}
        r = netfix.relearn(u.model, s.corrected, protect=s.retain, method="ogd", progress=False, **relearn_cfg)
        row("ogd-unlearn-relearn", cfg, r.model, u.seconds + r.seconds)
    if args.json:
        netfix.io.atomic_write(args.json, json.dumps({"bench": "ogd-explore", "dataset": "mnist5k (validation split)",
                                                      "reference_seconds": retrain.seconds, "rows": rows},
                                                     indent=2).encode())


if __name__ == "__main__":
    main()
