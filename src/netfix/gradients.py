"""The gradient engine: per-sample gradients of model outputs, orthonormal bases, projections.

OGD (docs/methods.md §1) protects what a model does on memory points by keeping updates orthogonal to the gradients of
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
from typing import Any, Callable

import torch
from torch import nn
from torch.func import functional_call, grad, jacrev, vjp, vmap

from ._runtime import eval_mode
from .data import LabeledData
from .errors import ConfigError, unknown
from .streaming import move

__all__ = ["VARIANTS", "param_names", "output_gradients", "output_jacobian", "output_gradients_loop", "Jacobian",
           "Basis", "ProjectedSGD", "flat_grad", "sampled_fisher_diagonal", "auto_chunk"]

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


def squared_gradient_importance(model: nn.Module, data: LabeledData, batch_size: int,
                                generator: "torch.Generator | None" = None, progress: bool = False,
                                desc: str = "importance") -> dict[str, torch.Tensor]:
    """Mean over minibatches of the squared gradient of the mean cross-entropy, per trainable parameter, in eval
    mode — a diagonal Fisher estimate (SSD's importance; the targeted forgetting operator's). Batches are drawn in
    a random order from ``generator``, or in order when it is None.

    Example:
        >>> imp = squared_gradient_importance(model, forget, 64, torch.Generator().manual_seed(0))
        >>> imp["fc.weight"].shape == model.fc.weight.shape
        True
    """
    import math

    from torch.utils.data import RandomSampler
    from tqdm.auto import tqdm

    from .data import batches

    params = dict(model.named_parameters())
    names = param_names(model)
    chosen = [params[n] for n in names]
    dev = chosen[0].device
    total = [torch.zeros_like(p) for p in chosen]
    count = 0
    order = RandomSampler(data, generator=generator) if generator is not None else None
    with eval_mode(model):
        for X, y in tqdm(batches(data, batch_size, order, dev), total=math.ceil(len(data) / batch_size),
                         desc=desc, unit="batch", disable=not progress, leave=False):
            grads = torch.autograd.grad(torch.nn.functional.cross_entropy(model(X), y), chosen, allow_unused=True)
            for t, g in zip(total, grads):
                if g is not None:
                    t += g.detach().pow(2)
            count += 1
    return {n: t / max(1, count) for n, t in zip(names, total)}


def output_gradients(model: nn.Module, data: LabeledData, variant: str = "gtl",
                     params: "Sequence[str] | None" = None, chunk_size: int | None = None,
                     dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Per-sample output gradients, shape (M, P): M = N rows (``gtl``, ``ave``) or N·K rows (``all``), P = the
    number of selected parameters, on the model's device, computed ``chunk_size`` samples at a time (None: as
    many as keep each chunk's gradients within about 256 MB).

    Example:
        >>> G = output_gradients(model, retain.subset(range(300)), "gtl", params=["fc"])
        >>> G.shape  # (300, fc.weight.numel() + fc.bias.numel())
    """
    if variant not in VARIANTS:
        raise unknown("variant", variant, list(VARIANTS), "variant")
    _check_chunk(chunk_size)
    names = param_names(model, params)
    dev = next(iter(model.parameters())).device
    all_params = dict(model.named_parameters())
    chosen = {n: all_params[n].detach() for n in names}
    fixed = {n: p.detach() for n, p in all_params.items() if n not in chosen}
    fixed.update(dict(model.named_buffers()))

    def logits(p: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:  # x: (*input_shape) -> (K,)
        one = {k: v.unsqueeze(0) for k, v in x.items()} if isinstance(x, dict) else x.unsqueeze(0)  # dict: text
        return functional_call(model, {**p, **fixed}, (one,)).squeeze(0)

    if variant == "gtl":
        rows_of = vmap(grad(lambda p, x, y: logits(p, x).gather(0, y.unsqueeze(0)).squeeze(0)), in_dims=(None, 0, 0))
    elif variant == "ave":
        rows_of = vmap(grad(lambda p, x, y: logits(p, x).mean()), in_dims=(None, 0, 0))
    else:
        rows_of = vmap(jacrev(lambda p, x, y: logits(p, x)), in_dims=(None, 0, 0))
    logits_per = len(data) and (_num_logits(model, data, dev) if variant == "all" else 1)
    per_row = len(data) * logits_per
    sizes = [chosen[n].numel() for n in names]
    chunk_size = chunk_size or auto_chunk(sum(sizes) * max(1, logits_per))
    out = torch.empty(per_row, sum(sizes), device=dev, dtype=dtype)  # written in place: no concatenation copies
    lead = 2 if variant == "all" else 1
    row, loop = 0, [False]
    with eval_mode(model):
        for start in range(0, len(data), chunk_size):
            X = move(data.X[start:start + chunk_size], dev)
            y = data.y[start:start + chunk_size].to(dev)
            g = _rows(rows_of, chosen, X, y, logits, variant, loop)  # name -> (B, *shape) or (B, K, *shape)
            offset = 0
            for n, size in zip(names, sizes):
                block = g[n].reshape(*g[n].shape[:lead], size).reshape(-1, size)
                out[row:row + block.shape[0], offset:offset + size] = block
                offset += size
            row += block.shape[0]
    return out


def _check_chunk(chunk_size: int | None) -> None:
    if chunk_size is not None and (not isinstance(chunk_size, int) or chunk_size < 1):
        raise ConfigError(f"chunk_size: expected a whole number >= 1, or None for automatic; got {chunk_size!r}.")


def auto_chunk(numbers_per_sample: int, budget: int = 64 * 2 ** 20) -> int:
    """Samples per chunk so that a chunk's per-sample rows hold about ``budget`` numbers (256 MB in float32)."""
    return int(max(16, min(4096, budget // max(1, numbers_per_sample))))


def _rows(rows_of: Callable[..., dict[str, torch.Tensor]], chosen: dict[str, torch.Tensor], X: Any, y: torch.Tensor,
          logits: Callable[[dict[str, torch.Tensor], Any], torch.Tensor], variant: str, loop: list[bool]
          ) -> dict[str, torch.Tensor]:
    """Per-sample gradient rows of a chunk: vmapped, or — for a forward with data-dependent control flow (a
    Hugging Face text model's mask checks), which vmap cannot trace — one sample at a time (same numbers, slower;
    ``loop[0]`` remembers it for the next chunks)."""
    if not loop[0]:
        try:
            return rows_of(chosen, X, y)
        except RuntimeError as e:
            if "vmap" not in str(e):
                raise
            loop[0] = True
    names = list(chosen)
    out: dict[str, list[torch.Tensor]] = {n: [] for n in names}
    for i in range(len(y)):
        x = {k: v[i] for k, v in X.items()} if isinstance(X, dict) else X[i]
        p = {n: t.detach().requires_grad_(True) for n, t in chosen.items()}
        with torch.enable_grad():
            z = logits(p, x)
            targets = [z[y[i]]] if variant == "gtl" else [z.mean()] if variant == "ave" else list(z)
            rows = [torch.autograd.grad(t, [p[n] for n in names], retain_graph=True, allow_unused=True)
                    for t in targets]
        for j, n in enumerate(names):
            per = [r[j] if r[j] is not None else torch.zeros_like(p[n]) for r in rows]
            out[n].append(per[0] if variant != "all" else torch.stack(per))
    return {n: torch.stack(v) for n, v in out.items()}


def _num_logits(model: nn.Module, data: LabeledData, dev: torch.device) -> int:
    """The number of logits, from one eval-mode forward."""
    with eval_mode(model), torch.no_grad():
        return int(model(move(data.X[:1], dev)).shape[1])


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
            out = model(move(data.X[i:i + 1], dev)).squeeze(0)
            targets = {"gtl": [out[int(data.y[i])]], "ave": [out.mean()], "all": list(out)}[variant]
            for t in targets:
                gs = torch.autograd.grad(t, chosen, retain_graph=True, allow_unused=True)
                rows.append(torch.cat([(g if g is not None else torch.zeros_like(p)).reshape(-1)
                                       for g, p in zip(gs, chosen)]))
    return torch.stack(rows)


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

    @property
    def stored(self) -> int:
        """Numbers held (the dense equivalent holds rows × dim)."""
        return (sum(D.numel() for _, D in self.dense_blocks)
                + sum(A.numel() + D.numel() for _, _, A, D in self.linear_blocks))


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
        A_parts: dict[str, list[torch.Tensor]] = {n: [] for n in linears}
        D_parts: dict[str, list[torch.Tensor]] = {n: [] for n in linears}
        modules = dict(model.named_modules())
        state = {**dict(model.named_parameters()), **dict(model.named_buffers())}
        state = {k: v.detach() for k, v in state.items()}
        with eval_mode(model), torch.no_grad():
            for start in range(0, len(data), factored_chunk):
                X = move(data.X[start:start + factored_chunk], dev)
                y = data.y[start:start + factored_chunk].to(dev)

                def run(eps: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
                    seen: dict[str, torch.Tensor] = {}

                    def hook(out: torch.Tensor, inp: torch.Tensor, n: str) -> torch.Tensor:
                        seen[n] = inp
                        return out + eps[n]
                    handles = [modules[n].register_forward_hook(lambda m, i, o, n=n: hook(o, i[0], n))
                               for n in linears]
                    try:
                        return functional_call(model, state, (X,)), seen
                    finally:
                        for h in handles:
                            h.remove()

                eps = {n: torch.zeros(len(y), modules[n].out_features, device=dev,
                                      dtype=modules[n].weight.dtype) for n in linears}
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
                for n in linears:
                    a = inputs[n].detach()
                    A_parts[n].append((a.repeat_interleave(per, 0) if per > 1 else a).to(dtype))
                    D_parts[n].append(deltas[n].detach().to(dtype))
        for n, (weight, bias) in linears.items():
            jac.linear_blocks.append((weight, bias, torch.cat(A_parts[n]), torch.cat(D_parts[n])))
    return jac


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
    def G(self) -> torch.Tensor:
        """The rows, as an explicit (M, P) matrix."""
        return self.J.dense()

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


class ProjectedSGD(torch.optim.Optimizer):
    """SGD whose every step is projected off a :class:`Basis`: g ← g − U(Uᵀg), then momentum (on the projected
    gradient, so the momentum buffer stays in the orthogonal complement too), then θ ← θ − lr·g. No weight decay:
    it would pull the weights along directions the projection is there to protect.

    ``params`` must be the parameters the basis was built over, in the same order (e.g. ``[p for n, p in
    model.named_parameters() if n in param_names(model, prefixes)]``).

    Example:
        >>> basis = Basis.from_rows(output_jacobian(model, memory))
        >>> opt = ProjectedSGD(model.parameters(), basis, lr=1e-2)
        >>> loss.backward(); opt.step()      # retained samples' logits unchanged to first order
    """

    def __init__(self, params: Any, basis: "Basis | None", lr: float = 1e-2, momentum: float = 0.0) -> None:
        if not lr > 0:
            raise ConfigError(f"lr: expected a positive step size; got {lr!r}.")
        if not 0 <= momentum < 1:
            raise ConfigError(f"momentum: expected a value in [0, 1); got {momentum!r}.")
        super().__init__(params, {"lr": lr, "momentum": momentum})
        self.basis = basis
        dim = sum(p.numel() for g in self.param_groups for p in g["params"])
        if basis is not None and basis.J.dim != dim:
            raise ConfigError(f"params: hold {dim} numbers but the basis spans vectors of {basis.J.dim}; pass the "
                              "parameters the basis was built over, in the same order.")

    @torch.no_grad()
    def step(self, closure: Any = None) -> Any:  # type: ignore[override]
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        params = [p for g in self.param_groups for p in g["params"]]
        flat = flat_grad(params)
        if self.basis is not None:
            flat = self.basis.project(flat)
        offset = 0
        for group in self.param_groups:
            for p in group["params"]:
                n = p.numel()
                d = flat[offset:offset + n].view_as(p)
                offset += n
                if group["momentum"]:
                    state = self.state[p]
                    buf = state.get("momentum")
                    state["momentum"] = buf = d.clone() if buf is None else buf.mul_(group["momentum"]).add_(d)
                    d = buf
                p.add_(d, alpha=-group["lr"])
        return loss


def flat_grad(params: Sequence[torch.Tensor]) -> torch.Tensor:
    """The ``.grad`` of ``params`` as one flat vector (zeros where a gradient is missing)."""
    return torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) for p in params])


def sampled_fisher_diagonal(model: nn.Module, data: LabeledData, generator: "torch.Generator | None" = None,
                            chunk_size: int | None = None, draws: int = 1, progress: bool = False,
                            desc: str = "fisher") -> dict[str, torch.Tensor]:
    """A Monte-Carlo estimate of the diagonal Fisher information of ``model``'s predictive distribution on
    ``data``, per trainable parameter: the mean over x and over ``draws`` labels ŷ ~ p(·|x) of
    (∂ log p(ŷ|x) / ∂θ)². Its expectation over the draws is exactly Σ_y p(y|x) (∂ log p(y|x) / ∂θ)², the true
    Fisher (not the "empirical" one of the given labels), at one per-sample gradient per draw instead of one per
    class. Labels are drawn from ``generator`` (on the CPU, so the same on every device). Everything runs in eval
    mode, ``chunk_size`` samples at a time (None: about 256 MB of per-sample gradients per chunk).

    The squared per-sample gradients of an ``nn.Linear`` layer applied once per forward to (B, in) inputs need
    no per-sample gradients at all: with inputs a_i and output gradients g_i of one batched backward pass of
    Σ_i log p(ŷ_i|x_i), they are Σ_i (g_i²)(a_i²)ᵀ for the weight and Σ_i g_i² for the bias — one matrix product.
    Every other parameter (convolutions, normalisation scales, a layer used twice) gets vmapped per-sample
    gradients of the same draws.

    Example:
        >>> fim = sampled_fisher_diagonal(model, retain.subset(range(500)), torch.Generator().manual_seed(0))
        >>> fim["fc.weight"].shape == model.fc.weight.shape
        True
    """
    from tqdm.auto import tqdm

    _check_chunk(chunk_size)
    if not isinstance(draws, int) or draws < 1:
        raise ConfigError(f"draws: expected a whole number >= 1; got {draws!r}.")
    names = param_names(model)
    dev = next(iter(model.parameters())).device
    all_params = dict(model.named_parameters())
    total = {n: torch.zeros_like(all_params[n]) for n in names}
    if len(data) == 0:
        return total

    # Linear layers whose parameters are all trainable: candidates for the closed form
    linears = {}
    for mname, m in model.named_modules():
        own = [f"{mname}.{n}" if mname else n for n, _ in m.named_parameters(recurse=False)]
        if isinstance(m, nn.Linear) and own and all(n in total for n in own):
            linears[mname] = m
    seen: dict[str, list[torch.Tensor]] = {}
    outs: dict[str, list[torch.Tensor]] = {}

    def record(mod: nn.Module, inp: Any, out: Any, name: str) -> None:
        seen.setdefault(name, []).append(inp[0].detach())
        outs.setdefault(name, []).append(out)

    hooks = [m.register_forward_hook(lambda mod, i, o, name=name: record(mod, i, o, name))
             for name, m in linears.items()]
    try:
        with eval_mode(model), torch.enable_grad():
            X = move(data.X[:2], dev)
            model(X)
    finally:
        for h in hooks:
            h.remove()
    closed = [n for n in linears if len(seen.get(n, [])) == 1 and seen[n][0].ndim == 2
              and outs[n][0].ndim == 2 and outs[n][0].requires_grad]
    seen.clear()
    outs.clear()
    closed_params = {f"{n}.{p}" if n else p: (n, p) for n in closed for p, _ in linears[n].named_parameters(recurse=False)}
    rest = [n for n in names if n not in closed_params]

    chosen = {n: all_params[n].detach() for n in rest}
    fixed = {n: p.detach() for n, p in all_params.items() if n not in chosen}
    fixed.update(dict(model.named_buffers()))

    def logits(p: dict[str, torch.Tensor], x: Any) -> torch.Tensor:  # one sample -> (K,)
        one = {k: v.unsqueeze(0) for k, v in x.items()} if isinstance(x, dict) else x.unsqueeze(0)
        return functional_call(model, {**p, **fixed}, (one,)).squeeze(0)

    def log_prob(p: dict[str, torch.Tensor], x: Any, y: torch.Tensor) -> torch.Tensor:
        return torch.log_softmax(logits(p, x), 0).gather(0, y.unsqueeze(0)).squeeze(0)

    rows_of = vmap(grad(log_prob), in_dims=(None, 0, 0))

    def log_probs(p: dict[str, torch.Tensor], x: Any) -> torch.Tensor:  # for _rows' one-sample-at-a-time fallback
        return torch.log_softmax(logits(p, x), 0)

    size = chunk_size or auto_chunk(sum(chosen[n].numel() for n in rest) if rest else 1)
    loop = [False]
    hooks = [linears[n].register_forward_hook(lambda mod, i, o, name=n: record(mod, i, o, name)) for n in closed]
    try:
        with eval_mode(model):
            for start in tqdm(range(0, len(data), size), desc=desc, unit="chunk", disable=not progress,
                              leave=False):
                X = move(data.X[start:start + size], dev)
                seen.clear()
                outs.clear()
                with torch.enable_grad():
                    z = model(X)
                logp = torch.log_softmax(z.float(), 1)
                probs = logp.detach().exp().cpu()
                for d in range(draws):
                    y = torch.multinomial(probs, 1, generator=generator).squeeze(1).to(dev)
                    if closed:
                        picked = logp.gather(1, y.unsqueeze(1)).sum()
                        gouts = torch.autograd.grad(picked, [outs[n][0] for n in closed],
                                                    retain_graph=d < draws - 1)
                        for n, g in zip(closed, gouts):
                            a2, g2 = seen[n][0].float().pow(2), g.detach().float().pow(2)
                            for full, (_, p) in ((f, v) for f, v in closed_params.items() if v[0] == n):
                                total[full] += (g2.T @ a2 if p == "weight" else g2.sum(0)).to(total[full].dtype)
                    if rest:
                        per_sample = _rows(rows_of, chosen, X, y, log_probs, "gtl", loop)
                        for n in rest:
                            total[n] += per_sample[n].pow(2).sum(0)
    finally:
        for h in hooks:
            h.remove()
    return {n: t / (len(data) * draws) for n, t in total.items()}
