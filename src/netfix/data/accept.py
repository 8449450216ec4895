"""Accepting user data: :func:`as_data` turns a ``Dataset`` or a tuple ``(X, y)`` into :class:`LabeledData` (in
memory, or streamed when it is large, augmented or text), refusing bad data — empty, NaN/inf, ragged shapes, labels
out of range — with an error naming the argument and the fix, before any work starts; and the checks between sets
(:func:`check_range`, :func:`check_disjoint`)."""

from __future__ import annotations

from typing import Any, Union

import numpy as np
import torch
from torch.utils.data import Dataset

from ..errors import DataError, DataTypeError
from ..streaming import StreamedInputs, split_item
from ..streaming import to_tensor as _to_tensor
from .labeled import LabeledData

__all__ = ["DataLike", "IN_MEMORY_BYTES", "as_data", "check_range", "check_disjoint"]

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
