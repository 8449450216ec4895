"""Write the table ``netfix.methods.recommend`` reads (src/netfix/methods/fronts.json) from bench JSON documents:
per request (random samples, a class, a fault), the Pareto fronts of (gap to retraining, rte) over methods, per
benched model and over their means (netfix.bench.pareto.summary).

Only methods ``netfix.unlearn`` can run are kept (the zoo's ``METHOD+relearn`` rows are two steps, unlearning then
relearning, so a recommendation could not be run as one method); the bench's own HTML report shows them all.

Usage (rerun after new benches):
    python benchmarks/fronts.py                      # docs/bench/unlearn20_fashion-mnist_*.json + zoo_fashion-mnist_*.json
    python benchmarks/fronts.py A.json B.json --out src/netfix/methods/fronts.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from netfix.bench.pareto import summary
from netfix.methods import available, get

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_SOURCES = ("docs/bench/unlearn20_fashion-mnist_*.json", "docs/bench/zoo_fashion-mnist_*.json")
OUT = ROOT / "src/netfix/methods/fronts.json"


def table(paths: list[Path]) -> dict[str, Any]:
    """The fronts document for the bench JSON files ``paths``."""
    rows: list[dict[str, Any]] = []
    sources = []
    for p in paths:
        doc = json.loads(p.read_text())
        rows += doc["rows"]
        sources.append({"file": p.relative_to(ROOT).as_posix() if p.is_relative_to(ROOT) else str(p),
                        "bench": doc.get("bench"), "command": doc.get("command"), "created": doc.get("created")})
    runnable = [m for m in available() if "unlearn" in get(m).modes]
    dropped = sorted({r["method"] for r in rows if r.get("method") and r["method"] not in runnable
                      and r["method"] not in ("original", "retrain")})
    kept = [r for r in rows if r.get("method") in runnable]
    return {"what": "Pareto fronts of (gap, rte) per request over netfix.unlearn methods; "
                    "written by benchmarks/fronts.py", "sources": sources, "dropped_methods": dropped,
            "fronts": summary(kept)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("files", nargs="*", type=Path, help="bench JSON files (default: %s)" % ", ".join(DEFAULT_SOURCES))
    ap.add_argument("--out", type=Path, default=OUT, help=f"output (default {OUT.relative_to(ROOT)})")
    args = ap.parse_args()
    files = [f.resolve() for f in args.files] or sorted(p for g in DEFAULT_SOURCES for p in ROOT.glob(g))
    doc = table(files)
    args.out.write_text(json.dumps(doc, indent=1) + "\n")
    for request, entry in doc["fronts"].items():
        print(f"{request}: front {', '.join(entry['front'])}")
    print(f"wrote {args.out} from {len(files)} files (dropped: {', '.join(doc['dropped_methods']) or 'none'})")


if __name__ == "__main__":
    main()
