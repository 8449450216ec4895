"""The ogd method: unlearning with projected gradients keeps the retained behaviour; relearning learns the fix."""

from __future__ import annotations

import numpy as np
import pytest

import netfix
from netfix.errors import ConfigError, DataError, UnknownNameError

from conftest import TwoBranch


@pytest.fixture(scope="module")
def faulty(digits):
    s = netfix.scenarios.mislabel(*digits, source=7, target=1)
    model = netfix.models.build("mlp", (1, 8, 8), 10, hidden=(64,), seed=0)
    return s, netfix.train(model, s.train, epochs=20, lr=3e-3, seed=0, progress=False).model


def _others(m, s):
    return np.mean([v for k, v in m["per_class_acc"].items() if k != 7])


def test_unlearn_brings_the_forget_set_to_chance(faulty):
    s, model = faulty
    out = netfix.unlearn(model, s.forget, s.retain, method="ogd", lr=0.1, progress=False)
    assert out.history[-1]["reason"] == "forgotten" and out.history[-1]["forget_acc"] <= 10.0
    assert netfix.evaluate(out.model, scenario=s)["fault_rate"] <= 20.0
    assert out.history[0]["memory_rank"] == 300


def test_projection_protects_the_other_classes(faulty):
    s, model = faulty
    base = _others(netfix.evaluate(model, scenario=s), s)
    kw = {"objective": "ascent", "lr": 0.05, "max_epochs": 20, "progress": False}
    projected = netfix.unlearn(model, s.forget, s.retain, method="ogd", **kw).model
    plain = netfix.unlearn(model, s.forget, s.retain, method="ogd", project=False, **kw).model
    drop_projected = base - _others(netfix.evaluate(projected, scenario=s), s)
    drop_plain = base - _others(netfix.evaluate(plain, scenario=s), s)
    assert drop_projected < drop_plain


def test_relearn_learns_the_corrected_labels(faulty):
    s, model = faulty
    forgotten = netfix.unlearn(model, s.forget, s.retain, method="ogd", progress=False).model
    out = netfix.relearn(forgotten, s.corrected, protect=s.retain, method="ogd", progress=False)
    m = netfix.evaluate(out.model, scenario=s)
    assert m["fault_rate"] <= 5.0 and m["fault_acc"] > 70


def test_stops_at_once_when_nothing_to_forget(digits, trained):
    s = netfix.scenarios.random_forget(*digits, fraction=0.1)
    out = netfix.unlearn(trained, s.forget, s.retain, method="ogd", stop_acc=100.0, progress=False)
    assert out.history[-1] == {"step": 0, "stopped": True, "reason": "forgotten",
                               "forget_acc": out.history[-1]["forget_acc"]}


@pytest.mark.parametrize("objective", ["ascent", "uniform", "random-label"])
def test_every_objective_runs_on_a_batchnorm_nonsequential_model(digits, objective):
    s = netfix.scenarios.mislabel(*digits, source=3, target=5)
    model = netfix.train(TwoBranch(), s.train, epochs=3, seed=0, progress=False).model
    out = netfix.unlearn(model, s.forget, s.retain, method="ogd", objective=objective, max_epochs=1,
                         memory_size=50, params=["head", "skip"], progress=False)
    assert out.model.bn.num_batches_tracked.item() == model.bn.num_batches_tracked.item()  # statistics frozen
    assert all(p.requires_grad for p in out.model.parameters())


def test_only_selected_parameters_change(faulty):
    s, model = faulty
    out = netfix.unlearn(model, s.forget, s.retain, method="ogd", params=["fc"], progress=False)
    assert (out.model.body[1].weight == model.body[1].weight).all()
    assert not (out.model.fc.weight == model.fc.weight).all()


@pytest.mark.parametrize("option, value, error, match", [
    ("objective", "forget-harder", UnknownNameError, "unknown objective"),
    ("variant", "sum", UnknownNameError, "unknown variant"),
    ("memory_size", -1, ConfigError, "memory_size"),
    ("momentum", 1.0, ConfigError, "momentum"),
    ("stop_acc", 120.0, ConfigError, "stop_acc"),
    ("params", ["nope"], ConfigError, "selects no trainable parameter"),
])
def test_bad_options_are_refused(faulty, option, value, error, match):
    s, model = faulty
    with pytest.raises(error, match=match):
        netfix.unlearn(model, s.forget, s.retain, method="ogd", **{option: value})


def test_empty_retain_is_refused_when_projecting(faulty):
    s, model = faulty
    with pytest.raises(DataError, match="OGD builds its memory"):
        netfix.unlearn(model, s.forget, s.retain.subset([]), method="ogd")
