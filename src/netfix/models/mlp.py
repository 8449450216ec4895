"""``mlp``: Flatten, hidden Linear + ReLU layers, a classifier."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from .layers import edit_block_or_identity, widths


class MLP(nn.Module):
    """Flatten -> [Linear -> ReLU (-> Dropout)] x len(hidden) -> Linear."""

    def __init__(self, input_shape: Sequence[int], num_classes: int, hidden: "Sequence[int] | int" = (256, 256),
                 dropout: float = 0.0, edit_block: int = 0) -> None:
        super().__init__()
        hidden = widths(hidden)
        layers: list[nn.Module] = [nn.Flatten()]
        width = math.prod(input_shape)
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU()]
            if dropout:
                layers.append(nn.Dropout(dropout))
            width = h
        self.body = nn.Sequential(*layers)
        self.edit_block = edit_block_or_identity(width, edit_block)
        self.fc = nn.Linear(width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, *input_shape) -> (B, K)
        return self.fc(self.edit_block(self.body(x)))
