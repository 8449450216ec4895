"""Pick Editable Training's coefficients and the editors' step sizes for the ResNet bench on a validation split.

Fashion-MNIST's training set is split: 50,000 images to train on (of which the first ``--train`` are used, to keep
the sweep affordable on a CPU) and 10,000 held out. Edits are 100 held-out images given uniformly random wrong
labels (seed 9); drawdown is measured on 2,000 other held-out images. The test split is never read.

1. Baseline: ResNet-8 (width 16) with the bench's recipe (Adam, as the paper trains editable models). For each editor, every step size of a small grid is
   measured; the choice is the one with the least drawdown among those reaching 100 % success within 10 steps.
2. Editable Training (RMSProp editor starting at the step size chosen in 1, layer3 + fc, second order) for each
   (c_edit, c_loc) of a grid, same initialisation and epochs; the choice is the least RMSProp drawdown whose
   held-out accuracy is within 1 point of the baseline's and whose mean steps are <= 3. c_edit stays at the paper's
   0.01: the edit term trains the unedited model towards one random label per batch, and c_edit = 0.1 or 1 cost
   17-58 points of held-out accuracy in a first sweep.

3. ``--phase block`` (the edit-block recipe, issue 6): the baseline trained on all 50,000 images for the bench's
   epochs, an :class:`~netfix.models.EditBlock` of ``--hidden`` units inserted before ``fc``, then ``edit_block``
   + ``fc`` fine-tuned for ``--finetune-epochs`` twice from the same insertion: plainly (``block``) and with
   Editable Training (``editable``, c_edit = c_loc = the paper's 0.01, RMSProp editor on ``edit_block.out``).
   Every editor's step size is measured on a grid for both; the bench takes, per editor and arm, the least
   drawdown reaching 100 % success within 10 steps with mean steps <= 3 (the issue's step target).

   Editable Training's editor step: learned from ``--et-lr`` (the paper's way) or, with ``--fixed-editor-lr``,
   held at it.

4. ``--phase finetune``: the fine-tuning alternative's SGD step (``EditFinetuneConfig.lr``) on the baseline, same rule.

Run: ``.venv/bin/python benchmarks/editable_select.py --phase lr --train 20000 --epochs 3``,
``... --phase c --train 20000 --epochs 6`` and ``... --phase block --train 50000 --epochs 5``; output: JSON lines
(docs/editable_select.jsonl).
"""

from __future__ import annotations

import argparse
import json
import time

import torch

import netfix
from netfix.edit_metrics import measure_edits
from netfix.bench.editable import EDIT_LR, RECIPE
from netfix.methods.editing import EDITORS, EditableTraining

PARAMS = ["layer3", "fc"]
LR_GRID = {"sgd": [3e-4, 1e-3, 3e-3, 1e-2], "momentum": [3e-5, 1e-4, 3e-4, 1e-3],
           "rmsprop": [1e-4, 2e-4, 3e-4, 1e-3], "adam": [1e-4, 2e-4, 3e-4, 1e-3]}
C_GRID = [(0.01, 0.01), (0.01, 0.1), (0.01, 1.0)]
FINETUNE_GRID = [1e-5, 3e-5, 1e-4, 3e-4]
BLOCK_GRID = {"sgd": [0.03, 0.05, 0.1, 0.2], "momentum": [0.01, 0.02, 0.03, 0.05],
              "rmsprop": [2e-3, 3e-3, 4e-3, 5e-3, 7e-3], "adam": [2e-3, 3e-3, 4e-3, 5e-3, 7e-3]}


def emit(**row: object) -> None:
    print(json.dumps(row), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--train", type=int, default=20000)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--phase", choices=["lr", "c", "both", "block", "finetune"], default="both")
    ap.add_argument("--hidden", type=int, default=1024)
    ap.add_argument("--finetune-epochs", type=int, default=10)
    ap.add_argument("--arms", default="block,editable", help="block phase: which fine-tunes to run")
    ap.add_argument("--et-lr", default=None, help="block phase: comma-separated editor step sizes for Editable "
                    "Training (default: the bench's ET_START_LR)")
    ap.add_argument("--fixed-editor-lr", action="store_true", help="block phase: do not learn the editor's step")
    ap.add_argument("--lrs", default=None, help="finetune phase: comma-separated step sizes (default FINETUNE_GRID)")
    ap.add_argument("--base", default=None, help="block phase: a saved baseline trained by this protocol (skips "
                    "training it again)")
    args = ap.parse_args()
    torch.set_num_threads(2)
    train, _ = netfix.datasets.load("fashion-mnist")
    perm = torch.randperm(len(train), generator=torch.Generator().manual_seed(0))
    fit, held = train.subset(perm[:args.train]), train.subset(perm[50000:])
    g = torch.Generator().manual_seed(9)
    order = torch.randperm(len(held), generator=g)
    X, y = held.X[order[:100]], held.y[order[:100]]
    targets = (y + torch.randint(1, 10, y.shape, generator=g)) % 10
    dd = held.subset(order[100:2100])

    def build() -> torch.nn.Module:
        return netfix.models.build("resnet", train.input_shape, 10, seed=0, depth=8, width=16)

    recipe = dict(RECIPE)
    if args.phase == "block":
        return block_phase(args, build, fit, X, targets, dd)
    if args.phase == "finetune":
        return finetune_phase(args, build, fit, X, targets, dd)
    base = netfix.train(build(), fit, epochs=args.epochs, seed=0, progress=False, **recipe)
    emit(phase="baseline", seconds=round(base.seconds, 1), held_acc=netfix.evaluate(base.model, test=dd)["test_acc"])
    if args.phase in ("lr", "both"):
        for editor in EDITORS:
            for lr in LR_GRID[editor]:
                m = measure_edits(base.model, X, targets, dd, editor=editor, lr=lr, params=PARAMS, progress=False)
                emit(phase="lr", editor=editor, lr=lr, **{k: v for k, v in m.row().items() if k != "method"})
    if args.phase in ("c", "both"):
        m = measure_edits(base.model, X, targets, dd, editor="rmsprop", lr=EDIT_LR["rmsprop"], progress=False)
        emit(phase="c", training="baseline", **{k: v for k, v in m.row().items() if k != "method"})
        for c_edit, c_loc in C_GRID:
            ed = EditableTraining(c_edit=c_edit, c_loc=c_loc, lr=EDIT_LR["rmsprop"], edit_params=PARAMS)
            t = time.perf_counter()
            out = netfix.train(build(), fit, epochs=args.epochs, seed=0, progress=False, editable=ed, **recipe)
            m = measure_edits(out.model, X, targets, dd, editor="rmsprop", progress=False)
            emit(phase="c", c_edit=c_edit, c_loc=c_loc, seconds=round(time.perf_counter() - t, 1),
                 editor_lr=ed.editor_lr, **{k: v for k, v in m.row().items() if k != "method"})


def block_phase(args: argparse.Namespace, build, fit, X, targets, dd) -> None:  # type: ignore[no-untyped-def]
    from netfix.bench.editable import BLOCK_PARAMS, C_EDIT, C_LOC, ET_START_LR, FINETUNE
    from netfix.methods.editing import add_edit_block

    if args.base:
        base_model = netfix.load(args.base)
    else:
        base = netfix.train(build(), fit, epochs=args.epochs, seed=0, progress=False, **RECIPE)
        base_model = base.model
        emit(phase="block", arm="baseline", seconds=round(base.seconds, 1),
             held_acc=netfix.evaluate(base_model, test=dd)["test_acc"])
    inserted = add_edit_block(base_model, args.hidden, seed=0)
    runs: list[tuple[str, float | None]] = []
    for arm in args.arms.split(","):
        if arm == "block":
            runs.append(("block", None))
        else:
            runs += [("editable", float(v)) for v in (args.et_lr.split(",") if args.et_lr else [ET_START_LR])]
    for arm, et_lr in runs:
        ed = EditableTraining(c_edit=C_EDIT, c_loc=C_LOC, lr=et_lr, edit_params=BLOCK_PARAMS,
                              learn_editor_lr=not args.fixed_editor_lr) if et_lr is not None else None
        out = netfix.train(inserted, fit, epochs=args.finetune_epochs, seed=0, progress=False, editable=ed,
                           params=["edit_block", "fc"], **FINETUNE)
        tag = {} if ed is None else {"et_lr": et_lr, "learn_editor_lr": ed.learn_editor_lr}
        emit(phase="block", arm=arm, hidden=args.hidden, seconds=round(out.seconds, 1), **tag,
             editor_lr=ed.editor_lr if ed else None, held_acc=netfix.evaluate(out.model, test=dd)["test_acc"])
        for editor, grid in BLOCK_GRID.items():
            for lr in grid:
                m = measure_edits(out.model, X, targets, dd, editor=editor, lr=lr, params=BLOCK_PARAMS, perturb={},
                                  progress=False)
                emit(phase="block", arm=arm, **tag, editor=editor, lr=lr,
                     **{k: v for k, v in m.row().items() if k not in ("method",)})

def finetune_phase(args: argparse.Namespace, build, fit, X, targets, dd) -> None:  # type: ignore[no-untyped-def]
    """The fine-tuning alternative's SGD step on the baseline (the bench's ``finetune-on-edits`` row)."""
    from netfix.edit_metrics import EditFinetuneConfig

    base_model = netfix.load(args.base) if args.base else \
        netfix.train(build(), fit, epochs=args.epochs, seed=0, progress=False, **RECIPE).model
    for lr in [float(v) for v in args.lrs.split(",")] if args.lrs else FINETUNE_GRID:
        m = measure_edits(base_model, X, targets, dd, editor="finetune", replay=fit, perturb={}, progress=False,
                          finetune=EditFinetuneConfig(lr=lr))
        emit(phase="finetune", lr=lr, **{k: v for k, v in m.row().items() if k not in ("method",)})


if __name__ == "__main__":
    main()
