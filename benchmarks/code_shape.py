"""The shape of netfix's source, measured (issue 23's must-show): the longest files and functions, the CLI's size,
the size of docs/results.md, the import-flow test, and — where the workplace's `duplicates` tool is installed — the
pairs of copied code it finds in src/.

Run: ``python benchmarks/code_shape.py [--json docs/code_shape.json]``. Prints JSON; writes it with --json.
"""

from __future__ import annotations

import argparse
import ast
import json
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "src" / "netfix"


def _lines(path: Path) -> int:
    return len(path.read_text().splitlines())


def _functions(path: Path) -> list[tuple[str, int]]:
    tree = ast.parse(path.read_text())
    return [(n.name, n.end_lineno - n.lineno + 1) for n in ast.walk(tree)  # type: ignore[operator]
            if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]


def measure() -> dict:
    files = sorted(SRC.rglob("*.py"))
    sizes = sorted(((str(f.relative_to(ROOT)), _lines(f)) for f in files), key=lambda t: -t[1])
    funcs = sorted(((f"{f.relative_to(ROOT)}:{name}", n) for f in files for name, n in _functions(f)),
                   key=lambda t: -t[1])
    cli = [(p, n) for p, n in sizes if p.startswith("src/netfix/cli/")]
    layers = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_layers.py"],
                            cwd=ROOT, capture_output=True, text=True)
    out = {
        "python_files": len(files),
        "largest_files": sizes[:5], "files_over_400": [s for s in sizes if s[1] > 400],
        "files_over_450": [s for s in sizes if s[1] > 450],
        "largest_cli_file": cli[0], "longest_functions": funcs[:5],
        "functions_over_80": [f for f in funcs if f[1] > 80],
        "results_md_bytes": (ROOT / "docs" / "results.md").stat().st_size,
        "test_layers": layers.stdout.strip().splitlines()[-1] if layers.stdout.strip() else layers.stderr[-300:],
    }
    tool = shutil.which("duplicates")
    if tool:
        dup = subprocess.run([tool, "--most", "50", "--seconds", "120"], cwd=SRC.parent, capture_output=True, text=True)
        out["duplicates"] = dup.stdout.strip().splitlines()
    else:
        out["duplicates"] = "the duplicates tool is not installed here"
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--json", type=Path, default=None, help="write the JSON here too")
    args = ap.parse_args()
    text = json.dumps(measure(), indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")


if __name__ == "__main__":
    main()
