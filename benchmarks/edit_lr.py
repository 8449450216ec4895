"""How ``netfix.edit``'s default step sizes were picked: on a held-out split of mnist5k's training set.

An MLP trains (default recipe, 10 epochs) on 3,500 of mnist5k's 4,000 training images; 20 of the other 500 get a
uniformly random wrong label each (seed 9), and each is edited independently from the original model. Reported per
configuration: success rate, mean editor steps, mean drawdown (points of accuracy lost on the 500 held-out images).
The test split is never used.

Run: ``.venv/bin/python benchmarks/edit_lr.py '{"editor": "sgd", "lr": 0.003}' '{"editor": "rmsprop"}' ...``
"""

from __future__ import annotations

import json
import sys

import torch

import netfix


def main() -> None:
    torch.set_num_threads(2)
    train, _ = netfix.datasets.load("mnist5k")
    perm = torch.randperm(len(train), generator=torch.Generator().manual_seed(0))
    fit, held_out = train.subset(perm[:3500]), train.subset(perm[3500:])
    model = netfix.train(netfix.models.build("mlp", train.input_shape, 10, seed=0), fit, epochs=10, seed=0,
                         progress=False, **netfix.models.recipe("mlp")).model
    g = torch.Generator().manual_seed(9)
    idx = torch.randperm(len(held_out), generator=g)[:20]
    X, y = held_out.X[idx], held_out.y[idx]
    targets = (y + torch.randint(1, 10, y.shape, generator=g)) % 10
    base = netfix.evaluate(model, test=held_out)["test_acc"]
    for spec in sys.argv[1:]:
        options = json.loads(spec)
        outs = [netfix.edit(model, X[i:i + 1], targets[i:i + 1], **options) for i in range(len(X))]
        drawdown = sum(base - netfix.evaluate(o.model, test=held_out)["test_acc"] for o in outs) / len(outs)
        print(json.dumps({"options": options, "success": sum(o.success[0] for o in outs) / len(outs),
                          "steps": sum(o.steps for o in outs) / len(outs), "drawdown": round(drawdown, 2)}),
              flush=True)


if __name__ == "__main__":
    main()
