"""``msg`` (Masked Small Gradients): re-initialise the weights that neither the kept nor the forgotten samples
lean on, then fine-tune on ``retain`` with the other weights slowed down.

1. Scores. One pass of cross-entropy gradients, summed over batches at the trained weights (in eval mode: BatchNorm
   statistics untouched, no Dropout noise): descent on a random draw of ``retain`` as large as ``forget`` plus
   ascent on ``forget``, g = Σ ∇CE(retain draw) − Σ ∇CE(forget).
2. Re-initialisation. In every selected layer (``layers``), the ``reinit_fraction`` of its weights with the
   *smallest* |g| — one threshold per layer — get fresh values (Kaiming normal, fan-out, ReLU gain); the rest keep
   theirs. Biases and normalisation layers are left as they are.
3. Fine-tuning. Cross-entropy on ``retain`` with SGD; the gradient of every weight that kept its value is scaled by
   ``kept_grad_scale`` (the re-initialised ones learn at full speed); the learning rate rises linearly to its peak at
   the middle epoch and falls linearly after it.

The forget set's influence is removed by overwriting part of the network and regrowing it from the retained data
alone, while the weights that carry what both sets share move slowly. Source: the second-placed entry of the NeurIPS
2023 unlearning challenge as benchmarked in Deep Unlearn (Cadet et al. 2024, arXiv 2410.01276), where MSG and
Convolution Transpose ranked best across models and datasets; there only convolution weights are selected, which
``layers="hidden"`` reproduces on convolutional nets (their classifier is their only linear layer) while it also
covers fully connected nets.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .._runtime import eval_mode
from ..data import LabeledData, batches
from ..models.layers import classifier_head
from ..errors import ConfigError
from ..training import TrainConfig, fit, make_optimizer
from ..validation import MAX_BATCH, MAX_EPOCHS, Options, option
from . import Context, register

_CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
LAYERS = ("hidden", "all", "conv")


@dataclass
class MSGConfig(Options):
    """Options of ``msg`` (the source's setting: 30 % of each layer's weights re-initialised, the others' gradients
    ×0.1, 5 epochs of SGD at peak lr 1e-3, momentum 0.9, wd 5e-4, batches of 64, triangular schedule).

    Defaults marked in docs/results.md were chosen on a validation split (benchmarks/unlearn_select.py).
    """

    reinit_fraction: float = option(0.7, "share of each selected layer's weights re-initialised: those with the "
                                    "smallest |retain gradient - forget gradient|; 0.7 with lr 0.03 chosen on a "
                                    "validation split (the source: 0.3 at 1e-3 forgot a class only in part)",
                                    low=0, high=1, low_open=True)
    kept_grad_scale: float = option(0.1, "gradient multiplier of the weights that keep their trained value (the "
                                    "re-initialised ones: 1)", low=0, high=1)
    layers: str = option("hidden", "layers whose weights are scored and partly re-initialised: 'hidden' = every "
                         "convolution and linear layer but the classifier head (the head if there is no other); "
                         "'all' = the head too; 'conv' = convolutions only, as the source", choices=LAYERS,
                         kind="layer selection")
    epochs: int = option(5, "passes over the retain set", low=1, high=MAX_EPOCHS)
    lr: float = option(3e-2, "SGD peak learning rate (reached at the middle epoch); chosen on a validation split "
                       "(benchmarks/unlearn_select.py)", unit="per step", low=0, high=10, low_open=True)
    lr_schedule: str = option("triangle", "'triangle' = linear rise to the peak at the middle epoch, then linear "
                              "fall, as the source; 'constant'", choices=("triangle", "constant"))
    momentum: float = option(0.9, "SGD momentum", low=0, high=1, high_open=True)
    weight_decay: float = option(5e-4, "SGD L2 penalty", low=0, high=1)
    batch_size: int = option(64, "samples per step, in the scoring pass and in fine-tuning", low=1, high=MAX_BATCH)
    train_mode: bool = option(True, "True: fine-tune with BatchNorm batch statistics and Dropout on, as the "
                              "source; False: in eval mode (statistics frozen)")

    def recipe(self, lr: float) -> TrainConfig:
        return TrainConfig(epochs=1, lr=lr, batch_size=self.batch_size, optimizer="sgd", momentum=self.momentum,
                           weight_decay=self.weight_decay)


def triangle(epoch: int, epochs: int) -> float:
    """The learning-rate factor of ``epoch`` (1-based) of ``epochs``: rises linearly to 1 at the middle epoch
    (⌈epochs/2⌉), then falls linearly, staying above 0 at the last epoch."""
    peak = math.ceil(epochs / 2)
    return epoch / peak if epoch <= peak else (epochs + 1 - epoch) / (epochs + 1 - peak)


def selected_layers(model: nn.Module, layers: str) -> dict[str, torch.Tensor]:
    """The weights ``layers`` selects, by module name; an empty selection is an error saying why."""
    head = set(classifier_head(model)) if layers == "hidden" else set()
    kinds = _CONV if layers == "conv" else (*_CONV, nn.Linear)
    chosen: dict[str, torch.Tensor] = {
        n: m.weight for n, m in model.named_modules() if isinstance(m, kinds) and n not in head
        and isinstance(getattr(m, "weight", None), torch.Tensor) and m.weight.requires_grad}
    if not chosen and layers == "hidden":  # a model without hidden layers (e.g. a linear probe): its head
        return selected_layers(model, "all")
    if not chosen:
        what = "no trainable convolution" if layers == "conv" else "no trainable convolution or linear layer"
        raise ConfigError(f"layers: the model has {what}, so {layers!r} selects nothing to re-initialise. Fix: "
                          f"pass layers='hidden' (every convolution and linear layer but the head).")
    return chosen


def gradient_scores(model: nn.Module, forget: LabeledData, retain: LabeledData, weights: list[torch.Tensor],
                    batch_size: int, ctx: Context) -> list[torch.Tensor]:
    """|Σ ∇CE(retain draw) − Σ ∇CE(forget)| for each of ``weights`` (summed batch means; the retain draw is
    ``len(forget)`` samples picked with ``ctx.generator``), in eval mode."""
    total = [torch.zeros_like(w) for w in weights]
    draw = torch.randperm(len(retain), generator=ctx.generator)[:len(forget)].sort().values
    with eval_mode(model):
        for data, sign in ((retain.subset(draw.numpy(), "retain-draw"), 1.0), (forget, -1.0)):
            for X, y in batches(data, batch_size, None, ctx.device):
                grads = torch.autograd.grad(F.cross_entropy(model(X), y), weights, allow_unused=True)
                for t, g in zip(total, grads):
                    if g is not None:
                        t.add_(g, alpha=sign)
    return [t.abs() for t in total]


@torch.no_grad()
def reinit_small(weight: torch.Tensor, score: torch.Tensor, fraction: float, generator: torch.Generator
                 ) -> torch.Tensor:
    """Give the ``fraction`` of ``weight``'s entries with the smallest ``score`` fresh Kaiming-normal values
    (fan-out, ReLU gain), in place; returns their boolean mask."""
    k = max(1, round(fraction * weight.numel()))
    mask = torch.zeros(weight.numel(), dtype=torch.bool, device=weight.device)
    mask[torch.topk(score.flatten(), k, largest=False, sorted=False).indices] = True
    mask = mask.view_as(weight)
    fresh = nn.init.kaiming_normal_(torch.empty(weight.shape), mode="fan_out", nonlinearity="relu",
                                    generator=generator)  # drawn on the CPU: the run's seeded generator
    weight.copy_(torch.where(mask, fresh.to(weight.device, weight.dtype), weight))
    return mask


@register("msg", MSGConfig, modes=("unlearn",), strength="lr",
          needs_retain="msg re-initialises weights and regrows them on the samples to keep (neggrad needs only "
                       "forget).",
          summary="re-initialise the weights with the smallest retain-minus-forget gradient, fine-tune on retain "
                  "with the others slowed down (Deep Unlearn's MSG)")
def run(model: nn.Module, forget: LabeledData, retain: LabeledData, cfg: MSGConfig,
        ctx: Context) -> list[dict[str, Any]]:
    """Re-initialise the small-gradient weights, then fine-tune on retain with the other weights' steps scaled."""
    start = time.perf_counter()
    layers = selected_layers(model, cfg.layers)
    weights = list(layers.values())
    scores = gradient_scores(model, forget, retain, weights, cfg.batch_size, ctx)
    # (weight, its gradient multiplier): 1 where re-initialised, kept_grad_scale elsewhere
    scales: list[tuple[torch.Tensor, torch.Tensor]] = []
    fresh_count = 0
    for w, s in zip(weights, scores):
        fresh = reinit_small(w, s, cfg.reinit_fraction, ctx.generator)
        fresh_count += int(fresh.sum())
        scales.append((w, torch.where(fresh, 1.0, cfg.kept_grad_scale).to(w.dtype)))
    header = {"phase": "reinit", "layers": list(layers), "reinitialised": fresh_count,
              "weights": sum(w.numel() for w in weights), "reinit_seconds": time.perf_counter() - start}

    def scale_grads(_: nn.Module) -> None:
        for w, m in scales:
            if w.grad is not None:
                w.grad.mul_(m)

    opt = make_optimizer([p for p in model.parameters() if p.requires_grad], cfg.recipe(cfg.lr))
    history: list[dict[str, Any]] = [header]
    steps = 0
    for epoch in range(1, cfg.epochs + 1):  # one fit per epoch: the schedule moves the lr between epochs
        lr = cfg.lr * (triangle(epoch, cfg.epochs) if cfg.lr_schedule == "triangle" else 1.0)
        for group in opt.param_groups:
            group["lr"] = lr
        for h in fit(model, retain, cfg.recipe(lr), generator=ctx.generator, device=ctx.device, optimizer=opt,
                     before_step=scale_grads, train_mode=cfg.train_mode, progress=ctx.progress,
                     desc=f"msg {epoch}/{cfg.epochs}"):
            history.append({**h, "epoch": epoch, "step": steps + h["step"]})
        steps = history[-1]["step"]
    return history
