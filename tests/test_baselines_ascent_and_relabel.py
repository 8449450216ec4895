"""The unlearning baselines neggrad, neggrad+, random-label, salun and l1-sparse (methods.md §5).

The registry's contract suite (test_methods.py) covers copying, determinism, input checks and BatchNorm models;
these tests pin down what each method itself promises.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from conftest import snapshot
from torch import nn

import netfix
from netfix.errors import ConfigError, DataError, UnknownNameError
from netfix.methods import Context
from netfix.methods.neggrad_plus import cycle
from netfix.methods.random_label import random_labels
from netfix.methods.salun import saliency_mask

# Options that forget digits' class 4 within a second or two on an MLP (the defaults are sized for CIFAR-10).
FORGETS = {
    "neggrad": {"lr": 1e-2, "epochs": 5},
    "neggrad+": {"alpha": 0.9, "epochs": 3, "lr": 1e-2},
    "random-label": {"epochs": 2},
    "salun": {"epochs": 2},
    "l1-sparse": {"epochs": 10},
}
NEED_RETAIN = ["neggrad+", "random-label", "salun", "l1-sparse"]


@pytest.fixture(scope="module")
def class4(digits):
    return netfix.scenarios.class_forget(*digits, cls=4)


@pytest.fixture(scope="module")
def original(trained, class4):
    return netfix.evaluate(trained, scenario=class4)


def _ctx(seed: int = 0) -> Context:
    g = torch.Generator()
    g.manual_seed(seed)
    return Context(device=torch.device("cpu"), generator=g, seed=seed, progress=False, mode="unlearn")


# --- every baseline forgets, keeps the rest, and checks its options ----------------------------------------------

@pytest.mark.parametrize("method", sorted(FORGETS))
def test_lowers_forget_accuracy_on_class_forget(method, trained, class4, original):
    out = netfix.unlearn(trained, class4.forget, class4.retain, method=method, progress=False, **FORGETS[method])
    m = netfix.evaluate(out.model, scenario=class4)
    assert original["forget_acc"] > 95
    assert m["forget_acc"] < original["forget_acc"] - 15
    assert m["test_acc"] > original["test_acc"] - 5  # the other classes survive
    assert out.history and all("loss" in h for h in out.history if "epoch" in h)


@pytest.mark.parametrize("method, option, value", [
    ("neggrad", "lr", 0.0),
    ("neggrad", "momentum", 1.0),
    ("neggrad", "grad_clip", -1.0),
    ("neggrad+", "alpha", 1.5),
    ("neggrad+", "forget_batch_size", 0),
    ("neggrad+", "train_mode", "yes"),
    ("random-label", "epochs", -1),
    ("random-label", "batch_size", 0),
    ("salun", "mask_fraction", 0.0),
    ("salun", "mask_fraction", 1.5),
    ("salun", "weight_decay", -1e-4),
    ("l1-sparse", "gamma", -1e-4),
    ("l1-sparse", "gamma", float("nan")),
])
def test_bad_option_is_refused_naming_it(method, option, value, trained, class4):
    with pytest.raises(ConfigError, match=f"^{option}: expected"):
        netfix.unlearn(trained, class4.forget, class4.retain, method=method, **{option: value})


@pytest.mark.parametrize("method", ["random-label", "salun"])
def test_unknown_label_mode_lists_the_valid_ones(method, trained, class4):
    with pytest.raises(UnknownNameError, match="labels: unknown label mode 'bogus'.*'other', 'uniform'"):
        netfix.unlearn(trained, class4.forget, class4.retain, method=method, labels="bogus")


@pytest.mark.parametrize("method", NEED_RETAIN)
def test_empty_retain_is_refused_naming_it(method, trained, class4):
    empty = (class4.retain.X[:0], class4.retain.y[:0])
    with pytest.raises(DataError, match="^retain: is empty.*Fix:"):
        netfix.unlearn(trained, class4.forget, empty, method=method, epochs=1)


def test_neggrad_needs_no_retain(trained, class4):
    empty = (class4.retain.X[:0], class4.retain.y[:0])
    out = netfix.unlearn(trained, class4.forget, empty, method="neggrad", epochs=1, progress=False)
    assert out.history[0]["forget_loss"] == pytest.approx(-out.history[0]["loss"])


def test_only_unlearn_mode(trained, class4):
    for method in FORGETS:
        assert netfix.methods.get(method).modes == ("unlearn",)
    with pytest.raises(ConfigError, match="cannot relearn"):
        netfix.relearn(trained, class4.forget, method="neggrad")


class _BN1d(nn.Module):
    """BatchNorm1d cannot normalise a lone sample in train mode: the case that crashes naive loops."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Dropout(0.2),
                                  nn.Linear(16, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


@pytest.mark.parametrize("method", sorted(FORGETS))
def test_singleton_forget_batches_on_batchnorm_do_not_crash(method, class4):
    torch.manual_seed(0)
    model = netfix.train(_BN1d(), class4.train, epochs=1, seed=0, progress=False).model
    forget = class4.forget.subset(range(9))  # batch_size 4: batches of 4, 4 and 1
    out = netfix.unlearn(model, forget, class4.retain.subset(range(401)), method=method, epochs=1, batch_size=4,
                         progress=False)
    assert all(torch.isfinite(p).all() for p in out.model.parameters())


# --- neggrad+ -----------------------------------------------------------------------------------------------------

def test_neggrad_plus_cycles_forget_batches(trained, class4):
    # retain 1292 at 128 per step = 11 steps; forget 145 at 64 = 64+64+17 per pass: 3 passes + 2 batches per epoch
    out = netfix.unlearn(trained, class4.forget, class4.retain, method="neggrad+", epochs=2, forget_batch_size=64,
                         progress=False)
    drawn = 3 * 145 + 2 * 64
    assert [h["step"] for h in out.history] == [11, 22]
    assert out.history[0]["forget_passes"] == pytest.approx(drawn / 145)
    assert all(h["forget_loss"] > 0 and h["retain_loss"] > 0 for h in out.history)


def test_cycle_reshuffles_on_every_pass(class4):
    forget = class4.forget.subset(range(10))
    forget = forget.with_labels(torch.arange(10) % 10)  # labels name the samples
    it = cycle(forget, 4, _ctx())
    passes = [torch.cat([next(it)[1] for _ in range(3)]) for _ in range(3)]  # 4 + 4 + 2 per pass
    for p in passes:
        assert sorted(p.tolist()) == list(range(10))  # each pass sees every sample once
    assert not all(torch.equal(passes[0], p) for p in passes[1:])  # in a fresh order


# --- random-label and salun ---------------------------------------------------------------------------------------

def test_random_labels_other_never_keeps_the_true_label(class4):
    relabelled = random_labels(class4.train, "other", _ctx().generator)
    assert (relabelled.y != class4.train.y).all()
    assert set(relabelled.y.tolist()) == set(range(10))
    assert torch.equal(relabelled.X, class4.train.X)
    uniform = random_labels(class4.train, "uniform", _ctx().generator)
    assert 0 < (uniform.y == class4.train.y).float().mean() < 0.2  # about 1 in 10 by chance


def test_random_label_logs_both_passes(trained, class4):
    out = netfix.unlearn(trained, class4.forget, class4.retain, method="random-label", epochs=2, progress=False)
    assert [h["epoch"] for h in out.history] == [1, 2]
    assert out.history[0]["step"] == 2 + 11  # forget 145 / 128, retain 1292 / 128
    assert out.history[0]["forget_loss"] > out.history[0]["retain_loss"]


def test_salun_mask_is_one_global_top_half(trained, class4):
    dev = next(trained.parameters()).device  # the shared model lives where netfix.train put it (CUDA when present)
    masks = saliency_mask(trained, class4.forget, 0.5, 128, dev)
    params = dict(trained.named_parameters())
    total = {n: torch.zeros_like(p) for n, p in params.items()}
    for start in range(0, len(class4.forget), 128):
        X, y = class4.forget.X[start:start + 128].to(dev), class4.forget.y[start:start + 128].to(dev)
        for t, g in zip(total.values(), torch.autograd.grad(F.cross_entropy(trained(X), y), list(params.values()))):
            t += g
    scores = torch.cat([total[n].abs().flatten() for n in masks])
    chosen = torch.cat([masks[n].flatten() for n in masks])
    assert int(chosen.sum()) == round(0.5 * scores.numel())
    assert scores[chosen].min() >= scores[~chosen].max()  # one threshold across all tensors ...
    shares = [float(m.float().mean()) for m in masks.values()]
    assert max(shares) - min(shares) > 0.1  # ... not 50% of each tensor


def test_salun_keeps_non_salient_weights_exactly_at_theta0(trained, class4):
    masks = saliency_mask(trained, class4.forget, 0.5, 128, next(trained.parameters()).device)
    before = snapshot(trained)
    out = netfix.unlearn(trained, class4.forget, class4.retain, method="salun", epochs=2, weight_decay=5e-4,
                         progress=False)
    after = dict(out.model.named_parameters())
    for name, mask in masks.items():
        assert torch.equal(after[name].detach()[~mask], before[name][~mask]), name  # weight decay included
    moved = sum(int((after[n].detach() != before[n])[m].sum()) for n, m in masks.items())
    assert moved > 0.5 * sum(int(m.sum()) for m in masks.values())
    header = out.history[0]
    assert header["phase"] == "mask" and header["salient"] == round(0.5 * header["weights"])


def test_salun_full_mask_equals_random_label(trained, class4):
    opts = {"epochs": 1, "lr": 1e-2, "progress": False}
    rl = netfix.unlearn(trained, class4.forget, class4.retain, method="random-label", **opts).model
    sal = netfix.unlearn(trained, class4.forget, class4.retain, method="salun", mask_fraction=1.0, **opts).model
    for (n, a), b in zip(rl.state_dict().items(), sal.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-6), n


# --- l1-sparse ----------------------------------------------------------------------------------------------------

def test_l1_sparse_penalty_decays_linearly(trained, class4):
    out = netfix.unlearn(trained, class4.forget, class4.retain, method="l1-sparse", epochs=4, gamma=1e-3,
                         progress=False)
    weights = [h["l1_weight"] for h in out.history]
    assert weights == pytest.approx([1e-3, 0.75e-3, 0.5e-3, 0.25e-3])  # γ(1 - t/T), t = 0 … T-1
    assert all(h["loss"] > h["ce"] for h in out.history)  # the penalty is in the loss


def test_l1_sparse_penalty_shrinks_the_weights(trained, class4):
    def l1_norm(gamma: float) -> float:
        out = netfix.unlearn(trained, class4.forget, class4.retain, method="l1-sparse", epochs=2, gamma=gamma,
                             progress=False)
        return out.history[-1]["l1_norm"]

    assert l1_norm(1e-2) < l1_norm(0.0) - 1.0
