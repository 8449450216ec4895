"""Exception classes. Each subclasses the built-in a user already catches (ValueError / TypeError / ...).

Messages follow one pattern: which argument, what was wrong, what was expected, what was got, and how
to fix it. Tests assert the message, so it is part of the contract.
"""

from __future__ import annotations

__all__ = [
    "NetfixError",
    "DataError",
    "DataTypeError",
    "DatasetNotFoundError",
    "UnknownNameError",
    "ConfigError",
    "ModelError",
    "NotAModelError",
    "UnsafeFileError",
    "DivergedError",
    "NoChangeError",
    "NoChangeWarning",
]


class NetfixError(Exception):
    """Base of every error netfix raises on purpose."""


class DataError(NetfixError, ValueError):
    """Data has the wrong shape, values or labels (empty, NaN, labels out of range, ...)."""


class DataTypeError(NetfixError, TypeError):
    """Data is not of a type netfix accepts (a Dataset of (x, y) or a tuple (X, y))."""


class DatasetNotFoundError(NetfixError, FileNotFoundError):
    """A built-in dataset's files are not on this machine; the message says how to get them."""


class UnknownNameError(NetfixError, ValueError):
    """An unknown dataset, model, method, scenario or option name; the message lists the valid ones."""


class ConfigError(NetfixError, ValueError):
    """An option has an invalid value or combination."""


class ModelError(NetfixError, ValueError):
    """A model does not fit the data or the operation (wrong output size, no parameters, ...)."""


class NotAModelError(NetfixError, ValueError):
    """A file is not a netfix model file (missing sidecar, wrong format, corrupt weights)."""


class UnsafeFileError(NotAModelError):
    """A model file asks for something netfix never does on a file's say-so (import or call code, allocate far
    more than the file holds, skip its integrity check); the message says how to load it safely."""


class DivergedError(NetfixError, FloatingPointError):
    """Training diverged (the loss became NaN or infinite); the message says which step and what to lower."""


class NoChangeError(NetfixError, ValueError):
    """A run claims to have changed a model but its weights are exactly as before (e.g. a certificate for a
    forgetting that forgot nothing)."""


class NoChangeWarning(UserWarning):
    """An operation finished without changing the model (no step taken, or every weight as before)."""


def unknown(kind: str, name: object, valid: "list[str] | tuple[str, ...]", argument: str) -> UnknownNameError:
    """Build the error for an unknown name, listing the valid ones."""
    listed = ", ".join(repr(v) for v in sorted(valid))
    return UnknownNameError(f"{argument}: unknown {kind} {name!r}. Valid {kind}s: {listed}.")
