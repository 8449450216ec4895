"""At what strength does each forgetting operator show *disproportionate* forgetting? Chosen on seed 100, not the
bench's seed 0, and on training examples only (the analysis never looks at the test set).

The bench's analysis setup (2,000 Fashion-MNIST training images, 20 % label noise, the MLP recipe for
GENERATIONS × EPOCHS_PER_GENERATION epochs, a checkpoint every EPOCHS_PER_GENERATION epochs); for each candidate,
R = Σ accuracy drop on noisy-label examples ÷ Σ drop on clean ones over the checkpoints where the noise was fit.
An operator strong enough to erase the network (as the relearning settings are) drops both groups to chance, so
R ≈ 1 says nothing about *what* it forgets; the analysis uses, per operator, the candidate with the largest R.

Run: ``.venv/bin/python benchmarks/forget_relearn_analysis_select.py`` (about 3 minutes); writes
docs/forget_relearn_analysis_select.jsonl.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

import netfix
from netfix.bench.forget_relearn import (ANALYSIS_NOISE, EPOCHS_PER_GENERATION, GENERATIONS, RECIPE, TRAIN_SIZE,
                                         small_split)
from netfix.methods.forget_relearn import disproportionate_forgetting

CANDIDATES = {
    "llf": ["llf:start=fc", "llf:start=body.3"],
    "ke": ["ke:keep=0.8", "ke:keep=0.5"],
    "imp": ["imp:keep=0.3", "imp:keep=0.8"],
    "shrink-perturb": ["shrink-perturb:shrink=0.2,noise=0.3", "shrink-perturb:shrink=0.5,noise=0.3"],
    "targeted": ["targeted:fraction=0.1,reinit=0.5", "targeted:fraction=0.1,reinit=0.1",
                 "targeted:fraction=0.1,reinit=0.03"],
    "random": ["random:keep=0.5,keep_output=0.75", "random:keep=0.9,keep_output=1.0"],
}


def main() -> None:
    torch.set_num_threads(2)
    train, test = netfix.datasets.load("fashion-mnist")
    seed = 100
    small = train.subset(small_split(train, TRAIN_SIZE, seed), "small")
    s = netfix.scenarios.label_noise(small, test, fraction=ANALYSIS_NOISE, seed=seed)
    mask = torch.zeros(len(s.train), dtype=torch.bool)
    mask[torch.as_tensor(s.forget_indices)] = True
    lines = []
    for op, specs in CANDIDATES.items():
        for spec in specs:
            model = netfix.models.build("mlp", small.input_shape, small.num_classes, seed=seed)
            res = disproportionate_forgetting(model, s.train, spec, mask, epochs=GENERATIONS * EPOCHS_PER_GENERATION,
                                              every=EPOCHS_PER_GENERATION, seed=seed, progress=False, **RECIPE)
            row = {"operator": op, "spec": spec, "ratio": res["ratio"], "low_margin_ratio": res["low_margin_ratio"],
                   "clean_drop": [round(c["clean"]["acc_drop"], 1) for c in res["checkpoints"]],
                   "noisy_drop": [round(c["noisy"]["acc_drop"], 1) for c in res["checkpoints"]]}
            print(json.dumps(row), flush=True)
            lines.append(json.dumps(row))
    Path("docs/forget_relearn_analysis_select.jsonl").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
