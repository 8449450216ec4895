"""``netfix`` command line: a thin map from verbs to the Python API, no logic of its own.

Every verb takes ``--help``, ``--json`` (only JSON on stdout; progress and logs go to stderr) and ``--quiet``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .errors import ConfigError, DataError, NetfixError
from ._tables import text_table as _table
from .scenarios import parse_value

log = logging.getLogger("netfix")


def _common(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.add_argument("--json", action="store_true", help="print only a JSON result on stdout")
    p.add_argument("--quiet", action="store_true", help="no progress bars or logs on stderr")
    return p


def _compute(p: argparse.ArgumentParser) -> None:
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: cuda when available)")


def _data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", default="mnist5k", help="built-in dataset (see `netfix datasets`; default mnist5k)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--scenario", help="fault or deletion request, e.g. mislabel:source=7,target=1, class_forget:cls=0,"
                                      " random_forget:fraction=0.1, backdoor:target=0, label_noise:fraction=0.2")
    g.add_argument("--forget-indices", type=Path, help="file of training-set indices to forget (one per line, or .npy)")


def _parser() -> argparse.ArgumentParser:
    from . import __version__

    p = argparse.ArgumentParser(prog="netfix", description="Repair trained PyTorch classifiers without retraining "
                                "them from scratch, and measure the repair against a retrained reference.")
    p.add_argument("--version", action="version", version=f"netfix {__version__}")
    sub = p.add_subparsers(dest="verb", metavar="VERB")
    sub.required = True

    d = _common(sub.add_parser("demo", help="the main job on built-in data: a faulty model, the fault, the repair",
                               description="Train an MLP on mnist5k with every 7 labelled 1, show the fault, repair "
                               "it and compare with a model retrained from scratch on the corrected data."))
    d.add_argument("--quick", action="store_true", help="fewer epochs (about 30 s)")
    d.add_argument("--out", type=Path, default=Path("runs/demo"), help="run folder (default runs/demo)")
    _compute(d)

    _common(sub.add_parser("datasets", help="list the built-in datasets and whether they are present here"))

    t = _common(sub.add_parser("train", help="train a reference model and save it",
                               description="Train a model from netfix.models on a built-in dataset (optionally on a "
                               "scenario's faulty training set or its retain set) and save it."))
    t.add_argument("--model", default="mlp", help="mlp, lenet or resnet (default mlp)")
    t.add_argument("--model-arg", action="append", default=[], metavar="KEY=VALUE",
                   help="architecture option, e.g. hidden=512,512 or depth=20 (repeatable)")
    _data_args(t)
    t.add_argument("--subset", choices=("train", "retain"), default="train",
                   help="train on the scenario's full (faulty) training set, or on its retain set (the retrained "
                        "reference); default train")
    t.add_argument("--epochs", type=int, default=10, help="passes over the data (default 10)")
    recipe_help = " (default: the model's recipe, netfix.models.recipe(MODEL))"
    t.add_argument("--lr", type=float, default=None, help="learning rate" + recipe_help)
    t.add_argument("--batch-size", type=int, default=None, help="batch size" + recipe_help)
    t.add_argument("--optimizer", default=None, help="adam, adamw or sgd" + recipe_help)
    t.add_argument("--lr-schedule", default=None, help="constant or cosine" + recipe_help)
    t.add_argument("--weight-decay", type=float, default=None, help="weight decay" + recipe_help)
    t.add_argument("--mixed-linear", default=None, metavar="MODULES",
                   help="train a mixed-linear model instead (netfix.mixed): the core on a stratified "
                        "--core-fraction of the data, then user weights for these comma-separated modules "
                        "(e.g. body.3,fc) on the rest; `netfix unlearn --method mixed-linear` then forgets exactly")
    t.add_argument("--core-fraction", type=float, default=0.1, help="mixed-linear: the core's share (default 0.1)")
    t.add_argument("--out", type=Path, default=None, help="model path without extension (default runs/MODEL-DATA)")
    _compute(t)

    for verb, what in (("unlearn", "remove what a forget set taught a saved model"),
                       ("relearn", "teach a saved model the corrected labels of a scenario")):
        u = _common(sub.add_parser(verb, help=what, description=f"{what[0].upper()}{what[1:]}, save the new model and "
                                   "print a before / after table (with --reference, the gap to it)."))
        u.add_argument("model", type=Path, help="saved model (NAME, NAME.safetensors or NAME.json)")
        _data_args(u)
        u.add_argument("--method", default="ogd", help="see `python -c 'import netfix; print(netfix.methods.available())'`"
                                                       " (default ogd)")
        u.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                       help="method option, e.g. objective=ascent or params=layer3,fc (repeatable)")
        u.add_argument("--reference", type=Path, help="saved reference model (e.g. retrained) for gap / agreement")
        u.add_argument("--out", type=Path, default=None, help="new model's path (default: MODEL-METHOD beside MODEL)")
        _compute(u)

    b = sub.add_parser("bench", help="run a benchmark; JSON out, table on stdout",
                       description="Run a benchmark (see `netfix bench list`). Speeds are reported as a ratio to the "
                       "retrain reference measured in the same run (rte, %%).")
    b.add_argument("--json", nargs="?", const="-", default=None, metavar="FILE",
                   help="write the JSON document to FILE (atomic); alone, print it on stdout instead of the table")
    b.add_argument("--quiet", action="store_true", help="no progress bars or logs on stderr")
    b.add_argument("name", help="a bench (ogd-debug, grad-memory, unlearn, forget-score, editable), or list")
    b.add_argument("--quick", action="store_true", help="a smoke-sized run (about a minute)")
    b.add_argument("--seeds", type=int, default=None, help="number of seeds, 0..N-1 (default: 1 quick, 3 full)")
    b.add_argument("--data", default=None, help="built-in dataset (default mnist5k)")
    b.add_argument("--markdown", type=Path, default=None,
                   help="replace this bench's table block in a markdown file, e.g. docs/results.md")
    b.add_argument("--scenario", default=None, help="ogd-debug: only this scenario (mislabel or backdoor)")
    b.add_argument("--samples", type=int, default=None, help="grad-memory: memory samples M (default 300, quick 100)")
    b.add_argument("--variant", default=None, help="grad-memory: gtl, ave or all (default gtl)")
    b.add_argument("--methods", default=None, help="unlearn, forget-score: comma-separated method names "
                                                   "(default: every registered method)")
    b.add_argument("--models", type=int, default=None, help="forget-score: models per method (N, default 16)")
    b.add_argument("--archs", default=None, help="unlearn: comma-separated architectures (default mlp,lenet)")
    b.add_argument("--editors", default=None, help="editable: comma-separated editors (default: all four)")
    b.add_argument("--edits", type=int, default=None, help="editable: number of edits N (default 1000, quick 100)")
    b.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: cuda when available)")

    ed = _common(sub.add_parser("edit", help="change a saved model's predictions on chosen inputs in a few steps",
                                description="Edit a saved model so that the chosen images of a built-in dataset are "
                                "predicted as the given targets (netfix.edit); save the edited model and print "
                                "success, steps and the test accuracy before and after."))
    ed.add_argument("model", type=Path, help="saved model (NAME, NAME.safetensors or NAME.json)")
    ed.add_argument("--data", default="mnist5k", help="built-in dataset the inputs come from (default mnist5k)")
    ed.add_argument("--split", choices=("train", "test"), default="test", help="split of the inputs (default test)")
    ed.add_argument("--indices", required=True, help="comma-separated indices into the split, e.g. 3,17")
    ed.add_argument("--targets", required=True, help="comma-separated target classes, one per index, e.g. 1,5")
    ed.add_argument("--editor", default="rmsprop", help="sgd, momentum, rmsprop or adam (default rmsprop)")
    ed.add_argument("--max-steps", type=int, default=10, help="editor steps at most (default 10)")
    ed.add_argument("--params", default=None, help="comma-separated module prefixes to edit (default: a late block)")
    ed.add_argument("--lr", type=float, default=None, help="editor step size (default: per editor)")
    ed.add_argument("--out", type=Path, default=None, help="edited model's path (default: MODEL-edit beside MODEL)")
    _compute(ed)

    e = _common(sub.add_parser("evaluate", help="measure a saved model (accuracies, fault rate, MIA, gap)"))
    e.add_argument("model", type=Path, help="saved model (NAME, NAME.safetensors or NAME.json)")
    _data_args(e)
    e.add_argument("--reference", type=Path, help="saved reference model (e.g. retrained), for gap / agreement / kl")
    _compute(e)
    return p


def _parse_kv(items: list[str], what: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        key, eq, value = item.partition("=")
        if not eq:
            raise ConfigError(f"{what}: expected KEY=VALUE; got {item!r}.")
        parts = [parse_value(v) for v in value.split(",")]
        out[key] = parts if "," in value else parts[0]
    return out


def _read_indices(path: Path) -> np.ndarray:
    if not path.is_file():
        raise DataError(f"--forget-indices: {path} not found.")
    if path.suffix == ".npy":
        a = np.load(path, allow_pickle=False)
    else:
        try:
            a = np.array([int(line) for line in path.read_text().split() if line.strip()], dtype=np.int64)
        except ValueError:
            raise DataError(f"--forget-indices: {path} must hold one integer per line.") from None
    return a.astype(np.int64) if np.issubdtype(a.dtype, np.integer) else a


def _scenario(args: argparse.Namespace, train: Any, test: Any) -> Any:
    from . import scenarios

    if args.scenario:
        return scenarios.from_spec(args.scenario, train, test)
    if args.forget_indices:
        return scenarios.from_indices(train, test, _read_indices(args.forget_indices))
    return None


def _cmd_demo(args: argparse.Namespace) -> dict[str, Any]:
    from . import demo

    result = demo.run(quick=args.quick, out=args.out, seed=args.seed, device=args.device, progress=not args.quiet)
    result["text"] = ("Fault: every training 7 taught as 1 (mnist5k, MLP). class_acc = accuracy on test 7s; "
                      "fault_rate = % of test 7s predicted 1.\n\n" + _table(result["rows"], demo.COLUMNS)
                      + f"\n\nrun folder: {result['run_dir']}")
    return result


def _cmd_datasets(args: argparse.Namespace) -> dict[str, Any]:
    from . import datasets

    av = datasets.available()
    rows = [{"name": k, "present": "yes" if v["present"] else "no", "source": v["source"]} for k, v in av.items()]
    missing = [f"  {k}: {v['how_to_get']}" for k, v in av.items() if not v["present"]]
    text = _table(rows, ("name", "present", "source")) + ("\n\nto get the missing ones:\n" + "\n".join(missing)
                                                          if missing else "")
    return {"datasets": av, "text": text}


def _cmd_train(args: argparse.Namespace) -> dict[str, Any]:
    from . import datasets, evaluate, models, save, train

    train_set, test_set = datasets.load(args.data)
    s = _scenario(args, train_set, test_set)
    if args.subset == "retain" and s is None:
        raise ConfigError("--subset retain: needs --scenario or --forget-indices to say what is not retained.")
    data = train_set if s is None else (s.retain if args.subset == "retain" else s.train)
    model = models.build(args.model, train_set.input_shape, train_set.num_classes, seed=args.seed,
                         **_parse_kv(args.model_arg, "--model-arg"))
    options = models.recipe(args.model)
    flags = {"lr": args.lr, "batch_size": args.batch_size, "optimizer": args.optimizer,
             "lr_schedule": args.lr_schedule, "weight_decay": args.weight_decay}
    options.update({k: v for k, v in flags.items() if v is not None})
    mixed = None
    if args.mixed_linear:
        from .mixed import MixedLinear, core_user_split

        if s is not None:
            raise ConfigError("--mixed-linear: trains on the whole dataset (core + user); drop --scenario / "
                              "--forget-indices, and forget later with `netfix unlearn --method mixed-linear`.")
        core_idx, user_idx = core_user_split(data, args.core_fraction, args.seed)
        core_data = data.subset(core_idx, f"{args.data}/core")
        out = train(model, core_data, epochs=args.epochs, seed=args.seed, device=args.device,
                    progress=not args.quiet, **options)
        ml = MixedLinear(out.model, [p.strip() for p in args.mixed_linear.split(",") if p.strip()])
        ml = ml.with_preconditioner(core_data, seed=args.seed)
        fitted = ml.fit_user(data.subset(user_idx), seed=args.seed, progress=not args.quiet)
        out.model, out.seconds = fitted.model, out.seconds + fitted.seconds
        mixed = {"core_indices": core_idx.tolist(), "linearize": ml.linearize}
    else:
        out = train(model, data, epochs=args.epochs, seed=args.seed, device=args.device, progress=not args.quiet,
                    **options)
    m = evaluate(out.model, scenario=s, seed=args.seed, device=args.device) if s is not None else \
        evaluate(out.model, test=test_set, device=args.device)
    path = args.out or Path("runs") / f"{args.model}-{args.data}"
    meta = {"data_fingerprint": out.config["data_fingerprint"], "dataset": args.data, "subset": args.subset,
            "scenario": s.describe() if s is not None else None}
    if s is not None:
        meta["forget_indices"] = s.forget_indices.tolist()
    if mixed is not None:
        meta["mixed_linear"] = mixed
    weights = save(out.model, path, meta)
    result = {"model_path": str(weights), "test_acc": m["test_acc"], "seconds": out.seconds,
              "epochs": args.epochs, "recipe": options, "history": out.history, "metrics": dict(m)}
    result["text"] = (f"trained {args.model} on {args.data} ({len(data)} samples, {args.epochs} epochs) in "
                      f"{out.seconds:.1f} s\ntest accuracy: {m['test_acc']:.2f}%\nsaved: {weights}")
    return result


def _cmd_evaluate(args: argparse.Namespace) -> dict[str, Any]:
    from . import datasets, evaluate, load

    model = load(args.model, device=args.device or "cpu")
    reference = load(args.reference, device=args.device or "cpu") if args.reference else None
    train_set, test_set = datasets.load(args.data)
    s = _scenario(args, train_set, test_set)
    m = evaluate(model, scenario=s, reference=reference, seed=args.seed, device=args.device) if s is not None \
        else evaluate(model, test=test_set, reference=reference, seed=args.seed, device=args.device)
    keys = [k for k in ("forget_acc", "ua", "retain_acc", "test_acc", "fault_rate", "fault_acc", "mia_efficacy",
                        "mia_loss_acc", "test_confidence", "agreement", "kl", "gap") if k in m]
    text = _table([{"metric": k, "value": m[k]} for k in keys], ("metric", "value"))
    if s is not None:
        text = f"scenario: {s.name} {s.args} (forget {len(s.forget)}, retain {len(s.retain)}, test {len(s.test)})\n\n" + text
    return {"model": str(args.model), "scenario": s.describe() if s is not None else None, "metrics": dict(m),
            "text": text}


def _cmd_bench(args: argparse.Namespace) -> dict[str, Any]:
    import inspect

    from . import bench
    from .errors import unknown

    if args.name == "list":
        av = bench.available()
        return {"benches": av, "text": _table([{"bench": k, "what": v} for k, v in av.items()], ("bench", "what"))}
    if args.name not in bench.BENCHES:
        raise unknown("bench", args.name, list(bench.BENCHES) + ["list"], "bench")
    if args.seeds is not None and args.seeds < 1:
        raise ConfigError(f"--seeds: expected a number >= 1; got {args.seeds}.")
    options = {k: getattr(args, k) for k in ("scenario", "samples", "variant", "methods", "models", "archs",
                                             "editors", "edits")
               if getattr(args, k) is not None}
    import importlib
    accepted = inspect.signature(importlib.import_module(f"netfix.bench.{bench.BENCHES[args.name].module}").run).parameters
    for k in options:
        if k not in accepted:
            raise ConfigError(f"--{k}: bench {args.name!r} has no such option.")
    path = Path(args.json) if args.json not in (None, "-") else None
    doc = bench.run(args.name, quick=args.quick, seeds=args.seeds, data=args.data, device=args.device,
                    progress=not args.quiet, json_path=path, markdown_path=args.markdown, **options)
    doc["text"] = doc["text"] + (f"\n\nJSON: {path}" if path else "")
    args.json = args.json == "-"  # print the document on stdout only for a bare --json
    return doc


_REPAIR_COLUMNS = ("model", "forget_acc", "retain_acc", "test_acc", "fault_rate", "mia_efficacy", "gap", "seconds")


def _cmd_repair(args: argparse.Namespace) -> dict[str, Any]:
    from . import datasets, evaluate, load, relearn, save, unlearn
    from .io import model_paths

    model = load(args.model, device=args.device or "cpu")
    reference = load(args.reference, device=args.device or "cpu") if args.reference else None
    train_set, test_set = datasets.load(args.data)
    s = _scenario(args, train_set, test_set)
    if s is None:
        raise ConfigError(f"netfix {args.verb}: needs --scenario or --forget-indices to say what to repair.")
    options = _parse_kv(args.option, "--option")
    retain = s.retain
    if args.method == "mixed-linear":  # the user weights were trained on user data only: keep the user samples left
        retain = _remaining_user_data(args.model, s, train_set)
    if args.verb == "unlearn":
        out = unlearn(model, s.forget, retain, method=args.method, seed=args.seed, device=args.device,
                      progress=not args.quiet, **options)
    else:
        if s.corrected is None:
            raise ConfigError(f"--scenario: {s.name} has no corrected labels to relearn; use mislabel, backdoor or "
                              "label_noise, or `netfix unlearn` for a deletion request.")
        out = relearn(model, s.corrected, protect=s.retain, method=args.method, seed=args.seed, device=args.device,
                      progress=not args.quiet, **options)
    rows = []
    for name, m, seconds in (("before", model, None), ("after", out.model, out.seconds)):
        metrics = evaluate(m, scenario=s, reference=reference, seed=args.seed, device=args.device)
        rows.append({"model": name, **{k: metrics[k] for k in _REPAIR_COLUMNS if k in metrics},
                     **({"seconds": seconds} if seconds is not None else {})})
    stem = model_paths(args.model)[0].with_suffix("")
    path = args.out or stem.with_name(f"{stem.name}-{args.method}")
    weights = save(out.model, path, {"method": args.method, "mode": args.verb, "config": out.config,
                                     "scenario": s.describe(), "forget_indices": s.forget_indices.tolist(),
                                     "source_model": str(args.model)})
    text = (f"{args.verb} with {args.method} on {s.name} {s.args} (forget {len(s.forget)}, retain {len(s.retain)})"
            f"\n\n{_table(rows, [c for c in _REPAIR_COLUMNS if any(c in r for r in rows)])}\n\nsaved: {weights}")
    return {"method": args.method, "mode": args.verb, "model_path": str(weights), "scenario": s.describe(),
            "rows": rows, "config": out.config, "history": out.history, "seconds": out.seconds, "text": text}


def _remaining_user_data(model_path: Path, s: Any, train_set: Any) -> Any:
    import torch

    from .io import read_meta

    mixed = (read_meta(model_path).get("meta") or {}).get("mixed_linear")
    if not mixed:
        raise ConfigError("--method mixed-linear: this model was not trained with `netfix train --mixed-linear`, "
                          "so which samples are user data is unknown. Fix: train it that way.")
    core = torch.as_tensor(mixed["core_indices"], dtype=torch.long)
    forget = torch.as_tensor(s.forget_indices, dtype=torch.long)
    clash = sorted(set(core.tolist()) & set(forget.tolist()))
    if clash:
        raise ConfigError(f"--forget-indices: {len(clash)} of them (e.g. {clash[:5]}) are core data, which trains the "
                          "frozen core, not the user weights; a mixed-linear model forgets user data only.")
    keep = torch.ones(len(train_set), dtype=torch.bool)
    keep[core] = False
    keep[forget] = False
    return train_set.subset(torch.nonzero(keep).squeeze(1), "user-remaining")


def _ints(text: str, option: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ConfigError(f"{option}: expected comma-separated integers, e.g. 3,17; got {text!r}.") from None


def _cmd_edit(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from . import datasets, edit, evaluate, load, save
    from .io import model_paths

    model = load(args.model, device=args.device or "cpu")
    train_set, test_set = datasets.load(args.data)
    pool = test_set if args.split == "test" else train_set
    indices, targets = _ints(args.indices, "--indices"), _ints(args.targets, "--targets")
    if not indices:
        raise ConfigError("--indices: no index given; expected e.g. --indices 3,17.")
    if len(indices) != len(targets):
        raise ConfigError(f"--targets: {len(targets)} targets for {len(indices)} indices; expected one per index.")
    bad = [i for i in indices if not 0 <= i < len(pool)]
    if bad:
        raise ConfigError(f"--indices: {bad} out of range for the {args.split} split of {args.data} "
                          f"({len(pool)} samples).")
    options = {"lr": args.lr} if args.lr is not None else {}
    params = [p.strip() for p in args.params.split(",")] if args.params else None
    out = edit(model, pool.X[torch.as_tensor(indices)], torch.as_tensor(targets), editor=args.editor,
               max_steps=args.max_steps, params=params, device=args.device, seed=args.seed, **options)
    before = evaluate(model, test=test_set, device=args.device)["test_acc"]
    after = evaluate(out.model, test=test_set, device=args.device)["test_acc"]
    stem = model_paths(args.model)[0].with_suffix("")
    path = args.out or stem.with_name(f"{stem.name}-edit")
    weights = save(out.model, path, {"method": out.method, "config": out.config, "source_model": str(args.model),
                                     "edits": {"data": args.data, "split": args.split, "indices": indices,
                                               "targets": targets}})
    rows = [{"index": i, "target": t, "success": "yes" if ok else "no"}
            for i, t, ok in zip(indices, targets, out.success)]
    text = (f"{out.method}: {sum(out.success)}/{len(out.success)} edits reached in {out.steps} steps "
            f"({1000 * out.seconds:.0f} ms)\n\n{_table(rows, ('index', 'target', 'success'))}\n\n"
            f"test accuracy: {before:.2f} -> {after:.2f}\nsaved: {weights}")
    return {"method": out.method, "success": out.success, "steps": out.steps, "seconds": out.seconds,
            "test_acc_before": before, "test_acc_after": after, "model_path": str(weights), "config": out.config,
            "text": text}


_VERBS: dict[str, Callable[[argparse.Namespace], dict[str, Any]]] = {
    "demo": _cmd_demo, "datasets": _cmd_datasets, "train": _cmd_train, "evaluate": _cmd_evaluate,
    "unlearn": _cmd_repair, "relearn": _cmd_repair, "bench": _cmd_bench, "edit": _cmd_edit,
}


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``netfix`` command; returns the exit status."""
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet or args.json in (True, "-") else logging.INFO,
                        format="netfix: %(message)s", stream=sys.stderr)
    try:
        result = _VERBS[args.verb](args)
    except NetfixError as e:
        print(f"netfix {args.verb}: error: {e}", file=sys.stderr)
        return 2
    text = result.pop("text", "")
    if args.json:
        json.dump(result, sys.stdout, indent=2, default=str)
        sys.stdout.write("\n")
    else:
        print(text)
    return 0
