"""``netfix bench memory``: memory and throughput over a disk-backed dataset as it grows (issue 19).

Data: N generated 3×32×32 images (uint8, ten classes, each a noisy class pattern) written as memory-mapped ``.npy``
files and read through :class:`netfix.formats.ArrayDataset` (pixels / 255) — a user's dataset on disk, streamed
(``mode=stream``), or copied into memory first (``mode=memory``, the fast path; only at the smallest N, for the
throughput comparison). Model: netfix's MLP (256 hidden units), trained for one epoch on the first 10,000 images.

Operations, each in a fresh process (``multiprocessing`` spawn) so that one's memory does not hide another's:
``evaluate`` (test accuracy over all N images), ``ogd`` (``netfix.unlearn`` of a deletion request of the first 500
images, ``netfix.data.Request``: the retain set is the other N − 500) and ``salun`` (the same request, one round).
Rows: ``n``, ``op``, ``mode``, ``seconds`` (the whole call), ``steps`` (the optimizer steps it took; 0 for
``evaluate``), ``samples_per_s`` (N / seconds), ``peak_mb`` (the peak
*anonymous* resident memory the call added — ``RssAnon`` sampled every 5 ms: what the process allocates; the
memmap's file pages are the kernel's reclaimable page cache, not the process's) and ``growth`` (peak_mb relative to
the same op's at the smallest N).
"""

from __future__ import annotations

import multiprocessing
import tempfile
import threading
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

COLUMNS = ("n", "op", "mode", "seconds", "steps", "samples_per_s", "peak_mb", "growth")
SIZES = (10_000, 50_000, 200_000)
QUICK_SIZES = (2_000, 10_000)
FORGET = 500
OPS = ("evaluate", "ogd", "salun")


def _write(folder: Path, n: int, seed: int = 0) -> tuple[Path, Path]:
    """``n`` images (uint8 3×32×32) and labels as .npy files, written in chunks (memory flat here too)."""
    rng = np.random.default_rng(seed)
    patterns = rng.integers(0, 256, (10, 3, 32, 32), dtype=np.uint8)
    x_path, y_path = folder / f"x{n}.npy", folder / f"y{n}.npy"
    labels = rng.integers(0, 10, n).astype(np.int64)
    X = np.lib.format.open_memmap(x_path, mode="w+", dtype=np.uint8, shape=(n, 3, 32, 32))
    for start in range(0, n, 10_000):
        y = labels[start:start + 10_000]
        noise = rng.integers(0, 96, (len(y), 3, 32, 32), dtype=np.uint8)
        X[start:start + len(y)] = (patterns[y] // 2 + noise).astype(np.uint8)
    X.flush()
    del X
    np.save(y_path, labels)
    return x_path, y_path


def _scale(x: torch.Tensor) -> torch.Tensor:
    return x / 255.0


def _anon_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _measure(args: tuple[str, str, str, str, int]) -> dict[str, Any]:
    """In a fresh process: run ``op`` over the dataset at the paths, return seconds, optimizer steps and peak
    anonymous memory."""
    op, mode, x_path, y_path, _ = args
    torch.set_num_threads(1)
    from .. import data as datasets
    from .. import io, methods
    from ..evaluation import evaluate
    from ..formats import ArrayDataset
    from . import count_steps

    ds = ArrayDataset(x_path, y_path, transform=_scale)
    model = io.load(Path(x_path).parent / "model")
    base = _anon_mb()
    peak = [base]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], _anon_mb())
            time.sleep(0.005)

    watcher = threading.Thread(target=sample, daemon=True)
    watcher.start()
    start = time.perf_counter()
    data = datasets.as_data(ds, "data", stream=mode == "stream")
    with count_steps() as work:
        if op == "evaluate":
            evaluate(model, test=data)
        else:
            opts: dict[str, Any] = {"epochs": 1} if op == "salun" else {}
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                methods.unlearn(model, datasets.Request(data, np.arange(FORGET)), method=op, progress=False,
                               **opts)
    seconds = time.perf_counter() - start
    done.set()
    watcher.join()
    return {"seconds": seconds, "steps": work.steps, "peak_mb": max(peak[0], _anon_mb()) - base}


def run(quick: bool, seeds: int | None, data: str | None, device: torch.device, progress: bool | None
        ) -> dict[str, Any]:
    from .. import data as datasets
    from .. import io, models, training
    from ..formats import ArrayDataset

    sizes = QUICK_SIZES if quick else SIZES
    rows: list[dict[str, Any]] = []
    ctx = multiprocessing.get_context("spawn")
    with tempfile.TemporaryDirectory(prefix="netfix-memory-") as tmp:
        folder = Path(tmp)
        for n in sizes:
            x_path, y_path = _write(folder, n)
            if n == sizes[0]:
                train = datasets.as_data(ArrayDataset(x_path, y_path, transform=_scale), "train",
                                            stream=False).subset(np.arange(min(n, 10_000)))
                m = models.build("mlp", (3, 32, 32), 10, hidden=(256,), seed=0)
                io.save(training.train(m, train, epochs=1, progress=False).model, folder / "model")
            modes = ("stream", "memory") if n == sizes[0] else ("stream",)
            for op in OPS:
                for mode in modes:
                    with ctx.Pool(1) as pool:
                        got = pool.map(_measure, [(op, mode, str(x_path), str(y_path), n)])[0]
                    rows.append({"n": n, "op": op, "mode": mode, **got, "samples_per_s": n / got["seconds"]})
            x_path.unlink()
    for r in rows:
        first = next(q for q in rows if q["op"] == r["op"] and q["mode"] == r["mode"])
        r["growth"] = r["peak_mb"] / first["peak_mb"] if first["peak_mb"] > 0 else None
    return {"dataset": f"generated 3x32x32 memmap ({', '.join(map(str, sizes))} images)", "seeds": [0], "rows": rows}
