"""``netfix bench grad-memory``: how fast the OGD memory is built — the batched engine against a per-sample loop of
backward passes, same model, same samples, same device.

"Building the memory" is what OGD does before it takes a step: the output gradients of M retained samples, then
the orthonormal basis of their span (:class:`netfix.gradients.Basis`). Three ways, each timed end to end (after a
warm-up, median of ``repeats``):

- ``loop``: one forward + backward per sample (and per logit for ``all``), rows stacked, then the basis;
- ``batched-dense``: every row at once with ``torch.func`` (vmap over grad / jacrev of a functional_call), chunked,
  then the basis;
- ``batched`` (netfix's default): ``nn.Linear`` rows kept factored — the layer inputs and output gradients from one
  batched forward and a vmapped ``torch.func.vjp`` — other parameters as in batched-dense; the Gram matrix from the
  factors, so the M × P matrix is never formed.

Models: the MLP (784-256-256-10), LeNet and a ResNet-8 (BatchNorm), on mnist5k images. Columns: ``model``,
``params``, ``method``, ``samples`` (M), ``seconds``, ``samples_per_s``, ``speedup`` (loop seconds / seconds) and
``max_diff`` (largest difference between this basis's projection of random vectors and the loop basis's, relative
to their norm: the three build the same projector).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

import torch

from .. import data as datasets
from .. import models
from ..gradients import Basis, output_gradients, output_gradients_loop, output_jacobian

COLUMNS = ("model", "params", "method", "variant", "samples", "seconds", "samples_per_s", "speedup", "max_diff")
MODELS = {"mlp": {}, "lenet": {}, "resnet": {"depth": 8}}


def _timed(fn: Callable[[], Basis], device: torch.device, repeats: int) -> tuple[float, Basis]:
    def once() -> tuple[float, Basis]:
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        b = fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return time.perf_counter() - start, b
    times, basis = [], None
    for _ in range(repeats):
        t, basis = once()
        times.append(t)
    assert basis is not None
    return statistics.median(times), basis


def run(quick: bool, seeds: int | None, data: str | None, device: torch.device, progress: bool | None,
        samples: int | None = None, variant: str = "gtl", repeats: int | None = None) -> dict[str, Any]:
    name = data or "mnist5k"
    train_set, _ = datasets.load(name)
    m = samples or (100 if quick else 300)
    reps = repeats or (1 if quick else 3)
    seed = 0
    g = torch.Generator().manual_seed(seed)
    mem = train_set.subset(torch.randperm(len(train_set), generator=g)[:m], "memory")
    rows: list[dict[str, Any]] = []
    for arch, kw in MODELS.items():
        model = models.build(arch, train_set.input_shape, train_set.num_classes, seed=seed, **kw).to(device)
        params = sum(p.numel() for p in model.parameters())
        warm = mem.subset(range(min(8, m)))
        builders: dict[str, Callable[[Any], Basis]] = {
            "loop": lambda d: Basis.from_rows(output_gradients_loop(model, d, variant)),
            "batched-dense": lambda d: Basis.from_rows(output_gradients(model, d, variant)),
            "batched": lambda d: Basis.from_rows(output_jacobian(model, d, variant)),
        }
        results: dict[str, tuple[float, Basis]] = {}
        for method, build in builders.items():
            build(warm)  # warm-up: first-call allocations, kernel selection
            results[method] = _timed(lambda: build(mem), device, 1 if method == "loop" else reps)
        probe = torch.randn(params, 8, generator=g).to(device)
        reference = results["loop"][1].project(probe)
        for method, (seconds, basis) in results.items():
            diff = float((basis.project(probe) - reference).norm(dim=0).max() / probe.norm(dim=0).min())
            rows.append({"model": arch, "params": params, "method": method, "variant": variant, "samples": m,
                         "seconds": seconds, "samples_per_s": m / seconds,
                         "speedup": results["loop"][0] / seconds, "max_diff": diff, "rank": basis.rank})
    return {"dataset": name, "seeds": [seed], "reference_seconds": None, "rows": rows, "samples": m,
            "repeats": reps}
