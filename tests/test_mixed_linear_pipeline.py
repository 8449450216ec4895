"""netfix.methods.mixed_linear.train_mixed_linear: the one mixed-linear training pipeline (core, then user weights)."""

from __future__ import annotations

import pytest
import torch

import netfix
from netfix.methods.mixed_linear import UserTraining, core_user_split, train_mixed_linear


@pytest.fixture(scope="module")
def run(digits):
    train, _ = digits
    stages: list[str] = []

    def measure(stage, fn):
        stages.append(stage)
        return fn()

    model = netfix.models.build("mlp", train.input_shape, 10, hidden=(32,), seed=0)
    out = train_mixed_linear(model, train.subset(range(600)), linearize=["fc"], core_fraction=0.2, core_epochs=2,
                             user_only=train.subset(range(600, 650)), rank=8, seed=0, progress=False,
                             user_training=UserTraining(epochs=2, polish_max_iter=50), measure=measure)
    return out, stages


def test_the_core_is_a_stratified_share_and_user_only_data_is_never_core(run, digits):
    train, _ = digits
    out, _ = run
    data = train.subset(range(600))
    core_idx, user_idx = core_user_split(data, 0.2, 0)
    assert torch.equal(out.core_indices, core_idx) and torch.equal(out.user_indices, user_idx)
    assert len(out.core_data) == len(core_idx) and len(out.user_data) == len(user_idx) + 50
    assert torch.equal(out.user_data.y[-50:], train.y[600:650])


def test_the_stages_run_in_order_and_the_fresh_model_keeps_zero_user_weights(run):
    out, stages = run
    assert stages == ["core", "preconditioner", "user"]
    assert float(out.fresh.user_vector().abs().max()) == 0 and float(out.model.user_vector().abs().max()) > 0
    assert out.fresh.precond_values.numel() == 8 and out.core.model is not out.model.core
