"""Shared fixtures: tiny real data (scikit-learn's digits) and small models, so the suite stays fast."""

from __future__ import annotations

import os

import pytest
import torch
from torch import nn

import netfix


@pytest.fixture(autouse=True)
def _two_threads():
    """Keep timings and results comparable with CI's 2 cores."""
    torch.set_num_threads(2)


@pytest.fixture(autouse=True, scope="session")
def _private_ledger(tmp_path_factory):
    """Commands append to the ledger at $NETFIX_HOME: keep the suite's records (module-scoped fixtures' included) in
    a temporary folder, never in ~/.netfix. Tests that need a ledger of their own set NETFIX_HOME themselves."""
    old = os.environ.get("NETFIX_HOME")
    os.environ["NETFIX_HOME"] = str(tmp_path_factory.mktemp("netfix-home"))
    yield
    if old is None:
        os.environ.pop("NETFIX_HOME", None)
    else:
        os.environ["NETFIX_HOME"] = old


@pytest.fixture(scope="session")
def digits():
    return netfix.datasets.load("digits")


@pytest.fixture
def mlp(digits):
    train, _ = digits
    return netfix.models.build("mlp", train.input_shape, 10, hidden=(32,), seed=0)


@pytest.fixture(scope="session")
def trained(digits):
    """An MLP trained on digits (shared, read-only: tests must not change it)."""
    train, _ = digits
    model = netfix.models.build("mlp", train.input_shape, 10, hidden=(64,), seed=0)
    return netfix.train(model, train, epochs=15, lr=3e-3, lr_schedule="constant", seed=0, progress=False).model


class TwoBranch(nn.Module):
    """A user model with BatchNorm, Dropout and a non-sequential forward."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.drop = nn.Dropout(0.2)
        self.skip = nn.Linear(64, num_classes)
        self.head = nn.Linear(4 * 64, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.bn(self.conv(x))).flatten(1)
        return self.head(self.drop(h)) + self.skip(x.flatten(1))


@pytest.fixture(scope="session")
def digits_resnet(digits):
    """A small BatchNorm ResNet trained on digits (shared, read-only: tests must not change it)."""
    train, _ = digits
    model = netfix.models.build("resnet", train.input_shape, 10, depth=8, width=8, seed=0)
    return netfix.train(model, train, epochs=4, seed=0, progress=False, **netfix.models.recipe("resnet")).model


@pytest.fixture
def two_branch():
    torch.manual_seed(0)
    return TwoBranch()


def same_weights(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k].cpu(), sb[k].cpu()) for k in sa)


def snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def ogd_repair(faulty, s):
    """Unlearn a fault's samples with OGD, then relearn their corrected labels protecting the rest; returns the
    repaired model's metrics on the scenario (fault_acc: % of the fault fixed)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        forgotten = netfix.unlearn(faulty, s.forget, s.retain, method="ogd", progress=False).model
        fixed = netfix.relearn(forgotten, s.corrected, protect=s.retain, method="ogd", progress=False).model
    return netfix.evaluate(fixed, scenario=s)
