"""The verbs that read a saved model and change or measure it: ``unlearn``, ``relearn``, ``edit``, ``evaluate``.

Each checks its outputs before any work (:func:`~netfix.cli._common.outputs`), reads the model hashing its bytes
as read, runs on the model's own dataset unless told otherwise, refuses to save a run that changed no weight, and
publishes the new model (with its certificate) and its ledger record as one step (:mod:`netfix.runs`)."""

from __future__ import annotations

import argparse
import warnings
from typing import Any

import torch

from .._tables import text_table
from .. import card
from ..errors import ConfigError, DataError, NetfixError, NoChangeError, NoChangeWarning
from ._common import (ints, model_data, outputs, parse_kv, progress, proof_text, read_model, scenario, stem_of)

COLUMNS = ("model", "forget_acc", "retain_acc", "test_acc", "fault_rate", "mia_efficacy", "gap", "seconds")


def _unchanged(before: torch.nn.Module, ser: Any, what: str) -> None:
    from ..io import weights_sha256

    if ser.weights_sha256 == weights_sha256(before):
        raise NoChangeError(f"{what} changed no weight of the model, so nothing was saved, recorded or certified. "
                            "Fix: check the options (e.g. epochs >= 1, a larger lr), or pick another method.")


def _rows(models: dict[str, Any], seconds: dict[str, float], s: Any, data: Any, reference: Any,
          args: argparse.Namespace) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    from .. import evaluate

    rows, evals = [], {}
    for name, m in models.items():
        ref = reference if name != "reference" else None
        kw = {"scenario": s} if s is not None else {"test": data.test}
        metrics = evals[name] = evaluate(m, reference=ref, seed=args.seed, device=args.device, **kw)
        rows.append({"model": name, **{k: metrics[k] for k in COLUMNS if k in metrics},
                     **({"seconds": seconds[name]} if name in seconds else {})})
    return rows, evals


def _report_panel(models: dict[str, Any], s: Any, test_set: Any) -> dict[str, Any]:
    """The report's data (:func:`netfix.report.panel`) for ``models`` on the scenario's sets, or on the test split
    when there is no scenario; for class forgetting, the forgotten class counted in the per-class plots."""
    from .. import report

    if s is None:
        return report.panel(models, {"test": test_set}, test_set.num_classes)
    sets = {"forget": s.forget, "retain": s.retain, "test": s.test, "fault_test": s.fault_test}
    forgotten = s.args["cls"] if s.name == "class_forget" else None
    return report.panel(models, sets, s.test.num_classes, forgotten=forgotten)


def repair(args: argparse.Namespace) -> dict[str, Any]:
    """``netfix unlearn`` / ``netfix relearn``."""
    from .. import relearn, unlearn
    from ..io import serialize
    from ..ledger import indices_digest
    from ..runs import certificate, certificate_bytes, publish_recorded, write_run_document

    unlearning = args.verb == "unlearn"
    options = parse_kv(args.option, "--option")
    _check_method(args, options)
    _guard(args)  # checked before anything is read
    loaded = read_model(args.model, "MODEL", args)
    ref = read_model(args.reference, "--reference", args) if args.reference else None
    data = model_data(args, loaded, ref)
    heldout, data = _heldout(args, data)
    s = scenario(args, data.train, data.test)
    auto = _auto(args, options, s, loaded.model, heldout is not None) if args.method == "auto" else None
    if not unlearning and args.method != "forget-relearn" and s.corrected is None:
        raise ConfigError(f"--scenario: {s.name} has no corrected labels to relearn; use mislabel, backdoor or "
                          "label_noise, or `netfix unlearn` for a deletion request.")
    source = stem_of(args.model)
    stem = stem_of(args.out) if args.out else source.with_name(f"{source.name}-{args.method}")
    roles = ("model", "run", "report") + (("certificate",) if unlearning else ())
    paths = outputs(args, stem, roles, reads=(args.model, args.reference))  # before the run, the costly part
    common = {"seed": args.seed, "device": args.device, "progress": progress(args), **options, **_guard(args)}
    model = loaded.model
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NoChangeWarning)  # refused below, with the CLI's own message
        if not unlearning and args.method == "forget-relearn":  # relearn the data as trained: no labels needed
            trained_on = s.train if s is not None else data.train
            out = relearn(model, trained_on, method=args.method, **common)
        elif unlearning:
            retain = _remaining_user_data(loaded.meta, s, data.train) if args.method == "mixed-linear" else s.retain
            out = unlearn(model, s.forget, retain, method=args.method, **common,
                          **({"heldout": heldout} if heldout is not None else {}))
        else:
            out = relearn(model, s.corrected, protect=s.retain, method=args.method, **common)
    config = {**out.config, "auto": auto} if auto else out.config  # why this method: kept with the run
    meta = {"method": args.method, "mode": args.verb, "config": config, "dataset": data.name,
            "scenario": s.describe() if s is not None else None,
            "forget_indices": s.forget_indices.tolist() if s is not None else None, "source_model": str(args.model)}
    ser = serialize(out.model, meta)
    _unchanged(model, ser, f"{args.verb} with {args.method}")
    models = {"before": model, "after": out.model, **({"reference": ref.model} if ref is not None else {})}
    rows, evals = _rows(models, {"after": out.seconds}, s, data, ref.model if ref else None, args)
    files = {"model": (paths["model"], ser.data)}
    if unlearning:
        last = out.history[-1] if out.history else {}
        bound = {k: last[k] for k in ("distance_bound", "kl_bound", "grad_norm", "sigma") if k in last} or None
        cert = certificate(loaded.ref, ser.ref(paths["model"]), s.forget_indices, args.method, config,
                           {k: v for k, v in evals["after"].items() if k != "reference"},
                           evals["after"].get("reference"), bound, out.seconds)
        files["certificate"] = (paths["certificate"], certificate_bytes(cert))
    inputs = {"source": loaded.ref, **({"reference": ref.ref} if ref is not None else {})}
    record_data = {"name": data.name, **({"forget_fingerprint": s.forget.fingerprint(),
                                          "retain_fingerprint": s.retain.fingerprint()} if s is not None else {})}
    proof = publish_recorded(args.verb, files, inputs=inputs, ledger=args.ledger, method=args.method,
                             config=config, scenario=meta["scenario"],
                             forget_set=indices_digest(s.forget_indices) if s is not None else None,
                             data=record_data, metrics={r["model"]: r for r in rows}, seconds=out.seconds)
    if unlearning and proof:
        proof["certificate"] = str(paths["certificate"])
    what = f"{s.name} {s.args}" if s is not None else f"{data.name} training split"
    columns = [c for c in COLUMNS if any(c in r for r in rows)]
    result = {"method": args.method, "mode": args.verb, "model_path": str(paths["model"]), "scenario": meta["scenario"],
              "rows": rows, "columns": columns, "config": config, "history": out.history, "seconds": out.seconds,
              "title": f"{args.verb} with {args.method}", "headline": f"{args.verb} with {args.method} on {what}",
              "report": _report_panel(models, s, data.test), **proof}
    result.update(write_run_document(paths["run"], paths["report"], result))
    sizes = f" (forget {len(s.forget)}, retain {len(s.retain)})" if s is not None else ""
    picked = f"auto: {args.method} for this {auto['request']} request: {auto['reason']}\n" if auto else ""
    result["text"] = (f"{picked}{args.verb} with {args.method} on {what}{sizes}\n\n{text_table(rows, columns)}\n\n"
                      f"saved: {paths['model']}\nreport: {result['report']}" + proof_text(proof))
    return result


def _guard(args: argparse.Namespace) -> dict[str, Any]:
    """``--guard``: absent, the method's default; ``off``, none; else the :class:`netfix.methods.Guard` options."""
    from ..methods import Guard

    if args.guard is None:
        return {}
    if args.guard.strip().lower() in ("off", "none", "no"):
        return {"guard": None}
    try:
        return {"guard": Guard(**parse_kv(args.guard.split(","), "--guard"))}
    except TypeError as e:
        raise ConfigError(f"--guard: expected 'off' or KEY=VALUE pairs of {', '.join(Guard.__dataclass_fields__)}; "
                          f"got {args.guard!r} ({e}).") from None


def _heldout(args: argparse.Namespace, data: Any) -> tuple[Any, Any]:
    """``--heldout-indices``: (the held-out part of the test split, the data with the test split's rest), else
    (None, data)."""
    path = getattr(args, "heldout_indices", None)
    if path is None:
        return None, data
    import numpy as np

    from ..data import check_indices
    from ._common import Data, read_indices

    idx = read_indices(path, "--heldout-indices")
    check_indices(idx, len(data.test), "--heldout-indices", "test split")
    rest = np.setdiff1d(np.arange(len(data.test)), idx)
    if not len(rest):
        raise DataError("--heldout-indices: names the whole test split, leaving nothing to evaluate on. Fix: hold "
                        "out part of it (e.g. half).")
    return (data.test.subset(np.sort(idx), f"{data.test.name}/heldout"),
            Data(data.name, data.train, data.test.subset(rest, data.test.name)))


def _auto(args: argparse.Namespace, options: dict[str, Any], s: Any, model: torch.nn.Module,
          heldout: bool) -> dict[str, Any]:
    """``--method auto``: the kind of request the forget and retain sets make, the method the benches recommend for
    it within ``--budget`` among those it can run (``heldout``: whether held-out data was given; ``args.method``
    becomes it, its options then checked); returns the choice and why."""
    from ..methods._recommend import recommend_details, request_kind

    choice = recommend_details(request_kind(s.forget, s.retain), budget=args.budget, model=model, heldout=heldout)
    args.method = choice.method
    _check_method(args, options, picked=True)
    return choice.to_dict()


def _check_method(args: argparse.Namespace, options: dict[str, Any], picked: bool = False) -> None:
    """The method, its options and what it needs to be told, checked before anything is read or written (for
    ``--method auto``, the options once the method is ``picked``)."""
    from ..methods import get

    if getattr(args, "budget", None) is not None and args.method != "auto" and not picked:
        raise ConfigError("--budget: only with --method auto (it bounds the cost of the method auto picks).")
    if args.method == "auto":
        if args.verb != "unlearn":
            raise ConfigError(f"--method: auto picks an unlearning method (netfix unlearn); for {args.verb}, name "
                              "the method.")
        if not (args.scenario or args.forget_indices):
            raise ConfigError(f"netfix {args.verb}: needs --scenario or --forget-indices to say what to repair.")
        return
    method = get(args.method)
    if args.verb not in method.modes:
        from ..methods import available

        able = [n for n in available() if args.verb in get(n).modes]
        raise ConfigError(f"--method: {args.method!r} cannot {args.verb}; methods that can: {', '.join(able)}.")
    method.make_config(options)
    needs_request = not (args.verb == "relearn" and args.method == "forget-relearn")
    if needs_request and not (args.scenario or args.forget_indices):
        raise ConfigError(f"netfix {args.verb}: needs --scenario or --forget-indices to say what to repair.")


def _remaining_user_data(meta: dict[str, Any], s: Any, train_set: Any) -> Any:
    """A mixed-linear model forgets user data only: the user samples left after the request."""
    mixed = (meta.get("meta") or {}).get("mixed_linear")
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


def edit(args: argparse.Namespace) -> dict[str, Any]:
    """``netfix edit``: change the predictions on chosen inputs; show label, prediction before and after."""
    from .. import edit as edit_model
    from .. import evaluate
    from ..evaluation import predict
    from ..io import serialize
    from ..runs import publish_recorded, write_run_document

    source = stem_of(args.model)
    stem = stem_of(args.out) if args.out else source.with_name(f"{source.name}-edit")
    paths = outputs(args, stem, ("model", "run", "report"), reads=(args.model,))
    loaded = read_model(args.model, "MODEL", args)
    data = model_data(args, loaded)
    pool = data.test if args.split == "test" else data.train
    indices, targets = ints(args.indices, "--indices"), ints(args.targets, "--targets")
    if not indices:
        raise ConfigError("--indices: no index given; expected e.g. --indices 3,17.")
    if len(indices) != len(targets):
        raise ConfigError(f"--targets: {len(targets)} targets for {len(indices)} indices; expected one per index.")
    bad = [i for i in indices if not 0 <= i < len(pool)]
    if bad:
        raise ConfigError(f"--indices: {bad} out of range for the {args.split} split of {data.name} "
                          f"({len(pool)} samples).")
    wrong = [t for t in targets if not 0 <= t < pool.num_classes]
    if wrong:
        raise ConfigError(f"--targets: {wrong} are not classes of {data.name} (0..{pool.num_classes - 1}).")
    chosen = pool.subset(indices, "edits")
    model = loaded.model
    options = {"lr": args.lr} if args.lr is not None else {}
    params = [p.strip() for p in args.params.split(",")] if args.params else None
    if args.editor == "adaptor" and (args.lr is not None or params is not None):
        raise ConfigError("--lr, --params: the adaptor takes no step size and changes no parameter; leave them out "
                          "(or pick a gradient --editor).")
    rehearsal = None if args.no_rehearsal else data.train
    out = edit_model(model, chosen.X, torch.as_tensor(targets), editor=args.editor, max_steps=args.max_steps,
                     params=params, rehearsal=rehearsal, device=args.device, seed=args.seed, **options)
    meta: dict[str, Any] = {"method": out.method, "config": out.config, "source_model": str(args.model),
                            "dataset": data.name, "edits": {"data": data.name, "split": args.split,
                                                            "indices": indices, "targets": targets,
                                                            "ids": out.config.get("edit_ids", [])}}
    ser = serialize(out.model, meta)
    _unchanged(model, ser, f"edit with {out.method} (the inputs may already be predicted as their targets)")
    prev, new = predict(model, chosen).argmax(1).tolist(), predict(out.model, chosen).argmax(1).tolist()
    labels = chosen.y.tolist()
    rows = [{"index": i, "label": lab, "before": p, "target": t, "after": a, "success": "yes" if ok else "no"}
            for i, lab, p, t, a, ok in zip(indices, labels, prev, targets, new, out.success)]
    broken = [r["index"] for r in rows if r["before"] == r["label"] != r["target"]]
    before = evaluate(model, test=data.test, device=args.device)["test_acc"]
    after = evaluate(out.model, test=data.test, device=args.device)["test_acc"]
    proof = publish_recorded("edit", {"model": (paths["model"], ser.data)}, inputs={"source": loaded.ref},
                             ledger=args.ledger, method=out.method, config=out.config,
                             edits={**meta["edits"], "success": out.success, "steps": out.steps},
                             metrics={"test_acc_before": before, "test_acc_after": after}, seconds=out.seconds)
    summary = [{"model": "before", "test_acc": before},
               {"model": "after", "test_acc": after, "success_rate": 100.0 * sum(out.success) / len(out.success),
                "mean_steps": float(out.steps), "drawdown": before - after, "seconds": out.seconds}]
    doc = {"title": f"edit with {out.method}", "rows": summary, "edits": rows,
           "headline": f"{len(rows)} edit(s) of {data.name}/{args.split} inputs {indices} to targets {targets}",
           "report": _report_panel({"before": model, "after": out.model}, None, data.test)}
    written = write_run_document(paths["run"], paths["report"], doc)
    warning = (f"\nwarning: index {', '.join(map(str, broken))} was predicted correctly before; the edit makes it "
               "predict the target instead of the true label, as asked" if broken else "")
    text = (f"{out.method}: {sum(out.success)}/{len(out.success)} edits reached in {out.steps} steps "
            f"({1000 * out.seconds:.0f} ms)\n\n"
            f"{text_table(rows, ('index', 'label', 'before', 'target', 'after', 'success'))}{warning}\n\n"
            f"test accuracy: {before:.2f} -> {after:.2f}\nsaved: {paths['model']}\nreport: {written['report']}"
            + proof_text(proof))
    return {"method": out.method, "success": out.success, "steps": out.steps, "seconds": out.seconds, "edits": rows,
            "corrected_to_wrong": broken, "test_acc_before": before, "test_acc_after": after,
            "model_path": str(paths["model"]), "config": out.config, **written, **proof, "text": text}


def edits(args: argparse.Namespace) -> dict[str, Any]:
    """``netfix edits``: the edits a saved model holds; ``--revert ID`` saves a copy without one."""
    from .. import edits as history
    from .. import evaluate as measure
    from ..io import serialize
    from ..runs import publish_recorded

    source = stem_of(args.model)
    paths = None
    if args.revert is not None:
        stem = stem_of(args.out) if args.out else source.with_name(f"{source.name}-revert-{args.revert}")
        paths = outputs(args, stem, ("model",), reads=(args.model,))
    loaded = read_model(args.model, "MODEL", args)
    listed = history.list(loaded.model)
    rows = [{"id": e["id"], "kind": e["kind"], "editor": e.get("editor", ""),
             "target": e.get("target", e.get("targets", "")), "created": e.get("created", ""),
             "undoable": "yes" if e["kind"] == "adaptor" or e.get("undoable") else "no"} for e in listed]
    size = history.size_bytes(loaded.model)
    table = text_table(rows, ("id", "kind", "editor", "target", "created", "undoable")) if rows else \
        "(no edits: this model holds none)"
    if args.revert is None:
        return {"edits": listed, "bytes": size, "text": f"{table}\n\n{len(rows)} edit(s), {size / 1024:.1f} KiB"}
    assert paths is not None
    try:
        back = history.revert(loaded.model, args.revert)
    except NetfixError as e:
        raise ConfigError(f"--revert: {e}") from None
    ser = serialize(back, {"method": "revert", "source_model": str(args.model), "reverted": args.revert})
    recorded = card.of(loaded.model).data or {}
    acc = {}
    if recorded.get("name"):
        data = model_data(args, loaded)
        acc = {"test_acc_before": measure(loaded.model, test=data.test, device=args.device)["test_acc"],
               "test_acc_after": measure(back, test=data.test, device=args.device)["test_acc"]}
    proof = publish_recorded("edit", {"model": (paths["model"], ser.data)}, inputs={"source": loaded.ref},
                             ledger=args.ledger, method="revert", config={"edit_id": args.revert},
                             edits={"reverted": args.revert}, metrics=acc)
    text = (f"reverted edit {args.revert} of {args.model}\nsaved: {paths['model']}"
            + (f"\ntest accuracy: {acc['test_acc_before']:.2f} -> {acc['test_acc_after']:.2f}" if acc else "")
            + proof_text(proof))
    return {"reverted": args.revert, "model_path": str(paths["model"]), **acc, **proof, "text": text}


def evaluate(args: argparse.Namespace) -> dict[str, Any]:
    """``netfix evaluate``: accuracies, fault rate, membership attacks and the gap to a reference."""
    from .. import evaluate as measure
    from ..evaluation import LEGEND

    if args.explain and args.model is None:
        rows = [{"metric": k, "meaning": v} for k, v in LEGEND.items()]
        return {"legend": LEGEND, "text": text_table(rows, ("metric", "meaning"))}
    if args.model is None:
        raise ConfigError("MODEL: expected a saved model to measure (or --explain alone for what each metric "
                          "means).")
    loaded = read_model(args.model, "MODEL", args)
    ref = read_model(args.reference, "--reference", args) if args.reference else None
    data = model_data(args, loaded, ref)
    s = scenario(args, data.train, data.test)
    kw = {"scenario": s} if s is not None else {"test": data.test}
    m = measure(loaded.model, reference=ref.model if ref else None, seed=args.seed, device=args.device, **kw)
    keys = [k for k in ("forget_acc", "ua", "retain_acc", "test_acc", "fault_rate", "fault_acc", "mia_efficacy",
                        "mia_loss_acc", "test_confidence", "agreement", "kl", "gap") if k in m]
    text = text_table([{"metric": k, "value": m[k], "meaning": LEGEND.get(k, "")} for k in keys],
                      ("metric", "value", "meaning"))
    where = f"scenario: {s.name} {s.args} (forget {len(s.forget)}, retain {len(s.retain)}, test {len(s.test)})" \
        if s is not None else f"data: {data.name} test split ({len(data.test)} samples)"
    return {"model": str(args.model), "dataset": data.name, "scenario": s.describe() if s is not None else None,
            "metrics": dict(m), "text": f"{where}\n\n{text}"}
