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
    t.add_argument("--forget-relearn", default=None, metavar="OPERATOR",
                   help="train with a forget-and-relearn schedule (netfix.forgetting): this operator, e.g. llf, "
                        "llf:start=body.3, ke:keep=0.8, imp, shrink-perturb, targeted, applied before every "
                        "generation but the first; --epochs is then per generation")
    t.add_argument("--generations", type=int, default=5, help="forget-relearn: generations (default 5)")
    t.add_argument("--from", dest="start", type=Path, default=None, metavar="MODEL",
                   help="fine-tune this saved model instead of building a fresh --model (its architecture is kept)")
    t.add_argument("--editable", action="store_true",
                   help="Editable Training (netfix.EditableTraining): train so that later `netfix edit` calls are "
                        "cheap and local")
    t.add_argument("--edit-block", type=int, default=None, metavar="H",
                   help="add an edit block of H units before the classifier (netfix.editing.add_edit_block); with "
                        "--from, only edit_block and fc are then trained, with Adam 1e-3 unless flags say otherwise "
                        "(the measured recipe: --from MODEL --edit-block 1024 --editable --edit-lr 0.004)")
    t.add_argument("--train-params", default=None, metavar="PREFIXES",
                   help="comma-separated module prefixes to train, the rest frozen (default: all; with --from and "
                        "--edit-block: edit_block,fc)")
    t.add_argument("--edit-lr", type=float, default=None,
                   help="--editable: hold the editor's step at this size (default: learn it from the editor's "
                        "default step)")
    t.add_argument("--out", type=Path, default=None, help="model path without extension (default runs/MODEL-DATA)")
    _compute(t)
    _ledger_arg(t)

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
        _ledger_arg(u)

    r = _common(sub.add_parser("report", help="render a run folder's results as one self-contained HTML file",
                               description="Render the run documents in RUN_DIR (a command's *.run.json, a bench's "
                               "JSON, the demo's metrics.json) as one HTML file with the before / after / reference "
                               "table first, then the plots; images are embedded, nothing is fetched."))
    r.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="run folder or one run document (JSON)")
    r.add_argument("-o", "--out", type=Path, default=None,
                   help="output file (default RUN_DIR/report.html, or FILE.html beside a single FILE.json)")

    b = sub.add_parser("bench", help="run a benchmark; JSON out, table on stdout",
                       description="Run a benchmark (see `netfix bench list`). Speeds are reported as a ratio to the "
                       "retrain reference measured in the same run (rte, %%).")
    b.add_argument("--json", nargs="?", const="-", default=None, metavar="FILE",
                   help="write the JSON document to FILE (atomic); alone, print it on stdout instead of the table")
    b.add_argument("--quiet", action="store_true", help="no progress bars or logs on stderr")
    b.add_argument("name", help="a bench (ogd-debug, grad-memory, unlearn, forget-score, editable, mixed-linear, "
                                     "forget-relearn, scale), or list")
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
    _ledger_arg(ed)

    e = _common(sub.add_parser("evaluate", help="measure a saved model (accuracies, fault rate, MIA, gap)"))
    e.add_argument("model", type=Path, help="saved model (NAME, NAME.safetensors or NAME.json)")
    _data_args(e)
    e.add_argument("--reference", type=Path, help="saved reference model (e.g. retrained), for gap / agreement / kl")
    _compute(e)
    _ledger_parser(sub)
    return p


def _ledger_arg(p: argparse.ArgumentParser, default: Any = None, what: str = "the run is recorded in") -> None:
    p.add_argument("--ledger", type=Path, default=default, metavar="PATH",
                   help=f"ledger file {what} (default $NETFIX_HOME/ledger.sqlite, NETFIX_HOME "
                        "defaulting to ~/.netfix)")


def _ledger_parser(sub: Any) -> None:
    """``netfix ledger list | show ID | verify``; --ledger, --json and --quiet go before or after the command."""
    lg = _common(sub.add_parser("ledger", help="list, show or verify the tamper-evident record of runs",
                                description="Every train / unlearn / relearn / edit run is recorded in a hash-chained "
                                "ledger with the sha256 of the model files it read and wrote. verify re-checks the "
                                "chain and every file, and exits with status 1 on any problem."))
    _ledger_arg(lg, what="to read")
    cmds = lg.add_subparsers(dest="ledger_command", metavar="COMMAND")
    cmds.required = True
    for name, what in (("list", "every record, oldest first"), ("show", "one record in full"),
                       ("verify", "check the hash chain and every recorded file; exit status 1 on a problem")):
        c = cmds.add_parser(name, help=what, description=what[0].upper() + what[1:] + ".")
        if name == "show":
            c.add_argument("id", type=int, help="record id (see `netfix ledger list`)")
        # SUPPRESS: given here they override the verb's options; absent, they leave them alone
        c.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="print only JSON on stdout")
        c.add_argument("--quiet", action="store_true", default=argparse.SUPPRESS, help="no logs on stderr")
        _ledger_arg(c, argparse.SUPPRESS, "to read")


def _cmd_ledger(args: argparse.Namespace) -> dict[str, Any]:
    from .ledger import Ledger, ledger_path

    path = ledger_path(args.ledger)
    if not path.is_file():
        raise ConfigError(f"--ledger: {path} not found. Fix: record a run first (netfix train / unlearn / relearn / "
                          "edit), or pass --ledger PATH.")
    with Ledger(path) as led:
        if args.ledger_command == "show":
            rec = led.get(args.id)
            return {"ledger": str(path), "record": rec, "text": json.dumps(rec, indent=2)}
        if args.ledger_command == "verify":
            a = led.audit()
            text = (f"ok: {a.records} records, {a.files} files checked\nhead: {a.head}" if a.ok else
                    "\n".join(a.problems) + f"\n{len(a.problems)} problem(s) in {path}")
            return {"ledger": str(path), "ok": a.ok, "problems": a.problems, "records": a.records, "files": a.files,
                    "head": a.head, "_exit": 0 if a.ok else 1, "text": text}
        records = led.list()
    rows = []
    for r in records:
        p = r["payload"] if isinstance(r["payload"], dict) else {}
        model = (p.get("files") or {}).get("model") or {}
        rows.append({"id": r["id"], "created": r["created"][:19], "kind": r["kind"], "method": p.get("method"),
                     "model": model.get("path") if isinstance(model, dict) else None})
    return {"ledger": str(path), "records": records,
            "text": _table(rows, ("id", "created", "kind", "method", "model")) + f"\n\nledger: {path}"}


def _record(args: argparse.Namespace, kind: str, weights: Path, source: Path | None = None,
            certificate: Path | None = None, **payload: Any) -> dict[str, Any]:
    """Append this run to the ledger: the model files written (and read, and the certificate) by sha256, and
    ``payload``; returns the result keys that name the record."""
    from .io import model_paths
    from .ledger import ledger_path, record_run

    files: dict[str, Path] = dict(zip(("model", "model_sidecar"), model_paths(weights)))
    if certificate is not None:
        files["certificate"] = certificate
    inputs: dict[str, Path] = {}
    for role, p in (("source", source), ("reference", getattr(args, "reference", None))):
        if p is not None:
            inputs.update(zip((role, f"{role}_sidecar"), model_paths(p)))
    rid = record_run(kind, files=files, inputs=inputs, ledger=args.ledger, **payload)
    proof: dict[str, Any] = {"ledger": str(ledger_path(args.ledger)), "ledger_record": rid}
    if certificate is not None:
        proof["certificate"] = str(certificate)
    return proof


def _proof_text(proof: dict[str, Any]) -> str:
    return (f"\nledger: record {proof['ledger_record']} in {proof['ledger']}"
            + (f"\ncertificate: {proof['certificate']}" if "certificate" in proof else ""))


def _certify(args: argparse.Namespace, weights: Path, s: Any, out: Any, after: dict[str, Any]) -> Path:
    """Write ``<new model>.certificate.json`` for an unlearn run (netfix.ledger.certificate)."""
    from .ledger import certificate, write_certificate

    last = out.history[-1] if out.history else {}
    bound = {k: last[k] for k in ("distance_bound", "kl_bound", "grad_norm", "sigma") if k in last} or None
    cert = certificate(args.model, weights, s.forget_indices, args.method, out.config,
                       {k: v for k, v in after.items() if k != "reference"}, after.get("reference"), bound,
                       out.seconds)
    return write_certificate(cert, weights.with_name(weights.name[:-len(".safetensors")] + ".certificate.json"))


_SPEC_OPTIONS = ("operator",)


def _parse_kv(items: list[str], what: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        key, eq, value = item.partition("=")
        if not eq:
            raise ConfigError(f"{what}: expected KEY=VALUE; got {item!r}.")
        if key in _SPEC_OPTIONS:  # a NAME:key=value,... spec: its commas are its own
            out[key] = value
            continue
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
                      + f"\n\nrun folder: {result['run_dir']}\nreport: {result['report']}")
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
    model, options, train_params, model_desc = _train_start(args, train_set)
    flags = {"lr": args.lr, "batch_size": args.batch_size, "optimizer": args.optimizer,
             "lr_schedule": args.lr_schedule, "weight_decay": args.weight_decay}
    options.update({k: v for k, v in flags.items() if v is not None})
    mixed = None
    if args.editable or train_params is not None:
        from .editing import EditableTraining

        editable = EditableTraining(lr=args.edit_lr, learn_editor_lr=args.edit_lr is None) if args.editable else None
        out = train(model, data, epochs=args.epochs, seed=args.seed, device=args.device, progress=not args.quiet,
                    editable=editable, params=train_params, **options)
    elif args.mixed_linear:
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
    elif args.forget_relearn:
        from .forgetting import ForgetRelearn

        schedule = ForgetRelearn(args.forget_relearn, args.generations, args.epochs)
        out = train(model, data, schedule=schedule, seed=args.seed, device=args.device, progress=not args.quiet,
                    **options)
    else:
        out = train(model, data, epochs=args.epochs, seed=args.seed, device=args.device, progress=not args.quiet,
                    **options)
    m = evaluate(out.model, scenario=s, seed=args.seed, device=args.device) if s is not None else \
        evaluate(out.model, test=test_set, device=args.device)
    if args.out:
        path = args.out
    elif args.start:
        path = args.start.with_name(f"{args.start.name}-{'editable' if args.editable else 'finetuned'}")
    else:
        path = Path("runs") / f"{model_desc['name']}-{args.data}"
    meta = {"data_fingerprint": out.config["data_fingerprint"], "dataset": args.data, "subset": args.subset,
            "scenario": s.describe() if s is not None else None}
    if s is not None:
        meta["forget_indices"] = s.forget_indices.tolist()
    if mixed is not None:
        meta["mixed_linear"] = mixed
    weights = save(out.model, path, meta)
    result = {"model_path": str(weights), "test_acc": m["test_acc"], "seconds": out.seconds,
              "epochs": args.epochs, "recipe": options, "history": out.history, "metrics": dict(m)}
    from .ledger import indices_digest

    result.update(_record(args, "train", weights, method="train", config=out.config,
                          model=model_desc,
                          data={"name": args.data, "subset": args.subset, "fingerprint": out.config["data_fingerprint"],
                                "scenario": s.describe() if s is not None else None,
                                "forget_set": indices_digest(s.forget_indices) if s is not None else None},
                          metrics=dict(m), seconds=out.seconds))
    if args.forget_relearn:
        gens = [h for h in out.history if "train_acc" in h]
        result["generations"] = gens
        result["text_extra"] = "\n" + _table(gens, [c for c in ("generation", "loss", "train_acc",
                                                                  "train_acc_after_forgetting", "seconds")])
    result["text"] = (f"trained {model_desc['name']} on {args.data} ({len(data)} samples, {out.config['epochs']} epochs) in "
                      f"{out.seconds:.1f} s\ntest accuracy: {m['test_acc']:.2f}%\nsaved: {weights}"
                      + result.pop("text_extra", ""))
    result["text"] += _proof_text(result)
    return result


def _train_start(args: argparse.Namespace, train_set: Any) -> tuple[Any, dict[str, Any], Any, dict[str, Any]]:
    """The model `netfix train` starts from, its recipe, the parameters it trains (None = all) and how the ledger
    names it: a fresh --model, or a saved one (--from), with an edit block added when asked."""
    from . import load, models
    from .editing import FINETUNE_RECIPE, add_edit_block

    if args.start is not None or args.editable or args.edit_block is not None:
        if args.mixed_linear or args.forget_relearn:
            raise ConfigError("--from / --editable / --edit-block: train an ordinary model; drop --mixed-linear and "
                              "--forget-relearn.")
    if args.edit_lr is not None and not args.editable:
        raise ConfigError("--edit-lr: sets Editable Training's editor step; add --editable.")
    train_params = [p.strip() for p in args.train_params.split(",") if p.strip()] if args.train_params else None
    if args.start is not None:
        if args.model_arg:
            raise ConfigError("--model-arg: --from keeps the saved model's architecture; drop --model-arg.")
        model = load(args.start, device="cpu")
        spec = getattr(model, "netfix_spec", {}) or {}
        name = spec.get("name", type(model).__name__)
        options = dict(getattr(model, "netfix_recipe", None) or {}) or (
            models.recipe(name) if name in models.available() else {})
        options.pop("epochs", None)  # the recipe's other fields are netfix.train's keyword arguments
        if args.edit_block is not None:
            model = add_edit_block(model, args.edit_block, seed=args.seed)
            options = dict(FINETUNE_RECIPE)
            train_params = train_params or ["edit_block", "fc"]
        desc = {"name": name, "args": spec.get("kwargs", {}), "from": str(args.start)}
        return model, options, train_params, desc
    kwargs = _parse_kv(args.model_arg, "--model-arg")
    if args.edit_block is not None:
        kwargs["edit_block"] = args.edit_block
    model = models.build(args.model, train_set.input_shape, train_set.num_classes, seed=args.seed, **kwargs)
    return model, models.recipe(args.model), train_params, {"name": args.model, "args": kwargs}


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
    from . import report

    html_path = path.with_suffix(".html") if path else Path("runs") / "bench" / f"{args.name}.html"
    report.write({**doc, "title": f"netfix bench {args.name}"}, html_path)
    doc["report"] = str(html_path)
    doc["text"] = doc["text"] + (f"\n\nJSON: {path}" if path else "") + f"\nreport: {html_path}"
    args.json = args.json == "-"  # print the document on stdout only for a bare --json
    return doc


def _cmd_report(args: argparse.Namespace) -> dict[str, Any]:
    from . import report

    docs = report.collect(args.run_dir)
    default = args.run_dir / "report.html" if args.run_dir.is_dir() else args.run_dir.with_suffix(".html")
    path = report.write(docs, args.out or default)
    return {"report": str(path), "documents": len(docs), "text": f"report: {path}"}


def _write_run(stem: Path, doc: dict[str, Any]) -> dict[str, str]:
    """Write a command's run document (``STEM.run.json``) and its report (``STEM.report.html``) beside its model."""
    from . import report
    from .io import atomic_write

    run_json = stem.with_name(stem.name + ".run.json")
    atomic_write(run_json, json.dumps(doc, indent=2, default=str).encode())
    html_path = report.write(doc, stem.with_name(stem.name + ".report.html"))
    return {"run": str(run_json), "report": str(html_path)}


def _report_panel(models: dict[str, Any], s: Any, test_set: Any) -> dict[str, Any]:
    from . import report

    sets = {"forget": s.forget, "retain": s.retain, "test": s.test, "fault_test": s.fault_test} if s is not None \
        else {"test": test_set}
    k = (s.test if s is not None else test_set).num_classes
    return report.panel(models, sets, k)


_REPAIR_COLUMNS = ("model", "forget_acc", "retain_acc", "test_acc", "fault_rate", "mia_efficacy", "gap", "seconds")


def _cmd_repair(args: argparse.Namespace) -> dict[str, Any]:
    from . import datasets, evaluate, load, relearn, save, unlearn
    from .io import model_paths

    model = load(args.model, device=args.device or "cpu")
    reference = load(args.reference, device=args.device or "cpu") if args.reference else None
    train_set, test_set = datasets.load(args.data)
    s = _scenario(args, train_set, test_set)
    options = _parse_kv(args.option, "--option")
    if args.verb == "relearn" and args.method == "forget-relearn":
        return _forget_relearn_repair(args, model, reference, s, train_set, test_set, options)
    if s is None:
        raise ConfigError(f"netfix {args.verb}: needs --scenario or --forget-indices to say what to repair.")
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
    rows: list[dict[str, Any]] = []
    evals: dict[str, Any] = {}
    for name, m, seconds in (("before", model, None), ("after", out.model, out.seconds)):
        metrics = evals[name] = evaluate(m, scenario=s, reference=reference, seed=args.seed, device=args.device)
        rows.append({"model": name, **{k: metrics[k] for k in _REPAIR_COLUMNS if k in metrics},
                     **({"seconds": seconds} if seconds is not None else {})})
    stem = model_paths(args.model)[0].with_suffix("")
    path = args.out or stem.with_name(f"{stem.name}-{args.method}")
    weights = save(out.model, path, {"method": args.method, "mode": args.verb, "config": out.config,
                                     "scenario": s.describe(), "forget_indices": s.forget_indices.tolist(),
                                     "source_model": str(args.model)})
    from .ledger import indices_digest

    cert = _certify(args, weights, s, out, evals["after"]) if args.verb == "unlearn" else None
    data = {"name": args.data, "forget_fingerprint": s.forget.fingerprint(), "retain_fingerprint": retain.fingerprint(),
            **({"corrected_fingerprint": s.corrected.fingerprint()} if args.verb == "relearn" else {})}
    proof = _record(args, args.verb, weights, source=args.model, certificate=cert, method=args.method,
                    config=out.config, scenario=s.describe(), forget_set=indices_digest(s.forget_indices), data=data,
                    metrics={r["model"]: r for r in rows}, seconds=out.seconds)
    columns = [c for c in _REPAIR_COLUMNS if any(c in r for r in rows)]
    models = {"before": model, "after": out.model, **({"reference": reference} if reference is not None else {})}
    result = {"method": args.method, "mode": args.verb, "model_path": str(weights), "scenario": s.describe(),
              "rows": rows, "columns": columns, "config": out.config, "history": out.history,
              "seconds": out.seconds, "title": f"{args.verb} with {args.method}",
              "headline": f"{args.verb} with {args.method} on {s.name} {s.args}",
              "report": _report_panel(models, s, test_set), **proof}
    result.update(_write_run(path, result))
    result["text"] = (f"{args.verb} with {args.method} on {s.name} {s.args} (forget {len(s.forget)}, retain "
                      f"{len(s.retain)})\n\n{_table(rows, columns)}\n\nsaved: {weights}\nreport: {result['report']}"
                      + _proof_text(proof))
    return result


def _forget_relearn_repair(args: argparse.Namespace, model: Any, reference: Any, s: Any, train_set: Any,
                           test_set: Any, options: dict[str, Any]) -> dict[str, Any]:
    """``netfix relearn --method forget-relearn``: relearn the training data as the model was trained on it (a
    scenario's faulty training set, e.g. label_noise, or the dataset's training split) — no corrected labels
    needed: the forgetting operator sheds the memorised noise, relearning refits the consistent signal."""
    from . import evaluate, relearn, save
    from .io import model_paths

    data = s.train if s is not None else train_set
    out = relearn(model, data, method="forget-relearn", seed=args.seed, device=args.device, progress=not args.quiet,
                  **options)
    rows = []
    for name, m, seconds in (("before", model, None), ("after", out.model, out.seconds)):
        metrics = evaluate(m, scenario=s, reference=reference, seed=args.seed, device=args.device) if s is not None \
            else evaluate(m, test=test_set, reference=reference, seed=args.seed, device=args.device)
        rows.append({"model": name, **{k: metrics[k] for k in _REPAIR_COLUMNS if k in metrics},
                     **({"seconds": seconds} if seconds is not None else {})})
    stem = model_paths(args.model)[0].with_suffix("")
    path = args.out or stem.with_name(f"{stem.name}-{args.method}")
    weights = save(out.model, path, {"method": args.method, "mode": "relearn", "config": out.config,
                                     "scenario": s.describe() if s is not None else None,
                                     "source_model": str(args.model)})
    proof = _record(args, "relearn", weights, source=args.model, method=args.method, config=out.config,
                    scenario=s.describe() if s is not None else None,
                    data={"name": args.data, "fingerprint": data.fingerprint()},
                    metrics={r["model"]: r for r in rows}, seconds=out.seconds)
    what = f"{s.name} {s.args}" if s is not None else f"{args.data} training split"
    columns = [c for c in _REPAIR_COLUMNS if any(c in r for r in rows)]
    models = {"before": model, "after": out.model, **({"reference": reference} if reference is not None else {})}
    result = {"method": args.method, "mode": "relearn", "model_path": str(weights),
              "scenario": s.describe() if s is not None else None, "rows": rows, "columns": columns,
              "config": out.config, "history": out.history, "seconds": out.seconds,
              "title": "relearn with forget-relearn", "headline": f"relearn with forget-relearn on {what}",
              "report": _report_panel(models, s, test_set), **proof}
    result.update(_write_run(path, result))
    result["text"] = (f"relearn with forget-relearn on {what} ({len(data)} samples)\n\n{_table(rows, columns)}"
                      f"\n\nsaved: {weights}\nreport: {result['report']}" + _proof_text(proof))
    return result


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
    proof = _record(args, "edit", weights, source=args.model, method=out.method, config=out.config,
                    edits={"data": args.data, "split": args.split, "indices": indices, "targets": targets,
                           "success": out.success, "steps": out.steps},
                    metrics={"test_acc_before": before, "test_acc_after": after}, seconds=out.seconds)
    rows = [{"index": i, "target": t, "success": "yes" if ok else "no"}
            for i, t, ok in zip(indices, targets, out.success)]
    summary = [{"model": "before", "test_acc": before},
               {"model": "after", "test_acc": after, "success_rate": 100.0 * sum(out.success) / len(out.success),
                "mean_steps": float(out.steps), "drawdown": before - after, "seconds": out.seconds}]
    doc = {"title": f"edit with {out.method}", "rows": summary, "edits": rows,
           "headline": f"{len(rows)} edit(s) of {args.data}/{args.split} inputs {indices} to targets {targets}",
           "report": _report_panel({"before": model, "after": out.model}, None, test_set)}
    written = _write_run(path, doc)
    text = (f"{out.method}: {sum(out.success)}/{len(out.success)} edits reached in {out.steps} steps "
            f"({1000 * out.seconds:.0f} ms)\n\n{_table(rows, ('index', 'target', 'success'))}\n\n"
            f"test accuracy: {before:.2f} -> {after:.2f}\nsaved: {weights}\nreport: {written['report']}"
            + _proof_text(proof))
    return {"method": out.method, "success": out.success, "steps": out.steps, "seconds": out.seconds,
            "test_acc_before": before, "test_acc_after": after, "model_path": str(weights), "config": out.config,
            **written, **proof, "text": text}


_VERBS: dict[str, Callable[[argparse.Namespace], dict[str, Any]]] = {
    "demo": _cmd_demo, "datasets": _cmd_datasets, "train": _cmd_train, "evaluate": _cmd_evaluate,
    "unlearn": _cmd_repair, "relearn": _cmd_repair, "bench": _cmd_bench, "edit": _cmd_edit, "report": _cmd_report,
    "ledger": _cmd_ledger,
}


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``netfix`` command; returns the exit status."""
    args = _parser().parse_args(argv)
    from . import distributed

    distributed.init_from_env(getattr(args, "device", None))  # under torchrun: join its process group
    if not distributed.is_main():
        args.quiet = True  # one process reports: rank 0
    logging.basicConfig(level=logging.WARNING if args.quiet or args.json in (True, "-") else logging.INFO,
                        format="netfix: %(message)s", stream=sys.stderr)
    try:
        result = _VERBS[args.verb](args)
    except NetfixError as e:
        print(f"netfix {args.verb}: error: {e}", file=sys.stderr)
        return 2
    text = result.pop("text", "")
    code = int(result.pop("_exit", 0))  # a verb's own failure status, e.g. `ledger verify` finding a problem
    if not distributed.is_main():
        return code
    if args.json:
        json.dump(result, sys.stdout, indent=2, default=str)
        sys.stdout.write("\n")
    else:
        print(text)
    return code
