"""CIFAR-10 and CIFAR-100 from their *binary* version (never the pickled Python one), read through
``numpy.memmap``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from ..errors import ConfigError, DataError
from ._common import MissingDataError, PathLike, Transform, _check_transform, _index, _root

__all__ = ["CIFARBinary"]

_PIXELS = 3 * 32 * 32
_C10_TRAIN = tuple(f"data_batch_{i}.bin" for i in range(1, 6))
_C10_TEST = ("test_batch.bin",)
_C100_TRAIN = ("train.bin",)
_C100_TEST = ("test.bin",)
_C10_DIR = "cifar-10-batches-bin"
_C100_DIR = "cifar-100-binary"
_C10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz"
_C100_URL = "https://www.cs.toronto.edu/~kriz/cifar-100-binary.tar.gz"


def _cifar_howto(folder: Path) -> str:
    return (f"put data_batch_1.bin ... data_batch_5.bin and test_batch.bin (CIFAR-10, from {_C10_URL}) or train.bin "
            f"and test.bin (CIFAR-100, from {_C100_URL}) in {folder}/ (the {_C10_DIR}/ or {_C100_DIR}/ folder "
            f"that the archive unpacks to may stay as it is inside it: tar -xzf <archive> -C {folder}). "
            "netfix reads only these binary versions, never the pickled Python versions, and never downloads data")


class CIFARBinary(Dataset):
    """CIFAR-10 or CIFAR-100 from the *binary* version of the files, read lazily through ``numpy.memmap``.

    ``root`` holds, directly or in the ``cifar-10-batches-bin/`` / ``cifar-100-binary/`` folder the archive
    unpacks to, either CIFAR-10's ``data_batch_1.bin`` .. ``data_batch_5.bin`` (train) and ``test_batch.bin``
    (test) — records of 1 label byte and 3,072 pixel bytes — or CIFAR-100's ``train.bin`` and ``test.bin`` —
    records of 2 label bytes (coarse, fine) and 3,072 pixel bytes. Which one it is comes from the files present.
    Pixels are stored as 1,024 red, then 1,024 green, then 1,024 blue bytes, each 32 x 32 row by row.

    Only the label bytes are read up front (``targets``); an item's 3,072 pixel bytes are read when it is asked
    for, so memory does not grow with the data set. Without ``transform`` an item is a float32 tensor
    ``3 x 32 x 32`` in [0, 1]; with ``transform`` it is ``transform(image)``, ``image`` being the pixels as a
    uint8 numpy array ``32 x 32 x 3`` (height, width, RGB — what ``netfix.transforms.ToTensor`` takes).

    ``coarse=True`` (CIFAR-100 only) gives the 20 superclass labels instead of the 100 classes. ``classes`` holds
    the class names when the names file that comes with the data (``batches.meta.txt``,
    ``fine_label_names.txt``, ``coarse_label_names.txt``) is present, else ``"0"``, ``"1"``, ...

    Example:
        >>> train = CIFARBinary("~/data/cifar10", train=True)   # ~/data/cifar10/cifar-10-batches-bin/*.bin
        >>> len(train), train.num_classes, train[0][0].shape
        (50000, 10, torch.Size([3, 32, 32]))
    """

    def __init__(self, root: PathLike, train: bool = True, transform: "Transform | None" = None,
                 coarse: bool = False) -> None:
        if not isinstance(train, bool):
            raise ConfigError(f"CIFARBinary(train=...): expected True (training split) or False (test split); "
                              f"got {train!r}.")
        if not isinstance(coarse, bool):
            raise ConfigError(f"CIFARBinary(coarse=...): expected True or False; got {coarse!r}.")
        self.transform = _check_transform(transform, "CIFARBinary")
        self.root = _root(root, "CIFARBinary")
        self.train = train
        self.coarse = coarse
        self.version, self.folder = self._locate()
        if coarse and self.version == 10:
            raise ConfigError(f"CIFARBinary(coarse=True): coarse (superclass) labels exist only in CIFAR-100, and "
                              f"{self.folder} holds CIFAR-10. Fix: drop coarse=True.")
        names = (_C10_TRAIN if train else _C10_TEST) if self.version == 10 else (_C100_TRAIN if train else _C100_TEST)
        self.files = [str(self.folder / n) for n in names]
        self._record = _PIXELS + (1 if self.version == 10 else 2)
        self._label_byte = 0 if self.version == 10 or coarse else 1
        self.num_classes = 10 if self.version == 10 else (20 if coarse else 100)
        counts, labels = [], []
        for path in self.files:
            m = self._open(path)
            lab = np.array(m[:, self._label_byte])  # a strided read of the label bytes only
            if lab.size and int(lab.max()) >= self.num_classes:
                bad = int(np.argmax(lab >= self.num_classes))
                raise DataError(f"CIFARBinary: {path} record {bad} has label {int(lab[bad])}, outside 0.."
                                f"{self.num_classes - 1}: not a CIFAR-{self.version} binary file. Fix: replace it "
                                f"with the file from {_C10_URL if self.version == 10 else _C100_URL}.")
            counts.append(len(lab))
            labels.append(lab)
            del m
        self._starts = np.cumsum([0] + counts)
        self.targets = torch.from_numpy(np.concatenate(labels).astype(np.int64))
        self.classes = self._class_names()
        self._maps: list[np.memmap] | None = None  # opened on first item, in each process

    def _locate(self) -> tuple[int, Path]:
        found = []
        for d in (self.root, self.root / _C10_DIR, self.root / _C100_DIR):
            if d.is_dir():
                if any((d / n).is_file() for n in _C10_TRAIN + _C10_TEST):
                    found.append((10, d))
                if any((d / n).is_file() for n in _C100_TRAIN + _C100_TEST):
                    found.append((100, d))
        if len(found) > 1:
            listed = " and ".join(f"CIFAR-{v} in {d}" for v, d in found)
            raise DataError(f"CIFARBinary(root=...): found {listed}; expected one data set. Fix: pass the folder of "
                            "the one you mean as root.")
        if not found:
            pickled = [p for p in (self.root / "cifar-10-batches-py", self.root / "cifar-100-python",
                                   self.root / "data_batch_1", self.root / "train") if p.exists()]
            hint = (f" ({pickled[0]} looks like the pickled Python version, which netfix does not read: it never "
                    "unpickles files)") if pickled else ""
            raise MissingDataError(f"CIFARBinary(root=...): no CIFAR binary files in {self.root}{hint}. Fix: "
                                   f"{_cifar_howto(self.root)}.")
        version, folder = found[0]
        names = (_C10_TRAIN if self.train else _C10_TEST) if version == 10 else (
            _C100_TRAIN if self.train else _C100_TEST)
        missing = [n for n in names if not (folder / n).is_file()]
        if missing:
            split = "training" if self.train else "test"
            raise MissingDataError(f"CIFARBinary: {folder} holds CIFAR-{version} files but not {', '.join(missing)}, "
                                   f"which its {split} split needs. Fix: put {', '.join(missing)} in {folder}/ "
                                   f"(from {_C10_URL if version == 10 else _C100_URL}; netfix never downloads data).")
        return version, folder

    def _open(self, path: str) -> np.memmap:
        size = os.path.getsize(path)
        rec = self._record
        if size == 0 or size % rec:
            layout = "1 label byte" if self.version == 10 else "2 label bytes (coarse, fine)"
            raise DataError(f"CIFARBinary: {path} has {size} bytes, not a positive multiple of the {rec}-byte "
                            f"CIFAR-{self.version} record ({layout} + 3072 pixel bytes): it is truncated or not a "
                            f"CIFAR-{self.version} binary file. Fix: replace it with the file from "
                            f"{_C10_URL if self.version == 10 else _C100_URL}.")
        return np.memmap(path, dtype=np.uint8, mode="r", shape=(size // rec, rec))

    def _class_names(self) -> list[str]:
        name = "batches.meta.txt" if self.version == 10 else (
            "coarse_label_names.txt" if self.coarse else "fine_label_names.txt")
        path = self.folder / name
        try:
            if path.is_file() and path.stat().st_size < 65536:
                names = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
                if len(names) == self.num_classes:
                    return names
        except (OSError, UnicodeDecodeError):
            pass
        return [str(k) for k in range(self.num_classes)]

    def _memmaps(self) -> "list[np.memmap]":
        if self._maps is None:
            maps = []
            for path, n in zip(self.files, np.diff(self._starts)):
                m = self._open(path)
                if len(m) != n:
                    raise DataError(f"CIFARBinary: {path} changed since the data set was made ({n} records then, "
                                    f"{len(m)} now). Fix: make the data set again.")
                maps.append(m)
            self._maps = maps
        return self._maps

    def __len__(self) -> int:
        return int(self._starts[-1])

    def __getitem__(self, i: int) -> tuple[Any, int]:
        j = _index(i, len(self), "CIFARBinary")
        f = int(np.searchsorted(self._starts, j, side="right")) - 1
        record = self._memmaps()[f][j - int(self._starts[f])]
        label = int(self.targets[j])
        chw = np.array(record[self._record - _PIXELS:]).reshape(3, 32, 32)  # a copy: the file stays untouched
        if self.transform is not None:
            return self.transform(np.ascontiguousarray(chw.transpose(1, 2, 0))), label
        return torch.from_numpy(chw.astype(np.float32)).div_(255.0), label

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_maps"] = None  # pickled for a DataLoader worker: it maps the files itself, nothing is copied
        return state

    def __repr__(self) -> str:
        return (f"CIFARBinary(folder={str(self.folder)!r}, version=CIFAR-{self.version}, "
                f"split={'train' if self.train else 'test'}, n={len(self)}, num_classes={self.num_classes})")
