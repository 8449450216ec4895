"""The one training loop every netfix operation reuses, and the :class:`Outcome` every operation returns.

The loop holds no global state: the sampler is injectable (a seeded ``RandomSampler`` by default; a
``DistributedSampler`` under torchrun, whose ``set_epoch`` is called each epoch), randomness is seeded locally
(:func:`netfix._runtime.seeded`), and the caller's model is copied, never changed.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, is_dataclass, replace
from typing import Any, Protocol, runtime_checkable

import torch
from torch import nn
from torch.utils.data import RandomSampler, Sampler
from tqdm.auto import tqdm

from . import card, distributed
from ._runtime import check_model, copy_model, model_device, resolve_device, seeded, show_progress
from .adapter import logits_model
from .data import DataLike, LabeledData, as_data, batches, check_range
from .errors import ConfigError, DivergedError
from .recipe import RECIPE_FIELDS, TrainConfig
from .gradients import param_names
from .streaming import move
from .train_fn import TrainFn, check_train_fn, describe_train_fn, train_with

__all__ = ["Outcome", "TrainConfig", "TrainFn", "train", "fit", "model_view", "num_outputs", "make_optimizer",
           "check_train_fn", "train_with", "describe_train_fn"]



@dataclass
class Outcome:
    """What every operation returns: the new ``model``, the ``method`` name, every option used (``config``,
    defaults included), wall-clock ``seconds`` and a ``history`` of per-epoch / per-step dicts."""

    model: nn.Module
    method: str
    config: dict[str, Any]
    seconds: float
    history: list[dict[str, Any]] = field(default_factory=list)


@runtime_checkable
class Schedule(Protocol):
    """What :func:`train` runs instead of its plain loop when given ``schedule=`` (a training schedule such as
    :class:`netfix.methods.forget_relearn.ForgetRelearn`). ``train`` knows only this protocol, not the method
    families."""

    @property
    def epochs(self) -> int:
        """The epochs the whole schedule takes (``train``'s ``epochs``, if given, must agree)."""

    def describe(self) -> dict[str, Any]:
        """JSON-ready description, kept in the run's config under ``schedule``."""

    def run(self, model: nn.Module, data: LabeledData, cfg: "TrainConfig", *, generator: torch.Generator,
            device: torch.device, seed: int, progress: bool, fit_kwargs: dict[str, Any]) -> list[dict[str, Any]]:
        """Train ``model`` (a private copy, changed in place) with ``cfg``; return the history."""


@runtime_checkable
class TrainingObjective(Protocol):
    """What :func:`train` adds to cross-entropy when given ``editable=`` (e.g.
    :class:`netfix.EditableTraining`): a loss for :func:`fit`, extra trainable parameters, a record for the run's
    config and what the trained model carries on its card."""

    def loss_fn(self, model: nn.Module, generator: torch.Generator, num_classes: int) -> Callable[..., Any]:
        """The training loss for :func:`fit`."""

    def parameters(self, device: torch.device) -> list[torch.Tensor]:
        """Parameters trained beside the model's (may be empty)."""

    def describe(self) -> dict[str, Any]:
        """JSON-ready description, kept in the run's config under ``editable``."""

    def card_fields(self) -> dict[str, Any]:
        """Fields the trained model's card records (:func:`netfix.card.update`)."""


def default_recipe(model: nn.Module) -> dict[str, Any]:
    """The recipe :func:`train` uses for the fields its caller leaves unset — the same one ``netfix train`` uses:
    the recipe the model was last trained with (its card), else its architecture's (:func:`netfix.models.recipe`,
    for netfix's architectures and those registered with one), else :class:`TrainConfig`'s defaults (Adam 1e-3,
    constant, batches of 128)."""
    from . import models

    info = card.of(model)
    name = (info.architecture or {}).get("name")
    known = info.recipe or (models.recipe(name) if isinstance(name, str) and models.has_recipe(name) else {})
    base = TrainConfig()
    return {f: known.get(f, getattr(base, f)) for f in RECIPE_FIELDS}


_OPTIMIZERS: dict[str, Callable[..., torch.optim.Optimizer]] = {
    "adam": lambda p, c: torch.optim.Adam(p, lr=c.lr, weight_decay=c.weight_decay),
    "adamw": lambda p, c: torch.optim.AdamW(p, lr=c.lr, weight_decay=c.weight_decay),
    "sgd": lambda p, c: torch.optim.SGD(p, lr=c.lr, momentum=c.momentum, weight_decay=c.weight_decay),
}


def make_optimizer(params: Any, cfg: TrainConfig) -> torch.optim.Optimizer:
    """The optimizer ``cfg`` names, over ``params``."""
    return _OPTIMIZERS[cfg.optimizer](params, cfg)


def model_view(model: nn.Module, data: LabeledData, argument: str = "data", remember: bool = True
               ) -> tuple[nn.Module, int]:
    """``(model as netfix calls it, its number of classes)``: :func:`netfix.adapter.logits_model` checked on two
    samples of ``data`` — shape mismatches become an error naming both shapes, before any work starts.
    ``remember``: keep how to call it on the model's card (netfix's private copies only)."""
    return logits_model(model, move(data.X[:2], model_device(model)), argument, remember)


def num_outputs(model: nn.Module, data: LabeledData, argument: str = "data") -> int:
    """The number of classes ``model`` predicts, checked on two samples of ``data`` (see :func:`model_view`)."""
    return model_view(model, data, argument, remember=False)[1]


def _has_batchnorm(model: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


def fit(model: nn.Module, data: LabeledData, cfg: TrainConfig, *, generator: torch.Generator,
        device: torch.device, sampler: "Sampler[int] | None" = None,
        loss_fn: "Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor] | None" = None,
        augment: "Callable[[torch.Tensor], torch.Tensor] | None" = None,
        before_step: "Callable[[nn.Module], None] | None" = None,
        after_step: "Callable[[nn.Module], None] | None" = None,
        stop: "Callable[[nn.Module, int], dict[str, Any] | None] | None" = None,
        max_steps: int | None = None, train_mode: bool = True, progress: bool = False,
        desc: str = "train", optimizer: "torch.optim.Optimizer | None" = None,
        lr_steps: "tuple[int, int] | None" = None, frozen_stats: bool = False,
        freeze_norm: bool = False, max_update: "float | None" = None) -> list[dict[str, Any]]:
    """Train ``model`` in place (it must be a private copy) for ``cfg.epochs`` on ``data``; return the history.

    Hooks let methods reuse this loop: ``loss_fn(model, X, y)`` replaces cross-entropy; ``before_step(model)``
    runs between backward and the optimizer step (e.g. to project gradients); ``after_step(model)`` after it
    (e.g. to re-apply a mask); ``stop(model, step)`` after each step returns None to go on, or a dict (logged)
    to stop; ``max_steps`` caps the steps. Batches of one sample are skipped on BatchNorm models, whose
    training-mode statistics are undefined for them. ``train_mode=False`` trains in eval mode (BatchNorm
    statistics frozen, Dropout off), as repairs on small sets want. ``optimizer`` replaces the one ``cfg`` names
    (its learning rate still follows ``cfg.lr`` and ``cfg.lr_schedule``). Inside an initialised process group
    (torchrun) the loop runs the model under DistributedDataParallel on a DistributedSampler, ``cfg.batch_size``
    being the global batch (:mod:`netfix.distributed`). ``lr_steps`` = (offset, total): this run
    is steps offset… of one cosine schedule over ``total`` steps (a schedule spanning several calls).
    ``frozen_stats``: BatchNorm layers whose parameters are all frozen run in eval mode (their statistics stay).
    ``freeze_norm``: every BatchNorm layer runs in eval mode (normalising by its running statistics, which stay) —
    for passes over a forget set, whose batch statistics are not the population's (class forgetting: one class):
    what is learnt normalised by them does not carry over to the model as it is used, in eval mode.
    ``max_update``: each step moves the trained weights by at most this fraction of their norm (the gradient is
    clipped to ``max_update · ‖θ‖ / lr``) — a scale-free bound, the same for any architecture, on steps whose
    gradients can be huge (random labels or ascent on a confidently fit forget set)."""
    opt = optimizer or make_optimizer([p for p in model.parameters() if p.requires_grad], cfg)
    ce = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
    loss_fn = loss_fn or (lambda m, X, y: ce(m(X), y))
    batch_size, run_model, sampler = _loop_setup(model, data, cfg, sampler, generator, device)
    steps_per_epoch = max(1, math.ceil(len(sampler) / batch_size))  # type: ignore[arg-type]
    total = cfg.epochs * steps_per_epoch
    skip_singletons = _has_batchnorm(model) and train_mode and not freeze_norm
    history: list[dict[str, Any]] = []
    step = 0
    bar = tqdm(total=total, desc=desc, unit="step", disable=not progress, leave=False)
    start = time.perf_counter()
    _set_modes(model, run_model, train_mode, frozen_stats, freeze_norm)
    reason: "dict[str, Any] | None" = None
    for epoch in range(cfg.epochs):
        if reason is not None:
            break
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(epoch)
        loss_sum, seen = 0.0, 0
        for X, y in batches(data, batch_size, sampler, device):
            if skip_singletons and len(y) == 1:
                continue
            if cfg.lr_schedule == "cosine":
                _cosine_lr(opt, cfg.lr, (step, total) if lr_steps is None else (lr_steps[0] + step, lr_steps[1]))
            loss = _step(model, run_model, opt, loss_fn, augment(X) if augment is not None else X, y, cfg, device,
                         max_update, before_step, after_step, desc, (epoch + 1, step))
            step += 1
            bar.update(1)
            loss_sum += loss * len(y)
            seen += len(y)
            reason = stop(model, step) if stop is not None else None
            if reason is None and max_steps is not None and step >= max_steps:
                reason = {"reason": "max_steps"}
            if reason is not None:
                break
        history.append({"epoch": epoch + 1, "step": step, "loss": loss_sum / max(1, seen),
                        "lr": opt.param_groups[0]["lr"], "seconds": time.perf_counter() - start})
        bar.set_postfix(loss=f"{history[-1]['loss']:.4f}")
        if reason is not None:
            history.append({"epoch": epoch + 1, "step": step, "stopped": True, **reason})
    bar.close()
    model.eval()
    return history


def _loop_setup(model: nn.Module, data: LabeledData, cfg: TrainConfig, sampler: "Sampler[int] | None",
                generator: torch.Generator, device: torch.device) -> tuple[int, nn.Module, "Sampler[int]"]:
    """``(batch size per process, the module to call, the sampler)``: inside a process group (torchrun, a user's),
    DDP over a DistributedSampler with this process's share of the global batch; else the model itself over
    ``sampler``, or a RandomSampler drawing from ``generator``."""
    batch_size, run_model = cfg.batch_size, model
    if distributed.is_distributed():
        batch_size = distributed.local_batch_size(cfg.batch_size)
        if sampler is None:
            sampler = distributed.sampler(data, seed=generator.initial_seed())
        run_model = distributed.wrap(model, device)
    return batch_size, run_model, sampler if sampler is not None else RandomSampler(data, generator=generator)


def _set_modes(model: nn.Module, run_model: nn.Module, train_mode: bool, frozen_stats: bool, freeze_norm: bool
               ) -> None:
    """Train (or eval) mode for the loop; BatchNorm layers in eval mode where ``frozen_stats`` (all their parameters
    frozen) or ``freeze_norm`` (all of them) says so."""
    run_model.train(train_mode)
    if frozen_stats or freeze_norm:
        for mod in model.modules():
            if isinstance(mod, nn.modules.batchnorm._BatchNorm) and (freeze_norm or not any(
                    p.requires_grad for p in mod.parameters(recurse=False))):
                mod.eval()


def _cosine_lr(opt: torch.optim.Optimizer, lr: float, at_of: tuple[int, int]) -> None:
    """Set the learning rate of step ``at`` of ``span`` on a cosine from ``lr`` down to 0."""
    at, span = at_of
    for group in opt.param_groups:
        group["lr"] = 0.5 * lr * (1 + math.cos(math.pi * at / max(1, span)))


def _step(model: nn.Module, run_model: nn.Module, opt: torch.optim.Optimizer, loss_fn: Callable[..., torch.Tensor],
          X: Any, y: torch.Tensor, cfg: TrainConfig, device: torch.device, max_update: "float | None",
          before_step: "Callable[[nn.Module], None] | None", after_step: "Callable[[nn.Module], None] | None",
          desc: str, at: tuple[int, int]) -> float:
    """One optimizer step on the batch ``(X, y)``; returns its loss. ``desc`` and ``at`` (epoch, step) name the
    step in the error a non-finite loss raises."""
    opt.zero_grad(set_to_none=True)
    with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=cfg.precision == "bf16"):
        loss = loss_fn(run_model, X, y)
    loss = loss.float()
    if not torch.isfinite(loss):
        raise DivergedError(f"{desc}: the loss became {loss.item()} at epoch {at[0]}, step {at[1]}. "
                            "Fix: lower lr, or set grad_clip.")
    loss.backward()
    if cfg.grad_clip is not None:
        nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
    if max_update is not None:
        trained = [p for p in model.parameters() if p.requires_grad]
        limit = max_update * float(torch.linalg.vector_norm(torch.stack(
            [torch.linalg.vector_norm(p.detach()) for p in trained]))) / max(opt.param_groups[0]["lr"], 1e-12)
        nn.utils.clip_grad_norm_(trained, limit)
    if before_step is not None:
        before_step(model)
    opt.step()
    if after_step is not None:
        after_step(model)
    return loss.item()


def train(model: nn.Module, data: DataLike, epochs: int | None = None, lr: float | None = None,
          batch_size: int | None = None, optimizer: str | None = None, *, momentum: float | None = None,
          weight_decay: float | None = None, lr_schedule: str | None = None, label_smoothing: float = 0.0,
          grad_clip: float | None = None,
          precision: str = "fp32", augment: "Callable[[torch.Tensor], torch.Tensor] | None" = None,
          sampler: "Sampler[int] | None" = None, seed: int = 0, device: "torch.device | str | None" = None,
          progress: bool | None = None, editable: "TrainingObjective | None" = None,
          schedule: "Schedule | None" = None,
          params: "Sequence[str] | None" = None) -> Outcome:
    """Train a copy of ``model`` on ``data`` with cross-entropy; the caller's model is not changed.

    The returned model's card (:mod:`netfix.card`) records its recipe, which the retrain reference repeats, and
    the data it was trained on. ``lr``, ``batch_size``, ``optimizer``, ``momentum``, ``weight_decay`` and
    ``lr_schedule`` left unset come from the model's recipe (:func:`default_recipe`: for a model built by
    :func:`netfix.models.build`, its architecture's, as ``netfix train`` does).
    ``epochs`` defaults to 10. ``precision="bf16"``: mixed precision (``torch.autocast`` with bfloat16, on CPU or
    CUDA), recorded in the recipe so the retrain reference repeats it. ``schedule``: e.g. a
    :class:`netfix.methods.forget_relearn.ForgetRelearn`, which then sets the epochs (generations × epochs per
    generation; ``epochs``, if given, must agree) and logs one summary record per
    generation in the history. ``editable``: an :class:`netfix.EditableTraining` config.
    ``params``: module-name prefixes to train (e.g. ``["edit_block"]``, to fine-tune a block inserted into a trained
    model); every other parameter stays as it is, and BatchNorm layers with no trained parameter keep their running
    statistics (they run in eval mode). None trains everything. A run with ``params`` is a fine-tune, so the model
    keeps the recipe it was trained with.

    Example:
        >>> train_set, test_set = netfix.datasets.load("digits")
        >>> model = netfix.models.build("mlp", train_set.input_shape, 10, seed=0)
        >>> out = netfix.train(model, train_set, epochs=5, seed=0)
        >>> out.history[-1]["loss"] < out.history[0]["loss"]
        True
    """
    editable, epochs = _check_objectives(editable, schedule, epochs)
    check_model(model)
    given = {"lr": lr, "batch_size": batch_size, "optimizer": optimizer, "momentum": momentum,
             "weight_decay": weight_decay, "lr_schedule": lr_schedule}
    recipe = {**default_recipe(model), **{k: v for k, v in given.items() if v is not None}}
    cfg = TrainConfig(epochs=epochs, label_smoothing=label_smoothing, grad_clip=grad_clip, precision=precision,
                      **recipe)
    trained = None if params is None else param_names(model, params)
    dev = resolve_device(device)
    ds = as_data(data, "data")
    check_range(ds, card.of(model).data)
    with seeded(seed, dev) as g:
        net = copy_model(model, dev)
        if trained is not None:
            for n, p in net.named_parameters():
                p.requires_grad_(n in trained)
        view, k = model_view(net, ds)
        ds = as_data(ds, "data", num_classes=k)
        start = time.perf_counter()
        loss_fn, opt = None, None
        if editable is not None:  # Editable Training: the edit and locality terms, and the editor's own parameters
            loss_fn = editable.loss_fn(view, g, k)
            opt = make_optimizer([p for p in net.parameters() if p.requires_grad] + editable.parameters(dev), cfg)
        if schedule is not None:
            history = schedule.run(view, ds, cfg, generator=g, device=dev, seed=seed, progress=show_progress(progress),
                                   fit_kwargs={"sampler": sampler, "augment": augment})
        else:
            history = fit(view, ds, cfg, generator=g, device=dev, sampler=sampler, augment=augment,
                          progress=show_progress(progress), loss_fn=loss_fn, optimizer=opt,
                          desc="editable train" if editable is not None else "train",
                          frozen_stats=trained is not None)
        seconds = time.perf_counter() - start
        if trained is not None:
            for p in net.parameters():
                p.requires_grad_(True)
    config = _record(net, cfg, ds, seed, dev, params, schedule, editable)
    return Outcome(model=net, method="train", config=config, seconds=seconds, history=history)


def _check_objectives(editable: "TrainingObjective | None", schedule: "Schedule | None", epochs: "int | None"
                      ) -> "tuple[TrainingObjective | None, int]":
    """``(editable, epochs)`` for :func:`train`: an ``editable`` copied (state learned in the run stays out of the
    caller's config), the epochs a ``schedule`` sets (10 by default); the wrong types or combinations refused."""
    if editable is not None and not isinstance(editable, TrainingObjective):
        raise ConfigError(f"editable: expected a netfix.EditableTraining (a netfix.training.TrainingObjective); got "
                          f"{type(editable).__name__}.")
    if editable is not None and is_dataclass(editable):
        editable = replace(editable)  # a fresh copy: state learned in this run stays out of the caller's config
    if schedule is not None:
        if not isinstance(schedule, Schedule):
            raise ConfigError("schedule: expected a netfix.methods.forget_relearn.ForgetRelearn (a "
                              f"netfix.training.Schedule); got {type(schedule).__name__}.")
        if editable is not None:
            raise ConfigError("schedule, editable: pick one; Editable Training under a forget-relearn schedule is not "
                              "supported.")
        if epochs is not None and epochs != schedule.epochs:
            raise ConfigError(f"epochs: {epochs} disagrees with the schedule's {schedule.epochs} epochs "
                              f"({schedule.describe()}); leave epochs unset with a schedule.")
        epochs = schedule.epochs
    return editable, 10 if epochs is None else epochs


def _record(net: nn.Module, cfg: TrainConfig, ds: LabeledData, seed: int, dev: torch.device,
            params: "Sequence[str] | None", schedule: "Schedule | None", editable: "TrainingObjective | None"
            ) -> dict[str, Any]:
    """The run's config (every option used, the data's fingerprint), with ``net``'s card updated to match: its
    recipe (unless only ``params`` were trained: a fine-tune keeps the recipe), data and the objective's fields."""
    trained = params is not None
    if not trained:
        card.update(net, recipe=asdict(cfg))
    card.update(net, data=ds.describe())
    config = {**asdict(cfg), "seed": seed, "device": str(dev), "n": len(ds),
              "data_fingerprint": card.of(net).data["fingerprint"]}  # type: ignore[index]
    if trained:
        config["params"] = list(params)  # type: ignore[arg-type]
    if schedule is not None:
        config["schedule"] = schedule.describe()
    if editable is not None:
        config["editable"] = editable.describe()
        card.update(net, **editable.card_fields())
    return config
