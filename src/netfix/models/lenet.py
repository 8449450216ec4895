"""``lenet``: LeNet-5 style convolutions and a 120-84-K head."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ..errors import ConfigError
from .layers import edit_block_or_identity, image_shape, widths


class LeNet(nn.Module):
    """LeNet-5 style: two 5x5 convs (padded, so 8x8 inputs work too) with max-pooling, then 120-84-K."""

    def __init__(self, input_shape: Sequence[int], num_classes: int, channels: Sequence[int] = (6, 16),
                 hidden: "Sequence[int] | int" = (120, 84), edit_block: int = 0) -> None:
        super().__init__()
        hidden = widths(hidden)
        if len(channels) != 2:
            raise ConfigError(f"channels: lenet has two conv layers; expected two widths like (6, 16); got {channels!r}.")
        c, h, w = image_shape(input_shape, "lenet")
        c1, c2 = channels
        self.features = nn.Sequential(
            nn.Conv2d(c, c1, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(c1, c2, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(),
        )
        width = c2 * (h // 4) * (w // 4)
        layers: list[nn.Module] = []
        for hd in hidden:
            layers += [nn.Linear(width, hd), nn.ReLU()]
            width = hd
        self.head = nn.Sequential(*layers)
        self.edit_block = edit_block_or_identity(width, edit_block)
        self.fc = nn.Linear(width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.edit_block(self.head(self.features(x))))
