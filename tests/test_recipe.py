"""The user's own recipe: a training function of their own (train_fn) for the retrain reference and forget-relearn,
augmenting transforms read through a streamed dataset, and mixed precision in netfix's one training loop."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

import netfix
from netfix.errors import ConfigError, DivergedError, ModelError, UnknownNameError
from netfix.evaluation import accuracy


class Shifted(Dataset):
    """A user's augmenting training set: each read shifts the 8x8 digit by up to one pixel (numpy's generator)."""

    def __init__(self, data):
        self.X, self.y = data.X.numpy(), data.y.numpy()

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        dy, dx = np.random.randint(-1, 2, size=2)
        return torch.from_numpy(np.roll(self.X[i], (int(dy), int(dx)), axis=(1, 2)).copy()), int(self.y[i])


class Recipe:
    """A user's own loop: SGD with Nesterov momentum and a step decay, over their own DataLoader; counts calls."""

    def __init__(self, epochs=6):
        self.epochs, self.calls, self.sizes = epochs, 0, []

    def __call__(self, model, dataset):
        self.calls += 1
        self.sizes.append(len(dataset))
        opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True)
        sched = torch.optim.lr_scheduler.StepLR(opt, step_size=3, gamma=0.3)
        loader = DataLoader(dataset, batch_size=32, shuffle=True)
        for _ in range(self.epochs):
            for x, y in loader:
                opt.zero_grad()
                nn.functional.cross_entropy(model(x), y).backward()
                opt.step()
            sched.step()
        return model


@pytest.fixture(scope="module")
def request_(digits):
    train, test = digits
    model = netfix.train(netfix.models.build("mlp", train.input_shape, 10, seed=0), train, epochs=8, seed=0,
                         progress=False).model
    s = netfix.scenarios.class_forget(train, test, cls=4)
    return model, s


def _flat(m):
    return torch.cat([p.detach().flatten() for p in m.parameters()])


def test_retrain_with_the_users_own_loop_is_their_reference(request_):
    model, s = request_
    recipe = Recipe()
    a = netfix.unlearn(model, s.forget, s.retain, method="retrain", train_fn=recipe, seed=1)
    b = netfix.unlearn(model, s.forget, s.retain, method="retrain", train_fn=Recipe(), seed=1)
    ours = netfix.unlearn(model, s.forget, s.retain, method="retrain", seed=1)
    assert recipe.calls == 1 and recipe.sizes == [len(s.retain)]  # one call, on what remains
    assert torch.equal(_flat(a.model), _flat(b.model))  # seeded: the user's loop repeats exactly
    assert not torch.equal(_flat(a.model), _flat(ours.model))  # and it is theirs, not netfix's
    assert accuracy(a.model, s.forget) < 5 and accuracy(a.model, s.test) > 85  # a real reference: forgot, kept
    assert a.config["train_fn"].endswith("Recipe") and a.history[0]["n"] == len(s.retain)
    assert netfix.card.of(a.model).recipe == netfix.card.of(model).recipe  # the model's own recipe is kept
    assert _flat(model).equal(_flat(request_[0]))  # the caller's model is untouched


def test_forget_relearn_relearns_each_generation_with_the_users_loop(request_):
    model, s = request_
    recipe = Recipe(epochs=2)
    out = netfix.unlearn(model, s.forget, s.retain, method="forget-relearn", generations=2, train_fn=recipe)
    assert recipe.calls == 2
    assert accuracy(out.model, s.forget) < 10 and accuracy(out.model, s.test) > 80


def test_finetune_continues_from_the_trained_weights_with_the_users_loop(request_):
    model, s = request_
    recipe = Recipe(epochs=1)
    out = netfix.unlearn(model, s.forget, s.retain, method="finetune", train_fn=recipe)
    assert recipe.calls == 1 and recipe.sizes == [len(s.retain)]
    assert accuracy(out.model, s.test) > 85  # one epoch from the trained weights, not from scratch


def test_a_streamed_augmenting_set_reaches_the_users_loop(request_, digits):
    model, _ = request_
    train, _ = digits
    data = netfix.data.as_data(Shifted(train), "train", stream=True)
    seen = []

    def recipe(m, dataset):
        x, y = dataset[0]
        seen.append(x)
        return Recipe(epochs=1)(m, dataset)

    request = netfix.data.Request(data, np.arange(40))
    netfix.unlearn(model, request, method="retrain", train_fn=recipe, seed=0)
    netfix.unlearn(model, request, method="retrain", train_fn=recipe, seed=0)
    assert seen[0].shape == (1, 8, 8) and torch.equal(seen[0], seen[1])  # the transform ran, under the run's seed


def test_train_fn_is_refused_where_it_cannot_serve(request_):
    model, s = request_
    with pytest.raises(ConfigError, match=r"train_fn: method 'ogd' does not train.*finetune, forget-relearn, retrain"):
        netfix.unlearn(model, s.forget, s.retain, method="ogd", train_fn=Recipe())
    with pytest.raises(ConfigError, match="train_fn: expected a function"):
        netfix.unlearn(model, s.forget, s.retain, method="retrain", train_fn="my_module.train")
    with pytest.raises(ModelError, match="train_fn: returned a str"):
        netfix.unlearn(model, s.forget, s.retain, method="retrain", train_fn=lambda m, d: "done")
    other = netfix.models.build("mlp", (1, 8, 8), 10, hidden=(7,), seed=0)
    with pytest.raises(ModelError, match="do not fit the one it was given"):
        netfix.unlearn(model, s.forget, s.retain, method="retrain", train_fn=lambda m, d: other)

    def diverge(m, d):
        with torch.no_grad():
            next(m.parameters()).fill_(float("nan"))

    with pytest.raises(DivergedError, match="train_fn: left NaN"):
        netfix.unlearn(model, s.forget, s.retain, method="retrain", train_fn=diverge)


def test_bf16_mixed_precision_trains_and_the_reference_repeats_it(digits):
    train, test = digits
    model = netfix.models.build("mlp", train.input_shape, 10, seed=0)
    fp32 = netfix.train(model, train, epochs=6, seed=0, progress=False).model
    bf16 = netfix.train(model, train, epochs=6, seed=0, precision="bf16", progress=False).model
    assert netfix.card.of(bf16).recipe["precision"] == "bf16"
    assert all(p.dtype == torch.float32 for p in bf16.parameters())  # weights stay fp32
    assert not torch.equal(_flat(fp32), _flat(bf16))  # the forward really ran in bf16
    assert abs(accuracy(bf16, test) - accuracy(fp32, test)) < 3 and accuracy(bf16, test) > 85
    s = netfix.scenarios.class_forget(train, test, cls=2)
    ref = netfix.unlearn(bf16, s.forget, s.retain, method="retrain", epochs=2)
    assert netfix.card.of(ref.model).recipe["precision"] == "bf16"  # the reference repeated the recipe
    with pytest.raises(UnknownNameError, match="precision: unknown precision 'fp16'"):
        netfix.train(model, train, epochs=1, precision="fp16")
