"""``netfix bench scale``: what OGD unlearning and retraining cost as the work grows, in 1 and 2 processes (issue 10).

Fashion-MNIST (fallback mnist5k; ``--quick``: mnist5k and smaller sizes), netfix's MLP. Two sweeps:

- **training-set size** N ∈ :data:`TRAIN_SIZES` with a forget set of :data:`FIXED_FORGET` samples;
- **forget-set size** F ∈ :data:`FORGET_SIZES` with N = the largest training set;
- **OGD memory size** M ∈ :data:`MEMORY_SIZES` (retained samples whose output gradients OGD protects) with the
  largest N and F = :data:`FIXED_FORGET`.

For every point and for 1 and 2 processes (``torch.multiprocessing`` spawns them; gloo, the DDP path of
:mod:`netfix.distributed`), a fresh process group trains the original model (:data:`ORIGINAL_EPOCHS` epochs, not
timed), then times ``netfix.unlearn(method="ogd")`` (unlearning a random forget set with gradient ascent, stopping at
the model's held-out accuracy, memory :data:`MEMORY` retained samples), the same for exactly :data:`FIXED_EPOCHS`
passes over the forget set with no stopping rule (``ogd-fixed``: the same work at every size) and ``netfix.unlearn(method="retrain")``
(:data:`RETRAIN_EPOCHS` epochs on the retained data from scratch). ``peak_mb``: the peak resident memory the
operation added (Linux ``VmHWM``, reset before it; the largest over the processes), or on CUDA the peak allocated
GPU memory. Rows: ``sweep``, ``n_train``, ``n_forget``, ``memory``, ``processes``, ``method``, ``seconds``, ``peak_mb``,
``rte`` (% of the same point's retrain seconds). ``seconds`` is the whole ``netfix.unlearn`` call, input checks and
data fingerprints included (what a user waits for); ``method_seconds`` the method's own part (``Outcome.seconds``);
``steps`` the optimiser steps it took (:func:`netfix.bench.count_steps`; OGD stops when the forget set's accuracy
reaches the held-out one, so its steps depend on the model; retrain's are epochs × ⌈N / batch⌉, N the retained
samples), ``steps_pct`` = % of the same point's retrain steps, and ``ms_per_step`` = method_seconds / steps.
"""

from __future__ import annotations

import json
import os
import socket
import tempfile
from pathlib import Path
from typing import Any

import torch

from . import count_steps, percent, pick_dataset, show_work

COLUMNS = ("sweep", "n_train", "n_forget", "memory", "processes", "method", "seconds", "method_seconds", "steps",
           "ms_per_step", "rte", "steps_pct", "peak_mb")
TRAIN_SIZES = (5_000, 20_000, 60_000)
FORGET_SIZES = (100, 1_000, 6_000)
FIXED_FORGET = 1_000
MEMORY = 300
MEMORY_SIZES = (100, 300, 1_000)
ORIGINAL_EPOCHS = 3
RETRAIN_EPOCHS = 3
FIXED_EPOCHS = 2  # ogd-fixed: passes over the forget set, whatever the forget accuracy
BATCH = 128


def _peak_reset(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        return
    try:
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM (Linux)
    except OSError:
        pass


def _peak_mb(device: torch.device, base: float) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2 ** 20
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return max(0.0, int(line.split()[1]) / 1024 - base)
    except OSError:
        pass
    return float("nan")


def _rss_mb() -> float:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def _point(rank: int, world: int, port: int, spec: dict[str, Any], out: str) -> None:
    """One measurement in a fresh process group (or a single process): original, then ogd and retrain timed."""
    import time

    from .. import data as datasets
    from .. import distributed, evaluation, methods, models, scenarios, training

    torch.set_num_threads(max(1, (os.cpu_count() or 2) // world))
    device = torch.device(spec["device"])
    if world > 1:
        os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
        torch.distributed.init_process_group("gloo" if device.type == "cpu" else "nccl", rank=rank, world_size=world)
        if device.type == "cuda":
            device = torch.device("cuda", rank)
            torch.cuda.set_device(device)
    full, test = datasets.load(spec["data"])
    g = torch.Generator().manual_seed(0)
    idx = torch.randperm(len(full), generator=g)[:spec["n_train"]]
    train = full.subset(idx, "train")
    s = scenarios.random_forget(train, test, fraction=spec["n_forget"] / len(train), seed=0)
    model = models.build("mlp", train.input_shape, train.num_classes, seed=0)
    original = training.train(model, s.train, epochs=ORIGINAL_EPOCHS, lr=2e-3, lr_schedule="constant",
                            batch_size=BATCH, seed=0, device=device, progress=False).model
    held_out = evaluation.accuracy(original, test)
    results = {}
    memory = spec.get("memory", MEMORY)
    runs = (("ogd", "ogd", {"objective": "ascent", "stop_acc": held_out, "memory_size": memory}),
            # the same work at every size: FIXED_EPOCHS passes over the forget set, no stopping rule
            ("ogd-fixed", "ogd", {"objective": "ascent", "stop_acc": 0.0, "max_epochs": FIXED_EPOCHS,
                                  "memory_size": memory}),
            ("retrain", "retrain", {"epochs": RETRAIN_EPOCHS}))
    for label, method, options in runs:
        distributed.barrier()
        base = _rss_mb()
        _peak_reset(device)
        start = time.perf_counter()
        with count_steps() as work:
            outcome = methods.unlearn(original, s.forget, s.retain, method=method, seed=0, device=device,
                                     progress=False, **options)
        seconds = time.perf_counter() - start
        steps = work.steps
        peak = torch.tensor([_peak_mb(device, base), seconds, outcome.seconds, float(steps)])
        if world > 1:
            parts = [torch.zeros(4) for _ in range(world)]
            torch.distributed.all_gather(parts, peak)
            peak = torch.stack(parts).max(0).values
        results[label] = {"peak_mb": float(peak[0]), "seconds": float(peak[1]), "method_seconds": float(peak[2]),
                           "steps": int(peak[3]), "ms_per_step": 1000.0 * float(peak[2]) / max(1, int(peak[3]))}
    if rank == 0:
        Path(out).write_text(json.dumps(results))
    if world > 1:
        torch.distributed.barrier()  # nobody tears the group down while another rank still uses it
        torch.distributed.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def measure(spec: dict[str, Any], processes: int) -> dict[str, Any]:
    """Run one point in ``processes`` fresh processes; return {method: {"seconds", "peak_mb"}}."""
    import torch.multiprocessing as mp

    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "result.json")
        mp.spawn(_point, args=(processes, _free_port(), spec, out), nprocs=processes, join=True)
        return json.loads(Path(out).read_text())


def run(quick: bool, seeds: int | None, data: str | None, device: torch.device, progress: bool | None
        ) -> dict[str, Any]:
    import logging

    log = logging.getLogger("netfix.bench")
    name = pick_dataset(data, quick)
    sizes = (1_000, 2_000, 4_000) if quick else TRAIN_SIZES
    forgets = (50, 200, 400) if quick else FORGET_SIZES
    fixed = 200 if quick else FIXED_FORGET
    procs = [1, 2] if device.type == "cpu" or torch.cuda.device_count() >= 2 else [1]
    memories = (50, 100, 300) if quick else MEMORY_SIZES
    points = [("train-size", n, fixed, MEMORY) for n in sizes] + \
        [("forget-size", sizes[-1], f, MEMORY) for f in forgets] + \
        [("memory-size", sizes[-1], fixed, m) for m in memories]
    rows: list[dict[str, Any]] = []
    for sweep, n, f, mem in points:
        for p in procs:
            res = measure({"data": name, "n_train": n, "n_forget": f, "memory": mem, "device": str(device)}, p)
            for method in ("ogd", "ogd-fixed", "retrain"):
                rows.append({"sweep": sweep, "n_train": n, "n_forget": f, "memory": mem, "processes": p,
                             "method": method,
                             **res[method], "rte": 100.0 * res[method]["seconds"] / res["retrain"]["seconds"],
                             "steps_pct": percent(res[method]["steps"], res["retrain"]["steps"])})
            log.info("%s n=%d f=%d m=%d p=%d: ogd %.1f s, retrain %.1f s", sweep, n, f, mem, p,
                     res["ogd"]["seconds"], res["retrain"]["seconds"])
    return {"dataset": name, "seeds": [0], "reference_seconds": None, "rows": rows, "memory": MEMORY,
            "original_epochs": ORIGINAL_EPOCHS, "retrain_epochs": RETRAIN_EPOCHS, "batch_size": BATCH,
            "processes": procs}


def display(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for r in rows:
        o = dict(r)
        o["seconds"] = f"{r['seconds']:.2f}"
        if r.get("method_seconds") is not None:
            o["method_seconds"] = f"{r['method_seconds']:.2f}"
        if r.get("ms_per_step") is not None:
            o["ms_per_step"] = f"{r['ms_per_step']:.1f}"
        o["rte"] = f"{r['rte']:.1f}"
        o["peak_mb"] = f"{r['peak_mb']:.0f}"
        out.append(o)
    return show_work(out)
