"""The gradient engine: per-sample gradients of model outputs, orthonormal bases, projections.

OGD (methods.md §1) protects what a model does on memory points by keeping updates orthogonal to the gradients of
their logits. This module computes those gradients for a batch of samples at once with ``torch.func`` (``vmap``
over ``grad`` / ``jacrev`` of a ``functional_call``), in eval mode (BatchNorm uses its running statistics, Dropout
is off), chunked to bound memory, for any parameter subset. Variants (one row per sample unless noted):

- ``gtl``: gradient of the true-class logit f_y(x) — the cheapest, used by the OGD debugging paper;
- ``ave``: gradient of the mean logit (1/K) Σ_k f_k(x);
- ``all``: gradient of every logit — K rows per sample.

:class:`Basis` holds the span of those rows and projects vectors off it: g − U(Uᵀg), computed through the M×M
Gram matrix (rank-deficient directions dropped). Other methods (mixed-linear forgetting, Fisher) reuse :func:`param_names` and the flat-vector helpers.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.func import functional_call, grad, jacrev, vmap

from ._runtime import eval_mode
from .data import LabeledData
from .errors import ConfigError, unknown

__all__ = ["VARIANTS", "param_names", "output_gradients", "output_gradients_loop", "Basis", "flat_grad",
           "set_flat_grad"]

VARIANTS = ("gtl", "ave", "all")


def param_names(model: nn.Module, params: "Sequence[str] | None" = None) -> list[str]:
    """Names of the trainable parameters selected by module-name prefixes ``params`` (None = all), e.g.
    ``["fc"]`` or ``["layer3", "fc"]``. An empty selection is an error naming the valid prefixes."""
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    if params is None:
        return names
    if isinstance(params, str):
        params = [params]
    prefixes = sorted({n.rsplit(".", 1)[0] for n in names})
    for prefix in params:
        if not any(n == prefix or n.startswith(prefix + ".") for n in names):
            raise ConfigError(f"params: {prefix!r} selects no trainable parameter. Valid module prefixes: "
                              f"{', '.join(prefixes)}.")
    chosen = [n for n in names if any(n == p or n.startswith(p + ".") for p in params)]
    return chosen


def output_gradients(model: nn.Module, data: LabeledData, variant: str = "gtl",
                     params: "Sequence[str] | None" = None, chunk_size: int = 128,
                     dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Per-sample output gradients, shape (M, P): M = N rows (``gtl``, ``ave``) or N·K rows (``all``), P = the
    number of selected parameters, on the model's device, computed ``chunk_size`` samples at a time.

    Example:
        >>> G = output_gradients(model, retain.subset(range(300)), "gtl", params=["fc"])
        >>> G.shape  # (300, fc.weight.numel() + fc.bias.numel())
    """
    if variant not in VARIANTS:
        raise unknown("variant", variant, list(VARIANTS), "variant")
    if chunk_size < 1:
        raise ConfigError(f"chunk_size: expected >= 1; got {chunk_size}.")
    names = param_names(model, params)
    dev = next(iter(model.parameters())).device
    all_params = dict(model.named_parameters())
    chosen = {n: all_params[n].detach() for n in names}
    fixed = {n: p.detach() for n, p in all_params.items() if n not in chosen}
    fixed.update(dict(model.named_buffers()))

    def logits(p: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:  # x: (*input_shape) -> (K,)
        return functional_call(model, {**p, **fixed}, (x.unsqueeze(0),)).squeeze(0)

    if variant == "gtl":
        per_sample = vmap(grad(lambda p, x, y: logits(p, x).gather(0, y.unsqueeze(0)).squeeze(0)), in_dims=(None, 0, 0))
    elif variant == "ave":
        per_sample = vmap(grad(lambda p, x, y: logits(p, x).mean()), in_dims=(None, 0, 0))
    else:
        per_sample = vmap(jacrev(lambda p, x, y: logits(p, x)), in_dims=(None, 0, 0))
    per_row = len(data) * (_num_logits(model, data, dev) if variant == "all" else 1)
    sizes = [chosen[n].numel() for n in names]
    out = torch.empty(per_row, sum(sizes), device=dev, dtype=dtype)  # written in place: no concatenation copies
    lead = 2 if variant == "all" else 1
    row = 0
    with eval_mode(model):
        for start in range(0, len(data), chunk_size):
            X = data.X[start:start + chunk_size].to(dev)
            y = data.y[start:start + chunk_size].to(dev)
            g = per_sample(chosen, X, y)  # name -> (B, *shape) or (B, K, *shape)
            offset = 0
            for n, size in zip(names, sizes):
                block = g[n].reshape(*g[n].shape[:lead], size).reshape(-1, size)
                out[row:row + block.shape[0], offset:offset + size] = block
                offset += size
            row += block.shape[0]
    return out


def _num_logits(model: nn.Module, data: LabeledData, dev: torch.device) -> int:
    """The number of logits, from one eval-mode forward."""
    with eval_mode(model), torch.no_grad():
        return int(model(data.X[:1].to(dev)).shape[1])


def output_gradients_loop(model: nn.Module, data: LabeledData, variant: str = "gtl",
                          params: "Sequence[str] | None" = None) -> torch.Tensor:
    """The same rows as :func:`output_gradients`, one backward pass per sample (and per logit for ``all``): the
    slow reference that ``netfix bench grad-memory`` compares against, and that tests check equality with."""
    if variant not in VARIANTS:
        raise unknown("variant", variant, list(VARIANTS), "variant")
    names = param_names(model, params)
    all_params = dict(model.named_parameters())
    chosen = [all_params[n] for n in names]
    dev = chosen[0].device
    rows = []
    with eval_mode(model):
        for i in range(len(data)):
            out = model(data.X[i:i + 1].to(dev)).squeeze(0)
            targets = {"gtl": [out[int(data.y[i])]], "ave": [out.mean()], "all": list(out)}[variant]
            for t in targets:
                gs = torch.autograd.grad(t, chosen, retain_graph=True, allow_unused=True)
                rows.append(torch.cat([(g if g is not None else torch.zeros_like(p)).reshape(-1)
                                       for g, p in zip(gs, chosen)]))
    return torch.stack(rows)


class Basis:
    """The span of gradient rows G (M, P), for projecting vectors off it: g − Gᵀ K⁺ G g with K = G Gᵀ.

    Working through the small M×M Gram matrix K (eigendecomposition in float64, directions with eigenvalue below
    ``tol`` × the largest dropped as rank-deficient) is equivalent to orthonormalising G — U = Gᵀ V Λ^-1/2 is an
    orthonormal basis of the same span — but costs one (M, P) × (P, M) product instead of a QR of a tall P×M
    matrix, and never forms U. :attr:`U` builds it on demand.

    Example:
        >>> b = Basis.from_rows(G)       # G: (M, P) output gradients
        >>> g_perp = b.project(g)        # orthogonal to every row of G
    """

    def __init__(self, dim: int, device: "torch.device | str" = "cpu", dtype: torch.dtype = torch.float32,
                 tol: float = 1e-6) -> None:
        self.G = torch.zeros(0, dim, device=device, dtype=dtype)
        self.tol = tol
        self._coef = torch.zeros(0, 0, device=device, dtype=dtype)  # V Λ^-1/2 restricted to kept directions
        self._U: torch.Tensor | None = None  # explicit basis, used when rows outnumber parameters

    @classmethod
    def from_rows(cls, G: torch.Tensor, tol: float = 1e-6) -> "Basis":
        basis = cls(G.shape[1], G.device, G.dtype, tol)
        basis.extend(G)
        return basis

    @property
    def rank(self) -> int:
        return int(self._U.shape[1] if self._U is not None else self._coef.shape[1])

    @property
    def U(self) -> torch.Tensor:
        """An orthonormal basis (P, rank) of the span."""
        return self._U if self._U is not None else self.G.T @ self._coef

    def extend(self, G: torch.Tensor) -> int:
        """Add the rows of ``G`` (M, P) to the span; returns how many new directions they brought."""
        if G.ndim != 2 or G.shape[1] != self.G.shape[1]:
            raise ConfigError(f"G: expected rows of length {self.G.shape[1]}; got shape {tuple(G.shape)}.")
        before = self.rank
        self.G = torch.cat([self.G, G.to(self.G.dtype)])
        M, P = self.G.shape
        # eigendecompose the smaller Gram matrix: rows (M x M) or parameters (P x P)
        K = (self.G @ self.G.T if M <= P else self.G.T @ self.G).double()
        evals, evecs = torch.linalg.eigh(K)
        top = float(evals.max()) if evals.numel() else 0.0
        keep = evals > self.tol * top if top > 0 else torch.zeros_like(evals, dtype=torch.bool)
        if M <= P:
            self._coef = (evecs[:, keep] / evals[keep].sqrt()).to(self.G.dtype)  # (M, r)
            self._U = None
        else:
            self._U = evecs[:, keep].to(self.G.dtype)  # (P, r), already orthonormal
        return self.rank - before

    def project(self, g: torch.Tensor) -> torch.Tensor:
        """``g`` (P,) or (P, B) with its component in the span removed."""
        if self.rank == 0:
            return g
        if self._U is not None:
            u = self._U.to(g.dtype)
            return g - u @ (u.T @ g)
        c = self._coef.to(g.dtype)
        coords = c.T @ (self.G.to(g.dtype) @ g)  # (r,) or (r, B): coordinates in the orthonormal basis
        return g - self.G.to(g.dtype).T @ (c @ coords)


def flat_grad(params: Sequence[torch.Tensor]) -> torch.Tensor:
    """The ``.grad`` of ``params`` as one flat vector (zeros where a gradient is missing)."""
    return torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) for p in params])


def set_flat_grad(params: Sequence[torch.Tensor], flat: torch.Tensor) -> None:
    """Write a flat vector back into the ``.grad`` of ``params``."""
    offset = 0
    for p in params:
        n = p.numel()
        p.grad = flat[offset:offset + n].view_as(p).clone()
        offset += n
