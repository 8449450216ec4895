"""The report's HTML page: the headline, the results table, the plots the document supports (:mod:`.figures`) and,
for unlearning benches, which method to use per request; reading run documents from a folder and writing one
self-contained page (styles inline, plots embedded).
"""

from __future__ import annotations

import html
import json
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..errors import DataError
from ..io.atomic import atomic_write
from .figures import (REQUESTS, accuracy_plot, confusion_plot, edit_plot, front_plot, mia_plot, per_class_plot,
                      tradeoff_plot)

__all__ = ["render", "collect", "write"]

_CSS = """body{font-family:system-ui,sans-serif;margin:24px auto;padding:0 24px;max-width:1100px;color:#222}
table{border-collapse:collapse;font-size:13px;margin:8px 0 18px}th,td{border:1px solid #ccc;padding:3px 8px;
text-align:right}th{background:#f2f2f2}td:first-child,th:first-child{text-align:left}h1{font-size:22px}
h2{font-size:17px;margin-top:26px}.meta{color:#666;font-size:12px}.note{color:#444;font-size:13px;margin:2px 0}
.headline{font-size:18px;background:#fff4d6;border-left:4px solid #e0a800;padding:8px 12px;margin:12px 0}
img{display:block;width:100%;height:auto;margin:6px 0}"""


def _page(title: str, body: str) -> str:
    """A whole HTML page: ``title`` (already escaped), the report's styles and ``body``."""
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{title}</title><style>{_CSS}</style></head>"
            f"<body>{body}</body></html>")


def _fmt(v: Any) -> str:
    """A table cell's text: floats to 2 decimals (3 significant digits when tiny), nested values blank."""
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
    """An HTML table of ``rows`` (``columns``: by default every scalar field, leaving out ``*_std`` and ``n``)."""
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


def _fronts_html(fronts: dict[str, Any]) -> str:
    """Per request: the scatter with its front, the table over models, each model's front, what was left out."""
    parts = []
    for request, entry in fronts.items():
        if not entry.get("table"):
            continue
        heading = f"Which method for {REQUESTS.get(request, request)} ({request} request)"
        parts.append(f"<h2>{html.escape(heading)}</h2>")
        img = front_plot(request, entry)
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
    from ..bench.pareto import summary

    return summary(r for r in doc["rows"] if isinstance(r, dict))


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
        plots += [("Accuracy per split", "", accuracy_plot(data)),
                  ("Per-class accuracy", f"Test accuracy per class, and its change from the first model{shaded}.",
                   per_class_plot(data)),
                  ("Confusion matrix and its change", f"Rows: true class; columns: predicted{outlined}.",
                   confusion_plot(data)),
                  ("Membership-inference confidence: forget vs test", "A forgotten set should look like unseen data.",
                   mia_plot(data))]
    return plots + [("Edits: success, steps, drawdown", "", edit_plot(doc["rows"])),
                    ("Trade-off: gap vs rte", "", tradeoff_plot(doc["rows"]))]


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
    return _page(html.escape(str(name)), "".join(parts))


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
        text = _page("netfix report", "<hr>".join(bodies) + "<p class='meta'>rendered "
                     f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}</p>")
    out = Path(out)
    atomic_write(out, text.encode())
    return out
