"""``unseen`` (netfix's method for deletion requests) and ``reference-guided`` (its peer): the forget set ends up
treated like data the model never saw — not pushed below it — while the rest is kept; the targets are built as
documented; held-out data is checked before any work."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import netfix
from netfix.errors import ConfigError, DataError
from netfix.evaluation import accuracy, predict
from netfix.methods._targets import class_mean_targets, matched_targets


def _confidence(model, data):
    return float(predict(model, data).softmax(1).gather(1, data.y[:, None]).mean())


@pytest.fixture(scope="module")
def memorised():
    """An MLP that memorises real MNIST digits (train accuracy ~100 %, held-out ~93 %): a deletion request's
    samples are then told apart from unseen ones, as on any overfit model."""
    train, test = netfix.datasets.load("mnist5k")
    model = netfix.models.build("mlp", train.input_shape, 10, hidden=(128,), seed=0)
    model = netfix.train(model, train, epochs=40, seed=0, progress=False).model
    heldout = test.subset(np.arange(0, len(test), 2), "heldout")
    s = netfix.scenarios.random_forget(train, test.subset(np.arange(1, len(test), 2), "test"), fraction=0.1, seed=0)
    return model, s, heldout


def test_unseen_brings_a_deletion_request_to_the_models_unseen_behaviour(memorised):
    model, s, heldout = memorised
    held_acc, held_conf = accuracy(model, heldout), _confidence(model, heldout)
    assert accuracy(model, s.forget) == 100.0 and held_acc < 96  # memorised: the request is visible
    out = netfix.unlearn(model, s.forget, s.retain, method="unseen", heldout=heldout, progress=False, guard=None)
    acc, conf = accuracy(out.model, s.forget), _confidence(out.model, s.forget)
    assert abs(acc - held_acc) <= 2.5, (acc, held_acc)  # forgotten down to unseen accuracy, not below
    assert abs(conf - held_conf) <= 0.03, (conf, held_conf)
    assert accuracy(out.model, s.retain) >= accuracy(model, s.retain) - 1.0  # the rest is kept
    assert accuracy(out.model, s.test) >= accuracy(model, s.test) - 2.0
    record = out.history[0]
    assert record["matched"] == len(s.forget) and abs(record["target_acc"] - held_acc) <= 1.5
    assert out.config["n_heldout"] == len(heldout) and "heldout_fingerprint" in out.config


def test_unseen_forgets_a_class_without_heldout_data_and_stops(digits, trained):
    s = netfix.scenarios.class_forget(*digits, cls=3)
    out = netfix.unlearn(trained, s.forget, s.retain, method="unseen", progress=False, guard=None)
    assert accuracy(out.model, s.forget) <= 2.0
    assert accuracy(out.model, s.retain) >= accuracy(trained, s.retain) - 2.0
    assert out.history[0]["removed_label"] == len(s.forget)
    stopped = [h for h in out.history if "stopped" in h]
    assert stopped and stopped[0]["epoch"] < netfix.methods.get("unseen").config().epochs  # the rule ended it


def test_unseen_removes_a_backdoor(digits):
    train, test = digits
    s = netfix.scenarios.backdoor(train, test, target=0, fraction=0.05, seed=0)
    faulty = netfix.train(netfix.models.build("mlp", train.input_shape, 10, hidden=(64,), seed=0), s.train,
                          epochs=30, seed=0, progress=False).model
    clean = netfix.unlearn(faulty, s.forget, s.retain, method="retrain", progress=False)  # the gold standard
    before, reference = netfix.evaluate(faulty, scenario=s), netfix.evaluate(clean.model, scenario=s)
    assert before["fault_rate"] > reference["fault_rate"] + 40  # the trigger works on the faulty model only
    out = netfix.unlearn(faulty, s.forget, s.retain, method="unseen", progress=False, guard=None)
    assert out.history[0]["removed_label"] == len(s.forget)  # auto: one wrong label, read as a fault
    after = netfix.evaluate(out.model, scenario=s)
    assert after["fault_rate"] <= reference["fault_rate"] + 5, (after["fault_rate"], reference["fault_rate"])
    assert after["test_acc"] >= before["test_acc"] - 3


def test_matched_targets_keep_the_heldout_distribution_and_point_errors_at_the_neighbours():
    k = 3
    forget = netfix.data.as_data((torch.zeros(4, 2), torch.tensor([0, 0, 0, 0])), "forget", num_classes=k)
    heldout = netfix.data.as_data((torch.zeros(4, 2), torch.tensor([0, 0, 0, 1])), "heldout", num_classes=k)
    probs = torch.tensor([[0.9, 0.05, 0.05], [0.6, 0.3, 0.1], [0.2, 0.7, 0.1], [0.1, 0.8, 0.1]])
    # neighbours' votes: sample 0 sits among class 0, sample 3 among class 2 (the least typical of class 0)
    votes = torch.tensor([[1.0, 0, 0], [0.8, 0.2, 0], [0.6, 0, 0.4], [0.1, 0, 0.9]])
    q = matched_targets(forget, heldout, probs, votes, torch.full((4, k), 1 / k), torch.ones(4, dtype=torch.bool),
                        torch.Generator().manual_seed(0))
    assert torch.allclose(q.sum(1), torch.ones(4))
    # the true-class probabilities are the held-out class-0 ones (0.9, 0.6, 0.2), least typical sample least sure
    assert q[0, 0] == pytest.approx(0.9) and q[3, 0] == pytest.approx(0.2)
    assert sorted(q[:, 0].tolist()) == pytest.approx(sorted([0.2, 0.6, 0.6, 0.9]))
    assert int(q[3].argmax()) == 2  # its error goes where its neighbours are (class 2), not to held-out's class 1


def test_reference_guided_targets_are_the_heldout_class_means():
    forget = netfix.data.as_data((torch.zeros(3, 2), torch.tensor([0, 1, 0])), "forget", num_classes=2)
    heldout = netfix.data.as_data((torch.zeros(3, 2), torch.tensor([0, 0, 1])), "heldout", num_classes=2)
    probs = torch.tensor([[0.8, 0.2], [0.6, 0.4], [0.3, 0.7]])
    q = class_mean_targets(forget, heldout, probs, torch.ones(3, dtype=torch.bool))
    assert torch.allclose(q, torch.tensor([[0.7, 0.3], [0.3, 0.7], [0.7, 0.3]]))


def test_reference_guided_lowers_forget_confidence_toward_heldout(memorised):
    model, s, heldout = memorised
    out = netfix.unlearn(model, s.forget, s.retain, method="reference-guided", heldout=heldout, progress=False,
                         guard=None)
    assert _confidence(out.model, s.forget) < _confidence(model, s.forget) - 0.03
    assert accuracy(out.model, s.retain) >= accuracy(model, s.retain) - 1.5


# --- held-out data is checked before any work -------------------------------------------------------------------

def test_scattered_request_without_heldout_is_refused_with_the_fix(digits, trained):
    s = netfix.scenarios.random_forget(*digits, fraction=0.1, seed=0)
    for method in ("unseen", "reference-guided"):
        with pytest.raises(DataError, match="heldout: missing.*Fix: pass heldout="):
            netfix.unlearn(trained, s.forget, s.retain, method=method, progress=False)


def test_heldout_is_refused_by_a_method_that_does_not_read_it(digits, trained):
    s = netfix.scenarios.random_forget(*digits, fraction=0.1, seed=0)
    with pytest.raises(ConfigError, match="heldout: method 'neggrad' does not read held-out data.*unseen"):
        netfix.unlearn(trained, s.forget, s.retain, method="neggrad", heldout=digits[1])


def test_heldout_made_of_training_samples_is_refused(digits, trained):
    s = netfix.scenarios.random_forget(*digits, fraction=0.1, seed=0)
    with pytest.raises(DataError, match="heldout: .* are training samples.*never trained on"):
        netfix.unlearn(trained, s.forget, s.retain, method="unseen", heldout=s.retain.subset(np.arange(100)))


def test_heldout_of_the_wrong_shape_or_missing_a_class_is_refused(digits, trained):
    s = netfix.scenarios.random_forget(*digits, fraction=0.1, seed=0)
    with pytest.raises(DataError, match="heldout: inputs have shape"):
        netfix.unlearn(trained, s.forget, s.retain, method="unseen",
                       heldout=(torch.rand(10, 1, 4, 4), torch.zeros(10, dtype=torch.long)))
    test = digits[1]
    no_five = test.subset(np.flatnonzero(test.y.numpy() != 5))
    with pytest.raises(DataError, match="heldout: has no sample of class 5"):
        netfix.unlearn(trained, s.forget, s.retain, method="unseen", heldout=no_five, progress=False)
    with pytest.raises(DataError, match="heldout: the set is empty"):
        netfix.unlearn(trained, s.forget, s.retain, method="unseen",
                       heldout=(torch.zeros(0, 1, 8, 8), torch.zeros(0, dtype=torch.long)))


def test_unseen_is_deterministic_and_leaves_the_caller_untouched(memorised):
    model, s, heldout = memorised
    before = {k: v.clone() for k, v in model.state_dict().items()}
    runs = [netfix.unlearn(model, s.forget, s.retain, method="unseen", heldout=heldout, progress=False, seed=3,
                           epochs=2).model for _ in range(2)]
    assert all(torch.equal(a, b) for a, b in zip(runs[0].state_dict().values(), runs[1].state_dict().values()))
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
