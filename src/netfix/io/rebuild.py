"""Rebuilding the architecture a model file names, without running code the file chose and without allocating
what has not been checked: the architecture is built on PyTorch's ``meta`` device and its tensors compared with
the file's names and shapes before the real model is allocated.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .._runtime import check_model
from ..errors import NotAModelError, UnknownNameError, UnsafeFileError
from .header import refuse

__all__ = ["build_plan", "state_shapes", "flexible_state", "check_tensors"]


def build_plan(side: dict[str, Any], target: Path, model: nn.Module | None,
                    trust_factory: bool) -> tuple[Any, dict[str, tuple[int, ...]], set[str]]:
    """How to build the model (a callable, or the caller's instance), the state names and shapes it will hold
    (from a build on the meta device: nothing allocated) and the names whose shape may differ from the build's."""
    from ..models import architecture

    arch = side["architecture"]
    if model is not None:
        check_model(model, "model")
        instance = model
        return (lambda: copy.deepcopy(instance)), state_shapes(instance), flexible_state(instance)
    if "factory" in arch:
        if not trust_factory:
            raise UnsafeFileError(f"path: {target} names the factory {arch['factory']!r}: loading it would import and "
                                  "run code the file chose. netfix never does that on a file's say-so. Fix: register "
                                  "the architecture in your program (netfix.models.register) and pass "
                                  "model=netfix.models.build(...), or pass model=YourNet(...); if you wrote this file "
                                  "yourself and trust it, load it in Python with netfix.load(path, "
                                  "trust_factory=True) and save it again.")
        build = _trusted_factory(arch, target)
    elif "name" in arch:
        try:
            own = architecture(arch["name"], "architecture") is None  # netfix's own?
        except UnknownNameError as e:
            raise NotAModelError(f"path: {target} names an architecture this program does not know ({e}). Fix: "
                                 "register it with netfix.models.register(name, factory) (or install the package "
                                 "that provides it), or pass model=YourNet(...).") from None
        if side.get("num_classes") is None or side.get("input_shape") is None and arch["name"] != "transformers":
            raise refuse(target, "it records no input_shape / num_classes to build its architecture with")
        kwargs = arch.get("kwargs") or {}
        if not isinstance(kwargs, dict):
            raise refuse(target, f"architecture kwargs {kwargs!r} is not a dict")

        def build() -> nn.Module:
            from ..models import build as build_model

            return build_model(arch["name"], side.get("input_shape") or [1], side["num_classes"], **kwargs)
    else:
        cls = arch.get("class", "an unregistered class")
        raise NotAModelError(f"path: {target} holds the weights of {cls!r}, which is not a registered architecture. "
                             "Fix: pass the module to fill, netfix.load(path, model=YourNet(...)), or register the "
                             "architecture with netfix.models.register(name, factory) and save it from a model "
                             "built with netfix.models.build.")
    try:
        with torch.device("meta"):
            probe = build()
        return build, state_shapes(probe), flexible_state(probe)
    except NotAModelError:
        raise
    except Exception as e:  # noqa: BLE001 - a builder that cannot run on the meta device, or bad kwargs
        from ..errors import NetfixError

        if isinstance(e, NetfixError) or "name" in arch and own:
            raise NotAModelError(f"path: {target}: its architecture cannot be built ({type(e).__name__}: {e}).") \
                from None
        return build, {}, set()  # a user factory that needs real tensors: checked after building (read_model)


def _trusted_factory(arch: dict[str, Any], target: Path) -> Any:
    """A builder calling the ``module:function`` factory an old file names (only with ``trust_factory=True``)."""
    import importlib

    name = arch["factory"]
    if not isinstance(name, str) or name.count(":") != 1:
        raise refuse(target, f"factory {name!r} is not 'package.module:function'")
    module_name, _, fn_name = name.partition(":")
    try:
        fn = getattr(importlib.import_module(module_name), fn_name)
    except (ImportError, AttributeError) as e:
        raise NotAModelError(f"path: {target} names the factory {name!r}, which cannot be imported ({e}).") from None
    kwargs = arch.get("kwargs", {})

    def build() -> nn.Module:
        made = fn(**kwargs)
        if not isinstance(made, nn.Module):
            raise NotAModelError(f"path: factory {name!r} returned {type(made).__name__}, not an nn.Module.")
        return made
    return build


def state_shapes(model: nn.Module) -> dict[str, tuple[int, ...]]:
    """The shape of every entry of ``model``'s state dict."""
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def flexible_state(model: nn.Module) -> set[str]:
    """State entries whose size is data, not architecture: those a fresh build holds empty (e.g. a
    preconditioner whose rank is set by fitting). Their bytes are in the file, so they are bounded by its size."""
    return {k for k, v in model.state_dict().items() if v.numel() == 0}


def check_tensors(header: dict[str, Any], expected: dict[str, tuple[int, ...]], flexible: set[str],
                   target: Path) -> None:
    """Refuse a file whose tensors are not the architecture's: missing, unexpected or of another shape."""
    held = {k: tuple(v["shape"]) for k, v in header.items() if k != "__metadata__"}
    missing = sorted(set(expected) - set(held))
    extra = sorted(set(held) - set(expected))
    if missing or extra:
        raise NotAModelError(f"path: the weights in {target} do not fit the architecture (missing: {missing[:5]}, "
                             f"unexpected: {extra[:5]}).")
    wrong = [f"{k}: file {held[k]} vs architecture {expected[k]}" for k in expected
             if k not in flexible and held[k] != expected[k]]
    if wrong:
        raise NotAModelError(f"path: the weights in {target} do not fit the architecture ({'; '.join(wrong[:3])}). "
                             "The file is corrupt, or its metadata was changed.")
