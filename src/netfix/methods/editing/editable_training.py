"""Editable Training (Sinitsin et al. 2020; docs/methods.md §2): training a model so that later edits are cheap
and local, by backpropagating through the editor's unrolled steps (:class:`EditableTraining`, passed to
:func:`netfix.train`).

Example:
    >>> out = netfix.train(add_edit_block(model), train, epochs=10, params=["edit_block", "fc"],
    ...                    editable=EditableTraining(edit_params=["edit_block.out"], lr=4e-3))
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from ..._runtime import eval_mode
from ...errors import ConfigError
from ...gradients import param_names
from ...models.split import FrozenSplit
from ...validation import Options, option
from .editor import EDITORS, EditorConfig, edit_loss, editor_steps
from .surgery import default_edit_params

__all__ = ["EditableTraining"]


@dataclass
class EditableTraining(Options):
    """Editable Training (docs/methods.md §2): train so that later edits are cheap and local. Each batch adds

        c_edit · l_e(θ̂) + c_loc · KL(p(·|x, θ) ‖ p(·|x, θ̂)),   θ̂ = Edit^k(θ) on one training image with a random
                                                                   wrong label,

    backpropagating through the k unrolled editor steps (second order through ``torch.autograd.grad`` with
    ``create_graph``; ``first_order=True`` drops the second-order terms). Locality is measured on the training batch
    against p(θ) of the base loss's own forward pass (training mode), detached, as the official code does; the edit
    and the edited model run in eval mode (BatchNorm running statistics). The edit term only acts on edits
    that fail (l_e is 0 once the target is the argmax). ``learn_editor_lr`` trains the editor's log step size with the
    model (the paper's way). Measured on Fashion-MNIST (docs/results.md, issue 6): a learned step shrank from 2e-3
    to 1.1e-3, below what edits need within 3 steps, and edits at the larger step kept most of their drawdown;
    holding the step at the one edits will use cut drawdown five-fold, so the step is held by default
    (``learn_editor_lr=True`` learns it). Either way, :func:`netfix.edit` uses the step the model was trained for,
    unless given another.

    ``sequential=S`` trains for edits that accumulate: per batch, S edits are applied one after another (each
    from the previous one's result, each on a training image with a random wrong label), the edit term is the mean
    edit loss of all S after the last — the earlier edits must still hold — and locality compares the batch's
    predictions after all S with those before.

    Pass it as ``netfix.train(..., editable=EditableTraining())``. To make a trained model editable, insert an edit
    block and fine-tune only it (and the classifier) — the paper's ImageNet recipe and netfix's measured best:
    ``netfix.train(add_edit_block(model), data, epochs=10, params=["edit_block", "fc"],
    editable=EditableTraining(edit_params=["edit_block.out"], lr=4e-3, learn_editor_lr=False))``. With a frozen
    prefix the loss runs it once per batch (:class:`~netfix.models.split.FrozenSplit`), not at every editor step.
    """

    c_edit: float = option(0.01, "weight of the edit loss after k editor steps", low=0, high=1e6)
    c_loc: float = option(0.01, "weight of KL(before ‖ after the edit) on the training batch", low=0, high=1e6)
    editor: str = option("rmsprop", "the editor trained for (see EDITORS)", choices=EDITORS)
    edit_params: list[str] | None = option(None, "module-name prefixes the editor changes",
                                           none="default_edit_params()")
    max_steps: int = option(10, "editor steps k, unrolled (each one kept in the graph)", unit="steps", low=1,
                            high=1000)
    lr: float | None = option(None, "editor step size to start from", unit="per step", low=0, high=10,
                              low_open=True, none="DEFAULT_LR[editor]")
    learn_editor_lr: bool = option(False, "train log(lr) with the model (the paper's way); the default holds "
                                   "the step: a learned step shrank below what edits need (docs/results.md)")
    first_order: bool = option(False, "True: no second-order terms through the editor (faster, cruder)")
    sequential: int = option(1, "edits applied one after another per batch, each from the previous one's result; "
                             "the edit loss asks all of them to still hold after the last, and locality is measured "
                             "after the last (training for accumulated edits; 1 = the paper's one edit)",
                             unit="edits", low=1, high=64)

    def __post_init__(self) -> None:
        super().__post_init__()
        self._log_lr: torch.Tensor | None = None  # the editor's log step size, created on the training device

    def check(self) -> None:
        if self.c_edit == 0 and self.c_loc == 0:
            raise ConfigError("c_edit, c_loc: expected at least one weight > 0; got both 0, so Editable Training "
                              "would add nothing to the loss. Fix: set c_edit=0.01 and c_loc=0.01 (the defaults), "
                              "or train without editable=.")

    def editor_config(self) -> EditorConfig:
        return EditorConfig(editor=self.editor, max_steps=self.max_steps, lr=self.lr)

    def parameters(self, device: torch.device) -> list[torch.Tensor]:
        """The editor's trainable parameters (its log step size), created on ``device``."""
        if self._log_lr is None or self._log_lr.device != device:
            start = math.log(self.editor_config().step_size)
            self._log_lr = torch.tensor(start, device=device, requires_grad=self.learn_editor_lr)
        return [self._log_lr] if self.learn_editor_lr else []

    @property
    def editor_lr(self) -> float:
        return float(self._log_lr.detach().exp()) if self._log_lr is not None else self.editor_config().step_size

    def describe(self) -> dict[str, Any]:
        """The options and the editor step the model was trained for (the run's ``config["editable"]``)."""
        return {**asdict(self), "editor_lr": self.editor_lr}

    def card_fields(self) -> dict[str, Any]:
        """The editor the trained model records on its card, so that ``netfix.edit`` uses it by default."""
        return {"editor": {"editor": self.editor, "lr": self.editor_lr, "params": self.edit_params,
                           "max_steps": self.max_steps}}

    def loss_fn(self, model: nn.Module, generator: torch.Generator, num_classes: int):  # type: ignore[no-untyped-def]
        """The training loss for :func:`netfix.training.fit`: cross-entropy + the edit and locality terms."""
        names = param_names(model, self.edit_params if self.edit_params is not None else default_edit_params(model))
        cfg = self.editor_config()
        log_lr = self.parameters(next(model.parameters()).device)[0] if self.learn_editor_lr else None

        trainable = {n for n, p in model.named_parameters() if p.requires_grad}
        cut: dict[str, Any] = {}  # the FrozenSplit, built on the first batch

        def split_for(m: nn.Module, X: torch.Tensor) -> "FrozenSplit | None":
            """A cut below every trained or edited parameter, when the model has a frozen prefix (a fine-tune such
            as ``train(..., params=["edit_block"])``) and runs unwrapped: its features are then computed once per
            batch instead of at every editor step. Under DDP the wrapper must run the forward (gradient sync)."""
            if "split" not in cut:
                frozen = any(not p.requires_grad for p in model.parameters())
                split = FrozenSplit(model, sorted(trainable | set(names)), X[:2]) if frozen and m is model else None
                cut["split"] = split if split is not None and split.exact and split.prefix is not None else None
                # whether the prefix computes differently in eval mode (fit fixes the modes before the first step)
                cut["varies"] = cut["split"] is not None and any(
                    mod.training for mod in cut["split"].prefix.modules()
                    if isinstance(mod, (nn.modules.batchnorm._BatchNorm, nn.Dropout)))
            return cut["split"] if m is model else None

        def loss(m: nn.Module, X: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            split = split_for(m, X)
            net: nn.Module = model  # edits run on the unwrapped model (under DDP, ``m`` is the wrapper)
            if split is not None:  # the prefix holds only frozen parameters: run it once, without gradients
                with torch.no_grad():
                    feats = split.features(X)
                    if cut["varies"]:
                        with eval_mode(m):
                            feats_eval = split.features(X)
                    else:
                        feats_eval = feats
                net, inputs, inputs_eval = split.tail, feats, feats_eval
            else:
                inputs = inputs_eval = (X,)
            logits = net(*inputs) if split is not None else m(X)
            base = F.cross_entropy(logits, y)
            # locality's reference is this forward's own (training-mode) prediction, detached, as in the official
            # code: with an eval-mode reference a BatchNorm model can satisfy locality by making its eval-mode
            # outputs insensitive to everything (measured: held-out accuracy fell to 25-30 % at c_loc = 0.1)
            before = F.log_softmax(logits.detach(), 1)
            chosen = []
            for _ in range(self.sequential):  # the first draw is the one-edit objective's
                i = int(torch.randint(len(y), (1,), generator=generator))
                shift = int(torch.randint(1, num_classes, (1,), generator=generator))
                chosen.append((tuple(t[i:i + 1] for t in inputs_eval), (y[i:i + 1] + shift) % num_classes))
            edited: dict[str, torch.Tensor] = {n: p for n, p in model.named_parameters() if n in names}
            lr = log_lr.exp() if log_lr is not None else None
            with eval_mode(m):
                for x_e, t_e in chosen:  # each edit starts from the previous one's result
                    edited, _, _ = editor_steps(net, edited, x_e, t_e, cfg, create_graph=not self.first_order,
                                                detach=False, lr=lr)
                after = F.log_softmax(functional_call(net, edited, inputs_eval), 1)
                l_e = torch.stack([edit_loss(functional_call(net, edited, x_e), t_e).mean()
                                   for x_e, t_e in chosen]).mean()
            kl = F.kl_div(after, before, log_target=True, reduction="batchmean")
            return base + self.c_edit * l_e + self.c_loc * kl
        return loss
