"""Recording a repair as one step: the new model saved, its forgetting certificate, the run's document and report,
and the ledger record — what ``netfix unlearn`` / ``netfix relearn`` write, for Python users too."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..data import LabeledData
from ..errors import ConfigError
from ..io import LoadedModel, read_model, serialize
from ..ledger import Ledger, indices_digest
from ..training import Outcome
from .certificates import PathLike, certificate, certificate_bytes, forgetting_bound
from .document import COLUMNS, metric_rows, output_paths, refuse_unchanged, report_panel, write_run_document
from .publish import publish_recorded

__all__ = ["record_repair", "record_edit", "repair_roles"]

MODES = ("unlearn", "relearn")


def repair_roles(mode: str) -> tuple[str, ...]:
    """The files a repair writes: the model, the run document, the report, and for unlearning a certificate."""
    return ("model", "run", "report") + (("certificate",) if mode == "unlearn" else ())


def _loaded(model: "PathLike | LoadedModel", argument: str, device: Any) -> LoadedModel:
    if isinstance(model, LoadedModel):
        return model
    if not isinstance(model, (str, Path)):
        raise ConfigError(f"{argument}: expected a saved model's path (or netfix.io.read_model's result); got "
                          f"{type(model).__name__}. Fix: save the model first (netfix.save) and pass its path.")
    return read_model(model, device=device or "cpu")


def _check_outcome(outcome: Any) -> None:
    if not isinstance(outcome, Outcome):
        raise ConfigError(f"outcome: expected what netfix.unlearn / relearn / edit returned (a netfix Outcome); got "
                          f"{type(outcome).__name__}.")


def _stem(loaded: LoadedModel, out: "PathLike | None", suffix: str) -> Path:
    """Where a run's files go: ``out``, else ``SOURCE-SUFFIX`` beside the source model."""
    source = loaded.path.with_suffix("")
    return Path(out) if out is not None else source.with_name(f"{source.name}-{suffix}")


def record_repair(outcome: Outcome, source: "PathLike | LoadedModel", *, mode: str, method: str,
                  out: "PathLike | None" = None, scenario: Any = None, test: "LabeledData | None" = None,
                  dataset: str = "", reference: "PathLike | LoadedModel | None" = None,
                  config: "dict[str, Any] | None" = None, paths: "dict[str, Path] | None" = None,
                  overwrite: bool = False, ledger: "Ledger | PathLike | None" = None, seed: int = 0,
                  device: Any = None) -> dict[str, Any]:
    """Save, certify, report and record a repair of the saved model ``source`` (its path, or
    :func:`netfix.io.read_model`'s result, read before the repair so its sha256 is the file as it was used).

    ``outcome``: what ``netfix.unlearn`` / ``netfix.relearn`` returned on ``scenario`` (its forget / retain / test
    sets are measured; without one, ``test``). ``mode``: ``"unlearn"`` or ``"relearn"``. Writes, at the stem
    ``out`` (default: ``SOURCE-METHOD`` beside the source), the model, its run document (``.run.json``) and report
    (``.report.html``) and, when unlearning, its forgetting certificate — published and entered in the ``ledger``
    as one step (:func:`publish_recorded`). A repair that changed no weight is refused
    (:class:`~netfix.errors.NoChangeError`): nothing is written. ``paths``: outputs already checked with
    :func:`output_paths` (the CLI checks them before the costly run). Returns the run's document, with its paths
    and the ledger record.

    Example:
        >>> out = netfix.unlearn(netfix.load("runs/m"), s.forget, s.retain, method="ogd")
        >>> doc = record_repair(out, "runs/m", mode="unlearn", method="ogd", scenario=s, dataset="mnist5k")
        >>> doc["model_path"], doc["certificate"], doc["ledger_record"]
    """
    _check_outcome(outcome)
    if mode not in MODES:
        raise ConfigError(f"mode: expected one of {', '.join(MODES)}; got {mode!r}.")
    if mode == "unlearn" and scenario is None:
        raise ConfigError("scenario: an unlearning run is certified for its request (the forget indices); pass "
                          "scenario= (e.g. netfix.scenarios.from_indices(train, test, indices)).")
    if scenario is None and test is None:
        raise ConfigError("test: a run without a scenario is measured on test data; pass scenario= or test=.")
    loaded = _loaded(source, "source", device)
    ref = _loaded(reference, "reference", device) if reference is not None else None
    if paths is None:
        stem = _stem(loaded, out, method)
        paths = output_paths(stem, repair_roles(mode), reads=(loaded.path, ref.path if ref else None),
                             overwrite=overwrite)
    config = dict(config if config is not None else outcome.config)
    meta = {"method": method, "mode": mode, "config": config, "dataset": dataset,
            "scenario": scenario.describe() if scenario is not None else None,
            "forget_indices": scenario.forget_indices.tolist() if scenario is not None else None,
            "source_model": str(loaded.path)}
    ser = serialize(outcome.model, meta)
    refuse_unchanged(loaded.model, ser, f"{mode} with {method}")
    models = {"before": loaded.model, "after": outcome.model, **({"reference": ref.model} if ref is not None else {})}
    rows, evals = metric_rows(models, scenario=scenario, test=test, reference=ref.model if ref else None,
                              seconds={"after": outcome.seconds}, seed=seed, device=device)
    files = {"model": (paths["model"], ser.data)}
    if mode == "unlearn":
        after = evals["after"]
        cert = certificate(loaded.ref, ser.ref(paths["model"]), scenario.forget_indices, method, config,
                           {k: v for k, v in after.items() if k != "reference"}, after.get("reference"),
                           forgetting_bound(outcome.history), outcome.seconds)
        files["certificate"] = (paths["certificate"], certificate_bytes(cert))
    data = {"name": dataset, **({"forget_fingerprint": scenario.forget.fingerprint(),
                                 "retain_fingerprint": scenario.retain.fingerprint()} if scenario is not None else {})}
    proof = publish_recorded(mode, files, inputs={"source": loaded.ref, **({"reference": ref.ref} if ref else {})},
                             ledger=ledger, method=method, config=config, scenario=meta["scenario"],
                             forget_set=indices_digest(scenario.forget_indices) if scenario is not None else None,
                             data=data, metrics={r["model"]: r for r in rows}, seconds=outcome.seconds)
    if mode == "unlearn" and proof:
        proof["certificate"] = str(paths["certificate"])
    what = f"{scenario.name} {scenario.args}" if scenario is not None else f"{dataset} training split"
    doc = {"method": method, "mode": mode, "model_path": str(paths["model"]), "scenario": meta["scenario"],
           "rows": rows, "columns": [c for c in COLUMNS if any(c in r for r in rows)], "config": config,
           "history": outcome.history, "seconds": outcome.seconds, "title": f"{mode} with {method}",
           "headline": f"{mode} with {method} on {what}",
           "report": report_panel(models, scenario, test if test is not None else scenario.test), **proof}
    doc.update(write_run_document(paths["run"], paths["report"], doc))
    return doc


def record_edit(outcome: Any, source: "PathLike | LoadedModel", edited: LabeledData, targets: "list[int]", *,
                test: LabeledData, out: "PathLike | None" = None, where: "dict[str, Any] | None" = None,
                paths: "dict[str, Path] | None" = None, overwrite: bool = False,
                ledger: "Ledger | PathLike | None" = None, device: Any = None) -> dict[str, Any]:
    """Save, report and record an edit of the saved model ``source`` (its path, or :func:`netfix.io.read_model`'s
    result): what ``netfix edit`` writes, for Python users too.

    ``outcome``: what ``netfix.edit`` returned for the inputs of ``edited`` (their true labels in ``edited.y``) and
    ``targets``. ``where``: how to find the inputs again (e.g. ``{"data": "mnist5k", "split": "test", "indices":
    [...]}``), kept in the file and the ledger record. Writes, at the stem ``out`` (default ``SOURCE-edit``), the
    edited model, its run document and report, and its ledger record in one step; an edit that changed nothing is
    refused. Returns the document: per input its label and prediction before and after (``edits``), the inputs
    that were right before and now predict their target (``corrected_to_wrong``), test accuracy before and after.

    Example:
        >>> out = netfix.edit(netfix.load("runs/m"), test.X[:2], torch.tensor([7, 7]))
        >>> doc = record_edit(out, "runs/m", test.subset([0, 1]), [7, 7], test=test)
    """
    from ..evaluation import evaluate, predict

    _check_outcome(outcome)
    if not isinstance(edited, LabeledData):
        raise ConfigError(f"edited: expected the edited inputs as netfix LabeledData (their true labels in .y); got "
                          f"{type(edited).__name__}. Fix: pass e.g. test.subset(indices).")
    loaded = _loaded(source, "source", device)
    if len(targets) != len(edited):
        raise ConfigError(f"targets: {len(targets)} targets for {len(edited)} edited inputs; expected one per input.")
    if paths is None:
        stem = _stem(loaded, out, "edit")
        paths = output_paths(stem, ("model", "run", "report"), reads=(loaded.path,), overwrite=overwrite)
    where = dict(where or {})
    edits = {**where, "targets": list(targets), "ids": outcome.config.get("edit_ids", [])}
    ser = serialize(outcome.model, {"method": outcome.method, "config": outcome.config,
                                    "source_model": str(loaded.path), "dataset": where.get("data", ""),
                                    "edits": edits})
    refuse_unchanged(loaded.model, ser, f"edit with {outcome.method} (the inputs may already be predicted as their "
                                        "targets)")
    indices = list(where.get("indices", range(len(edited))))
    prev, new = predict(loaded.model, edited).argmax(1).tolist(), predict(outcome.model, edited).argmax(1).tolist()
    rows = [{"index": i, "label": lab, "before": p, "target": t, "after": a, "success": "yes" if ok else "no"}
            for i, lab, p, t, a, ok in zip(indices, edited.y.tolist(), prev, targets, new, outcome.success)]
    before = evaluate(loaded.model, test=test, device=device)["test_acc"]
    after = evaluate(outcome.model, test=test, device=device)["test_acc"]
    proof = publish_recorded("edit", {"model": (paths["model"], ser.data)}, inputs={"source": loaded.ref},
                             ledger=ledger, method=outcome.method, config=outcome.config,
                             edits={**edits, "success": outcome.success, "steps": outcome.steps},
                             metrics={"test_acc_before": before, "test_acc_after": after}, seconds=outcome.seconds)
    summary = [{"model": "before", "test_acc": before},
               {"model": "after", "test_acc": after, "success_rate": 100.0 * sum(outcome.success) / len(rows),
                "mean_steps": float(outcome.steps), "drawdown": before - after, "seconds": outcome.seconds}]
    inputs = f"{where['data']}/{where['split']} inputs" if {"data", "split"} <= set(where) else "inputs"
    doc = {"title": f"edit with {outcome.method}", "rows": summary, "edits": rows,
           "headline": f"{len(rows)} edit(s) of {inputs} {indices} to targets {list(targets)}",
           "report": report_panel({"before": loaded.model, "after": outcome.model}, None, test)}
    written = write_run_document(paths["run"], paths["report"], doc)
    return {"method": outcome.method, "success": outcome.success, "steps": outcome.steps,
            "seconds": outcome.seconds, "edits": rows,
            "corrected_to_wrong": [r["index"] for r in rows if r["before"] == r["label"] != r["target"]],
            "test_acc_before": before, "test_acc_after": after, "model_path": str(paths["model"]),
            "config": outcome.config, **written, **proof}
