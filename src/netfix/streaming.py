"""Inputs read on demand from a user's ``Dataset``: memory grows with the batch, not with the dataset.

A :class:`~netfix.data.LabeledData` holds its labels in memory (8 bytes a sample) and its inputs either as one
tensor (the fast path for small sets) or as :class:`StreamedInputs`: a view of a map-style ``Dataset`` plus the
positions it covers. Indexing a ``StreamedInputs`` with an int, a slice or an index array reads just those items
through the dataset's own ``__getitem__`` (its transforms, its random augmentations drawn afresh) and stacks them
into a batch — a float32 tensor, or a dict of tensors for a tokenized text set (``input_ids``, ``attention_mask``,
...). Every netfix loop reads data by batches of positions, so the same code serves both paths, with identical
results on the same data and seed (tests/test_streaming.py).

Each batch read is checked as it streams: equal shapes, finite values (a bad item is named, with the fix).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import ConcatDataset, Dataset

from .errors import DataError, DataTypeError

__all__ = ["StreamedInputs", "LABEL_KEYS", "split_item", "move", "to_tensor"]

# the key of the label in a dict item (Hugging Face datasets use "label" or "labels")
LABEL_KEYS = ("label", "labels", "y", "target", "targets")


def split_item(item: Any, position: int, argument: str, label_key: "str | None" = None) -> tuple[Any, Any]:
    """``(input, label)`` of a dataset item: a pair ``(x, y)``, or a dict holding the label under ``label_key``
    (by default the first of :data:`LABEL_KEYS` present) and the model's inputs under its other keys."""
    if isinstance(item, Mapping):
        key = label_key or next((k for k in LABEL_KEYS if k in item), None)
        if key is None or key not in item:
            raise DataTypeError(f"{argument}: item {position} is a dict without a label (looked for "
                                f"{', '.join(label_key and [label_key] or LABEL_KEYS)}); got keys {sorted(item)}. "
                                "Fix: add the label under 'label', or name its key.")
        return {k: v for k, v in item.items() if k != key}, item[key]
    if isinstance(item, (tuple, list)) and len(item) == 2:
        return item[0], item[1]
    raise DataTypeError(f"{argument}: item {position} of the Dataset is a {type(item).__name__}; expected a pair "
                        "(x, y) or a dict with a 'label'. Fix: make __getitem__ return (input tensor, integer label).")


def to_tensor(a: Any, argument: str, what: str) -> torch.Tensor:
    """``a`` (a tensor, numpy array, list or number) as a CPU tensor; anything else is a DataTypeError naming
    ``what`` in ``argument``."""
    if isinstance(a, torch.Tensor):
        return a.detach().cpu()
    if isinstance(a, np.ndarray):
        if a.dtype == object:
            raise DataTypeError(f"{argument}: {what} is a numpy array of dtype object; expected numbers. "
                                f"Fix: convert it with np.asarray(..., dtype=np.float32).")
        return torch.from_numpy(np.ascontiguousarray(a))
    if isinstance(a, (list, tuple)):
        try:
            return torch.as_tensor(np.asarray(a))
        except (ValueError, TypeError) as e:
            raise DataTypeError(f"{argument}: {what} could not be read as a numeric array ({e}). "
                                f"Fix: pass a tensor or numpy array of equal-shaped samples.") from None
    if isinstance(a, (int, float, np.number)) and not isinstance(a, bool):
        return torch.as_tensor(np.asarray(a))
    raise DataTypeError(f"{argument}: {what} must be a torch.Tensor or numpy array; got {type(a).__name__}. Fix: "
                        "convert it in the dataset (images: a transform such as netfix.transforms.ToTensor()).")


def _collate(inputs: list[Any], positions: Sequence[int], argument: str, out: "torch.Tensor | None" = None) -> Any:
    """Stack item inputs into one batch: a float32 tensor, or a dict of tensors (integer ids keep their dtype)."""
    if isinstance(inputs[0], Mapping):
        keys = list(inputs[0])
        batch: dict[str, torch.Tensor] = {}
        for k in keys:
            parts = []
            for p, x in zip(positions, inputs):
                if not isinstance(x, Mapping) or k not in x:
                    raise DataError(f"{argument}: item {p} lacks the input {k!r} that item {positions[0]} has; "
                                    "expected the same keys in every item.")
                parts.append(to_tensor(x[k], argument, f"the input {k!r} of item {p}"))
            batch[k] = _stack(parts, positions, argument, f"input {k!r} of ")
        return batch
    return _stack([to_tensor(x, argument, f"the input of item {p}") for p, x in zip(positions, inputs)], positions,
                  argument, "", out)


def _stack(parts: list[torch.Tensor], positions: Sequence[int], argument: str, what: str,
           out: "torch.Tensor | None" = None) -> torch.Tensor:
    shape = parts[0].shape
    for p, t in zip(positions, parts):
        if t.shape != shape:
            raise DataError(f"{argument}: the {what}item {p} has shape {tuple(t.shape)} but item {positions[0]} has "
                            f"{tuple(shape)}; expected equal shapes. Fix: resize or pad in the dataset's transform "
                            "(e.g. pad token ids to one length).")
    if out is not None and out.shape[1:] == shape and len(out) >= len(parts) and not what:
        batch = torch.stack([t.to(out.dtype) for t in parts], out=out[:len(parts)])  # no new batch allocation
    else:
        batch = torch.stack(parts)
    if not what or batch.dtype.is_floating_point:  # image inputs: float32, as in memory; token ids keep their dtype
        if batch.dtype.is_complex or batch.dtype == torch.bool and what:
            raise DataTypeError(f"{argument}: the {what}item {positions[0]} has dtype {batch.dtype}; expected real "
                                "numbers.")
        batch = batch.to(torch.float32)
        if batch.numel() and not bool(torch.isfinite(batch.sum())) and not bool(torch.isfinite(batch).all()):
            bad = [positions[i] for i in range(len(parts)) if not bool(torch.isfinite(batch[i]).all())]
            raise DataError(f"{argument}: the {what}item {bad[0]} holds NaN or infinite values. Fix: drop or "
                            "impute it, or check the dataset's transform.")
    return batch


class StreamedInputs:
    """The inputs of ``dataset`` at ``index`` (positions into it), read when indexed.

    Looks enough like the inputs tensor for netfix's loops: ``len``, ``shape`` (N, *item shape), ``dtype``,
    indexing by int / slice / index array / bool mask, :meth:`take` (a sub-view, nothing read)."""

    def __init__(self, dataset: Dataset, index: "np.ndarray | None" = None, argument: str = "data",
                 label_key: "str | None" = None, workers: int = 0) -> None:
        self.dataset = dataset
        self.workers = workers  # DataLoader worker processes that read batches ahead (0: read in this process)
        n = len(dataset)  # type: ignore[arg-type]
        self.index = np.arange(n, dtype=np.int64) if index is None else np.asarray(index, dtype=np.int64)
        self.argument = argument
        self.label_key = label_key
        self._item_shape: "tuple[int, ...] | None" = None
        self._dict: "bool | None" = None

    def __len__(self) -> int:
        return int(self.index.shape[0])

    def __repr__(self) -> str:
        return f"StreamedInputs(n={len(self)}, dataset={type(self.dataset).__name__})"

    def _probe(self) -> None:
        if self._item_shape is None:
            if not len(self):
                raise DataError(f"{self.argument}: the set is empty; expected at least one sample.")
            x = self._read([0])
            first = next(iter(x.values())) if isinstance(x, dict) else x
            self._dict = isinstance(x, dict)
            self._item_shape = tuple(int(s) for s in first.shape[1:])

    @property
    def shape(self) -> torch.Size:
        if not len(self):
            return torch.Size((0,))
        self._probe()
        assert self._item_shape is not None
        return torch.Size((len(self), *self._item_shape))

    @property
    def is_dict(self) -> bool:
        self._probe()
        return bool(self._dict)

    dtype = torch.float32
    device = torch.device("cpu")
    ndim = property(lambda self: len(self.shape))

    def numel(self) -> int:
        return math.prod(self.shape)

    def _positions(self, idx: Any) -> np.ndarray:
        if isinstance(idx, slice):
            return np.arange(len(self))[idx]
        a = idx.cpu().numpy() if isinstance(idx, torch.Tensor) else np.asarray(idx)
        if a.dtype == bool:
            return np.flatnonzero(a)
        return a.astype(np.int64).reshape(-1)

    def _read(self, positions: "Sequence[int] | np.ndarray", out: "torch.Tensor | None" = None) -> Any:
        at = self.index[np.asarray(positions, dtype=np.int64)]
        inputs = [split_item(self.dataset[int(i)], int(i), self.argument, self.label_key)[0] for i in at]
        return _collate(inputs, [int(i) for i in at], self.argument, out)

    def read_into(self, idx: Any, out: torch.Tensor) -> Any:
        """The inputs at ``idx`` written into ``out`` (a float32 buffer of at least that many rows, reused batch
        after batch — a pass that consumes each batch before the next allocates no new batch); dict inputs, or a
        buffer that doesn't fit, get a new batch."""
        return self._read(self._positions(idx), out)

    def __getitem__(self, idx: Any) -> Any:
        if isinstance(idx, (int, np.integer)):
            batch = self._read([int(idx) % len(self)])
            return {k: v[0] for k, v in batch.items()} if isinstance(batch, dict) else batch[0]
        positions = self._positions(idx)
        if not len(positions):
            self._probe()
            assert self._item_shape is not None
            if self._dict:
                return {k: v[:0] for k, v in self._read([0]).items()}
            return torch.empty((0, *self._item_shape))
        return self._read(positions)

    def take(self, idx: Any) -> "StreamedInputs":
        """The inputs at ``idx`` (positions into this view), as a new view: nothing is read."""
        out = StreamedInputs(self.dataset, self.index[self._positions(idx)], self.argument, self.label_key,
                             self.workers)
        out._item_shape, out._dict = self._item_shape, self._dict
        return out

    def with_workers(self, workers: int) -> "StreamedInputs":
        """The same view, read by ``workers`` DataLoader worker processes."""
        out = self.take(slice(None))
        out.workers = workers
        return out

    @staticmethod
    def concat(parts: "Sequence[StreamedInputs]") -> "StreamedInputs":
        """One view over several (read in order)."""
        datasets = [p.dataset for p in parts]
        offsets: np.ndarray = np.cumsum([0] + [len(d) for d in datasets[:-1]])  # type: ignore[arg-type]
        index = np.concatenate([p.index + o for p, o in zip(parts, offsets)])
        out = StreamedInputs(ConcatDataset(datasets), index, parts[0].argument, parts[0].label_key,
                             max(p.workers for p in parts))
        out._item_shape, out._dict = parts[0]._item_shape, parts[0]._dict
        return out


class DictBatch(Dataset):
    """A batch of dict inputs (``{"input_ids": (N, L), ...}``) and its labels as a dataset of dict items."""

    def __init__(self, X: "Mapping[str, torch.Tensor]", y: torch.Tensor) -> None:
        self.X, self.y = X, y
        self.targets = [int(v) for v in y.reshape(-1).tolist()] if y.ndim == 1 else None

    def __len__(self) -> int:
        return int(len(self.y))

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {**{k: v[i] for k, v in self.X.items()}, "label": self.y[i]}


class TensorItems(Dataset):
    """An in-memory inputs tensor as a dataset of ``(x, 0)`` items (to concatenate it with a streamed set)."""

    def __init__(self, X: torch.Tensor) -> None:
        self.X = X

    def __len__(self) -> int:
        return int(self.X.shape[0])

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.X[i], 0


class BatchReader(Dataset):
    """A streamed view as a dataset whose items are whole batches: ``reader[positions]`` is the collated batch.
    A ``DataLoader(reader, batch_size=None, sampler=<position chunks>, num_workers=w)`` reads batches in ``w``
    worker processes, ahead of the model."""

    def __init__(self, inputs: StreamedInputs) -> None:
        self.inputs = inputs

    def __len__(self) -> int:
        return len(self.inputs)

    def __getitem__(self, positions: Any) -> Any:
        return self.inputs[positions]


def pin(batch: Any) -> Any:
    """A batch (tensor, or dict of tensors) in pinned host memory, for asynchronous copies to a GPU."""
    if isinstance(batch, Mapping):
        return {k: v.pin_memory() for k, v in batch.items()}
    return batch.pin_memory()


def move(batch: Any, device: "torch.device | str", non_blocking: bool = False) -> Any:
    """A batch (tensor, or dict of tensors) on ``device``."""
    if isinstance(batch, Mapping):
        return {k: v.to(device, non_blocking=non_blocking) for k, v in batch.items()}
    return batch.to(device, non_blocking=non_blocking)
