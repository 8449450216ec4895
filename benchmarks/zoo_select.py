"""Defaults that work on models netfix did not build: each unlearning method's step options, and the editor's
automatic step, chosen on validation splits across several architectures — never on one, never on a test set.

Data: scikit-learn's digits; 300 images of its *training* split are held out as the validation set, the models train
on the rest. Architectures: netfix's mlp, lenet and resnet (depth 8) trained by netfix.train, and the zoo
(netfix.bench.zoo_models: Hugging Face ViT and ResNet, a residual BatchNorm net, a Mixer, a keyword-input model)
trained by a plain PyTorch loop. Scores:

- unlearning (``--part unlearn``): class forgetting of two classes on every architecture; a run *passes* when
  UA >= 90 and retained accuracy falls by at most 3 points (the zoo contract). The chosen setting has the most
  passes, then the smallest mean retained-accuracy loss. Each setting runs unguarded (``guard=None``): the guard is
  the safety net, not what makes a default good.
- editing (``--part edit``): 20 corrections (misclassified validation inputs to their true label) and 20 random
  wrong-label edits per architecture, each on the original model; the chosen scale has 100 % success everywhere,
  then the smallest worst-architecture mean drawdown.

Usage (about 20 minutes each on a 2-core CPU, 1 thread):
    python benchmarks/zoo_select.py --part unlearn --out docs/zoo_select_unlearn.jsonl
    python benchmarks/zoo_select.py --part edit --out docs/zoo_select_edit.jsonl
Each line of the output is one (setting, architecture, case) measurement; the script prints the table.
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

import netfix
from netfix.bench.zoo_models import ZOO, build, train_plain

ARCHS = ("mlp", "lenet", "resnet", "residual-bn", "mixer", "keyword", "hf-vit", "hf-resnet")
CLASSES = (3, 7)
GRIDS: dict[str, dict[str, list[Any]]] = {
    "random-label": {"lr": [1e-2, 3e-3, 1e-3], "train_mode": [True, False]},
    "salun": {"lr": [5e-3, 4e-3, 2e-3], "epochs": [10, 15], "train_mode": [False]},
    "scrub": {"lr": [1e-3, 3e-4], "train_mode": [True, False]},
    "ogd": {"lr": [1e-2, 3e-3]},
    "msg": {"lr": [3e-2, 1e-2], "reinit_fraction": [0.7]},
    "rum": {"step_scale": [1.0, 0.5]},
    "unseen": {"lr": [1e-3, 2e-3]},
    "finetune": {"lr": [1e-1], "max_update": [1e-3, 3e-3]},
    "fisher": {"alpha": [1e-6]},
    "bad-teacher": {"lr": [5e-4, 1e-3], "epochs": [1, 2]},
}
EDIT_GRID = [{"scale": s, "growth": g} for s, g in itertools.product([3e-4, 1e-3, 3e-3], [2.0, 4.0])]


def splits() -> tuple[Any, Any]:
    train, _ = netfix.datasets.load("digits")
    perm = np.random.default_rng(0).permutation(len(train))
    return train.subset(np.sort(perm[300:]), "train"), train.subset(np.sort(perm[:300]), "val")


def model_for(arch: str, train: Any) -> torch.nn.Module:
    if arch in ZOO:
        m = build(arch, train.input_shape, 10, seed=0)
        return train_plain(m, train, epochs=30, keyword="image" if arch == "keyword" else None)
    kwargs = {"depth": 8, "width": 8} if arch == "resnet" else {}
    m = netfix.models.build(arch, train.input_shape, 10, seed=0, **kwargs)
    return netfix.train(m, train, epochs=30, progress=False, **netfix.models.recipe(arch)).model


def unlearn_rows(models: dict[str, Any], train: Any, val: Any, methods: list[str]) -> list[dict[str, Any]]:
    rows = []
    for method, grid in GRIDS.items():
        if method not in methods:
            continue
        for values in itertools.product(*grid.values()):
            opts = dict(zip(grid, values))
            for arch, model in models.items():
                for cls in CLASSES:
                    s = netfix.scenarios.class_forget(train, val, cls=cls)
                    before = netfix.evaluate(model, scenario=s)
                    start = time.perf_counter()
                    try:
                        out = netfix.unlearn(model, s.forget, s.retain, method=method, guard=None, progress=False,
                                             **opts)
                        m = netfix.evaluate(out.model, scenario=s)
                        ua, ra = 100 - m["forget_acc"], m["retain_acc"]
                    except netfix.errors.DivergedError:
                        ua, ra = float("nan"), 0.0
                    loss = before["retain_acc"] - ra
                    rows.append({"part": "unlearn", "method": method, "options": opts, "arch": arch, "cls": cls,
                                 "ua": ua, "retain_loss": loss, "passed": bool(ua >= 90 and loss <= 3),
                                 "seconds": time.perf_counter() - start})
                    print(json.dumps(rows[-1]), flush=True)
    return rows


def edit_rows(models: dict[str, Any], val: Any) -> list[dict[str, Any]]:
    rows = []
    for opts in EDIT_GRID:
        for arch, model in models.items():
            pred = netfix.evaluation.predict(model, val).argmax(1)
            base = 100.0 * float((pred == val.y).float().mean())
            wrong = torch.nonzero(pred != val.y).squeeze(1)[:20]
            cases = {"correction": (val.X[wrong], val.y[wrong]),
                     "random-label": (val.X[:20], (val.y[:20] + 1 + torch.arange(20) % 9) % 10)}
            for case, (X, y) in cases.items():
                ok, draw, steps = 0, [], []
                for i in range(len(X)):
                    out = netfix.edit(model, X[i:i + 1], y[i:i + 1], **opts)
                    ok += int(out.success[0])
                    steps.append(out.steps)
                    draw.append(base - netfix.evaluate(out.model, test=val)["test_acc"])
                rows.append({"part": "edit", "options": opts, "arch": arch, "case": case, "edits": len(X),
                             "success": 100.0 * ok / max(1, len(X)), "drawdown": float(np.mean(draw)) if draw else 0.0,
                             "steps": float(np.mean(steps)) if steps else 0.0})
                print(json.dumps(rows[-1]), flush=True)
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    out = []
    if rows and rows[0]["part"] == "unlearn":
        out.append("| method | options | passes | mean retained loss | worst retained loss |")
        out.append("|---|---|---|---|---|")
        keyed: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for r in rows:
            keyed.setdefault((r["method"], json.dumps(r["options"])), []).append(r)
        for (method, opts), rs in keyed.items():
            losses = [r["retain_loss"] for r in rs]
            out.append(f"| {method} | {opts} | {sum(r['passed'] for r in rs)}/{len(rs)} | {np.mean(losses):.2f} | "
                       f"{max(losses):.2f} |")
    else:
        out.append("| options | case | min success | mean drawdown (worst arch) | mean steps |")
        out.append("|---|---|---|---|---|")
        keyed2: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for r in rows:
            keyed2.setdefault((json.dumps(r["options"]), r["case"]), []).append(r)
        for (opts, case), rs in keyed2.items():
            out.append(f"| {opts} | {case} | {min(r['success'] for r in rs):.0f} | "
                       f"{np.mean([r['drawdown'] for r in rs]):.2f} ({max(r['drawdown'] for r in rs):.2f}) | "
                       f"{np.mean([r['steps'] for r in rs]):.1f} |")
    return "\n".join(out)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--part", choices=("unlearn", "edit"), required=True)
    p.add_argument("--archs", default=",".join(ARCHS))
    p.add_argument("--methods", default=",".join(GRIDS), help="unlearn: the methods whose grids run")
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args()
    torch.set_num_threads(1)
    warnings.simplefilter("ignore")
    train, val = splits()
    models = {a: model_for(a, train) for a in args.archs.split(",")}
    rows = unlearn_rows(models, train, val, args.methods.split(",")) if args.part == "unlearn" else \
        edit_rows(models, val)
    args.out.write_text("".join(json.dumps(r) + "\n" for r in rows))
    print(table(rows))


if __name__ == "__main__":
    main()
