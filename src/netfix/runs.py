"""Recording a run: the files it writes, published and entered in the ledger as one step, and forgetting
certificates — the library functions behind the CLI's records, for Python users too.

:func:`publish_recorded` writes every output of a run (a model file, a certificate) to a temporary file first,
then commits a *pending* ledger record naming each output's path and sha256, then — holding the ledger's write
lock — renames them into place and commits. A kill at any point leaves the old files or the new ones, and a
ledger that verifies (:mod:`netfix.ledger`).

**A certificate** (:func:`certificate`) is one JSON document saying what a forgetting run did: the sha256 of the
original model file *as it was read* and of the new one (and of their tensor data), the sha256 and size of the
forget set, the method with its full config, the metrics beside the retrained reference's, the bound where the
method gives one, the time taken, and the netfix and torch versions. Anyone holding the files can check it with
``sha256sum``. A run whose weights are exactly the original's gets no certificate: a no-op is not a forgetting.

**A run's document** (:func:`write_run_document`) holds its table — :func:`metric_rows`, one row per model
(before, after, the reference) — and its report's data (:func:`report_panel`). A run on a saved model may also read
a held-out part of the test split (:func:`split_heldout`); a mixed-linear model keeps the user samples that remain
after the request (``netfix.methods.get("mixed-linear").retained_from_record``).

Example:
    >>> ser = netfix.io.serialize(out.model, {"method": "ogd"})
    >>> cert = certificate(loaded.ref, ser.ref("runs/m-ogd"), s.forget_indices, "ogd", out.config, metrics)
    >>> publish_recorded("unlearn", {"model": ("runs/m-ogd.safetensors", ser.data),
    ...                              "certificate": ("runs/m-ogd.certificate.json", certificate_bytes(cert))},
    ...                  inputs={"source": loaded.ref}, method="ogd")
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Union

import numpy as np
import torch

from ._version import __version__
from .errors import ConfigError, DataError, NetfixError, NoChangeError, unknown
from torch import nn

from .data import LabeledData, check_indices
from .evaluation import Metrics
from .io import Serialized, atomic_write, clean_stale, file_ref, file_sha256, replace_staged, stage, weights_sha256
from .ledger import KINDS, Ledger, _jsonable, _now, indices_digest, ledger_path

__all__ = ["certificate", "certificate_bytes", "write_certificate", "record_run", "publish_recorded",
           "CERTIFICATE_FORMAT", "COLUMNS", "metric_rows", "report_panel", "forgetting_bound", "refuse_unchanged",
           "split_heldout", "write_run_document"]

CERTIFICATE_FORMAT = "netfix-forgetting-certificate"
CERTIFICATE_VERSION = 2
PathLike = Union[str, "os.PathLike[str]"]
FileRef = Mapping[str, str]  # {"path", "sha256", "weights_sha256"}
COLUMNS = ("model", "forget_acc", "retain_acc", "test_acc", "fault_rate", "mia_efficacy", "gap", "seconds")
BOUND_KEYS = ("distance_bound", "kl_bound", "grad_norm", "sigma")  # what a method's history may guarantee


def _ref(model: "PathLike | FileRef", argument: str) -> dict[str, str]:
    if isinstance(model, Mapping):
        if not all(isinstance(model.get(k), str) for k in ("path", "sha256")):
            raise ConfigError(f"{argument}: expected a saved model's path or {{'path', 'sha256', 'weights_sha256'}}; "
                              f"got {dict(model)!r}.")
        return dict(model)
    try:
        return file_ref(model)
    except NetfixError as e:
        text = str(e)
        raise type(e)(f"{argument}: {text[6:]}" if text.startswith("path: ") else text) from None


def certificate(original: "PathLike | FileRef", new: "PathLike | FileRef",
                forget_indices: Iterable[int] | np.ndarray | torch.Tensor, method: str, config: Mapping[str, Any],
                metrics: Mapping[str, Any], reference_metrics: Mapping[str, Any] | None = None, bound: Any = None,
                seconds: float | None = None) -> dict[str, Any]:
    """A forgetting certificate: a JSON-ready dict naming exactly what was forgotten, from which model, into which.

    ``original`` / ``new``: saved models (a path, hashed now) or what was read / is about to be written
    (``netfix.io.read_model(...).ref``, ``netfix.io.serialize(...).ref(path)``) — hash the original when it is
    read, not later. ``metrics``: the new model's (e.g. ``netfix.evaluate``); ``reference_metrics``: the
    retrained reference's, where one was measured; ``bound``: what the method guarantees (e.g. mixed-linear's
    ``distance_bound`` / ``kl_bound``), else ``None``. Raises :class:`~netfix.errors.NoChangeError` when the new
    weights equal the original's.

    Example:
        >>> cert = certificate("runs/m", "runs/m-ogd", s.forget_indices, "ogd", out.config, m, seconds=out.seconds)
        >>> write_certificate(cert, "runs/m-ogd.certificate.json")
    """
    if not isinstance(method, str) or not method:
        raise ConfigError(f"method: expected the repair method's name, e.g. 'ogd'; got {method!r}.")
    before, after = _ref(original, "original"), _ref(new, "new")
    if before.get("weights_sha256") and before.get("weights_sha256") == after.get("weights_sha256"):
        raise NoChangeError(f"new: its weights are exactly the original's (sha256 {after['weights_sha256'][:12]}...): "
                            f"{method!r} changed nothing, so nothing was forgotten and no certificate is written. "
                            "Fix: check the method's options (e.g. epochs >= 1), or use another method.")
    return {
        "format": CERTIFICATE_FORMAT,
        "format_version": CERTIFICATE_VERSION,
        "created": _now(),
        "original": before,
        "new": after,
        "forget_set": {**indices_digest(forget_indices),
                       "encoding": "sha256 of the JSON text of the sorted, distinct indices, no spaces: [3,17,42]"},
        "method": method,
        "config": _jsonable(dict(config), "config"),
        "metrics": _jsonable(dict(metrics), "metrics"),
        "reference_metrics": _jsonable(dict(reference_metrics), "reference_metrics")
        if reference_metrics is not None else None,
        "bound": _jsonable(bound, "bound"),
        "seconds": seconds,
        "netfix_version": __version__,
        "torch_version": torch.__version__,
    }


def certificate_bytes(cert: Mapping[str, Any]) -> bytes:
    """The certificate as the indented JSON text written to disk."""
    return (json.dumps(_jsonable(dict(cert), "cert"), indent=2, sort_keys=True) + "\n").encode()


def write_certificate(cert: Mapping[str, Any], path: PathLike) -> Path:
    """Write ``cert`` as indented JSON, atomically; returns the path.

    Example:
        >>> write_certificate(cert, "runs/m-ogd.certificate.json")
        PosixPath('runs/m-ogd.certificate.json')
    """
    path = Path(path)
    atomic_write(path, certificate_bytes(cert))
    return path


def _not_rank_zero() -> bool:
    dist = torch.distributed
    return bool(dist.is_available() and dist.is_initialized() and dist.get_rank() != 0)


def _open(ledger: "Ledger | PathLike | None") -> tuple[Ledger, bool]:
    return (ledger, False) if isinstance(ledger, Ledger) else (Ledger(ledger), True)


def _inputs(inputs: "Mapping[str, PathLike | FileRef] | None") -> dict[str, dict[str, Any]]:
    out = {}
    for role, p in (inputs or {}).items():
        if isinstance(p, Mapping):
            ref = _ref(p, f"inputs[{role!r}]")
        else:
            path = Path(p)
            if not path.is_file():
                raise ConfigError(f"inputs[{role!r}]: {path} not found; only files that exist can be recorded.")
            ref = {"path": str(path.resolve()), "sha256": file_sha256(path)}
        out[str(role)] = {"path": ref["path"], "sha256": ref["sha256"], "input": True}
    return out


def record_run(kind: str, *, files: Mapping[str, PathLike], inputs: "Mapping[str, PathLike | FileRef] | None" = None,
               ledger: "Ledger | PathLike | None" = None, **payload: Any) -> int | None:
    """Record a run whose files are already written: hash ``files`` (role -> path written) and take ``inputs``
    (role -> path read, or its ref as read), and append one committed ``kind`` record; returns its id (``None`` on
    ranks other than 0 under ``torch.distributed``). Prefer :func:`publish_recorded`, which cannot leave a written
    file unrecorded.

    Example:
        >>> record_run("unlearn", files={"model": "runs/m-ogd.safetensors"}, inputs={"source": "runs/m"},
        ...            method="ogd", metrics={"forget_acc": 0.0})
        2
    """
    if _not_rank_zero():
        return None
    _check_roles(kind, files, inputs, payload)
    entries: dict[str, dict[str, Any]] = {}
    for role, p in files.items():
        path = Path(p)
        if not path.is_file():
            raise ConfigError(f"files[{role!r}]: {path} not found; only files that exist can be recorded. Fix: save "
                              "the model before recording the run.")
        entries[str(role)] = {"path": str(path.resolve()), "sha256": file_sha256(path)}
    entries.update(_inputs(inputs))
    led, own = _open(ledger)
    try:
        return led.append(kind, {**payload, "files": entries})
    finally:
        if own:
            led.close()


def _check_roles(kind: str, files: Mapping[str, Any], inputs: Mapping[str, Any] | None,
                 payload: Mapping[str, Any]) -> None:
    if kind not in KINDS or kind == "commit":
        raise unknown("kind", kind, [k for k in KINDS if k != "commit"], "kind")
    if "files" in payload or "status" in payload:
        raise ConfigError("payload: 'files' and 'status' are reserved. Fix: pass the files as files= / outputs=.")
    clash = sorted(set(files) & set(inputs or {}))
    if clash:
        raise ConfigError(f"inputs: roles {clash} are also outputs; expected distinct roles, e.g. 'model' for the "
                          "file written and 'source' for the file read.")


def publish_recorded(kind: str, outputs: Mapping[str, "tuple[PathLike, bytes]"], *,
                     inputs: "Mapping[str, PathLike | FileRef] | None" = None,
                     ledger: "Ledger | PathLike | None" = None, **payload: Any) -> dict[str, Any]:
    """Write ``outputs`` (role -> (path, bytes)) atomically and record them in the ledger as one step (see the
    module docstring); ``inputs``: files the run read (role -> path, or the ref taken when it was read). Returns
    ``{"ledger": path, "ledger_record": id}`` (the pending record's id; nothing on ranks other than 0).

    Example:
        >>> publish_recorded("edit", {"model": ("runs/m-edit.safetensors", ser.data)}, inputs={"source": ref},
        ...                  method="rmsprop")
        {'ledger': '/home/me/.netfix/ledger.sqlite', 'ledger_record': 7}
    """
    if _not_rank_zero():
        return {}
    _check_roles(kind, outputs, inputs, payload)
    import hashlib

    entries = {str(role): {"path": str(Path(p).resolve()), "sha256": hashlib.sha256(data).hexdigest()}
               for role, (p, data) in outputs.items()}
    entries.update(_inputs(inputs))
    staged: dict[Path, str] = {}
    led, own = _open(ledger)
    try:
        for p, data in outputs.values():
            staged[Path(p)] = stage(p, data)  # the slow part, before any lock or record
        rid = led.begin(kind, {**payload, "files": entries})
        with led.committing(rid):
            for path, tmp in staged.items():
                replace_staged(tmp, path)
        return {"ledger": str(led.path), "ledger_record": rid}
    finally:
        for path, tmp in staged.items():
            if os.path.exists(tmp):
                os.unlink(tmp)
            clean_stale(path)
        if own:
            led.close()


def ledger_location(ledger: "Ledger | PathLike | None") -> str:
    """Where records go: a ledger's path, or the default ($NETFIX_HOME/ledger.sqlite)."""
    return str(ledger.path if isinstance(ledger, Ledger) else ledger_path(ledger))


def write_run_document(run_path: PathLike, report_path: PathLike, doc: Mapping[str, Any]) -> dict[str, str]:
    """Write a run's document (JSON) and its self-contained HTML report; returns their paths."""
    from . import report

    atomic_write(Path(run_path), json.dumps(doc, indent=2, default=str).encode())
    html = report.write(dict(doc), Path(report_path))
    return {"run": str(run_path), "report": str(html)}


def refuse_unchanged(before: nn.Module, new: Serialized, what: str) -> None:
    """Raise :class:`~netfix.errors.NoChangeError` when ``new`` (``what`` made it) holds exactly ``before``'s
    weights: a run that changed nothing is not saved, recorded or certified.

    Example:
        >>> refuse_unchanged(model, netfix.io.serialize(out.model), "unlearn with ogd")
    """
    if new.weights_sha256 == weights_sha256(before):
        raise NoChangeError(f"{what} changed no weight of the model, so nothing was saved, recorded or certified. "
                            "Fix: check the options (e.g. epochs >= 1, a larger lr), or pick another method.")


def metric_rows(models: Mapping[str, nn.Module], *, scenario: Any = None, test: "LabeledData | None" = None,
                reference: "nn.Module | None" = None, seconds: "Mapping[str, float] | None" = None, seed: int = 0,
                device: "torch.device | str | None" = None) -> tuple[list[dict[str, Any]], dict[str, Metrics]]:
    """A run's table: each model measured (:func:`netfix.evaluation.evaluate`) on the scenario's sets, or on
    ``test`` without one, against ``reference`` (the reference itself against none), as a row of :data:`COLUMNS`
    with its ``seconds`` where given; and each model's full metrics.

    Example:
        >>> rows, metrics = metric_rows({"before": model, "after": out.model}, scenario=s,
        ...                             seconds={"after": out.seconds})
        >>> rows[1]["forget_acc"], metrics["after"]["mia_efficacy"]
    """
    from .evaluation import evaluate

    rows, evals = [], {}
    sets = {"scenario": scenario} if scenario is not None else {"test": test}
    for name, m in models.items():
        metrics = evals[name] = evaluate(m, reference=reference if m is not reference else None, seed=seed,
                                         device=device, **sets)
        rows.append({"model": name, **{k: metrics[k] for k in COLUMNS if k in metrics},
                     **({"seconds": seconds[name]} if seconds and name in seconds else {})})
    return rows, evals


def report_panel(models: Mapping[str, nn.Module], scenario: Any, test: LabeledData) -> dict[str, Any]:
    """The report's data (:func:`netfix.report.panel`) for ``models`` on the scenario's sets, or on ``test`` when
    there is no scenario; for class forgetting, the forgotten class counted in the per-class plots.

    Example:
        >>> write_run_document("runs/m.run.json", "runs/m.report.html",
        ...                    {"rows": rows, "report": report_panel({"before": model, "after": out.model}, s, test)})
    """
    from . import report

    if scenario is None:
        return report.panel(dict(models), {"test": test}, test.num_classes)
    sets = {"forget": scenario.forget, "retain": scenario.retain, "test": scenario.test,
            "fault_test": scenario.fault_test}
    forgotten = scenario.args["cls"] if scenario.name == "class_forget" else None
    return report.panel(dict(models), sets, scenario.test.num_classes, forgotten=forgotten)


def forgetting_bound(history: "list[dict[str, Any]]") -> "dict[str, Any] | None":
    """What the method guarantees about a forgetting, from its history's last entry (mixed-linear's
    ``distance_bound`` / ``kl_bound``): the ``bound`` of its :func:`certificate`, or ``None``."""
    last = history[-1] if history else {}
    return {k: last[k] for k in BOUND_KEYS if k in last} or None


def split_heldout(test: LabeledData, indices: "np.ndarray | list[int]", argument: str = "indices"
                  ) -> tuple[LabeledData, LabeledData]:
    """``(the samples of test at indices, the rest of test)``: held-out data for the methods that read data the
    model never saw (``netfix.unlearn(..., heldout=...)``), and what the run is then evaluated on.

    Example:
        >>> heldout, test = split_heldout(test, np.arange(0, len(test), 2))
    """
    idx = np.asarray(indices)
    check_indices(idx, len(test), argument, "test split")
    rest = np.setdiff1d(np.arange(len(test)), idx)
    if not len(rest):
        raise DataError(f"{argument}: names the whole test split, leaving nothing to evaluate on. Fix: hold out part "
                        "of it (e.g. half).")
    return test.subset(np.sort(idx), f"{test.name}/heldout"), test.subset(rest, test.name)
