"""Checking one value — a config field, a function argument, a command-line flag — against a type and a range,
with one message pattern (in the spirit of scikit-learn's ``utils/validation.check_scalar``):

    "<option>: expected <what is valid>; got <what was given>. Fix: <how>."

:func:`check_field` reads the type from an annotation (``int``, ``float``, ``bool``, ``str``, ``list[str]``,
tuples, ``X | None``) and the range, choices and help from :func:`netfix.validation.option` metadata; the
``check_*`` functions are its shorthands for one scalar outside a config. An unknown name among ``choices`` raises
:class:`~netfix.errors.UnknownNameError` (listing the valid ones); every other bad value
:class:`~netfix.errors.ConfigError`.

Example:
    >>> check_scalar(0, "epochs", int, low=1, default=5)
    Traceback (most recent call last):
    ConfigError: epochs: expected a whole number >= 1; got 0. Fix: pass e.g. epochs=5 (the default).
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import types
import typing
from collections.abc import Sequence
from typing import Any

import numpy as np

from .errors import ConfigError, UnknownNameError, unknown

__all__ = ["check_field", "check_scalar", "check_int", "check_float", "check_bool", "check_choice", "check_names",
           "check_path_writable", "check_seed", "SEED_MAX", "MAX_EPOCHS", "MAX_BATCH"]

SEED_MAX = 2 ** 63 - 1  # seeds feed torch.manual_seed and numpy's default_rng: non-negative, 64-bit
MAX_EPOCHS = 100_000    # more passes than any repair needs: a larger count is a typo, refused before hours of work
MAX_BATCH = 1 << 20     # samples per step (or per chunk) beyond which a batch cannot fit any device
_MISSING: Any = dataclasses.MISSING


class _Bad(Exception):
    """Internal: a value that does not fit. ``expected`` says what would; ``name`` overrides the option's name for
    an item of a list or tuple; ``choice`` marks an unknown name among choices."""

    def __init__(self, expected: str, value: Any, name: "str | None" = None, choice: bool = False) -> None:
        super().__init__(expected)
        self.expected, self.value, self.name, self.choice = expected, value, name, choice


def _union_args(tp: Any) -> tuple[Any, ...] | None:
    origin = typing.get_origin(tp)
    if origin is typing.Union or origin is types.UnionType:
        return typing.get_args(tp)
    return None


def _shown(value: Any) -> str:
    """``value`` as a message shows it: its repr (shortened), with its type unless it is a plain number."""
    try:
        text = repr(value)
    except Exception:  # a broken __repr__ must not hide the real error
        text = f"<{type(value).__name__} object>"
    if len(text) > 60:
        text = text[:57] + "..."
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return text
    kind = "a string" if isinstance(value, str) else type(value).__name__
    return f"{text} ({kind})"


def _num(v: float) -> str:
    if isinstance(v, int):
        return str(v)
    return str(int(v)) if float(v).is_integer() and abs(v) < 1e15 else f"{v:g}"


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


def _kind(name: str, meta: Any) -> str:
    return meta.get("kind") or name.split("[")[0].replace("_", " ")


def _fix(name: str, default: Any, expected: str, meta: "dict[str, Any] | None" = None) -> str:
    """The Fix sentence: the default when there is one (None aside: what is valid says more)."""
    meta = meta or {}
    if default is None and meta.get("choices"):
        return f" Fix: pass e.g. {name}={meta['choices'][0]!r}, or None ({meta.get('none') or 'the default'})."
    if default is None or default is _MISSING or isinstance(default, dataclasses._MISSING_TYPE):  # type: ignore
        return f" Fix: pass {expected}."
    return f" Fix: pass e.g. {name}={default!r} (the default)."


def check_field(value: Any, name: str, tp: Any, meta: Any = None, default: Any = _MISSING) -> Any:
    """``value`` checked against the annotation ``tp`` and the :func:`option` metadata; returns it normalised
    (numpy scalars to Python, ints to float for float fields, a single string to a list for ``list[str]``, a list to
    a tuple for tuple fields). Raises ConfigError (UnknownNameError for an unknown name among ``choices``).

    Example:
        >>> check_field(3, "epochs", int, {"low": 1})
        3
    """
    meta = dict(meta or {})
    try:
        return _check(value, name, tp, meta)
    except _Bad as bad:
        where = bad.name or name
        if bad.choice:
            kind = _kind(where, meta)
            msg = str(unknown(kind, bad.value, list(meta["choices"]), where))
            raise UnknownNameError(msg + _fix(name, default, bad.expected, meta)) from None
        raise ConfigError(f"{where}: expected {bad.expected}; got {_shown(bad.value)}."
                          f"{_fix(name, default, bad.expected, meta)}") from None


def _check(value: Any, name: str, tp: Any, meta: dict[str, Any]) -> Any:
    args = _union_args(tp)
    if args is not None:
        return _check_union(value, name, args, meta)
    if tp is Any or tp is object:
        return value
    if tp is bool:
        if isinstance(value, (bool, np.bool_)):
            return bool(value)
        raise _Bad("True or False", value)
    if tp is int:
        return _int(value, meta)
    if tp is float:
        return _float(value, meta)
    if tp is str:
        choices = meta.get("choices")
        if not isinstance(value, str) or not value:
            raise _Bad(f"one of {_listed(choices)}" if choices else "a non-empty string", value)
        if choices and value not in choices:
            raise _Bad(f"one of {_listed(choices)}", value, choice=True)
        return str(value)
    origin = typing.get_origin(tp)
    if origin in (list, Sequence) or tp is list:
        (item,) = typing.get_args(tp) or (Any,)
        if isinstance(value, str) and item is str:
            value = [value]  # `--option params=fc`: one name
        if not isinstance(value, (list, tuple)):
            raise _Bad(f"a list of {_type_name(item, meta)}", value)
        if not value:
            raise _Bad(f"a non-empty list of {_type_name(item, meta)}", value)
        return [_item(v, f"{name}[{i}]", item, meta) for i, v in enumerate(value)]
    if origin is tuple:
        items = typing.get_args(tp)
        variable = len(items) == 2 and items[1] is Ellipsis
        what = (f"a tuple of {_type_name(items[0], meta)}" if variable else
                f"{len(items)} values ({', '.join(_type_name(t, meta) for t in items)})")
        if not isinstance(value, (list, tuple)) or (not variable and len(value) != len(items)):
            raise _Bad(what, value)
        if variable:
            return tuple(_item(v, f"{name}[{i}]", items[0], meta) for i, v in enumerate(value))
        return tuple(_item(v, f"{name}[{i}]", t, meta) for i, (v, t) in enumerate(zip(value, items)))
    if isinstance(tp, type):
        if not isinstance(value, tp):
            raise _Bad(_a(tp.__name__) + " object", value)
        return value
    return value  # a typing construct this layer does not check (the code using the value does)


def _item(value: Any, name: str, tp: Any, meta: dict[str, Any]) -> Any:
    try:
        return _check(value, name, tp, meta)
    except _Bad as bad:
        bad.name = bad.name or name
        raise


def _check_union(value: Any, name: str, args: tuple[Any, ...], meta: dict[str, Any]) -> Any:
    allows_none = type(None) in args
    if value is None and allows_none:
        return None
    expected: list[str] = []
    item_error: _Bad | None = None
    for a in (a for a in args if a is not type(None)):  # the first member type that accepts the value wins
        try:
            return _check(value, name, a, meta)
        except _Bad as bad:
            if bad.choice or bad.name:  # an unknown name, or a bad item of a list: the specific error is clearer
                item_error = item_error or bad
            expected.append(bad.expected)
    if allows_none:
        expected.append(f"None ({meta.get('none') or 'the default behaviour'})")
    if item_error is not None:
        raise item_error
    raise _Bad(", or ".join(expected), value)


def _int(value: Any, meta: dict[str, Any]) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (numbers.Integral, np.integer)):
        raise _Bad(_range_text(meta, True), value)
    value = int(value)
    _range(value, meta, True)
    return value


def _float(value: Any, meta: dict[str, Any]) -> float:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (numbers.Real, np.integer, np.floating)):
        raise _Bad(_range_text(meta, False), value)
    try:
        number = float(value)
    except (OverflowError, ValueError):  # an int too large for a float
        raise _Bad(_range_text(meta, False), value) from None
    if not math.isfinite(number):
        raise _Bad("a finite " + _range_text(meta, False)[2:], number)
    _range(number, meta, False)
    return number


def _range(value: float, meta: dict[str, Any], whole: bool) -> None:
    low, high = meta.get("low"), meta.get("high")
    bad = (low is not None and (value <= low if meta.get("low_open") else value < low)) or \
          (high is not None and (value >= high if meta.get("high_open") else value > high))
    if bad:
        raise _Bad(_range_text(meta, whole), value)


def _a(word: str) -> str:
    return ("an " if word[:1].lower() in "aeiou" else "a ") + word


def _listed(choices: Sequence[str]) -> str:
    return ", ".join(repr(c) for c in choices)


def _type_name(tp: Any, meta: "dict[str, Any] | None" = None) -> str:
    meta = meta or {}
    if tp is type(None):
        return "None"
    if tp is int:
        return "whole numbers" + (" " + _range_text(meta, True)[len("a whole number "):]
                                  if meta.get("low") is not None or meta.get("high") is not None else "")
    if tp is float:
        return "numbers" + (" " + _range_text(meta, False)[len("a number "):]
                            if meta.get("low") is not None or meta.get("high") is not None else "")
    if tp is str:
        return f"names ({_listed(meta['choices'])})" if meta.get("choices") else "names (strings)"
    if tp is bool:
        return "True/False"
    if isinstance(tp, type):
        return tp.__name__ + " objects"
    return str(tp).replace("typing.", "")


# ---------------------------------------------------------------------------------------------------------------
# one value outside a config
# ---------------------------------------------------------------------------------------------------------------

def check_bool(value: Any, name: str, default: Any = _MISSING) -> bool:
    """``value`` as a bool: True/False only (not 0/1 or "yes")."""
    return check_field(value, name, bool, {}, default)  # type: ignore[no-any-return]


def check_int(value: Any, name: str, meta: Any = None, default: Any = _MISSING) -> int:
    """``value`` as an int within ``meta``'s range (``low``/``high``); bools are refused."""
    return check_field(value, name, int, meta, default)  # type: ignore[no-any-return]


def check_float(value: Any, name: str, meta: Any = None, default: Any = _MISSING) -> float:
    """``value`` as a finite float within ``meta``'s range (ints are accepted; bools, NaN and inf are not)."""
    return check_field(value, name, float, meta, default)  # type: ignore[no-any-return]


def check_scalar(value: Any, name: str, kind: type, *, low: "float | None" = None, high: "float | None" = None,
                 low_open: bool = False, high_open: bool = False, default: Any = _MISSING,
                 none: "str | None" = None) -> Any:
    """One scalar outside a config (a function argument, a CLI flag): ``kind`` is int, float, bool or str.
    ``none``: None is valid too, and means this.

    Example:
        >>> check_scalar(0.5, "fraction", float, low=0, high=1, low_open=True)
        0.5
    """
    meta = {"low": low, "high": high, "low_open": low_open, "high_open": high_open, "none": none or ""}
    tp: Any = typing.Optional[kind] if none is not None else kind
    return check_field(value, name, tp, meta, default)


def check_seed(value: Any, name: str = "seed", default: Any = 0) -> int:
    """A random seed: a whole number in [0, 2**63 - 1] (what both torch and numpy accept)."""
    return check_int(value, name, {"low": 0, "high": SEED_MAX}, default)


def check_choice(value: Any, name: str, choices: Sequence[str], *, kind: str = "",
                 default: Any = _MISSING) -> str:
    """``value`` is one of ``choices`` (an unknown name lists the valid ones)."""
    return check_field(value, name, str, {"choices": tuple(choices), "kind": kind}, default)  # type: ignore


def check_names(value: Any, name: str) -> "list[str] | None":
    """A list of module-name prefixes (a single string is one name); None passes through."""
    return check_field(value, name, typing.Optional[list[str]], {"none": "the default part"})  # type: ignore


def check_path_writable(path: Any, name: str) -> None:
    """Fail now, before any work, if ``path``'s folder cannot be created or written."""
    import os
    import tempfile
    from pathlib import Path

    if not isinstance(path, (str, os.PathLike)) or not str(path):
        raise ConfigError(f"{name}: expected a file path; got {_shown(path)}. Fix: pass a path such as "
                          "'out/model'.")
    p = Path(path)
    folder = p.parent if str(p.parent) else Path(".")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".netfix-probe.", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise ConfigError(f"{name}: expected a path in a folder you can write to; got {str(path)!r} ({folder}: "
                          f"{e.strerror or e}). Fix: pass a path in a folder you can write to.") from None
