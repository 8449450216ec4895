"""HTML reports (issue 9): the data behind the plots, the page, `netfix report` (a real run's report, rendered in
Chromium: tests/test_report_render.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest

import netfix
from netfix import report
from netfix.cli import main
from netfix.errors import DataError


@pytest.fixture(scope="module")
def doc(digits, trained):
    train, test = digits
    s = netfix.scenarios.class_forget(train, test, cls=3)
    after = netfix.unlearn(trained, s.forget, s.retain, method="finetune", epochs=1, progress=False).model
    sets = {"forget": s.forget, "retain": s.retain, "test": s.test, "fault_test": s.fault_test}
    panel = report.panel({"before": trained, "after": after}, sets, 10)
    rows = [{"model": "before", "test_acc": panel["models"]["before"]["acc"]["test"]},
            {"model": "after", "test_acc": panel["models"]["after"]["acc"]["test"]}]
    return {"title": "unit", "rows": rows, "report": panel, "_test": s.test}


def test_panel_matches_direct_measurements(doc, trained):
    test = doc["_test"]  # the scenario's test split: every class but the forgotten one
    entry = doc["report"]["models"]["before"]
    assert entry["acc"]["test"] == pytest.approx(netfix.evaluation.accuracy(trained, test))
    cm = np.array(entry["confusion"])
    assert cm.sum() == len(test) and np.trace(cm) == pytest.approx(entry["acc"]["test"] * len(test) / 100, abs=0.5)
    assert sum(entry["confidence_hist"]["test"]) == len(test)
    assert set(entry["acc"]) == {"forget", "retain", "test", "fault_test"}


def test_page_is_self_contained_with_headline_first(doc):
    page = report.render({k: v for k, v in doc.items() if k != "_test"})
    assert page.index("<table>") < page.index("<img")  # the before/after table comes before the plots
    assert page.count("data:image/png;base64,") == 4
    assert "http://" not in page and "https://" not in page and "<script" not in page


def test_render_refuses_a_non_run_document():
    with pytest.raises(DataError, match="rows"):
        report.render({"bench": "x"})


def test_cli_report_renders_a_run_folder(tmp_path, doc, capsys):
    (tmp_path / "a.run.json").write_text(json.dumps({k: v for k, v in doc.items() if k != "_test"}))
    (tmp_path / "model.json").write_text(json.dumps({"not": "a run"}))  # a model sidecar: skipped
    assert main(["report", str(tmp_path), "--quiet"]) == 0
    assert (tmp_path / "report.html").read_text().count("data:image/png") == 4
    assert main(["report", str(tmp_path / "empty-nothing"), "--quiet"]) == 2
    assert "RUN_DIR" in capsys.readouterr().err
