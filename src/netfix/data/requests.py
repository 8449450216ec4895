"""Deletion requests as users have them — "these sample ids of my training set" — and the digest of a set of
indices that certificates record."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import torch

from ..errors import ConfigError, DataError
from .accept import DataLike, as_data
from .labeled import LabeledData

__all__ = ["Request", "check_indices", "indices_digest", "request_of"]


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
