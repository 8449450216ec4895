"""Inputs and labels from NumPy ``.npy`` files (memory-mapped, never unpickled) or arrays in memory."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from ..errors import ConfigError, DataError, DataTypeError
from ._common import MissingDataError, PathLike, Transform, _check_transform, _index

__all__ = ["ArrayDataset"]


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
