"""Choose the default training recipes of ``netfix.models.recipe`` on a validation split.

The validation split is 10,000 images carved (seed 0) from Fashion-MNIST's *training* set; models train 5 epochs
on the other 50,000. The test set is never looked at. Output: JSON with validation accuracy and seconds per
candidate (docs/results.md). Run: ``.venv/bin/python benchmarks/select_recipe.py --json docs/select_recipe.json``
(about 5 minutes on 2 idle CPU cores).
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

import netfix

CANDIDATES = [
    ("mlp", {}, {"lr": 1e-3}),
    ("mlp", {}, {"lr": 1e-3, "lr_schedule": "cosine"}),
    ("mlp", {}, {"lr": 2e-3, "lr_schedule": "cosine"}),
    ("lenet", {}, {"lr": 1e-3}),
    ("lenet", {}, {"lr": 1e-3, "lr_schedule": "cosine"}),
    ("lenet", {}, {"lr": 2e-3, "lr_schedule": "cosine"}),
    ("lenet", {}, {"lr": 3e-3, "lr_schedule": "cosine"}),
    ("lenet", {}, {"lr": 2e-3, "lr_schedule": "cosine", "batch_size": 64}),
    ("lenet", {"channels": (16, 32)}, {"lr": 2e-3, "lr_schedule": "cosine"}),
    ("lenet", {}, {"lr": 3e-3, "lr_schedule": "cosine", "batch_size": 64}),
    ("lenet", {}, {"lr": 1e-3, "lr_schedule": "cosine", "batch_size": 32}),
    ("lenet", {}, {"lr": 2e-3, "lr_schedule": "cosine", "batch_size": 32}),
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    ap.add_argument("--json", default=None, help="write the results here")
    ap.add_argument("--epochs", type=int, default=5)
    args = ap.parse_args()
    torch.set_num_threads(2)
    train, _ = netfix.datasets.load("fashion-mnist")
    perm = np.random.default_rng(0).permutation(len(train))
    val, fit = train.subset(perm[:10000], "val"), train.subset(perm[10000:], "fit")
    rows = []
    for arch, model_kw, train_kw in CANDIDATES:
        model = netfix.models.build(arch, train.input_shape, 10, seed=0, **model_kw)
        start = time.perf_counter()
        out = netfix.train(model, fit, epochs=args.epochs, seed=0, progress=False, **train_kw)
        seconds = time.perf_counter() - start
        acc = netfix.evaluate(out.model, test=val)["test_acc"]
        rows.append({"model": arch, "model_kwargs": model_kw, "recipe": train_kw, "val_acc": acc, "seconds": seconds})
        print(json.dumps(rows[-1]), flush=True)
    if args.json:
        netfix.io.atomic_write(args.json, json.dumps({"bench": "select-recipe", "epochs": args.epochs,
                                                      "rows": rows}, indent=2).encode())


if __name__ == "__main__":
    main()
