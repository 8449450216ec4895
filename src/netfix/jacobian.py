"""Rows of per-sample output gradients as a linear operator (:class:`Jacobian`), and the span of those rows
(:class:`Basis`) for projecting vectors off it.

:func:`output_jacobian` keeps an ``nn.Linear`` layer's rows factored (inputs × output gradients) and every other
parameter's rows dense (from :func:`netfix.gradients.output_gradients`). :class:`Basis` holds the span of the rows
and projects vectors off it: g − U(Uᵀg), computed through the M×M Gram matrix (rank-deficient directions dropped).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn
from torch.func import functional_call, vjp, vmap

from ._per_sample import VARIANTS, _check_chunk, _num_logits, auto_chunk, output_gradients, param_names
from ._runtime import eval_mode
from .data import LabeledData
from .errors import ConfigError, unknown
from .streaming import move

__all__ = ["Jacobian", "output_jacobian", "Basis"]


class Jacobian:
    """Rows of per-sample output gradients (R rows over the P selected parameters), stored per block:

    - **factored** for an ``nn.Linear`` layer applied to (batch, features) inputs: the gradient of an output with
      respect to its weight is the outer product δ aᵀ of the gradient δ at the layer's output and the layer's input
      a, so each row is kept as ``A`` (R, in) and ``D`` (R, out) — in + out numbers instead of in × out. Gram
      entries and products with a parameter vector are then small matrix products (the "ghost" trick), and the
      R × P matrix is never formed;
    - **dense** for every other parameter: the rows themselves, (R, p).

    :meth:`gram`, :meth:`matvec` (J v) and :meth:`rmatvec` (Jᵀ c) work on flat parameter vectors in the order of
    ``names``; :meth:`dense` materialises the R × P matrix (for tests and small problems).
    """

    def __init__(self, names: list[str], sizes: list[int], rows: int, device: "torch.device | str",
                 dtype: torch.dtype) -> None:
        self.names, self.sizes = list(names), list(sizes)
        self.offsets = dict(zip(names, [sum(sizes[:i]) for i in range(len(sizes))]))
        self.numel = dict(zip(names, sizes))
        self.dim = sum(sizes)
        self.rows = rows
        self.device, self.dtype = torch.device(device), dtype
        self.compute_dtype = torch.promote_types(dtype, torch.float32)  # products never below float32
        self.dense_blocks: list[tuple[list[str], torch.Tensor]] = []            # (names, (R, sum p))
        self.linear_blocks: list[tuple[str, str | None, torch.Tensor, torch.Tensor]] = []  # (weight, bias, A, D)

    @classmethod
    def from_dense(cls, G: torch.Tensor, names: "list[str] | None" = None,
                   sizes: "list[int] | None" = None) -> "Jacobian":
        """Wrap an explicit (R, P) matrix."""
        jac = cls(names or ["_"], sizes or [G.shape[1]], G.shape[0], G.device, G.dtype)
        jac.dense_blocks.append((list(jac.names), G))
        return jac

    def _view(self, v: torch.Tensor, name: str) -> torch.Tensor:
        o = self.offsets[name]
        return v[o:o + self.numel[name]]

    def gram(self) -> torch.Tensor:
        """J Jᵀ, (R, R)."""
        ct = self.compute_dtype
        K = torch.zeros(self.rows, self.rows, device=self.device, dtype=ct)
        for _, D in self.dense_blocks:
            D = D.to(ct)
            K += D @ D.T
        for _, bias, A, D in self.linear_blocks:
            A, D = A.to(ct), D.to(ct)
            K += (A @ A.T + (1.0 if bias is not None else 0.0)) * (D @ D.T)
        return K

    def matvec(self, v: torch.Tensor) -> torch.Tensor:
        """J v for ``v`` (P,) or (P, B): (R,) or (R, B)."""
        ct = self.compute_dtype
        v = v.to(ct)
        vv = v if v.ndim == 2 else v[:, None]
        out = torch.zeros(self.rows, vv.shape[1], device=self.device, dtype=ct)
        for names, D in self.dense_blocks:
            out += D.to(ct) @ torch.cat([self._view(vv, n) for n in names])
        for weight, bias, A, D in self.linear_blocks:
            A, D = A.to(ct), D.to(ct)
            o, i = D.shape[1], A.shape[1]
            W = self._view(vv, weight).reshape(o, i, -1)                   # (out, in, B)
            out += torch.einsum("ro,rob->rb", D, torch.einsum("ri,oib->rob", A, W))
            if bias is not None:
                out += D @ self._view(vv, bias)
        return out if v.ndim == 2 else out[:, 0]

    def rmatvec(self, c: torch.Tensor) -> torch.Tensor:
        """Jᵀ c for ``c`` (R,) or (R, B): (P,) or (P, B)."""
        ct = self.compute_dtype
        c = c.to(ct)
        cc = c if c.ndim == 2 else c[:, None]
        out = torch.zeros(self.dim, cc.shape[1], device=self.device, dtype=ct)
        for names, D in self.dense_blocks:
            block = D.to(ct).T @ cc
            start = 0
            for n in names:
                self._view(out, n).copy_(block[start:start + self.numel[n]])
                start += self.numel[n]
        for weight, bias, A, D in self.linear_blocks:
            A, D = A.to(ct), D.to(ct)
            Dc = D[:, :, None] * cc[:, None, :]                                # (R, out, B)
            self._view(out, weight).copy_(torch.einsum("rob,ri->oib", Dc, A).reshape(-1, cc.shape[1]))
            if bias is not None:
                self._view(out, bias).copy_(Dc.sum(0))
        return out if c.ndim == 2 else out[:, 0]

    def dense(self) -> torch.Tensor:
        """The explicit (R, P) matrix."""
        out = torch.zeros(self.rows, self.dim, device=self.device, dtype=self.dtype)
        for names, D in self.dense_blocks:
            start = 0
            for n in names:
                o = self.offsets[n]
                out[:, o:o + self.numel[n]] = D[:, start:start + self.numel[n]]
                start += self.numel[n]
        for weight, bias, A, D in self.linear_blocks:
            o = self.offsets[weight]
            out[:, o:o + self.numel[weight]] = (D[:, :, None] * A[:, None, :]).reshape(self.rows, -1)
            if bias is not None:
                out[:, self.offsets[bias]:self.offsets[bias] + self.numel[bias]] = D
        return out

    def cat(self, other: "Jacobian") -> "Jacobian":
        """The rows of ``self`` then ``other`` (same parameters, same block layout)."""
        if self.names != other.names or self.sizes != other.sizes:
            raise ConfigError("Jacobian.cat: the two Jacobians cover different parameters; build both with the "
                              "same model and params.")
        if self.rows == 0:
            return other
        if other.rows == 0:
            return self
        if ([b[0] for b in self.dense_blocks] != [b[0] for b in other.dense_blocks]
                or [b[:2] for b in self.linear_blocks] != [b[:2] for b in other.linear_blocks]):
            return Jacobian.from_dense(torch.cat([self.dense(), other.dense()]), self.names, self.sizes)
        out = Jacobian(self.names, self.sizes, self.rows + other.rows, self.device, self.dtype)
        out.dense_blocks = [(n, torch.cat([a, b.to(self.dtype)])) for (n, a), (_, b)
                            in zip(self.dense_blocks, other.dense_blocks)]
        out.linear_blocks = [(w, bi, torch.cat([A1, A2.to(self.dtype)]), torch.cat([D1, D2.to(self.dtype)]))
                             for (w, bi, A1, D1), (_, _, A2, D2) in zip(self.linear_blocks, other.linear_blocks)]
        return out


_FACTOR_MIN = 4096  # weights smaller than this join the dense pass when there is one


def _factorable_linears(model: nn.Module, names: list[str], example: torch.Tensor) -> dict[str, tuple[str, str | None]]:
    """Selected nn.Linear modules whose weight can be factored: called exactly once per forward, on a 2-D input.
    Returns module name -> (weight name, bias name or None)."""
    chosen = set(names)
    candidates = {m: n for n, m in model.named_modules() if isinstance(m, nn.Linear) and f"{n}.weight" in chosen}
    calls: dict[str, list[int]] = {n: [] for n in candidates.values()}
    handles = [m.register_forward_hook(lambda mod, inp, out, n=n: calls[n].append(inp[0].ndim))
               for m, n in candidates.items()]
    try:
        with eval_mode(model), torch.no_grad():
            model(example)
    finally:
        for h in handles:
            h.remove()
    out = {}
    for n, dims in calls.items():
        if dims == [2]:
            bias = f"{n}.bias" if f"{n}.bias" in chosen else None
            out[n] = (f"{n}.weight", bias)
    return out


def output_jacobian(model: nn.Module, data: LabeledData, variant: str = "gtl",
                    params: "Sequence[str] | None" = None, chunk_size: int | None = None,
                    dtype: torch.dtype = torch.float32, factored: bool = True) -> Jacobian:
    """The rows of :func:`output_gradients` as a :class:`Jacobian`: ``nn.Linear`` weights factored (inputs and
    output gradients from one batched forward and a ``torch.func.vjp`` — vmapped over the K logits for ``all``),
    every other selected parameter dense through the vmap engine. ``factored=False`` keeps every block dense.

    Example:
        >>> J = output_jacobian(model, memory, "gtl")
        >>> K = J.gram()                  # (M, M) without forming the M x P matrix
    """
    if variant not in VARIANTS:
        raise unknown("variant", variant, list(VARIANTS), "variant")
    _check_chunk(chunk_size)
    names = param_names(model, params)
    all_params = dict(model.named_parameters())
    sizes = [all_params[n].numel() for n in names]
    dev = next(iter(model.parameters())).device
    K = _num_logits(model, data, dev) if len(data) else 1
    per = K if variant == "all" else 1
    jac = Jacobian(names, sizes, len(data) * per, dev, dtype)
    if len(data) == 0:
        return jac
    linears = _factorable_linears(model, names, move(data.X[:1], dev)) if factored else {}
    covered = {p for pair in linears.values() for p in pair if p is not None}
    if any(n not in covered for n in names):  # a dense pass runs anyway: small layers ride along in it
        linears = {m: wb for m, wb in linears.items() if all_params[wb[0]].numel() >= _FACTOR_MIN}
        covered = {p for pair in linears.values() for p in pair if p is not None}
    rest = [n for n in names if n not in covered]
    if rest:
        jac.dense_blocks.append((rest, output_gradients(model, data, variant, rest, chunk_size, dtype)))
    factored_chunk = chunk_size or auto_chunk(sum(all_params[w].shape[0] + all_params[w].shape[1]
                                                   for w, _ in linears.values()) * per + 4096)
    if linears:
        jac.linear_blocks.extend(_linear_blocks(model, data, linears, variant, per, factored_chunk, dtype))
    return jac


def _linear_blocks(model: nn.Module, data: LabeledData, linears: dict[str, tuple[str, str | None]], variant: str,
                   per: int, chunk: int, dtype: torch.dtype
                   ) -> list[tuple[str, str | None, torch.Tensor, torch.Tensor]]:
    """The factored blocks ``(weight, bias, A, D)`` of ``linears``: each layer's inputs A and output gradients D,
    ``chunk`` samples at a time (each input repeated ``per`` times: one row per logit for ``all``)."""
    dev = next(iter(model.parameters())).device
    A_parts: dict[str, list[torch.Tensor]] = {n: [] for n in linears}
    D_parts: dict[str, list[torch.Tensor]] = {n: [] for n in linears}
    state = {**dict(model.named_parameters()), **dict(model.named_buffers())}
    state = {k: v.detach() for k, v in state.items()}
    with eval_mode(model), torch.no_grad():
        for start in range(0, len(data), chunk):
            X = move(data.X[start:start + chunk], dev)
            y = data.y[start:start + chunk].to(dev)
            inputs, deltas = _factors(model, state, list(linears), X, y, variant)
            for n in linears:
                a = inputs[n].detach()
                A_parts[n].append((a.repeat_interleave(per, 0) if per > 1 else a).to(dtype))
                D_parts[n].append(deltas[n].detach().to(dtype))
    return [(weight, bias, torch.cat(A_parts[n]), torch.cat(D_parts[n])) for n, (weight, bias) in linears.items()]


def _factors(model: nn.Module, state: dict[str, torch.Tensor], linears: list[str], X: Any, y: torch.Tensor,
             variant: str) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """One chunk's ``(inputs, output gradients)`` of the ``linears`` modules: a forward that adds a zero ``eps``
    at each layer's output, pulled back (``torch.func.vjp``) from the variant's logit cotangents."""
    dev = y.device  # the model's: the chunk was moved there
    modules = dict(model.named_modules())

    def run(eps: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        seen: dict[str, torch.Tensor] = {}

        def hook(out: torch.Tensor, inp: torch.Tensor, n: str) -> torch.Tensor:
            seen[n] = inp
            return out + eps[n]
        handles = [modules[n].register_forward_hook(lambda m, i, o, n=n: hook(o, i[0], n)) for n in linears]
        try:
            return functional_call(model, state, (X,)), seen
        finally:
            for h in handles:
                h.remove()

    eps = {n: torch.zeros(len(y), modules[n].out_features, device=dev, dtype=modules[n].weight.dtype)
           for n in linears}
    with torch.enable_grad():
        logits, pullback, inputs = vjp(run, eps, has_aux=True)  # type: ignore[misc]
        if variant == "gtl":
            deltas = pullback(torch.nn.functional.one_hot(y, logits.shape[1]).to(logits.dtype))[0]
        elif variant == "ave":
            deltas = pullback(torch.full_like(logits, 1.0 / logits.shape[1]))[0]
        else:
            eye = torch.eye(logits.shape[1], device=dev, dtype=logits.dtype)
            cot = eye[:, None, :].expand(-1, len(y), -1)                   # (K, B, K)
            deltas = vmap(pullback)(cot)[0]                                  # name -> (K, B, out)
            deltas = {n: d.transpose(0, 1).reshape(-1, d.shape[-1]) for n, d in deltas.items()}
    return inputs, deltas


class Basis:
    """The span of gradient rows J (M, P), for projecting vectors off it: g − Jᵀ K⁺ J g with K = J Jᵀ.

    Working through the small M×M Gram matrix K (eigendecomposition in float64, directions with eigenvalue below
    ``tol`` × the largest dropped as rank-deficient) is equivalent to orthonormalising J — U = Jᵀ V Λ^-1/2 is an
    orthonormal basis of the same span — but costs one Gram matrix instead of a QR of a tall P×M matrix, and
    never forms U. With a factored :class:`Jacobian` neither J nor U is ever formed: a projection is two small
    products per layer. :attr:`U` builds the basis on demand.

    Example:
        >>> b = Basis.from_rows(output_jacobian(model, memory))   # or an explicit (M, P) tensor
        >>> g_perp = b.project(g)                                 # orthogonal to every row
    """

    def __init__(self, dim: int, device: "torch.device | str" = "cpu", dtype: torch.dtype = torch.float32,
                 tol: float = 1e-6) -> None:
        self.J = Jacobian.from_dense(torch.zeros(0, dim, device=device, dtype=dtype))
        self.tol = tol
        self._coef = torch.zeros(0, 0, device=device, dtype=dtype)  # V Λ^-1/2 restricted to kept directions
        self._U: torch.Tensor | None = None  # explicit basis, used when rows outnumber parameters

    @classmethod
    def from_rows(cls, G: "torch.Tensor | Jacobian", tol: float = 1e-6) -> "Basis":
        dim = G.dim if isinstance(G, Jacobian) else G.shape[1]
        basis = cls(dim, G.device, G.dtype, tol)
        basis.extend(G)
        return basis

    @property
    def rank(self) -> int:
        return int(self._U.shape[1] if self._U is not None else self._coef.shape[1])

    @property
    def U(self) -> torch.Tensor:
        """An orthonormal basis (P, rank) of the span."""
        if self._U is not None:
            return self._U
        return self.J.rmatvec(self._coef) if self.rank else torch.zeros(self.J.dim, 0, device=self.J.device)

    def extend(self, G: "torch.Tensor | Jacobian") -> int:
        """Add rows (a (M, P) tensor or a :class:`Jacobian`) to the span; returns how many new directions they
        brought."""
        J = G if isinstance(G, Jacobian) else Jacobian.from_dense(G, self.J.names, self.J.sizes)
        if J.dim != self.J.dim or (not isinstance(G, Jacobian) and G.ndim != 2):
            shape = tuple(G.shape) if not isinstance(G, Jacobian) else (J.rows, J.dim)
            raise ConfigError(f"G: expected rows of length {self.J.dim}; got shape {shape}.")
        before = self.rank
        if self.J.rows == 0:
            self.J = J
        elif self.J.names == J.names:
            self.J = self.J.cat(J)
        else:  # rows given as plain tensors: one dense block
            self.J = Jacobian.from_dense(torch.cat([self.J.dense(), J.dense().to(self.J.dtype)]))
        M, P = self.J.rows, self.J.dim
        # eigendecompose the smaller Gram matrix: rows (M x M) or parameters (P x P)
        if M <= P:
            K = self.J.gram().double()
        else:
            Gd = self.J.dense().to(self.J.compute_dtype)
            K = (Gd.T @ Gd).double()
        evals, evecs = torch.linalg.eigh(K)
        top = float(evals.max()) if evals.numel() else 0.0
        keep = evals > self.tol * top if top > 0 else torch.zeros_like(evals, dtype=torch.bool)
        if M <= P:
            self._coef = (evecs[:, keep] / evals[keep].sqrt()).to(self.J.compute_dtype)  # (M, r)
            self._U = None
        else:
            self._U = evecs[:, keep].to(self.J.compute_dtype)  # (P, r), already orthonormal
        return self.rank - before

    def project(self, g: torch.Tensor) -> torch.Tensor:
        """``g`` (P,) or (P, B) with its component in the span removed."""
        if self.rank == 0:
            return g
        if self._U is not None:
            u = self._U.to(g.dtype)
            return g - u @ (u.T @ g)
        c = self._coef
        coords = c.T @ self.J.matvec(g)  # (r,) or (r, B): coordinates in the orthonormal basis
        return g - self.J.rmatvec(c @ coords).to(g.dtype)
