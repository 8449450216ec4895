"""A run's document and its parts: the table of metrics (one row per model), the report's data, the output paths
checked before any work, the refusal of a no-op, and a held-out split (see :mod:`netfix.runs`)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..data import LabeledData, check_indices
from ..errors import ConfigError, DataError, NoChangeError
from ..evaluation import Metrics
from ..io import Serialized, atomic_write, model_file, weights_sha256
from ..validation import check_path_writable
from .certificates import PathLike

__all__ = ["COLUMNS", "SUFFIXES", "output_paths", "write_run_document", "refuse_unchanged", "metric_rows",
           "report_panel", "split_heldout"]

COLUMNS = ("model", "forget_acc", "retain_acc", "test_acc", "fault_rate", "mia_efficacy", "gap", "seconds")
# the files a run writes for the model at a stem, by role
SUFFIXES = {"model": ".safetensors", "run": ".run.json", "report": ".report.html", "certificate": ".certificate.json"}


def output_paths(stem: PathLike, roles: "tuple[str, ...]", *, reads: "tuple[PathLike | None, ...]" = (),
                 overwrite: bool = False, argument: str = "out") -> dict[str, Path]:
    """The files a run will write for the model at ``stem`` (roles ``model``, ``run``, ``report``,
    ``certificate``), checked before any work: none may be a model the run reads (``reads``), none may exist unless
    ``overwrite``, and the folder must be writable. ``argument``: the option errors name.

    Example:
        >>> output_paths("runs/m-ogd", ("model", "run", "report", "certificate"), reads=("runs/m",))["run"]
        PosixPath('runs/m-ogd.run.json')
    """
    stem = model_file(stem).with_suffix("")
    paths = {r: stem.with_name(stem.name + SUFFIXES[r]) for r in roles}
    sources = {model_file(p).resolve() for p in reads if p is not None}
    if model_file(stem).resolve() in sources:
        reader = "command" if argument.startswith("--") else "run"
        raise ConfigError(f"{argument}: {model_file(stem)} is a model this {reader} reads; writing over it would lose "
                          "the original (and a certificate would describe a file that no longer exists). Fix: pass "
                          f"another {argument}.")
    if not overwrite:
        there = [str(p) for p in paths.values() if p.exists()]
        if there:
            again = "--overwrite" if argument.startswith("--") else "overwrite=True"
            raise ConfigError(f"{argument}: {', '.join(there)} already exist(s); netfix never replaces an output "
                              f"unless asked. Fix: pass another {argument}, or {again}.")
    check_path_writable(paths[roles[0]], argument)
    return paths


def write_run_document(run_path: PathLike, report_path: PathLike, doc: Mapping[str, Any]) -> dict[str, str]:
    """Write a run's document (JSON) and its self-contained HTML report; returns their paths."""
    from .. import report

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
    from ..evaluation import evaluate

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
    from .. import report

    if scenario is None:
        return report.panel(dict(models), {"test": test}, test.num_classes)
    sets = {"forget": scenario.forget, "retain": scenario.retain, "test": scenario.test,
            "fault_test": scenario.fault_test}
    forgotten = scenario.args["cls"] if scenario.name == "class_forget" else None
    return report.panel(dict(models), sets, scenario.test.num_classes, forgotten=forgotten)


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
