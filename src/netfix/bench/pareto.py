"""Which method, for which request, at what cost: Pareto fronts of (gap, rte) over the rows of unlearning benches.

A bench row says how close a method came to retraining (``gap``: mean |difference| to the retrained model over UA,
RA, TA and MIA, in points) and what it cost (``rte``: % of retraining's seconds, same run). Neither alone picks a
method: a method is worth considering when no other method is at least as close *and* at least as cheap, one of
the two strictly — the Pareto front, lower being better on both.

Rows come from ``netfix bench unlearn`` (``scenario``, ``model``) and ``netfix bench zoo`` (``scenario``,
``arch``); each scenario answers one kind of request (:data:`REQUESTS`): ``random_forget`` → ``random``,
``class_forget`` → ``class``, ``backdoor`` → ``fault``. Left out: the reference and the untouched model
(``retrain``, ``original``), rows with an ``error``, rows without a finite gap or rte, and rows measured against
another reference (``mixed-linear``'s rows carry ``reference: retrain-linear``) — all but the first two are listed
under ``skipped`` with why.

:func:`summary` is what a bench's JSON stores under ``"fronts"`` and what :mod:`netfix.report` draws; per request
it holds each model's points and front, and a table over models (mean gap and rte per method, on the front of
those means or not, on how many models' fronts). Means are over the models a method ran on (``models``): a method
benched on fewer models is compared on those. All functions here are pure (rows in, dicts out).

Example:
    >>> rows = [{"scenario": "class_forget", "model": "mlp", "method": "ogd", "gap": 0.6, "rte": 9.0},
    ...         {"scenario": "class_forget", "model": "mlp", "method": "salun", "gap": 2.1, "rte": 130.0}]
    >>> summary(rows)["class"]["front"]
    ['ogd']
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

from .._pareto import dominates, front

__all__ = ["REQUESTS", "EXCLUDED", "request_of", "dominates", "front", "points", "summary"]

REQUESTS: dict[str, str] = {"random_forget": "random", "class_forget": "class", "backdoor": "fault"}
EXCLUDED: tuple[str, ...] = ("retrain", "original")  # the reference and the model before the request


def request_of(row: dict[str, Any]) -> str | None:
    """The request a bench row answers (``random``, ``class``, ``fault``), or None for any other row."""
    return REQUESTS.get(str(row.get("scenario")))


def _number(v: Any) -> float | None:
    """``v`` as a finite float, or None (missing, NaN, text)."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    return float(v) if math.isfinite(v) else None


def points(rows: Iterable[dict[str, Any]], exclude: Sequence[str] = EXCLUDED
           ) -> tuple[dict[str, dict[str, list[dict[str, Any]]]], list[dict[str, Any]]]:
    """``({request: {model: [{"method", "gap", "rte", "n"}, ...]}}, skipped)``: the usable rows per request and
    model (a method's several rows there — e.g. the same model in two bench files — averaged, ``n`` of them), and
    the rows left out with why (``request``, ``model``, ``method``, ``why``); ``exclude``d methods are dropped
    silently."""
    acc: dict[str, dict[str, dict[str, list[tuple[float, float]]]]] = {}
    skipped: list[dict[str, Any]] = []
    for r in rows:
        req = request_of(r)
        method = r.get("method")
        if req is None or method is None or method in exclude:
            continue
        model = str(r.get("model") or r.get("arch") or "-")
        gap, rte = _number(r.get("gap")), _number(r.get("rte"))
        why = (f"error: {r['error']}" if r.get("error") else
               f"measured against {r['reference']}, not retrain" if r.get("reference") not in (None, "retrain") else
               "no gap" if gap is None else "no rte" if rte is None else None)
        if why or gap is None or rte is None:
            skipped.append({"request": req, "model": model, "method": method, "why": why})
            continue
        acc.setdefault(req, {}).setdefault(model, {}).setdefault(method, []).append((gap, rte))
    out = {req: {model: [{"method": m, "gap": sum(g for g, _ in v) / len(v), "rte": sum(t for _, t in v) / len(v),
                          "n": len(v)} for m, v in methods.items()]
                 for model, methods in per_model.items()}
           for req, per_model in acc.items()}
    return out, skipped


def summary(rows: Iterable[dict[str, Any]], exclude: Sequence[str] = EXCLUDED) -> dict[str, Any]:
    """Per request (``random``, ``class``, ``fault``; absent when no row answers it)::

        {"models": {MODEL: {"points": [{"method", "gap", "rte", "n", "on_front"}], "front": [METHOD, ...]}},
         "table": [{"method", "gap", "rte", "models", "front_models", "on_front"}],
         "front": [METHOD, ...], "skipped": [{"model", "method", "why"}]}

    ``points`` are one model's methods, ``front`` its Pareto front (cheapest first). ``table`` has one row per
    method: its mean gap and rte over the ``models`` it ran on, on how many of their fronts it is
    (``front_models``), and whether it is on the front of these means (``on_front``; the request's ``front``,
    cheapest first); rows on that front first, then by gap.
    """
    per_request, skipped = points(rows, exclude)
    out: dict[str, Any] = {}
    for req in REQUESTS.values():
        if req not in per_request and not any(s["request"] == req for s in skipped):
            continue
        models: dict[str, Any] = {}
        means: dict[str, dict[str, Any]] = {}
        for model, pts in per_request.get(req, {}).items():
            best = front(pts)
            on = {id(p) for p in best}
            models[model] = {"points": [{**p, "on_front": id(p) in on} for p in pts],
                             "front": [p["method"] for p in best]}
            for p in pts:
                m = means.setdefault(p["method"], {"method": p["method"], "gaps": [], "rtes": [], "front_models": 0})
                m["gaps"].append(p["gap"])
                m["rtes"].append(p["rte"])
                m["front_models"] += id(p) in on
        table = [{"method": m["method"], "gap": sum(m["gaps"]) / len(m["gaps"]),
                  "rte": sum(m["rtes"]) / len(m["rtes"]), "models": len(m["gaps"]),
                  "front_models": m["front_models"]} for m in means.values()]
        best = front(table)
        on = {id(r) for r in best}
        for r in table:
            r["on_front"] = id(r) in on
        table.sort(key=lambda r: (not r["on_front"], r["gap"], r["rte"]))
        out[req] = {"models": models, "table": table, "front": [r["method"] for r in best],
                    "skipped": [{k: s[k] for k in ("model", "method", "why")} for s in skipped if s["request"] == req]}
    return out
