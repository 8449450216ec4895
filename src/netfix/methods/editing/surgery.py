"""Where a model is edited: the default part to edit (:func:`default_edit_params`) and the edit block inserted
before a trained model's classifier to make it editable (:func:`add_edit_block`, Sinitsin et al.'s ImageNet
recipe; docs/methods.md §2).

Example:
    >>> default_edit_params(model, 10)
    ['fc']
    >>> m = add_edit_block(model, hidden=1024)
    >>> default_edit_params(m)
    ['edit_block.out']
"""

from __future__ import annotations

import copy
from typing import Any

from torch import nn

from ... import card, models
from ..._runtime import check_model
from ...errors import ConfigError, ModelError
from ...models.layers import classifier_head
from ...validation import check_scalar, check_seed

__all__ = ["FINETUNE_RECIPE", "default_edit_params", "add_edit_block"]

# How netfix fine-tunes an inserted edit block (with the rest frozen): the paper's optimiser for editable models
# (Adam 1e-3, gradient clip 10), a cosine schedule; measured in docs/results.md (issue 6).
FINETUNE_RECIPE: dict[str, Any] = {"optimizer": "adam", "lr": 1e-3, "lr_schedule": "cosine", "batch_size": 128, "grad_clip": 10.0}


def default_edit_params(model: nn.Module, num_classes: "int | None" = None) -> list[str]:
    """The default part of a model to edit: its classifier head, or an edit block's output projection
    (:func:`netfix.models.layers.classifier_head`, where the rule and its measurements are)."""
    return classifier_head(model, num_classes)


def add_edit_block(model: nn.Module, hidden: int = 1024, seed: int = 0) -> nn.Module:
    """A copy of ``model`` with an :class:`~netfix.models.EditBlock` of ``hidden`` units inserted before its
    classifier — the part Editable Training then trains and edits (Sinitsin et al.'s ImageNet recipe: a trained
    network, a new residual block, fine-tuned to be editable). The block's output projection starts at zero, so the
    copy computes exactly what ``model`` does; ``seed`` draws its input projection. ``model`` must be a netfix
    reference architecture (:func:`netfix.models.build`, or :func:`netfix.load` of one), whose saved files then
    rebuild the block; the caller's model is not changed.

    Example:
        >>> m = add_edit_block(trained, hidden=1024)
        >>> out = netfix.train(m, train_set, epochs=10, params=["edit_block"], editable=EditableTraining())
    """
    check_model(model)
    hidden = check_scalar(hidden, "hidden", int, low=1, high=1 << 20, default=1024)
    seed = check_seed(seed)
    info = card.of(model)
    spec = info.architecture
    if not isinstance(spec, dict) or spec.get("name") not in ("mlp", "lenet", "resnet", "resnet18", "vit"):
        raise ModelError("model: add_edit_block needs a netfix reference architecture (mlp, lenet or resnet, from "
                         "netfix.models.build or netfix.load). Fix: for your own module, put "
                         "netfix.models.EditBlock(width, hidden) before its classifier and train it.")
    kwargs = dict(spec.get("kwargs", {}))
    if kwargs.get("edit_block"):
        raise ConfigError(f"model: already has an edit block of {kwargs['edit_block']} units; edit or train it "
                          "as it is.")
    kwargs["edit_block"] = hidden
    if info.input_shape is None or info.num_classes is None:
        raise ModelError("model: its card records no input shape or classes, so its architecture cannot be rebuilt "
                         "with a block. Fix: build it with netfix.models.build or load it with netfix.load.")
    fresh = models.build(spec["name"], info.input_shape, info.num_classes, seed=seed, **kwargs)
    missing, unexpected = fresh.load_state_dict(model.state_dict(), strict=False)
    if unexpected or any(not k.startswith("edit_block.") for k in missing):
        raise ModelError(f"model: its weights do not match its architecture {spec['name']} (missing "
                         f"{[k for k in missing if not k.startswith('edit_block.')]}, unexpected {unexpected}).")
    card.update(fresh, recipe=copy.deepcopy(info.recipe), data=copy.deepcopy(info.data))
    device = next(model.parameters()).device
    return fresh.to(device).train(model.training)
