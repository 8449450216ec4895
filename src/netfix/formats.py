"""Lazy readers for data kept on disk, as map-style ``torch.utils.data.Dataset`` s of ``(x, label)`` items.

- :class:`ImageFolder`: one sub-folder per class of PNG / JPEG / BMP files, each read with Pillow when its item
  is asked for;
- :class:`CIFARBinary`: the *binary* versions of CIFAR-10 and CIFAR-100 (never the pickled Python version),
  read through ``numpy.memmap``;
- :class:`ArrayDataset`: ``.npy`` files (opened memory-mapped, never unpickled) or in-memory arrays;
- :func:`find` / :func:`cifar_root`: the folder ``$NETFIX_DATA/<name>/`` that holds a data set's files, with an
  error saying which files to put there when they are missing. netfix never downloads anything.

Every reader knows its labels without reading the inputs: ``targets`` (an int64 tensor), ``num_classes`` and
``classes``. Items are ``(float32 tensor, int label)``; a ``transform`` replaces the conversion to a tensor (see
each class for what it receives). Readers hold no open file between items, so they pickle small and work with
``DataLoader(num_workers > 0)`` under both fork and spawn.

Example:
    >>> from torch.utils.data import DataLoader
    >>> from netfix.formats import CIFARBinary, cifar_root
    >>> from netfix.transforms import Compose, RandomCrop, RandomHorizontalFlip, ToTensor
    >>> train = CIFARBinary(cifar_root("cifar10"), train=True,
    ...                     transform=Compose([ToTensor(), RandomCrop(32, padding=4), RandomHorizontalFlip()]))
    >>> x, y = next(iter(DataLoader(train, batch_size=128, shuffle=True)))
    >>> x.shape
    torch.Size([128, 3, 32, 32])
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union

import numpy as np
import torch
from torch.utils.data import Dataset

from .errors import ConfigError, DataError, DatasetNotFoundError, DataTypeError, unknown
from .transforms import _convert, pil_to_tensor

__all__ = ["ImageFolder", "CIFARBinary", "ArrayDataset", "MissingDataError", "data_home", "find", "cifar_root"]

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


# ---------------------------------------------------------------------------------------------------------------
# ImageFolder
# ---------------------------------------------------------------------------------------------------------------


class ImageFolder(Dataset):
    """Images in one sub-folder per class: ``root/<class>/**/<file>.png``.

    Classes are the sub-folders of ``root`` sorted by name, labelled 0..K-1; samples are sorted by path within
    each class. Only the folder listing is read up front (``targets`` comes from the folder structure); each image
    is opened by Pillow when its item is asked for, and closed at once.

    Without ``transform`` an item is a float32 tensor ``C x H x W`` in [0, 1]: grayscale images (mode ``"L"``;
    16-bit ones are scaled by 1/65535) give 1 channel, every other mode is converted to RGB (3 channels; alpha
    dropped). A folder that mixes
    grayscale and colour images therefore gives items of different shapes, which a ``DataLoader`` cannot stack:
    pass ``channels=3`` (or ``1``) to convert every image the same way. With ``transform`` the item is
    ``transform(image)``, ``image`` being the PIL image already converted that way (e.g.
    ``netfix.transforms.Compose([ToTensor(), RandomCrop(32, padding=4)])``).

    Skipped while listing: hidden files and folders (names starting with ``.``, e.g. ``.ipynb_checkpoints`` or
    macOS ``._x.jpg`` files), files whose extension is not in ``extensions`` (compared case-insensitively),
    anything that is not a regular file, and symbolic links that lead outside ``root``. Symbolic links to folders
    are not followed.

    Attributes: ``classes`` (folder names), ``class_to_idx``, ``samples`` (``(path, label)`` pairs), ``targets``
    (int64 tensor), ``num_classes``.

    Example:
        >>> ds = ImageFolder("photos")            # photos/cat/1.jpg, photos/dog/7.png, ...
        >>> ds.classes, ds.num_classes, len(ds)
        (['cat', 'dog'], 2, 180)
        >>> x, y = ds[0]                            # read now, not before
    """

    def __init__(self, root: PathLike, transform: "Transform | None" = None,
                 extensions: "Sequence[str]" = (".png", ".jpg", ".jpeg", ".bmp"),
                 *, channels: int | None = None) -> None:
        if channels not in (None, 1, 3):
            raise ConfigError(f"ImageFolder(channels=...): expected None (grayscale 1 channel, others RGB), 1 "
                              f"(all grayscale) or 3 (all RGB); got {channels!r}.")
        self.transform = _check_transform(transform, "ImageFolder")
        self.channels = channels
        self.extensions = self._extensions(extensions)
        self.root = _root(root, "ImageFolder")
        real_root = self.root.resolve()
        with os.scandir(self.root) as entries:
            self.classes = sorted(e.name for e in entries
                                  if not e.name.startswith(".") and e.is_dir(follow_symlinks=False))
        if not self.classes:
            raise DataError(f"ImageFolder(root=...): {self.root} holds no class folders; expected one sub-folder "
                            f"per class, e.g. {self.root / 'cat' / '001.png'}. Fix: move the images of each class "
                            "into a folder named after the class.")
        self.class_to_idx = {c: k for k, c in enumerate(self.classes)}
        self.samples: list[tuple[str, int]] = []
        for k, c in enumerate(self.classes):
            files = self._list(self.root / c, real_root)
            if not files:
                raise DataError(f"ImageFolder: class folder {self.root / c} holds no image files with an extension "
                                f"in {self.extensions}. Fix: add its images, remove the folder, or pass "
                                "extensions=(...) naming the extensions the images have.")
            self.samples.extend((f, k) for f in files)
        self.targets = torch.tensor([k for _, k in self.samples], dtype=torch.int64)
        self.num_classes = len(self.classes)

    @staticmethod
    def _extensions(extensions: Any) -> tuple[str, ...]:
        exts = (extensions,) if isinstance(extensions, str) else extensions
        try:
            out = tuple(exts)
        except TypeError:
            out = ()
        if not out or not all(isinstance(e, str) and e.startswith(".") and len(e) > 1 for e in out):
            raise ConfigError(f"ImageFolder(extensions=...): expected a non-empty sequence of extensions with their "
                              f"dot, e.g. ('.png', '.jpg'); got {extensions!r}.")
        return tuple(e.lower() for e in out)

    def _list(self, folder: Path, real_root: Path) -> list[str]:
        found = []
        for dirpath, dirnames, filenames in os.walk(folder, followlinks=False):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for name in sorted(filenames):
                if name.startswith(".") or not name.lower().endswith(self.extensions):
                    continue
                path = Path(dirpath) / name
                if not path.is_file():  # broken links, sockets, fifos...
                    continue
                if path.is_symlink() and not path.resolve().is_relative_to(real_root):
                    continue
                found.append(str(path))
        return found

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> tuple[Any, int]:
        path, label = self.samples[_index(i, len(self.samples), "ImageFolder")]
        image = self._read(path)
        if self.transform is not None:
            return self.transform(image), label
        return pil_to_tensor(image, self.channels), label

    def _read(self, path: str) -> Any:
        try:
            from PIL import Image
        except ModuleNotFoundError:
            raise ModuleNotFoundError("ImageFolder reads images with Pillow, which is not installed. "
                                      "Fix: pip install pillow.") from None
        try:
            with Image.open(path) as img:
                img.load()
                converted = _convert(img, self.channels)
                return converted.copy() if converted is img else converted
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
            raise DataError(f"ImageFolder: Pillow cannot read {path} ({type(e).__name__}: {e}). Fix: replace or "
                            "delete the file (or drop its extension from extensions=).") from None

    def __repr__(self) -> str:
        return (f"ImageFolder(root={str(self.root)!r}, n={len(self)}, num_classes={self.num_classes}, "
                f"transform={self.transform!r})")


# ---------------------------------------------------------------------------------------------------------------
# CIFAR-10 / CIFAR-100, binary version
# ---------------------------------------------------------------------------------------------------------------

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


# ---------------------------------------------------------------------------------------------------------------
# NumPy arrays
# ---------------------------------------------------------------------------------------------------------------


def _load_npy(path: Path, argument: str) -> np.ndarray:
    if not path.is_file():
        raise MissingDataError(f"ArrayDataset({argument}=...): {path} does not exist. Fix: pass the path of a .npy "
                               "file (written with np.save) or an array.")
    try:
        a = np.load(path, mmap_mode="r", allow_pickle=False)
    except ValueError as e:
        if "object" in str(e).lower() or "pickle" in str(e).lower():
            raise DataTypeError(f"ArrayDataset({argument}=...): {path} holds Python objects (pickled data or dtype "
                                "object); netfix never unpickles files. Fix: save a numeric array, e.g. "
                                "np.save(path, np.asarray(x, dtype=np.float32)).") from None
        raise DataError(f"ArrayDataset({argument}=...): {path} is not a readable .npy file ({e}). Fix: write it with "
                        "np.save.") from None
    except OSError as e:
        raise DataError(f"ArrayDataset({argument}=...): cannot read {path} ({e}).") from None
    if not isinstance(a, np.ndarray):
        if hasattr(a, "close"):
            a.close()
        raise DataError(f"ArrayDataset({argument}=...): {path} is a .npz archive; expected a single-array .npy "
                        "file. Fix: pass np.load(path)['<name>'], or save each array with np.save.")
    return a


def _as_array(a: Any, argument: str) -> tuple[np.ndarray, "Path | None"]:
    if isinstance(a, (str, os.PathLike)):
        path = Path(a).expanduser()
        return _load_npy(path, argument), path
    if isinstance(a, torch.Tensor):
        return a.detach().cpu().numpy(), None
    if isinstance(a, np.ndarray):
        return a, None
    if isinstance(a, (list, tuple)):
        try:
            return np.asarray(a), None
        except (ValueError, TypeError) as e:
            raise DataError(f"ArrayDataset({argument}=...): could not be read as an array ({e}). Fix: pass a numpy "
                            "array of equal-shaped samples.") from None
    raise DataTypeError(f"ArrayDataset({argument}=...): expected a path to a .npy file, a numpy array or a "
                        f"tensor; got {type(a).__name__}.")


class ArrayDataset(Dataset):
    """Inputs and labels from NumPy ``.npy`` files (or arrays / tensors already in memory).

    A path is opened with ``np.load(path, mmap_mode="r", allow_pickle=False)``: memory-mapped, so only the items
    read are loaded, and never unpickled. ``inputs``: shape ``(N, *features)`` of numbers (bool, int or float);
    ``labels``: ``N`` integers >= 0 (read at once into ``targets``). An item is ``(x, label)``, ``x`` the sample
    as a float32 tensor of shape ``features`` with its values as stored (uint8 pixels stay 0..255: divide them in
    ``transform``); with ``transform`` it is ``transform(x)`` of that tensor. ``num_classes``: the number of
    classes (default: the largest label + 1).

    Example:
        >>> np.save("X.npy", np.random.rand(100, 1, 28, 28).astype(np.float32))
        >>> np.save("y.npy", np.arange(100) % 10)
        >>> ds = ArrayDataset("X.npy", "y.npy")
        >>> len(ds), ds.num_classes, ds[0][0].shape
        (100, 10, torch.Size([1, 28, 28]))
    """

    def __init__(self, inputs: "PathLike | np.ndarray | torch.Tensor", labels: "PathLike | np.ndarray | torch.Tensor",
                 transform: "Transform | None" = None, *, num_classes: int | None = None) -> None:
        self.transform = _check_transform(transform, "ArrayDataset")
        X, self._input_path = _as_array(inputs, "inputs")
        y, _ = _as_array(labels, "labels")
        where = f" ({self._input_path})" if self._input_path else ""
        if X.dtype.kind not in "biuf":
            raise DataTypeError(f"ArrayDataset(inputs=...): dtype {X.dtype}{where} is not a real number type; "
                                "expected bool, int or float. Fix: convert it, e.g. np.asarray(x, dtype=np.float32).")
        if X.ndim < 2:
            raise DataError(f"ArrayDataset(inputs=...): expected shape (N, *features); got shape {X.shape}{where}. "
                            "Fix: reshape single-feature data with x.reshape(-1, 1).")
        if y.ndim != 1:
            raise DataError(f"ArrayDataset(labels=...): expected N integer labels (1-D); got shape {y.shape}. "
                            + ("Fix: pass labels.argmax(1) (one-hot?)." if y.ndim == 2 and y.shape[1] > 1
                               else "Fix: pass labels.reshape(-1)."))
        if y.dtype.kind == "f":
            raise DataError(f"ArrayDataset(labels=...): expected integer class labels; got dtype {y.dtype}. Fix: "
                            "pass class indices 0..K-1 (labels.astype(np.int64) if they are whole numbers).")
        if y.dtype.kind not in "iu":
            raise DataTypeError(f"ArrayDataset(labels=...): expected integer class labels; got dtype {y.dtype}.")
        if len(X) != len(y):
            raise DataError(f"ArrayDataset: inputs has {len(X)} samples but labels has {len(y)}; expected one label "
                            "per sample. Fix: pass the files of one split together.")
        if len(y) == 0:
            raise DataError("ArrayDataset: the arrays are empty; expected at least one sample.")
        targets = np.array(y, dtype=np.int64)
        if int(targets.min()) < 0:
            raise DataError(f"ArrayDataset(labels=...): labels must be >= 0; got {int(targets.min())}. Fix: map "
                            "classes to 0..K-1.")
        top = int(targets.max()) + 1
        if num_classes is None:
            num_classes = top
        elif isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) or num_classes < top:
            raise ConfigError(f"ArrayDataset(num_classes=...): expected an int >= {top} (the largest label + 1); "
                              f"got {num_classes!r}.")
        self.num_classes = int(num_classes)
        self.classes = [str(k) for k in range(self.num_classes)]
        self.targets = torch.from_numpy(targets)
        self._shape = tuple(X.shape)
        self._dtype = X.dtype
        self._inputs: np.ndarray | None = X

    def _array(self) -> np.ndarray:
        if self._inputs is None:  # after unpickling in a DataLoader worker: map the file again
            assert self._input_path is not None
            X = _load_npy(self._input_path, "inputs")
            if tuple(X.shape) != self._shape or X.dtype != self._dtype:
                raise DataError(f"ArrayDataset: {self._input_path} changed since the data set was made (shape "
                                f"{self._shape} {self._dtype} then, {X.shape} {X.dtype} now). Fix: make it again.")
            self._inputs = X
        return self._inputs

    def __len__(self) -> int:
        return int(self._shape[0])

    def __getitem__(self, i: int) -> tuple[Any, int]:
        j = _index(i, len(self), "ArrayDataset")
        x = torch.from_numpy(np.array(self._array()[j], dtype=np.float32))
        label = int(self.targets[j])
        return (self.transform(x) if self.transform is not None else x), label

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        if self._input_path is not None:
            state["_inputs"] = None  # a worker maps the file itself: pickling a memmap would copy all of it
        return state

    def __repr__(self) -> str:
        src = str(self._input_path) if self._input_path else "array"
        return f"ArrayDataset({src!r}, n={len(self)}, shape={self._shape[1:]}, num_classes={self.num_classes})"


# ---------------------------------------------------------------------------------------------------------------
# Where data lives: $NETFIX_DATA/<name>/
# ---------------------------------------------------------------------------------------------------------------


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
