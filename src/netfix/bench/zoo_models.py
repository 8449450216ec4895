"""Models netfix did not build, as users bring them — the zoo of the ``zoo`` bench and of the foreign-model
contract tests: two Hugging Face classifiers (random init, built from a config, offline), a residual network with
BatchNorm and Dropout and a non-sequential forward, an MLP-Mixer-style network with LayerNorm and GELU, and a model
that takes its input as a keyword and returns a dict. Each is trained by :func:`train_plain`, an ordinary PyTorch
loop (not netfix's), as a user's model would have been.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..data import LabeledData

__all__ = ["ZOO", "FULL_SIZE", "build", "train_plain", "ResidualBN", "Mixer", "KeywordNet"]


class ResidualBN(nn.Module):
    """Conv stem, two residual blocks with BatchNorm, Dropout before the head, and a linear skip from the
    pooled stem features: a non-sequential forward."""

    def __init__(self, input_shape: Sequence[int], num_classes: int, width: int = 16, dropout: float = 0.2) -> None:
        super().__init__()
        c = int(input_shape[0])
        self.stem = nn.Sequential(nn.Conv2d(c, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU())
        self.block1 = nn.Sequential(nn.Conv2d(width, width, 3, padding=1, bias=False), nn.BatchNorm2d(width),
                                    nn.ReLU(), nn.Conv2d(width, width, 3, padding=1, bias=False),
                                    nn.BatchNorm2d(width))
        self.down = nn.Sequential(nn.Conv2d(width, 2 * width, 3, stride=2, padding=1, bias=False),
                                  nn.BatchNorm2d(2 * width), nn.ReLU())
        self.block2 = nn.Sequential(nn.Conv2d(2 * width, 2 * width, 3, padding=1, bias=False),
                                    nn.BatchNorm2d(2 * width))
        self.drop = nn.Dropout(dropout)
        self.skip = nn.Linear(width, num_classes)
        self.head = nn.Linear(2 * width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B, K)
        s = self.stem(x)
        h = F.relu(s + self.block1(s))
        d = self.down(h)
        h2 = F.relu(d + self.block2(d))
        pooled = h2.mean((2, 3))
        return self.head(self.drop(pooled)) + self.skip(s.mean((2, 3)))


class _MixerBlock(nn.Module):
    def __init__(self, tokens: int, dim: int) -> None:
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.token_mlp = nn.Sequential(nn.Linear(tokens, 2 * tokens), nn.GELU(), nn.Linear(2 * tokens, tokens))
        self.channel_mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, T, D)
        x = x + self.token_mlp(self.norm1(x).transpose(1, 2)).transpose(1, 2)
        return x + self.channel_mlp(self.norm2(x))


class Mixer(nn.Module):
    """MLP-Mixer style: patches -> tokens, blocks of token- and channel-mixing MLPs with LayerNorm and GELU."""

    def __init__(self, input_shape: Sequence[int], num_classes: int, patch: int = 2, dim: int = 32,
                 depth: int = 2) -> None:
        super().__init__()
        c, h, w = (int(s) for s in input_shape)
        self.patch = nn.Conv2d(c, dim, patch, stride=patch)
        tokens = (h // patch) * (w // patch)
        self.blocks = nn.Sequential(*[_MixerBlock(tokens, dim) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim)
        self.classifier = nn.Linear(dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = self.patch(x).flatten(2).transpose(1, 2)  # (B, T, D)
        return self.classifier(self.norm(self.blocks(t)).mean(1))


class KeywordNet(nn.Module):
    """Takes its input only as a keyword (``image=``) and returns a dict with ``scores`` and ``features``."""

    def __init__(self, input_shape: Sequence[int], num_classes: int, hidden: int = 64) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), hidden), nn.ReLU(),
                                  nn.Linear(hidden, hidden), nn.ReLU())
        self.out = nn.Linear(hidden, num_classes)

    def forward(self, *, image: torch.Tensor) -> dict[str, torch.Tensor]:
        f = self.body(image)
        return {"scores": self.out(f), "features": f}


def _hf_vit(input_shape: Sequence[int], num_classes: int, dim: int = 32, depth: int = 2, heads: int = 2,
            patch: "int | None" = None) -> nn.Module:
    from transformers import ViTConfig, ViTForImageClassification

    c, h, _ = (int(s) for s in input_shape)
    patch = patch or (2 if h <= 8 else 4)
    return ViTForImageClassification(ViTConfig(image_size=h, patch_size=patch, num_channels=c, hidden_size=dim,
                                               num_hidden_layers=depth, num_attention_heads=heads,
                                               intermediate_size=2 * dim,
                                               num_labels=num_classes))  # type: ignore[call-arg]


def _hf_resnet(input_shape: Sequence[int], num_classes: int, widths: Sequence[int] = (16, 32),
               depths: Sequence[int] = (1, 1)) -> nn.Module:
    from transformers import ResNetConfig, ResNetForImageClassification

    return ResNetForImageClassification(ResNetConfig(num_channels=int(input_shape[0]), embedding_size=widths[0],
                                                     hidden_sizes=list(widths), depths=list(depths),
                                                     num_labels=num_classes))  # type: ignore[call-arg]


ZOO: dict[str, Callable[..., nn.Module]] = {
    "hf-vit": _hf_vit, "hf-resnet": _hf_resnet, "residual-bn": ResidualBN, "mixer": Mixer, "keyword": KeywordNet,
}


# netfix's own resnet18 and vit at full size (the literature's CIFAR ResNet-18; ViT-Tiny with 4x4 patches), trained
# by the same plain loop: GPU models, which `netfix bench zoo --device cuda` adds to the zoo.
FULL_SIZE: dict[str, dict[str, Any]] = {"resnet18": {"width": 64}, "vit": {"dim": 192, "depth": 12, "heads": 3}}


def build(name: str, input_shape: Sequence[int], num_classes: int, seed: int = 0, **kwargs: Any) -> nn.Module:
    """A zoo model (or a :data:`FULL_SIZE` one), initialised from ``seed``."""
    if name in FULL_SIZE:
        from ..models import build as build_netfix

        return build_netfix(name, input_shape, num_classes, seed=seed, **{**FULL_SIZE[name], **kwargs})
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return ZOO[name](input_shape, num_classes, **kwargs)


def _logits(out: Any) -> torch.Tensor:
    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, dict) and "scores" in out:
        return out["scores"]
    return out.logits  # a Hugging Face ModelOutput


def train_plain(model: nn.Module, data: LabeledData, epochs: int = 10, lr: float = 2e-3, batch_size: int = 64,
                seed: int = 0, keyword: "str | None" = None, device: "torch.device | str | None" = None) -> nn.Module:
    """A user's own training loop: AdamW with a cosine schedule, nothing of netfix's. Trains ``model`` in place
    (on ``device`` when given) and returns it on the CPU, in eval mode."""
    g = torch.Generator().manual_seed(seed)
    dev = torch.device(device) if device is not None else torch.device("cpu")
    model.to(dev)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    steps = epochs * math.ceil(len(data) / batch_size)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    model.train()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for _ in range(epochs):
            order = torch.randperm(len(data), generator=g)
            for i in range(0, len(data), batch_size):
                idx = order[i:i + batch_size]
                if len(idx) < 2:
                    continue
                X, y = data.X[idx].to(dev), data.y[idx].to(dev)
                out = model(**{keyword: X}) if keyword else model(X)
                loss = F.cross_entropy(_logits(out), y)
                opt.zero_grad()
                loss.backward()
                opt.step()
                sched.step()
    return model.cpu().eval()
