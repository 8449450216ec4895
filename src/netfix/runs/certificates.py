"""Forgetting certificates: one JSON document per forgetting run, naming exactly what was forgotten, from which
model file into which (see :mod:`netfix.runs`)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Union

import numpy as np
import torch

from .._version import __version__
from ..errors import ConfigError, NetfixError, NoChangeError
from ..io import atomic_write, file_ref
from ..ledger import _jsonable, _now, indices_digest

__all__ = ["CERTIFICATE_FORMAT", "CERTIFICATE_VERSION", "BOUND_KEYS", "certificate", "certificate_bytes",
           "write_certificate", "forgetting_bound"]

CERTIFICATE_FORMAT = "netfix-forgetting-certificate"
CERTIFICATE_VERSION = 2
PathLike = Union[str, "os.PathLike[str]"]
FileRef = Mapping[str, str]  # {"path", "sha256", "weights_sha256"}
BOUND_KEYS = ("distance_bound", "kl_bound", "grad_norm", "sigma")  # what a method's history may guarantee


def _ref(model: "PathLike | FileRef", argument: str) -> dict[str, str]:
    if isinstance(model, Mapping):
        if not all(isinstance(model.get(k), str) for k in ("path", "sha256")):
            raise ConfigError(f"{argument}: expected a saved model's path or {{'path', 'sha256', 'weights_sha256'}}; "
                              f"got {dict(model)!r}.")
        return dict(model)
    try:
        return file_ref(model)
    except NetfixError as e:
        text = str(e)
        raise type(e)(f"{argument}: {text[6:]}" if text.startswith("path: ") else text) from None


def certificate(original: "PathLike | FileRef", new: "PathLike | FileRef",
                forget_indices: Iterable[int] | np.ndarray | torch.Tensor, method: str, config: Mapping[str, Any],
                metrics: Mapping[str, Any], reference_metrics: Mapping[str, Any] | None = None, bound: Any = None,
                seconds: float | None = None) -> dict[str, Any]:
    """A forgetting certificate: a JSON-ready dict naming exactly what was forgotten, from which model, into which.

    ``original`` / ``new``: saved models (a path, hashed now) or what was read / is about to be written
    (``netfix.io.read_model(...).ref``, ``netfix.io.serialize(...).ref(path)``) — hash the original when it is
    read, not later. ``metrics``: the new model's (e.g. ``netfix.evaluate``); ``reference_metrics``: the
    retrained reference's, where one was measured; ``bound``: what the method guarantees (e.g. mixed-linear's
    ``distance_bound`` / ``kl_bound``), else ``None``. Raises :class:`~netfix.errors.NoChangeError` when the new
    weights equal the original's.

    Example:
        >>> cert = certificate("runs/m", "runs/m-ogd", s.forget_indices, "ogd", out.config, m, seconds=out.seconds)
        >>> write_certificate(cert, "runs/m-ogd.certificate.json")
    """
    if not isinstance(method, str) or not method:
        raise ConfigError(f"method: expected the repair method's name, e.g. 'ogd'; got {method!r}.")
    before, after = _ref(original, "original"), _ref(new, "new")
    if before.get("weights_sha256") and before.get("weights_sha256") == after.get("weights_sha256"):
        raise NoChangeError(f"new: its weights are exactly the original's (sha256 {after['weights_sha256'][:12]}...): "
                            f"{method!r} changed nothing, so nothing was forgotten and no certificate is written. "
                            "Fix: check the method's options (e.g. epochs >= 1), or use another method.")
    return {
        "format": CERTIFICATE_FORMAT,
        "format_version": CERTIFICATE_VERSION,
        "created": _now(),
        "original": before,
        "new": after,
        "forget_set": {**indices_digest(forget_indices),
                       "encoding": "sha256 of the JSON text of the sorted, distinct indices, no spaces: [3,17,42]"},
        "method": method,
        "config": _jsonable(dict(config), "config"),
        "metrics": _jsonable(dict(metrics), "metrics"),
        "reference_metrics": _jsonable(dict(reference_metrics), "reference_metrics")
        if reference_metrics is not None else None,
        "bound": _jsonable(bound, "bound"),
        "seconds": seconds,
        "netfix_version": __version__,
        "torch_version": torch.__version__,
    }


def certificate_bytes(cert: Mapping[str, Any]) -> bytes:
    """The certificate as the indented JSON text written to disk."""
    return (json.dumps(_jsonable(dict(cert), "cert"), indent=2, sort_keys=True) + "\n").encode()


def write_certificate(cert: Mapping[str, Any], path: PathLike) -> Path:
    """Write ``cert`` as indented JSON, atomically; returns the path.

    Example:
        >>> write_certificate(cert, "runs/m-ogd.certificate.json")
        PosixPath('runs/m-ogd.certificate.json')
    """
    path = Path(path)
    atomic_write(path, certificate_bytes(cert))
    return path


def forgetting_bound(history: "list[dict[str, Any]]") -> "dict[str, Any] | None":
    """What the method guarantees about a forgetting, from its history's last entry (mixed-linear's
    ``distance_bound`` / ``kl_bound``): the ``bound`` of its :func:`certificate`, or ``None``."""
    last = history[-1] if history else {}
    return {k: last[k] for k in BOUND_KEYS if k in last} or None
