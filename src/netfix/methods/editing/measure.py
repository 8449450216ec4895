"""What every edit measurement shares (:mod:`.metrics`, :mod:`.lifelong`): the checks of the edits asked for, the
slight perturbations robustness is measured under, a model prepared for many edits and the progress bar.

Thousands of edited models are evaluated cheaply: an edit only changes the tail of the network
(:class:`~netfix.models.split.FrozenSplit`), so the test set's prefix features are computed once
(:class:`PreparedModel`) and each edited model only runs its tail. Results equal evaluating each edited model in
full (a test checks this).

Example:
    >>> perturbations()["noise"](X, torch.Generator().manual_seed(0)).shape == X.shape
    True
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import nn
from torch.func import functional_call

from ..._runtime import check_model, show_progress
from ...data import DataLike, LabeledData, as_data
from ...errors import DataError, unknown
from ...gradients import param_names
from ...models.split import FrozenSplit
from ...training import num_outputs
from .editor import EDITORS, EditorConfig, run_editor
from .surgery import default_edit_params

__all__ = ["ALTERNATIVES", "Perturb", "perturbations", "perturbed_inputs", "PreparedModel", "check_edits",
           "progress_bar"]

ALTERNATIVES = ("finetune", "lookup-table", "adaptor")  # measured beside the editors (.alternatives, .adaptor)
Perturb = Callable[[torch.Tensor, torch.Generator], torch.Tensor]


def perturbations(noise: float = 0.05, shift: int = 1) -> dict[str, Perturb]:
    """The two slight perturbations robustness is measured under: ``noise`` — Gaussian noise of std ``noise`` (in
    input units; netfix's images are in [0, 1]), clipped to the input's range; ``shift`` — the image moved ``shift``
    pixels right, the uncovered column filled with the image's minimum (its background). Flat inputs get only the
    noise."""

    def add_noise(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        z = torch.randn(x.shape, generator=g).to(x.device, x.dtype)
        return (x + noise * z).clamp(x.min(), x.max())

    def move(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        out = torch.roll(x, shift, dims=-1)
        fill = x.flatten(1).min(1).values.view(-1, *([1] * (x.ndim - 1)))
        out[..., :shift] = fill.expand_as(out[..., :shift])
        return out

    return {"noise": add_noise, "shift": move}


def perturbed_inputs(X: torch.Tensor, perturb: Mapping[str, Perturb], g: torch.Generator) -> dict[str, torch.Tensor]:
    """``X`` under each perturbation (drawn from ``g``): none for flat inputs of one dimension, no shift for
    inputs that are not images."""
    perturbed = {name: fn(X, g) for name, fn in perturb.items()} if X.ndim >= 2 else {}
    if X.ndim < 4:
        perturbed.pop("shift", None)
    return perturbed


class PreparedModel:
    """One model prepared for many edits: its split, the drawdown set's cached features and base accuracy."""

    def __init__(self, model: nn.Module, test: LabeledData, params: "Sequence[str] | None", device: torch.device,
                 batch_size: int = 1000) -> None:
        self.net = model
        k = int(test.num_classes) if test.num_classes else None
        prefixes = list(params) if params is not None else default_edit_params(model, k)
        self.names = param_names(model, prefixes)
        self.prefixes = prefixes
        self.X, self.y = test.tensor.to(device), test.y.to(device)
        self.split = FrozenSplit(model, self.names, self.X[:8])
        self.feats = self.split.batched_features(self.X, batch_size)
        self.batch_size = batch_size
        self.original = {n: p.detach().clone() for n, p in model.named_parameters() if n in self.names}
        self.base_acc = self.accuracy(self.original)

    def logits(self, params: Mapping[str, torch.Tensor], feats: tuple[torch.Tensor, ...]) -> torch.Tensor:
        with torch.no_grad():
            n = len(feats[0])
            parts = [functional_call(self.split.tail, dict(params), tuple(f[i:i + self.batch_size] for f in feats))
                     for i in range(0, n, self.batch_size)]
        return torch.cat(parts)

    def accuracy(self, params: Mapping[str, torch.Tensor]) -> float:
        return 100.0 * float((self.logits(params, self.feats).argmax(1) == self.y).float().mean())

    def run_editor(self, start: Mapping[str, torch.Tensor], x: torch.Tensor, t: torch.Tensor, cfg: EditorConfig
                   ) -> tuple[dict[str, torch.Tensor], int]:
        """The editor run from the edited parameters ``start`` on (x, t): the new parameters and the steps."""
        params = {n: v.detach().clone().requires_grad_(True) for n, v in start.items()}
        with torch.no_grad():
            feats = self.split.features(x)
        new, steps, _ = run_editor(self.split.tail, params, feats, t, cfg)
        return new, steps

    def reached(self, params: Mapping[str, torch.Tensor], x: torch.Tensor, t: torch.Tensor) -> bool:
        with torch.no_grad():
            return bool((self.logits(params, self.split.features(x)).argmax(1) == t).all())


def check_edits(model: nn.Module, inputs: Any, targets: Any, test: DataLike, editor: str) -> tuple[
        torch.Tensor, torch.Tensor, LabeledData]:
    """The edits asked of ``editor`` (an editor or one of :data:`ALTERNATIVES`) as tensors — inputs, targets
    (int64) — and ``test`` as data, each checked against the model."""
    check_model(model)
    if editor not in EDITORS + ALTERNATIVES:
        raise unknown("editor", editor, list(EDITORS + ALTERNATIVES), "editor")
    X = inputs if isinstance(inputs, torch.Tensor) else torch.as_tensor(inputs)
    y = targets if isinstance(targets, torch.Tensor) else torch.as_tensor(targets)
    if len(X) == 0:
        raise DataError("inputs: no edits given; expected at least one input to edit.")
    if y.ndim != 1 or len(y) != len(X):
        raise DataError(f"targets: expected one class index per input ({len(X)}); got shape {tuple(y.shape)}.")
    test_data = as_data(test, "test")
    if X.shape[1:] != test_data.X.shape[1:]:
        raise DataError(f"inputs: shape {tuple(X.shape[1:])} differs from test's {tuple(test_data.X.shape[1:])}; "
                        "expected inputs from the same distribution as the test set.")
    k = num_outputs(model, test_data, "test")
    as_data((X, y), "inputs", num_classes=k)  # NaNs, label range
    return X, y.long(), test_data


def progress_bar(total: int, desc: str, progress: bool | None) -> Any:
    """A tqdm bar over ``total`` edits, shown when ``progress`` (None: when stderr is a terminal)."""
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, disable=not show_progress(progress), leave=False)
