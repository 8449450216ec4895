"""Mixed-linear models: the linearisation, exact removal, the Newton-step forget against retraining, the bound."""

from __future__ import annotations

import json
import math

import pytest
import torch

import netfix
from netfix.errors import ConfigError, DataError, ModelError
from netfix.methods.mixed_linear import MixedLinear, UserTraining
from netfix.solvers import conjugate_gradient, lanczos

from conftest import TwoBranch, snapshot

FAST = UserTraining(epochs=5, polish_max_iter=300)


@pytest.fixture(scope="module")
def split(digits):
    train, test = digits
    core_idx, user_idx = torch.arange(0, 200), torch.arange(200, len(train))
    return train.subset(core_idx), train.subset(user_idx), test


@pytest.fixture(scope="module")
def core(split):
    core_data, _, _ = split
    model = netfix.models.build("mlp", core_data.input_shape, 10, hidden=(32, 32), seed=0)
    return netfix.train(model, core_data, epochs=20, lr=3e-3, seed=0, progress=False).model


@pytest.fixture(scope="module")
def fitted(core, split):
    _, user, _ = split
    return MixedLinear(core, ["body.3", "fc"]).fit_user(user, FAST, progress=False)


def test_a_fresh_model_is_its_core_and_the_output_is_core_plus_jvp(core, split):
    _, _, test = split
    ml = MixedLinear(core, ["body.3", "fc"])
    assert torch.equal(ml(test.X), core(test.X))
    w = torch.randn(ml.num_user_parameters) * 1e-2
    moved = ml.with_user_vector(w)
    # the linear model is exact first-order: f(w_c) + J w = the finite difference in the limit, and linear in w
    a, b = moved(test.X) - core(test.X), ml.with_user_vector(2 * w)(test.X) - core(test.X)
    assert torch.allclose(2 * a, b, atol=1e-5)
    shifted = netfix.models.build("mlp", netfix.card.of(core).input_shape, 10, hidden=(32, 32))
    shifted.load_state_dict(core.state_dict())
    with torch.no_grad():
        for (n, p), v in zip([(n, p) for n, p in shifted.named_parameters() if n in ml.lin_names],
                             ml._unflatten(w * 1e-3).values()):
            p += v
    fd = (shifted(test.X) - core(test.X)) / 1e-3
    assert torch.allclose(fd, a, atol=2e-3)


def test_training_reaches_the_optimum_and_keeps_the_core_frozen(core, fitted, split):
    _, user, test = split
    before = snapshot(core)
    ml = fitted.model
    assert fitted.history[-1]["grad_norm"] < 1e-4
    assert all(torch.equal(before[k], v) for k, v in core.state_dict().items())
    assert all(torch.equal(p, q) for p, q in zip(ml.core.parameters(), core.parameters()))
    assert netfix.evaluate(ml, test=test)["test_acc"] > netfix.evaluate(core, test=test)["test_acc"]


def test_remove_user_data_reproduces_the_core_exactly(core, fitted, split):
    _, _, test = split
    removed = fitted.model.remove_user_data()
    assert torch.equal(removed(test.X), core(test.X))
    assert not torch.equal(fitted.model(test.X), core(test.X))  # the original still holds its user weights


def test_forget_matches_retraining_on_the_remaining_data(core, fitted, split):
    _, user, test = split
    forget, retain = user.subset(torch.arange(0, 50)), user.subset(torch.arange(50, len(user)))
    out = fitted.model.forget(forget, retain)
    ref = MixedLinear(core, ["body.3", "fc"]).fit_user(retain, FAST, progress=False).model
    a, b = out.model(test.X).detach(), ref(test.X).detach()
    assert float((a - b).abs().max() / b.abs().max()) < 1e-3
    assert out.n_forget == 50 and out.n_retain == len(retain) and out.cg_iterations >= 1
    assert out.distance_bound == pytest.approx(out.grad_norm / fitted.model.lam)
    # sequential requests: forget again from the result
    again = out.model.forget(retain.subset(torch.arange(0, 30)), retain.subset(torch.arange(30, len(retain))))
    assert again.n_retain == len(retain) - 30


def test_the_bound_shrinks_with_a_tighter_tolerance_and_more_noise(fitted, split):
    _, user, _ = split
    forget, retain = user.subset(torch.arange(0, 50)), user.subset(torch.arange(50, len(user)))
    loose, tight = (fitted.model.forget(forget, retain, tol=t, max_iter=400) for t in (1e-1, 1e-3))
    assert tight.distance_bound < loose.distance_bound
    assert tight.cg_iterations > loose.cg_iterations
    small, large = (fitted.model.forget(forget, retain, tol=1e-2, sigma=s) for s in (1e-3, 1e-2))
    assert small.kl_bound is not None and large.kl_bound < small.kl_bound
    assert loose.kl_bound is None  # no noise: only the distance bound
    noisy = fitted.model.forget(forget, retain, tol=1e-2, sigma=1e-2, seed=3)
    same = fitted.model.forget(forget, retain, tol=1e-2, sigma=1e-2, seed=3)
    assert torch.equal(noisy.model.user_vector(), same.model.user_vector())


def test_a_core_data_preconditioner_gives_the_same_forget_in_fewer_steps(core, fitted, split, tmp_path):
    core_data, user, test = split
    forget, retain = user.subset(torch.arange(0, 50)), user.subset(torch.arange(50, len(user)))
    plain = fitted.model.forget(forget, retain, tol=1e-4, max_iter=400)
    pre = fitted.model.with_preconditioner(core_data, rank=64)
    fast = pre.forget(forget, retain, tol=1e-4, max_iter=400)
    assert fast.cg_iterations < plain.cg_iterations / 2
    a, b = fast.model(test.X).detach(), plain.model(test.X).detach()
    assert float((a - b).abs().max() / b.abs().max()) < 1e-3
    assert pre.precond_vectors.shape == (64, pre.num_user_parameters)
    netfix.save(pre, tmp_path / "pre")
    loaded = netfix.load(tmp_path / "pre")
    assert torch.equal(loaded.precond_vectors, pre.precond_vectors)


def test_conjugate_gradient_solves_a_spd_system():
    g = torch.Generator().manual_seed(0)
    M = torch.randn(30, 30, generator=g)
    A = M @ M.T + 0.5 * torch.eye(30)
    b = torch.randn(30, generator=g)
    x, it, res = conjugate_gradient(lambda v: A @ v, b, tol=1e-6, max_iter=200)
    assert res <= 1e-6 and it <= 200
    assert torch.allclose(A @ x, b, atol=1e-4)
    values, vectors = lanczos(lambda v: A @ v, 30, 30, 5, g, torch.device("cpu"))
    exact = torch.linalg.eigvalsh(A).flip(0)[:5]
    assert torch.allclose(values, exact, rtol=1e-4)
    assert torch.allclose(vectors @ A @ vectors.T, torch.diag(values), atol=1e-3)


def test_unlearn_dispatches_mixed_linear_and_refuses_other_models(trained, fitted, split):
    _, user, _ = split
    forget, retain = user.subset(torch.arange(0, 20)), user.subset(torch.arange(20, len(user)))
    out = netfix.unlearn(fitted.model, forget, retain, method="mixed-linear", progress=False)
    assert isinstance(out.model, MixedLinear) and out.model is not fitted.model
    assert out.history[0]["n_forget"] == 20 and out.history[0]["distance_bound"] > 0
    with pytest.raises(ModelError, match="MixedLinear"):
        netfix.unlearn(trained, forget, retain, method="mixed-linear")
    with pytest.raises(ConfigError, match="sigma"):
        netfix.unlearn(fitted.model, forget, retain, method="mixed-linear", sigma=-1.0)


def test_save_and_load_keep_the_user_weights(fitted, split, tmp_path):
    _, _, test = split
    netfix.save(fitted.model, tmp_path / "ml")
    loaded = netfix.load(tmp_path / "ml")
    assert isinstance(loaded, MixedLinear) and torch.equal(loaded(test.X), fitted.model(test.X))


def test_batchnorm_core_stays_frozen(digits):
    train, _ = digits
    base = netfix.train(TwoBranch(), train, epochs=1, seed=0, progress=False).model
    ml = MixedLinear(base, ["head"]).train()
    assert not ml.core.training and not ml.core.bn.training
    stats = ml.core.bn.running_mean.clone()
    fitted = ml.fit_user(train.subset(torch.arange(100)), UserTraining(epochs=1, polish_max_iter=50), progress=False)
    assert torch.equal(fitted.model.core.bn.running_mean, stats)


@pytest.mark.parametrize("kwargs,error,match", [
    ({"linearize": ["nope"]}, ConfigError, "linearize"),
    ({"lam": 0.0}, ConfigError, "lam"),
    ({"target_scale": -1.0}, ConfigError, "target_scale"),
])
def test_bad_construction_is_refused(core, kwargs, error, match):
    with pytest.raises(error, match=match):
        MixedLinear(core, **kwargs)


def test_bad_data_is_refused_before_work(fitted, split):
    _, user, _ = split
    with pytest.raises(DataError, match="forget"):
        fitted.model.forget((user.X[:0], user.y[:0]), user)
    with pytest.raises(DataError, match="retain"):
        fitted.model.forget(user.subset(torch.arange(5)), (user.X, user.y + 10))
    with pytest.raises(ModelError, match="MixedLinear"):
        MixedLinear(fitted.model)
    with pytest.raises(ConfigError, match="epochs"):
        UserTraining(epochs=0, polish=False)


def test_cli_trains_a_mixed_linear_model_and_forgets_user_samples_only(tmp_path, capsys):
    from netfix.cli import main

    path = tmp_path / "ml"
    assert main(["train", "--data", "digits", "--model-arg", "hidden=32", "--epochs", "5", "--mixed-linear", "fc",
                 "--out", str(path), "--quiet"]) == 0
    capsys.readouterr()
    core = netfix.io.read_meta(path)["meta"]["mixed_linear"]["core_indices"]
    user = sorted(set(range(len(netfix.datasets.load("digits")[0]))) - set(core))
    (tmp_path / "user.txt").write_text("\n".join(map(str, user[:10])))
    assert main(["unlearn", str(path), "--data", "digits", "--forget-indices", str(tmp_path / "user.txt"),
                 "--method", "mixed-linear", "--out", str(tmp_path / "forgot"), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["history"][0]["n_forget"] == 10 and doc["history"][0]["n_retain"] == len(user) - 10
    (tmp_path / "core.txt").write_text(str(core[0]))
    assert main(["unlearn", str(path), "--data", "digits", "--forget-indices", str(tmp_path / "core.txt"),
                 "--method", "mixed-linear", "--quiet"]) == 2
    assert "core data" in capsys.readouterr().err


def test_benches_run_mixed_linear_rows():
    from netfix import bench

    doc = bench.run("unlearn", quick=True, data="digits", progress=False, methods="mixed-linear",
                    scenario="random_forget")
    by = {r["method"]: r for r in doc["rows"]}
    assert {"retrain", "mixed-linear", "mixed-linear (ref)", "mixed-linear (original)"} <= set(by)
    assert by["mixed-linear (ref)"]["gap"] == 0 and by["mixed-linear"]["gap"] < 1.0
    assert [r["reference"] for r in doc["raw"] if r["method"] == "mixed-linear"] == ["retrain-linear"]
    assert by["mixed-linear"]["rte_network"] > 0
    assert by["mixed-linear"]["steps"] == 0 and by["mixed-linear (ref)"]["steps"] is not None
    assert by["retrain"]["steps"] > 0 and by["retrain"]["steps_pct"] == 100.0
    doc = bench.run("mixed-linear", quick=True, data="digits", progress=False)
    methods = [(r["request"], r["method"]) for r in doc["rows"]]
    assert methods[:3] == [("", "core"), ("", "finetune-train"), ("", "mixed-linear-train")]
    core = doc["rows"][0]  # 10 epochs (quick) on the core tenth, the MLP recipe's batches
    assert core["steps"] == 10 * math.ceil(doc["core_size"] / netfix.models.recipe("mlp")["batch_size"])
    assert {m for m in methods[3:]} == {(q, m) for q in ("1%", "10%", "class")
                                        for m in ("mixed-linear-forget", "retrain-linear", "retrain-linear-sgd")}
    for r in doc["rows"]:
        if r["method"] == "mixed-linear-forget":
            assert r["logit_rel_diff"] < 1e-2 and r["bound"] > 0 and r["rte_sgd"] > 0
            assert r["steps"] == 0  # a Newton step: its work is cg_iterations
        if r["method"] == "retrain-linear-sgd":  # 5 SGD epochs (quick) before the Newton step
            assert r["steps"] >= 5
        if r["method"] == "retrain-linear-sgd":  # the paper's SGD recipe ends at the same optimum
            assert r["logit_rel_diff"] < 1e-2
    assert doc["remove_user_data_exact"] is True
