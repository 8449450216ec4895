"""``netfix bench zoo``: netfix's defaults on models it did not build — every unlearning method against a model
retrained from scratch *the way the original was trained*, and single edits, on each zoo architecture.

Architectures (:mod:`netfix.bench.zoo_models`, ``--archs``): Hugging Face ViT and ResNet classifiers (random init,
built from configs, offline), a residual BatchNorm + Dropout network with a non-sequential forward, an MLP-Mixer
with LayerNorm and GELU, and a model that takes its input as a keyword and returns a dict — each trained by a plain
PyTorch loop (:func:`~netfix.bench.zoo_models.train_plain`, AdamW + cosine), not by netfix. The reference for each
request is that same loop, from a fresh initialisation, on what should remain. With ``--device cuda`` netfix's own
``resnet18`` and ``vit`` at full size (:data:`~netfix.bench.zoo_models.FULL_SIZE`: the literature's 11.2M-parameter
CIFAR ResNet-18, ViT-Tiny) join the zoo, trained by the same loop on the GPU.

Data: Fashion-MNIST when installed (a stratified subset of :data:`SUBSET` training images, so a CPU run ends in
hours, not days; 2,000 of the training images it leaves out are the held-out data of the methods that read one;
the test split for measurement), else mnist5k; ``--quick``: digits, three architectures, two
methods. Requests: ``class_forget`` (class 0), ``random_forget`` (10 %), ``backdoor`` (5 % of the training images
stamped with a trigger and labelled 0: the original learns it; unlearning alone, and unlearning then relearning the
corrected labels, rows ``METHOD+relearn``). Every method runs with its library defaults (netfix's guard included).

Rows: ``arch``, ``scenario``, ``method``, ``UA``, ``RA``, ``TA``, ``MIA`` (MIA-efficacy), ``ASR`` (backdoor: % of
triggered test images predicted as the attacker's class), ``gap`` (mean |difference| to the reference over UA,
RA, TA, MIA), ``seconds``, ``rte`` (% of the reference's training seconds, same run), ``steps`` (optimizer steps:
the reference's are epochs × ⌈N / 64⌉ of the plain loop, less batches of one sample) and ``steps_pct`` (% of the
reference's steps); and per architecture an ``edits`` row: 100 single corrections (test images the original gets
wrong, edited to their true label, each on the original model) with ``edit_success`` (%), ``drawdown``
(test-accuracy points lost per edit, measured on the rest of the test set), ``mean_steps`` (editor steps per edit)
and ``latency_ms``.
"""

from __future__ import annotations

import logging
import time
import warnings
from typing import Any

import numpy as np
import torch

from .. import data as datasets
from .. import scenarios
from ..methods.editing import measure_edits
from ..errors import ConfigError, unknown
from ..evaluation import evaluate, predict
from ..methods import available as available_methods
from ..methods import get as get_method
from ..methods import relearn, unlearn
from . import WORK_COLUMNS, counted, percent, pick_dataset, show_work
from .zoo_models import FULL_SIZE, ZOO, build, train_plain

log = logging.getLogger("netfix.bench")

COLUMNS = ("arch", "scenario", "method", "UA", "RA", "TA", "MIA", "ASR", "gap", "seconds", "rte", *WORK_COLUMNS,
           "edit_success", "drawdown", "mean_steps")
SUBSET = 5_000  # Fashion-MNIST training images (stratified): five architectures x every request fit a CPU
HELDOUT = 2_000  # training images left out of the subset: held-out data for the methods that read it
EPOCHS = {"digits": 30, "mnist5k": 15, "fashion-mnist": 10}
QUICK_ARCHS = ("residual-bn", "keyword", "hf-vit")
QUICK_METHODS = ("ogd", "random-label")
KEYWORD = {"keyword": "image"}
RELEARN = ("ogd", "finetune")  # backdoor: unlearn, then relearn the corrected labels with the same method


def _data(name: str) -> tuple[Any, Any, Any]:
    """(train, heldout, test): the training subset; :data:`HELDOUT` training images it leaves out (or, on a set
    with none to spare, a stratified tenth carved from it), never trained on — the ``heldout=`` of the methods that
    read one; the test split for measurement."""
    full, test = datasets.load(name)
    rng = np.random.default_rng(0)
    labels = full.y.numpy()

    def stratified(pool: np.ndarray, n: int) -> np.ndarray:
        per = max(1, n // full.num_classes)
        return np.sort(np.concatenate([rng.choice(pool[labels[pool] == c], min(per, int((labels[pool] == c).sum())),
                                                  replace=False) for c in range(full.num_classes)]))

    everything = np.arange(len(full))
    if len(full) > SUBSET + HELDOUT:
        idx = stratified(everything, SUBSET)
        held = stratified(np.setdiff1d(everything, idx), HELDOUT)
    else:
        held = stratified(everything, len(full) // 10)
        idx = np.setdiff1d(everything, held)
    return full.subset(idx, f"{name}/train"), full.subset(held, f"{name}/heldout"), test


def _fit(arch: str, data: Any, epochs: int, seed: int, device: torch.device) -> tuple[torch.nn.Module, float, int]:
    """A zoo model trained by the plain loop: (model, seconds, optimizer steps)."""
    start = time.perf_counter()
    model, steps = counted(lambda: train_plain(build(arch, data.input_shape, data.num_classes, seed=seed), data,
                                               epochs=epochs, seed=seed, keyword=KEYWORD.get(arch), device=device))
    return model, time.perf_counter() - start, steps


def _row(m: Any, ref: Any, arch: str, scenario: str, method: str, seconds: float, ref_seconds: float,
         steps: int, ref_steps: int) -> dict[str, Any]:
    row = {"arch": arch, "scenario": scenario, "method": method, "UA": m.get("ua"), "RA": m.get("retain_acc"),
           "TA": m.get("test_acc"), "MIA": m.get("mia_efficacy"), "ASR": m.get("fault_rate"),
           "seconds": seconds, "rte": percent(seconds, ref_seconds), "steps": steps,
           "steps_pct": percent(steps, ref_steps)}
    keys = [k for k in ("UA", "RA", "TA", "MIA") if row[k] is not None and ref.get(k) is not None]
    row["gap"] = float(np.mean([abs(row[k] - ref[k]) for k in keys])) if keys else None
    return row


def _scenario(name: str, train: Any, test: Any, seed: int) -> Any:
    if name == "class_forget":
        return scenarios.class_forget(train, test, cls=0)
    if name == "random_forget":
        return scenarios.random_forget(train, test, fraction=0.1, seed=seed)
    return scenarios.backdoor(train, test, target=0, fraction=0.05, seed=seed)


def _edits(model: torch.nn.Module, test: Any, n: int, seed: int) -> dict[str, Any]:
    """``n`` corrections: test images the model gets wrong, each edited on the original model to its true label;
    drawdown measured on the other test images."""
    pred = predict(model, test).argmax(1)
    wrong = torch.nonzero(pred != test.y).squeeze(1)
    chosen = wrong[torch.randperm(len(wrong), generator=torch.Generator().manual_seed(seed))[:n]]
    rest = test.subset(np.setdiff1d(np.arange(len(test)), chosen.numpy()), "drawdown")
    m = measure_edits(model, test.X[chosen], test.y[chosen], rest, editor="rmsprop", seed=seed, progress=False)
    return {"edit_success": m.success_rate, "drawdown": m.drawdown, "mean_steps": m.mean_steps,
            "latency_ms": m.latency_ms, "edits": m.n_edits}


def run(quick: bool, seeds: int | None, data: str | None, device: torch.device, progress: bool | None,
        methods: str | None = None, archs: str | None = None, edits: int | None = None) -> dict[str, Any]:
    name = "digits" if quick and not data else pick_dataset(data, quick)
    gpu = device.type == "cuda"
    arch_list = [a.strip() for a in archs.split(",")] if archs else \
        list(QUICK_ARCHS if quick else list(ZOO) + (list(FULL_SIZE) if gpu else []))
    for a in arch_list:
        if a not in ZOO and a not in FULL_SIZE:
            raise unknown("model", a, list(ZOO) + list(FULL_SIZE), "--archs")
    wanted = [m.strip() for m in methods.split(",")] if methods else \
        [m for m in (QUICK_METHODS if quick else available_methods()) if m not in ("mixed-linear", "retrain")]
    for m in wanted:
        if m not in available_methods() or m == "mixed-linear":
            raise unknown("method", m, [x for x in available_methods() if x != "mixed-linear"], "--methods")
    if seeds not in (None, 1):
        raise ConfigError("--seeds: bench zoo runs one seed (each architecture is trained five times already).")
    n_edits = edits or (20 if quick else 100)
    train, heldout, test = _data(name)
    epochs = EPOCHS.get(name, 10)
    requests = ("class_forget", "backdoor") if quick else ("class_forget", "random_forget", "backdoor")
    rows: list[dict[str, Any]] = []
    reference_seconds: list[float] = []
    for arch in arch_list:
        log.info("%s: training the original (%d epochs, %d images)", arch, epochs, len(train))
        clean, clean_seconds, clean_steps = _fit(arch, train, epochs, 0, device)
        rows.append({"arch": arch, "scenario": "-", "method": "original", **_accuracies(clean, test),
                     "seconds": clean_seconds, "steps": clean_steps})
        for request in requests:
            s = _scenario(request, train, test, 0)
            original = clean if request != "backdoor" else _fit(arch, s.train, epochs, 0, device)[0]
            log.info("%s / %s: the reference (the same loop on what remains)", arch, request)
            reference, ref_seconds, ref_steps = _fit(arch, s.retain, epochs, 1, device)
            reference_seconds.append(ref_seconds)
            ref_m = evaluate(reference, scenario=s)
            ref = {"UA": ref_m.get("ua"), "RA": ref_m.get("retain_acc"), "TA": ref_m.get("test_acc"),
                   "MIA": ref_m.get("mia_efficacy"), "seconds": ref_seconds, "steps": ref_steps}
            rows.append(_row(ref_m, ref, arch, request, "retrain", ref_seconds, ref_seconds, ref_steps, ref_steps))
            rows.append(_row(evaluate(original, scenario=s), ref, arch, request, "original", 0.0, ref_seconds, 0,
                             ref_steps))
            for method in wanted:
                rows += _method_rows(original, s, method, request, arch, ref, device, progress, heldout)
        rows.append({"arch": arch, "scenario": "edits", "method": "rmsprop", **_edits(clean, test, n_edits, 0)})
    return {"dataset": name, "seeds": [0], "reference_seconds": float(np.mean(reference_seconds)),
            "rows": rows, "archs": arch_list, "epochs": epochs, "train_images": len(train)}


def _method_rows(original: Any, s: Any, method: str, request: str, arch: str, ref: dict[str, Any],
                 device: torch.device, progress: bool | None, heldout: Any = None) -> list[dict[str, Any]]:
    """``method``'s row (and for a backdoor, its unlearn + relearn row) against ``ref``: the reference's measures,
    seconds and steps."""
    log.info("%s / %s: %s", arch, request, method)
    out_rows = []
    extra = {"heldout": heldout} if heldout is not None and get_method(method).heldout else {}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out, steps = counted(lambda: unlearn(original, s.forget, s.retain, method=method, device=device,
                                                 progress=progress, **extra))
            out_rows.append(_row(evaluate(out.model, scenario=s), ref, arch, request, method, out.seconds,
                                 ref["seconds"], steps, ref["steps"]))
            if request == "backdoor" and method in RELEARN:
                fixed, fixed_steps = counted(lambda: relearn(out.model, s.corrected, protect=s.retain, method=method,
                                                             device=device, progress=progress))
                out_rows.append(_row(evaluate(fixed.model, scenario=s), ref, arch, request, f"{method}+relearn",
                                     out.seconds + fixed.seconds, ref["seconds"], steps + fixed_steps,
                                     ref["steps"]))
    except Exception as e:  # noqa: BLE001 - a failing method is a row, not the end of the run
        out_rows.append({"arch": arch, "scenario": request, "method": method, "error": f"{type(e).__name__}: {e}"})
    return out_rows


def _accuracies(model: Any, test: Any) -> dict[str, Any]:
    return {"TA": evaluate(model, test=test)["test_acc"]}


def display(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Table cells: the work columns readable (:func:`netfix.bench.show_work`)."""
    return show_work(rows)
