"""Pareto fronts over (gap, rte) points: shared by the benches' tables (:mod:`netfix.bench.pareto`) and
``netfix.methods.recommend``, below both."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = ["dominates", "front"]


def dominates(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Whether point ``a`` is at least as good as ``b`` on gap and rte (lower is better) and better on one."""
    return a["gap"] <= b["gap"] and a["rte"] <= b["rte"] and (a["gap"] < b["gap"] or a["rte"] < b["rte"])


def front(pts: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The points of ``pts`` (dicts with ``gap`` and ``rte``) no other point dominates, cheapest first. Equal
    points dominate neither other, so ties are all on the front."""
    kept = [p for p in pts if not any(dominates(q, p) for q in pts if q is not p)]
    return sorted(kept, key=lambda p: (p["rte"], p["gap"]))
