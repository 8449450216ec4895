"""Per-bench result pages (docs/results/NAME.md) generated from the bench JSON documents (docs/bench/NAME.json).

Every number on a page comes from its JSON document (written by ``netfix bench NAME --json FILE``): the machine
and versions (``env``), the exact ``command``, the ``headline`` if any, the ``rows`` as a table, every other table
the document holds (lists of row dicts, ``extra_tables``, nested ones under dotted keys) and its small settings.
docs/results/README.md indexes the pages. The output is deterministic (no generation time), so the pages can be
checked in and verified.

Usage (rerun after adding or changing a docs/bench/*.json):
    .venv/bin/python benchmarks/results_pages.py            # (re)write docs/results/
    .venv/bin/python benchmarks/results_pages.py --check    # exit 1, listing stale pages, if any is out of date

Plain Python: imports nothing from netfix, so it runs without torch.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BENCH_DIR = ROOT / "docs" / "bench"
OUT_DIR = ROOT / "docs" / "results"
INDEX = "README.md"
REGENERATE = ".venv/bin/python benchmarks/results_pages.py"

# Keys rendered by the page's header (or pre-rendered text, left out): never repeated as settings or tables.
META_KEYS = ("bench", "title", "example", "headline", "rows", "columns", "env", "command", "created", "table")
# The env keys in the order the machine line gives them; other env keys follow, sorted.
ENV_ORDER = ("device", "gpu", "threads", "torch", "netfix", "python")
MAX_SETTING_CHARS = 400  # longer lists/dicts without tables are left to the JSON (named under "Not shown")
COLLAPSE_ROWS = 20  # secondary tables longer than this are folded in a <details> block

Table = tuple[str, list[dict[str, Any]], list[str] | None]  # (heading, rows, column order or None)


# ---------------------------------------------------------------------------------------------------- cells


def fmt(v: Any) -> str:
    """A table cell: floats with 2 decimals (non-zero ones under 0.01 in scientific notation), ints
    and floats of 1,000 and more with thousands separators, None as empty, booleans as in JSON, lists of scalars
    joined with commas, anything else as compact JSON (keys in document order)."""
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return f"{v:,}" if abs(v) >= 1_000 else str(v)
    if isinstance(v, float):
        if math.isfinite(v) and v != 0 and abs(v) < 0.01:
            return f"{v:.2e}"
        return f"{v:,.2f}" if math.isfinite(v) and abs(v) >= 1_000 else f"{v:.2f}"
    if isinstance(v, list) and all(not isinstance(x, (list, dict)) for x in v):
        return ", ".join(fmt(x) for x in v)
    if isinstance(v, (list, dict)):
        return json.dumps(v, separators=(",", ":"))
    return str(v)


def _cell(v: Any) -> str:
    """``fmt`` made safe inside a markdown table row (pipes escaped, one line)."""
    return " ".join(fmt(v).split()).replace("|", "\\|")


def columns_of(rows: Sequence[dict[str, Any]], columns: Sequence[str] | None = None) -> list[str]:
    """``columns`` if given (a non-empty list), else the union of the rows' keys in first-seen order."""
    if isinstance(columns, (list, tuple)) and columns:
        return [str(c) for c in columns]
    seen: dict[str, None] = {}
    for row in rows:
        seen.update((str(k), None) for k in row)
    return list(seen)


def markdown_table(rows: Sequence[dict[str, Any]], columns: Sequence[str] | None = None) -> str:
    """A GitHub-flavoured markdown table of ``rows`` (cells formatted by ``fmt``)."""
    cols = columns_of(rows, columns)
    if not cols:
        return "_(no columns)_"
    out = ["| " + " | ".join(_cell(c) for c in cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    out += ["| " + " | ".join(_cell(r.get(c)) for c in cols) + " |" for r in rows]
    return "\n".join(out)


# ---------------------------------------------------------------------------------------------------- shapes


def _is_rows(v: Any) -> bool:
    """A non-empty list of dicts: a table."""
    return isinstance(v, list) and bool(v) and all(isinstance(x, dict) for x in v)


def _is_spec(v: Any) -> bool:
    """A table spec such as ``extra_tables``' entries: a dict with its own ``rows`` (and maybe title, columns)."""
    return isinstance(v, dict) and _is_rows(v.get("rows"))


def _is_scalar(v: Any) -> bool:
    """A JSON scalar (None, string, number, boolean)."""
    return v is None or isinstance(v, (str, int, float, bool))


def _holds_table(v: Any) -> bool:
    """Whether ``v`` is, or holds somewhere below it, a table."""
    if _is_rows(v):
        return True
    return isinstance(v, dict) and any(_holds_table(x) for x in v.values())


def _record_table(key: str, v: dict[str, Any]) -> Table | None:
    """A dict of dicts of scalars (e.g. metrics per recipe) as a table keyed by its first column, else None."""
    if len(v) < 2 or not all(isinstance(x, dict) and x and all(map(_is_scalar, x.values())) for x in v.values()):
        return None
    first = key.rsplit(".", 1)[-1]
    return key, [{first: k, **x} for k, x in v.items()], None


def walk(doc: dict[str, Any], prefix: str = "") -> Iterator[tuple[str, str, Any]]:
    """(kind, dotted key, value) for each non-meta entry of ``doc``, in document order: kind is "table" (value: a
    ``Table``), "setting" (a short value), or "omitted" (too long for a page: left to the JSON)."""
    for k, v in doc.items():
        key = f"{prefix}{k}"
        if not prefix and k in META_KEYS:
            continue
        if _is_rows(v) and all(map(_is_spec, v)):
            for i, spec in enumerate(v):
                title = spec.get("title") or f"{key}[{i}]"
                yield "table", key, (f"{key}: {title}", spec["rows"], spec.get("columns"))
        elif _is_rows(v):
            yield "table", key, (key, v, None)
        elif _is_spec(v):
            yield "table", key, (f"{key}: {v.get('title') or key}", v["rows"], v.get("columns"))
        elif isinstance(v, dict) and _holds_table(v):
            yield from walk(v, key + ".")
        elif isinstance(v, dict) and (record := _record_table(key, v)) is not None:
            yield "table", key, record
        elif _is_scalar(v) or len(json.dumps(v)) <= MAX_SETTING_CHARS:
            yield "setting", key, v
        else:
            yield "omitted", key, v


# ---------------------------------------------------------------------------------------------------- pages


def _env(doc: dict[str, Any]) -> dict[str, Any]:
    """The document's ``env`` dict (empty when missing or not a dict)."""
    env = doc.get("env")
    return env if isinstance(env, dict) else {}


def machine_line(doc: dict[str, Any]) -> str:
    """The machine and versions from ``env`` (whatever is present) and when the run was created."""
    env = _env(doc)
    keys = [k for k in ENV_ORDER if k in env] + sorted(k for k in env if k not in ENV_ORDER)
    parts = [f"{k} {fmt(env[k])}" if k != "threads" else f"{fmt(env[k])} threads" for k in keys]
    if doc.get("created"):
        parts.append(f"created {doc['created']}")
    return "**Machine:** " + (" · ".join(parts) if parts else "not recorded")


def _title(doc: dict[str, Any], name: str) -> str:
    """The page's heading: the file name and the document's title (or bench, or example) when it says more."""
    label = doc.get("title") or doc.get("bench") or doc.get("example")
    return f"# {name}: {label}" if label and str(label) != name else f"# {name}"


def _headline(doc: dict[str, Any]) -> list[str]:
    """The document's headline (a string or a list of lines) under its heading, or nothing."""
    h = doc.get("headline")
    if not h:
        return []
    text = "\n".join(map(str, h)) if isinstance(h, list) else str(h)
    return ["## Headline", "", text, ""]


def _section(table: Table) -> list[str]:
    """A secondary table under its heading; long ones folded."""
    heading, rows, columns = table
    body = markdown_table(rows, columns)
    if len(rows) > COLLAPSE_ROWS:
        body = f"<details><summary>{len(rows)} rows</summary>\n\n{body}\n\n</details>"
    return [f"## {heading}", "", body, ""]


def _setting(v: Any) -> str:
    """A setting's value: short floats exactly as stored (a learning rate of 0.005 is not 0.01), the rest (long
    floats such as measured seconds included) as ``fmt``."""
    return repr(v) if isinstance(v, float) and len(repr(v)) <= 8 else fmt(v)


def _rest(doc: dict[str, Any]) -> list[str]:
    """Settings, secondary tables and the names of what is left to the JSON."""
    entries = list(walk(doc))
    settings = [{"key": k, "value": _setting(v)} for kind, k, v in entries if kind == "setting"]
    omitted = [k for kind, k, _ in entries if kind == "omitted"]
    out: list[str] = []
    if settings:
        out += ["## Settings", "", markdown_table(settings, ["key", "value"]), ""]
    for kind, _, table in entries:
        if kind == "table":
            out += _section(table)
    if omitted:
        out += ["Not shown (see the JSON): " + ", ".join(f"`{k}`" for k in omitted) + ".", ""]
    return out


def render(doc: dict[str, Any], name: str) -> str:
    """The markdown page of the bench JSON document ``doc`` stored as docs/bench/``name``.json."""
    out = [_title(doc, name), "", f"<!-- generated by {REGENERATE} from docs/bench/{name}.json: do not edit -->", ""]
    out += [machine_line(doc), ""]
    if doc.get("command"):
        out += ["```", str(doc["command"]), "```", ""]
    out += _headline(doc)
    rows = doc.get("rows")
    if isinstance(rows, list) and _is_rows(rows):
        out += ["## Results", "", markdown_table(rows, doc.get("columns")), ""]
    else:
        out += ["_No result rows in this document._", ""]
    out += _rest(doc)
    out += [f"[JSON](../bench/{name}.json)", ""]
    return "\n".join(out)


def index(pages: Sequence[tuple[str, dict[str, Any]]]) -> str:
    """docs/results/README.md: one line per (name, doc) page: bench, dataset, device, command and a link."""
    out = ["# Bench results", "", f"<!-- generated by {REGENERATE}: do not edit -->", "",
           "One page per docs/bench/*.json document, generated from it "
           f"(`{REGENERATE}`; `--check` verifies the pages are up to date).", "",
           "| page | bench | dataset | device | command |", "|---|---|---|---|---|"]
    for name, doc in sorted(pages, key=lambda p: p[0]):
        env = _env(doc)
        bench = doc.get("bench") or doc.get("title") or doc.get("example")
        command = f"`{_cell(doc['command'])}`" if doc.get("command") else ""
        out.append(f"| [{name}]({name}.md) | {_cell(bench)} | {_cell(doc.get('dataset'))} | "
                   f"{_cell(env.get('device'))} | {command} |")
    return "\n".join(out) + "\n"


# ---------------------------------------------------------------------------------------------------- files


def load(path: Path) -> dict[str, Any]:
    """The document in ``path`` as a dict; a list of rows becomes {"rows": ...}, an unreadable file a note."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as e:
        return {"error": f"could not read {path.name}: {type(e).__name__}: {e}"}
    if isinstance(data, dict):
        return data
    return {"rows": data} if _is_rows(data) else {"value": data}


def generate(bench_dir: Path = BENCH_DIR) -> dict[str, str]:
    """{file name: content} of every page (docs/bench/STEM.json -> STEM.md) and the index."""
    pages = [(p.stem, load(p)) for p in sorted(bench_dir.glob("*.json"))]
    files = {f"{name}.md": render(doc, name) for name, doc in pages}
    files[INDEX] = index(pages)
    return files


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file in the same folder and os.replace."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as f:
            f.write(text)
        os.chmod(tmp, 0o644)  # mkstemp's 0600 would make the checked-in pages private
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def stale(files: dict[str, str], out_dir: Path) -> list[str]:
    """Pages in ``out_dir`` that differ from ``files``, are missing, or have no JSON any more (sorted)."""
    on_disk = {p.name for p in out_dir.glob("*.md")} if out_dir.is_dir() else set()
    bad = {n for n, text in files.items()
           if n not in on_disk or (out_dir / n).read_text(encoding="utf-8") != text}
    return sorted(bad | (on_disk - set(files)))


def main(argv: Sequence[str] | None = None) -> int:
    """Write (or with --check, verify) the pages; returns the exit status."""
    ap = argparse.ArgumentParser(description="Generate (or --check) docs/results/ from docs/bench/*.json.")
    ap.add_argument("--check", action="store_true", help="exit 1 and list stale pages instead of writing")
    ap.add_argument("--bench-dir", type=Path, default=BENCH_DIR, help="folder of bench JSON documents")
    ap.add_argument("--out", type=Path, default=OUT_DIR, help="folder for the pages")
    args = ap.parse_args(argv)
    files = generate(args.bench_dir)
    bad = stale(files, args.out)
    if args.check:
        for n in bad:
            print(f"stale: {args.out / n}")
        if bad:
            print(f"{len(bad)} stale page(s); regenerate with: {REGENERATE}")
        return 1 if bad else 0
    args.out.mkdir(parents=True, exist_ok=True)
    for n in bad:
        if n in files:
            write_atomic(args.out / n, files[n])
        else:
            (args.out / n).unlink()  # a page whose JSON is gone
    print(f"{len(files) - 1} pages and {INDEX} in {args.out} ({len(bad)} updated)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
