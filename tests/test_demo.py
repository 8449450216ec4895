"""netfix demo: its setting (LeNet on mnist5k), the work columns beside the seconds, and a headline that states the
trade-off as measured. The run here is shortened to 2 epochs: the tests check what the columns mean, not the
trade-off (that is the full demo's job; docs/results.md)."""

from __future__ import annotations

import json
import math

import pytest

import netfix
from netfix import demo

OGD = "ogd (unlearn + relearn)"


@pytest.fixture(scope="module")
def quick_demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(demo.EPOCHS, "quick", 2)
        result = demo.run(quick=True, out=out, progress=False)
    return result, out


def test_demo_runs_lenet_with_its_recipe(quick_demo):
    result, out = quick_demo
    assert result["model"] == "lenet" and result["epochs"] == 2
    assert result["recipe"] == netfix.models.recipe("lenet")
    assert "lenet, 2 epochs" in result["headline"] and result["tradeoff"] in result["headline"]
    written = json.loads((out / "metrics.json").read_text())
    assert written["rows"] == result["rows"] and written["columns"] == list(demo.COLUMNS)


def test_demo_rows_report_steps_beside_seconds(quick_demo):
    result, _ = quick_demo
    rows = {r["method"]: r for r in result["rows"]}
    assert list(rows) == ["original", OGD, "retrain"]
    assert {"steps", "steps_pct", "memory_grads"} <= set(demo.COLUMNS)
    batch = netfix.models.recipe("lenet")["batch_size"]
    train_set, _ = netfix.datasets.load("mnist5k")
    # training from scratch: epochs × ⌈N / batch⌉ steps, the original on the faulty labels and the retrain on the
    # corrected ones (the same N images)
    expected = 2 * math.ceil(len(train_set) / batch)
    assert rows["original"]["steps"] == rows["retrain"]["steps"] == expected
    assert 0 < rows[OGD]["steps"] < expected
    assert rows[OGD]["steps_pct"] == pytest.approx(100.0 * rows[OGD]["steps"] / expected)
    assert rows["retrain"]["steps_pct"] == pytest.approx(100.0) and rows["retrain"]["rte"] == pytest.approx(100.0)
    assert rows[OGD]["rte"] == pytest.approx(100.0 * rows[OGD]["seconds"] / rows["retrain"]["seconds"])
    assert rows["original"]["rte"] is None and rows["original"]["steps_pct"] is None  # not a repair
    assert rows[OGD]["memory_grads"] > 0  # two memories, one per phase
    assert rows["original"]["memory_grads"] is None and rows["retrain"]["memory_grads"] is None


def test_demo_repairs_the_fault(quick_demo):
    result, _ = quick_demo
    rows = {r["method"]: r for r in result["rows"]}
    assert rows["original"]["fault_rate"] > 50
    assert rows[OGD]["fault_rate"] < 10 and rows["retrain"]["fault_rate"] < 10


def _rows(rte: float) -> list[dict]:
    return [{"method": "original", "steps": 100}, {"method": OGD, "rte": rte, "steps": 7, "steps_pct": 7.0,
                                                   "memory_grads": 600},
            {"method": "retrain", "rte": 100.0, "steps": 100, "steps_pct": 100.0}]


@pytest.mark.parametrize("rte, says", [(31.2, "the repair took 31 % of retraining's time for 7 % of its optimizer "
                                                "steps (7 vs 100)"),
                                       (125.0, "the repair was slower than retraining here (125 % of its time)")])
def test_the_tradeoff_line_says_what_was_measured(rte, says):
    line = demo.tradeoff(_rows(rte))
    assert says in line and "\n" not in line and "600 retained output gradients" in line
