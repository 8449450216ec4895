"""Edits that accumulate (issue 21): the adaptor editor, the edit history a model carries and reverts, editing
sessions, rehearsal, Sequential Editable Training and lifelong_edits — outcomes, not only that code runs."""

from __future__ import annotations

import copy

import pytest
import torch

import netfix
from netfix.methods.editing import EditableTraining, lifelong_edits, perturbations
from netfix.errors import ConfigError, NotAModelError, UnknownNameError

from conftest import same_weights, snapshot


@pytest.fixture(scope="module")
def resnet(digits_resnet):
    return digits_resnet


@pytest.fixture(scope="module")
def wrong(digits):
    """30 test images with a wrong target each, and 300 other test images to measure the rest on."""
    _, test = digits
    X, y = test.X[:30], test.y[:30]
    return X, (y + 1 + torch.arange(30) % 9) % 10, test.subset(torch.arange(60, 360), "rest")


def logits(model, X):
    with torch.no_grad():
        return model.eval()(X)


def test_adaptor_edit_holds_changes_no_weight_and_leaves_the_caller_alone(resnet, wrong, digits):
    X, t, rest = wrong
    train, _ = digits
    before = snapshot(resnet)
    hooks = {n: dict(m._forward_hooks) for n, m in resnet.named_modules()}
    out = netfix.edit(resnet, X[:3], t[:3], editor="adaptor", rehearsal=train)
    assert out.success == [True, True, True]
    assert (logits(out.model, X[:3]).argmax(1) == t[:3]).all()
    # no weight changed: the edit is data in the model (its codebook), at the classifier head
    params = dict(out.model.named_parameters())
    assert all(torch.equal(p, params[n]) for n, p in resnet.named_parameters())
    assert out.config["layer"] == "fc" and out.config["edit_ids"] == [1, 2, 3]
    # the caller's model: same weights, no memory, no hook
    assert same_weights(resnet, copy.deepcopy(resnet)) and snapshot(resnet).keys() == before.keys()
    assert all(torch.equal(before[k], v) for k, v in snapshot(resnet).items())
    assert {n: dict(m._forward_hooks) for n, m in resnet.named_modules()} == hooks
    assert netfix.edits.list(resnet) == []
    # the other inputs: identical logits unless they fall inside an edit's reach
    a, b = logits(resnet, rest.X[:]), logits(out.model, rest.X[:])
    changed = ~(a == b).all(1)
    assert int(changed.sum()) <= 3  # at most a handful of near neighbours


def test_adaptor_edits_generalise_to_noisy_copies_and_accumulate_without_wearing_the_model(resnet, wrong, digits):
    X, t, rest = wrong
    train, _ = digits
    curve = lifelong_edits(resnet, X, t, rest, editor="adaptor", every=10, rehearsal=train, progress=False)
    last = curve[-1]
    assert [c["edits"] for c in curve] == [10, 20, 30]
    assert last["held"] == 100.0 and min(c["success"] for c in curve) == 100.0
    assert last["holds_noise"] >= 80.0 and last["holds_shift"] >= 80.0
    assert last["drawdown"] <= 2.0  # 30 accumulated edits cost at most 2 points of the rest
    assert curve[0]["bytes"] < curve[1]["bytes"] < curve[2]["bytes"]
    # a gradient editor on the same edits wears the model down and forgets earlier edits: the gap the adaptor closes
    grad = lifelong_edits(resnet, X, t, rest, editor="rmsprop", every=30, progress=False)[-1]
    assert grad["drawdown"] > last["drawdown"] + 5
    table = lifelong_edits(resnet, X, t, rest, editor="lookup-table", every=30, progress=False)[-1]
    assert table["held"] == 100.0 and table["holds_noise"] <= 10.0  # exact-input overrides do not generalise


def test_rehearsal_keeps_the_adaptor_clear_of_retained_inputs(resnet, wrong, digits):
    X, t, _ = wrong
    train, _ = digits
    keep = train.X[:200]
    wide = netfix.edit(resnet, X[:10], t[:10], editor="adaptor", slack=50.0, point=50.0)  # reach everything
    kept = netfix.edit(resnet, X[:10], t[:10], editor="adaptor", slack=50.0, point=50.0, rehearsal=keep,
                       rehearsal_size=200)
    base = logits(resnet, keep).argmax(1)
    assert (logits(wide.model, keep).argmax(1) != base).sum() > 50  # without rehearsal the huge balls swallow them
    assert torch.equal(logits(kept.model, keep).argmax(1), base)  # with it, none of them changes
    assert kept.success == [True] * 10


def test_reverting_an_adaptor_edit_restores_predictions_exactly(resnet, wrong, digits):
    X, t, rest = wrong
    train, _ = digits
    first = netfix.edit(resnet, X[:1], t[:1], editor="adaptor", rehearsal=train).model
    both = netfix.edit(first, X[1:2], t[1:2], editor="adaptor", rehearsal=train).model
    assert [e["id"] for e in netfix.edits.list(both)] == [1, 2]
    probe = torch.cat([rest.X[:], X[:2], perturbations()["noise"](X[:2], torch.Generator().manual_seed(0))])
    # the latest: exactly the model before it
    assert torch.equal(logits(netfix.edits.revert(both, 2), probe), logits(first, probe))
    # an earlier one: exactly the model that only took the later edit (entries never depend on each other)
    only_second = netfix.edit(resnet, X[1:2], t[1:2], editor="adaptor", rehearsal=train).model
    assert torch.equal(logits(netfix.edits.revert(both, 1), probe), logits(only_second, probe))
    # both gone: the original model's predictions, and no memory left in it
    none = netfix.edits.revert(netfix.edits.revert(both, 2), 1)
    assert torch.equal(logits(none, probe), logits(resnet, probe))
    assert netfix.edits.size_bytes(none) == 0 and netfix.edits.list(none) == []
    assert set(none.state_dict()) == set(resnet.state_dict())


def test_undoing_the_latest_weight_edit_restores_its_weights_bit_for_bit(resnet, wrong):
    X, t, _ = wrong
    one = netfix.edit(resnet, X[:1], t[:1], editor="rmsprop")
    two = netfix.edit(one.model, X[1:2], t[1:2], editor="sgd")
    ids = [e["id"] for e in netfix.edits.list(two.model)]
    assert ids == [1, 2] and [e["undoable"] for e in netfix.edits.list(two.model)] == [False, True]
    back = netfix.edits.revert(two.model, 2)
    b = dict(back.named_parameters())
    assert all(torch.equal(p, b[n]) for n, p in one.model.named_parameters())
    with pytest.raises(ConfigError, match="most recent"):
        netfix.edits.revert(two.model, 1)  # weight edit 2 came after it
    assert all(torch.equal(p, dict(resnet.named_parameters())[n])
               for n, p in netfix.edits.revert(one.model, 1).named_parameters())


def test_edits_travel_in_the_model_file_and_revert_after_loading(resnet, wrong, digits, tmp_path):
    X, t, rest = wrong
    train, _ = digits
    out = netfix.edit(resnet, X[:4], t[:4], editor="adaptor", rehearsal=train)
    out = netfix.edit(out.model, X[4:5], t[4:5], editor="rmsprop")
    netfix.save(out.model, tmp_path / "edited")
    back = netfix.load(tmp_path / "edited")
    probe = torch.cat([rest.X[:], X[:5]])
    assert torch.equal(logits(back, probe), logits(out.model, probe))
    assert netfix.edits.list(back) == netfix.edits.list(out.model)
    undone = netfix.edits.revert(netfix.edits.revert(back, 5), 2)
    expect = netfix.edits.revert(netfix.edits.revert(out.model, 5), 2)
    assert torch.equal(logits(undone, probe), logits(expect, probe))
    # deep copies carry their own codebook: editing a copy leaves the original's
    clone = copy.deepcopy(back)
    more = netfix.edit(clone, X[6:7], t[6:7], editor="adaptor").model
    assert len(netfix.edits.list(more)) == 6 and len(netfix.edits.list(back)) == 5
    assert torch.equal(logits(back, probe), logits(out.model, probe))


def test_a_file_whose_edit_record_does_not_fit_its_tensors_is_refused(resnet, wrong, tmp_path):
    import json

    from safetensors.torch import load_file, save_file

    X, t, _ = wrong
    out = netfix.edit(resnet, X[:2], t[:2], editor="adaptor")
    path = netfix.save(out.model, tmp_path / "edited")
    state = load_file(str(path))
    state["netfix_edits.radii"] = state["netfix_edits.radii"][:-1]  # one radius short
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        meta = f.metadata()
    side = json.loads(meta["netfix"])
    side.pop("weights_sha256")  # so that the check that fires is the edit record's, not the hash's
    save_file(state, str(tmp_path / "bad.safetensors"), metadata={**meta, "netfix": json.dumps(side)})
    with pytest.raises(NotAModelError, match="edit memory"):
        netfix.load(tmp_path / "bad", allow_unhashed=True)


def test_an_undo_record_naming_another_parameter_is_refused(resnet, wrong, tmp_path):
    import json

    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    X, t, _ = wrong
    path = netfix.save(netfix.edit(resnet, X[:1], t[:1], editor="sgd").model, tmp_path / "edited")
    with safe_open(str(path), "pt") as f:
        meta = f.metadata()
    side = json.loads(meta["netfix"])
    side["edits"]["undo"]["params"] = ["conv1.weight"] * len(side["edits"]["undo"]["params"])  # not what it holds
    side.pop("weights_sha256")
    save_file(load_file(str(path)), str(tmp_path / "bad.safetensors"), metadata={**meta, "netfix": json.dumps(side)})
    with pytest.raises(NotAModelError, match="undo"):
        netfix.load(tmp_path / "bad", allow_unhashed=True)


def test_an_adaptor_at_a_hidden_layer_trains_its_value_and_reverts_exactly(resnet, wrong):
    X, t, rest = wrong
    out = netfix.edit(resnet, X[:2], t[:2], editor="adaptor", layer="layer3")
    assert out.success == [True, True] and out.config["layer"] == "layer3"
    assert (logits(out.model, X[:2]).argmax(1) == t[:2]).all()
    probe = torch.cat([rest.X[:], X[:2]])
    assert torch.equal(logits(netfix.edits.revert(netfix.edits.revert(out.model, 2), 1), probe),
                       logits(resnet, probe))


def test_a_session_edits_in_place_and_matches_one_off_edits(resnet, wrong, digits):
    X, t, rest = wrong
    train, _ = digits
    s = netfix.edits.Session(resnet, rehearsal=train, rehearsal_size=128)
    for i in range(3):
        r = s.edit(X[i:i + 1], t[i:i + 1])
        assert r.model is s.model and r.success == [True]
    one = resnet
    for i in range(3):
        one = netfix.edit(one, X[i:i + 1], t[i:i + 1], editor="adaptor", rehearsal=train, seed=0).model
    assert (logits(s.model, X[:3]).argmax(1) == t[:3]).all()
    assert [e["id"] for e in netfix.edits.list(s.model)] == [1, 2, 3]
    s.revert(2)
    assert [e["id"] for e in netfix.edits.list(s.model)] == [1, 3]
    assert netfix.edits.list(resnet) == []


@pytest.mark.parametrize("call,error,match", [
    (lambda m, X, t: netfix.edit(m, X, t, editor="adaptor", params=["fc"]), ConfigError, "params"),
    (lambda m, X, t: netfix.edit(m, X, t, editor="adaptor", lr=0.1), UnknownNameError, "lr"),
    (lambda m, X, t: netfix.edit(m, X, t, editor="adaptor", layer="nope"), UnknownNameError, "layer"),
    (lambda m, X, t: netfix.edit(m, X, t, editor="adaptor", slack=-1.0), ConfigError, "slack"),
    (lambda m, X, t: netfix.edit(m, X, t, editor="adaptor", copies="8"), Exception, "copies"),
    (lambda m, X, t: netfix.edit(m, X, t, editor="grace"), UnknownNameError, "adaptor"),
    (lambda m, X, t: netfix.edit(m, X, t, editor="adaptor", rehearsal=X[:0]), Exception, "rehearsal"),
    (lambda m, X, t: netfix.edit(m, X, t, rehearsal_size=0), ConfigError, "rehearsal_size"),
    (lambda m, X, t: netfix.edits.revert(m, 1), UnknownNameError, "edit id"),
    (lambda m, X, t: netfix.edits.revert(m, "1"), ConfigError, "edit_id"),
    (lambda m, X, t: EditableTraining(sequential=0), ConfigError, "sequential"),
    (lambda m, X, t: lifelong_edits(m, X, t, (X, t), editor="finetune"), ConfigError, "finetune"),
])
def test_bad_input_is_refused_before_any_work(resnet, wrong, call, error, match):
    X, t, _ = wrong
    with pytest.raises(error, match=match):
        call(resnet, X[:1], t[:1])


def test_sequential_editable_training_trains_for_accumulated_edits(digits):
    train, _ = digits
    model = netfix.models.build("mlp", train.input_shape, 10, hidden=(32,), seed=0)
    one = netfix.train(model, train, epochs=2, lr=3e-3, lr_schedule="constant", seed=0, progress=False,
                       editable=EditableTraining(max_steps=3, lr=0.01))
    seq = netfix.train(model, train, epochs=2, lr=3e-3, lr_schedule="constant", seed=0, progress=False,
                       editable=EditableTraining(max_steps=3, lr=0.01, sequential=3))
    again = netfix.train(model, train, epochs=2, lr=3e-3, lr_schedule="constant", seed=0, progress=False,
                         editable=EditableTraining(max_steps=3, lr=0.01, sequential=3))
    assert not same_weights(one.model, seq.model) and same_weights(seq.model, again.model)
    assert seq.config["editable"]["sequential"] == 3
    # the held step is the default: the model records the step it was trained for, unchanged
    assert seq.config["editable"]["editor_lr"] == pytest.approx(0.01)
    assert netfix.evaluate(seq.model, test=digits[1])["test_acc"] > 60


def test_cli_edit_with_the_adaptor_lists_and_reverts(tmp_path, monkeypatch):
    from netfix.cli import main

    monkeypatch.setenv("NETFIX_HOME", str(tmp_path / "home"))
    base = tmp_path / "m"
    assert main(["train", "--model", "mlp", "--data", "digits", "--epochs", "3", "--out", str(base), "--quiet"]) == 0
    assert main(["edit", str(base), "--indices", "0,1", "--targets", "5,6", "--editor", "adaptor",
                 "--out", str(tmp_path / "e"), "--quiet"]) == 0
    model = netfix.load(tmp_path / "e")
    assert [e["kind"] for e in netfix.edits.list(model)] == ["adaptor", "adaptor"]
    _, test = netfix.datasets.load("digits")
    assert logits(model, test.X[:2]).argmax(1).tolist() == [5, 6]
    assert main(["edits", str(tmp_path / "e"), "--quiet"]) == 0
    assert main(["edits", str(tmp_path / "e"), "--revert", "2", "--out", str(tmp_path / "r"), "--quiet"]) == 0
    reverted = netfix.load(tmp_path / "r")
    assert [e["id"] for e in netfix.edits.list(reverted)] == [1]
    orig = netfix.load(base)
    assert torch.equal(logits(reverted, test.X[1:2]), logits(orig, test.X[1:2]))
    from netfix.ledger import Ledger

    kinds = [(r["kind"], r["payload"].get("method")) for r in Ledger(tmp_path / "home" / "ledger.sqlite").list()]
    assert ("edit", "edit/adaptor") in kinds and ("edit", "revert") in kinds
    # an unknown id names the ids there are
    assert main(["edits", str(tmp_path / "e"), "--revert", "9", "--out", str(tmp_path / "x"), "--quiet"]) != 0
