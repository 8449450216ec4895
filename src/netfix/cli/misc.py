"""The verbs that do not repair a model: ``demo``, ``datasets``, ``methods``, ``bench``, ``report`` and
``ledger``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from .._tables import text_table
from ..errors import ConfigError, unknown
from ._common import progress


def demo(args: argparse.Namespace) -> dict[str, Any]:
    from .. import demo as job
    from ..validation import check_path_writable

    check_path_writable(args.out / "metrics.json", "--out")
    result = job.run(quick=args.quick, out=args.out, seed=args.seed, device=args.device, progress=progress(args))
    result["text"] = (result["headline"] + "\n\n" + text_table(result["rows"], job.COLUMNS)
                      + f"\n\nrun folder: {result['run_dir']}\nreport: {result['report']}")
    return result


def datasets(args: argparse.Namespace) -> dict[str, Any]:
    from .. import datasets as builtin

    av = builtin.available()
    rows = [{"name": k, "present": "yes" if v["present"] else "no", "source": v["source"]} for k, v in av.items()]
    missing = [f"  {k}: {v['how_to_get']}" for k, v in av.items() if not v["present"]]
    text = text_table(rows, ("name", "present", "source")) + ("\n\nto get the missing ones:\n" + "\n".join(missing)
                                                              if missing else "")
    return {"datasets": av, "text": text}


def _configs() -> dict[str, tuple[str, type]]:
    """The option sets ``netfix methods NAME`` shows besides the methods': the editors' and Editable Training's."""
    from ..methods.editing import AdaptorConfig, EditableTraining, EditorConfig

    return {"edit": ("netfix.edit with a gradient editor (sgd, momentum, rmsprop, adam): a few steps on the "
                     "classifier head (docs/methods.md §2.1)", EditorConfig),
            "adaptor": ("netfix.edit(..., editor='adaptor'): a key-value entry per edit, no weight changed; for "
                        "edits that accumulate (docs/methods.md §10)", AdaptorConfig),
            "editable-training": ("netfix.train(..., editable=EditableTraining(...)): train a model to be cheap to "
                                  "edit (docs/methods.md §2.2)", EditableTraining)}


def methods(args: argparse.Namespace) -> dict[str, Any]:
    """``netfix methods [NAME]``: every method with its summary, or one method's options."""
    from .. import methods as registry
    from ..validation import describe

    extra = _configs()
    if args.name is None:
        rows = [{"method": n, "modes": ", ".join(registry.get(n).modes), "what": registry.get(n).summary}
                for n in registry.available()]
        more = [{"options of": k, "what": v[0]} for k, v in extra.items()]
        text = (text_table(rows, ("method", "modes", "what")) + "\n\n" + text_table(more, ("options of", "what"))
                + "\n\nnetfix methods NAME lists NAME's options (type, default, unit, valid values, meaning); pass "
                  "them as --option KEY=VALUE to unlearn / relearn.")
        return {"methods": rows, "configs": more, "text": text}
    if args.name in extra:
        summary, config = extra[args.name]
        modes: list[str] = []
    else:
        if args.name not in registry.available():
            raise unknown("method", args.name, registry.available() + list(extra), "NAME")
        method = registry.get(args.name)
        summary, config, modes = method.summary, method.config, list(method.modes)
    options = describe(config)
    rows = [{"option": o["name"], "type": o["type"], "default": repr(o["default"]), "unit": o["unit"],
             "valid": o["valid"], "meaning": o["help"] + (f". None: {o['none']}" if o["none"] else "")}
            for o in options]
    head = f"{args.name}: {summary}" + (f"\nmodes: {', '.join(modes)}" if modes else "")
    text = head + "\n\n" + (text_table(rows, ("option", "type", "default", "unit", "valid", "meaning")) if rows
                            else "(no options)")
    return {"name": args.name, "summary": summary, "modes": modes, "options": options, "text": text}


def bench(args: argparse.Namespace) -> dict[str, Any]:
    """``netfix bench NAME``: run a bench (its options as its :class:`~netfix.bench.BenchInfo` declares them), write
    its JSON and HTML report; ``netfix bench list``: every bench and how long it takes."""
    from .. import bench as benches
    from .. import report
    from ..validation import check_path_writable

    if args.name == "list":
        av = benches.available()
        return {"benches": av, "text": "\n".join(benches.BENCHES.get(k).help() for k in av)}
    if args.name not in benches.BENCHES:
        raise unknown("bench", args.name, benches.BENCHES.names() + ["list"], "bench")
    info = benches.BENCHES.get(args.name)
    every = {key for _, other in benches.BENCHES.items() for key in other.options}
    for key in sorted(every - set(info.options)):
        if getattr(args, key) is not None:
            raise ConfigError(f"--{key.replace('_', '-')}: bench {args.name!r} has no such option.")
    options = {k: getattr(args, k) for k in info.options if getattr(args, k) is not None}
    path = Path(args.json) if args.json not in (None, "-") else None
    if path is not None:
        if path.exists() and not args.overwrite:
            raise ConfigError(f"--json: {path} already exists; netfix never replaces an output unless asked. Fix: "
                              "pass another FILE, or --overwrite.")
        check_path_writable(path, "--json")
    if args.markdown is not None:
        check_path_writable(args.markdown, "--markdown")
    doc = benches.run(args.name, quick=args.quick, seeds=args.seeds, data=args.data, device=args.device,
                      progress=progress(args), json_path=path, markdown_path=args.markdown, **options)
    html_path = path.with_suffix(".html") if path else Path("runs") / "bench" / f"{args.name}.html"
    report.write({**doc, "title": f"netfix bench {args.name}"}, html_path)
    doc["report"] = str(html_path)
    doc["text"] = doc["text"] + (f"\n\nJSON: {path}" if path else "") + f"\nreport: {html_path}"
    args.json = args.json == "-"  # print the document on stdout only for a bare --json
    return doc


def report(args: argparse.Namespace) -> dict[str, Any]:
    from .. import report as render

    docs = render.collect(args.run_dir)
    default = args.run_dir / "report.html" if args.run_dir.is_dir() else args.run_dir.with_suffix(".html")
    path = render.write(docs, args.out or default)
    return {"report": str(path), "documents": len(docs), "text": f"report: {path}"}


def ledger(args: argparse.Namespace) -> dict[str, Any]:
    from ..ledger import Ledger, ledger_path

    path = ledger_path(args.ledger)
    if not path.is_file():  # nothing recorded yet: an empty ledger, not an error (and none is created)
        if args.ledger_command == "show":
            raise ConfigError(f"id: no record {args.id}; the ledger {path} is empty (nothing recorded yet).")
        if args.ledger_command == "verify" and args.head:
            return {"ledger": str(path), "ok": False, "_exit": 1, "text": f"the ledger {path} does not exist, so it "
                    f"no longer holds the published head {args.head}",
                    "problems": [f"{path}: missing, but a head was published"]}
        empty: tuple[str, Any] = {"list": ("records", []), "head": ("head", None),
                                  "verify": ("ok", True)}[args.ledger_command]
        return {"ledger": str(path), empty[0]: empty[1], "text": ""}
    with Ledger(path) as led:
        if args.ledger_command == "show":
            rec = led.get(args.id)
            return {"ledger": str(path), "record": rec, "text": json.dumps(rec, indent=2)}
        if args.ledger_command == "head":
            head = led.head()
            text = f"{head[0]}:{head[1]}" if head else ""
            return {"ledger": str(path), "head": text or None, "text": text}
        if args.ledger_command == "verify":
            a = led.audit(head=args.head)
            text = (f"ok: {a.records} records, {a.files} files checked\nhead: {a.head_id}:{a.head}" if a.ok else
                    "\n".join(a.problems) + f"\n{len(a.problems)} problem(s) in {path}")
            return {"ledger": str(path), "ok": a.ok, "problems": a.problems, "records": a.records, "files": a.files,
                    "head": f"{a.head_id}:{a.head}" if a.head else None, "_exit": 0 if a.ok else 1, "text": text}
        records = led.list()
    text = _ledger_table(records) + f"\n\nledger: {path}" if records else ""
    return {"ledger": str(path), "records": records, "text": text}


def _ledger_table(records: list[dict[str, Any]]) -> str:
    """One row per run: commit records fold into their run's status."""
    committed = {r["payload"].get("commits") for r in records if r["kind"] == "commit"
                 and isinstance(r["payload"], dict)}
    rows = []
    for r in records:
        if r["kind"] == "commit":
            continue
        p = r["payload"] if isinstance(r["payload"], dict) else {}
        model = (p.get("files") or {}).get("model") or {}
        status = "interrupted" if p.get("status") == "pending" and r["id"] not in committed else "ok"
        rows.append({"id": r["id"], "created": r["created"][:19], "kind": r["kind"], "method": p.get("method"),
                     "status": status, "model": model.get("path") if isinstance(model, dict) else None})
    return text_table(rows, ("id", "created", "kind", "method", "status", "model"))
