"""The gradient engine: batched per-sample output gradients equal the per-sample loop; bases project exactly."""

from __future__ import annotations

import pytest
import torch

import netfix
from netfix.errors import ConfigError, UnknownNameError
from netfix.gradients import flat_grad, output_gradients, output_gradients_loop, param_names
from netfix.jacobian import Basis, output_jacobian
from netfix.methods.ogd import ProjectedSGD

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


def test_flat_grad_concatenates_grads_and_zero_fills_missing_ones():
    model = _models()["mlp"]
    params = list(model.parameters())
    for i, p in enumerate(params[1:], 1):
        p.grad = torch.full_like(p, float(i))
    flat = flat_grad(params)
    assert flat.numel() == sum(p.numel() for p in params)
    assert torch.equal(flat[:params[0].numel()], torch.zeros(params[0].numel()))  # no grad yet: zeros
    assert torch.equal(flat[params[0].numel():params[0].numel() + params[1].numel()], torch.ones(params[1].numel()))


class SharedAndSequence(torch.nn.Module):
    """One nn.Linear applied twice (weights shared) and one applied to a (batch, tokens, features) input: neither
    can be factored per sample, so both must fall back to dense rows."""

    def __init__(self) -> None:
        super().__init__()
        self.tok = torch.nn.Linear(8, 6)      # on (B, 8, 8): 3-D input
        self.shared = torch.nn.Linear(48, 48)  # called twice
        self.out = torch.nn.Linear(48, 10)     # factored

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.tanh(self.tok(x.reshape(-1, 8, 8))).flatten(1)
        return self.out(torch.tanh(self.shared(torch.tanh(self.shared(h)))))


@pytest.mark.parametrize("name", ["mlp", "lenet", "resnet", "two_branch", "shared"])
@pytest.mark.parametrize("variant", ["gtl", "ave", "all"])
def test_factored_jacobian_equals_the_dense_rows(digits, name, variant):
    model = SharedAndSequence() if name == "shared" else _models()[name]
    data = digits[0].subset(range(7))
    J = output_jacobian(model, data, variant, chunk_size=3)
    G = output_gradients(model, data, variant, chunk_size=3)
    assert torch.allclose(J.dense(), G, atol=1e-6)
    g = torch.Generator().manual_seed(0)
    v, c = torch.randn(G.shape[1], 3, generator=g), torch.randn(G.shape[0], generator=g)
    assert torch.allclose(J.gram(), G @ G.T, atol=1e-4)
    assert torch.allclose(J.matvec(v), G @ v, atol=1e-4)
    assert torch.allclose(J.rmatvec(c), G.T @ c, atol=1e-4)
    p = Basis.from_rows(J).project(v)  # orthogonal to every row (equal to the dense basis's up to rank cut-off)
    assert float((G @ p).abs().max()) < 1e-3 * float(G.norm(dim=1).max() * v.norm(dim=0).max())
    if name == "shared":
        factored = {b[0] for b in J.linear_blocks}  # tok (3-D input) and shared (called twice) stay dense
        assert "tok.weight" not in factored and "shared.weight" not in factored
    if name == "mlp":
        assert not J.dense_blocks and sum(A.numel() + D.numel() for *_, A, D in J.linear_blocks) < G.numel()


def test_factored_false_keeps_every_block_dense(digits):
    J = output_jacobian(_models()["mlp"], digits[0].subset(range(4)), factored=False)
    assert not J.linear_blocks and len(J.dense_blocks) == 1


def test_basis_extends_a_factored_memory(digits):
    model = _models()["lenet"]
    a, b = digits[0].subset(range(5)), digits[0].subset(range(5, 9))
    basis = Basis.from_rows(output_jacobian(model, a))
    assert basis.extend(output_jacobian(model, b)) == 4
    G = output_gradients(model, digits[0].subset(range(9)))
    v = torch.randn(G.shape[1], generator=torch.Generator().manual_seed(1))
    assert float((G @ basis.project(v)).abs().max()) < 1e-3 * float(G.norm(dim=1).max() * v.norm())
    assert torch.allclose(basis.U.T @ basis.U, torch.eye(9), atol=1e-4)


def test_projected_sgd_keeps_memory_logits_to_first_order(digits):
    model = _models()["lenet"]
    memory = digits[0].subset(range(20))
    basis = Basis.from_rows(output_jacobian(model, memory))
    before = model(memory.X).gather(1, memory.y[:, None]).detach()
    opt = ProjectedSGD(model.parameters(), basis, lr=1e-3, momentum=0.9)
    batch = digits[0].subset(range(100, 132))
    for _ in range(3):  # momentum accumulates projected gradients only
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(batch.X), (batch.y + 1) % 10).backward()
        opt.step()
    after = model(memory.X).gather(1, memory.y[:, None]).detach()
    assert float((after - before).abs().max()) < 1e-3
    plain = _models()["lenet"]
    sgd = torch.optim.SGD(plain.parameters(), lr=1e-3, momentum=0.9)
    for _ in range(3):
        sgd.zero_grad()
        torch.nn.functional.cross_entropy(plain(batch.X), (batch.y + 1) % 10).backward()
        sgd.step()
    drift = (plain(memory.X).gather(1, memory.y[:, None]).detach() - before).abs().max()
    assert float(drift) > 10 * float((after - before).abs().max())


def test_projected_sgd_refuses_parameters_the_basis_does_not_cover(digits):
    model = _models()["mlp"]
    basis = Basis.from_rows(output_jacobian(model, digits[0].subset(range(4)), params=["fc"]))
    with pytest.raises(ConfigError, match="basis spans vectors of"):
        ProjectedSGD(model.parameters(), basis)
    with pytest.raises(ConfigError, match="lr"):
        ProjectedSGD(model.fc.parameters(), basis, lr=0)


def test_moved_names_are_still_read_from_netfix_gradients():
    import netfix.gradients
    import netfix.jacobian

    assert netfix.gradients.Basis is netfix.jacobian.Basis and netfix.gradients.Jacobian is netfix.jacobian.Jacobian
    assert netfix.gradients.output_jacobian is netfix.jacobian.output_jacobian
    with pytest.raises(AttributeError, match="no_such_name"):
        netfix.gradients.no_such_name  # noqa: B018
