"""Plain-text and markdown tables for the CLI, benchmarks and reports."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def fmt(v: Any, digits: int = 2) -> str:
    """A cell: floats with ``digits`` decimals, None as empty, everything else as str."""
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def _numeric(text: str) -> bool:
    try:
        float(text.replace("%", "").replace("±", " ").split()[0])
        return True
    except (ValueError, IndexError):
        return not text.strip()


def text_table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    """Aligned columns for a terminal: numbers right-aligned, text (and the first column) left-aligned."""
    cells = [[fmt(r.get(c)) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) if cells else len(c) for i, c in enumerate(columns)]
    right = [i > 0 and all(_numeric(row[i]) for row in cells) for i in range(len(columns))]

    def line(vals: Sequence[str]) -> str:
        return "  ".join(v.rjust(w) if right[i] else v.ljust(w)
                         for i, (v, w) in enumerate(zip(vals, widths))).rstrip()
    return "\n".join([line(list(columns)), line(["-" * w for w in widths])] + [line(r) for r in cells])


def markdown_table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    """A GitHub-flavoured markdown table."""
    out = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    out += ["| " + " | ".join(fmt(r.get(c)) for c in columns) + " |" for r in rows]
    return "\n".join(out)
