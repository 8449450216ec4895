"""Device choice, local seeding and safe model copies: the few things every operation does first."""

from __future__ import annotations

import contextlib
import copy
import random
import sys
from collections.abc import Iterator

import numpy as np
import torch
from torch import nn

from .errors import ConfigError, ModelError


def resolve_device(device: "torch.device | str | None") -> torch.device:
    """``None`` -> CUDA when available, else CPU; a string or device is checked and returned."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ConfigError(f"device: {device!r} is not a torch device; expected 'cpu', 'cuda' or 'cuda:N'.") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device: 'cuda' was asked for but torch sees no CUDA device. Fix: pass device='cpu' "
                          "or leave device=None to choose automatically.")
    return dev


@contextlib.contextmanager
def seeded(seed: int, device: torch.device) -> Iterator[torch.Generator]:
    """Seed torch's RNGs for the block (dropout, init) without touching the caller's RNG state afterwards.

    Yields a CPU generator seeded with ``seed`` for samplers and index draws. Python's ``random`` and numpy's
    global generator are seeded too (and restored after), since users' dataset transforms draw from any of the
    three: a streamed set's random augmentations repeat with the seed. On CUDA, cuDNN runs in its
    deterministic mode inside the block (its previous flags are restored)."""
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise ConfigError(f"seed: expected an int; got {type(seed).__name__}.")
    devices = [device] if device.type == "cuda" else []
    flags = (torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
    py_state, np_state = random.getstate(), np.random.get_state()
    with torch.random.fork_rng(devices=devices, device_type=device.type if devices else "cuda"):
        torch.manual_seed(seed)
        random.seed(seed)
        np.random.seed(seed % 2**32)
        g = torch.Generator()
        g.manual_seed(seed)
        # cuDNN picks convolution algorithms by timing and may use atomics: fix both, so a seed gives one result
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
        try:
            yield g
        finally:
            torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = flags
            random.setstate(py_state)
            np.random.set_state(np_state)


def copy_model(model: nn.Module, device: torch.device, argument: str = "model") -> nn.Module:
    """A deep copy of ``model`` on ``device``: operations never change the caller's model."""
    check_model(model, argument)
    return copy.deepcopy(model).to(device)


def check_model(model: object, argument: str = "model") -> nn.Module:
    if not isinstance(model, nn.Module):
        raise ModelError(f"{argument}: expected a torch.nn.Module mapping inputs to logits; got "
                         f"{type(model).__name__}. Fix: load a saved model with netfix.load(path) first.")
    if not any(True for _ in model.parameters()):
        raise ModelError(f"{argument}: the model has no parameters; there is nothing to train or repair.")
    return model


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[None]:
    """Run the block in eval mode (BatchNorm running statistics, no Dropout), then restore every module's own
    train/eval flag — so measuring a model never changes it."""
    was = [m.training for m in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for m, t in zip(model.modules(), was):
            m.training = t


def model_device(model: nn.Module) -> torch.device:
    return next(iter(model.parameters())).device


def show_progress(progress: "bool | None") -> bool:
    """``None`` -> a bar only when stderr is a terminal."""
    return sys.stderr.isatty() if progress is None else bool(progress)


def env_info(device: torch.device) -> dict[str, object]:
    """What a benchmark or run folder records about where it ran."""
    from ._version import __version__

    info: dict[str, object] = {"torch": torch.__version__, "device": str(device), "threads": torch.get_num_threads(),
                               "netfix": __version__}
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info
