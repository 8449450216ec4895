"""How the defaults of ``unseen`` and ``reference-guided`` were chosen: a small grid, scored on a validation split,
on two architectures.

The split is ``netfix bench unlearn``'s (a stratified tenth of the training split held out, then the 10,000-image
training subset on Fashion-MNIST). Here that held-out tenth is cut in two halves: the first is the methods'
``heldout=`` set (data the model never trained on), the second plays the test set (the real test set is never
read). For each architecture (MLP, LeNet) and scenario (random_forget 10 %, class_forget class 0), the original is
trained with the bench's recipe and epochs and retrained without the forget set (the reference); every candidate
unlearns from that one model. A candidate's score is its mean gap to the retrain (UA, RA, validation accuracy,
MIA-efficacy) over both scenarios and architectures, among the candidates whose mean cost is at most
``--max-rte`` % of retraining's (default 25); the lowest wins (ties: the faster).

Run: ``OMP_NUM_THREADS=1 .venv/bin/python benchmarks/unseen_select.py --json docs/unseen_select.json``
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import numpy as np

import netfix
from netfix.bench.unlearn import EPOCHS, MIA_SAMPLES, _split

GRID: dict[str, list[dict[str, Any]]] = {
    "unseen": [
        {},
        {"batch_size": 128, "retain_batch_size": 128, "lr": 2e-3},
        {"batch_size": 256, "retain_batch_size": 256, "lr": 4e-3},
        {"batch_size": 128, "retain_batch_size": 128, "lr": 2e-3, "epochs": 20},
        {"batch_size": 256, "retain_batch_size": 256, "lr": 4e-3, "epochs": 20},
        {"batch_size": 128, "retain_batch_size": 128, "lr": 1e-3},
    ],
    "reference-guided": [
        {},
        {"batch_size": 128, "retain_batch_size": 128, "lr": 2e-3},
        {"batch_size": 256, "retain_batch_size": 256, "lr": 4e-3},
    ],
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--json", default=None)
    ap.add_argument("--data", default="fashion-mnist")
    ap.add_argument("--archs", default="mlp,lenet")
    ap.add_argument("--device", default=None)
    ap.add_argument("--methods", default=None, help="comma-separated subset of the grid")
    ap.add_argument("--max-rte", type=float, default=25.0)
    args = ap.parse_args()
    dev = netfix._runtime.resolve_device(args.device)
    wanted = args.methods.split(",") if args.methods else list(GRID)
    train_set, val_set, _ = _split(args.data, 0)  # the test split is never loaded into a decision
    half = np.random.default_rng(1).permutation(len(val_set))
    heldout = val_set.subset(np.sort(half[: len(half) // 2]), "heldout")
    scoring = val_set.subset(np.sort(half[len(half) // 2:]), "validation")
    rows: list[dict[str, Any]] = []
    for arch in args.archs.split(","):
        model = netfix.models.build(arch, train_set.input_shape, 10, seed=0)
        original = netfix.train(model, train_set, epochs=EPOCHS[(arch, args.data)], seed=0, device=dev,
                                progress=False, **netfix.models.recipe(arch)).model
        for sc in ("random_forget", "class_forget"):
            s = (netfix.scenarios.random_forget(train_set, scoring, fraction=0.1, seed=0) if sc == "random_forget"
                 else netfix.scenarios.class_forget(train_set, scoring, cls=0))
            ref = netfix.unlearn(original, s.forget, s.retain, method="retrain", device=dev, progress=False)
            for method in wanted:
                for opts in GRID[method]:
                    start = time.perf_counter()
                    try:
                        out = netfix.unlearn(original, s.forget, s.retain, method=method, device=dev,
                                             progress=False, heldout=heldout, **opts)
                    except Exception as e:  # keep going; the row says what broke
                        rows.append({"arch": arch, "scenario": sc, "method": method, "options": opts,
                                     "error": repr(e)})
                        continue
                    m = netfix.evaluate(out.model, scenario=s, reference=ref.model, device=dev,
                                        mia_samples=MIA_SAMPLES)
                    rows.append({"arch": arch, "scenario": sc, "method": method, "options": opts, "gap": m["gap"],
                                 "UA": m["ua"], "RA": m["retain_acc"], "VA": m["test_acc"],
                                 "MIA": m["mia_efficacy"], "seconds": out.seconds,
                                 "rte": 100 * out.seconds / ref.seconds, "wall": time.perf_counter() - start})
                    print(json.dumps({k: (round(v, 2) if isinstance(v, float) else v) for k, v in rows[-1].items()}),
                          flush=True)
    chosen = {}
    runs = len(args.archs.split(",")) * 2
    for method in wanted:
        scores = []
        for opts in GRID[method]:
            mine = [r for r in rows if r["method"] == method and r["options"] == opts and "gap" in r]
            if len(mine) == runs:
                scores.append((float(np.mean([r["gap"] for r in mine])), float(np.mean([r["rte"] for r in mine])),
                               opts))
        within = [t for t in scores if t[1] <= args.max_rte] or scores
        if within:
            best = min(within, key=lambda t: (round(t[0], 2), t[1]))
            chosen[method] = {"options": best[2], "mean_gap": best[0], "mean_rte": best[1],
                              "all": [{"options": o, "mean_gap": g, "mean_rte": t} for g, t, o in scores]}
            print(method, "->", chosen[method]["options"], round(best[0], 2), round(best[1], 1), flush=True)
    if args.json:
        netfix.io.atomic_write(args.json, json.dumps({"study": "unseen-select", "data": args.data,
                                                      "archs": args.archs, "device": str(dev),
                                                      "max_rte": args.max_rte, "rows": rows, "chosen": chosen},
                                                     indent=2).encode())


if __name__ == "__main__":
    main()
