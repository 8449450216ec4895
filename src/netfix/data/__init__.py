"""Accepting user data, validating it once, and the built-in datasets.

Everything netfix does runs on :class:`LabeledData`: inputs ``X`` (N, *shape) float32 and labels ``y`` (N,)
int64 held in memory, plus ``num_classes``. User data — a ``Dataset`` of ``(x, y)`` items or a tuple ``(X, y)`` of
tensors / arrays — is converted by :func:`as_data`, which refuses bad data (empty, NaN/inf, ragged shapes, labels
out of range) with an error naming the argument and the fix, before any work starts. Holding data as tensors
makes subsets, fingerprints and membership attacks exact and cheap; the sets netfix repairs on fit in memory.

- :mod:`.labeled`: :class:`LabeledData`, :func:`concat`, :func:`batches`;
- :mod:`.accept`: :func:`as_data` and the checks on user data;
- :mod:`.requests`: deletion requests (:class:`Request`) and index digests;
- :mod:`.builtin`: the built-in datasets (:func:`load`, :func:`available`).
"""

from __future__ import annotations

from .accept import IN_MEMORY_BYTES, DataLike, as_data, check_disjoint, check_range
from .builtin import FOLDER, available, load  # noqa: F401
from .labeled import LabeledData, batches, concat
from .requests import Request, check_indices, indices_digest, request_of  # noqa: F401

# FOLDER, check_indices and indices_digest are read as netfix.data.X too, outside __all__ as before.

__all__ = ["LabeledData", "DataLike", "as_data", "load", "available", "batches", "check_range", "check_disjoint",
           "concat", "IN_MEMORY_BYTES", "Request", "request_of"]
