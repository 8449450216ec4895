"""Forgetting operators, the ForgetRelearn schedule, forget-relearn repair and the disproportionate-forgetting
analysis (issue 8), on scikit-learn's digits."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import netfix
from netfix.methods import forget_relearn as fg
from netfix.errors import ConfigError, DataError, ModelError
from netfix.registry import Registry

from conftest import same_weights

ALL = ["llf", "ke", "random", "imp", "shrink-perturb", "targeted"]


@pytest.fixture(scope="module")
def noisy(digits):
    train, test = digits
    return netfix.scenarios.label_noise(train, test, fraction=0.4, seed=0)


def _changed(a: nn.Module, b: nn.Module) -> dict[str, float]:
    """Share of entries changed, per parameter."""
    pa = dict(a.named_parameters())
    return {n: float((p != pa[n]).float().mean()) for n, p in b.named_parameters()}


@pytest.mark.parametrize("name", ALL)
def test_operator_returns_new_model_leaves_input_and_is_deterministic(name, trained, digits):
    train, _ = digits
    before = {k: v.clone() for k, v in trained.state_dict().items()}
    op = fg.operator(name)
    a = op(trained, seed=3, data=train)
    b = fg.operator(name)(trained, seed=3, data=train)
    assert a is not trained
    assert all(torch.equal(before[k], v) for k, v in trained.state_dict().items())
    assert same_weights(a, b)
    assert any(v > 0 for v in _changed(trained, a).values())


def test_llf_reinitialises_from_start_on_only(trained):
    out = fg.operator("llf:start=fc")(trained, seed=0)
    changed = _changed(trained, out)
    assert changed["fc.weight"] > 0.9 and changed["fc.bias"] > 0.5
    assert changed["body.1.weight"] == 0
    # the fresh values come from the layer's own initialiser: kaiming-uniform bound 1/sqrt(fan_in)
    bound = 1 / trained.fc.weight.shape[1] ** 0.5
    assert float(out.fc.weight.detach().abs().max()) <= bound + 1e-6


def test_llf_unknown_start_names_valid_layers(trained):
    with pytest.raises(ConfigError, match="body.1"):
        fg.operator("llf:start=nope")(trained)


def test_ke_keeps_the_leading_kernels(digits):
    train, _ = digits
    m = netfix.models.build("mlp", train.input_shape, 10, hidden=(20, 10), seed=0)
    out = fg.KernelReinit(keep=0.8)(m, seed=1)
    w0, w1 = m.body[3].weight, out.body[3].weight  # hidden 20 -> 10: keep 8 x 16
    assert torch.equal(w0[:8, :16], w1[:8, :16])
    assert (w0[8:] != w1[8:]).float().mean() > 0.9 and (w0[:8, 16:] != w1[:8, 16:]).float().mean() > 0.9
    # the first layer keeps every input, the output layer every class
    assert torch.equal(m.body[1].weight[:16], out.body[1].weight[:16])
    assert torch.equal(m.fc.weight[:, :8], out.fc.weight[:, :8])


def test_random_reinit_rates(digits):
    train, _ = digits
    m = netfix.models.build("mlp", train.input_shape, 10, hidden=(256,), seed=0)
    ch = _changed(m, fg.RandomReinit(keep=0.5, keep_output=0.75)(m, seed=0))
    assert abs(ch["body.1.weight"] - 0.5) < 0.02
    assert abs(ch["fc.weight"] - 0.25) < 0.05


def test_imp_prunes_rewinds_and_constrains(digits):
    train, _ = digits
    init = netfix.models.build("mlp", train.input_shape, 10, hidden=(32,), seed=0)
    trained = netfix.train(init, train, epochs=3, seed=0, progress=False).model
    op = fg.MagnitudeRewind(keep=0.3)
    op.begin(init, seed=0)
    out = op(trained, seed=0)
    w, w_init = out.body[1].weight, init.body[1].weight
    kept = w != 0
    assert abs(float(kept.float().mean()) - 0.3) < 0.01
    assert abs(float((out.fc.weight != 0).float().mean()) - 0.65) < 0.02  # output layer prunes half as many
    assert torch.equal(w[kept], w_init[kept])  # rewound to init
    # the kept weights are the largest of the trained ones
    tw = trained.body[1].weight.detach().abs()
    assert float(tw[kept].min()) >= float(tw[~kept].max()) - 1e-7
    with torch.no_grad():
        out.body[1].weight.add_(1.0)
    op.constrain(out)
    assert torch.equal(out.body[1].weight != 0, kept)
    assert abs(op.sparsity() - 0.7) < 0.05


def test_shrink_perturb_formula(trained):
    out = fg.ShrinkPerturb(shrink=0.5, noise=0.0)(trained, seed=0)
    assert torch.allclose(out.fc.weight, 0.5 * trained.fc.weight)


def test_targeted_hits_weights_of_low_margin_examples(trained, digits):
    train, _ = digits
    out = fg.TargetedReinit(fraction=0.1, reinit=0.2)(trained, seed=0, data=train)
    ch = _changed(trained, out)
    assert all(abs(v - 0.2) < 0.02 for k, v in ch.items() if k.endswith("weight"))
    # the low-margin examples lose more accuracy than the rest
    margins = fg.label_margins(trained, train)
    order = margins.argsort()
    k = len(train) // 10
    hard, easy = train.subset(order[:k]), train.subset(order[k:])
    acc = netfix.evaluation.accuracy
    assert acc(trained, hard) - acc(out, hard) > acc(trained, easy) - acc(out, easy)


def test_label_margins_sign(trained, digits):
    train, _ = digits
    m = fg.label_margins(trained, train)
    pred = netfix.evaluation.predict(trained, train).argmax(1)
    assert torch.equal(m > 0, pred == train.y)


def test_operator_errors(trained):
    with pytest.raises(netfix.errors.UnknownNameError, match="operator.*llf"):
        fg.operator("nope")
    with pytest.raises(netfix.errors.UnknownNameError, match="option.*keep"):
        fg.operator("ke:kep=0.5")
    with pytest.raises(ConfigError, match="keep"):
        fg.operator("ke:keep=1.5")
    with pytest.raises(ConfigError, match="noise"):
        fg.ShrinkPerturb(noise=-1)
    with pytest.raises(DataError, match="data"):
        fg.operator("targeted")(trained)
    with pytest.raises(ModelError, match="Linear"):
        fg.operator("llf")(nn.Sequential(nn.Flatten(), nn.BatchNorm1d(64)))


def test_the_operators_are_one_registry_read_like_the_others():
    assert isinstance(fg.OPERATORS, Registry)
    assert fg.operators() == fg.OPERATORS.names() == sorted(ALL) and fg.OPERATORS.get("ke") is fg.KernelReinit


def test_netfix_forgetting_is_an_alias_of_the_family_folder():
    import netfix.forgetting as alias

    assert alias.__all__ and all(getattr(alias, name) is getattr(fg, name) for name in alias.__all__)


def test_schedule_runs_generations_and_logs_them(noisy, mlp, digits):
    _, test = digits
    sched = fg.ForgetRelearn("llf", generations=3, epochs_per_generation=2, monitor=test)
    out = netfix.train(mlp, noisy.train, schedule=sched, seed=0, progress=False)
    gens = [h for h in out.history if "train_acc" in h]
    assert [h["generation"] for h in gens] == [1, 2, 3]
    assert all("monitor_acc" in h for h in gens) and "train_acc_after_forgetting" in gens[1]
    assert len([h for h in out.history if "epoch" in h]) == 6
    assert out.config["schedule"]["operator"] == "llf" and out.config["epochs"] == 6
    again = netfix.train(mlp, noisy.train, schedule=fg.ForgetRelearn("llf", 3, 2, monitor=test), seed=0,
                         progress=False)
    assert same_weights(out.model, again.model)


def test_schedule_without_restart_is_one_cosine(noisy, mlp):
    out = netfix.train(mlp, noisy.train, schedule=fg.ForgetRelearn("llf", 2, 2, restart_lr=False),
                       lr_schedule="cosine", seed=0, progress=False)
    lrs = [h["lr"] for h in out.history if "lr" in h]
    assert lrs == sorted(lrs, reverse=True) and lrs[-1] < 0.05 * 1e-3


def test_imp_schedule_keeps_sparsity(noisy, mlp):
    out = netfix.train(mlp, noisy.train, schedule=fg.ForgetRelearn("imp", 2, 1), seed=0, progress=False)
    assert abs(float((out.model.body[1].weight == 0).float().mean()) - 0.7) < 0.02
    assert [h["sparsity"] for h in out.history if "sparsity" in h][-1] > 0.6


def test_schedule_errors(noisy, mlp):
    with pytest.raises(ConfigError, match="epochs"):
        netfix.train(mlp, noisy.train, epochs=5, schedule=fg.ForgetRelearn("llf", 2, 3))
    with pytest.raises(ConfigError, match="generations"):
        fg.ForgetRelearn("llf", generations=0)
    with pytest.raises(ConfigError, match="schedule"):
        netfix.train(mlp, noisy.train, schedule="llf")


def test_relearn_forget_relearn_repairs_noisy_training(digits):
    """A model that memorised 40 % wrong labels gains test accuracy in a fraction of a from-scratch run."""
    train, test = digits
    s = netfix.scenarios.label_noise(train, test, fraction=0.4, seed=0)
    model = netfix.models.build("mlp", train.input_shape, 10, hidden=(128,), seed=0)
    noisy_model = netfix.train(model, s.train, epochs=60, lr=3e-3, lr_schedule="constant", seed=0, progress=False)
    out = netfix.relearn(noisy_model.model, s.train, method="forget-relearn", operator="shrink-perturb",
                         generations=1, epochs_per_generation=3, seed=0, progress=False)
    acc = netfix.evaluation.accuracy
    assert acc(out.model, test) > acc(noisy_model.model, test) + 2  # measured: 87.2 -> 91.1
    assert netfix.card.of(out.model).recipe["epochs"] == 60  # the model keeps its own recipe for a later retrain


def test_disproportionate_forgetting_noisy_lose_more(digits):
    train, test = digits
    s = netfix.scenarios.label_noise(train, test, fraction=0.2, seed=0)
    noisy_mask = torch.zeros(len(s.train), dtype=torch.bool)
    noisy_mask[torch.as_tensor(s.forget_indices)] = True
    model = netfix.models.build("mlp", train.input_shape, 10, hidden=(256,), seed=0)
    res = fg.disproportionate_forgetting(model, s.train, "random:keep=0.9,keep_output=1.0", noisy_mask,
                                         epochs=40, every=20, lr=1e-2, batch_size=32, progress=False)
    assert len(res["checkpoints"]) == 2 and res["memorised_checkpoints"] >= 1
    assert res["checkpoints"][-1]["noisy"]["acc_before"] > 50  # the noise was memorised
    assert res["ratio"] > 1.5  # and a random reinitialisation takes far more of it than of the clean labels
    with pytest.raises(DataError, match="noisy"):
        fg.disproportionate_forgetting(model, s.train, "llf", noisy_mask[:10], epochs=1)
