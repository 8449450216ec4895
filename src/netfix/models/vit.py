"""``vit``: a small Vision Transformer (Dosovitskiy et al. 2021): patch embedding, class token, pre-LayerNorm blocks."""

from __future__ import annotations

import numbers
from collections.abc import Sequence

import torch
from torch import nn

from ..errors import ConfigError
from .layers import edit_block_or_identity, image_shape


class Attention(nn.Module):
    """Multi-head self-attention: one ``qkv`` projection, ``scaled_dot_product_attention``, an output ``proj``."""

    def __init__(self, dim: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.heads, self.dropout = heads, dropout
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, T, D) -> (B, T, D)
        b, t, d = x.shape
        q, k, v = self.qkv(x).reshape(b, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4).unbind(0)
        out = nn.functional.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout if self.training else 0.0)
        return self.drop(self.proj(out.transpose(1, 2).reshape(b, t, d)))


class MLP(nn.Module):
    """The transformer block's feed-forward part: ``fc1``, GELU, ``fc2`` (dropout after each)."""

    def __init__(self, dim: int, hidden: int, dropout: float) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.fc2(self.drop(nn.functional.gelu(self.fc1(x)))))


class Block(nn.Module):
    """Pre-LayerNorm transformer block: ``x + attn(norm1(x))``, then ``x + mlp(norm2(x))``."""

    def __init__(self, dim: int, heads: int, hidden: int, dropout: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads, dropout)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = MLP(dim, hidden, dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


def _whole(value: object, name: str, example: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ConfigError(f"{name}: expected a positive whole number like {example}; got {value!r}.")
    return int(value)


class ViT(nn.Module):
    """A Vision Transformer for small images: ``patch_embed`` (a Conv2d with kernel = stride = ``patch``) cuts the
    image into patches, a learned class token and position embeddings are added, ``depth`` pre-LayerNorm blocks
    (``blocks.0`` ...; multi-head self-attention and a GELU MLP of ``mlp_ratio`` x ``dim`` units) follow, then a
    final LayerNorm ``norm``, the ``edit_block`` slot (``edit_block=H``: an :class:`EditBlock` of H hidden units;
    0 = none) and the classifier ``fc`` on the class token.

    The defaults (``dim=64, depth=4, heads=4, mlp_ratio=4``: 0.2M parameters) are the CPU size. The full size, for
    a GPU, is ViT-Tiny with patch 4 on 28/32-pixel images: ``dim=192, depth=12, heads=3, mlp_ratio=4`` (5.4M
    parameters). Height and width must be multiples of ``patch`` (4 for 28x28 and 32x32 inputs)."""

    patch_embed: nn.Conv2d
    cls_token: nn.Parameter
    pos_embed: nn.Parameter
    pos_drop: nn.Dropout
    blocks: nn.Sequential
    norm: nn.LayerNorm
    edit_block: nn.Module
    fc: nn.Linear

    def __init__(self, input_shape: Sequence[int], num_classes: int, patch: int = 4, dim: int = 64, depth: int = 4,
                 heads: int = 4, mlp_ratio: float = 4.0, dropout: float = 0.0, edit_block: int = 0) -> None:
        super().__init__()
        c, h, w = image_shape(input_shape, "vit")
        patch = _whole(patch, "patch", "4")
        dim = _whole(dim, "dim", "64")
        depth = _whole(depth, "depth", "4")
        heads = _whole(heads, "heads", "4")
        if h % patch or w % patch:
            fits = [p for p in range(1, min(h, w) + 1) if h % p == 0 and w % p == 0 and p > 1]
            raise ConfigError(f"patch: the {h}x{w} input is not divisible into {patch}x{patch} patches. Fix: pass "
                              f"patch={min(fits, key=lambda p: (abs(p - patch), -p)) if fits else 1} (divisors of both sides: "
                              f"{', '.join(map(str, fits)) or 'none but 1'}), or resize the images.")
        if dim % heads:
            raise ConfigError(f"heads: dim={dim} must split evenly into heads; got heads={heads}. Fix: pick heads "
                              f"dividing {dim} (e.g. {next(k for k in (4, 2, 1) if dim % k == 0)}).")
        if isinstance(mlp_ratio, bool) or not isinstance(mlp_ratio, numbers.Real) or not 0 < mlp_ratio <= 64:
            raise ConfigError(f"mlp_ratio: expected the MLP's width as a multiple of dim, in (0, 64], like 2 or 4; "
                              f"got {mlp_ratio!r}.")
        if isinstance(dropout, bool) or not isinstance(dropout, numbers.Real) or not 0 <= dropout < 1:
            raise ConfigError(f"dropout: expected a probability in [0, 1); got {dropout!r}.")
        hidden = max(1, round(dim * float(mlp_ratio)))
        self.patch_embed = nn.Conv2d(c, dim, patch, patch)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + (h // patch) * (w // patch), dim))
        self.pos_drop = nn.Dropout(float(dropout))
        self.blocks = nn.Sequential(*[Block(dim, heads, hidden, float(dropout)) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim)
        self.edit_block = edit_block_or_identity(dim, edit_block)
        self.fc = nn.Linear(dim, num_classes)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Draw the class token and position embeddings (truncated normal, std 0.02, as ViT does); the layers
        inside keep their own initialisers (so :func:`netfix.models.reinit` redraws everything)."""
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.patch_embed(x).flatten(2).transpose(1, 2)  # (B, N, D)
        cls = self.cls_token.expand(tokens.shape[0], -1, -1)
        tokens = self.pos_drop(torch.cat([cls, tokens], dim=1) + self.pos_embed)
        out = self.norm(self.blocks(tokens))
        return self.fc(self.edit_block(out[:, 0]))
