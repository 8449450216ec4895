"""One validation layer: every option of every method, editor, operator, scenario and command-line flag is
checked here, with one message pattern (in the spirit of scikit-learn's ``utils/validation.check_scalar``):

    "<option>: expected <what is valid>; got <what was given>. Fix: <how>."

A config is a dataclass deriving from :class:`Options` whose fields are declared with :func:`option`: the type
comes from the annotation (``int``, ``float``, ``bool``, ``str``, ``list[str]``, tuples, ``X | None``), the
range, choices and help from the field's metadata. ``Options.__post_init__`` checks every field before any work,
then calls ``check()`` for combinations of fields. :func:`describe` turns the same metadata into documentation
(``help()``, ``netfix methods NAME``), so each default and its meaning are stated once, on the field.

An unknown name among ``choices`` raises :class:`~netfix.errors.UnknownNameError` (listing the valid ones); every
other bad value :class:`~netfix.errors.ConfigError`. Both are :class:`~netfix.errors.NetfixError`.

This module holds the config side (:class:`Options`, :func:`option`, :func:`describe`); checking one value
against a type and a range is :mod:`netfix.checks`, whose ``check_*`` functions and bounds are read here too.

Example:
    >>> @dataclass
    ... class Cfg(Options):
    ...     epochs: int = option(5, "passes over the data", low=1, high=10_000)
    >>> Cfg(epochs=0)
    Traceback (most recent call last):
    ConfigError: epochs: expected a whole number in [1, 10000]; got 0. Fix: pass e.g. epochs=5 (the default).
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .checks import (MAX_BATCH, MAX_EPOCHS, SEED_MAX, _MISSING, _range_text, _union_args, check_bool, check_choice,
                     check_field, check_float, check_int, check_names, check_path_writable, check_scalar, check_seed)
from .checks import _shown  # noqa: F401  # read as netfix.validation._shown too

__all__ = ["option", "Options", "describe", "check_scalar", "check_int", "check_float", "check_bool",
           "check_choice", "check_names", "check_path_writable", "check_field", "check_seed", "SEED_MAX",
           "MAX_EPOCHS", "MAX_BATCH"]


def option(default: Any, help: str, *, unit: str = "", low: "float | None" = None, high: "float | None" = None,
           low_open: bool = False, high_open: bool = False, choices: "Sequence[str] | None" = None,
           none: str = "", kind: str = "") -> Any:
    """A config field with its help, unit and valid range (``low``/``high``, inclusive unless ``*_open``),
    ``choices`` for strings (``kind`` names them in errors, e.g. "label mode"; default: the option's name), and
    what ``None`` means (``none``) when the annotation allows it. ``default=dataclasses.MISSING``: required."""
    meta = {"help": help, "unit": unit, "low": low, "high": high, "low_open": low_open, "high_open": high_open,
            "choices": tuple(choices) if choices is not None else None, "none": none, "kind": kind}
    if isinstance(default, (list, dict, set)):
        frozen = default
        return dataclasses.field(default_factory=lambda: type(frozen)(frozen), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def _default_of(f: "dataclasses.Field[Any]") -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        return f.default_factory()  # type: ignore[misc]
    return _MISSING


class _Documented(type):
    """The type of config classes: ``help(Config)`` and ``repr(Config)`` show every option's type, default, unit,
    valid values and meaning, read from the fields' :func:`option` metadata (as ``netfix methods NAME`` does)."""

    @property
    def __doc__(cls) -> str:  # type: ignore[override]
        own = cls.__dict__.get("__doc__") or ""
        if not dataclasses.is_dataclass(cls) or "describe" not in globals():  # Options, while this module loads
            return own
        lines = [f"    {o['name']}: {o['type']} = {o['default']!r}"
                 + (f" [{o['unit']}]" if o["unit"] else "") + f" — {o['help']}"
                 + (f"; valid: {o['valid']}" if o["valid"] else "") + (f"; None: {o['none']}" if o["none"] else "")
                 for o in describe(cls)]
        return own + ("\n\nOptions:\n" + "\n".join(lines) if lines else "")

    @__doc__.setter
    def __doc__(cls, value: str | None) -> None:  # dataclass() sets a docstring on a class that has none
        type.__dict__["__doc__"].__set__(cls, value)

    def __repr__(cls) -> str:
        if not dataclasses.is_dataclass(cls) or "describe" not in globals():
            return super().__repr__()
        shown = ", ".join(f"{o['name']}={o['default']!r}" for o in describe(cls))
        return f"<options {cls.__module__}.{cls.__qualname__}({shown}); help() explains each>"


@dataclass
class Options(metaclass=_Documented):
    """Base of every config dataclass: each field is checked from its annotation and :func:`option` metadata
    (fields whose name starts with ``_``, or that are not ``__init__`` arguments, are private state)."""

    def __post_init__(self) -> None:
        hints = _hints(type(self))
        for f in dataclasses.fields(self):
            if f.name.startswith("_") or not f.init:
                continue
            value = getattr(self, f.name)
            object.__setattr__(self, f.name, check_field(value, f.name, hints.get(f.name, Any), f.metadata,
                                                         _default_of(f)))
        self.check()

    def check(self) -> None:
        """Combinations of fields (each field alone is already checked); raise ConfigError naming them."""


def _hints(cls: type) -> dict[str, Any]:
    cached = cls.__dict__.get("_netfix_hints")
    if cached is None:
        cached = typing.get_type_hints(cls)
        setattr(cls, "_netfix_hints", cached)  # resolved once per class
    return cached


def describe(config: Any) -> list[dict[str, Any]]:
    """Every option of a config class (or instance): name, type, default, unit, valid values and meaning.

    Example:
        >>> [o["name"] for o in describe(netfix.methods.get("finetune").config)][:2]
        ['epochs', 'lr']
    """
    cls = config if isinstance(config, type) else type(config)
    hints = _hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        if f.name.startswith("_") or not f.init:
            continue
        meta = f.metadata
        default = _default_of(f)
        tp = hints.get(f.name, Any)
        out.append({"name": f.name, "type": _type_text(tp), "default": None if default is _MISSING else default,
                    "unit": meta.get("unit", ""), "valid": _valid_text(tp, meta), "help": meta.get("help", ""),
                    "none": meta.get("none", "")})
    return out


def _type_text(tp: Any) -> str:
    args = _union_args(tp)
    if args is not None:
        return " | ".join(_type_text(a) for a in args)
    if tp is type(None):
        return "None"
    if isinstance(tp, type) and not typing.get_args(tp):
        return tp.__name__
    return str(tp).replace("typing.", "")


def _valid_text(tp: Any, meta: Any) -> str:
    if meta.get("choices"):
        return ", ".join(meta["choices"])
    if meta.get("low") is None and meta.get("high") is None:
        return ""
    args = _union_args(tp) or (tp,)
    whole = int in args and float not in args
    return _range_text(meta, whole).replace("a whole number ", "").replace("a number ", "")
