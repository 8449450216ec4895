"""Choose the forgetting operators' settings for ``netfix bench forget-relearn`` on a validation split.

Seed 100 (the bench uses seeds 0-2): 2,000 Fashion-MNIST training images with label noise 0.2 and 0.4 for training,
and 2,000 *other* training images with their true labels for validation — never the test set. Each candidate
operator runs the bench's schedule (GENERATIONS × EPOCHS_PER_GENERATION epochs, the MLP recipe); the long baseline
runs the same epochs. The bench's OPERATORS takes, per operator, the candidate with the best mean validation
accuracy over both noise levels.

Run: ``.venv/bin/python benchmarks/forget_relearn_select.py`` (about 6 minutes on 2 cores); writes
docs/forget_relearn_select.jsonl.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

import netfix
from netfix.bench.forget_relearn import TRAIN_SIZE, run_schedule, small_split

CANDIDATES = {
    "long-baseline": [None],
    "llf": ["llf:start=fc", "llf:start=body.3"],
    "ke": ["ke:keep=0.8", "ke:keep=0.5"],
    "imp": ["imp:keep=0.3", "imp:keep=0.6"],
    "shrink-perturb": ["shrink-perturb:shrink=0.4,noise=0.1", "shrink-perturb:shrink=0.2,noise=0.3",
                       "shrink-perturb:shrink=0.7,noise=0.05"],
    "targeted": ["targeted:fraction=0.1,reinit=0.2", "targeted:fraction=0.3,reinit=0.2",
                 "targeted:fraction=0.1,reinit=0.5"],
}


def main() -> None:
    torch.set_num_threads(2)
    train, test = netfix.datasets.load("fashion-mnist")
    seed = 100
    idx = small_split(train, TRAIN_SIZE, seed)
    val = train.subset(small_split(train, TRAIN_SIZE, seed + 1, exclude=idx), "validation")
    small = train.subset(idx, "small")
    out = Path("docs/forget_relearn_select.jsonl")
    lines = []
    for noise in (0.2, 0.4):
        noisy = netfix.scenarios.label_noise(small, test, fraction=noise, seed=seed).train
        for method, specs in CANDIDATES.items():
            for spec in specs:
                res = run_schedule(method, spec, noisy, seed, torch.device("cpu"), False)
                row = {"method": method, "operator": spec, "noise": noise,
                       "val_acc": netfix.evaluation.accuracy(res.model, val), "seconds": round(res.seconds, 1)}
                print(json.dumps(row), flush=True)
                lines.append(json.dumps(row))
    out.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
