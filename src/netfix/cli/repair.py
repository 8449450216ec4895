"""The verbs that repair a saved model or measure it: ``unlearn`` and ``relearn`` (one path, :func:`repair`, for
every method and mode) and ``evaluate``.

A repair checks its outputs before any work (:func:`~netfix.cli._common.outputs`), reads the model hashing its
bytes as read, runs on the model's own dataset unless told otherwise, refuses to save a run that changed no weight,
and publishes the new model (with its certificate) and its ledger record as one step (:mod:`netfix.runs`)."""

from __future__ import annotations

import argparse
import warnings
from typing import Any

import torch

from .._tables import text_table
from ..errors import ConfigError, NoChangeWarning
from ..io import LoadedModel
from ..methods import get
from ..training import Outcome
from ._common import (Data, model_data, outputs, parse_kv, progress, proof_text, read_indices, read_model, scenario,
                      stem_of)


def repair(args: argparse.Namespace) -> dict[str, Any]:
    """``netfix unlearn`` / ``netfix relearn``: the method run on the request, then saved, certified and recorded
    (:func:`netfix.runs.record_repair`)."""
    from ..runs import record_repair, repair_roles

    options = parse_kv(args.option, "--option")
    _check_method(args, options)
    _guard(args)  # checked before anything is read
    loaded = read_model(args.model, "MODEL", args)
    ref = read_model(args.reference, "--reference", args) if args.reference else None
    data = model_data(args, loaded, ref)
    heldout, data = _heldout(args, data)
    s = scenario(args, data.train, data.test)
    auto = _auto(args, options, s, loaded.model, heldout is not None) if args.method == "auto" else None
    if args.verb == "relearn" and not _relearns_as_trained(args) and s.corrected is None:
        raise ConfigError(f"--scenario: {s.name} has no corrected labels to relearn; use mislabel, backdoor or "
                          "label_noise, or `netfix unlearn` for a deletion request.")
    source = stem_of(args.model)
    stem = stem_of(args.out) if args.out else source.with_name(f"{source.name}-{args.method}")
    paths = outputs(args, stem, repair_roles(args.verb), reads=(args.model, args.reference))  # before the run
    out = _run(args, options, loaded, s, data, heldout)
    result = record_repair(out, loaded, mode=args.verb, method=args.method, scenario=s, test=data.test,
                           dataset=data.name, reference=ref, paths=paths, ledger=args.ledger, seed=args.seed,
                           device=args.device, config={**out.config, "auto": auto} if auto else None)
    what = f"{s.name} {s.args}" if s is not None else f"{data.name} training split"
    sizes = f" (forget {len(s.forget)}, retain {len(s.retain)})" if s is not None else ""
    picked = f"auto: {args.method} for this {auto['request']} request: {auto['reason']}\n" if auto else ""
    proof: dict[str, Any] = {k: result[k] for k in ("ledger", "ledger_record", "certificate") if k in result}
    result["text"] = (f"{picked}{args.verb} with {args.method} on {what}{sizes}\n\n"
                      f"{text_table(result['rows'], result['columns'])}\n\nsaved: {paths['model']}\n"
                      f"report: {result['report']}" + proof_text(proof))
    return result


def _run(args: argparse.Namespace, options: dict[str, Any], loaded: LoadedModel, s: Any, data: Data,
         heldout: Any) -> Outcome:
    """The method on the request: unlearn its forget set, relearn its corrected labels, or relearn the data as
    trained (:func:`_relearns_as_trained`)."""
    from .. import relearn, unlearn
    common = {"seed": args.seed, "device": args.device, "progress": progress(args), **options, **_guard(args)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NoChangeWarning)  # refused after the run, with the CLI's own message
        if _relearns_as_trained(args):
            return relearn(loaded.model, s.train if s is not None else data.train, method=args.method, **common)
        if args.verb == "relearn":
            return relearn(loaded.model, s.corrected, protect=s.retain, method=args.method, **common)
        from_record = get(args.method).retained_from_record  # e.g. mixed-linear: its user data only
        retain = from_record(loaded.meta, s.forget_indices, data.train, "--forget-indices") if from_record else s.retain
        return unlearn(loaded.model, s.forget, retain, method=args.method, **common,
                       **({"heldout": heldout} if heldout is not None else {}))


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


def _heldout(args: argparse.Namespace, data: Data) -> tuple[Any, Data]:
    """``--heldout-indices``: (the held-out part of the test split, the data with the test split's rest), else
    (None, data)."""
    from ..runs import split_heldout

    path = getattr(args, "heldout_indices", None)
    if path is None:
        return None, data
    heldout, rest = split_heldout(data.test, read_indices(path, "--heldout-indices"), "--heldout-indices")
    return heldout, Data(data.name, data.train, rest)


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

    if getattr(args, "budget", None) is not None and args.method != "auto" and not picked:
        raise ConfigError("--budget: only with --method auto (it bounds the cost of the method auto picks).")
    if args.method == "auto" and args.verb != "unlearn":
        raise ConfigError(f"--method: auto picks an unlearning method (netfix unlearn); for {args.verb}, name the "
                          "method.")
    if args.method != "auto":
        method = get(args.method)
        if args.verb not in method.modes:
            from ..methods import available

            able = [n for n in available() if args.verb in get(n).modes]
            raise ConfigError(f"--method: {args.method!r} cannot {args.verb}; methods that can: {', '.join(able)}.")
        method.make_config(options)
    if not _relearns_as_trained(args) and not (args.scenario or args.forget_indices):
        raise ConfigError(f"netfix {args.verb}: needs --scenario or --forget-indices to say what to repair.")


def _relearns_as_trained(args: argparse.Namespace) -> bool:
    """``relearn --method forget-relearn``: relearns the data the model was trained on, as it was labelled, so it
    needs neither a request nor corrected labels."""
    return args.verb == "relearn" and args.method != "auto" and get(args.method).relearns_as_trained


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
