"""What every reader shares: the error for missing files, index and argument checks, the types of paths and
transforms."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, Union

import numpy as np
import torch

from ..errors import ConfigError, DataError, DatasetNotFoundError, DataTypeError

PathLike = Union[str, "os.PathLike[str]"]
Transform = Callable[[Any], Any]


class MissingDataError(DataError, DatasetNotFoundError):
    """Data files are not where a reader looked; the message names the files, the folder and where to get them.

    Both a :class:`~netfix.errors.DataError` (a ``ValueError``) and a
    :class:`~netfix.errors.DatasetNotFoundError` (a ``FileNotFoundError``), so either ``except`` catches it."""


def _index(i: Any, n: int, who: str) -> int:
    """``i`` as an index into ``n`` items: negative counts from the end; out of range raises IndexError (which
    ends a ``for x in dataset`` loop, as the sequence protocol expects)."""
    if isinstance(i, torch.Tensor) and i.numel() == 1 and not i.dtype.is_floating_point:
        i = int(i)
    if isinstance(i, bool) or not isinstance(i, (int, np.integer)):
        raise DataTypeError(f"{who}[i]: the index must be an int; got {type(i).__name__}. "
                            "Fix: index one item at a time (a DataLoader does).")
    j = int(i) + n if int(i) < 0 else int(i)
    if not 0 <= j < n:
        raise IndexError(f"{who}: index {int(i)} is out of range for {n} items.")
    return j


def _check_transform(transform: Any, who: str) -> "Transform | None":
    if transform is not None and not callable(transform):
        raise ConfigError(f"{who}(transform=...): expected a callable or None; got {type(transform).__name__}. "
                          "Fix: pass e.g. netfix.transforms.Compose([...]) or a function.")
    return transform  # type: ignore[no-any-return]


def _root(root: Any, who: str) -> Path:
    if not isinstance(root, (str, os.PathLike)):
        raise DataTypeError(f"{who}(root=...): expected a path (str or pathlib.Path); got {type(root).__name__}.")
    path = Path(root).expanduser()
    if not path.exists():
        raise MissingDataError(f"{who}(root=...): {path} does not exist. Fix: pass the folder that holds the data "
                               "(check the spelling, and that a relative path is relative to the working folder "
                               f"{Path.cwd()}).")
    if not path.is_dir():
        raise DataError(f"{who}(root=...): {path} is a file; expected a folder.")
    return path
