"""The method registry, unlearn/relearn dispatch, and one contract suite run over every registered method."""

from __future__ import annotations

import pytest
import torch

import netfix
from netfix.errors import ConfigError, DataError, ModelError, UnknownNameError

from netfix.methods.editing import default_edit_params
from netfix.methods.mixed_linear import MixedLinear, UserTraining
from netfix.registry import Registry

from conftest import same_weights, snapshot

METHODS = netfix.methods.available()


def fast(method, digits):
    """The method's quick-run options (few epochs: ``netfix.methods.get(method).fast``), plus held-out data (the
    digits test split) for methods that read it."""
    spec = netfix.methods.get(method)
    return {**spec.fast, **({"heldout": digits[1]} if spec.heldout else {})}


@pytest.fixture(scope="module")
def scenario(digits):
    return netfix.scenarios.random_forget(*digits, fraction=0.1, seed=0)


_PREPARED: dict[tuple[str, int], tuple[torch.nn.Module, torch.nn.Module]] = {}  # keeps the key model alive


def prepared(method, model, scenario):
    """The model a method works on: itself, or for a method that needs models built its way (mixed-linear), one
    built so from it (cached per model)."""
    spec = netfix.methods.get(method)
    if spec.model_type is None:
        return model
    key = (method, id(model))
    if key not in _PREPARED:
        last = default_edit_params(model)[-1:]
        _PREPARED[key] = (model, MixedLinear(model, last).fit_user(
            scenario.train, UserTraining(epochs=1, polish_max_iter=50), progress=False).model)
    return _PREPARED[key][1]


def test_registry_lists_retrain():
    assert "retrain" in METHODS
    spec = netfix.methods.get("retrain")
    assert spec.name == "retrain" and "unlearn" in spec.modes and "relearn" in spec.modes and spec.summary


def test_a_method_keeps_its_quick_and_bench_options_and_they_are_checked():
    assert netfix.methods.get("retrain").fast == {"epochs": 1}
    assert netfix.methods.get("ogd").bench == {"objective": "ascent"}
    config = netfix.methods.get("retrain").config
    with pytest.raises(UnknownNameError, match="unknown option 'epoch'"):
        netfix.methods.register("bad-fast", config, fast={"epoch": 1})(lambda *a: [])
    with pytest.raises(ConfigError, match="already registered"):
        netfix.methods.register("retrain", config)(lambda *a: [])
    assert "bad-fast" not in netfix.methods.available()


def test_unknown_method_lists_valid_ones(trained, scenario):
    with pytest.raises(UnknownNameError, match="unknown method 'nope'.*'retrain'"):
        netfix.unlearn(trained, scenario.forget, scenario.retain, method="nope")
    with pytest.raises(UnknownNameError, match="'retrain'"):
        netfix.methods.get("nope")


def test_unknown_option_lists_valid_ones(trained, scenario):
    with pytest.raises(UnknownNameError, match="unknown option 'epocs'.*'epochs'"):
        netfix.unlearn(trained, scenario.forget, scenario.retain, method="retrain", epocs=3)


# --- the contract every registered method keeps -----------------------------------------------------------------

@pytest.mark.parametrize("method", METHODS)
def test_contract_returns_new_model_and_leaves_callers_untouched(method, trained, scenario, digits):
    trained = prepared(method, trained, scenario)
    before = snapshot(trained)
    out = netfix.unlearn(trained, scenario.forget, scenario.retain, method=method, progress=False,
                         **fast(method, digits))
    assert out.model is not trained
    assert all(torch.equal(before[k], v) for k, v in trained.state_dict().items())
    assert out.method == method and out.seconds >= 0 and isinstance(out.history, list)
    assert out.config["seed"] == 0 and "device" in out.config


@pytest.mark.parametrize("method", METHODS)
def test_contract_deterministic_under_seed(method, trained, scenario, digits):
    trained = prepared(method, trained, scenario)
    run = lambda seed: netfix.unlearn(trained, scenario.forget, scenario.retain, method=method, seed=seed,  # noqa: E731
                                      progress=False, **fast(method, digits)).model
    assert same_weights(run(1), run(1))


@pytest.mark.parametrize("method", METHODS)
def test_contract_refuses_bad_input_before_work(method, trained, scenario):
    trained = prepared(method, trained, scenario)
    with pytest.raises(DataError, match="forget: the set is empty"):
        netfix.unlearn(trained, (torch.zeros(0, 1, 8, 8), torch.zeros(0, dtype=torch.long)), scenario.retain,
                       method=method)
    with pytest.raises(DataError, match="retain: labels must lie in"):
        netfix.unlearn(trained, scenario.forget, (scenario.retain.X, scenario.retain.y + 10), method=method)
    with pytest.raises(ModelError, match="could not run on inputs"):
        netfix.unlearn(trained, (torch.rand(5, 3, 8, 8), torch.zeros(5, dtype=torch.long)),
                       (torch.rand(5, 3, 8, 8), torch.zeros(5, dtype=torch.long)), method=method)
    with pytest.raises(DataError, match="retain: inputs have shape"):
        netfix.unlearn(trained, scenario.forget, (torch.rand(5, 1, 4, 4), torch.zeros(5, dtype=torch.long)),
                       method=method)


@pytest.mark.parametrize("method", METHODS)
def test_contract_works_on_batchnorm_model(method, digits, scenario, two_branch):
    base = prepared(method, netfix.train(two_branch, scenario.train, epochs=1, seed=0, progress=False).model,
                    scenario)
    out = netfix.unlearn(base, scenario.forget, scenario.retain, method=method, progress=False,
                         **fast(method, digits))
    assert netfix.evaluate(out.model, test=digits[1])["test_acc"] > 10


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("method", METHODS)
def test_contract_runs_on_cuda(method, trained, scenario, digits):
    trained = prepared(method, trained, scenario)
    out = netfix.unlearn(trained, scenario.forget, scenario.retain, method=method, device="cuda", progress=False,
                         **fast(method, digits))
    assert next(out.model.parameters()).device.type == "cuda"


# --- retrain, the reference ------------------------------------------------------------------------------------

def test_retrain_repeats_the_models_recipe(trained, scenario):
    out = netfix.unlearn(trained, scenario.forget, scenario.retain, method="retrain", progress=False)
    assert out.config["epochs"] is None  # taken from the recipe ...
    assert len(out.history) == netfix.card.of(trained).recipe["epochs"]  # ... which trained 15 epochs
    assert netfix.card.of(out.model).recipe["epochs"] == netfix.card.of(trained).recipe["epochs"]


def test_retrain_options_override_the_recipe(trained, scenario):
    out = netfix.unlearn(trained, scenario.forget, scenario.retain, method="retrain", epochs=2, progress=False)
    assert len(out.history) == 2


def test_retrain_without_class_forgets_it(digits, trained):
    s = netfix.scenarios.class_forget(*digits, cls=4)
    out = netfix.unlearn(trained, s.forget, s.retain, method="retrain", progress=False)
    m = netfix.evaluate(out.model, scenario=s)
    assert m["ua"] == 100.0 and m["fault_rate"] == 0.0 and m["test_acc"] > 90


def test_relearn_retrain_fixes_a_mislabel(digits):
    s = netfix.scenarios.mislabel(*digits, source=7, target=1)
    model = netfix.models.build("mlp", (1, 8, 8), 10, hidden=(64,), seed=0)
    faulty = netfix.train(model, s.train, epochs=15, lr=3e-3, seed=0, progress=False).model
    fixed = netfix.relearn(faulty, s.corrected, protect=s.retain, method="retrain", progress=False).model
    before, after = netfix.evaluate(faulty, scenario=s), netfix.evaluate(fixed, scenario=s)
    assert before["fault_rate"] > 80 and after["fault_rate"] < 10 and after["fault_acc"] > 80


def test_relearn_refuses_method_without_relearn_mode(trained, scenario, monkeypatch):
    from netfix import methods

    spec = methods.get("retrain")
    registry = Registry("method", "method")  # every method, and one that cannot relearn
    for name, method in methods._METHODS.items():
        registry.add(name, method)
    registry.add("unlearn-only", methods.Method("unlearn-only", spec.config, spec.run, ("unlearn",), "test"))
    monkeypatch.setattr(methods, "_METHODS", registry)
    with pytest.raises(ConfigError, match="cannot relearn"):
        netfix.relearn(trained, scenario.forget, method="unlearn-only")
