"""The ``netfix`` argument parser: every verb and its flags (the shared ones and their checked types:
:mod:`netfix.cli._flags`); ``netfix bench``'s options as the benches declare them (:data:`netfix.bench.BENCHES`)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ._flags import (COUNT, EPOCHS, NONNEGATIVE, POSITIVE, common, compute, data_args, ledger_arg, number,
                     writes_model)


TASKS = """verbs by task (each takes --help):
  start here        demo, datasets, methods
    netfix demo --quick
    netfix methods ogd
  train, measure    train, evaluate
    netfix train --model lenet --data mnist5k --out runs/lenet
    netfix evaluate runs/lenet --explain
  repair a model    unlearn, relearn, edit, edits
    netfix unlearn runs/lenet --scenario class_forget:cls=3 --method ogd
    netfix edit runs/lenet --indices 3,17 --targets 1,5 --editor adaptor
  benchmark, prove  bench, report, ledger
    netfix bench unlearn --quick
    netfix ledger verify"""


def build() -> argparse.ArgumentParser:
    from .._version import __version__

    p = argparse.ArgumentParser(prog="netfix", description="Repair trained PyTorch classifiers without retraining "
                                "them from scratch, and measure the repair against a retrained reference.",
                                epilog=TASKS, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version=f"netfix {__version__}")
    sub = p.add_subparsers(dest="verb", metavar="VERB")
    sub.required = True
    _demo(sub)
    common(sub.add_parser("datasets", help="list the built-in datasets and whether they are present here",
                           description="List the built-in datasets, where each comes from, and whether it is on "
                           "this machine (netfix never downloads)."))
    ms = common(sub.add_parser("methods", help="list the repair methods, or one method's options",
                                description="List every registered method with the modes it supports and a one-line "
                                "summary; with NAME, every option of that method (type, default, unit, valid values, "
                                "meaning), as --option KEY=VALUE takes them. NAME may also be edit, adaptor or "
                                "editable-training.",
                                epilog="examples:\n  netfix methods\n  netfix methods ogd",
                                formatter_class=argparse.RawDescriptionHelpFormatter))
    ms.add_argument("name", nargs="?", default=None, help="a method (or edit, adaptor, editable-training)")
    _train(sub)
    _repair(sub)
    _edit(sub)
    _evaluate(sub)
    _bench(sub)
    _report(sub)
    _ledger(sub)
    return p


def _demo(sub: Any) -> None:
    d = common(sub.add_parser("demo", help="the main job on built-in data: a faulty model, the fault, the repair",
                               description="Train an MLP on mnist5k with every 7 labelled 1, show the fault, repair "
                               "it and compare with a model retrained from scratch on the corrected data. The run "
                               "folder is the demo's own and is replaced on every run."))
    d.add_argument("--quick", action="store_true", help="fewer epochs (about 30 s)")
    d.add_argument("--out", type=Path, default=Path("runs/demo"), help="run folder (default runs/demo)")
    compute(d)


def _train(sub: Any) -> None:
    t = common(sub.add_parser("train", help="train a reference model and save it",
                               description="Train a model from netfix.models on a built-in dataset (optionally on a "
                               "scenario's faulty training set or its retain set) and save it. Without flags, the "
                               "model's own recipe (optimizer, step size, schedule) is used.",
                               epilog="examples:\n"
                                      "  netfix train --model lenet --data mnist5k --out runs/lenet\n"
                                      "  netfix train --data mnist5k --scenario mislabel:source=7,target=1 "
                                      "--out runs/faulty      # a model with a fault to repair\n"
                                      "  netfix train --data mnist5k --scenario mislabel:source=7,target=1 "
                                      "--subset retain --out runs/retrained   # the reference",
                               formatter_class=argparse.RawDescriptionHelpFormatter))
    t.add_argument("--model", default="mlp", help="an architecture of netfix.models (default mlp)")
    t.add_argument("--model-arg", action="append", default=[], metavar="KEY=VALUE",
                   help="architecture option, e.g. hidden=512,512 or depth=20 (repeatable)")
    data_args(t)  # --data defaults to mnist5k, or with --from to the saved model's dataset
    t.add_argument("--subset", choices=("train", "retain"), default="train",
                   help="train on the scenario's full (faulty) training set, or on its retain set (the retrained "
                        "reference); default train")
    t.add_argument("--epochs", type=EPOCHS, default=10, help="passes over the data (default 10)")
    recipe_help = " (default: the model's recipe, netfix.models.recipe(MODEL))"
    t.add_argument("--lr", type=POSITIVE, default=None, help="learning rate" + recipe_help)
    t.add_argument("--batch-size", type=COUNT, default=None, help="batch size" + recipe_help)
    t.add_argument("--optimizer", default=None, help="adam, adamw or sgd" + recipe_help)
    t.add_argument("--lr-schedule", default=None, help="constant or cosine" + recipe_help)
    t.add_argument("--weight-decay", type=NONNEGATIVE, default=None, help="weight decay" + recipe_help)
    t.add_argument("--precision", choices=("fp32", "bf16"), default="fp32",
                   help="bf16: mixed precision (torch.autocast), kept in the recipe the retrain reference repeats "
                        "(default fp32)")
    t.add_argument("--mixed-linear", default=None, metavar="MODULES",
                   help="train a mixed-linear model instead (netfix.methods.mixed_linear): the core on a stratified "
                        "--core-fraction of the data, then user weights for these comma-separated modules "
                        "(e.g. body.3,fc) on the rest; `netfix unlearn --method mixed-linear` then forgets exactly")
    t.add_argument("--core-fraction", type=number(float, 0, 1, low_open=True), default=0.1,
                   help="mixed-linear: the core's share (default 0.1)")
    t.add_argument("--forget-relearn", default=None, metavar="OPERATOR",
                   help="train with a forget-and-relearn schedule (netfix.methods.forget_relearn): this operator, "
                        "e.g. llf, llf:start=body.3, ke:keep=0.8, imp, shrink-perturb, targeted, applied before every "
                        "generation but the first; --epochs is then per generation")
    t.add_argument("--generations", type=COUNT, default=5, help="forget-relearn: generations (default 5)")
    t.add_argument("--from", dest="start", type=Path, default=None, metavar="MODEL",
                   help="fine-tune this saved model instead of building a fresh --model (its architecture is kept)")
    t.add_argument("--editable", action="store_true",
                   help="Editable Training (netfix.EditableTraining): train so that later `netfix edit` calls are "
                        "cheap and local")
    t.add_argument("--edit-block", type=COUNT, default=None, metavar="H",
                   help="add an edit block of H units before the classifier "
                        "(netfix.methods.editing.add_edit_block); with --from, only edit_block and fc are then "
                        "trained, with Adam 1e-3 unless flags say otherwise "
                        "(the measured recipe: --from MODEL --edit-block 1024 --editable --edit-lr 0.004)")
    t.add_argument("--train-params", default=None, metavar="PREFIXES",
                   help="comma-separated module prefixes to train, the rest frozen (default: all; with --from and "
                        "--edit-block: edit_block,fc)")
    t.add_argument("--edit-lr", type=POSITIVE, default=None,
                   help="--editable: hold the editor's step at this size (default: the editor's default step, "
                        "held)")
    t.add_argument("--edit-sequential", type=COUNT, default=1, metavar="S",
                   help="--editable: train for S edits applied one after another per batch, all of which must "
                        "still hold after the last (default 1: one edit, as the paper)")
    writes_model(t, "model (default runs/MODEL-DATA)")


def _repair(sub: Any) -> None:
    for verb, what in (("unlearn", "remove what a forget set taught a saved model"),
                       ("relearn", "teach a saved model the corrected labels of a scenario")):
        u = common(sub.add_parser(verb, help=what, description=f"{what[0].upper()}{what[1:]}, save the new model and "
                                   "print a before / after table (with --reference, the reference's row and the gap "
                                   "to it). A run that changes no weight saves nothing and exits with status 2."))
        u.add_argument("model", type=Path, help="saved model (NAME or NAME.safetensors)")
        data_args(u)
        auto = (", or auto: the one the benches found closest to retraining for this kind of request (random "
                "samples, a class, a fault) within --budget (netfix.methods.recommend)") if verb == "unlearn" else ""
        u.add_argument("--method", default="ogd",
                       help=f"a registered method (netfix.methods.available(); default ogd){auto}")
        if verb == "unlearn":
            u.add_argument("--budget", type=POSITIVE, default=None, metavar="RTE%",
                           help="--method auto: the largest cost, in %% of retraining's time on the benches "
                                "(default: any cost)")
            u.add_argument("--heldout-indices", type=Path, default=None, metavar="FILE",
                           help="test-split indices held out for the methods that read data the model never saw "
                                "(unseen, reference-guided; one per line or a .npy of integers); the run is then "
                                "evaluated on the rest of the test split")
        u.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                       help="method option, e.g. objective=ascent or params=layer3,fc (repeatable)")
        u.add_argument("--guard", metavar="off|KEY=VALUE,...", default=None,
                       help="the guard on retained accuracy (netfix.methods.Guard): 'off', or its options, e.g. "
                            "tolerance=5,collapse=20 (default: on for unlearn, off for relearn)")
        u.add_argument("--reference", type=Path, help="saved reference model (e.g. retrained) for gap / agreement")
        writes_model(u, "new model's (default: MODEL-METHOD beside MODEL)")


def _edit(sub: Any) -> None:
    ed = common(sub.add_parser("edit", help="change a saved model's predictions on chosen inputs in a few steps",
                                description="Edit a saved model so that the chosen images of a built-in dataset are "
                                "predicted as the given targets (netfix.edit); save the edited model and print, per "
                                "input, its true label and the prediction before and after, and the test accuracy "
                                "before and after."))
    ed.add_argument("model", type=Path, help="saved model (NAME or NAME.safetensors)")
    data_args(ed, scenario=False)
    ed.add_argument("--split", choices=("train", "test"), default="test", help="split of the inputs (default test)")
    ed.add_argument("--indices", required=True, help="comma-separated indices into the split, e.g. 3,17")
    ed.add_argument("--targets", required=True, help="comma-separated target classes, one per index, e.g. 1,5")
    ed.add_argument("--editor", default="rmsprop",
                    help="sgd, momentum, rmsprop or adam (gradient editors: change weights), or adaptor (a key-value "
                         "entry per input that changes no weight: for edits that accumulate; see `netfix edits`) "
                         "(default rmsprop)")
    ed.add_argument("--no-rehearsal", action="store_true",
                    help="do not rehearse the model's training data (default: a seeded sample of it is kept as it "
                         "was: the gradient editors keep its predictions, the adaptor keeps its keys clear of it)")
    ed.add_argument("--max-steps", type=COUNT, default=10, help="editor steps at most (default 10)")
    ed.add_argument("--params", default=None, help="comma-separated module prefixes to edit (default: a late block)")
    ed.add_argument("--lr", type=POSITIVE, default=None, help="editor step size (default: per editor)")
    writes_model(ed, "edited model's (default: MODEL-edit beside MODEL)")
    hist = common(sub.add_parser("edits", help="list the edits a saved model holds, or revert one",
                                  description="List the edits a saved model holds (id, kind, editor, target, when), "
                                  "or, with --revert ID, save a copy without that edit: an adaptor entry is removed "
                                  "exactly; a weight edit can be undone when it is the most recent one (its weights "
                                  "are restored bit for bit). The revert is recorded in the ledger.",
                                  epilog="examples:\n  netfix edits runs/model-edit\n"
                                         "  netfix edits runs/model-edit --revert 3 --out runs/model-fixed",
                                  formatter_class=argparse.RawDescriptionHelpFormatter))
    hist.add_argument("model", type=Path, help="saved model (NAME or NAME.safetensors)")
    data_args(hist, scenario=False)
    hist.add_argument("--revert", type=COUNT, default=None, metavar="ID", help="the edit to remove (an id the list "
                      "shows)")
    writes_model(hist, "reverted model's (default: MODEL-revert-ID beside MODEL)")


def _evaluate(sub: Any) -> None:
    e = common(sub.add_parser("evaluate", help="measure a saved model (accuracies, fault rate, MIA, gap)",
                               description="Measure a saved model on its dataset's test split, or on a scenario's "
                               "forget / retain / test sets: accuracies, fault rate, membership-inference attacks "
                               "and, with --reference, agreement, KL and the gap to the reference."))
    e.add_argument("model", type=Path, nargs="?", default=None, help="saved model (NAME or NAME.safetensors)")
    data_args(e)
    e.add_argument("--reference", type=Path, help="saved reference model (e.g. retrained), for gap / agreement / kl")
    e.add_argument("--explain", action="store_true", help="alone: what each metric (UA, RA, TA, MIA-efficacy, gap, "
                   "rte, ...) means, one line each; every table shows the meaning beside the value anyway")
    compute(e)


def _bench(sub: Any) -> None:
    b = sub.add_parser("bench", help="run a benchmark; JSON out, table on stdout",
                       description="Run a benchmark (see `netfix bench list`). Speeds are reported as a ratio to the "
                       "retrain reference measured in the same run (rte, in percent).")
    b.add_argument("--json", nargs="?", const="-", default=None, metavar="FILE",
                   help="write the JSON document to FILE (atomic); alone, print it on stdout instead of the table")
    b.add_argument("--quiet", action="store_true", help="no progress bars or logs on stderr")
    b.add_argument("--progress", action="store_true", help="progress bars even when stderr is not a terminal")
    b.add_argument("--overwrite", action="store_true", help="replace an existing --json FILE (default: refuse)")
    from ..bench import BENCHES

    b.add_argument("name", help=f"a bench ({', '.join(BENCHES.names())}), or list")
    b.add_argument("--quick", action="store_true", help="a smoke-sized run")
    b.add_argument("--seeds", type=number(int, 1, 1000), default=None,
                   help="number of seeds, 0..N-1 (default: 1 quick, 3 full)")
    b.add_argument("--data", default=None, help="built-in dataset (default mnist5k)")
    b.add_argument("--markdown", type=Path, default=None,
                   help="replace this bench's table block in a markdown file, e.g. docs/results.md")
    declared: dict[str, dict[Any, list[str]]] = {}  # option -> what it sets -> the benches where it sets that
    for name, info in BENCHES.items():
        for key, option in info.options.items():
            declared.setdefault(key, {}).setdefault(option, []).append(name)
    for key, uses in declared.items():
        first = next(iter(uses))
        b.add_argument(f"--{key.replace('_', '-')}", dest=key, type=COUNT if first.type is int else str, default=None,
                       metavar=first.metavar, help="; ".join(f"{', '.join(names)}: {option.help}"
                                                             for option, names in uses.items()))
    b.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: cuda when available)")


def _report(sub: Any) -> None:
    r = common(sub.add_parser("report", help="render a run folder's results as one self-contained HTML file",
                               description="Render the run documents in RUN_DIR (a command's *.run.json, a bench's "
                               "JSON, the demo's metrics.json) as one HTML file with the before / after / reference "
                               "table first, then the plots; images are embedded, nothing is fetched."))
    r.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="run folder or one run document (JSON)")
    r.add_argument("-o", "--out", type=Path, default=None,
                   help="output file (default RUN_DIR/report.html, or FILE.html beside a single FILE.json)")


def _ledger(sub: Any) -> None:
    """``netfix ledger list | show ID | head | verify``; --ledger, --json and --quiet go before or after."""
    lg = common(sub.add_parser("ledger", help="list, show or verify the tamper-evident record of runs",
                                description="Every train / unlearn / relearn / edit run is recorded in a hash-chained "
                                "ledger with the sha256 of the model files it read and wrote. verify re-checks the "
                                "chain and every file, and exits with status 1 on any problem; head prints the "
                                "newest record's ID:HASH to publish, and verify --head checks the chain still "
                                "holds it (catching truncation and rewrites)."))
    ledger_arg(lg, what="to read")
    cmds = lg.add_subparsers(dest="ledger_command", metavar="COMMAND")
    cmds.required = True
    for name, what in (("list", "every run, oldest first"), ("show", "one record in full"),
                       ("head", "the newest record's ID:HASH, to publish somewhere else"),
                       ("verify", "check the hash chain and every recorded file; exit status 1 on a problem")):
        c = cmds.add_parser(name, help=what, description=what[0].upper() + what[1:] + ".")
        if name == "show":
            c.add_argument("id", type=number(int, 1), help="record id (see `netfix ledger list`)")
        if name == "verify":
            c.add_argument("--head", default=None, metavar="ID:HASH",
                           help="a head published earlier (`netfix ledger head`): fail unless the chain still "
                                "holds it unchanged")
        # SUPPRESS: given here they override the verb's options; absent, they leave them alone
        c.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="print only JSON on stdout")
        c.add_argument("--quiet", action="store_true", default=argparse.SUPPRESS, help="no logs on stderr")
        ledger_arg(c, argparse.SUPPRESS, "to read")
