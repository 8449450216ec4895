"""Reference architectures: ``mlp``, ``lenet`` and a CIFAR-style ``resnet`` with BatchNorm.

Every netfix operation also takes any user ``nn.Module`` mapping a batch of inputs to logits; these are the models
benchmarks and examples use. A built model remembers how it was built (``model.netfix_spec``) so that
:func:`netfix.save` can write the architecture next to the weights and :func:`netfix.load` can rebuild it.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import Any, Callable

import torch
from torch import nn

from .errors import ConfigError, unknown

__all__ = ["build", "available", "register", "architecture", "recipe", "reinit", "EditBlock", "MLP", "LeNet",
           "ResNet"]


class EditBlock(nn.Module):
    """A residual MLP ``z + out(ELU(inp(z)))`` inserted before a classifier, the part Editable Training edits
    (Sinitsin et al.'s ImageNet recipe; methods.md §2). ``out`` starts at zero, so inserting the block leaves the
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


def _edit_block(width: int, hidden: int) -> nn.Module:
    return EditBlock(width, hidden) if hidden else nn.Identity()


class MLP(nn.Module):
    """Flatten -> [Linear -> ReLU (-> Dropout)] x len(hidden) -> Linear."""

    def __init__(self, input_shape: Sequence[int], num_classes: int, hidden: "Sequence[int] | int" = (256, 256),
                 dropout: float = 0.0, edit_block: int = 0) -> None:
        super().__init__()
        hidden = _widths(hidden)
        layers: list[nn.Module] = [nn.Flatten()]
        width = math.prod(input_shape)
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU()]
            if dropout:
                layers.append(nn.Dropout(dropout))
            width = h
        self.body = nn.Sequential(*layers)
        self.edit_block = _edit_block(width, edit_block)
        self.fc = nn.Linear(width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, *input_shape) -> (B, K)
        return self.fc(self.edit_block(self.body(x)))


class LeNet(nn.Module):
    """LeNet-5 style: two 5x5 convs (padded, so 8x8 inputs work too) with max-pooling, then 120-84-K."""

    def __init__(self, input_shape: Sequence[int], num_classes: int, channels: Sequence[int] = (6, 16),
                 hidden: "Sequence[int] | int" = (120, 84), edit_block: int = 0) -> None:
        super().__init__()
        hidden = _widths(hidden)
        if len(channels) != 2:
            raise ConfigError(f"channels: lenet has two conv layers; expected two widths like (6, 16); got {channels!r}.")
        c, h, w = _image_shape(input_shape, "lenet")
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
        self.edit_block = _edit_block(width, edit_block)
        self.fc = nn.Linear(width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.edit_block(self.head(self.features(x))))


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
    (named ``edit_block``; 0 = none), which :func:`netfix.editing.add_edit_block` inserts into a trained model."""

    def __init__(self, input_shape: Sequence[int], num_classes: int, depth: int = 20, width: int = 16,
                 edit_block: int = 0) -> None:
        super().__init__()
        if depth < 8 or (depth - 2) % 6:
            raise ConfigError(f"depth: a CIFAR-style ResNet has depth 6n+2 (8, 14, 20, 32, 44, 56, ...); got {depth}.")
        if width < 1:
            raise ConfigError(f"width: expected a positive number of channels; got {width}.")
        c, _, _ = _image_shape(input_shape, "resnet")
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
        self.edit_block = _edit_block(cin, edit_block)
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.layer3(self.layer2(self.layer1(out)))
        return self.fc(self.edit_block(torch.flatten(self.pool(out), 1)))


def _widths(hidden: "Sequence[int] | int") -> tuple[int, ...]:
    """Hidden widths as a tuple (a single int = one hidden layer)."""
    widths = (hidden,) if isinstance(hidden, int) else tuple(hidden)
    if any(not isinstance(w, int) or w < 1 for w in widths):
        raise ConfigError(f"hidden: expected positive layer widths like (256, 256); got {hidden!r}.")
    return widths


def _image_shape(input_shape: Sequence[int], name: str) -> tuple[int, int, int]:
    if len(input_shape) != 3:
        raise ConfigError(f"input_shape: {name} needs image inputs (C, H, W); got {tuple(input_shape)}. "
                          "Fix: use 'mlp' for flat features, or reshape the data to (N, C, H, W).")
    c, h, w = (int(s) for s in input_shape)
    return c, h, w


def _mixed_linear(input_shape: Sequence[int], num_classes: int, core: dict[str, Any],
                  linearize: Sequence[str] = ("fc",), lam: float = 5e-4, target_scale: float = 5.0) -> nn.Module:
    """A :class:`netfix.mixed.MixedLinear` around a reference core ``{"name": ..., "kwargs": {...}}`` (how
    :func:`netfix.load` rebuilds a saved mixed-linear model)."""
    from .mixed import MixedLinear

    if not isinstance(core, dict) or core.get("name") not in ("mlp", "lenet", "resnet"):
        raise ConfigError(f"core: expected {{'name': 'mlp' | 'lenet' | 'resnet', 'kwargs': {{...}}}}; got {core!r}.")
    inner = build(core["name"], input_shape, num_classes, **core.get("kwargs", {}))
    return MixedLinear(inner, list(linearize), lam=lam, target_scale=target_scale)


_BUILTIN: dict[str, Callable[..., nn.Module]] = {"mlp": MLP, "lenet": LeNet, "resnet": ResNet,
                                                 "mixed-linear": _mixed_linear}
_USER: dict[str, Callable[..., nn.Module]] = {}   # netfix.models.register(...) in the user's program
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
    if name in _USER and not replace and _USER[name] is not factory:
        raise ConfigError(f"name: {name!r} is already registered. Fix: pick another name, or pass replace=True.")
    if recipe is not None:
        from .training import TrainConfig

        TrainConfig(**recipe)  # every option checked now
        _RECIPES[name] = dict(recipe)
    _USER[name] = factory


def architecture(name: str, argument: str = "name") -> "Callable[..., nn.Module] | None":
    """The factory registered under ``name`` (``None`` for netfix's own architectures); an unknown name lists the
    known ones. Looks in this program's registrations, then in installed packages' ``netfix.architectures``
    entry points (loading only the one named ``name``)."""
    if not isinstance(name, str):
        raise ConfigError(f"{argument}: expected an architecture name; got {name!r}.")
    if name in _BUILTIN:
        return None
    if name in _USER:
        return _USER[name]
    from importlib.metadata import entry_points

    found = [ep for ep in entry_points(group=ENTRY_POINT_GROUP) if ep.name == name]
    if found:
        factory = found[0].load()  # code the user installed and declared for this name, not code a file chose
        if not callable(factory):
            raise ConfigError(f"{argument}: the entry point {found[0].value!r} for {name!r} is not callable.")
        _USER[name] = factory
        return factory
    plugins = sorted(ep.name for ep in entry_points(group=ENTRY_POINT_GROUP))
    raise unknown("model", name, sorted(set(_BUILTIN) | set(_USER) | set(plugins)), argument)


# Default training recipes (netfix.train keyword arguments) per architecture. mlp and lenet were chosen on a
# validation split of 10,000 images carved from Fashion-MNIST's training set, never on its test set
# (benchmarks/select_recipe.py; docs/results.md). resnet takes the literature's CIFAR recipe (methods.md §5), untuned.
_RECIPES: dict[str, dict[str, Any]] = {
    "mlp": {"optimizer": "adam", "lr": 2e-3, "lr_schedule": "cosine", "batch_size": 128},
    "lenet": {"optimizer": "adam", "lr": 2e-3, "lr_schedule": "cosine", "batch_size": 32},
    "resnet": {"optimizer": "sgd", "lr": 0.1, "momentum": 0.9, "weight_decay": 5e-4, "lr_schedule": "cosine",
               "batch_size": 128},
}


def recipe(name: str) -> dict[str, Any]:
    """The default training recipe for a reference architecture, as ``netfix.train`` keyword arguments.

    Example:
        >>> recipe("lenet")["lr_schedule"]
        'cosine'
    """
    if name not in _RECIPES:
        raise unknown("model", name, list(_RECIPES), "name")
    return dict(_RECIPES[name])


def available() -> list[str]:
    """The architectures :func:`build` makes: netfix's reference ones and those registered in this program (it
    also takes ``"mixed-linear"``, which wraps one of them as a core: :class:`netfix.mixed.MixedLinear`)."""
    return sorted(n for n in set(_BUILTIN) | set(_USER) if n != "mixed-linear")


def build(name: str, input_shape: Sequence[int], num_classes: int, seed: int | None = None,
          **kwargs: Any) -> nn.Module:
    """Build a reference architecture; ``seed`` makes its initialisation reproducible.

    Example:
        >>> m = build("mlp", input_shape=(1, 28, 28), num_classes=10, hidden=(128,), seed=0)
        >>> m(torch.zeros(2, 1, 28, 28)).shape
        torch.Size([2, 10])
    """
    factory = architecture(name)
    ctor = _BUILTIN[name] if factory is None else factory
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
    model.netfix_spec = {"name": name, "input_shape": list(shape), "num_classes": int(num_classes),  # type: ignore[assignment]
                         "kwargs": {k: list(v) if isinstance(v, tuple) else v for k, v in kwargs.items()}}
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
