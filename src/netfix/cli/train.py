"""``netfix train``: a fresh reference model, or a saved one fine-tuned (``--from``), on a built-in dataset —
plain, mixed-linear, under a forget-and-relearn schedule, or with Editable Training."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from .._tables import text_table
from .. import card
from ..errors import ConfigError
from ._common import (Data, load_named, model_data, outputs, parse_kv, progress, proof_text, read_model, scenario,
                      stem_of)


def train(args: argparse.Namespace) -> dict[str, Any]:
    from .. import evaluate
    from .. import train as fit
    from ..io import serialize
    from ..ledger import indices_digest
    from ..runs import publish_recorded

    _check_flags(args)
    start = read_model(args.start, "--from", args) if args.start is not None else None
    if start is not None:
        data = model_data(args, start, default="mnist5k")
    else:
        name = args.data or "mnist5k"
        data = Data(name, *load_named(args, name))
    s = scenario(args, data.train, data.test)
    if args.subset == "retain" and s is None:
        raise ConfigError("--subset retain: needs --scenario or --forget-indices to say what is not retained.")
    trained_on = data.train if s is None else (s.retain if args.subset == "retain" else s.train)
    model, options, train_params, desc = _start(args, start, data)
    stem = _stem(args, desc, data.name)
    paths = outputs(args, stem, ("model",), reads=(args.start,))
    flags = {"lr": args.lr, "batch_size": args.batch_size, "optimizer": args.optimizer,
             "lr_schedule": args.lr_schedule, "weight_decay": args.weight_decay,
             "precision": None if args.precision == "fp32" else args.precision}
    options.update({k: v for k, v in flags.items() if v is not None})
    common = {"seed": args.seed, "device": args.device, "progress": progress(args)}
    mixed = None
    if args.editable or train_params is not None:
        from ..methods.editing import EditableTraining

        editable = EditableTraining(lr=args.edit_lr, sequential=args.edit_sequential) if args.editable else None
        out = fit(model, trained_on, epochs=args.epochs, editable=editable, params=train_params, **common, **options)
    elif args.mixed_linear:
        out, mixed = _mixed_linear(args, model, trained_on, options, common)
    elif args.forget_relearn:
        from ..methods.forget_relearn import ForgetRelearn

        schedule = ForgetRelearn(args.forget_relearn, args.generations, args.epochs)
        out = fit(model, trained_on, schedule=schedule, **common, **options)
    else:
        out = fit(model, trained_on, epochs=args.epochs, **common, **options)
    m = evaluate(out.model, scenario=s, seed=args.seed, device=args.device) if s is not None else \
        evaluate(out.model, test=data.test, device=args.device)
    meta: dict[str, Any] = {"dataset": data.name, "subset": args.subset,
                            "scenario": s.describe() if s is not None else None}
    if s is not None:
        meta["forget_indices"] = s.forget_indices.tolist()
    if mixed is not None:
        meta["mixed_linear"] = mixed
    ser = serialize(out.model, meta)
    inputs = {"source": start.ref} if start is not None else None
    proof = publish_recorded("train", {"model": (paths["model"], ser.data)}, inputs=inputs, ledger=args.ledger,
                             method="train", config=out.config, model=desc,
                             data={"name": data.name, "subset": args.subset,
                                   "fingerprint": out.config["data_fingerprint"],
                                   "scenario": meta["scenario"],
                                   "forget_set": indices_digest(s.forget_indices) if s is not None else None},
                             metrics=dict(m), seconds=out.seconds)
    result = {"model_path": str(paths["model"]), "test_acc": m["test_acc"], "seconds": out.seconds,
              "epochs": args.epochs, "recipe": options, "history": out.history, "metrics": dict(m), **proof}
    extra = ""
    if args.forget_relearn:
        gens = [h for h in out.history if "train_acc" in h]
        result["generations"] = gens
        extra = "\n" + text_table(gens, ("generation", "loss", "train_acc", "train_acc_after_forgetting", "seconds"))
    result["text"] = (f"trained {desc['name']} on {data.name} ({len(trained_on)} samples, {out.config['epochs']} "
                      f"epochs) in {out.seconds:.1f} s\ntest accuracy: {m['test_acc']:.2f}%\nsaved: "
                      f"{paths['model']}{extra}" + proof_text(proof))
    return result


def _check_flags(args: argparse.Namespace) -> None:
    if args.start is not None or args.editable or args.edit_block is not None:
        if args.mixed_linear or args.forget_relearn:
            raise ConfigError("--from / --editable / --edit-block: train an ordinary model; drop --mixed-linear and "
                              "--forget-relearn.")
    if args.edit_lr is not None and not args.editable:
        raise ConfigError("--edit-lr: sets Editable Training's editor step; add --editable.")
    if args.start is not None and args.model_arg:
        raise ConfigError("--model-arg: --from keeps the saved model's architecture; drop --model-arg.")
    if args.mixed_linear and (args.scenario or args.forget_indices):
        raise ConfigError("--mixed-linear: trains on the whole dataset (core + user); drop --scenario / "
                          "--forget-indices, and forget later with `netfix unlearn --method mixed-linear`.")


def _stem(args: argparse.Namespace, desc: dict[str, Any], data: str) -> Path:
    if args.out:
        return stem_of(args.out)
    if args.start:
        source = stem_of(args.start)
        return source.with_name(f"{source.name}-{'editable' if args.editable else 'finetuned'}")
    return Path("runs") / f"{desc['name']}-{Path(data.split(':', 1)[1]).name if data.startswith('folder:') else data}"


def _start(args: argparse.Namespace, start: Any, data: Data) -> tuple[Any, dict[str, Any], Any, dict[str, Any]]:
    """The model `netfix train` starts from, its recipe, the parameters it trains (None = all) and how the ledger
    names it: a fresh --model, or a saved one (--from), with an edit block added when asked."""
    from .. import models
    from ..methods.editing import FINETUNE_RECIPE, add_edit_block

    train_params = [p.strip() for p in args.train_params.split(",") if p.strip()] if args.train_params else None
    if start is not None:
        model = start.model
        spec = card.of(model).architecture or {}
        name = spec.get("name", type(model).__name__)
        options = dict(card.of(model).recipe or {}) or (
            models.recipe(name) if name in models.available() else {})
        options.pop("epochs", None)  # the recipe's other fields are netfix.train's keyword arguments
        if args.edit_block is not None:
            model = add_edit_block(model, args.edit_block, seed=args.seed)
            options = dict(FINETUNE_RECIPE)
            train_params = train_params or ["edit_block", "fc"]
        return model, options, train_params, {"name": name, "args": spec.get("kwargs", {}), "from": str(args.start)}
    kwargs = parse_kv(args.model_arg, "--model-arg")
    if args.edit_block is not None:
        kwargs["edit_block"] = args.edit_block
    model = models.build(args.model, data.train.input_shape, data.train.num_classes, seed=args.seed, **kwargs)
    return model, models.recipe(args.model), train_params, {"name": args.model, "args": kwargs}


def _mixed_linear(args: argparse.Namespace, model: Any, data: Any, options: dict[str, Any],
                  common: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    """The core on a stratified share of the data, then the linearised user weights on the rest."""
    from ..methods.mixed_linear import train_mixed_linear

    run = train_mixed_linear(model, data, linearize=[p.strip() for p in args.mixed_linear.split(",") if p.strip()],
                             core_fraction=args.core_fraction, core_epochs=args.epochs, recipe=options, **common)
    out = run.core
    out.model, out.seconds = run.model, run.core.seconds + run.fit.seconds
    return out, {"core_indices": run.core_indices.tolist(), "linearize": run.model.linearize}
