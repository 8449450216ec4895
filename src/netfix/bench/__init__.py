"""Benchmarks: ``netfix bench NAME [--quick] [--seeds N] [--json FILE] [--markdown FILE]``.

Every bench returns (and with ``json_path`` writes, atomically) one JSON document of this shape::

    {"bench": "ogd-debug", "dataset": "mnist5k", "quick": false, "seeds": [0, 1, 2],
     "reference_seconds": 41.2, "rows": [{"method": ..., "seconds": ..., "rte": ..., ...}],
     "env": {"torch": ..., "device": ..., "threads": ..., "netfix": ...}}

``rte`` is a row's seconds as a percentage of the retrain reference's seconds measured in the same run (same
dataset, scenario and seed): machines are noisy, ratios within one run are not. With ``markdown_path`` the bench's
table replaces the block between ``<!-- bench:KEY -->`` and ``<!-- /bench:KEY -->`` in that file (appended when
absent), so docs/results.md always shows what the command printed.

Work beside seconds: rows that time an operation also report its ``steps`` — the optimizer steps it took, counted
by :func:`count_steps` (every ``torch.optim`` step inside the call, a guard's retries included; an operation with no
optimizer, such as ``ssd`` or a Newton step, takes 0) — and, where a retrain reference runs, ``steps_pct`` (% of
that retrain's steps, :func:`percent`). A from-scratch retrain of E epochs over N samples in batches of B takes
E × ⌈N / B⌉ steps (BatchNorm models skip a final batch of one sample).

Adding a bench = one module with ``run(...) -> dict`` and ``COLUMNS``, registered in :data:`BENCHES` with its
options.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import math
import re
import textwrap
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import torch
from torch.optim.optimizer import register_optimizer_step_post_hook

from .._runtime import env_info, resolve_device
from .._tables import markdown_table, text_table
from ..io import atomic_write
from ..registry import Registry

__all__ = ["BENCHES", "BenchInfo", "BenchOption", "available", "run", "summarise", "update_markdown", "with_std",
           "pick_dataset", "StepCount", "count_steps", "counted", "percent", "memory_grads", "show_work",
           "WORK_COLUMNS"]

T = TypeVar("T")


@dataclass(frozen=True)
class BenchOption:
    """An option a bench's ``run`` takes besides the common ones, as ``netfix bench NAME --OPTION VALUE`` takes
    it."""

    help: str                    # what it sets for this bench, with its default
    type: type = str             # str, or int for a count (>= 1)
    metavar: str | None = None   # the value's name in --help (default: the option's)


@dataclass(frozen=True)
class BenchInfo:
    """A bench: its module, a one-line summary, how long it takes on one CPU core (``OMP_NUM_THREADS=1``) —
    ``quick`` measured with ``--quick`` on a 2-core machine shared with other work, ``full`` the default run's
    wall time as recorded in docs/bench/*.json (runs with 1–2 threads), or an estimate from its recorded parts —
    and the options its ``run`` takes besides the common ones (keyword -> :class:`BenchOption`), in the order a
    command line and a results key list them."""

    module: str
    summary: str
    quick: str
    full: str
    options: dict[str, BenchOption] = field(default_factory=dict, hash=False)

    def describe(self) -> str:
        """The summary and the durations on one line (:func:`available`)."""
        return f"{self.summary}. --quick: {self.quick}; full: {self.full}"

    def help(self, width: int = 100) -> str:
        """The bench's name, its summary wrapped and how long it takes, as ``netfix bench list`` and ``netfix bench
        NAME --help`` show it."""
        name = next(k for k, v in BENCHES.items() if v is self)
        lines = textwrap.wrap(f"{self.summary}.", width, initial_indent=f"{name:<15} ", subsequent_indent=" " * 16)
        lines += textwrap.wrap(f"--quick: {self.quick}; full: {self.full}", width, initial_indent=" " * 16,
                               subsequent_indent=" " * 16)
        return "\n".join(lines)


BENCHES: Registry[BenchInfo] = Registry("bench", "bench")
_METHOD_NAMES = BenchOption("comma-separated method names (default: every registered method)")
BENCHES.add("ogd-debug", BenchInfo(
    "ogd_debug", "OGD debugging: unlearn + relearn a mislabel and a backdoor, beside finetune and retrain",
    "~20 s on one CPU core", "~1 min on mnist5k, 3 seeds",
    {"scenario": BenchOption("only this scenario (mislabel or backdoor)")}))
BENCHES.add("grad-memory", BenchInfo(
    "grad_memory", "building the OGD memory: batched engine vs a per-sample loop", "~10 s on one CPU core", "~15 s",
    {"samples": BenchOption("memory samples M (default 300, quick 100)", int),
     "variant": BenchOption("gtl, ave or all (default gtl)")}))
BENCHES.add("unlearn", BenchInfo(
    "unlearn", "every unlearning method vs retrain: random_forget and class_forget", "~35 s on one CPU core",
    "about 2 h on Fashion-MNIST: the MLP 14 min for 3 seeds, LeNet 25 min a seed, mixed-linear 19 min",
    {"scenario": BenchOption("only this scenario (random_forget or class_forget)"), "methods": _METHOD_NAMES,
     "archs": BenchOption("comma-separated architectures (default mlp,lenet; quick: mlp)")}))
BENCHES.add("forget-score", BenchInfo(
    "forget_score", "the NeurIPS 2023 challenge's forgetting score over N models", "~40 s on one CPU core",
    "~5 min with 16 models, 2.6 min with 8",
    {"methods": _METHOD_NAMES, "models": BenchOption("models per method (N, default 16)", int)}))
BENCHES.add("editable", BenchInfo(
    "editable", "edit single predictions of a ResNet: ordinary vs Editable Training, every editor, fine-tuning and "
                "a lookup table", "~4.5 min on one CPU core",
    "~21 min on Fashion-MNIST, 66 min with --sequential 1000",
    {"editors": BenchOption("comma-separated editors (default: all four)"),
     "edits": BenchOption("number of edits N (default 1000, quick 100)", int),
     "sequential": BenchOption("also accumulate edits 1..N on one model per editor (the adaptor, the lookup table, "
                               "every editor on every arm, and Sequential Editable Training), measured every 10 (the "
                               "full bench: --sequential 1000)", int, "N")}))
BENCHES.add("mixed-linear", BenchInfo(
    "mixed_linear", "mixed-privacy forgetting: Newton-step forgets vs retraining the linear part, with the bound",
    "~1.5 min on one CPU core", "~8 min on Fashion-MNIST"))
BENCHES.add("forget-relearn", BenchInfo(
    "forget_relearn", "forget-and-relearn schedules vs an equal-compute long baseline on noisy labels, the "
                      "forgetting analysis, repair", "~40 s on one CPU core", "~6 min on Fashion-MNIST"))
BENCHES.add("scale", BenchInfo(
    "scale", "cost of ogd unlearning and of retraining vs training-set and forget-set size, 1 vs 2 processes (DDP)",
    "~3 min on one CPU core", "~7 min on Fashion-MNIST"))
BENCHES.add("memory", BenchInfo(
    "memory", "peak memory and throughput of evaluate / ogd / salun over a disk-backed dataset of 10k-200k images, "
              "streamed vs in memory", "~1 min on one CPU core", "~10 min"))
BENCHES.add("zoo", BenchInfo(
    "zoo", "netfix's defaults on models it did not build (Hugging Face ViT and ResNet, BatchNorm, LayerNorm, keyword "
           "inputs): every method vs the user's own retraining, and edits", "~1 min on one CPU core",
    "many hours: 19-78 min an architecture for 5 methods",
    {"methods": BenchOption("comma-separated method names (default: every registered method but retrain and "
                            "mixed-linear; quick: ogd, random-label)"),
     "archs": BenchOption("comma-separated architectures (default: every zoo model)"),
     "edits": BenchOption("single edits per architecture (default 100, quick 20)", int)}))


@dataclass
class StepCount:
    """Optimizer steps taken while :func:`count_steps` counted."""

    steps: int = 0


@contextlib.contextmanager
def count_steps() -> Iterator[StepCount]:
    """Count every ``torch.optim`` optimizer step taken inside the block (in this process, by any optimizer: a
    method's own, a guard's retries, a user's training loop)::

        with count_steps() as work:
            out = netfix.unlearn(...)
        work.steps

    Counting the steps themselves, not reading them off ``Outcome.history``: some methods log per phase or per
    group (``scrub``, ``rum``) and a guarded method keeps only its last try's history."""
    count = StepCount()

    def hook(optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        count.steps += 1

    handle = register_optimizer_step_post_hook(hook)
    try:
        yield count
    finally:
        handle.remove()


def counted(fn: Callable[[], T]) -> tuple[T, int]:
    """``(fn(), the optimizer steps it took)`` (:func:`count_steps`)."""
    with count_steps() as work:
        result = fn()
    return result, work.steps


def percent(value: "float | None", reference: "float | None") -> float | None:
    """``value`` as a % of ``reference`` (rte for seconds, steps_pct for steps); None when either is missing or the
    reference is 0."""
    if value is None or not reference:
        return None
    return 100.0 * value / reference


def memory_grads(history: Sequence[dict[str, Any]]) -> int:
    """OGD's other work besides its steps: the output gradients its memory holds (the memory basis's rank — one
    per retained sample for the default ``gtl`` variant), summed over the phases in ``history`` (an unlearn and a
    relearn each build one); 0 for a history without an OGD memory."""
    return sum(int(h.get("memory_rank", 0)) for h in history)


WORK_COLUMNS = ("steps", "steps_pct")  # the work columns a timed row shows beside its seconds (and rte)


def show_work(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows for a table with the work cells readable: ``steps``, ``train_steps`` and ``memory_grads`` whole (means
    over seeds rounded), ``steps_pct`` to one decimal; cells that are not numbers (missing, or already text) stay."""
    out = []
    for r in rows:
        shown = dict(r)
        for key, digits in (("steps", 0), ("train_steps", 0), ("memory_grads", 0), ("steps_pct", 1)):
            v = r.get(key)
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                shown[key] = f"{v:.{digits}f}"
        out.append(shown)
    return out


def row_text(row: dict[str, Any], keys: "Sequence[str] | None" = None) -> str:
    """One result row as a log line: ``method rmsprop: success_rate 100.0, drawdown 0.54``."""
    keys = list(row) if keys is None else list(keys)
    parts = [f"{k} {row[k]:.4g}" if isinstance(row.get(k), float) else f"{k} {row.get(k)}" for k in keys]
    return ", ".join(parts)


def pick_dataset(data: str | None, quick: bool = False) -> str:
    """The bench's dataset: ``data`` when given; else mnist5k for a quick run, and Fashion-MNIST when installed
    (mnist5k when not) for a full one."""
    if data:
        return data
    if quick:
        return "mnist5k"
    from .. import data as datasets

    return "fashion-mnist" if datasets.available()["fashion-mnist"]["present"] else "mnist5k"


def available() -> dict[str, str]:
    """Bench name -> one-line summary with how long it takes (:meth:`BenchInfo.describe`)."""
    return {k: v.describe() for k, v in BENCHES.items()}


def run(name: str, *, quick: bool = False, seeds: int | None = None, data: str | None = None,
        device: "torch.device | str | None" = None, progress: bool | None = None,
        json_path: "str | Path | None" = None, markdown_path: "str | Path | None" = None,
        **options: Any) -> dict[str, Any]:
    """Run bench ``name`` and return its JSON document (see the module docstring)."""
    mod = importlib.import_module(f"{__name__}.{BENCHES.get(name).module}")
    dev = resolve_device(device)
    start = time.perf_counter()
    result = mod.run(quick=quick, seeds=seeds, data=data, device=dev, progress=progress, **options)
    doc = {"bench": name, "dataset": result.pop("dataset"), "quick": quick, "seeds": result.pop("seeds"),
           "reference_seconds": result.pop("reference_seconds", None), "rows": result.pop("rows"),
           **result, "wall_seconds": time.perf_counter() - start, "env": env_info(dev),
           "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    doc["command"] = command_line(name, quick, seeds, data, device, options, json_path)
    shown = mod.display(doc["rows"]) if hasattr(mod, "display") else doc["rows"]
    doc["table"] = markdown_table(shown, mod.COLUMNS)
    extra = doc.get("extra_tables") or []  # further tables a bench returns: [{"title", "columns", "rows"}]
    doc["table"] += "".join(f"\n\n{t['title']}\n\n{markdown_table(t['rows'], t['columns'])}" for t in extra)
    if json_path is not None:
        atomic_write(json_path, json.dumps(doc, indent=2, default=_jsonable).encode())
    if markdown_path is not None:
        tag = "".join(f":{v}" for v in options.values() if v is not None)
        key = f"{name}:{doc['dataset']}{tag}{':quick' if quick else ''}{':' + dev.type if dev.type != 'cpu' else ''}"
        update_markdown(markdown_path, key, f"`{doc['command']}`\n\n{doc['table']}")
    doc["text"] = text_table(shown, mod.COLUMNS) + "".join(
        f"\n\n{t['title']}\n{text_table(t['rows'], t['columns'])}" for t in extra)
    return doc


def command_line(name: str, quick: bool, seeds: int | None, data: str | None, device: Any,
                 options: dict[str, Any], json_path: Any) -> str:
    parts = ["netfix bench", name] + (["--quick"] if quick else []) + ([f"--seeds {seeds}"] if seeds else [])
    parts += [f"--data {data}"] if data else []
    parts += [f"--device {device}"] if device else []
    parts += [f"--{k.replace('_', '-')} {v}" for k, v in options.items() if v is not None]
    parts += [f"--json {json_path}"] if json_path else []
    return " ".join(parts)


def _jsonable(v: Any) -> Any:
    if isinstance(v, torch.Tensor):
        return v.tolist()
    if hasattr(v, "item"):
        return v.item()
    return str(v)


def summarise(rows: Sequence[dict[str, Any]], keys: Sequence[str], metrics: Sequence[str]) -> list[dict[str, Any]]:
    """Group ``rows`` by ``keys`` (first-seen order) and report each metric's mean, plus ``<metric>_std`` (sample
    standard deviation over the group; 0 for one seed) and ``n``."""
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault(tuple(r.get(k) for k in keys), []).append(r)
    out = []
    for key, members in groups.items():
        row: dict[str, Any] = dict(zip(keys, key))
        for m in metrics:
            vals = [float(r[m]) for r in members if r.get(m) is not None]
            if not vals:
                continue
            mean = sum(vals) / len(vals)
            row[m] = mean
            row[f"{m}_std"] = math.sqrt(sum((v - mean) ** 2 for v in vals) / (len(vals) - 1)) if len(vals) > 1 else 0.0
        row["n"] = len(members)
        out.append(row)
    return out


def with_std(rows: Sequence[dict[str, Any]], metrics: Sequence[str], digits: int = 2) -> list[dict[str, Any]]:
    """Rows for a table: each metric as "mean ± std" where more than one seed went into it."""
    out = []
    for r in rows:
        shown = dict(r)
        for m in metrics:
            if r.get(m) is not None and r.get("n", 1) > 1 and r.get(f"{m}_std") is not None:
                shown[m] = f"{r[m]:.{digits}f} ± {r[f'{m}_std']:.{digits}f}"
        out.append(shown)
    return out


def update_markdown(path: "str | Path", key: str, body: str) -> None:
    """Replace the block ``<!-- bench:KEY -->…<!-- /bench:KEY -->`` in ``path`` with ``body`` (append if absent);
    the file is rewritten atomically."""
    path = Path(path)
    text = path.read_text() if path.exists() else ""
    start, end = f"<!-- bench:{key} -->", f"<!-- /bench:{key} -->"
    block = f"{start}\n{body}\n{end}"
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.S)
    text = pattern.sub(lambda _: block, text) if pattern.search(text) else text.rstrip("\n") + f"\n\n{block}\n"
    atomic_write(path, text.encode())
