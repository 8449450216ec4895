"""The "any model" issue's targets, checked on `netfix bench zoo` JSON documents (one or more runs, e.g. split by
architecture to use both cores): no method's default below 50 % test accuracy; OGD's class-forgetting gap <= 1.0;
backdoor unlearning alone (each method) within 2 points of the retrained model's attack success; the default
editor at 100 % success with a mean drawdown <= 2 points.

Usage: python benchmarks/zoo_targets.py docs/bench/zoo_fashion-mnist_*.json   (prints a markdown table)
"""

from __future__ import annotations

import json
import sys
from typing import Any


def targets(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for arch in dict.fromkeys(r["arch"] for r in rows):
        mine = [r for r in rows if r["arch"] == arch]
        methods = [r for r in mine if r["method"] not in ("original", "retrain") and r["scenario"] != "edits"]
        worst = min(methods, key=lambda r: r.get("TA") if r.get("TA") is not None else -1.0)
        ogd = next(r for r in mine if r["scenario"] == "class_forget" and r["method"] == "ogd")
        ref = next(r for r in mine if r["scenario"] == "backdoor" and r["method"] == "retrain")
        backdoor = {r["method"]: r["ASR"] for r in mine if r["scenario"] == "backdoor"
                    and r["method"] not in ("original", "retrain")}
        alone = {m: a for m, a in backdoor.items() if "+" not in m}
        edits = next(r for r in mine if r["scenario"] == "edits")
        out.append({"arch": arch, "lowest TA (method, request)": f"{worst['TA']:.1f} ({worst['method']}, "
                    f"{worst['scenario']})", "ogd class-forget gap": ogd["gap"],
                    "retrain ASR": ref["ASR"], "ogd alone ASR": alone.get("ogd"),
                    "unlearning alone within +2 of retrain": ", ".join(m for m, a in alone.items()
                                                                        if a <= ref["ASR"] + 2) or "none",
                    "edit success": edits["edit_success"], "edit drawdown": edits["drawdown"]})
    return out


def main() -> None:
    rows: list[dict[str, Any]] = []
    for path in sys.argv[1:]:
        rows += json.load(open(path))["rows"]
    table = targets([r for r in rows if "error" not in r])
    keys = list(table[0])
    print("| " + " | ".join(keys) + " |")
    print("|" + "---|" * len(keys))
    for t in table:
        print("| " + " | ".join(f"{v:.2f}" if isinstance(v, float) else str(v) for v in t.values()) + " |")
    errors = [r for r in rows if "error" in r]
    for r in errors:
        print(f"\nerror: {r['arch']} / {r['scenario']} / {r['method']}: {r['error']}")


if __name__ == "__main__":
    main()
