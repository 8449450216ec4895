"""benchmarks/results_pages.py: the per-bench pages in docs/results/ are generated from docs/bench/*.json and up to
date, every bench document has a page the index links, and a page carries the document's values."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "docs" / "bench"
RESULTS = ROOT / "docs" / "results"

_spec = importlib.util.spec_from_file_location("results_pages", ROOT / "benchmarks" / "results_pages.py")
assert _spec is not None and _spec.loader is not None
rp = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(rp)

REGENERATE = "run: .venv/bin/python benchmarks/results_pages.py"


def test_pages_on_disk_match_the_generator(tmp_path):
    assert rp.main(["--bench-dir", str(BENCH), "--out", str(tmp_path)]) == 0
    fresh = {p.name: p.read_text(encoding="utf-8") for p in tmp_path.glob("*.md")}
    on_disk = {p.name: p.read_text(encoding="utf-8") for p in RESULTS.glob("*.md")}
    assert sorted(on_disk) == sorted(fresh), REGENERATE
    stale = [n for n in fresh if fresh[n] != on_disk[n]]
    assert not stale, f"stale pages {stale}; {REGENERATE}"
    assert rp.main(["--check", "--out", str(RESULTS)]) == 0


def test_check_lists_stale_and_orphan_pages(tmp_path, capsys):
    bench, out = tmp_path / "bench", tmp_path / "results"
    bench.mkdir()
    (bench / "a.json").write_text(json.dumps({"bench": "a", "rows": [{"x": 1}]}))
    assert rp.main(["--bench-dir", str(bench), "--out", str(out)]) == 0
    assert rp.main(["--check", "--bench-dir", str(bench), "--out", str(out)]) == 0
    (bench / "a.json").write_text(json.dumps({"bench": "a", "rows": [{"x": 2}]}))
    (out / "gone.md").write_text("a page whose JSON was removed\n")
    capsys.readouterr()
    assert rp.main(["--check", "--bench-dir", str(bench), "--out", str(out)]) == 1
    printed = capsys.readouterr().out
    assert "a.md" in printed and "gone.md" in printed and "README.md" not in printed
    assert rp.main(["--bench-dir", str(bench), "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "a.md"]  # no temp files left, orphan removed
    assert "| 2 |" in (out / "a.md").read_text()


def test_render_puts_rows_command_and_env_on_the_page():
    doc = {
        "bench": "toy", "dataset": "digits", "title": "A toy bench", "headline": "ogd wins on digits",
        "rows": [{"method": "ogd", "TA": 91.234, "n": 12345, "note": None},
                 {"method": "a|b", "TA": 0.5, "n": 3, "extra": "only-here"}],
        "env": {"torch": "2.13.0+cpu", "device": "cpu", "threads": 2, "netfix": "0.1.0", "python": "3.11.7"},
        "command": "netfix bench toy --data digits --json docs/bench/toy.json", "created": "2026-01-02T03:04:05Z",
        "wall_seconds": 12.5, "lr": 0.005,
        "controls": [{"method": "restarts-only", "TA": 88.0}],
        "extra_tables": [{"title": "Lifelong", "columns": ["method", "edits"], "rows": [{"method": "m", "edits": 7}]}],
    }
    page = rp.render(doc, "toy_digits")
    assert page.startswith("# toy_digits: A toy bench\n")
    assert "```\nnetfix bench toy --data digits --json docs/bench/toy.json\n```" in page
    for value in ("cpu", "2 threads", "torch 2.13.0+cpu", "netfix 0.1.0", "python 3.11.7", "2026-01-02T03:04:05Z"):
        assert value in page
    assert "ogd wins on digits" in page
    assert "| method | TA | n | note | extra |" in page  # union of row keys, first-seen order
    assert "| ogd | 91.23 | 12,345 |  |  |" in page  # 2 decimals, thousands, None empty
    assert "| a\\|b | 0.50 | 3 |  | only-here |" in page  # pipes escaped
    assert "| lr | 0.005 |" in page and "| wall_seconds | 12.5 |" in page
    assert "## controls" in page and "| restarts-only | 88.00 |" in page
    assert "## extra_tables: Lifelong" in page and "| m | 7 |" in page
    assert page.rstrip().endswith("[JSON](../bench/toy_digits.json)")
    assert rp.render(doc, "toy_digits") == page  # deterministic


def test_render_uses_the_given_column_order():
    doc = {"rows": [{"a": 1, "b": 2.0, "c": "x"}], "columns": ["c", "a"]}
    page = rp.render(doc, "cols")
    assert "| c | a |\n|---|---|\n| x | 1 |" in page and "| b |" not in page


def test_odd_documents_still_get_pages(tmp_path):
    bench = tmp_path / "bench"
    bench.mkdir()
    (bench / "list.json").write_text(json.dumps([{"x": 1.0}, {"y": [1, 2]}]))
    (bench / "broken.json").write_text("{not json")
    (bench / "scalar.json").write_text("3")
    (bench / "norows.json").write_text(json.dumps({"example": "e", "rows": "n/a", "env": None, "fronts": {}}))
    (bench / "report.html").write_text("<html></html>")
    files = rp.generate(bench)
    assert sorted(files) == ["README.md", "broken.md", "list.md", "norows.md", "scalar.md"]
    assert "| 1.00 |  |" in files["list.md"] and "| 1, 2 |" in files["list.md"]
    assert "could not read broken.json" in files["broken.md"]
    assert "No result rows" in files["norows.md"] and "not recorded" in files["norows.md"]


def test_every_bench_json_has_a_page_and_the_index_links_it():
    stems = sorted(p.stem for p in BENCH.glob("*.json"))
    assert stems
    pages = sorted(p.stem for p in RESULTS.glob("*.md") if p.name != "README.md")
    assert pages == stems, REGENERATE
    index = (RESULTS / "README.md").read_text(encoding="utf-8")
    linked = re.findall(r"\]\(([^)]+)\.md\)", index)
    assert sorted(linked) == stems
    for stem in stems:
        page = (RESULTS / f"{stem}.md").read_text(encoding="utf-8")
        assert f"[JSON](../bench/{stem}.json)" in page
        doc = json.loads((BENCH / f"{stem}.json").read_text())
        if doc.get("command"):
            assert f"```\n{doc['command']}\n```" in page
            assert f"`{doc['command']}`" in index
