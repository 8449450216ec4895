"""Rerun one method of a ``netfix bench unlearn`` document without rerunning the others: replace its rows in BASE
with those of PATCH, a second run of the same bench (same dataset, architectures and seeds — so the same originals:
training is seeded and bit-identical) with ``--methods retrain,METHOD``. Each patched row keeps its own ``rte``,
measured against the retrain of the run it comes from. The table, the summary rows and the Pareto fronts are
rebuilt; ``patched`` records which method came from which command.

Usage:
    python benchmarks/merge_bench.py BASE.json PATCH.json --method bad-teacher --out MERGED.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from netfix._tables import markdown_table
from netfix.bench import pareto, summarise
from netfix.bench.unlearn import COLUMNS, METRICS, display
from netfix.io import atomic_write


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("base", type=Path)
    ap.add_argument("patch", type=Path)
    ap.add_argument("--method", required=True)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    base, patch = (json.loads(p.read_text()) for p in (args.base, args.patch))
    for key in ("bench", "dataset", "seeds", "models"):
        if base.get(key) != patch.get(key):
            raise SystemExit(f"{key}: {base.get(key)!r} in {args.base} but {patch.get(key)!r} in {args.patch}; "
                             "a patch must rerun the same bench on the same originals.")
    new = [r for r in patch["raw"] if r["method"] == args.method]
    if not new:
        raise SystemExit(f"--method: {args.patch} has no {args.method!r} rows.")
    raw = [r for r in base["raw"] if r["method"] != args.method] + new
    rows = summarise(raw, ("scenario", "model", "method"), METRICS)
    order = {m: i for i, m in enumerate(["original"] + base["methods"])}
    rows.sort(key=lambda r: (r["scenario"] != "random_forget", r["model"], order.get(r["method"], len(order))))
    merged = {**base, "raw": raw, "rows": rows, "fronts": pareto.summary(rows),
              "table": markdown_table(display(rows), COLUMNS),
              "patched": [*base.get("patched", []), {"method": args.method, "command": patch["command"],
                                                     "created": patch.get("created")}]}
    atomic_write(args.out, json.dumps(merged, indent=2).encode())
    print(merged["table"])


if __name__ == "__main__":
    main()
