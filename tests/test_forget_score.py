"""netfix.evaluation.forget_score (methods.md §6) and ``netfix bench forget-score``.

Most tests use hand-built "models": a lookup table of logits indexed by the example's number, so the confidences
c = log p_y − log Σ_{k≠y} p_k are exactly the values a test writes down (two classes, label 0, logits (c, 0)).
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from torch import nn

import netfix
from netfix.bench import forget_score as fs_bench
from netfix.errors import ConfigError, DataError, ModelError, UnknownNameError
from netfix.evaluation import forget_score
from netfix.forget_score import example_epsilons, logit_confidence, points


class Table(nn.Module):
    """Logits looked up by example number: input x (B, 1) holds the row index."""

    def __init__(self, logits: torch.Tensor) -> None:
        super().__init__()
        self.logits = nn.Parameter(logits.float())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits[x[:, 0].long()]


def table_models(conf: np.ndarray, extra: "list[torch.Tensor] | None" = None) -> list[nn.Module]:
    """N models from confidences (M examples, N models): model j gives example i logits (conf[i, j], 0); rows
    after M come from ``extra[j]``."""
    out = []
    for j in range(conf.shape[1]):
        rows = torch.stack([torch.as_tensor(conf[:, j]), torch.zeros(conf.shape[0], dtype=torch.float64)], 1)
        if extra is not None:
            rows = torch.cat([rows, extra[j].double()])
        out.append(Table(rows))
    return out


def indexed(start: int, stop: int, labels: "list[int] | None" = None) -> tuple[torch.Tensor, torch.Tensor]:
    """A data set whose inputs are the row numbers start..stop-1 (labels 0 unless given)."""
    y = torch.tensor(labels) if labels is not None else torch.zeros(stop - start, dtype=torch.int64)
    return torch.arange(start, stop, dtype=torch.float32)[:, None], y


def test_identical_distributions_earn_every_point():
    conf = np.random.default_rng(0).normal(3.0, 2.0, size=(20, 8))
    shuffled = conf[:, ::-1].copy()  # the same values, from other "seeds"
    out = forget_score(table_models(conf), table_models(shuffled), indexed(0, 20))
    assert out["epsilons"] == [0.0] * 20
    assert out["F"] == 1.0 and out["n_models"] == 8


def test_perfectly_separated_sets_score_epsilon_50_and_no_points():
    rng = np.random.default_rng(1)
    retrained = rng.normal(0.0, 1.0, size=(10, 8))
    unlearned = rng.normal(20.0, 1.0, size=(10, 8))  # memorised: far above anything retraining gives
    out = forget_score(table_models(unlearned), table_models(retrained), indexed(0, 10))
    assert out["epsilons"] == [50.0] * 10 and out["F"] == 0.0


def test_epsilon_is_the_best_threshold_by_the_formula():
    # one retrained value (10.5) sits among the unlearned ones: the best threshold misses one on each side
    unlearned, retrained = np.array([[10.0, 11.0, 12.0, 13.0]]), np.array([[0.0, 1.0, 2.0, 10.5]])
    eps = example_epsilons(unlearned, retrained, delta=1e-5)
    assert eps[0] == pytest.approx(math.log(1 - 1e-5 - 0.25) - math.log(0.25))
    assert points(eps, 4)[0] == 0.25  # ε in [1, 1.5): k = 2


def test_range_rule_sets_epsilon_50_when_one_set_is_a_hundred_times_narrower():
    retrained = np.linspace(0.0, 10.0, 11)[None]  # holds 5.0, inside the narrow set: no threshold separates
    narrow = 5.0 + np.linspace(-0.04, 0.04, 11)[None]  # range 0.08: ratio 0.008 < 0.01
    wider = 5.0 + np.linspace(-0.1, 0.1, 11)[None]     # range 0.2: ratio 0.02, so the sweep decides
    assert example_epsilons(narrow, retrained)[0] == 50.0
    assert example_epsilons(wider, retrained)[0] < 3.0


def test_constant_sets_score_0_when_equal_and_50_when_not():
    same, other = np.full((1, 5), 2.0), np.full((1, 5), 3.0)
    assert example_epsilons(same, same.copy())[0] == 0.0
    assert example_epsilons(other, same)[0] == 50.0


def test_points_halve_every_half_unit_and_vanish_at_ceil_ln_n_minus_1():
    eps = np.array([0.0, 0.49, 0.5, 1.0, 1.99, 2.0, 2.99, 3.0, 50.0])
    # N = 16: ⌈ln 15⌉ = 3
    assert points(eps, 16).tolist() == [1.0, 1.0, 0.5, 0.25, 2 ** -3, 2 ** -4, 2 ** -5, 0.0, 0.0]


def test_logit_confidence_is_stable_and_matches_probabilities():
    logits = torch.tensor([[2.0, 1.0, -1.0], [1000.0, 0.0, -1000.0], [0.0, 0.0, 0.0]])
    y = torch.tensor([0, 0, 2])
    p = torch.softmax(logits[[0, 2]].double(), 1)
    naive = torch.log(p[[0, 1], [0, 2]]) - torch.log(1 - p[[0, 1], [0, 2]])
    c = logit_confidence(logits, y)
    assert torch.allclose(c[[0, 2]], naive) and c[1].item() == pytest.approx(1000.0)


def test_final_multiplies_f_by_the_accuracy_ratios():
    conf = np.random.default_rng(2).normal(size=(6, 4))
    right, wrong = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]])
    # rows 6..15: retain (10 samples), rows 16..25: test (10 samples), all labelled 0
    unl_rows = torch.cat([right.repeat(9, 1), wrong, right.repeat(8, 1), wrong.repeat(2, 1)])  # RA 90 %, TA 80 %
    ret_rows = right.repeat(20, 1)
    out = forget_score(table_models(conf, [unl_rows] * 4), table_models(conf, [ret_rows] * 4), indexed(0, 6),
                       retain=indexed(6, 16), test=indexed(16, 26))
    assert out["F"] == 1.0
    assert out["retain_acc"] == pytest.approx(90.0) and out["retain_acc_retrained"] == pytest.approx(100.0)
    assert out["retain_ratio"] == pytest.approx(0.9) and out["test_ratio"] == pytest.approx(0.8)
    assert out["final"] == pytest.approx(0.72)


def test_final_is_absent_without_retain_and_test():
    conf = np.zeros((3, 3)) + np.arange(3)
    out = forget_score(table_models(conf), table_models(conf), indexed(0, 3), test=indexed(0, 3))
    assert "test_ratio" in out and "final" not in out and "retain_ratio" not in out


@pytest.fixture
def three():
    return table_models(np.random.default_rng(3).normal(size=(4, 3)))


def test_unequal_model_counts_are_refused(three):
    with pytest.raises(ConfigError, match="retrained_models: got 4 models but unlearned_models has 3; expected the "
                                          "same N"):
        forget_score(three, three + three[:1], indexed(0, 4))


def test_fewer_than_three_models_are_refused(three):
    with pytest.raises(ConfigError, match=r"unlearned_models: got 2 model\(s\); expected at least 3"):
        forget_score(three[:2], three[:2], indexed(0, 4))


def test_a_single_model_instead_of_a_list_is_refused(three):
    with pytest.raises(ConfigError, match="retrained_models: expected a list of N models"):
        forget_score(three, three[0], indexed(0, 4))


def test_a_non_model_in_the_list_is_refused(three):
    with pytest.raises(ModelError, match=r"unlearned_models\[1\]: expected a torch.nn.Module"):
        forget_score([three[0], "model", three[2]], three, indexed(0, 4))


def test_models_with_other_classes_are_refused(three):
    other = [Table(torch.zeros(4, 3)) for _ in range(3)]
    with pytest.raises(ModelError, match=r"retrained_models\[0\]: has 3 outputs but unlearned_models\[0\] has 2"):
        forget_score(three, other, indexed(0, 4))


def test_an_empty_forget_set_is_refused(three):
    with pytest.raises(DataError, match="forget: the set is empty"):
        forget_score(three, three, (torch.zeros(0, 1), torch.zeros(0, dtype=torch.int64)))


def test_a_delta_outside_0_1_is_refused(three):
    with pytest.raises(ConfigError, match="delta: expected a number in"):
        forget_score(three, three, indexed(0, 4), delta=1.0)


def test_500_examples_by_64_models_take_seconds_not_minutes():
    import time

    rng = np.random.default_rng(4)
    start = time.perf_counter()
    eps = example_epsilons(rng.normal(5, 3, (500, 64)), rng.normal(5, 4, (500, 64)))
    assert time.perf_counter() - start < 5.0 and eps.shape == (500,)


# --- the bench ------------------------------------------------------------------------------------------------

def test_bench_refuses_bad_options_before_any_work():
    cpu = torch.device("cpu")
    with pytest.raises(UnknownNameError, match="--methods: unknown method 'nope'"):
        fs_bench.run(False, None, "digits", cpu, False, methods="finetune,nope", models=3)
    with pytest.raises(ConfigError, match="--models: expected an int >= 3"):
        fs_bench.run(False, None, "digits", cpu, False, models=2)
    with pytest.raises(ConfigError, match="--seeds: forget-score trains N models"):
        fs_bench.run(False, 3, "digits", cpu, False)


def test_bench_document_rows_and_a_failing_method(tmp_path, monkeypatch):
    monkeypatch.setitem(fs_bench.EPOCHS, "digits", 30)  # memorising digits takes 80 epochs; the shape does not
    real = fs_bench.unlearn

    def flaky(model, forget, retain, method, **kw):
        if method == "neggrad":
            raise RuntimeError("boom")
        return real(model, forget, retain, method=method, **kw)

    monkeypatch.setattr(fs_bench, "unlearn", flaky)
    path = tmp_path / "fs.json"
    netfix.bench.run("forget-score", data="digits", device="cpu", progress=False, json_path=path,
                     methods="finetune,neggrad,retrain", models=3)
    doc = json.loads(path.read_text())
    assert doc["bench"] == "forget-score" and doc["dataset"] == "digits" and doc["seeds"] == [0, 1, 2]
    assert doc["reference_seconds"] > 0 and set(doc["env"]) >= {"torch", "device", "threads", "netfix"}
    assert [r["method"] for r in doc["rows"]] == ["retrain", "finetune", "neggrad"]
    retrain, finetune, failed = doc["rows"]
    for r in (retrain, finetune):
        assert 0.0 <= r["F"] <= 1.0 and r["final"] == pytest.approx(r["F"] * r["retain_ratio"] * r["test_ratio"])
        assert all(0.0 <= r[k] <= 100.0 for k in ("RA", "TA", "UA", "separable")) and r["n"] == 3
        assert r["rte"] == pytest.approx(100.0 * r["seconds"] / doc["reference_seconds"])
        assert len(doc["epsilons"][r["method"]]) == doc["scenario"]["forget"]
    assert retrain["seeds"] == [3, 4, 5] and finetune["seeds"] == [0, 1, 2]  # retrain's row: disjoint seeds
    # work beside seconds: a retrain takes epochs × ⌈retained / batch⌉ optimizer steps
    batch = netfix.models.recipe("mlp")["batch_size"]
    assert doc["reference_steps"] == 30 * math.ceil(doc["scenario"]["retain"] / batch)
    assert retrain["steps"] == doc["reference_steps"] and retrain["steps_pct"] == 100.0
    assert 0 < finetune["steps"] and finetune["steps_pct"] == pytest.approx(100.0 * finetune["steps"]
                                                                             / doc["reference_steps"])
    assert failed == {"method": "neggrad", "n": 3, "error": "RuntimeError: boom"}
