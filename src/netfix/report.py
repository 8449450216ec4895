"""Self-contained HTML reports: look at a repair instead of reading logs (``netfix report RUN_DIR``).

A report is one HTML file with no network access needed: plots are embedded as base64 PNG (matplotlib, Agg
backend), styles are inline. It opens with the headline — the before / after / reference table of the run — and
then the plots the run's data supports, each the content column's full width:

- for class forgetting, first of all the headline: the forgotten class's test accuracy before → after (and the
  reference's), e.g. ``forgotten class 0: 97.1 % → 0.0 % (reference 0.0 %)``;
- accuracy per split (forget / retain / test / fault test) for every model of the run, each bar's value written
  (a bar at 0, e.g. the reference's forget accuracy, still shows);
- per-class test accuracy for every model, and its change from the first model (the one before the repair); for
  class forgetting the forgotten class is included (from its own test samples, which the scenario's test split
  leaves out) and shaded;
- the first model's test confusion matrix and each later model's change from it (the reference's too), the
  forgotten class's row outlined;
- the membership-inference picture: histograms of true-class confidence on the forget set vs the test set, per
  model (a forgotten set should look like unseen data);
- for edits: success, steps and drawdown; for benches: their table and, where rows have ``gap`` and ``rte``, the
  trade-off plot (gap to retrain vs % of retrain's time);
- for unlearning benches, per request (random samples, a class, a fault): which method, at what cost — the Pareto
  front of (gap, rte) over methods (:mod:`netfix.bench.pareto`; the document's ``fronts``, or computed from its
  rows), as a scatter with the front drawn and a table.

The numbers behind the plots come from :func:`panel`, which a command calls while it still holds the models and
stores under ``"report"`` in its run document (JSON); :func:`render` only reads documents, so a report can be
re-rendered later from the run folder alone.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .data import LabeledData
from .errors import DataError
from .evaluation import predict
from .io import atomic_write

__all__ = ["panel", "render", "write", "collect"]

_SPLITS = ("forget", "retain", "test", "fault_test")
_BINS = 20
_WIDTH = 10.5  # inches: every figure, shown at the content column's full width (about 1,100 px)
_DPI = 130     # 1,365 px wide: sharp when the browser scales it to the column
_MAX_ANNOTATED = 20  # confusion matrices with more classes get no numbers in their cells


def panel(models: "dict[str, nn.Module]", sets: "dict[str, LabeledData | None]", num_classes: int,
          max_samples: int = 5000, forgotten: int | None = None) -> dict[str, Any]:
    """What the plots need, per model: accuracy on each split in ``sets`` (``forget``, ``retain``, ``test``,
    ``fault_test``; None entries skipped), per-class test accuracy, the test confusion matrix (rows: true class)
    and histograms (``_BINS`` bins on [0, 1]) of the true-class confidence on forget and test. Splits are capped at
    ``max_samples`` samples (the first ones) to keep reports fast on big sets.

    ``forgotten``: for a class-forgetting request, the class forgotten. Its test samples are ``fault_test`` (the
    scenario's ``test`` leaves them out, see :func:`netfix.scenarios.class_forget`); the per-class accuracy and the
    confusion matrix then count them too, so the plots show the class, and the panel records ``forgotten`` for the
    report's headline. The per-split accuracies stay those of the scenario's sets."""
    out: dict[str, Any] = {"num_classes": num_classes, "models": {}}
    counted = ("test", "fault_test") if forgotten is not None else ("test",)
    if forgotten is not None:
        out["forgotten"] = int(forgotten)
    for name, model in models.items():
        out["models"][name] = _model_panel(model, sets, num_classes, max_samples, counted)
    return out


def _model_panel(model: nn.Module, sets: "dict[str, LabeledData | None]", num_classes: int, max_samples: int,
                 counted: Sequence[str]) -> dict[str, Any]:
    """One model's entry of :func:`panel`; the confusion matrix sums the splits named in ``counted``."""
    entry: dict[str, Any] = {"acc": {}, "confidence_hist": {}}
    edges = np.linspace(0.0, 1.0, _BINS + 1)
    cm = torch.zeros(num_classes, num_classes, dtype=torch.long)
    for split, data in sets.items():
        if data is None or len(data) == 0:
            continue
        d = data if len(data) <= max_samples else data.subset(torch.arange(max_samples), data.name)
        logits = predict(model, d).cpu()
        pred = logits.argmax(1)
        entry["acc"][split] = float(100.0 * (pred == d.y).float().mean())
        if split in ("forget", "test"):
            conf = F.softmax(logits, 1).gather(1, d.y[:, None]).squeeze(1).numpy()
            entry["confidence_hist"][split] = np.histogram(conf, bins=edges)[0].tolist()
        if split in counted:
            cm.index_put_((d.y, pred), torch.ones(len(d.y), dtype=torch.long), accumulate=True)
    if int(cm.sum()):
        entry["confusion"] = cm.tolist()
        entry["per_class_acc"] = [float(100.0 * cm[c, c] / max(1, int(cm[c].sum()))) for c in range(num_classes)]
    return entry


# -- rendering --------------------------------------------------------------------------------------------------
def _png(fig: Any) -> str:
    """``fig`` as an embeddable PNG (the figure's full size, so every plot scales alike to the column)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=_DPI)
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

    fig, axes = plt.subplots(rows, cols, figsize=(_WIDTH, h), squeeze=False, layout="constrained", **kw)
    return fig, list(axes.flat)


def _fmt(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        return f"{v:.3g}" if abs(v) < 0.01 and v != 0 else f"{v:.2f}"
    if isinstance(v, (dict, list)):
        return ""
    return html.escape(str(v))


def _table(rows: Sequence[dict[str, Any]], columns: "Sequence[str] | None" = None) -> str:
    if not rows:
        return "<p>(no rows)</p>"
    if columns is None:
        columns = []
        for r in rows:
            for k, v in r.items():
                if k not in columns and not isinstance(v, (dict, list)) and not k.endswith("_std") and k != "n":
                    columns.append(k)
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{_fmt(r.get(c))}</td>" for c in columns) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


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


def _accuracy_plot(data: dict[str, Any]) -> str:
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


def _per_class_plot(data: dict[str, Any]) -> str | None:
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


def _confusion_plot(data: dict[str, Any]) -> str | None:
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


def _mia_plot(data: dict[str, Any]) -> str | None:
    models = [m for m in data["models"] if {"forget", "test"} <= set(data["models"][m]["confidence_hist"])]
    if not models:
        return None
    fig, axes = _figure(3.4, cols=len(models), sharey=True)
    centers = (np.arange(_BINS) + 0.5) / _BINS
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


def _tradeoff_plot(rows: Sequence[dict[str, Any]]) -> str | None:
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


_ASKED = {"random": "random samples", "class": "a whole class", "fault": "a fault (e.g. a backdoor)"}


def _front_plot(request: str, entry: dict[str, Any]) -> str | None:
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
    ax.set_title(f"Forgetting {_ASKED.get(request, request)}: closeness to retraining vs cost", fontsize=10)
    return _png(fig)


def _fronts_html(fronts: dict[str, Any]) -> str:
    """Per request: the scatter with its front, the table over models, each model's front, what was left out."""
    parts = []
    for request, entry in fronts.items():
        if not entry.get("table"):
            continue
        heading = f"Which method for {_ASKED.get(request, request)} ({request} request)"
        parts.append(f"<h2>{html.escape(heading)}</h2>")
        img = _front_plot(request, entry)
        if img:
            parts.append(f"<img alt='{html.escape(heading)}' src='{img}'>")
        rows = [{**r, "on_front": "yes" if r.get("on_front") else ""} for r in entry["table"]]
        parts.append("<p>Mean gap and rte over the models each method ran on (<i>models</i>); <i>front_models</i>: "
                     "on how many of those models' own fronts it is. Lower is better on both.</p>")
        parts.append(_table(rows, ["method", "gap", "rte", "models", "front_models", "on_front"]))
        per_model = [{"model": m, "front (cheapest first)": ", ".join(v.get("front", []))}
                     for m, v in entry.get("models", {}).items()]
        parts.append(_table(per_model, ["model", "front (cheapest first)"]))
        if entry.get("skipped"):
            parts.append("<p>Left out:</p>" + _table(entry["skipped"], ["model", "method", "why"]))
    return "".join(parts)


def _fronts_of(doc: dict[str, Any]) -> dict[str, Any]:
    """The document's ``fronts``, or — for a bench document written before they were stored — computed from its
    rows (an empty dict when no row answers a random, class or fault request)."""
    if isinstance(doc.get("fronts"), dict):
        return doc["fronts"]
    if not doc.get("bench"):
        return {}
    from .bench.pareto import summary

    return summary(r for r in doc["rows"] if isinstance(r, dict))


def _edit_plot(rows: Sequence[dict[str, Any]]) -> str | None:
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


_CSS = """body{font-family:system-ui,sans-serif;margin:24px auto;padding:0 24px;max-width:1100px;color:#222}
table{border-collapse:collapse;font-size:13px;margin:8px 0 18px}th,td{border:1px solid #ccc;padding:3px 8px;
text-align:right}th{background:#f2f2f2}td:first-child,th:first-child{text-align:left}h1{font-size:22px}
h2{font-size:17px;margin-top:26px}.meta{color:#666;font-size:12px}.note{color:#444;font-size:13px;margin:2px 0}
.headline{font-size:18px;background:#fff4d6;border-left:4px solid #e0a800;padding:8px 12px;margin:12px 0}
img{display:block;width:100%;height:auto;margin:6px 0}"""


def _forgotten_line(data: "dict[str, Any] | None") -> str:
    """For a class-forgetting run, the headline: the forgotten class's test accuracy from the first model to the
    second, the others in brackets, e.g. ``forgotten class 0: 97.1 % → 0.0 % (reference 0.0 %)``; else ''."""
    data = data or {}
    forgotten = data.get("forgotten")
    if forgotten is None:
        return ""
    accs = [(m, e["per_class_acc"][forgotten]) for m, e in data["models"].items()
            if len(e.get("per_class_acc", ())) > forgotten]
    if not accs:
        return ""
    line = f"forgotten class {forgotten}: " + " → ".join(f"{a:.1f} %" for _, a in accs[:2])
    if accs[2:]:
        line += " (" + ", ".join(f"{m} {a:.1f} %" for m, a in accs[2:]) + ")"
    said = " → ".join(m for m, _ in accs[:2])
    return (f"<p class='headline'><b>{html.escape(line)}</b> <span class='meta'>test accuracy on the class, "
            f"{html.escape(said)}</span></p>")


def _plots(doc: dict[str, Any]) -> list[tuple[str, str, str | None]]:
    """(heading, note, image or None) for every plot the document supports, in page order."""
    data = doc.get("report")
    plots: list[tuple[str, str, str | None]] = []
    if data:
        f = data.get("forgotten")
        shaded = f"; the forgotten class {f} (shaded) counted from its own test samples" if f is not None else ""
        outlined = f"; the forgotten class {f}'s row is outlined" if f is not None else ""
        plots += [("Accuracy per split", "", _accuracy_plot(data)),
                  ("Per-class accuracy", f"Test accuracy per class, and its change from the first model{shaded}.",
                   _per_class_plot(data)),
                  ("Confusion matrix and its change", f"Rows: true class; columns: predicted{outlined}.",
                   _confusion_plot(data)),
                  ("Membership-inference confidence: forget vs test", "A forgotten set should look like unseen data.",
                   _mia_plot(data))]
    return plots + [("Edits: success, steps, drawdown", "", _edit_plot(doc["rows"])),
                    ("Trade-off: gap vs rte", "", _tradeoff_plot(doc["rows"]))]


def render(doc: dict[str, Any], title: str | None = None) -> str:
    """The HTML of one run document (a command's or a bench's JSON result)."""
    if not isinstance(doc, dict) or "rows" not in doc:
        raise DataError("doc: expected a netfix run document with 'rows' (a command's or a bench's JSON result).")
    name = title or doc.get("title") or doc.get("bench") or doc.get("method") or "netfix run"
    parts = [f"<h1>netfix report: {html.escape(str(name))}</h1>", _forgotten_line(doc.get("report"))]
    what = doc.get("headline") or doc.get("scenario")
    if what:
        parts.append(f"<p>{html.escape(json.dumps(what) if not isinstance(what, str) else what)}</p>")
    parts.append("<h2>Before / after / reference</h2>" if doc.get("report") else "<h2>Results</h2>")
    parts.append(_table(doc["rows"], doc.get("columns")))
    for heading, note, img in _plots(doc):
        if img:
            parts.append(f"<h2>{html.escape(heading)}</h2>" + (f"<p class='note'>{html.escape(note)}</p>" if note
                                                                else "")
                         + f"<img alt='{html.escape(heading)}' src='{img}'>")
    parts.append(_fronts_html(_fronts_of(doc)))
    env = doc.get("env") or {}
    meta = {k: doc.get(k) for k in ("command", "dataset", "created", "seeds") if doc.get(k) is not None}
    meta.update({k: env[k] for k in ("netfix", "torch", "device") if k in env})
    parts.append("<p class='meta'>" + " · ".join(f"{html.escape(k)}: {html.escape(str(v))}"
                                                 for k, v in meta.items()) + "</p>")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(str(name))}</title>"
            f"<style>{_CSS}</style></head><body>{''.join(parts)}</body></html>")


def collect(run_dir: "str | Path") -> list[dict[str, Any]]:
    """The run documents in ``run_dir`` (every ``*.json`` with ``rows``: a command's ``*.run.json``, a bench's
    JSON, the demo's ``metrics.json``), or the one file ``run_dir`` names."""
    path = Path(run_dir)
    files = [path] if path.is_file() else sorted(path.glob("*.json")) if path.is_dir() else []
    if not files:
        raise DataError(f"RUN_DIR: {path} holds no run document (*.json with 'rows'); pass a run folder such as "
                        "runs/demo or a bench's --json file.")
    docs = []
    for f in files:
        try:
            doc = json.loads(f.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(doc, dict) and isinstance(doc.get("rows"), list):
            doc.setdefault("title", f.stem)
            doc["_source"] = str(f)
            docs.append(doc)
    if not docs:
        raise DataError(f"RUN_DIR: no file in {path} is a run document (a JSON object with 'rows').")
    return docs


def write(docs: "dict[str, Any] | list[dict[str, Any]]", out: "str | Path") -> Path:
    """Render one or several run documents into one HTML file at ``out`` (written atomically)."""
    docs = [docs] if isinstance(docs, dict) else docs
    pages = []
    for d in docs:
        try:
            pages.append(render(d))
        except (AttributeError, KeyError, TypeError, ValueError, IndexError) as e:
            where = d.get("_source", d.get("title", "a run document")) if isinstance(d, dict) else "a run document"
            raise DataError(f"RUN_DIR: {where} is not a run document netfix can render ({type(e).__name__}: {e}). "
                            "Fix: pass a folder of files written by netfix (*.run.json, a bench's --json, the demo's "
                            "metrics.json).") from None
    if len(pages) == 1:
        text = pages[0]
    else:  # several runs: one page, a section each
        bodies = [p.split("<body>", 1)[1].rsplit("</body>", 1)[0] for p in pages]
        text = (f"<!doctype html><html><head><meta charset='utf-8'><title>netfix report</title><style>{_CSS}"
                f"</style></head><body>{'<hr>'.join(bodies)}<p class='meta'>rendered "
                f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}</p></body></html>")
    out = Path(out)
    atomic_write(out, text.encode())
    return out
