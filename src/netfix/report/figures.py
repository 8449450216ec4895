"""The report's plots (matplotlib, Agg backend), each returned as an embeddable base64 PNG, or None when the run
document holds nothing to plot: from a panel (:func:`netfix.report.panel`) the accuracy per split, per-class
accuracy, confusion matrices and membership-inference confidence; from a document's rows the edits, the
trade-off (gap vs rte) and, per unlearning request, the Pareto front of methods.
"""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from .measurements import BINS

__all__ = ["WIDTH", "DPI", "REQUESTS", "accuracy_plot", "per_class_plot", "confusion_plot", "mia_plot",
           "tradeoff_plot", "front_plot", "edit_plot"]

_SPLITS = ("forget", "retain", "test", "fault_test")
WIDTH = 10.5  # inches: every figure, shown at the content column's full width (about 1,100 px)
DPI = 130     # 1,365 px wide: sharp when the browser scales it to the column
_MAX_ANNOTATED = 20  # confusion matrices with more classes get no numbers in their cells
# what each unlearning request asks to forget, in words
REQUESTS = {"random": "random samples", "class": "a whole class", "fault": "a fault (e.g. a backdoor)"}


def _png(fig: Any) -> str:
    """``fig`` as an embeddable PNG (the figure's full size, so every plot scales alike to the column)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _figure(h: float, cols: int = 1, rows: int = 1, **kw: Any) -> tuple[Any, list[Any]]:
    """A full-width matplotlib figure on the Agg backend (no display), ``h`` inches tall, with a grid of
    ``rows`` x ``cols`` axes (returned as a flat list) laid out by matplotlib's constrained layout, which keeps
    titles, the figure's suptitle, labels and legends from overlapping; ``kw`` goes to ``plt.subplots``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(rows, cols, figsize=(WIDTH, h), squeeze=False, layout="constrained", **kw)
    return fig, list(axes.flat)


def _bar_values(ax: Any, xs: Iterable[float], values: Iterable[float], fontsize: float = 8) -> None:
    """Write each bar's value above it (so a bar at 0 still shows: the model is there, at 0); NaN: nothing."""
    for x, v in zip(xs, values):
        if not math.isnan(v):
            ax.annotate(f"{v:.1f}", (x, v), ha="center", va="bottom", fontsize=fontsize, xytext=(0, 1),
                        textcoords="offset points")


def _spread(ax: Any, groups: int, middle: float, least: int = 3) -> None:
    """Room on the x axis for at least ``least`` groups of bars around ``middle``, so that one or two groups do not
    stretch into bars the page's width."""
    half = max(groups, least) / 2
    ax.set_xlim(middle - half, middle + half)


def accuracy_plot(data: dict[str, Any]) -> str:
    """Each model's accuracy per split (forget / retain / test / fault test), each bar's value written."""
    models = list(data["models"])
    splits = [s for s in _SPLITS if any(s in data["models"][m]["acc"] for m in models)]
    fig, (ax,) = _figure(3.8)
    width = 0.8 / max(1, len(models))
    for i, m in enumerate(models):
        vals = [float(data["models"][m]["acc"].get(s, np.nan)) for s in splits]
        xs = np.arange(len(splits)) + i * width
        ax.bar(xs, vals, width, label=m)
        _bar_values(ax, xs, vals)
    ax.set_xticks(np.arange(len(splits)) + width * (len(models) - 1) / 2, splits)
    _spread(ax, len(splits), (len(splits) - 1) / 2 + width * (len(models) - 1) / 2)
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(0, 112)
    fig.legend(loc="outside upper center", ncols=len(models))
    return _png(fig)


def per_class_plot(data: dict[str, Any]) -> str | None:
    """Top: each model's accuracy per class; bottom: each later model's change from the first. The forgotten class
    (if any) is shaded and its bars labelled; its change, which dwarfs the others, is clipped and written out."""
    models = [m for m in data["models"] if "per_class_acc" in data["models"][m]]
    if len(models) < 2:
        return None
    acc = np.array([data["models"][m]["per_class_acc"] for m in models], dtype=float)
    forgotten = data.get("forgotten")
    x, width = np.arange(acc.shape[1]), 0.8 / len(models)
    fig, (top, bottom) = _figure(6.0, rows=2, sharex=True)
    for i, m in enumerate(models):
        top.bar(x + i * width, acc[i], width, label=m, color=f"C{i}")
        if forgotten is not None:
            _bar_values(top, [x[forgotten] + i * width], [acc[i, forgotten]])
    delta = acc[1:] - acc[0]
    others = np.delete(delta, forgotten, axis=1) if forgotten is not None else delta
    lim = max(2.0, 1.25 * float(np.abs(others).max(initial=0.0)))
    for i, row in enumerate(delta, 1):
        bottom.bar(x + i * width, np.clip(row, -lim, lim), width, color=f"C{i}")
        for c in np.flatnonzero(np.abs(row) > lim):  # clipped: the true change written inside the bar, upright
            down = row[c] < 0
            bottom.annotate(f"{row[c]:+.1f}", (x[c] + i * width, -lim if down else lim), ha="center",
                            va="bottom" if down else "top", rotation=90, fontsize=8, color="white",
                            fontweight="bold", xytext=(0, 3 if down else -3), textcoords="offset points")
    bottom.axhline(0, color="black", lw=0.8)
    bottom.set_ylim(-1.15 * lim, 1.15 * lim)
    centers = x + width * (len(models) - 1) / 2
    labels = [f"{c}\nforgotten" if c == forgotten else str(c) for c in x]
    bottom.set_xticks(centers, labels)
    if forgotten is not None:
        for ax in (top, bottom):
            ax.axvspan(centers[forgotten] - 0.5, centers[forgotten] + 0.5, color="gold", alpha=0.25, lw=0,
                       zorder=0)
    top.set_ylim(0, 112)
    top.set_ylabel("test accuracy (%)")
    bottom.set_ylabel(f"change from {models[0]}\n(points)")
    bottom.set_xlabel("class")
    fig.legend(loc="outside upper center", ncols=len(models))
    return _png(fig)


def _cells(ax: Any, values: np.ndarray, signed: bool) -> None:
    """Write each non-zero cell's count in it (white on dark cells); none past ``_MAX_ANNOTATED`` classes."""
    if len(values) > _MAX_ANNOTATED:
        return
    top = max(1.0, float(np.abs(values).max()))
    for i, j in zip(*np.nonzero(values)):
        v = int(values[i, j])
        ax.text(j, i, f"{v:+d}" if signed else str(v), ha="center", va="center", fontsize=6.5,
                color="white" if abs(v) > 0.6 * top else "black")


def _class_axes(ax: Any, k: int, forgotten: int | None) -> None:
    """Class ticks on both axes of a confusion matrix; the forgotten class's row outlined, its ticks bold."""
    from matplotlib.patches import Rectangle

    ticks = range(k) if k <= _MAX_ANNOTATED else range(0, k, max(1, k // 10))
    ax.set_xticks(list(ticks))
    ax.set_yticks(list(ticks))
    ax.set_xlabel("predicted")
    if forgotten is not None:
        ax.add_patch(Rectangle((-0.5, forgotten - 0.5), k, 1, fill=False, ec="darkorange", lw=2))
        for label in (*ax.get_xticklabels(), *ax.get_yticklabels()):
            if label.get_text() == str(forgotten):
                label.set_fontweight("bold")
                label.set_color("darkorange")


def confusion_plot(data: dict[str, Any]) -> str | None:
    """The first model's confusion matrix (counts), then each later model's change from it, on one colour
    scale."""
    models = [m for m in data["models"] if "confusion" in data["models"][m]]
    if len(models) < 2:
        return None
    base = np.array(data["models"][models[0]]["confusion"], dtype=float)
    deltas = [np.array(data["models"][m]["confusion"], dtype=float) - base for m in models[1:]]
    fig, axes = _figure(3.9, cols=len(models))
    im = axes[0].imshow(base, cmap="Blues")
    _cells(axes[0], base, signed=False)
    axes[0].set_title(f"{models[0]} (counts)", fontsize=10)
    axes[0].set_ylabel("true")
    fig.colorbar(im, ax=axes[0], shrink=0.85)
    lim = max(1.0, max(float(np.abs(d).max()) for d in deltas))
    for ax, m, d in zip(axes[1:], models[1:], deltas):
        im = ax.imshow(d, cmap="RdBu_r", vmin=-lim, vmax=lim)
        _cells(ax, d, signed=True)
        ax.set_title(f"{m} − {models[0]}", fontsize=10)
    fig.colorbar(im, ax=axes[1:], shrink=0.85)
    for ax in axes:
        _class_axes(ax, len(base), data.get("forgotten"))
    return _png(fig)


def mia_plot(data: dict[str, Any]) -> str | None:
    """Per model, how the forget set's and the test set's true-class confidences are spread."""
    models = [m for m in data["models"] if {"forget", "test"} <= set(data["models"][m]["confidence_hist"])]
    if not models:
        return None
    fig, axes = _figure(3.4, cols=len(models), sharey=True)
    centers = (np.arange(BINS) + 0.5) / BINS
    for ax, m in zip(axes, models):
        for split, color in (("forget", "tab:red"), ("test", "tab:blue")):
            counts = np.array(data["models"][m]["confidence_hist"][split], dtype=float)
            ax.step(centers, counts / max(1.0, counts.sum()), where="mid", color=color, label=split)
        ax.set_title(m, fontsize=10)
        ax.set_xlabel("true-class confidence")
    axes[0].set_ylabel("share of samples")
    axes[0].legend(fontsize=9, loc="upper center")  # the curves sit at the edges: the middle stays clear
    fig.suptitle("Membership signal: forget vs unseen test data", fontsize=11)
    return _png(fig)


def tradeoff_plot(rows: Sequence[dict[str, Any]]) -> str | None:
    """The rows that have them at their (rte, gap): closeness to retraining vs cost."""
    pts = [r for r in rows if isinstance(r.get("gap"), (int, float)) and isinstance(r.get("rte"), (int, float))]
    if not pts:
        return None
    fig, (ax,) = _figure(4.4)
    for r in pts:
        label = " ".join(str(r[k]) for k in ("method", "scenario", "model") if r.get(k) is not None)
        ax.scatter(r["rte"], r["gap"], s=18)
        ax.annotate(label, (r["rte"], r["gap"]), fontsize=7, xytext=(3, 2), textcoords="offset points")
    ax.set_xscale("symlog", linthresh=1.0)
    ax.set_xlabel("rte (% of retrain's seconds)")
    ax.set_ylabel("gap to retrain (points)")
    ax.set_title("Trade-off: closeness to retraining vs cost")
    return _png(fig)


def front_plot(request: str, entry: dict[str, Any]) -> str | None:
    """One request's methods at their mean (rte, gap) over models; the Pareto front drawn as the staircase that
    bounds what it dominates; retraining's cost (rte 100) as a dashed line."""
    table = [r for r in entry.get("table", []) if r.get("gap") is not None and r.get("rte") is not None]
    if not table:
        return None
    fig, (ax,) = _figure(4.6)
    for r in table:
        on = r.get("on_front")
        ax.scatter(r["rte"], r["gap"], s=30 if on else 18, color="tab:red" if on else "none",
                   edgecolors="tab:red" if on else "tab:gray", zorder=3)
        ax.annotate(str(r["method"]), (r["rte"], r["gap"]), fontsize=7, xytext=(3, 2), textcoords="offset points",
                    color="black" if on else "dimgray")
    best = sorted((r for r in table if r.get("on_front")), key=lambda r: (r["rte"], r["gap"]))
    if best:
        xs, ys = [r["rte"] for r in best], [r["gap"] for r in best]
        xmax = max(max(r["rte"] for r in table), 100.0) * 1.5
        ax.step(xs + [xmax], ys + [ys[-1]], where="post", color="tab:red", lw=1.2, label="Pareto front")
    ax.axvline(100.0, color="black", ls="--", lw=0.8, label="retraining's cost")
    ax.set_xscale("symlog", linthresh=1.0)
    ax.set_yscale("symlog", linthresh=1.0)  # gaps span 0.1 to 50+ points: the close ones stay apart
    ax.set_xlim(left=0.0)
    ax.set_ylim(0.0, 2.0 * max(r["gap"] for r in table) + 1.0)  # room for the labels at the top
    ax.set_xlabel("rte (% of retrain's seconds, mean over models)")
    ax.set_ylabel("gap to retrain (points, mean)")
    ax.legend(fontsize=8)
    ax.set_title(f"Forgetting {REQUESTS.get(request, request)}: closeness to retraining vs cost", fontsize=10)
    return _png(fig)


def edit_plot(rows: Sequence[dict[str, Any]]) -> str | None:
    """The edit rows' success rate, mean steps and drawdown, side by side."""
    pts = [r for r in rows if "success_rate" in r and "drawdown" in r]
    if not pts:
        return None
    names = [str(r.get("method", r.get("model", i))) for i, r in enumerate(pts)]
    fig, axes = _figure(3.8, cols=3)
    for ax, key, label in zip(axes, ("success_rate", "mean_steps", "drawdown"),
                              ("success rate (%)", "mean steps", "drawdown (points)")):
        ax.bar(range(len(pts)), [float(r.get(key) or 0) for r in pts])
        ax.set_xticks(range(len(pts)), names, rotation=60, ha="right", fontsize=8)
        _spread(ax, len(pts), (len(pts) - 1) / 2)
        ax.set_title(label, fontsize=10)
    return _png(fig)
