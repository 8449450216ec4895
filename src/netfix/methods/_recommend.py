"""Which method for which request, at what budget: :func:`recommend`, :func:`recommend_details`,
:func:`request_kind`.

The answer comes from the benches, not from a rule of thumb: ``fronts.json`` beside this module holds, per request
(``random`` samples, a ``class``, a ``fault``), the Pareto fronts of (gap to retraining, rte = % of retraining's
seconds) over methods, per benched model and as means over models (:func:`netfix.bench.pareto.summary`).
``benchmarks/fronts.py`` writes it from the JSON of ``netfix bench unlearn`` and ``netfix bench zoo``; rerun it after
new benches. Only methods that ``netfix.unlearn`` runs are in it (the zoo's ``METHOD+relearn`` pipelines are not).

The pick: among the front's methods whose rte fits the budget, the one closest to retraining (lowest gap); when
none fits, the cheapest method on the front, and the reason says so. With a ``model`` the table has benched, that
model's own front is used; otherwise the front of the means over every benched model.

The leading underscore keeps the registry's discovery from importing this module as a method.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .. import card
from ..data import DataLike, LabeledData, as_data
from ..errors import DataError, unknown
from ..validation import check_scalar

__all__ = ["REQUESTS", "TABLE", "Recommendation", "recommend", "recommend_details", "request_kind", "load_table"]

REQUESTS = ("random", "class", "fault")
TABLE = Path(__file__).with_name("fronts.json")  # written by benchmarks/fronts.py
FAULT_SHARE = 0.9  # a fault: at least this share of the forget set carries one label the retain set also has


@dataclass(frozen=True)
class Recommendation:
    """A recommended method and why."""

    method: str                 # the method to pass to netfix.unlearn
    request: str                # "random", "class" or "fault"
    gap: float                  # its gap to retraining on the bench (points; mean over models unless `model`)
    rte: float                  # its cost on the bench (% of retraining's seconds)
    budget: float | None        # the largest rte asked for (None: any cost)
    fits_budget: bool           # False: no method on the front fits; this is the cheapest one
    model: str | None           # the benched model whose front was used (None: the means over every model)
    reason: str                 # one sentence a user can read

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def load_table(table: "dict[str, Any] | str | Path | None" = None) -> dict[str, Any]:
    """The fronts per request: ``table`` itself (a ``benchmarks/fronts.py`` document or a
    :func:`netfix.bench.pareto.summary` dict), the JSON file it names, or the shipped ``fronts.json``."""
    if table is None or isinstance(table, (str, Path)):
        path = Path(table) if table is not None else TABLE
        try:
            table = json.loads(path.read_text())
        except (OSError, ValueError) as e:
            raise DataError(f"table: cannot read the fronts in {path} ({e}). Fix: write it with "
                            "`python benchmarks/fronts.py docs/bench/unlearn_*.json docs/bench/zoo_*.json`.") from None
    if not isinstance(table, dict):
        raise DataError(f"table: expected a dict of fronts per request; got {type(table).__name__}.")
    fronts = table.get("fronts", table)
    if not isinstance(fronts, dict):
        raise DataError("table: its 'fronts' is not a dict of fronts per request.")
    return fronts


def _model_name(model: "str | nn.Module | None") -> str | None:
    """A benched model's name: the string, or the architecture a netfix model's card records."""
    if model is None or isinstance(model, str):
        return model
    arch = card.of(model).architecture or {}
    return arch.get("name")


def recommend_details(request: str, budget: "float | None" = None, model: "str | nn.Module | None" = None,
                      table: "dict[str, Any] | str | Path | None" = None, heldout: bool = True) -> Recommendation:
    """The method for a ``request`` ("random", "class" or "fault") within ``budget`` (the largest rte, in % of
    retraining's seconds; None: any cost), and why (see the module docstring). ``heldout=False``: you have no
    held-out data (``netfix.unlearn(..., heldout=)``), so methods that need it for this request are left out.

    Example:
        >>> r = recommend_details("class", budget=20)
        >>> r.method, r.fits_budget
        ('ogd', True)
    """
    if request not in REQUESTS:
        raise unknown("request", request, REQUESTS, "request")
    budget = check_scalar(budget, "budget", float, low=0, low_open=True, none="any cost")
    fronts = load_table(table)
    entry = fronts.get(request)
    if not isinstance(entry, dict) or not entry.get("table"):
        raise DataError(f"table: no bench measured a {request} request, so there is no front to pick from. Fix: run "
                        "`netfix bench unlearn` / `netfix bench zoo` and `python benchmarks/fronts.py` on their JSON.")
    name = _model_name(model)
    models = entry.get("models", {})
    if name is not None and name in models:
        pool = list(models[name]["points"])
        scope = f"on the benched {name}"
    else:
        pool = list(entry["table"])
        n = len(models)
        scope = f"mean over {n} benched model{'s' if n != 1 else ''}"
        if name is not None:
            scope += f"; {name} was not benched for this request"
        name = None
    if not heldout:  # methods that read held-out data can't run: the front of the rest
        from .._pareto import front
        from . import get

        runnable = [c for c in pool if c["method"] in _registered() and request not in get(c["method"]).heldout_for]
        candidates = front(runnable) if runnable else [c for c in pool if c.get("on_front")]
        scope += "; without held-out data"
    else:
        candidates = [c for c in pool if c.get("on_front")]
    fitting = [c for c in candidates if budget is None or c["rte"] <= budget]
    within = "any cost" if budget is None else f"rte <= {budget:g} %"
    if fitting:
        pick = min(fitting, key=lambda c: (c["gap"], c["rte"]))
        reason = (f"{pick['method']} is the closest to retraining among the Pareto-optimal methods for a {request} "
                  f"request within {within}: gap {pick['gap']:.2f} points at rte {pick['rte']:.1f} % ({scope})")
    else:
        pick = min(candidates, key=lambda c: (c["rte"], c["gap"]))
        reason = (f"no Pareto-optimal method for a {request} request fits {within}; {pick['method']} is the "
                  f"cheapest: rte {pick['rte']:.1f} %, gap {pick['gap']:.2f} points ({scope})")
    if pick["rte"] >= 100.0:
        reason += "; on the bench it costs more than retraining, which is exact: consider method='retrain'"
    return Recommendation(method=pick["method"], request=request, gap=float(pick["gap"]), rte=float(pick["rte"]),
                          budget=budget, fits_budget=bool(fitting), model=name, reason=reason + ".")


def recommend(request: str, budget: "float | None" = None, model: "str | nn.Module | None" = None,
              table: "dict[str, Any] | str | Path | None" = None, heldout: bool = True) -> str:
    """The name of the method to use for a ``request`` ("random", "class" or "fault") within ``budget`` (the
    largest rte in % of retraining's seconds; None: any cost); :func:`recommend_details` says why.

    Example:
        >>> netfix.methods.recommend("class")
        'ogd'
        >>> netfix.methods.recommend(netfix.methods.request_kind(forget, retain), budget=10)
        'bad-teacher'
    """
    return recommend_details(request, budget, model, table, heldout).method


def _registered() -> list[str]:
    from . import available

    return available()


def request_kind(forget: DataLike, retain: DataLike) -> str:
    """What a deletion request is, from its labels alone (``.y``: a streamed set is not read): ``"class"`` when
    no forget label occurs in ``retain``; ``"fault"`` when at least :data:`FAULT_SHARE` of the forget set carries
    one label that ``retain`` also has (a backdoor's target, a mislabel's wrong label); else ``"random"``. A tiny
    forget set of one label (e.g. one sample) is therefore a ``"fault"``.

    Example:
        >>> s = netfix.scenarios.class_forget(train, test, cls=0)
        >>> request_kind(s.forget, s.retain)
        'class'
    """
    from ._common import single_label

    f = forget if isinstance(forget, LabeledData) else as_data(forget, "forget")
    r = retain if isinstance(retain, LabeledData) else as_data(retain, "retain", allow_empty=True)
    if len(f) == 0:
        raise DataError("forget: the forget set is empty; there is no request to classify.")
    k = max(f.num_classes, r.num_classes)
    kept = torch.bincount(r.y, minlength=k) > 0
    counts = torch.bincount(f.y, minlength=k)
    if not bool(kept[counts > 0].any()):
        return "class"
    if single_label(f, FAULT_SHARE) and bool(kept[int(counts.argmax())]):
        return "fault"
    return "random"
