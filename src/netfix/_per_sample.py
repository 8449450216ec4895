"""Per-sample output gradients: one row per sample of the gradient of its logits, for any parameter subset.

OGD (docs/methods.md §1) protects what a model does on memory points by keeping updates orthogonal to the gradients of
their logits. This module computes those gradients for a batch of samples at once with ``torch.func`` (``vmap``
over ``grad`` / ``jacrev`` of a ``functional_call``), in eval mode (BatchNorm uses its running statistics, Dropout
is off), chunked to bound memory, for any parameter subset. Variants (one row per sample unless noted):

- ``gtl``: gradient of the true-class logit f_y(x) — the cheapest, used by the OGD debugging paper;
- ``ave``: gradient of the mean logit (1/K) Σ_k f_k(x);
- ``all``: gradient of every logit — K rows per sample.

The public names are read through :mod:`netfix.gradients`; this module sits below :mod:`netfix.jacobian` (which
stores these rows factored) so that both can use it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Callable

import torch
from torch import nn
from torch.func import functional_call, grad, jacrev, vmap

from ._runtime import eval_mode
from .data import LabeledData
from .errors import ConfigError, unknown
from .streaming import move

__all__ = ["VARIANTS", "param_names", "output_gradients", "output_gradients_loop", "flat_grad", "auto_chunk"]

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

def flat_grad(params: Sequence[torch.Tensor]) -> torch.Tensor:
    """The ``.grad`` of ``params`` as one flat vector (zeros where a gradient is missing)."""
    return torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) for p in params])
