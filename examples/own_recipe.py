"""Your model, your data pipeline, your training loop: a deletion request measured against the reference *you* would
have trained.

A user trained their own CNN (BatchNorm, Dropout) on Fashion-MNIST with their own recipe — random-crop and flip
augmentation read through their own Dataset, SGD with Nesterov momentum, cosine decay, label smoothing, weight decay —
never through netfix. A deletion request arrives as indices into their training set. The script:

1. forgets those samples with several netfix methods at their defaults (``netfix.data.Request``: no retain set to
   slice out; the training set streams through the user's augmentation),
2. trains two retrain references on what remains: one with the user's own loop (``train_fn=``), one with netfix's
   loop and default recipe (what the gap used to be measured against),
3. prints every method's UA / RA / TA / MIA and its gap to each reference (mean |difference| over the four, as in
   ``netfix.evaluate``), measured on un-augmented copies of the same images (the user's eval transform).

    python examples/own_recipe.py --json docs/bench/own_recipe.json

Fashion-MNIST comes from ``/usr/share/datasets/fashion-mnist`` (or ``$NETFIX_DATA``); without it the script runs
on mnist5k (``--data mnist5k``). ~15 minutes on one CPU core.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

import netfix
from netfix.transforms import Compose, RandomCrop, RandomHorizontalFlip

METHODS = ("finetune", "neggrad+", "random-label", "salun", "ogd")


class SmallCNN(nn.Module):
    """The user's own architecture (netfix never built it)."""

    def __init__(self, channels: int = 1, classes: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(channels, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2))
        self.classifier = nn.Sequential(nn.Flatten(), nn.Dropout(0.2), nn.LazyLinear(128), nn.ReLU(),
                                        nn.Linear(128, classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class Images(Dataset):
    """The user's Dataset: images and labels, each read through ``transform`` (augmentation at train time)."""

    def __init__(self, X: torch.Tensor, y: torch.Tensor, transform=None) -> None:
        self.X, self.y, self.transform = X, y, transform
        self.targets = y.tolist()  # labels known without reading an image

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int):
        x = self.X[i]
        return (self.transform(x) if self.transform is not None else x), int(self.y[i])


def my_training(epochs: int):
    """The user's recipe, as a ``train_fn(model, dataset) -> model``."""

    def train_fn(model: nn.Module, dataset: Dataset) -> nn.Module:
        loader = DataLoader(dataset, batch_size=128, shuffle=True)
        opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True, weight_decay=5e-4)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs * len(loader))
        loss = nn.CrossEntropyLoss(label_smoothing=0.1)
        model.train()
        for _ in range(epochs):
            for x, y in loader:
                opt.zero_grad()
                loss(model(x), y).backward()
                opt.step()
                sched.step()
        return model.eval()

    return train_fn


def main(argv: "list[str] | None" = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=None, help="fashion-mnist (default when installed) or mnist5k")
    p.add_argument("--n-train", type=int, default=10_000, help="training images (a random subset; default 10000)")
    p.add_argument("--epochs", type=int, default=15, help="epochs of the user's recipe (default 15)")
    p.add_argument("--fraction", type=float, default=0.1, help="share of the training set to forget (default 0.1)")
    p.add_argument("--methods", default=",".join(METHODS), help=f"netfix methods (default {','.join(METHODS)})")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", type=Path, default=None, help="write the rows here")
    p.add_argument("--overwrite", action="store_true", help="replace --json if it exists")
    args = p.parse_args(argv)
    if args.json is not None and args.json.exists() and not args.overwrite:
        p.error(f"--json: {args.json} exists; pass --overwrite to replace it")
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    for m in methods:
        netfix.methods.get(m)  # an unknown name fails now, listing the valid ones
    name = args.data or ("fashion-mnist" if "fashion-mnist" in netfix.datasets.available() else "mnist5k")
    full, test = netfix.datasets.load(name)
    rng = np.random.default_rng(args.seed)
    keep = np.sort(rng.choice(len(full), size=min(args.n_train, len(full)), replace=False))
    X, y = full.X[torch.as_tensor(keep)], full.y[torch.as_tensor(keep)]
    side = X.shape[-1]
    augment = Compose([RandomCrop(side, padding=2), RandomHorizontalFlip()])
    train_aug = Images(X, y, augment)  # what the user trains on
    train_eval = Images(X, y)          # the same images, the eval transform (none)
    forget_idx = np.sort(rng.choice(len(keep), size=int(round(args.fraction * len(keep))), replace=False))
    recipe = my_training(args.epochs)

    print(f"{name}: {len(keep)} training images, forgetting {len(forget_idx)}; the user's recipe: "
          f"{args.epochs} epochs of SGD+Nesterov, cosine, label smoothing, crop+flip", file=sys.stderr)
    torch.manual_seed(args.seed)
    user_model = SmallCNN(X.shape[1], full.num_classes)
    user_model(X[:2])  # materialise the lazy layer
    start = time.perf_counter()
    original = recipe(user_model, train_aug)  # trained by the user, outside netfix
    original_s = time.perf_counter() - start

    request = netfix.data.Request(netfix.data.as_data(train_aug, "train", stream=True), forget_idx)
    forget_eval, retain_eval = netfix.data.Request(train_eval, forget_idx).split()
    refs = {
        "user recipe": netfix.unlearn(original, request, method="retrain", train_fn=recipe, seed=args.seed,
                                      progress=False),
        "netfix recipe": netfix.unlearn(original, request, method="retrain", seed=args.seed, progress=False),
    }

    def measure(model: nn.Module) -> dict:
        m = netfix.evaluate(model, forget=forget_eval, retain=retain_eval, test=test, seed=args.seed)
        out = {"UA": m["ua"], "RA": m["retain_acc"], "TA": m["test_acc"], "MIA": m["mia_efficacy"]}
        for label, ref in refs.items():
            r = ref_metrics[label]
            out[f"gap ({label})"] = float(np.mean([abs(out[k] - r[k]) for k in ("UA", "RA", "TA", "MIA")]))
        return out

    ref_metrics: dict = {}
    for label, ref in refs.items():
        m = netfix.evaluate(ref.model, forget=forget_eval, retain=retain_eval, test=test, seed=args.seed)
        ref_metrics[label] = {"UA": m["ua"], "RA": m["retain_acc"], "TA": m["test_acc"], "MIA": m["mia_efficacy"]}
    user_s = refs["user recipe"].seconds
    rows = [{"model": "original", **measure(original), "seconds": original_s, "rte": None}]
    for label, ref in refs.items():
        rows.append({"model": f"retrain ({label})", **measure(ref.model), "seconds": ref.seconds,
                     "rte": 100.0 * ref.seconds / user_s})
    for method in methods:
        print(f"unlearning with {method}", file=sys.stderr)
        try:
            out = netfix.unlearn(original, request, method=method, seed=args.seed, progress=False)
        except netfix.errors.NetfixError as e:
            rows.append({"model": method, "error": f"{type(e).__name__}: {e}"})
            continue
        rows.append({"model": method, **measure(out.model), "seconds": out.seconds,
                     "rte": 100.0 * out.seconds / user_s})

    cols = ["model", "UA", "RA", "TA", "MIA", "gap (user recipe)", "gap (netfix recipe)", "seconds", "rte"]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        cells = [r["model"]] + [("—" if r.get(c) is None or (isinstance(r.get(c), float) and math.isnan(r[c]))
                                 else f"{r[c]:.2f}") if c in r or "error" not in r else r["error"][:40]
                                for c in cols[1:]]
        lines.append("| " + " | ".join(cells) + " |")
    table = "\n".join(lines)
    print(table)
    if args.json is not None:
        doc = {"example": "own_recipe", "dataset": name, "n_train": len(keep), "n_forget": len(forget_idx),
               "epochs": args.epochs, "seed": args.seed, "rows": rows, "table": table,
               "reference_metrics": ref_metrics,
               "command": "python examples/own_recipe.py " + " ".join(argv if argv is not None else sys.argv[1:]),
               "env": {"torch": torch.__version__, "netfix": netfix.__version__, "threads": torch.get_num_threads(),
                       "python": platform.python_version()}}
        args.json.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", dir=args.json.parent, delete=False, suffix=".tmp") as fh:
            json.dump(doc, fh, indent=2)
        os.replace(fh.name, args.json)  # written whole or not at all
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
