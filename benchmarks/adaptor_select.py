"""Pick the adaptor editor's calibration (netfix.edits.AdaptorConfig: copies, slack, point) on a validation split.

Fashion-MNIST's training set is split with seed 0: the first ``--train`` images train the bench's ResNet-8
(width 16, the editable bench's recipe, ``--epochs``); of the rest, ``--edits`` images get uniformly random wrong
labels (seed 9) and are edited *one after another* into one model through an editing session
(netfix.edits.Session, rehearsal on the training images), and 2,000 others measure the accuracy lost. The test split
is never read. Per setting: accuracy lost after all edits, % of edits still held, % holding on a fresh noisy copy
(std 0.05) and on a 1-pixel right shift, on a noisier copy (std 0.1, outside the calibration), and the median
latency.

The rule: the most noisy-copy holds among settings whose loss, scaled to 1,000 edits, is at most 1 point and whose
median latency is at most 10 ms.

Run: ``.venv/bin/python benchmarks/adaptor_select.py --out docs/adaptor_select.jsonl``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics

import torch

import netfix
from netfix import data as datasets
from netfix import models
from netfix.bench.editable import ARCH, RECIPE
from netfix.edit_metrics import perturbations


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--train", type=int, default=20000)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--edits", type=int, default=300)
    ap.add_argument("--copies", default="8,12,16")
    ap.add_argument("--slack", default="1.0,1.25,1.5")
    ap.add_argument("--point", default="0.25,0.5")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    train, _ = datasets.load("fashion-mnist")
    order = torch.randperm(len(train), generator=torch.Generator().manual_seed(0))
    fit, rest = train.subset(order[:args.train], "fit"), order[args.train:]
    g = torch.Generator().manual_seed(9)
    edit_idx, dd_idx = rest[:args.edits], rest[args.edits:args.edits + 2000]
    X, y = train.X[edit_idx], train.y[edit_idx]
    wrong = (y + torch.randint(1, train.num_classes, y.shape, generator=g)) % train.num_classes
    dd = train.subset(dd_idx, "drawdown")
    init = models.build("resnet", train.input_shape, train.num_classes, seed=0, **ARCH)
    model = netfix.train(init, fit, epochs=args.epochs, seed=0, **RECIPE).model.eval()
    base = netfix.evaluate(model, test=dd)["test_acc"]
    pert = perturbations()
    pg = torch.Generator().manual_seed(123)
    noisy, shifted = pert["noise"](X, pg), pert["shift"](X, pg)
    noisier = perturbations(noise=0.1)["noise"](X, pg)
    out = open(args.out, "w") if args.out else None
    for copies, slack, point in itertools.product(*(map(float, v.split(",")) for v in
                                                    (args.copies, args.slack, args.point))):
        s = netfix.edits.Session(model, rehearsal=fit, copies=int(copies), slack=slack, point=point)
        lat = [s.edit(X[i:i + 1], wrong[i:i + 1]).seconds for i in range(len(X))]
        with torch.no_grad():
            def holds(inputs: torch.Tensor) -> float:
                return 100.0 * float((s.model(inputs).argmax(1) == wrong).float().mean())
            row = {"copies": int(copies), "slack": slack, "point": point, "edits": len(X), "base_acc": base,
                   "lost": base - netfix.evaluate(s.model, test=dd)["test_acc"], "held": holds(X),
                   "holds_noise": holds(noisy), "holds_shift": holds(shifted), "holds_noise_0.1": holds(noisier),
                   "latency_ms": 1000 * statistics.median(lat), "bytes": netfix.edits.size_bytes(s.model)}
        row["lost_per_1000"] = row["lost"] * 1000 / len(X)
        print(json.dumps(row), flush=True)
        if out:
            out.write(json.dumps(row) + "\n")
            out.flush()


if __name__ == "__main__":
    main()
