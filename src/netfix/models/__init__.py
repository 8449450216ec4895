"""The architecture registry (netfix's reference architectures, and those registered in code) and their recipes.

Every netfix operation also takes any user ``nn.Module`` mapping a batch of inputs to logits; these are the models
benchmarks and examples use. A built model remembers how it was built (its card, :mod:`netfix.card`) so that
:func:`netfix.save` can write the architecture next to the weights and :func:`netfix.load` can rebuild it.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import Any, Callable

import torch
from torch import nn

from .. import card
from ..errors import ConfigError, unknown
from ..recipe import TrainConfig
from ..registry import Registry
from . import hf
from .layers import EditBlock
from .lenet import LeNet
from .mlp import MLP
from .resnet import ResNet, ResNet18
from .vit import ViT

__all__ = ["build", "available", "register", "unregister", "architecture", "recipe", "reinit", "EditBlock", "MLP",
           "LeNet", "ResNet", "ResNet18", "ViT"]


Factory = Callable[..., nn.Module]  # (input_shape, num_classes, **kwargs) -> the untrained model


# netfix's own architectures; + "mixed-linear" (netfix.methods.mixed_linear registers it)
_BUILTIN: Registry[Factory] = Registry("architecture", "name")
_OWN: dict[str, Factory] = {"mlp": MLP, "lenet": LeNet, "resnet": ResNet, "resnet18": ResNet18, "vit": ViT,
                            hf.NAME: hf.build}
for _name, _factory in _OWN.items():
    _BUILTIN.add(_name, _factory)
_USER: Registry[Factory] = Registry("architecture", "name")  # netfix.models.register(...) in the user's program


def add_builtin(name: str, factory: Callable[..., nn.Module]) -> None:
    """netfix's own architectures defined above this package (``"mixed-linear"`` by
    :mod:`netfix.methods.mixed_linear`): they register here, so that this package imports none of them."""
    _BUILTIN.add(name, factory, replace=True)


ENTRY_POINT_GROUP = "netfix.architectures"


def register(name: str, factory: Callable[..., nn.Module], *, recipe: "dict[str, Any] | None" = None,
             replace: bool = False) -> None:
    """Make ``name`` an architecture netfix can build and load: ``factory(input_shape, num_classes, **kwargs)``
    returns the untrained model. A saved model then records ``name`` and its kwargs (data), never code, and
    :func:`netfix.load` rebuilds it only in a program that registered ``name`` (or installed a package that
    declares it in the ``netfix.architectures`` entry-point group). ``recipe``: its default training recipe
    (``netfix.train`` keyword arguments).

    Example:
        >>> def tiny(input_shape, num_classes, width=32):
        ...     return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), width), nn.ReLU(),
        ...                          nn.Linear(width, num_classes))
        >>> netfix.models.register("tiny", tiny)
        >>> m = netfix.models.build("tiny", (1, 8, 8), 10, width=16)
    """
    if not isinstance(name, str) or not name or len(name) > 100:
        raise ConfigError(f"name: expected a non-empty architecture name; got {name!r}.")
    if not callable(factory):
        raise ConfigError(f"factory: expected a callable (input_shape, num_classes, **kwargs) -> nn.Module; got "
                          f"{type(factory).__name__}.")
    if name in _BUILTIN:
        raise ConfigError(f"name: {name!r} is one of netfix's own architectures; pick another name.")
    if recipe is not None:
        TrainConfig(**recipe)  # every option checked now
    _USER.add(name, factory, replace=replace)
    if recipe is not None:
        _RECIPES.add(name, dict(recipe), replace=True)


def unregister(name: str) -> bool:
    """Forget an architecture registered in this program, and its recipe, as a program that never registered it (its
    files then load again only after a new :func:`register`, or through an installed entry point). Returns whether
    it was registered; netfix's own architectures cannot be removed.

    Example:
        >>> netfix.models.unregister("tiny")
        True
    """
    if name in _BUILTIN:
        raise ConfigError(f"name: {name!r} is one of netfix's own architectures; it cannot be unregistered.")
    _RECIPES.remove(name)
    return _USER.remove(name)


def architecture(name: str, argument: str = "name") -> "Callable[..., nn.Module] | None":
    """The factory registered under ``name`` (``None`` for netfix's own architectures); an unknown name lists the
    known ones. Looks in this program's registrations, then in installed packages' ``netfix.architectures``
    entry points (loading only the one named ``name``)."""
    if not isinstance(name, str):
        raise ConfigError(f"{argument}: expected an architecture name; got {name!r}.")
    if name in _BUILTIN:
        return None
    if name in _USER:
        return _USER.get(name)
    from importlib.metadata import entry_points

    found = [ep for ep in entry_points(group=ENTRY_POINT_GROUP) if ep.name == name]
    if found:
        factory = found[0].load()  # code the user installed and declared for this name, not code a file chose
        if not callable(factory):
            raise ConfigError(f"{argument}: the entry point {found[0].value!r} for {name!r} is not callable.")
        return _USER.add(name, factory)
    plugins = sorted(ep.name for ep in entry_points(group=ENTRY_POINT_GROUP))
    raise unknown("model", name, sorted(set(_BUILTIN) | set(_USER) | set(plugins)), argument)


# Default training recipes (netfix.train keyword arguments) per architecture. mlp and lenet were chosen on a
# validation split of 10,000 images carved from Fashion-MNIST's training set, never on its test set
# (benchmarks/select_recipe.py; docs/results.md); resnet18 (at width 16) and vit (its CPU size) the same way on
# 20,000 training images for 4 epochs (benchmarks/select_recipe_zoo.py; docs/select_recipe_zoo.jsonl). resnet
# takes the literature's CIFAR recipe, untuned.
_RECIPES: Registry[dict[str, Any]] = Registry("model", "name")
for _name, _recipe in {
    "mlp": {"optimizer": "adam", "lr": 2e-3, "lr_schedule": "cosine", "batch_size": 128},
    "lenet": {"optimizer": "adam", "lr": 2e-3, "lr_schedule": "cosine", "batch_size": 32},
    "resnet": {"optimizer": "sgd", "lr": 0.1, "momentum": 0.9, "weight_decay": 5e-4, "lr_schedule": "cosine",
               "batch_size": 128},
    "resnet18": {"optimizer": "adamw", "lr": 2e-3, "weight_decay": 0.05, "lr_schedule": "cosine", "batch_size": 128},
    "vit": {"optimizer": "adam", "lr": 3e-3, "lr_schedule": "cosine", "batch_size": 64},
}.items():
    _RECIPES.add(_name, _recipe)


def has_recipe(name: str) -> bool:
    """Whether ``name`` has a training recipe (netfix's architectures, and those registered with one)."""
    return name in _RECIPES


def recipe(name: str) -> dict[str, Any]:
    """The default training recipe for a reference architecture, as ``netfix.train`` keyword arguments.

    Example:
        >>> recipe("lenet")["lr_schedule"]
        'cosine'
    """
    return dict(_RECIPES.get(name))


def available() -> list[str]:
    """The architectures :func:`build` makes: netfix's reference ones and those registered in this program (it
    also takes ``"mixed-linear"``, which wraps one of them as a core:
    :class:`netfix.methods.mixed_linear.MixedLinear`)."""
    return sorted(n for n in set(_BUILTIN) | set(_USER) if n not in ("mixed-linear", hf.NAME))


def build(name: str, input_shape: Sequence[int], num_classes: int, seed: int | None = None,
          **kwargs: Any) -> nn.Module:
    """Build a reference architecture; ``seed`` makes its initialisation reproducible.

    Example:
        >>> m = build("mlp", input_shape=(1, 28, 28), num_classes=10, hidden=(128,), seed=0)
        >>> m(torch.zeros(2, 1, 28, 28)).shape
        torch.Size([2, 10])
    """
    factory = architecture(name)
    ctor = _BUILTIN.get(name) if factory is None else factory
    try:
        shape = tuple(int(s) for s in input_shape)
    except (TypeError, ValueError):
        raise ConfigError(f"input_shape: expected sizes like (1, 28, 28); got {input_shape!r}.") from None
    if not shape or any(s < 1 for s in shape):
        raise ConfigError(f"input_shape: expected positive sizes like (1, 28, 28); got {tuple(input_shape)}.")
    if isinstance(num_classes, bool) or not isinstance(num_classes, numbers.Integral):
        raise ConfigError(f"num_classes: expected a whole number of classes; got {num_classes!r}.")
    if num_classes < 2:
        raise ConfigError(f"num_classes: a classifier needs at least 2 classes; got {num_classes}.")
    with torch.random.fork_rng(devices=[]):
        if seed is not None:
            torch.manual_seed(seed)
        try:
            model = ctor(shape, int(num_classes), **kwargs)
        except TypeError as e:  # an unknown keyword: name the valid ones
            import inspect

            valid = [p for p in inspect.signature(ctor).parameters if p not in ("input_shape", "num_classes")]
            raise ConfigError(f"{name}: {e}. Valid options: {', '.join(valid)}.") from None
    if not isinstance(model, nn.Module):
        raise ConfigError(f"{name}: its factory returned {type(model).__name__}, not an nn.Module.")
    kwargs = {k: list(v) if isinstance(v, tuple) else v for k, v in kwargs.items()}
    card.update(model, architecture={"name": name, "kwargs": kwargs}, input_shape=list(shape),
                num_classes=int(num_classes))
    return model


def reinit(model: nn.Module, seed: int = 0) -> nn.Module:
    """A copy of ``model`` with fresh weights from each layer's own initialiser (``reset_parameters``), as
    retraining from scratch needs. Works for user modules built from standard layers."""
    import copy

    device = next(iter(model.parameters())).device
    fresh = copy.deepcopy(model).to("cpu")  # initialise on the CPU RNG: the same weights on every device
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for m in fresh.modules():
            if hasattr(m, "reset_parameters") and callable(m.reset_parameters):
                m.reset_parameters()
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.reset_running_stats()
    return fresh.to(device)
