"""A training recipe (:class:`TrainConfig`): what :func:`netfix.train` records on every model it trains and the
retrain reference repeats, and what ``netfix.models.register(..., recipe=...)`` checks. Below both the models and
the training loop, so neither imports the other for it."""

from __future__ import annotations

from dataclasses import dataclass

from .validation import Options, option

__all__ = ["TrainConfig", "RECIPE_FIELDS"]

# The fields of a recipe that a model's architecture (netfix.models.recipe) or its card may set.
RECIPE_FIELDS = ("optimizer", "lr", "batch_size", "momentum", "weight_decay", "lr_schedule")


@dataclass
class TrainConfig(Options):
    """A training recipe. Stored with every trained model (its card's ``recipe``) so that the retrain reference
    can repeat it on the retain set."""

    epochs: int = option(10, "passes over the data", low=1, high=100_000)
    lr: float = option(1e-3, "peak learning rate", unit="per step", low=0, high=10, low_open=True)
    batch_size: int = option(128, "samples per step", low=1, high=1 << 20)
    optimizer: str = option("adam", "the optimizer", choices=("adam", "adamw", "sgd"))
    momentum: float = option(0.9, "SGD momentum (ignored by Adam)", low=0, high=1, high_open=True)
    weight_decay: float = option(0.0, "L2 penalty (decoupled for adamw)", low=0, high=1)
    lr_schedule: str = option("constant", "learning-rate schedule: constant, or cosine (annealed to 0 over all "
                              "steps)", choices=("constant", "cosine"))
    label_smoothing: float = option(0.0, "cross-entropy label smoothing", low=0, high=1, high_open=True)
    grad_clip: float | None = option(None, "max global gradient norm", low=0, low_open=True, high=1e6,
                                     none="no clipping")
    precision: str = option("fp32", "arithmetic of the forward pass: fp32, or bf16 (torch.autocast mixed precision "
                            "on CPU or CUDA; weights, gradients and the optimizer stay fp32)", choices=("fp32", "bf16"))
