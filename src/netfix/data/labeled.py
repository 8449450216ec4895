"""The one set type netfix works on: :class:`LabeledData` (inputs in memory or streamed, labels in memory), joining
sets (:func:`concat`) and reading them in batches (:func:`batches`)."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from ..errors import DataTypeError
from ..streaming import BatchReader, StreamedInputs, TensorItems, move, pin

__all__ = ["LabeledData", "concat", "batches"]


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
