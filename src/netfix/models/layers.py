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
