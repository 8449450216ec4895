"""Two peer methods from recent benchmarks: ``msg`` (Masked Small Gradients, Deep Unlearn) and ``rum`` (the
Refined-Unlearning Meta-algorithm): their mechanics match their definitions and they forget while keeping the rest."""

from __future__ import annotations

import math

import pytest
import torch

import netfix
from netfix.errors import ConfigError, UnknownNameError
from netfix.methods import msg, rum

from conftest import same_weights

CLS = 4


@pytest.fixture(scope="module")
def forget_class(digits):
    return netfix.scenarios.class_forget(*digits, cls=CLS)


@pytest.fixture(scope="module")
def random_forget(digits):
    return netfix.scenarios.random_forget(*digits, fraction=0.1, seed=0)


def _unlearn(model, s, method, **options):
    return netfix.unlearn(model, s.forget, s.retain, method=method, progress=False, guard=None, **options)


# --- msg ---------------------------------------------------------------------------------------------------------

def test_msg_reinit_replaces_exactly_the_smallest_scores():
    g = torch.Generator().manual_seed(0)
    w = torch.full((40, 50), 7.0)
    score = torch.arange(2000, dtype=torch.float32).view(40, 50)  # the first 600 entries are the smallest
    fresh = msg.reinit_small(w, score, 0.3, g)
    assert int(fresh.sum()) == 600 and fresh.flatten()[:600].all() and not fresh.flatten()[600:].any()
    assert (w.flatten()[600:] == 7.0).all()  # the others keep their value
    assert abs(float(w[fresh].std()) - math.sqrt(2 / 40)) < 0.03  # Kaiming normal, fan-out = 40 rows


def test_msg_changes_only_the_reinitialised_share_when_kept_weights_are_frozen(trained, random_forget):
    out = _unlearn(trained, random_forget, "msg", reinit_fraction=0.3, kept_grad_scale=0.0, weight_decay=0.0,
                   epochs=1)
    before, after = trained.state_dict(), out.model.state_dict()
    hidden = [k for k in before if k.endswith("weight") and before[k].ndim == 2][0]  # the 64x64 hidden layer
    changed = int((before[hidden] != after[hidden]).sum())
    assert changed == round(0.3 * before[hidden].numel())
    assert out.history[0]["layers"] == [hidden.rsplit(".", 1)[0]]  # the classifier head is not re-initialised
    head = [k for k in before if k.endswith("weight")][-1]
    assert not torch.equal(before[head], after[head])  # ... but it is fine-tuned at full speed


def test_msg_learning_rate_rises_to_the_middle_epoch_then_falls(trained, random_forget):
    out = _unlearn(trained, random_forget, "msg", epochs=5, lr=3e-3)
    lrs = [h["lr"] for h in out.history if "loss" in h]
    assert lrs == pytest.approx([1e-3, 2e-3, 3e-3, 2e-3, 1e-3])
    assert [msg.triangle(e, 4) for e in range(1, 5)] == pytest.approx([0.5, 1.0, 2 / 3, 1 / 3])


def test_msg_forgets_a_class_and_keeps_the_others(trained, forget_class):
    before = netfix.evaluate(trained, scenario=forget_class)
    m = netfix.evaluate(_unlearn(trained, forget_class, "msg").model, scenario=forget_class)
    assert before["forget_acc"] > 90 and m["forget_acc"] < 50
    assert m["test_acc"] > 85 and m["retain_acc"] > before["retain_acc"] - 5


def test_msg_refuses_a_selection_the_model_lacks(trained, random_forget):
    with pytest.raises(ConfigError, match="^layers: the model has no trainable convolution.*Fix"):
        _unlearn(trained, random_forget, "msg", layers="conv")
    with pytest.raises(UnknownNameError, match="layer selection 'dense'"):
        _unlearn(trained, random_forget, "msg", layers="dense")


# --- rum ---------------------------------------------------------------------------------------------------------

def test_rum_refine_cuts_sorted_scores_into_equal_groups():
    scores = torch.tensor([0.9, 0.1, 0.5, 0.3, 0.7, 0.2, 0.8]).numpy()
    parts = rum.refine(scores, 3)
    assert [p.tolist() for p in parts] == [[1, 3, 5], [2, 4], [0, 6]]
    assert len(rum.refine(scores[:2], 3)) == 2  # fewer samples than groups: no empty group


def test_rum_unlearns_groups_from_least_to_most_memorised(trained, random_forget):
    out = _unlearn(trained, random_forget, "rum", inner="neggrad+:epochs=1")
    head, steps = out.history[0], out.history[1:]
    lows, highs = zip(*head["score_ranges"])
    assert head["proxy"] == "confidence" and max(head["sizes"]) - min(head["sizes"]) <= 1
    assert all(h <= lo for h, lo in zip(highs, lows[1:]))  # 1 - p_y rises from group to group
    assert [h["group"] for h in steps] == [0, 1, 2]
    rev = _unlearn(trained, random_forget, "rum", inner="neggrad+:epochs=1", order="high-first")
    assert [h["group"] for h in rev.history[1:]] == [2, 1, 0]


def test_rum_runs_each_groups_own_method(trained, random_forget):
    out = _unlearn(trained, random_forget, "rum", inner="neggrad+:epochs=1", inner_low="finetune:epochs=1",
                   inner_high="neggrad:epochs=2")
    assert [h["method"] for h in out.history[1:]] == ["finetune", "neggrad+", "neggrad", "neggrad"]


def test_rum_with_one_group_is_its_inner_method(trained, random_forget):
    one = _unlearn(trained, random_forget, "rum", groups=1, inner="neggrad+:epochs=2,lr=0.01")
    plain = _unlearn(trained, random_forget, "neggrad+", epochs=2, lr=0.01)
    assert same_weights(one.model, plain.model)


def test_rum_step_scale_multiplies_the_inner_step(trained, random_forget):
    out = _unlearn(trained, random_forget, "rum", inner="neggrad+:epochs=1,lr=0.01", step_scale=0.5)
    assert all(h["lr"] == pytest.approx(0.005) for h in out.history[1:])


def test_rum_forgets_a_class_and_keeps_the_others(trained, forget_class):
    before = netfix.evaluate(trained, scenario=forget_class)
    out = netfix.unlearn(trained, forget_class.forget, forget_class.retain, method="rum", progress=False)
    m = netfix.evaluate(out.model, scenario=forget_class)
    assert before["forget_acc"] > 90 and m["forget_acc"] < 50
    assert m["test_acc"] > 85 and m["retain_acc"] > before["retain_acc"] - 5


def test_rum_refuses_unknown_inner_methods_listing_the_valid_ones():
    with pytest.raises(UnknownNameError, match=r"^inner_low: unknown method 'nope'\. Valid methods: .*'neggrad\+'"):
        rum.RUMConfig(inner_low="nope")
    with pytest.raises(UnknownNameError, match=r"^inner: method 'neggrad\+': unknown option 'alhpa'.*'alpha'"):
        rum.RUMConfig(inner="neggrad+:alhpa=0.9")
    with pytest.raises(ConfigError, match=r"inner \(neggrad\+\): lr: expected"):
        rum.RUMConfig(inner="neggrad+:lr=-1")


def test_rum_refuses_to_nest_itself_and_methods_it_cannot_run():
    with pytest.raises(ConfigError, match="^inner_high: expected a method other than 'rum'"):
        rum.RUMConfig(inner_high="rum")
    with pytest.raises(ConfigError, match="^inner: method 'mixed-linear' cannot run inside rum"):
        rum.RUMConfig(inner="mixed-linear")


def test_msg_on_a_model_without_hidden_layers_reinitialises_its_head(digits, random_forget):
    probe = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))
    probe = netfix.train(probe, digits[0], epochs=3, lr=1e-2, seed=0, progress=False).model
    out = _unlearn(probe, random_forget, "msg", epochs=1)
    assert out.history[0]["layers"] == ["1"] and out.history[0]["reinitialised"] == round(0.7 * 640)
