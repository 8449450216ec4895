"""Publishing a run's files and entering them in the ledger as one step (see :mod:`netfix.runs`)."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from ..errors import ConfigError, unknown
from ..io import clean_stale, file_sha256, replace_staged, stage
from ..ledger import KINDS, Ledger, ledger_path
from .certificates import FileRef, PathLike, _ref

__all__ = ["record_run", "publish_recorded", "ledger_location"]


def _not_rank_zero() -> bool:
    dist = torch.distributed
    return bool(dist.is_available() and dist.is_initialized() and dist.get_rank() != 0)


def _open(ledger: "Ledger | PathLike | None") -> tuple[Ledger, bool]:
    return (ledger, False) if isinstance(ledger, Ledger) else (Ledger(ledger), True)


def _inputs(inputs: "Mapping[str, PathLike | FileRef] | None") -> dict[str, dict[str, Any]]:
    out = {}
    for role, p in (inputs or {}).items():
        if isinstance(p, Mapping):
            ref = _ref(p, f"inputs[{role!r}]")
        else:
            path = Path(p)
            if not path.is_file():
                raise ConfigError(f"inputs[{role!r}]: {path} not found; only files that exist can be recorded.")
            ref = {"path": str(path.resolve()), "sha256": file_sha256(path)}
        out[str(role)] = {"path": ref["path"], "sha256": ref["sha256"], "input": True}
    return out


def record_run(kind: str, *, files: Mapping[str, PathLike], inputs: "Mapping[str, PathLike | FileRef] | None" = None,
               ledger: "Ledger | PathLike | None" = None, **payload: Any) -> int | None:
    """Record a run whose files are already written: hash ``files`` (role -> path written) and take ``inputs``
    (role -> path read, or its ref as read), and append one committed ``kind`` record; returns its id (``None`` on
    ranks other than 0 under ``torch.distributed``). Prefer :func:`publish_recorded`, which cannot leave a written
    file unrecorded.

    Example:
        >>> record_run("unlearn", files={"model": "runs/m-ogd.safetensors"}, inputs={"source": "runs/m"},
        ...            method="ogd", metrics={"forget_acc": 0.0})
        2
    """
    if _not_rank_zero():
        return None
    _check_roles(kind, files, inputs, payload)
    entries: dict[str, dict[str, Any]] = {}
    for role, p in files.items():
        path = Path(p)
        if not path.is_file():
            raise ConfigError(f"files[{role!r}]: {path} not found; only files that exist can be recorded. Fix: save "
                              "the model before recording the run.")
        entries[str(role)] = {"path": str(path.resolve()), "sha256": file_sha256(path)}
    entries.update(_inputs(inputs))
    led, own = _open(ledger)
    try:
        return led.append(kind, {**payload, "files": entries})
    finally:
        if own:
            led.close()


def _check_roles(kind: str, files: Mapping[str, Any], inputs: Mapping[str, Any] | None,
                 payload: Mapping[str, Any]) -> None:
    if kind not in KINDS or kind == "commit":
        raise unknown("kind", kind, [k for k in KINDS if k != "commit"], "kind")
    if "files" in payload or "status" in payload:
        raise ConfigError("payload: 'files' and 'status' are reserved. Fix: pass the files as files= / outputs=.")
    clash = sorted(set(files) & set(inputs or {}))
    if clash:
        raise ConfigError(f"inputs: roles {clash} are also outputs; expected distinct roles, e.g. 'model' for the "
                          "file written and 'source' for the file read.")


def publish_recorded(kind: str, outputs: Mapping[str, "tuple[PathLike, bytes]"], *,
                     inputs: "Mapping[str, PathLike | FileRef] | None" = None,
                     ledger: "Ledger | PathLike | None" = None, **payload: Any) -> dict[str, Any]:
    """Write ``outputs`` (role -> (path, bytes)) atomically and record them in the ledger as one step (see the
    module docstring); ``inputs``: files the run read (role -> path, or the ref taken when it was read). Returns
    ``{"ledger": path, "ledger_record": id}`` (the pending record's id; nothing on ranks other than 0).

    Example:
        >>> publish_recorded("edit", {"model": ("runs/m-edit.safetensors", ser.data)}, inputs={"source": ref},
        ...                  method="rmsprop")
        {'ledger': '/home/me/.netfix/ledger.sqlite', 'ledger_record': 7}
    """
    if _not_rank_zero():
        return {}
    _check_roles(kind, outputs, inputs, payload)
    entries = {str(role): {"path": str(Path(p).resolve()), "sha256": hashlib.sha256(data).hexdigest()}
               for role, (p, data) in outputs.items()}
    entries.update(_inputs(inputs))
    staged: dict[Path, str] = {}
    led, own = _open(ledger)
    try:
        for p, data in outputs.values():
            staged[Path(p)] = stage(p, data)  # the slow part, before any lock or record
        rid = led.begin(kind, {**payload, "files": entries})
        with led.committing(rid):
            for path, tmp in staged.items():
                replace_staged(tmp, path)
        return {"ledger": str(led.path), "ledger_record": rid}
    finally:
        for path, tmp in staged.items():
            if os.path.exists(tmp):
                os.unlink(tmp)
            clean_stale(path)
        if own:
            led.close()


def ledger_location(ledger: "Ledger | PathLike | None") -> str:
    """Where records go: a ledger's path, or the default ($NETFIX_HOME/ledger.sqlite)."""
    return str(ledger.path if isinstance(ledger, Ledger) else ledger_path(ledger))
