"""Proof of what was done to a model: a tamper-evident ledger of runs, and forgetting certificates.

**The ledger** is one SQLite file (stdlib :mod:`sqlite3`; default ``$NETFIX_HOME/ledger.sqlite``, ``NETFIX_HOME``
defaulting to ``~/.netfix``) with one table, ``records``: ``id``, ``created`` (UTC, ISO 8601), ``kind`` (train,
unlearn, relearn, edit, forget), ``payload`` (JSON), ``prev_hash`` and ``hash``. Design choices:

- *A hash chain.* ``hash = sha256(prev_hash + canonical JSON of {created, kind, payload})``, the first record's
  ``prev_hash`` being 64 zeros. Editing a record breaks its own hash; deleting one breaks the next record's
  ``prev_hash``; deleting the newest records is caught by ``sqlite_sequence`` (AUTOINCREMENT remembers the highest
  id ever used). This is tamper *evidence*, not tamper proof: whoever can write the file can rewrite the whole
  chain, so keep the head hash (``Ledger.audit().head``) somewhere else to pin it.
- *One record, one transaction.* ``BEGIN IMMEDIATE`` takes the write lock before the last hash is read, so two
  processes appending at once still chain correctly, and a process killed midway leaves no partial record (SQLite
  rolls the journal back when the file is next opened). WAL journal mode lets ``list`` / ``verify`` read while a run
  writes; ``synchronous=FULL`` because a ledger is worth an fsync per record.
- *Files are named by content.* A payload's ``"files"`` entry, ``{role: {"path": ..., "sha256": ...}}`` (plus
  ``"input": true`` for a file the run read rather than wrote), is what :meth:`Ledger.verify` re-hashes. Each file
  is checked against the *latest* record naming it, so re-running a command onto the same path is not reported
  forever; a file a run read that differs from what the run before recorded is reported (it changed unrecorded).

**A certificate** (:func:`certificate`) is one JSON document saying what a forgetting run did: the sha256 of the
original and of the new weights (and their sidecars), the sha256 and size of the forget set, the method with its
full config, the metrics beside the retrained reference's, the bound where the method gives one, the time taken,
and the netfix and torch versions. Anyone holding the files can check it with ``sha256sum``.

Example:
    >>> from netfix.ledger import Ledger
    >>> led = Ledger("runs/ledger.sqlite")
    >>> rid = led.append("train", {"method": "train", "metrics": {"test_acc": 97.1}})
    >>> led.verify()
    []
"""

from __future__ import annotations

import builtins
import hashlib
import json
import os
import sqlite3
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Union

import numpy as np
import torch

from .errors import ConfigError, NotAModelError, unknown
from .io import atomic_write, file_sha256, model_paths

__all__ = ["KINDS", "Ledger", "Audit", "ledger_path", "certificate", "write_certificate", "indices_digest",
           "record_run"]

KINDS = ("train", "unlearn", "relearn", "edit", "forget")
GENESIS = "0" * 64  # the prev_hash of the first record
CERTIFICATE_FORMAT = "netfix-forgetting-certificate"
CERTIFICATE_VERSION = 1
_SCHEMA = ("CREATE TABLE IF NOT EXISTS records (id INTEGER PRIMARY KEY AUTOINCREMENT, created TEXT NOT NULL, "
           "kind TEXT NOT NULL, payload TEXT NOT NULL, prev_hash TEXT NOT NULL, hash TEXT NOT NULL)")
_COLUMNS = ("id", "created", "kind", "payload", "prev_hash", "hash")

PathLike = Union[str, "os.PathLike[str]"]
Record = dict[str, Any]


def ledger_path(path: PathLike | None = None) -> Path:
    """``path`` if given, else ``$NETFIX_HOME/ledger.sqlite`` (``NETFIX_HOME`` defaulting to ``~/.netfix``).

    Example:
        >>> ledger_path()
        PosixPath('/home/me/.netfix/ledger.sqlite')
    """
    if path is not None:
        return Path(path).expanduser()
    home = os.environ.get("NETFIX_HOME") or "~/.netfix"
    return Path(home).expanduser() / "ledger.sqlite"


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


def _default(o: Any) -> Any:
    """JSON fallback for the values netfix results hold: paths, numpy / torch scalars and arrays."""
    if isinstance(o, os.PathLike):
        return os.fspath(o)
    if isinstance(o, (np.generic, np.ndarray, torch.Tensor)):
        return o.tolist()
    raise TypeError(f"{type(o).__name__} is not JSON-serialisable")


def _jsonable(value: Any, what: str) -> Any:
    """``value`` as plain JSON data (what a JSON round trip gives), so that its hash can be recomputed later."""
    try:
        return json.loads(json.dumps(value, default=_default))
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{what}: every value must be JSON-serialisable (numbers, strings, lists, dicts); {e}. "
                          "Fix: convert it first, e.g. tensor.tolist() or str(obj).") from None


def _canonical(value: Any) -> str:
    """One text per value: sorted keys, no spaces, ASCII only."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def _record_hash(prev_hash: str, created: str, kind: str, payload: Any) -> str:
    text = prev_hash + _canonical({"created": created, "kind": kind, "payload": payload})
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass
class Audit:
    """What :meth:`Ledger.audit` found: ``problems`` (empty = all good), the number of ``records`` and of distinct
    ``files`` checked, and the ``head`` hash (the newest record's; ``None`` for an empty ledger)."""

    problems: list[str] = field(default_factory=list)
    records: int = 0
    files: int = 0
    head: str | None = None

    @property
    def ok(self) -> bool:
        return not self.problems


class Ledger:
    """A tamper-evident, append-only record of runs in one SQLite file (see the module docstring).

    Example:
        >>> with Ledger() as led:                        # $NETFIX_HOME/ledger.sqlite
        ...     rid = led.append("unlearn", {"method": "ogd", "files": {...}})
        ...     led.get(rid)["payload"]["method"], led.verify()
        ('ogd', [])
    """

    def __init__(self, path: PathLike | None = None) -> None:
        self.path = ledger_path(path)
        if self.path.is_dir():
            raise ConfigError(f"path: {self.path} is a folder; expected a ledger file. Fix: pass a file path, e.g. "
                              f"{self.path / 'ledger.sqlite'}.")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise ConfigError(f"path: cannot create the folder of the ledger {self.path} ({e}). Fix: pass a writable "
                              "path, or set NETFIX_HOME to a writable folder.") from None
        try:
            # autocommit mode (isolation_level=None): every transaction below is explicit
            self._conn = sqlite3.connect(str(self.path), timeout=30.0, isolation_level=None)
        except sqlite3.Error as e:
            raise ConfigError(f"path: cannot open the ledger {self.path} ({e}). Fix: pass a writable path.") from None
        try:
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=FULL")
            self._conn.execute(_SCHEMA)
            columns = tuple(r[1] for r in self._conn.execute("PRAGMA table_info(records)"))
        except sqlite3.Error as e:
            self._conn.close()
            raise ConfigError(f"path: {self.path} is not a netfix ledger ({e}). Fix: pass another path; a new "
                              "ledger is created where none exists.") from None
        if columns != _COLUMNS:
            self._conn.close()
            raise ConfigError(f"path: {self.path} holds a 'records' table with columns {list(columns)}, not a netfix "
                              f"ledger's {list(_COLUMNS)}. Fix: pass another path.")

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> "Ledger":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Ledger({str(self.path)!r})"

    def append(self, kind: str, payload: Mapping[str, Any]) -> int:
        """Append one record in one transaction; returns its id. Nothing is written if anything fails.

        Example:
            >>> led.append("edit", {"method": "rmsprop", "success": [True]})
            4
        """
        if kind not in KINDS:
            raise unknown("kind", kind, KINDS, "kind")
        if not isinstance(payload, Mapping):
            raise ConfigError(f"payload: expected a dict of JSON-serialisable values; got {type(payload).__name__}.")
        body = _jsonable(dict(payload), "payload")
        try:
            self._conn.execute("BEGIN IMMEDIATE")  # the write lock first, then the last hash: no two heads
        except sqlite3.Error as e:
            raise ConfigError(f"ledger: cannot write {self.path} ({e}). Fix: check that the file is writable and "
                              "not locked by a stuck process, or pass another --ledger path.") from None
        try:
            rid = self._write(kind, body)
            self._conn.execute("COMMIT")
        except BaseException as e:
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")
            if isinstance(e, sqlite3.Error):
                msg = (f"ledger: cannot write {self.path} ({e}); nothing was recorded. Fix: check that the file is "
                       "writable and the disk not full, or pass another --ledger path.")
                raise ConfigError(msg) from None
            raise
        return rid

    def _write(self, kind: str, payload: Any) -> int:
        """The INSERT, inside :meth:`append`'s transaction."""
        last = self._conn.execute("SELECT hash FROM records ORDER BY id DESC LIMIT 1").fetchone()
        prev = last[0] if last else GENESIS
        created = _now()
        cur = self._conn.execute(
            "INSERT INTO records (created, kind, payload, prev_hash, hash) VALUES (?, ?, ?, ?, ?)",
            (created, kind, _canonical(payload), prev, _record_hash(prev, created, kind, payload)))
        assert cur.lastrowid is not None
        return int(cur.lastrowid)

    def _rows(self, where: str = "", args: tuple[Any, ...] = ()) -> builtins.list[tuple[Any, ...]]:
        return self._conn.execute(f"SELECT {', '.join(_COLUMNS)} FROM records {where} ORDER BY id", args).fetchall()

    @staticmethod
    def _record(row: tuple[Any, ...]) -> Record:
        rec = dict(zip(_COLUMNS, row))
        try:
            rec["payload"] = json.loads(rec["payload"])
        except (TypeError, ValueError):
            pass  # an edited, unparsable payload is shown as stored; verify() reports it
        return rec

    def list(self) -> builtins.list[Record]:
        """Every record, oldest first: ``{"id", "created", "kind", "payload", "prev_hash", "hash"}``."""
        return [self._record(r) for r in self._rows()]

    def get(self, id: int) -> Record:
        """The record with this ``id``.

        Example:
            >>> Ledger().get(1)["kind"]
            'train'
        """
        if isinstance(id, bool) or not isinstance(id, (int, np.integer)):
            raise ConfigError(f"id: expected a record id (an integer, see `netfix ledger list`); got {id!r}.")
        rows = self._rows("WHERE id = ?", (int(id),))
        if not rows:
            lo, hi = self._conn.execute("SELECT MIN(id), MAX(id) FROM records").fetchone()
            held = f"it holds ids {lo}..{hi}" if lo is not None else "it is empty"
            raise ConfigError(f"id: no record {id} in the ledger {self.path}; {held}. Fix: pick an id from "
                              "`netfix ledger list`.")
        return self._record(rows[0])

    def audit(self) -> Audit:
        """Check the hash chain and the files the records name; see :meth:`verify`."""
        self._conn.execute("BEGIN")  # one snapshot: an append running meanwhile is not mistaken for a deletion
        try:
            rows = self._rows()
            seq = self._conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'records'").fetchone()
        finally:
            self._conn.execute("COMMIT")
        out = Audit(records=len(rows))
        prev, prev_id = GENESIS, None
        seen: dict[str, tuple[str, int, str]] = {}  # path -> (sha256, record id, role) of its latest record
        for rid, created, kind, text, prev_hash, digest in rows:
            if prev_hash != prev:
                before = f"record {prev_id}'s hash" if prev_id is not None else "the chain's start"
                out.problems.append(f"record {rid}: prev_hash does not match {before} (a record before it was "
                                    "deleted or rewritten).")
            prev, prev_id = digest, rid
            try:
                payload = json.loads(text)
            except (TypeError, ValueError):
                out.problems.append(f"record {rid}: payload is not valid JSON (the record was edited after it was "
                                    "written).")
                continue
            if _record_hash(prev_hash, created, kind, payload) != digest:
                out.problems.append(f"record {rid}: hash does not match its content (the record was edited after "
                                    "it was written).")
            out.problems.extend(_follow_files(rid, payload, seen))
        last = rows[-1][0] if rows else 0
        if seq and seq[0] > last:
            out.problems.append(f"records {last + 1}..{seq[0]} were deleted (the ledger once held record {seq[0]}).")
        for path, (recorded, rid, role) in seen.items():
            where = f"[record {rid}, {role}]"
            try:
                now = file_sha256(path) if os.path.isfile(path) else None
            except OSError as e:
                out.problems.append(f"{path}: unreadable ({e}) {where}")
                continue
            if now is None:
                out.problems.append(f"{path}: missing {where}")
            elif now != recorded:
                out.problems.append(f"{path}: sha256 changed (recorded {recorded[:12]}..., now {now[:12]}...) {where}")
        out.files = len(seen)
        out.head = rows[-1][5] if rows else None
        return out

    def verify(self) -> builtins.list[str]:
        """Every problem found, one line each; an empty list means all good.

        (a) The hash chain: a record edited or deleted is named by id. (b) The files the records name, each
        checked against the latest record naming it (a file rewritten by a later recorded run is not a problem):
        ``"<path>: sha256 changed (recorded ..., now ...)"`` or ``"<path>: missing"``; and a file a run read
        (``"input": true``) that differs from what the run before recorded, i.e. it changed unrecorded in between.

        Example:
            >>> Ledger().verify()
            ['/runs/m.safetensors: sha256 changed (recorded 3f2a..., now 9c01...) [record 2, model]']
        """
        return self.audit().problems


def _follow_files(rid: int, payload: Any, seen: dict[str, tuple[str, int, str]]) -> list[str]:
    """Update ``seen`` with the files one record names (``payload["files"]``); problems with them."""
    files = payload.get("files") if isinstance(payload, dict) else None
    if files is None:
        return []
    if not isinstance(files, dict):
        return [f"record {rid}: payload 'files' is not a dict of role -> {{'path', 'sha256'}}."]
    problems = []
    for role, entry in files.items():
        if not (isinstance(entry, dict) and isinstance(entry.get("path"), str)
                and isinstance(entry.get("sha256"), str)):
            problems.append(f"record {rid}: files[{role!r}] is not {{'path': str, 'sha256': str}}.")
            continue
        path, sha = entry["path"], entry["sha256"]
        if entry.get("input") and path in seen and seen[path][0] != sha:
            before, rid0, role0 = seen[path]
            problems.append(f"{path}: changed after record {rid0} ({role0}) and before record {rid} read it as "
                            f"{role} (recorded {before[:12]}..., read {sha[:12]}...)")
        seen[path] = (sha, rid, str(role))
    return problems


def indices_digest(indices: Iterable[int] | np.ndarray | torch.Tensor) -> dict[str, Any]:
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


def _model_files(path: PathLike, argument: str) -> dict[str, str]:
    weights, sidecar = model_paths(path)
    for p in (weights, sidecar):
        if not p.is_file():
            raise NotAModelError(f"{argument}: {p} not found; a netfix model is NAME.safetensors + NAME.json. Fix: "
                                 "pass the path netfix.save wrote.")
    return {"path": str(weights.resolve()), "sha256": file_sha256(weights),
            "sidecar_path": str(sidecar.resolve()), "sidecar_sha256": file_sha256(sidecar)}


def certificate(original_path: PathLike, new_path: PathLike, forget_indices: Iterable[int] | np.ndarray | torch.Tensor,
                method: str, config: Mapping[str, Any], metrics: Mapping[str, Any],
                reference_metrics: Mapping[str, Any] | None = None, bound: Any = None,
                seconds: float | None = None) -> dict[str, Any]:
    """A forgetting certificate: a JSON-ready dict naming exactly what was forgotten, from which model, into which.

    ``original_path`` / ``new_path``: the models as saved by :func:`netfix.save` (NAME, NAME.safetensors or
    NAME.json). ``metrics``: the new model's (e.g. ``netfix.evaluate``); ``reference_metrics``: the retrained
    reference's, where one was measured; ``bound``: what the method guarantees (e.g. mixed-linear's
    ``distance_bound`` / ``kl_bound``), else ``None``.

    Example:
        >>> cert = certificate("runs/m", "runs/m-ogd", s.forget_indices, "ogd", out.config, m, seconds=out.seconds)
        >>> write_certificate(cert, "runs/m-ogd.certificate.json")
    """
    from . import __version__

    if not isinstance(method, str) or not method:
        raise ConfigError(f"method: expected the repair method's name, e.g. 'ogd'; got {method!r}.")
    cert = {
        "format": CERTIFICATE_FORMAT,
        "format_version": CERTIFICATE_VERSION,
        "created": _now(),
        "original": _model_files(original_path, "original_path"),
        "new": _model_files(new_path, "new_path"),
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
    return cert


def write_certificate(cert: Mapping[str, Any], path: PathLike) -> Path:
    """Write ``cert`` as indented JSON, atomically; returns the path.

    Example:
        >>> write_certificate(cert, "runs/m-ogd.certificate.json")
        PosixPath('runs/m-ogd.certificate.json')
    """
    text = json.dumps(_jsonable(dict(cert), "cert"), indent=2, sort_keys=True) + "\n"
    path = Path(path)
    atomic_write(path, text.encode())
    return path


def _not_rank_zero() -> bool:
    dist = torch.distributed
    return bool(dist.is_available() and dist.is_initialized() and dist.get_rank() != 0)


def record_run(kind: str, *, files: Mapping[str, PathLike], inputs: Mapping[str, PathLike] | None = None,
               ledger: "Ledger | PathLike | None" = None, **payload: Any) -> int | None:
    """Hash ``files`` (role -> path of a file the run wrote) and ``inputs`` (role -> path of a file it read), and
    append a ``kind`` record holding them (``payload["files"]``) and ``payload``; returns its id.

    ``ledger``: a :class:`Ledger`, a path, or ``None`` for the default ledger. Under ``torch.distributed`` only
    rank 0 writes; other ranks return ``None``.

    Example:
        >>> record_run("unlearn", files={"model": "runs/m-ogd.safetensors"}, inputs={"source": "runs/m.safetensors"},
        ...            method="ogd", metrics={"forget_acc": 0.0})
        2
    """
    if _not_rank_zero():
        return None
    if kind not in KINDS:
        raise unknown("kind", kind, KINDS, "kind")
    if "files" in payload:
        raise ConfigError("payload: 'files' is reserved for the files= argument. Fix: pass the model files there.")
    clash = sorted(set(files) & set(inputs or {}))
    if clash:
        raise ConfigError(f"inputs: roles {clash} are also in files; expected distinct roles, e.g. 'model' for the "
                          "file written and 'source' for the file read.")
    entries: dict[str, dict[str, Any]] = {}
    for argument, group in (("files", files), ("inputs", inputs or {})):
        for role, p in group.items():
            path = Path(p)
            if not path.is_file():
                raise ConfigError(f"{argument}[{role!r}]: {path} not found; only files that exist can be recorded. "
                                  "Fix: save the model before recording the run.")
            entries[str(role)] = {"path": str(path.resolve()), "sha256": file_sha256(path),
                                  **({"input": True} if argument == "inputs" else {})}
    own = not isinstance(ledger, Ledger)
    led = Ledger(ledger) if not isinstance(ledger, Ledger) else ledger
    try:
        return led.append(kind, {**payload, "files": entries})
    finally:
        if own:
            led.close()
