"""Where data lives: ``$NETFIX_DATA/<name>/`` (:func:`find`, :func:`data_home`, :func:`cifar_root`), with an
error saying which files to put there when they are missing. netfix never downloads anything."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError, unknown
from ._common import MissingDataError
from .cifar import _C10_DIR, _C10_TEST, _C10_TRAIN, _C10_URL, _C100_DIR, _C100_TEST, _C100_TRAIN, _C100_URL

__all__ = ["data_home", "find", "cifar_root"]


@dataclass(frozen=True)
class _Known:
    files: tuple[str, ...]
    subfolder: str
    source: str


_KNOWN: dict[str, _Known] = {
    "cifar10": _Known(_C10_TRAIN + _C10_TEST, _C10_DIR,
                      f"{_C10_URL} (the 'CIFAR-10 binary version', about 160 MB)"),
    "cifar100": _Known(_C100_TRAIN + _C100_TEST, _C100_DIR,
                       f"{_C100_URL} (the 'CIFAR-100 binary version', about 160 MB)"),
}
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def data_home() -> Path:
    """The folder netfix looks in for data sets: ``$NETFIX_DATA``, default ``~/.netfix/data``.

    Example:
        >>> data_home()
        PosixPath('/home/me/.netfix/data')
    """
    return Path(os.environ.get("NETFIX_DATA") or "~/.netfix/data").expanduser()


def find(name: str) -> Path:
    """The folder that holds data set ``name``: ``$NETFIX_DATA/<name>/`` (``NETFIX_DATA`` defaults to
    ``~/.netfix/data``). netfix never downloads anything: when the files are not there, a
    :class:`MissingDataError` (a :class:`~netfix.errors.DataError`) names the files to put there and where to
    get them.

    For ``"cifar10"`` and ``"cifar100"`` every file of the binary version must be present, directly in the folder
    or in the ``cifar-10-batches-bin/`` / ``cifar-100-binary/`` folder the archive unpacks to (the folder that
    holds them is returned). For any other name the folder must exist and hold something.

    Example:
        >>> find("cifar10")                      # after: tar -xzf cifar-10-binary.tar.gz -C ~/.netfix/data/cifar10
        PosixPath('/home/me/.netfix/data/cifar10/cifar-10-batches-bin')
        >>> ImageFolder(find("my-photos"))       # ~/.netfix/data/my-photos/<class>/<image>
    """
    if not isinstance(name, str) or not _NAME.match(name):
        raise ConfigError(f"find(name=...): expected a data set name of letters, digits, '.', '_' and '-' (a folder "
                          f"under {data_home()}); got {name!r}.")
    folder = data_home() / name
    env = "" if os.environ.get("NETFIX_DATA") else " (set NETFIX_DATA to look in another folder)"
    known = _KNOWN.get(name)
    if known is None:
        if folder.is_dir():
            with os.scandir(folder) as entries:
                if any(not e.name.startswith(".") for e in entries):
                    return folder
        raise MissingDataError(f"find({name!r}): no data in {folder}/{env}. Fix: put the files of {name!r} there "
                               "(e.g. one sub-folder of images per class for ImageFolder, or .npy files for "
                               "ArrayDataset). netfix never downloads data.")
    for d in (folder, folder / known.subfolder):
        if all((d / f).is_file() for f in known.files):
            return d
    have = folder / known.subfolder if (folder / known.subfolder).is_dir() else folder
    missing = [f for f in known.files if not (have / f).is_file()]
    raise MissingDataError(f"find({name!r}): {have}/ lacks {', '.join(missing)}{env}. Fix: put "
                           f"{', '.join(known.files)} in {folder}/ (or leave them in the {known.subfolder}/ folder "
                           f"the archive unpacks to, inside it): download {known.source} yourself and run tar -xzf "
                           f"{known.source.split('/')[-1].split(' ')[0]} -C {folder}. netfix never downloads data.")


def cifar_root(name: str) -> Path:
    """The folder of CIFAR-10 (``"cifar10"``) or CIFAR-100 (``"cifar100"``) under ``$NETFIX_DATA``, for
    :class:`CIFARBinary`; see :func:`find` (``"cifar-10"``, ``"CIFAR10"``, ... are accepted too).

    Example:
        >>> test = CIFARBinary(cifar_root("cifar100"), train=False, coarse=True)
    """
    key = name.lower().replace("-", "").replace("_", "") if isinstance(name, str) else name
    if key not in ("cifar10", "cifar100"):
        raise unknown("dataset", name, ["cifar10", "cifar100"], "cifar_root(name)")
    return find(key)
