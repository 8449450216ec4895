"""Choose the default training recipes of ``resnet18`` and ``vit`` (``netfix.models.recipe``) on a validation split.

The split is select_recipe.py's: 10,000 images carved (seed 0) from Fashion-MNIST's *training* set are the validation
set; the test set is never read. To fit a 2-core CPU, each candidate trains the CPU-sized model (resnet18 width 16,
vit at its defaults: dim 64, depth 4, heads 4) for ``--epochs`` on the first ``--train`` of the other 50,000 images
(seed-0 order), with one torch thread, seed 0.

Round 1: optimizer x peak learning rate at batch 128 with a cosine schedule (SGD: momentum 0.9, weight decay 5e-4;
AdamW: weight decay 0.05; Adam: none). Round 2: the round-1 winner at batch 64 and 256. Rounds 3 and 4, only where the
winner so far sits on the grid's edge: 1.5x and 2x its learning rate (when it is the largest tried with its
optimizer) and half its batch size (when it is the smallest tried with its optimizer and learning rate). The recipe
is the best validation accuracy over all rounds. Output: one JSON line per candidate (validation accuracy, seconds, seconds per
epoch). Run: ``OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/select_recipe_zoo.py --jsonl
docs/select_recipe_zoo.jsonl`` (about 2 hours on one core); ``--resume`` skips candidates already in the file.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from typing import Any

import numpy as np
import torch

import netfix

MODELS: dict[str, dict[str, Any]] = {"resnet18": {"width": 16}, "vit": {}}
SGD = {"optimizer": "sgd", "momentum": 0.9, "weight_decay": 5e-4}
ADAMW = {"optimizer": "adamw", "weight_decay": 0.05}
ADAM = {"optimizer": "adam"}
ROUND1: dict[str, list[dict[str, Any]]] = {
    "resnet18": [{**SGD, "lr": lr} for lr in (0.05, 0.1, 0.2)] + [{**ADAM, "lr": lr} for lr in (1e-3, 2e-3)]
    + [{**ADAMW, "lr": lr} for lr in (1e-3, 2e-3)],
    "vit": [{**ADAM, "lr": lr} for lr in (5e-4, 1e-3, 2e-3)] + [{**ADAMW, "lr": lr} for lr in (5e-4, 1e-3, 2e-3)]
    + [{**SGD, "lr": 0.05}],
}
COMMON = {"lr_schedule": "cosine", "batch_size": 128}
ROUND2_BATCHES = (64, 256)


def edge_candidates(best: dict[str, Any], tried: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rounds 3 and 4: when the winner sits on the grid's edge, look past it — 1.5x and 2x its learning rate if it
    is the largest tried with its optimizer, and half its batch size if that is the smallest tried with its
    optimizer and learning rate."""
    out = []
    if best["lr"] >= max(r["lr"] for r in tried if r["optimizer"] == best["optimizer"]):
        out += [{**best, "lr": round(best["lr"] * f, 6)} for f in (1.5, 2)]
    same = [r["batch_size"] for r in tried if r["optimizer"] == best["optimizer"] and r["lr"] == best["lr"]]
    if best["batch_size"] <= min(same) and best["batch_size"] >= 32:
        out.append({**best, "batch_size": best["batch_size"] // 2})
    return out


def key(arch: str, recipe: dict[str, Any]) -> str:
    return json.dumps([arch, recipe], sort_keys=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--jsonl", default=None, help="append one JSON line per candidate here")
    ap.add_argument("--resume", action="store_true", help="skip candidates already in --jsonl")
    ap.add_argument("--archs", default="resnet18,vit")
    ap.add_argument("--train", type=int, default=20000, help="training images used (of the 50,000 not held out)")
    ap.add_argument("--epochs", type=int, default=4)
    args = ap.parse_args()
    torch.set_num_threads(1)
    command = "OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/select_recipe_zoo.py " + " ".join(
        f"--{k} {v}" for k, v in (("train", args.train), ("epochs", args.epochs)))
    done: dict[str, dict[str, Any]] = {}
    if args.resume and args.jsonl and os.path.exists(args.jsonl):
        with open(args.jsonl) as f:
            for line in f:
                row = json.loads(line)
                if row.get("train") == args.train and row.get("epochs") == args.epochs:
                    done[key(row["model"], row["recipe"])] = row
    train, _ = netfix.datasets.load("fashion-mnist")
    perm = np.random.default_rng(0).permutation(len(train))
    val, fit = train.subset(perm[:10000], "val"), train.subset(perm[10000:10000 + args.train], "fit")

    def run(arch: str, recipe: dict[str, Any], round_: int) -> dict[str, Any]:
        if key(arch, recipe) in done:
            return done[key(arch, recipe)]
        model = netfix.models.build(arch, train.input_shape, 10, seed=0, **MODELS[arch])
        start = time.perf_counter()
        out = netfix.train(model, fit, epochs=args.epochs, seed=0, progress=False, **recipe)
        seconds = time.perf_counter() - start
        acc = netfix.evaluate(out.model, test=val)["test_acc"]
        row = {"model": arch, "model_kwargs": MODELS[arch], "round": round_, "recipe": recipe, "val_acc": acc,
               "final_loss": out.history[-1].get("loss"), "seconds": round(seconds, 1),
               "seconds_per_50k_epoch": round(seconds / args.epochs * 50000 / len(fit), 1), "train": args.train,
               "epochs": args.epochs, "threads": torch.get_num_threads(), "command": command}
        print(json.dumps(row), flush=True)
        if args.jsonl:
            with open(args.jsonl, "a") as f:
                f.write(json.dumps(row) + "\n")
        return row

    for arch in args.archs.split(","):
        rows = [run(arch, {**r, **COMMON}, 1) for r in ROUND1[arch]]
        best = max(rows, key=lambda r: r["val_acc"])
        rows += [run(arch, {**best["recipe"], "batch_size": b}, 2) for b in ROUND2_BATCHES]
        best = max(rows, key=lambda r: r["val_acc"])
        for round_ in (3, 4):
            tried = [r["recipe"] for r in rows]
            new = [r for r in edge_candidates(best["recipe"], tried) if r not in tried]
            if not new:
                break
            rows += [run(arch, r, round_) for r in new]
            best = max(rows, key=lambda r: r["val_acc"])
        print(json.dumps({"model": arch, "chosen": best["recipe"], "val_acc": best["val_acc"]}), flush=True)


if __name__ == "__main__":
    main()
