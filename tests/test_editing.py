"""netfix.edit: a few editor steps make the targets the predictions, on a copy, touching only the chosen part."""

from __future__ import annotations

import pytest
import torch

import netfix
from netfix.methods.editing import EDITORS, default_edit_params, edit_loss
from netfix.errors import ConfigError, DataError, ModelError, UnknownNameError

from conftest import TwoBranch, same_weights, snapshot


@pytest.fixture(scope="module")
def wrong(digits, trained):
    """Two test inputs and targets the trained model does not predict (a wrong label each)."""
    _, test = digits
    dev = next(trained.parameters()).device
    X = test.X[:2]
    pred = trained(X.to(dev)).argmax(1).cpu()
    return X, (pred + 3) % 10


def test_edit_loss_is_zero_exactly_when_the_target_is_the_argmax():
    logits = torch.tensor([[2.0, 1.0, 0.0], [0.0, 1.0, 2.0]])
    loss = edit_loss(logits, torch.tensor([0, 0]))
    assert loss[0] == 0 and loss[1] == pytest.approx(2.0)  # log-softmax margin = logit margin


@pytest.mark.parametrize("editor", EDITORS)
def test_every_editor_reaches_the_targets_on_a_copy_with_its_automatic_step(trained, wrong, editor):
    X, targets = wrong
    before = snapshot(trained)
    out = netfix.edit(trained, X, targets, editor=editor)
    assert out.success == [True, True] and out.steps >= 1
    dev = next(out.model.parameters()).device
    assert (out.model(X.to(dev)).argmax(1).cpu() == targets).all()
    assert all(torch.equal(before[k], v) for k, v in trained.state_dict().items())  # the caller's model is untouched
    assert out.method == f"edit/{editor}" and out.history[-1]["reached"] == 2


def test_the_automatic_step_grows_until_the_edit_holds_and_keeps_the_smallest_that_does(trained, wrong):
    X, targets = wrong
    out = netfix.edit(trained, X, targets, scale=1e-6, growth=10.0, tries=8)
    tries = sorted({h["try"] for h in out.history})
    assert out.success == [True, True] and len(tries) > 1  # 1e-6 of the weights is too small a step: it grew
    last = [h for h in out.history if h["try"] == tries[-1]]
    assert last[-1]["reached"] == 2 and all(h["reached"] < 2 for h in out.history if h["try"] < tries[-1])
    assert out.config["lr"] == pytest.approx(last[0]["lr"])


def test_a_fixed_step_is_used_as_given(trained, wrong):
    X, targets = wrong
    out = netfix.edit(trained, X, targets, editor="sgd", lr=0.1, max_steps=20)
    assert out.success == [True, True] and all(h.get("lr") is None for h in out.history)


def test_only_the_chosen_parameters_change_and_the_default_is_the_classifier_head(trained, wrong):
    X, targets = wrong
    assert default_edit_params(trained, 10) == ["fc"] and default_edit_params(trained) == ["fc"]
    out = netfix.edit(trained, X, targets, params=["fc"], max_steps=30, lr=0.05)
    for (n, p), q in zip(trained.named_parameters(), out.model.parameters()):
        assert torch.equal(p, q) != n.startswith("fc.")
    assert out.config["edited_parameters"] == ["fc.weight", "fc.bias"]


def test_stops_at_max_steps_and_reports_failure(trained, wrong):
    X, targets = wrong
    out = netfix.edit(trained, X, targets, editor="sgd", lr=1e-9, max_steps=3)
    assert out.steps == 3 and out.success == [False, False]


def test_sequential_edits_keep_the_earlier_edit_when_they_can(trained, wrong):
    X, targets = wrong
    kw = {"lr": 0.01, "max_steps": 20, "params": ["body", "fc"]}
    first = netfix.edit(trained, X[:1], targets[:1], **kw)
    second = netfix.edit(first.model, X[1:], targets[1:], rehearsal=X[:1], c_loc=10.0, **kw)
    dev = next(second.model.parameters()).device
    assert second.success == [True]
    assert second.model(X[:1].to(dev)).argmax(1).item() == targets[0].item()


def test_rehearsal_keeps_control_predictions_closer(digits, trained, wrong):
    X, targets = wrong
    control = digits[1].X[100:300]
    dev = next(trained.parameters()).device
    with torch.no_grad():
        ref = torch.log_softmax(trained(control.to(dev)), 1)

    @torch.no_grad()
    def drift(m):
        return float(torch.nn.functional.kl_div(torch.log_softmax(m(control.to(dev)), 1), ref, log_target=True,
                                                reduction="batchmean"))
    kw = {"editor": "sgd", "lr": 0.1, "max_steps": 20, "params": ["body", "fc"]}
    plain = netfix.edit(trained, X, targets, **kw)
    kept = netfix.edit(trained, X, targets, rehearsal=control, c_loc=10.0, **kw)
    assert kept.success == [True, True] and drift(kept.model) < drift(plain.model)


def test_deterministic_and_batchnorm_statistics_untouched(digits):
    train, test = digits
    model = netfix.train(TwoBranch(), train, epochs=2, seed=0, progress=False).model
    targets = (model(test.X[:3].to(next(model.parameters()).device)).argmax(1).cpu() + 1) % 10
    a = netfix.edit(model, test.X[:3], targets, max_steps=15)
    b = netfix.edit(model, test.X[:3], targets, max_steps=15)
    assert same_weights(a.model, b.model)
    assert torch.equal(a.model.bn.running_mean, model.bn.running_mean)
    assert a.model.bn.num_batches_tracked.item() == model.bn.num_batches_tracked.item()


@pytest.mark.parametrize("kwargs, error, match", [
    ({"editor": "lbfgs"}, UnknownNameError, "unknown editor 'lbfgs'"),
    ({"max_steps": 0}, ConfigError, "max_steps"),
    ({"lr": -1.0}, ConfigError, "lr"),
    ({"beta": 1.0}, ConfigError, "beta"),
    ({"params": ["head"]}, ConfigError, "selects no trainable parameter"),
    ({"stepsize": 1.0}, UnknownNameError, "unknown option 'stepsize'"),
])
def test_bad_options_are_refused(trained, wrong, kwargs, error, match):
    X, targets = wrong
    with pytest.raises(error, match=match):
        netfix.edit(trained, X, targets, **kwargs)


def test_the_editors_are_one_registry(trained, wrong):
    """Every editor is one entry of netfix.methods.editing.editors: EDITORS (the gradient editors, in their listed
    order) and LIFELONG are read from it, and an unknown editor's error lists every entry."""
    from netfix.methods.editing import LIFELONG, editors

    assert EDITORS == ("sgd", "momentum", "rmsprop", "adam") and LIFELONG == ("adaptor",)
    assert editors.names() == sorted(EDITORS + LIFELONG)
    X, targets = wrong
    with pytest.raises(UnknownNameError, match="Valid editors: 'adam', 'adaptor', 'momentum', 'rmsprop', 'sgd'"):
        netfix.edit(trained, X[:1], targets[:1], editor="lbfgs")


def test_the_old_module_paths_still_work():
    """netfix.editing, netfix.edits and netfix.edit_metrics re-export what moved to netfix.methods.editing and
    netfix.models.split (CHANGELOG.md)."""
    from netfix.methods.editing import adaptor, apply, history, lifelong, metrics, session
    from netfix.models.split import FrozenSplit

    assert netfix.editing.FrozenSplit is FrozenSplit and netfix.editing.edit is apply.edit is netfix.edit
    assert netfix.edits.list is history.list and netfix.edits.revert is history.revert
    assert netfix.edits.Session is session.Session and netfix.edits.AdaptorConfig is adaptor.AdaptorConfig
    assert netfix.edit_metrics.measure_edits is metrics.measure_edits
    assert netfix.edit_metrics.lifelong_edits is lifelong.lifelong_edits


def test_bad_inputs_are_refused_before_work(trained, wrong):
    X, targets = wrong
    with pytest.raises(DataError, match="targets: 1 targets for 2 inputs"):
        netfix.edit(trained, X, targets[:1])
    with pytest.raises(DataError, match="labels must lie in"):
        netfix.edit(trained, X, torch.tensor([0, 10]))
    with pytest.raises(ModelError, match="could not run on inputs"):
        netfix.edit(trained, torch.rand(2, 3, 5, 5), targets)
    with pytest.raises(DataError, match="NaN"):
        netfix.edit(trained, torch.full_like(X, float("nan")), targets)
    with pytest.raises(DataError, match="rehearsal: inputs have shape"):
        netfix.edit(trained, X, targets, rehearsal=torch.rand(4, 1, 4, 4))


# --- Editable Training -----------------------------------------------------------------------------------------

def test_editable_training_runs_the_editor_inside_the_loss_and_learns_its_step(digits):
    from netfix.methods.editing import EditableTraining

    train, _ = digits
    model = netfix.models.build("mlp", train.input_shape, 10, hidden=(32,), seed=0)
    et = EditableTraining(max_steps=3, lr=0.01, learn_editor_lr=True)
    out = netfix.train(model, train, epochs=2, lr=3e-3, seed=0, progress=False, editable=et)
    plain = netfix.train(model, train, epochs=2, lr=3e-3, seed=0, progress=False)
    assert not same_weights(out.model, plain.model)  # the extra terms changed the training
    assert out.config["editable"]["editor_lr"] != pytest.approx(0.01, abs=1e-9)  # log(lr) was trained
    assert netfix.card.of(out.model).editor["lr"] == out.config["editable"]["editor_lr"]
    again = netfix.train(model, train, epochs=2, lr=3e-3, seed=0, progress=False, editable=EditableTraining(
        max_steps=3, lr=0.01, learn_editor_lr=True))
    assert same_weights(out.model, again.model)  # deterministic


def test_edit_uses_the_step_size_editable_training_learned(digits, wrong):
    from netfix.methods.editing import EditableTraining

    train, _ = digits
    model = netfix.models.build("mlp", train.input_shape, 10, hidden=(32,), seed=0)
    out = netfix.train(model, train, epochs=1, lr=3e-3, seed=0, progress=False,
                       editable=EditableTraining(max_steps=2, lr=0.02, first_order=True))
    X, targets = wrong
    ed = netfix.edit(out.model, X, targets, editor="rmsprop", max_steps=2)
    assert ed.config["lr"] == pytest.approx(out.config["editable"]["editor_lr"])
    other = netfix.edit(out.model, X, targets, editor="sgd", max_steps=2)  # another editor: its automatic step
    assert other.config["lr"] != ed.config["lr"] and "try" in other.history[-1]


def test_the_learned_editor_survives_save_and_load(digits, tmp_path):
    from netfix.methods.editing import EditableTraining

    train, _ = digits
    model = netfix.models.build("mlp", train.input_shape, 10, hidden=(32,), seed=0)
    out = netfix.train(model, train, epochs=1, lr=3e-3, seed=0, progress=False,
                       editable=EditableTraining(max_steps=2, lr=0.02, first_order=True))
    netfix.save(out.model, tmp_path / "editable")
    assert netfix.card.of(netfix.load(tmp_path / "editable")).editor == netfix.card.of(out.model).editor


@pytest.mark.parametrize("kwargs, match", [({"c_edit": -1.0}, "c_edit"), ({"editor": "newton"}, "unknown editor"),
                                           ({"max_steps": 0}, "max_steps")])
def test_editable_training_refuses_bad_options(kwargs, match):
    from netfix.methods.editing import EditableTraining

    with pytest.raises((ConfigError, UnknownNameError), match=match):
        EditableTraining(**kwargs)


# --- the edit block and fine-tuning part of a model --------------------------------------------------------------

@pytest.fixture(scope="module")
def small_resnet(digits):
    train, _ = digits
    model = netfix.models.build("resnet", train.input_shape, 10, seed=0, depth=8, width=4)
    return netfix.train(model, train, epochs=1, seed=0, progress=False).model


def test_add_edit_block_keeps_the_function_and_the_callers_model(digits, small_resnet, tmp_path):
    from netfix.methods.editing import add_edit_block

    _, test = digits
    before = snapshot(small_resnet)
    m = add_edit_block(small_resnet, hidden=32, seed=1)
    assert all(torch.equal(before[k], v) for k, v in small_resnet.state_dict().items())
    assert not hasattr(small_resnet.edit_block, "out")  # still the caller's Identity
    with torch.no_grad():
        assert torch.equal(m.eval()(test.X[:50]), small_resnet.eval()(test.X[:50]))  # out starts at zero
    assert isinstance(m.edit_block, netfix.models.EditBlock) and netfix.card.of(m).architecture["kwargs"]["edit_block"] == 32
    assert default_edit_params(m) == ["edit_block.out"] and default_edit_params(small_resnet) == ["fc"]
    netfix.save(m, tmp_path / "with-block")  # the block is part of the architecture: it rebuilds on load
    assert same_weights(netfix.load(tmp_path / "with-block"), m)


def test_add_edit_block_refuses_what_it_cannot_rebuild(small_resnet):
    from netfix.methods.editing import add_edit_block

    with pytest.raises(ModelError, match="EditBlock"):
        add_edit_block(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10)))
    with pytest.raises(ConfigError, match="already has an edit block"):
        add_edit_block(add_edit_block(small_resnet, hidden=8), hidden=8)
    with pytest.raises(ConfigError, match="hidden"):
        add_edit_block(small_resnet, hidden=0)


def test_train_params_fine_tunes_only_the_chosen_part_and_keeps_batchnorm_statistics(digits, small_resnet):
    from netfix.methods.editing import add_edit_block

    train, _ = digits
    m = add_edit_block(small_resnet, hidden=32)
    out = netfix.train(m, train, epochs=1, seed=0, progress=False, params=["edit_block"])
    new, old = out.model.state_dict(), m.state_dict()
    changed = {k for k in old if not torch.equal(new[k], old[k])}
    assert changed and all(k.startswith("edit_block.") for k in changed)  # BN running statistics included
    assert all(p.requires_grad for p in out.model.parameters())  # the returned model is whole again
    assert out.config["params"] == ["edit_block"] and netfix.card.of(out.model).recipe == netfix.card.of(small_resnet).recipe
    with pytest.raises(ConfigError, match="selects no trainable parameter"):
        netfix.train(m, train, epochs=1, progress=False, params=["layer9"])


def test_editable_fine_tune_of_a_block_equals_the_uncut_computation(digits, small_resnet, monkeypatch):
    """With a frozen prefix, Editable Training runs the prefix once per batch (FrozenSplit); the result must be
    what running the whole model at every editor step gives."""
    from netfix.methods.editing import EditableTraining, add_edit_block
    from netfix.models.split import FrozenSplit

    train, _ = digits
    m = add_edit_block(small_resnet, hidden=32)

    def fine_tune() -> torch.nn.Module:
        et = EditableTraining(edit_params=["edit_block.out"], lr=2e-3, max_steps=3)
        return netfix.train(m, train, epochs=1, seed=0, progress=False, params=["edit_block", "fc"],
                            editable=et).model

    cut = fine_tune()
    monkeypatch.setattr(FrozenSplit, "_trace", lambda self, model, names: (_ for _ in ()).throw(
        ValueError("no cut")))
    whole = fine_tune()
    for (name, a), b in zip(cut.state_dict().items(), whole.state_dict().values()):
        assert torch.allclose(a.float(), b.float(), atol=1e-5), name
    assert netfix.card.of(cut).editor["params"] == ["edit_block.out"]


def test_editable_training_config_can_be_reused(digits):
    """The editor step learned in one train stays out of the caller's config: the same config trains the same
    model twice."""
    from netfix.methods.editing import EditableTraining

    train, _ = digits
    model = netfix.models.build("mlp", train.input_shape, 10, hidden=(16,), seed=0)
    cfg = EditableTraining(max_steps=2, lr=0.01, learn_editor_lr=True)
    a = netfix.train(model, train, epochs=1, seed=0, progress=False, editable=cfg)
    b = netfix.train(model, train, epochs=1, seed=0, progress=False, editable=cfg)
    assert cfg._log_lr is None  # the caller's config never held the run's state
    assert a.config["editable"]["editor_lr"] == b.config["editable"]["editor_lr"] != 0.01
    assert all(torch.equal(x, y) for x, y in zip(a.model.state_dict().values(), b.model.state_dict().values()))
