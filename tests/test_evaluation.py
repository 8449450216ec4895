"""netfix.evaluate and the membership-inference attacks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import netfix
from netfix.errors import ConfigError, DataError
from netfix.evaluation import loss_mia, mia_efficacy


def test_mia_efficacy_calls_test_like_forget_set_non_member():
    rng = np.random.default_rng(0)
    retain = rng.uniform(0.95, 1.0, 500)  # members: confident
    test = rng.uniform(0.2, 0.6, 500)     # non-members: not
    assert mia_efficacy(retain, test, rng.uniform(0.2, 0.6, 200)) > 95
    assert mia_efficacy(retain, test, rng.uniform(0.95, 1.0, 200)) < 5


def test_mia_efficacy_is_deterministic_under_seed():
    rng = np.random.default_rng(1)
    a, b, f = rng.random(300), rng.random(300), rng.random(100)
    assert mia_efficacy(a, b, f, seed=2) == mia_efficacy(a, b, f, seed=2)


def test_mia_efficacy_refuses_empty_sets():
    with pytest.raises(DataError, match="non-empty"):
        mia_efficacy(np.ones(5), np.ones(5), np.array([]))


def test_loss_mia_is_chance_on_same_distribution_and_high_when_separable():
    rng = np.random.default_rng(0)
    assert abs(loss_mia(rng.exponential(1.0, 1000), rng.exponential(1.0, 1000)) - 50) < 8
    assert loss_mia(rng.uniform(0, 0.01, 500), rng.uniform(1, 3, 500)) > 95


def test_evaluate_reports_the_keys_of_the_given_sets(digits, trained):
    train, test = digits
    s = netfix.scenarios.random_forget(train, test, fraction=0.1, seed=0)
    m = netfix.evaluate(trained, forget=s.forget, retain=s.retain, test=s.test)
    for key in ("forget_acc", "ua", "retain_acc", "test_acc", "per_class_acc", "mia_efficacy", "mia_loss_acc",
                "test_confidence"):
        assert key in m
    for key in ("fault_rate", "fault_acc", "gap", "agreement", "kl"):
        assert key not in m
    assert m["ua"] == pytest.approx(100 - m["forget_acc"])
    assert set(m["per_class_acc"]) == set(range(10))
    assert m.test_acc == m["test_acc"]  # attribute access too


def test_evaluate_only_test_set(digits, trained):
    m = netfix.evaluate(trained, test=digits[1])
    assert set(m) == {"test_acc", "per_class_acc", "test_confidence"}
    assert m["test_acc"] > 90


def test_evaluate_fault_rate_counts_predictions_of_fault_label(digits, trained):
    train, test = digits
    s = netfix.scenarios.class_forget(train, test, cls=3)
    m = netfix.evaluate(trained, scenario=s)
    pred = trained(s.fault_test.X.to(next(trained.parameters()).device)).argmax(1).cpu()
    assert m["fault_rate"] == pytest.approx(100 * float((pred == 3).float().mean()), abs=1e-4)
    assert m["fault_acc"] == pytest.approx(m["fault_rate"], abs=1e-4)  # fault_label is the true class here


def test_evaluate_against_itself_has_zero_gap_full_agreement(digits, trained):
    train, test = digits
    s = netfix.scenarios.random_forget(train, test, fraction=0.1, seed=0)
    m = netfix.evaluate(trained, scenario=s, reference=trained)
    assert m["gap"] == pytest.approx(0.0, abs=1e-9)
    assert m["agreement"] == 100.0
    assert m["kl"] == pytest.approx(0.0, abs=1e-6)
    assert m["reference"]["test_acc"] == m["test_acc"]


def test_evaluate_gap_is_mean_abs_difference(digits, trained, mlp):
    train, test = digits
    s = netfix.scenarios.random_forget(train, test, fraction=0.1, seed=0)
    m = netfix.evaluate(mlp, scenario=s, reference=trained)
    r = m["reference"]
    expected = np.mean([abs(m[k] - r[k]) for k in ("ua", "retain_acc", "test_acc", "mia_efficacy")])
    assert m["gap"] == pytest.approx(expected)


def test_evaluate_leaves_model_mode_and_weights_alone(digits, mlp):
    mlp.train()
    before = {k: v.clone() for k, v in mlp.state_dict().items()}
    netfix.evaluate(mlp, test=digits[1])
    assert mlp.training
    assert all(torch.equal(before[k], v) for k, v in mlp.state_dict().items())


def test_evaluate_refuses_no_data(trained):
    with pytest.raises(DataError, match="no data given"):
        netfix.evaluate(trained)


def test_evaluate_refuses_fault_label_without_fault_test(trained, digits):
    with pytest.raises(ConfigError, match="without fault_test"):
        netfix.evaluate(trained, test=digits[1], fault_label=1)


def test_evaluate_refuses_fault_label_out_of_range(trained, digits):
    with pytest.raises(ConfigError, match=r"fault_label: expected a class index in \[0, 10\)"):
        netfix.evaluate(trained, fault_test=digits[1], fault_label=12)


def test_evaluate_refuses_reference_with_other_classes(trained, digits):
    other = netfix.models.build("mlp", (1, 8, 8), 12, hidden=(8,), seed=0)
    with pytest.raises(ConfigError, match="reference: has 12 outputs but model has 10"):
        netfix.evaluate(trained, test=digits[1], reference=other)


def test_evaluate_refuses_labels_beyond_model_outputs(trained):
    X, y = torch.rand(10, 1, 8, 8), torch.full((10,), 11)
    with pytest.raises(DataError, match="test: labels must lie in"):
        netfix.evaluate(trained, test=(X, y))
