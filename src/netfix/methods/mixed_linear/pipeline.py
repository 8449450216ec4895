"""Training a mixed-linear model from scratch, the one way every caller does it: split the data into a core and
user data (:func:`core_user_split`), train a network on the core, wrap it in a :class:`MixedLinear` over the
linearised modules with a preconditioner built from the core data, then train the user weights on the user data.

``netfix train --mixed-linear``, ``netfix bench mixed-linear``, the mixed-linear rows of ``netfix bench unlearn``
and ``benchmarks/mixed_tol.py`` all call :func:`train_mixed_linear`.

Example:
    >>> run = train_mixed_linear("mlp", train, linearize=["body.3", "fc"], core_epochs=20)
    >>> out = netfix.unlearn(run.model, forget, retain_user, method="mixed-linear")
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from ... import models
from ...errors import ConfigError
from ...data import DataLike, LabeledData, as_data, concat
from ...training import Outcome, train
from ...validation import check_scalar, check_seed
from .fit import FitOutcome, UserTraining
from .model import PRECONDITIONER_RANK, MixedLinear

__all__ = ["CORE_FRACTION", "core_user_split", "MixedLinearTraining", "train_mixed_linear", "remaining_user_data"]

CORE_FRACTION = 0.1  # the core's share of the training data, per class


def core_user_split(data: LabeledData, fraction: float = CORE_FRACTION, seed: int = 0
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices of a stratified ``fraction`` of ``data`` (the core, never forgotten) and of the rest (user data),
    fixed by ``seed``."""
    fraction = check_scalar(fraction, "fraction", float, low=0, high=1, low_open=True, high_open=True,
                            default=CORE_FRACTION)
    seed = check_seed(seed)
    g = torch.Generator().manual_seed(seed)
    core = []
    for c in torch.unique(data.y):
        idx = torch.nonzero(data.y == c).squeeze(1)
        take = max(1, int(round(fraction * len(idx))))
        core.append(idx[torch.randperm(len(idx), generator=g)[:take]])
    core_idx = torch.sort(torch.cat(core)).values
    keep = torch.ones(len(data), dtype=torch.bool)
    keep[core_idx] = False
    return core_idx, torch.nonzero(keep).squeeze(1)


@dataclass
class MixedLinearTraining:
    """What :func:`train_mixed_linear` returns."""

    model: MixedLinear              # the trained mixed-linear model (user weights fitted to the user data)
    fresh: MixedLinear              # the same core and preconditioner with user weights 0: retrain references
    core: Outcome                   # the core network's training (netfix.train's outcome)
    fit: FitOutcome                 # the user weights' training (seconds, history)
    core_indices: torch.Tensor      # into ``data``: the core's samples, never forgotten
    user_indices: torch.Tensor      # into ``data``: the rest, the user data (``user_only`` comes after them)
    core_data: LabeledData
    user_data: LabeledData          # data[user_indices], then user_only
    preconditioner_seconds: float   # wrapping the core and finding the preconditioner (built once, from core data)


def train_mixed_linear(model: "nn.Module | str", data: DataLike, *, linearize: Sequence[str] = ("fc",),
                       core_fraction: float = CORE_FRACTION, core_epochs: int | None = None,
                       recipe: dict[str, Any] | None = None, user_training: UserTraining | None = None,
                       user_only: "DataLike | None" = None, rank: int = PRECONDITIONER_RANK,
                       lanczos_steps: int | None = None, seed: int = 0, device: "torch.device | str | None" = None,
                       progress: bool | None = None,
                       measure: "Callable[[str, Callable[[], Any]], Any] | None" = None) -> MixedLinearTraining:
    """Train a mixed-linear model on ``data``: the network ``model`` (or a reference architecture's name, built
    with ``seed``) on a stratified ``core_fraction`` of it (:func:`core_user_split`) for ``core_epochs`` with
    ``recipe`` (:func:`netfix.train`'s options; ``None``: an architecture's own recipe, or the model's), then
    :class:`MixedLinear` user weights for the ``linearize`` modules on the rest, trained with ``user_training``
    (:meth:`MixedLinear.fit_user`) after a preconditioner of ``rank`` eigenpairs found by ``lanczos_steps``
    iterations over the core data (:meth:`MixedLinear.with_preconditioner`).

    ``user_only``: samples that must be user data, never core (e.g. those a deletion request will name), added
    after the user part of ``data``. ``measure``: runs each stage — ``measure(stage, fn)`` returns ``fn()``, for the
    stages ``"core"``, ``"preconditioner"`` and ``"user"`` (a bench counts each stage's optimizer steps with it).
    One ``seed`` fixes the split, the network's initialisation, both trainings and the preconditioner.

    Example:
        >>> run = train_mixed_linear("mlp", train, linearize=["body.3", "fc"], core_epochs=20, seed=0)
        >>> run.model.forget(run.user_data.subset(forget_idx), run.user_data.subset(keep_idx)).distance_bound
    """
    step = measure or (lambda stage, fn: fn())
    data = as_data(data, "data")
    core_idx, user_idx = core_user_split(data, core_fraction, seed)
    core_data, user_data = data.subset(core_idx, f"{data.name}/core"), data.subset(user_idx, f"{data.name}/user")
    if user_only is not None:
        user_data = concat([user_data, as_data(user_only, "user_only")], user_data.name)
    if isinstance(model, str):
        recipe = models.recipe(model) if recipe is None else recipe
        model = models.build(model, data.input_shape, data.num_classes, seed=seed)
    network = model
    core = step("core", lambda: train(network, core_data, epochs=core_epochs, seed=seed, device=device,
                                      progress=progress, **(recipe or {})))
    start = time.perf_counter()
    fresh = step("preconditioner", lambda: MixedLinear(core.model, list(linearize)).with_preconditioner(
        core_data, rank=rank, steps=lanczos_steps, seed=seed))
    preconditioner_seconds = time.perf_counter() - start
    fit = step("user", lambda: fresh.fit_user(user_data, user_training, seed=seed, progress=progress))
    return MixedLinearTraining(model=fit.model, fresh=fresh, core=core, fit=fit, core_indices=core_idx,
                               user_indices=user_idx, core_data=core_data, user_data=user_data,
                               preconditioner_seconds=preconditioner_seconds)


def remaining_user_data(meta: Mapping[str, Any], forget_indices: "np.ndarray | list[int]", train: LabeledData,
                        argument: str = "forget_indices") -> LabeledData:
    """The user samples of ``train`` that a mixed-linear model keeps after forgetting ``forget_indices``: its core
    data (recorded in ``meta``, a saved model's metadata, by ``netfix train --mixed-linear``) trains the frozen
    core, not the user weights, so it is neither forgotten nor retained.

    Example:
        >>> retain = remaining_user_data(netfix.io.read_meta("runs/ml"), s.forget_indices, s.train)
    """
    mixed = (meta.get("meta") or {}).get("mixed_linear")
    if not mixed:
        raise ConfigError("method mixed-linear: this model was not trained with `netfix train --mixed-linear`, so "
                          "which samples are user data is unknown. Fix: train it that way.")
    core = torch.as_tensor(mixed["core_indices"], dtype=torch.long)
    forget = torch.as_tensor(np.asarray(forget_indices), dtype=torch.long)
    clash = sorted(set(core.tolist()) & set(forget.tolist()))
    if clash:
        raise ConfigError(f"{argument}: {len(clash)} of them (e.g. {clash[:5]}) are core data, which trains the "
                          "frozen core, not the user weights; a mixed-linear model forgets user data only.")
    keep = torch.ones(len(train), dtype=torch.bool)
    keep[core] = False
    keep[forget] = False
    return train.subset(torch.nonzero(keep).squeeze(1), "user-remaining")
