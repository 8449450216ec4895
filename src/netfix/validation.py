"""One validation layer: every option of every method, editor, operator, scenario and command-line flag is
checked here, with one message pattern (in the spirit of scikit-learn's ``utils/validation.check_scalar``):

    "<option>: expected <what is valid>; got <what was given>. Fix: <how>."

A config is a dataclass deriving from :class:`Options` whose fields are declared with :func:`option`: the type
comes from the annotation (``int``, ``float``, ``bool``, ``str``, ``list[str]``, tuples, ``X | None``), the
range, choices and help from the field's metadata. ``Options.__post_init__`` checks every field before any work,
then calls ``check()`` for combinations of fields. :func:`describe` turns the same metadata into documentation
(``help()``, ``netfix methods NAME``), so each default and its meaning are stated once, on the field.

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
import math
import numbers
import types
import typing
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import ConfigError, unknown

__all__ = ["option", "Options", "describe", "check_scalar", "check_int", "check_float", "check_bool",
           "check_choice", "check_names", "check_path_writable"]

_NO_BOUND = None


def option(default: Any, help: str, *, unit: str = "", low: "float | None" = None, high: "float | None" = None,
           low_open: bool = False, high_open: bool = False, choices: "Sequence[str] | None" = None,
           none: str = "") -> Any:
    """A config field with its help, unit and valid range (``low``/``high``, inclusive unless ``*_open``),
    ``choices`` for strings, and what ``None`` means (``none``) when the annotation allows it."""
    meta = {"help": help, "unit": unit, "low": low, "high": high, "low_open": low_open, "high_open": high_open,
            "choices": tuple(choices) if choices is not None else None, "none": none}
    if isinstance(default, (list, dict, set)):
        frozen = default
        return dataclasses.field(default_factory=lambda: type(frozen)(frozen), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


@dataclass
class Options:
    """Base of every config dataclass: each field is checked from its annotation and :func:`option` metadata."""

    def __post_init__(self) -> None:
        hints = _hints(type(self))
        for f in dataclasses.fields(self):
            if f.name.startswith("_") or not f.init:
                continue
            value = getattr(self, f.name)
            object.__setattr__(self, f.name, check_field(value, f.name, hints.get(f.name, Any), f.metadata,
                                                         f.default))
        self.check()

    def check(self) -> None:
        """Combinations of fields (each field alone is already checked); raise ConfigError naming them."""


def _hints(cls: type) -> dict[str, Any]:
    cached = cls.__dict__.get("_netfix_hints")
    if cached is None:
        cached = typing.get_type_hints(cls)
        setattr(cls, "_netfix_hints", cached)  # resolved once per class
    return cached


# ---------------------------------------------------------------------------------------------------------------
# one field
# ---------------------------------------------------------------------------------------------------------------

def _union_args(tp: Any) -> tuple[Any, ...] | None:
    origin = typing.get_origin(tp)
    if origin is typing.Union or origin is types.UnionType:
        return typing.get_args(tp)
    return None


def _shown(value: Any) -> str:
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    kind = "a string" if isinstance(value, str) else type(value).__name__
    return f"{text} ({kind})" if not isinstance(value, (int, float)) or isinstance(value, bool) else text


def _range_text(meta: Any, whole: bool) -> str:
    low, high = meta.get("low"), meta.get("high")
    what = "a whole number" if whole else "a number"
    if low is None and high is None:
        return what
    if low is not None and high is not None:
        lb = "(" if meta.get("low_open") else "["
        hb = ")" if meta.get("high_open") else "]"
        return f"{what} in {lb}{_num(low)}, {_num(high)}{hb}"
    if low is not None:
        return f"{what} {'>' if meta.get('low_open') else '>='} {_num(low)}"
    return f"{what} {'<' if meta.get('high_open') else '<='} {_num(high)}"


def _num(v: float) -> str:
    return str(int(v)) if float(v).is_integer() and abs(v) < 1e15 else f"{v:g}"


def _fix(name: str, default: Any) -> str:
    if default is dataclasses.MISSING or isinstance(default, dataclasses._MISSING_TYPE):  # type: ignore[attr-defined]
        return ""
    return f" Fix: pass e.g. {name}={default!r} (the default)."


def check_field(value: Any, name: str, tp: Any, meta: Any = None, default: Any = dataclasses.MISSING) -> Any:
    """``value`` checked against the annotation ``tp`` and the :func:`option` metadata; returns it normalised
    (numpy scalars to Python, ints to float for float fields, a single string to a list for ``list[str]``)."""
    meta = dict(meta or {})
    args = _union_args(tp)
    if args is not None:
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        errors: list[ConfigError] = []
        for a in inner:  # the first member type that accepts the value wins
            try:
                return check_field(value, name, a, meta, default)
            except ConfigError as e:
                errors.append(e)
        if len(errors) == 1:
            if type(None) in args:
                msg = str(errors[0]).split(" Fix:")[0].rstrip(".")
                none = meta.get("none") or "the default behaviour"
                expected, _, got = msg.partition("; got ")
                raise ConfigError(f"{expected} (or None: {none}); got {got}.{_fix(name, default)}")
            raise errors[0]
        raise ConfigError(f"{name}: expected one of {' | '.join(_type_name(a) for a in args)}; got "
                          f"{_shown(value)}.{_fix(name, default)}")
    if tp is Any or tp is object:
        return value
    if tp is bool:
        return check_bool(value, name, default)
    if tp is int:
        return check_int(value, name, meta, default)
    if tp is float:
        return check_float(value, name, meta, default)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{name}: expected a string{_choices_text(meta)}; got {_shown(value)}."
                              f"{_fix(name, default)}")
        if meta.get("choices") and value not in meta["choices"]:
            raise unknown(name.replace("_", " "), value, list(meta["choices"]), name)
        return value
    origin = typing.get_origin(tp)
    if origin in (list, Sequence) or tp is list:
        (item,) = typing.get_args(tp) or (Any,)
        if isinstance(value, str) and item is str:
            value = [value]  # `--option params=fc`: one name
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{name}: expected a list of {_type_name(item)}; got {_shown(value)}."
                              f"{_fix(name, default)}")
        out = [check_field(v, f"{name}[{i}]", item, meta) for i, v in enumerate(value)]
        if not out:
            raise ConfigError(f"{name}: expected at least one entry (or None); got an empty list.{_fix(name, default)}")
        return out
    if origin is tuple:
        items = typing.get_args(tp)
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{name}: expected a tuple of {_type_name(tp)}; got {_shown(value)}."
                              f"{_fix(name, default)}")
        if len(items) == 2 and items[1] is Ellipsis:
            return tuple(check_field(v, f"{name}[{i}]", items[0], meta) for i, v in enumerate(value))
        if len(value) != len(items):
            raise ConfigError(f"{name}: expected {len(items)} values; got {len(value)} ({value!r})."
                              f"{_fix(name, default)}")
        return tuple(check_field(v, f"{name}[{i}]", t, meta) for i, (v, t) in enumerate(zip(value, items)))
    if isinstance(tp, type):
        if not isinstance(value, tp):
            raise ConfigError(f"{name}: expected a {tp.__name__}; got {_shown(value)}.{_fix(name, default)}")
        return value
    return value


def _type_name(tp: Any) -> str:
    if tp is type(None):
        return "None"
    if isinstance(tp, type):
        return {"int": "whole number", "float": "number", "str": "string", "bool": "True/False"}.get(
            tp.__name__, tp.__name__)
    return str(tp).replace("typing.", "")


def _choices_text(meta: Any) -> str:
    return f" (one of {', '.join(repr(c) for c in meta['choices'])})" if meta.get("choices") else ""


def check_bool(value: Any, name: str, default: Any = dataclasses.MISSING) -> bool:
    """``value`` as a bool: True/False only (not 0/1 or "yes")."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    raise ConfigError(f"{name}: expected True or False; got {_shown(value)}.{_fix(name, default)}")


def check_int(value: Any, name: str, meta: Any = None, default: Any = dataclasses.MISSING) -> int:
    """``value`` as an int within ``meta``'s range (``low``/``high``)."""
    meta = meta or {}
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (numbers.Integral, np.integer)):
        raise ConfigError(f"{name}: expected {_range_text(meta, True)}; got {_shown(value)}.{_fix(name, default)}")
    value = int(value)
    _check_range(value, name, meta, True, default)
    return value


def check_float(value: Any, name: str, meta: Any = None, default: Any = dataclasses.MISSING) -> float:
    """``value`` as a finite float within ``meta``'s range (ints are accepted)."""
    meta = meta or {}
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (numbers.Real, np.integer, np.floating)):
        raise ConfigError(f"{name}: expected {_range_text(meta, False)}; got {_shown(value)}.{_fix(name, default)}")
    value = float(value)
    if not math.isfinite(value):
        raise ConfigError(f"{name}: expected a finite {_range_text(meta, False)[2:]}; got {value!r}."
                          f"{_fix(name, default)}")
    _check_range(value, name, meta, False, default)
    return value


def _check_range(value: float, name: str, meta: Any, whole: bool, default: Any) -> None:
    low, high = meta.get("low"), meta.get("high")
    bad = (low is not None and (value <= low if meta.get("low_open") else value < low)) or \
          (high is not None and (value >= high if meta.get("high_open") else value > high))
    if bad:
        raise ConfigError(f"{name}: expected {_range_text(meta, whole)}; got {value!r}.{_fix(name, default)}")


def check_scalar(value: Any, name: str, kind: type, *, low: "float | None" = None, high: "float | None" = None,
                 low_open: bool = False, high_open: bool = False, default: Any = dataclasses.MISSING) -> Any:
    """One scalar outside a config (a function argument, a CLI flag): ``kind`` is int, float or bool.

    Example:
        >>> check_scalar(0.5, "fraction", float, low=0, high=1, low_open=True)
        0.5
    """
    meta = {"low": low, "high": high, "low_open": low_open, "high_open": high_open}
    return check_field(value, name, kind, meta, default)


def check_choice(value: Any, name: str, choices: Sequence[str]) -> str:
    """``value`` is one of ``choices`` (an unknown name lists the valid ones)."""
    return check_field(value, name, str, {"choices": tuple(choices)})  # type: ignore[no-any-return]


def check_names(value: Any, name: str) -> "list[str] | None":
    """A list of module-name prefixes (a single string is one name); None passes through."""
    return check_field(value, name, typing.Optional[list[str]], {})  # type: ignore[no-any-return]


def check_path_writable(path: Any, name: str) -> None:
    """Fail now, before any work, if ``path``'s folder cannot be created or written."""
    import os
    import tempfile
    from pathlib import Path

    p = Path(path)
    folder = p.parent if str(p.parent) else Path(".")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".netfix-probe.", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise ConfigError(f"{name}: cannot write to {folder} ({e.strerror or e}). Fix: pass a path in a folder you "
                          "can write to.") from None


# ---------------------------------------------------------------------------------------------------------------
# documentation from the same metadata
# ---------------------------------------------------------------------------------------------------------------

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
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else None)  # type: ignore[misc]
        tp = hints.get(f.name, Any)
        out.append({"name": f.name, "type": _type_text(tp), "default": default, "unit": meta.get("unit", ""),
                    "valid": _valid_text(tp, meta), "help": meta.get("help", ""), "none": meta.get("none", "")})
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
