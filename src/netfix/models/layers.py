"""Building blocks the reference architectures share: the edit block and argument checks."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ..errors import ConfigError


class EditBlock(nn.Module):
    """A residual MLP ``z + out(ELU(inp(z)))`` inserted before a classifier, the part Editable Training edits
    (Sinitsin et al.'s ImageNet recipe; docs/methods.md §2). ``out`` starts at zero, so inserting the block leaves the
    model's function unchanged; ``hidden`` units (e.g. 1,024) give an edit room to act on one input's features
    without moving every other input's."""

    def __init__(self, width: int, hidden: int) -> None:
        super().__init__()
        if not isinstance(hidden, int) or isinstance(hidden, bool) or hidden < 1:
            raise ConfigError(f"edit_block: expected a positive hidden width like 1024 (0 = no block); got {hidden!r}.")
        self.inp = nn.Linear(width, hidden)
        self.out = nn.Linear(hidden, width)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, z: torch.Tensor) -> torch.Tensor:  # (B, width) -> (B, width)
        return z + self.out(nn.functional.elu(self.inp(z)))


def edit_block_or_identity(width: int, hidden: int) -> nn.Module:
    return EditBlock(width, hidden) if hidden else nn.Identity()


def widths(hidden: "Sequence[int] | int") -> tuple[int, ...]:
    """Hidden widths as a tuple (a single int = one hidden layer)."""
    widths = (hidden,) if isinstance(hidden, int) else tuple(hidden)
    if any(not isinstance(w, int) or w < 1 for w in widths):
        raise ConfigError(f"hidden: expected positive layer widths like (256, 256); got {hidden!r}.")
    return widths


def image_shape(input_shape: Sequence[int], name: str) -> tuple[int, int, int]:
    if len(input_shape) != 3:
        raise ConfigError(f"input_shape: {name} needs image inputs (C, H, W); got {tuple(input_shape)}. "
                          "Fix: use 'mlp' for flat features, or reshape the data to (N, C, H, W).")
    c, h, w = (int(s) for s in input_shape)
    return c, h, w


_NORMS = (nn.modules.batchnorm._BatchNorm, nn.LayerNorm, nn.GroupNorm, nn.modules.instancenorm._InstanceNorm)


def classifier_head(model: nn.Module, num_classes: "int | None" = None) -> list[str]:
    """The module names of a model's classifier head, the default part to edit (and the head methods treat apart).
    A model with an edit block (:func:`netfix.methods.editing.add_edit_block`) is edited at the block's output
    projection, ``edit_block.out``: on Fashion-MNIST's ResNet-8 that costs a fifth to a sixth of the
    drawdown of editing ``layer3`` + ``fc`` (docs/results.md, issue 6). Otherwise its classifier head: the last
    ``nn.Linear`` with ``num_classes`` outputs (``fc`` of netfix's models, ``classifier`` of a Hugging Face model);
    without one, the last module holding parameters that is not a normalisation layer."""
    block = getattr(model, "edit_block", None)
    if isinstance(block, EditBlock) and block.out.weight.requires_grad:
        return ["edit_block.out"]
    linears = [n for n, m in model.named_modules() if isinstance(m, nn.Linear) and m.weight.requires_grad
               and (num_classes is None or m.out_features == num_classes)]
    if linears:
        return linears[-1:]
    owners = [n for n, m in model.named_modules() if n and not isinstance(m, _NORMS)
              and any(p.requires_grad for p in m.parameters(recurse=False))]
    return owners[-1:] if owners else [n.rsplit(".", 1)[0] for n, _ in model.named_parameters()][-1:]
