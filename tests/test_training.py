"""netfix.train: the one training loop."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import SubsetRandomSampler

import netfix
from netfix.errors import ConfigError, DataError, ModelError, UnknownNameError
from netfix.evaluation import evaluate

from conftest import same_weights, snapshot


def test_train_learns_digits(digits, mlp):
    train, test = digits
    out = netfix.train(mlp, train, epochs=10, lr=3e-3, lr_schedule="constant", seed=0, progress=False)
    assert evaluate(out.model, test=test)["test_acc"] > 90
    assert out.history[-1]["loss"] < out.history[0]["loss"]
    assert [h["epoch"] for h in out.history] == list(range(1, 11))


def test_train_defaults_to_the_models_recipe_as_the_cli_does(digits, mlp, two_branch):
    """netfix.train and `netfix train` use the same recipe for the same model: the architecture's (netfix's own
    models), then the one a trained model carries; explicit arguments override single fields; a foreign model
    gets TrainConfig's defaults."""
    train = digits[0]
    fields = netfix.training.RECIPE_FIELDS
    out = netfix.train(mlp, train, epochs=1, seed=0, progress=False)
    mlp_recipe = netfix.models.recipe("mlp")
    assert {k: out.config[k] for k in mlp_recipe} == mlp_recipe
    again = netfix.train(out.model, train, epochs=1, lr=5e-4, seed=0, progress=False)
    assert again.config["lr"] == 5e-4 and again.config["lr_schedule"] == mlp_recipe["lr_schedule"]
    foreign = netfix.train(two_branch, train, epochs=1, seed=0, progress=False)
    base = netfix.training.TrainConfig()
    assert {k: foreign.config[k] for k in fields} == {k: getattr(base, k) for k in fields}


def test_train_returns_new_model_and_leaves_callers_untouched(digits, mlp):
    before = snapshot(mlp)
    out = netfix.train(mlp, digits[0], epochs=1, seed=0, progress=False)
    assert out.model is not mlp
    assert all(torch.equal(before[k], v) for k, v in mlp.state_dict().items())
    assert mlp.training  # the caller's mode is untouched too


def test_train_is_deterministic_under_seed(digits, two_branch):
    a = netfix.train(two_branch, digits[0], epochs=2, seed=3, progress=False).model
    b = netfix.train(two_branch, digits[0], epochs=2, seed=3, progress=False).model
    c = netfix.train(two_branch, digits[0], epochs=2, seed=4, progress=False).model
    assert same_weights(a, b)
    assert not same_weights(a, c)


def test_train_does_not_disturb_global_rng(digits, mlp):
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    netfix.train(mlp, digits[0], epochs=1, seed=0, progress=False)
    assert torch.equal(torch.rand(3), expected)


def test_train_handles_batchnorm_dropout_and_nonsequential_forward(digits, two_branch):
    train, test = digits
    out = netfix.train(two_branch, train, epochs=5, lr=3e-3, seed=0, progress=False)
    assert evaluate(out.model, test=test)["test_acc"] > 85


def test_train_resnet_with_batchnorm_runs(digits):
    model = netfix.models.build("resnet", (1, 8, 8), 10, depth=8, width=4, seed=0)
    out = netfix.train(model, digits[0].subset(range(200)), epochs=1, batch_size=64, seed=0, progress=False)
    assert out.model.bn1.num_batches_tracked.item() > 0


def test_train_skips_single_sample_batch_on_batchnorm(digits):
    model = netfix.models.build("resnet", (1, 8, 8), 10, depth=8, width=4, seed=0)
    netfix.train(model, digits[0].subset(range(65)), epochs=1, batch_size=64, seed=0, progress=False)


def test_train_records_recipe_and_config(digits, mlp):
    out = netfix.train(mlp, digits[0], epochs=2, lr=5e-3, optimizer="sgd", seed=7, progress=False)
    assert netfix.card.of(out.model).recipe["epochs"] == 2 and netfix.card.of(out.model).recipe["optimizer"] == "sgd"
    assert out.config["seed"] == 7 and out.config["lr"] == 5e-3 and out.config["n"] == len(digits[0])
    assert len(out.config["data_fingerprint"]) == 64
    assert out.method == "train" and out.seconds > 0


def test_train_uses_injected_sampler(digits, mlp):
    sampler = SubsetRandomSampler(list(range(100)), generator=torch.Generator().manual_seed(0))
    out = netfix.train(mlp, digits[0], epochs=1, batch_size=10, sampler=sampler, seed=0, progress=False)
    assert out.history[0]["epoch"] == 1


def test_cosine_schedule_anneals_to_zero(digits, mlp):
    out = netfix.train(mlp, digits[0], epochs=2, lr=1e-2, lr_schedule="cosine", seed=0, progress=False)
    assert out.history[-1]["lr"] < 1e-3


def test_train_accepts_tuple_of_numpy_arrays(digits, mlp):
    train, _ = digits
    out = netfix.train(mlp, (train.X.numpy(), train.y.numpy()), epochs=1, seed=0, progress=False)
    assert out.config["n"] == len(train)


@pytest.mark.parametrize("kwargs, match", [
    ({"epochs": -1}, "epochs"), ({"lr": 0.0}, "lr"), ({"batch_size": 0}, "batch_size"),
    ({"label_smoothing": 1.0}, "label_smoothing"), ({"weight_decay": -1.0}, "weight_decay"),
])
def test_train_refuses_bad_options(digits, mlp, kwargs, match):
    with pytest.raises(ConfigError, match=match):
        netfix.train(mlp, digits[0], **kwargs)


def test_train_refuses_unknown_optimizer(digits, mlp):
    with pytest.raises(UnknownNameError, match="'adam'"):
        netfix.train(mlp, digits[0], optimizer="adagrad")


def test_train_refuses_labels_beyond_model_outputs(digits):
    train, _ = digits
    small = netfix.models.build("mlp", train.input_shape, 5, hidden=(8,), seed=0)
    with pytest.raises(DataError, match=r"labels must lie in \[0, 5\)"):
        netfix.train(small, train, epochs=1)


def test_train_refuses_inputs_the_model_cannot_take(mlp):
    X = torch.rand(20, 1, 28, 28)
    with pytest.raises(ModelError, match=r"could not run on inputs of shape \(1, 28, 28\)"):
        netfix.train(mlp, (X, torch.zeros(20, dtype=torch.long)), epochs=1)


def test_train_refuses_non_module(digits):
    with pytest.raises(ModelError, match="expected a torch.nn.Module"):
        netfix.train("model.pt", digits[0])  # type: ignore[arg-type]


def test_train_refuses_model_without_logit_matrix(digits):
    with pytest.raises(ModelError, match=r"logits of shape \(batch, num_classes\)"):
        netfix.train(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10), torch.nn.Flatten(0)), digits[0])


def test_train_refuses_nan_data(mlp):
    X = torch.rand(10, 1, 8, 8)
    X[3, 0, 0, 0] = float("nan")
    with pytest.raises(DataError, match="NaN"):
        netfix.train(mlp, (X, torch.zeros(10, dtype=torch.long)))


def test_train_refuses_cuda_when_absent(digits, mlp):
    if torch.cuda.is_available():
        pytest.skip("CUDA is present")
    with pytest.raises(ConfigError, match="no CUDA device"):
        netfix.train(mlp, digits[0], device="cuda")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_train_on_cuda_matches_cpu_closely(digits, mlp):
    cpu = netfix.train(mlp, digits[0], epochs=1, seed=0, device="cpu", progress=False).model
    gpu = netfix.train(mlp, digits[0], epochs=1, seed=0, device="cuda", progress=False).model
    for (k, a), b in zip(cpu.state_dict().items(), gpu.state_dict().values()):
        assert torch.allclose(a, b.cpu(), atol=1e-3), k
