"""Which method, for which request, at what cost: the Pareto fronts of bench rows (netfix.bench.pareto), their
section in the HTML report, the recommendation read from them (netfix.methods recommend / request_kind) and the
table shipped with the package."""

from __future__ import annotations

import json

import pytest
import torch
from torch.utils.data import Dataset

import netfix
from netfix import report, scenarios
from netfix.bench import pareto
from netfix.data import as_data
from netfix.errors import ConfigError, DataError, UnknownNameError
from netfix.methods import _recommend
from netfix.methods._recommend import recommend, recommend_details, request_kind


def row(method, gap, rte, scenario="class_forget", model="mlp", **extra):
    return {"scenario": scenario, "model": model, "method": method, "gap": gap, "rte": rte, **extra}


# -- fronts ---------------------------------------------------------------------------------------------------------
def test_a_point_worse_on_both_is_off_the_front_and_a_trade_off_keeps_both():
    pts = [{"method": "fast", "gap": 5.0, "rte": 2.0}, {"method": "close", "gap": 1.0, "rte": 80.0},
           {"method": "bad", "gap": 6.0, "rte": 90.0}]
    assert [p["method"] for p in pareto.front(pts)] == ["fast", "close"]  # cheapest first
    assert pareto.dominates(pts[0], pts[2]) and not pareto.dominates(pts[0], pts[1])


def test_equal_points_are_both_on_the_front_but_an_equal_gap_at_lower_cost_dominates():
    tie = [{"method": "a", "gap": 1.0, "rte": 10.0}, {"method": "b", "gap": 1.0, "rte": 10.0}]
    assert {p["method"] for p in pareto.front(tie)} == {"a", "b"}
    cheaper = [{"method": "a", "gap": 1.0, "rte": 10.0}, {"method": "b", "gap": 1.0, "rte": 5.0}]
    assert [p["method"] for p in pareto.front(cheaper)] == ["b"]


def test_summary_maps_scenarios_to_requests_and_leaves_out_references_errors_and_missing_values():
    rows = [row("retrain", 0.0, 100.0), row("original", 40.0, 0.0), row("ogd", 0.5, 8.0),
            row("salun", 0.4, 120.0), row("scrub", None, 50.0), row("ssd", 2.0, float("nan")),
            row("fisher", 1.0, 1.0, error="RuntimeError: boom"),
            row("mixed-linear", 0.1, 1.0, reference="retrain-linear"),
            row("finetune", 3.0, 40.0, scenario="random_forget"),
            {"arch": "hf-vit", "scenario": "backdoor", "method": "ogd", "gap": 5.0, "rte": 70.0},
            {"arch": "hf-vit", "scenario": "edits", "method": "rmsprop", "edit_success": 100.0}]
    s = pareto.summary(rows)
    assert set(s) == {"class", "random", "fault"}
    cls = s["class"]
    assert cls["front"] == ["ogd", "salun"]  # retrain, original and the broken rows compete with nothing
    assert {p["method"] for p in cls["models"]["mlp"]["points"]} == {"ogd", "salun"}
    why = {x["method"]: x["why"] for x in cls["skipped"]}
    assert why == {"scrub": "no gap", "ssd": "no rte", "fisher": "error: RuntimeError: boom",
                   "mixed-linear": "measured against retrain-linear, not retrain"}
    assert s["fault"]["models"]["hf-vit"]["front"] == ["ogd"]  # the zoo's rows name the model "arch"
    assert s["random"]["front"] == ["finetune"] and s["random"]["skipped"] == []
    json.dumps(s)  # what a bench stores under "fronts"


def test_the_table_averages_over_models_and_flags_the_front_of_the_means():
    rows = [row("a", 1.0, 50.0, model="m1"), row("b", 2.0, 10.0, model="m1"), row("c", 3.0, 60.0, model="m1"),
            row("a", 3.0, 70.0, model="m2"), row("b", 2.0, 20.0, model="m2"), row("c", 1.0, 60.0, model="m2")]
    s = pareto.summary(rows)["class"]
    t = {r["method"]: r for r in s["table"]}
    assert t["a"]["gap"] == 2.0 and t["a"]["rte"] == 60.0 and t["a"]["models"] == 2
    assert s["models"]["m1"]["front"] == ["b", "a"] and s["models"]["m2"]["front"] == ["b", "c"]
    assert (t["a"]["front_models"], t["b"]["front_models"], t["c"]["front_models"]) == (1, 2, 1)
    # means: a (2, 60), b (2, 15), c (2, 60): b is at least as close and cheaper than both
    assert s["front"] == ["b"] and [r["on_front"] for r in s["table"]] == [True, False, False]


def test_a_methods_rows_for_the_same_model_are_averaged():
    s = pareto.summary([row("ogd", 1.0, 10.0), row("ogd", 3.0, 30.0)])["class"]
    (p,) = s["models"]["mlp"]["points"]
    assert (p["gap"], p["rte"], p["n"]) == (2.0, 20.0, 2)


def test_no_request_rows_no_fronts():
    assert pareto.summary([{"model": "after", "gap": 1.0, "rte": 2.0}]) == {}


# -- report ---------------------------------------------------------------------------------------------------------
def test_a_bench_report_shows_each_requests_front_as_a_table_and_a_scatter():
    rows = [row("ogd", 0.5, 8.0), row("salun", 0.4, 120.0), row("neggrad", 40.0, 1.0, model="lenet"),
            row("finetune", 3.0, 40.0, scenario="random_forget")]
    page = report.render({"bench": "unlearn", "rows": rows})
    assert "Which method for a whole class (class request)" in page and "random samples (random request)" in page
    assert page.count("data:image/png;base64,") == 3  # the trade-off plot, and one front per request
    stored = report.render({"bench": "unlearn", "rows": rows, "fronts": pareto.summary(rows[:2])})
    assert "whole class" in stored and "random request" not in stored  # a stored "fronts" is what is drawn
    assert "Which method" not in report.render({"rows": [{"model": "after", "gap": 1.0, "rte": 2.0}]})


# -- recommend ------------------------------------------------------------------------------------------------------
TABLE = pareto.summary([row("fast", 6.0, 2.0, model="m1"), row("mid", 2.0, 30.0, model="m1"),
                        row("close", 0.5, 150.0, model="m1"), row("slow", 9.0, 200.0, model="m1"),
                        row("fast", 1.0, 2.0, model="m2"), row("mid", 3.0, 30.0, model="m2")])


def test_recommend_picks_the_closest_method_on_the_front_within_the_budget():
    assert recommend("class", table=TABLE) == "close"  # any cost
    assert recommend("class", budget=50, table=TABLE) == "mid"
    r = recommend_details("class", budget=5, table=TABLE)
    assert r.method == "fast" and r.fits_budget and r.gap == pytest.approx(3.5)


def test_recommend_falls_back_to_the_cheapest_on_the_front_and_says_so():
    r = recommend_details("class", budget=1, table=TABLE)
    assert r.method == "fast" and not r.fits_budget and "fits rte <= 1 %" in r.reason and "cheapest" in r.reason


def test_recommend_warns_when_the_pick_costs_more_than_retraining():
    assert "consider method='retrain'" in recommend_details("class", table=TABLE).reason
    assert "consider method='retrain'" not in recommend_details("class", budget=50, table=TABLE).reason


def test_recommend_uses_a_benched_models_own_front_else_the_means():
    r = recommend_details("class", model="m2", table=TABLE)
    assert r.method == "fast" and r.model == "m2" and r.gap == 1.0  # on m2, fast is also the closest
    other = recommend_details("class", budget=50, model="vgg", table=TABLE)
    assert other.method == "mid" and other.model is None and "vgg was not benched" in other.reason


def test_recommend_refuses_unknown_requests_bad_budgets_and_unmeasured_requests():
    with pytest.raises(UnknownNameError, match="request: unknown request 'backdoor'. Valid requests: 'class'"):
        recommend("backdoor", table=TABLE)
    for bad in (0, -5):
        with pytest.raises(ConfigError, match="budget"):
            recommend("class", budget=bad, table=TABLE)
    with pytest.raises(DataError, match="no bench measured a fault request"):
        recommend("fault", table=TABLE)


def test_the_shipped_table_recommends_registered_unlearning_methods_for_every_request():
    shipped = json.loads(_recommend.TABLE.read_text())
    assert set(shipped["fronts"]) == {"random", "class", "fault"}
    able = [m for m in netfix.methods.available() if "unlearn" in netfix.methods.get(m).modes]
    for request in ("random", "class", "fault"):
        for budget in (None, 10, 0.01):
            assert recommend(request, budget=budget) in able
    mlp = netfix.models.build("mlp", (1, 8, 8), 10, hidden=(8,), seed=0)  # a model is looked up by its card
    assert recommend_details("class", model=mlp).model == "mlp"


# -- request_kind ---------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def digits():
    return netfix.datasets.load("digits")


@pytest.mark.parametrize("spec, kind", [
    ("class_forget:cls=3", "class"), ("random_forget:fraction=0.1", "random"),
    ("mislabel:source=7,target=1", "fault"), ("backdoor:target=0", "fault"),
])
def test_request_kind_tells_a_class_a_fault_and_a_random_request_apart(digits, spec, kind):
    s = scenarios.from_spec(spec, *digits)
    assert request_kind(s.forget, s.retain) == kind


def test_request_kind_needs_the_fault_label_in_retain_and_ninety_percent_of_the_forget_set(digits):
    train, _ = digits
    threes = torch.nonzero(train.y == 3).squeeze(1)
    others = torch.nonzero(train.y != 3).squeeze(1)
    mostly = train.subset(torch.cat([threes[:90], others[:10]]))
    assert request_kind(mostly, train.subset(torch.cat([threes[90:], others[10:]]))) == "fault"
    less = train.subset(torch.cat([threes[:80], others[:20]]))
    assert request_kind(less, train.subset(torch.cat([threes[80:], others[20:]]))) == "random"
    with pytest.raises(DataError, match="forget set is empty"):
        request_kind(train.subset([]), train)


class Unreadable(Dataset):
    """Labels known up front (``targets``), inputs never to be read past the first (for the shape)."""

    def __init__(self, X, y):
        self.X, self.targets, self.reads = X, list(map(int, y)), 0

    def __len__(self):
        return len(self.targets)

    def __getitem__(self, i):
        self.reads += 1
        return self.X[i], self.targets[i]


def test_request_kind_reads_only_the_labels_of_a_streamed_set(digits):
    train, test = digits
    s = scenarios.class_forget(train, test, cls=5)
    forget_ds, retain_ds = Unreadable(s.forget.X, s.forget.y), Unreadable(s.retain.X, s.retain.y)
    forget, retain = as_data(forget_ds, "forget", stream=True), as_data(retain_ds, "retain", stream=True)
    reads = forget_ds.reads + retain_ds.reads
    assert forget.streamed and request_kind(forget, retain) == "class"
    assert forget_ds.reads + retain_ds.reads == reads  # no input read to classify the request
