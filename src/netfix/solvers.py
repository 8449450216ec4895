"""Iterative solvers for symmetric operators given only as matrix-vector products (Hessian-vector products, say):
conjugate gradient for A x = b and Lanczos for the top eigenpairs. Pure torch, nothing netfix-specific; the
mixed-linear family (:mod:`netfix.methods.mixed_linear`) solves its Newton steps and builds its preconditioner
with them.

Example:
    >>> A = torch.tensor([[4.0, 1.0], [1.0, 3.0]])
    >>> x, iterations, residual = conjugate_gradient(lambda v: A @ v, torch.tensor([1.0, 2.0]), tol=1e-6)
    >>> torch.allclose(A @ x, torch.tensor([1.0, 2.0]), atol=1e-5)
    True
"""

from __future__ import annotations

from collections.abc import Callable

import torch

__all__ = ["conjugate_gradient", "lanczos"]


def conjugate_gradient(matvec: Callable[[torch.Tensor], torch.Tensor], b: torch.Tensor, *, tol: float = 1e-4,
                       max_iter: int = 200,
                       precondition: "Callable[[torch.Tensor], torch.Tensor] | None" = None
                       ) -> tuple[torch.Tensor, int, float]:
    """Solve A x = b for a symmetric positive definite A given as ``matvec``, from x = 0, until the relative
    residual ‖b − A x‖ / ‖b‖ ≤ ``tol`` or ``max_iter`` iterations; ``precondition`` applies M⁻¹ (an SPD
    approximation of A⁻¹). Returns (x, iterations, relative residual)."""
    x = torch.zeros_like(b)
    r = b.clone()
    b_norm = float(b.norm())
    if b_norm == 0:
        return x, 0, 0.0
    z = precondition(r) if precondition is not None else r
    p = z.clone()
    rz = float(r @ z)
    it, res = 0, 1.0
    for it in range(1, max_iter + 1):
        Ap = matvec(p)
        curvature = float(p @ Ap)
        if not curvature > 0 or rz == 0:  # converged to the float floor (p or r is 0): no further step exists
            it -= 1
            break
        alpha = rz / curvature
        x += alpha * p
        r -= alpha * Ap
        res = float(r.norm()) / b_norm
        if res <= tol:
            break
        z = precondition(r) if precondition is not None else r
        rz_new = float(r @ z)
        p = z + (rz_new / rz) * p
        rz = rz_new
    return x, it, res


def lanczos(matvec: Callable[[torch.Tensor], torch.Tensor], dim: int, steps: int, rank: int,
            generator: torch.Generator, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``rank`` largest eigenpairs of a symmetric operator by ``steps`` Lanczos iterations with full
    reorthogonalisation: (values (rank,), vectors (rank, dim), orthonormal rows)."""
    steps = min(steps, dim)
    Q = torch.zeros(steps, dim, device=device)
    alphas: list[float] = []
    betas: list[float] = []
    q = torch.randn(dim, generator=generator).to(device)
    q /= q.norm()
    for j in range(steps):
        Q[j] = q
        z = matvec(q)
        alphas.append(float(q @ z))
        for _ in range(2):  # twice is enough in float32
            z -= Q[:j + 1].T @ (Q[:j + 1] @ z)
        beta = float(z.norm())
        if j == steps - 1 or beta <= 1e-7 * abs(alphas[-1]):
            break
        betas.append(beta)
        q = z / beta
    m = len(alphas)
    T = torch.diag(torch.tensor(alphas, dtype=torch.float64))
    if m > 1:
        off = torch.tensor(betas[:m - 1], dtype=torch.float64)
        T += torch.diag(off, 1) + torch.diag(off, -1)
    values, vectors = torch.linalg.eigh(T)
    top = values.argsort(descending=True)[:rank]
    return values[top].float().to(device), vectors[:, top].T.float().to(device) @ Q[:m]
