"""How the unlearning baselines' defaults were chosen: a small grid per method, scored on a validation split.

The split is ``netfix bench unlearn``'s (a stratified tenth of the training set held out, then the 10,000-image
training subset on Fashion-MNIST), but here the held-out tenth plays the role of the test set — the real test set
is never read. For each scenario (random_forget 10 %, class_forget class 0) an MLP is trained with the bench's
recipe and epochs, retrained without the forget set (the reference), and every candidate configuration of every
method unlearns from that one model. A configuration's score is its mean gap to the retrain (UA, RA, validation
accuracy, MIA-efficacy) over the two scenarios; the lowest wins (ties: the faster). The winners are the defaults in
each method's config.

Run: ``.venv/bin/python benchmarks/unlearn_select.py --json docs/unlearn_select.json [--device cuda]``
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import numpy as np

import netfix
from netfix.bench.unlearn import EPOCHS, MIA_SAMPLES, _accuracy, _split

GRID: dict[str, list[dict[str, Any]]] = {
    "finetune": [{}, {"lr": 4e-2, "epochs": 5}, {"lr": 0.1, "epochs": 8}],
    "neggrad": [{}, {"lr": 1e-3}, {"lr": 1e-2}],
    "neggrad+": [{}, {"lr": 3e-2}, {"alpha": 0.99}],
    "random-label": [{}, {"lr": 3e-3}, {"epochs": 5}],
    "salun": [{}, {"lr": 5e-3}, {"mask_fraction": 0.2}],
    "l1-sparse": [{}, {"gamma": 1e-5}, {"gamma": 5e-4}],
    "scrub": [{}, {"stop_max": False}, {"lr": 5e-4}],
    "fisher": [{}, {"alpha": 1e-8}, {"alpha": 1e-6}, {"forgotten_bias": "zero"}],
    "ssd": [{}, {"alpha": 5.0}, {"lam": 0.5}],
    "bad-teacher": [{}, {"lr": 5e-4, "epochs": 2}, {"lr": 1e-3, "retain_fraction": 1.0},
                    {"lr": 1e-4, "batch_size": 256}],
    "ogd": [{}, {"objective": "uniform"}, {"objective": "ascent"}],
    "msg": [{}, {"reinit_fraction": 0.3, "lr": 1e-3}, {"reinit_fraction": 0.3, "lr": 1e-2},  # {}: 0.7 at lr 3e-2
            {"reinit_fraction": 0.3}, {"reinit_fraction": 0.3, "lr": 0.1}, {"reinit_fraction": 0.5},
            {"reinit_fraction": 0.5, "lr": 1e-2}, {"reinit_fraction": 0.3, "lr": 1e-2, "layers": "all"},
            {"reinit_fraction": 0.3, "epochs": 10}],
    "rum": [{}, {"inner": "neggrad+"}, {"inner": "neggrad+:epochs=4"}, {"proxy": "random"}],  # {}: per-group NegGrad+
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--json", default=None)
    ap.add_argument("--data", default="fashion-mnist")
    ap.add_argument("--device", default=None)
    ap.add_argument("--methods", default=None, help="comma-separated subset of the grid")
    args = ap.parse_args()
    dev = netfix._runtime.resolve_device(args.device)
    wanted = args.methods.split(",") if args.methods else list(GRID)
    train_set, val_set, _ = _split(args.data, 0)  # the test split is never loaded into a decision
    model = netfix.models.build("mlp", train_set.input_shape, 10, seed=0)
    original = netfix.train(model, train_set, epochs=EPOCHS[("mlp", args.data)], seed=0, device=dev,
                            progress=False, **netfix.models.recipe("mlp")).model
    val_acc = _accuracy(original, val_set)
    rows: list[dict[str, Any]] = []
    for sc in ("random_forget", "class_forget"):
        s = (netfix.scenarios.random_forget(train_set, val_set, fraction=0.1, seed=0) if sc == "random_forget"
             else netfix.scenarios.class_forget(train_set, val_set, cls=0))
        ref = netfix.unlearn(original, s.forget, s.retain, method="retrain", device=dev, progress=False)
        for method in wanted:
            for opts in GRID[method]:
                run_opts = dict(opts)
                if method == "ogd":
                    run_opts["stop_acc"] = val_acc if sc == "random_forget" else 0.0
                start = time.perf_counter()
                try:
                    out = netfix.unlearn(original, s.forget, s.retain, method=method, device=dev, progress=False,
                                         **run_opts)
                except Exception as e:  # keep going; the row says what broke
                    rows.append({"scenario": sc, "method": method, "options": opts, "error": repr(e)})
                    continue
                m = netfix.evaluate(out.model, scenario=s, reference=ref.model, device=dev, mia_samples=MIA_SAMPLES)
                rows.append({"scenario": sc, "method": method, "options": opts, "gap": m["gap"], "UA": m["ua"],
                             "RA": m["retain_acc"], "VA": m["test_acc"], "MIA": m["mia_efficacy"],
                             "seconds": out.seconds, "rte": 100 * out.seconds / ref.seconds,
                             "wall": time.perf_counter() - start})
                print(json.dumps({k: (round(v, 2) if isinstance(v, float) else v) for k, v in rows[-1].items()}),
                      flush=True)
    chosen = {}
    for method in wanted:
        scores = []
        for opts in GRID[method]:
            mine = [r for r in rows if r["method"] == method and r["options"] == opts and "gap" in r]
            if len(mine) == 2:
                scores.append((float(np.mean([r["gap"] for r in mine])), float(np.mean([r["rte"] for r in mine])),
                               opts))
        if scores:
            best = min(scores, key=lambda t: (round(t[0], 2), t[1]))
            chosen[method] = {"options": best[2], "mean_gap": best[0], "mean_rte": best[1],
                              "all": [{"options": o, "mean_gap": g, "mean_rte": t} for g, t, o in scores]}
            print(method, "->", chosen[method]["options"], round(best[0], 2), flush=True)
    if args.json:
        netfix.io.atomic_write(args.json, json.dumps({"study": "unlearn-select", "data": args.data,
                                                      "device": str(dev), "val_acc": val_acc, "rows": rows,
                                                      "chosen": chosen}, indent=2).encode())


if __name__ == "__main__":
    main()
