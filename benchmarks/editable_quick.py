"""A first measurement of Editable Training, on a held-out split (the full ``netfix bench editable`` is issue 6's).

MLP on 3,500 of mnist5k's training images (default recipe, 10 epochs), three ways: ordinary training, Editable
Training (second order) and its first-order variant, both with the paper's c_edit = c_loc = 0.01 and the RMSProp
editor. Then 20 held-out images get a random wrong label each (seed 9) and each is edited independently from the
trained model with the default editor. Reported: training seconds, held-out accuracy, edit success, mean steps and
mean drawdown (points of held-out accuracy lost per edit), and the learned editor step size. The test split is
never used.

Run: ``.venv/bin/python benchmarks/editable_quick.py`` (about a minute on 2 cores).
"""

from __future__ import annotations

import json

import torch

import netfix
from netfix.editing import EditableTraining


def main() -> None:
    torch.set_num_threads(2)
    train, _ = netfix.datasets.load("mnist5k")
    perm = torch.randperm(len(train), generator=torch.Generator().manual_seed(0))
    fit, held_out = train.subset(perm[:3500]), train.subset(perm[3500:])
    g = torch.Generator().manual_seed(9)
    idx = torch.randperm(len(held_out), generator=g)[:20]
    X, y = held_out.X[idx], held_out.y[idx]
    targets = (y + torch.randint(1, 10, y.shape, generator=g)) % 10
    for name, editable in [("baseline", None), ("editable", EditableTraining()),
                           ("editable, first order", EditableTraining(first_order=True))]:
        out = netfix.train(netfix.models.build("mlp", train.input_shape, 10, seed=0), fit, epochs=10, seed=0,
                           progress=False, editable=editable, **netfix.models.recipe("mlp"))
        base = netfix.evaluate(out.model, test=held_out)["test_acc"]
        edits = [netfix.edit(out.model, X[i:i + 1], targets[i:i + 1]) for i in range(len(X))]
        drawdown = sum(base - netfix.evaluate(e.model, test=held_out)["test_acc"] for e in edits) / len(edits)
        print(json.dumps({"training": name, "train_seconds": round(out.seconds, 1), "held_out_acc": round(base, 2),
                          "success": sum(e.success[0] for e in edits) / len(edits),
                          "steps": sum(e.steps for e in edits) / len(edits), "drawdown": round(drawdown, 2),
                          "editor_lr": out.config.get("editable", {}).get("editor_lr")}), flush=True)


if __name__ == "__main__":
    main()
