"""How ``ogd``'s defaults were chosen: on validation splits, never the test set.

For each dataset (mnist5k, fashion-mnist) and scenario (mislabel: every 7 taught as 1; backdoor: a square trigger on
5 % of the images, labelled 0) a fifth of the *training* split is held out as the validation set; the faulty MLP
trains on the rest with its default recipe (30 epochs on mnist5k, 20 on Fashion-MNIST). Then every candidate
repair runs from that one model, beside retrain and finetune, and is measured on the validation set with the same
columns as ``netfix bench ogd-debug``.

Candidates: the three unlearning objectives (each followed by the default relearn), and relearn without replay,
without the keep-tolerance stopping rule, and with neither phase projected.

Run: ``.venv/bin/python benchmarks/ogd_select.py --json docs/ogd_select.json`` (about 5 minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import json
from typing import Any

import numpy as np
import torch

import netfix
from netfix.bench.ogd_debug import _measure, _scenario

CANDIDATES: list[tuple[dict[str, Any], dict[str, Any]]] = [
    ({"objective": "random-label"}, {}),
    ({"objective": "ascent"}, {}),
    ({"objective": "uniform"}, {}),
    ({"objective": "random-label"}, {"replay": 0}),
    ({"objective": "random-label"}, {"keep_tolerance": 100.0}),
    ({"objective": "random-label", "project": False}, {"project": False}),
]
EPOCHS = {"mnist5k": 30, "fashion-mnist": 20}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--json", default=None)
    ap.add_argument("--data", nargs="*", default=list(EPOCHS))
    args = ap.parse_args()
    torch.set_num_threads(2)
    dev = torch.device("cpu")
    rows: list[dict[str, Any]] = []
    for name in args.data:
        train, _ = netfix.datasets.load(name)
        perm = np.random.default_rng(0).permutation(len(train))
        n_val = len(train) // 5
        fit_on, val = train.subset(perm[n_val:]), train.subset(perm[:n_val])
        for sc in ("mislabel", "backdoor"):
            s = _scenario(sc, fit_on, val, 0)
            assert s.corrected is not None
            model = netfix.models.build("mlp", train.input_shape, 10, seed=0)
            original = netfix.train(model, s.train, epochs=EPOCHS[name], seed=0, progress=False,
                                    **netfix.models.recipe("mlp")).model
            retrain = netfix.relearn(original, s.corrected, protect=s.retain, method="retrain", progress=False)

            def row(method: str, unlearn_opts: dict[str, Any] | None, relearn_opts: dict[str, Any] | None,
                    m: torch.nn.Module, seconds: float | None) -> None:
                r = {"dataset": name, "scenario": sc, "method": method, "unlearn": unlearn_opts,
                     "relearn": relearn_opts, **_measure(m, s, dev), "seconds": seconds,
                     "rte": None if seconds is None else 100 * seconds / retrain.seconds}
                rows.append(r)
                print(json.dumps({k: (round(v, 2) if isinstance(v, float) else v) for k, v in r.items()}),
                      flush=True)

            row("original", None, None, original, None)
            row("retrain", None, None, retrain.model, retrain.seconds)
            ft = netfix.relearn(original, s.corrected, protect=s.retain, method="finetune", progress=False)
            row("finetune", None, None, ft.model, ft.seconds)
            for u_opts, r_opts in CANDIDATES:
                u = netfix.unlearn(original, s.forget, s.retain, method="ogd", progress=False, **u_opts)
                row("ogd-unlearn", u_opts, None, u.model, u.seconds)
                r = netfix.relearn(u.model, s.corrected, protect=s.retain, method="ogd", progress=False, **r_opts)
                row("ogd-unlearn-relearn", u_opts, r_opts, r.model, u.seconds + r.seconds)
    if args.json:
        netfix.io.atomic_write(args.json, json.dumps({"study": "ogd-select", "split": "validation (1/5 of train)",
                                                      "rows": rows}, indent=2).encode())


if __name__ == "__main__":
    main()
