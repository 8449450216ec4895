"""The gradient engine: batched per-sample output gradients equal the per-sample loop; bases project exactly."""

from __future__ import annotations

import pytest
import torch

import netfix
from netfix.errors import ConfigError, UnknownNameError
from netfix.gradients import Basis, flat_grad, output_gradients, output_gradients_loop, param_names, set_flat_grad

from conftest import TwoBranch


def _models():
    return {
        "mlp": netfix.models.build("mlp", (1, 8, 8), 10, hidden=(16,), seed=0),
        "lenet": netfix.models.build("lenet", (1, 8, 8), 10, channels=(2, 4), hidden=(8,), seed=0),
        "resnet": netfix.models.build("resnet", (1, 8, 8), 10, depth=8, width=2, seed=0),
        "two_branch": TwoBranch(),
    }


@pytest.mark.parametrize("name", ["mlp", "lenet", "resnet", "two_branch"])
@pytest.mark.parametrize("variant", ["gtl", "ave", "all"])
def test_batched_gradients_equal_the_per_sample_loop(digits, name, variant):
    model = _models()[name]
    data = digits[0].subset(range(12))
    batched = output_gradients(model, data, variant, chunk_size=5)  # chunks of 5, 5, 2
    loop = output_gradients_loop(model, data, variant)
    rows = 12 * (10 if variant == "all" else 1)
    assert batched.shape == loop.shape == (rows, sum(p.numel() for p in model.parameters()))
    assert torch.allclose(batched, loop, atol=1e-5)


def test_gtl_rows_are_the_true_class_logit_gradients(digits):
    model = _models()["mlp"]
    data = digits[0].subset([0])
    out = model(data.X)[0, int(data.y[0])]
    expected = torch.cat([g.reshape(-1) for g in torch.autograd.grad(out, list(model.parameters()))])
    assert torch.allclose(output_gradients(model, data, "gtl")[0], expected, atol=1e-6)


def test_gradients_use_eval_mode_and_restore_train_mode(digits):
    model = _models()["two_branch"]
    model.train()
    a = output_gradients(model, digits[0].subset(range(4)))
    b = output_gradients(model, digits[0].subset(range(4)))
    assert torch.equal(a, b)  # Dropout off, BatchNorm running statistics: deterministic
    assert model.training and model.bn.num_batches_tracked.item() == 0


def test_parameter_subset_selects_by_module_prefix(digits):
    model = _models()["resnet"]
    names = param_names(model, ["layer3", "fc"])
    assert names and all(n.startswith(("layer3.", "fc.")) for n in names)
    G = output_gradients(model, digits[0].subset(range(3)), params=["fc"])
    assert G.shape == (3, model.fc.weight.numel() + model.fc.bias.numel())


def test_unknown_prefix_and_variant_are_refused(digits):
    model = _models()["mlp"]
    with pytest.raises(ConfigError, match="'head' selects no trainable parameter. Valid module prefixes: body.1"):
        param_names(model, ["fc", "head"])
    with pytest.raises(UnknownNameError, match="unknown variant 'max'"):
        output_gradients(model, digits[0].subset(range(2)), "max")


@pytest.mark.parametrize("rows, dim", [(20, 200), (200, 20)])  # both sides of the Gram matrix
def test_basis_is_orthonormal_and_projection_is_orthogonal(rows, dim):
    g = torch.Generator().manual_seed(0)
    G = torch.randn(rows, dim, generator=g)
    b = Basis.from_rows(G)
    assert b.rank == min(rows, dim)
    assert torch.allclose(b.U.T @ b.U, torch.eye(b.rank), atol=1e-4)
    v = torch.randn(dim, generator=g)
    p = b.project(v)
    scale = G.norm(dim=1).max() * v.norm()
    assert float((G @ p).abs().max() / scale) < 1e-4
    assert torch.allclose(b.project(p), p, atol=1e-4)  # a projection: idempotent


def test_basis_drops_rank_deficient_directions_and_extends():
    g = torch.Generator().manual_seed(1)
    A = torch.randn(5, 100, generator=g)
    b = Basis.from_rows(torch.cat([A, 2 * A[:2], A[:1] + A[1:2]]))  # 8 rows, rank 5
    assert b.rank == 5
    assert b.extend(A[:3]) == 0  # nothing new
    assert b.extend(torch.randn(2, 100, generator=g)) == 2
    assert b.rank == 7


def test_flat_grad_round_trip():
    model = _models()["mlp"]
    params = list(model.parameters())
    flat = torch.arange(sum(p.numel() for p in params), dtype=torch.float32)
    set_flat_grad(params, flat)
    assert torch.equal(flat_grad(params), flat)
