"""``resnet``: the CIFAR-style ResNet of He et al. 2016 (depth 6n + 2); ``resnet18``: the CIFAR variant of
ResNet-18 the unlearning literature uses. BatchNorm throughout."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ..errors import ConfigError
from .layers import edit_block_or_identity, image_shape


class _Block(nn.Module):
    """Basic residual block (two 3x3 convs with BatchNorm), 1x1 projection on the shortcut when shapes change."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + self.shortcut(x))


class ResNet(nn.Module):
    """CIFAR-style ResNet (He et al. 2016): depth = 6n + 2, three stages of width w, 2w, 4w.

    ``depth=20, width=16`` is ResNet-20; ``depth=8, width=8`` is a small model for tests. Stages are named
    ``layer1..layer3`` and the classifier ``fc``, the names editing and forgetting operators refer to.

    Every reference architecture takes ``edit_block=H``: an :class:`EditBlock` of H hidden units before ``fc``
    (named ``edit_block``; 0 = none), which :func:`netfix.methods.editing.add_edit_block` inserts into a trained
    model."""

    def __init__(self, input_shape: Sequence[int], num_classes: int, depth: int = 20, width: int = 16,
                 edit_block: int = 0) -> None:
        super().__init__()
        if depth < 8 or (depth - 2) % 6:
            raise ConfigError(f"depth: a CIFAR-style ResNet has depth 6n+2 (8, 14, 20, 32, 44, 56, ...); got {depth}.")
        if width < 1:
            raise ConfigError(f"width: expected a positive number of channels; got {width}.")
        c, _, _ = image_shape(input_shape, "resnet")
        n = (depth - 2) // 6
        self.conv1 = nn.Conv2d(c, width, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        stages, cin = [], width
        for i, cout in enumerate((width, 2 * width, 4 * width)):
            blocks = [_Block(cin, cout, 1 if i == 0 else 2)] + [_Block(cout, cout, 1) for _ in range(n - 1)]
            stages.append(nn.Sequential(*blocks))
            cin = cout
        self.layer1, self.layer2, self.layer3 = stages
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.edit_block = edit_block_or_identity(cin, edit_block)
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.layer3(self.layer2(self.layer1(out)))
        return self.fc(self.edit_block(torch.flatten(self.pool(out), 1)))


class ResNet18(nn.Module):
    """ResNet-18, CIFAR variant (the unlearning literature's: SalUn, SCRUB, l1-sparse, ...): a 3x3 stem conv of
    stride 1 and no max-pool, four stages of two basic blocks of width w, 2w, 4w, 8w (stride 2 from the second
    stage on), BatchNorm, global average pooling, ``fc``.

    ``width=64`` is the standard ResNet-18 (11.2M parameters at 10 classes; a GPU model); ``width=16`` (0.7M) is
    the CPU size, whose Fashion-MNIST epoch takes a few minutes on two cores (docs/results.md). Stages are named
    ``layer1..layer4`` and the classifier ``fc``; ``edit_block=H`` puts an :class:`EditBlock` of H hidden units
    before ``fc`` (0 = none). Takes any (C, H, W) input, e.g. (1, 28, 28) or (3, 32, 32)."""

    def __init__(self, input_shape: Sequence[int], num_classes: int, width: int = 64, edit_block: int = 0) -> None:
        super().__init__()
        if isinstance(width, bool) or not isinstance(width, int) or width < 1:
            raise ConfigError(f"width: expected a positive number of channels like 64 (16 on a CPU); got {width!r}.")
        c, _, _ = image_shape(input_shape, "resnet18")
        self.conv1 = nn.Conv2d(c, width, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        stages, cin = [], width
        for i, cout in enumerate((width, 2 * width, 4 * width, 8 * width)):
            stages.append(nn.Sequential(_Block(cin, cout, 1 if i == 0 else 2), _Block(cout, cout, 1)))
            cin = cout
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.edit_block = edit_block_or_identity(cin, edit_block)
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
        return self.fc(self.edit_block(torch.flatten(self.pool(out), 1)))
