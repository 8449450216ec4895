"""What netfix knows about a model beyond its weights — one typed record, the model's *card*.

A card says how to rebuild the architecture (a registered name and its arguments), the recipe it was trained with
(which the retrain reference repeats), what Editable Training learned, the data it was trained on (name,
fingerprint, shape, classes, value range) and how to call it (which keyword takes the input, where the logits are in
the output). It lives in one attribute of the model (``netfix_card``) so that it travels with ``copy.deepcopy``, is
written into the model's file by :func:`netfix.save` and restored by :func:`netfix.load`. Operations never change a
card in place: they attach a new one to the copy they return.

Example:
    >>> model = netfix.models.build("mlp", (1, 28, 28), 10)
    >>> netfix.card.of(model).architecture
    {'name': 'mlp', 'kwargs': {}}
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from torch import nn

__all__ = ["Card", "of", "update", "ATTRIBUTE"]

ATTRIBUTE = "netfix_card"


@dataclass(frozen=True)
class Card:
    """The card of a model; every field may be ``None`` (not known)."""

    architecture: "dict[str, Any] | None" = None  # {"name": registered architecture, "kwargs": {...}}
    input_shape: "list[int] | None" = None        # one input's shape, e.g. [1, 28, 28]
    num_classes: "int | None" = None              # the number of logits
    recipe: "dict[str, Any] | None" = None        # the training recipe (netfix.train keyword arguments)
    editor: "dict[str, Any] | None" = None        # what Editable Training learned: editor, lr, params, max_steps
    data: "dict[str, Any] | None" = None          # what it was trained on: name, fingerprint, n, shape, range
    io: "dict[str, Any] | None" = None            # how to call it: {"input": keyword or None, "output": rule}
    edits: "dict[str, Any] | None" = None         # the edits it holds (netfix.edits): log, next id, layer, undo

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: "dict[str, Any] | None") -> "Card":
        """A card from a file's metadata (unknown keys are ignored)."""
        d = d or {}
        return cls(**{f.name: d.get(f.name) for f in dataclasses.fields(cls)})


def _owner(model: nn.Module) -> nn.Module:
    """The module a card belongs to: a view of a model (netfix.adapter.LogitsView) reads and writes the model's."""
    return model.__dict__.get("card_owner", model)


def of(model: nn.Module) -> Card:
    """``model``'s card (an empty one when netfix knows nothing about it)."""
    found = getattr(_owner(model), ATTRIBUTE, None)
    return found if isinstance(found, Card) else Card()


def update(model: nn.Module, **changes: Any) -> Card:
    """Attach to ``model`` a new card: its current one with ``changes``; returns it."""
    new = dataclasses.replace(of(model), **changes)
    object.__setattr__(_owner(model), ATTRIBUTE, new)  # a plain attribute: not a parameter, buffer or submodule
    return new
