"""Proof of what was done to a model: a tamper-evident ledger of runs (certificates: :mod:`netfix.runs`).

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
- *Recording and publishing are one step.* A run that writes files (:func:`netfix.runs.publish_recorded`) first
  commits a *pending* record naming every file it will write and its sha256, then — holding the ledger's write
  lock — renames the files into place and appends a ``commit`` record. A run killed before the renames leaves the
  old files, one killed after them leaves the new ones; either way :meth:`Ledger.verify` accepts what is on disk
  (a pending record that never committed may or may not have been published), so a kill never raises a false
  tamper alarm; and the lock makes the commit records' order the order the files were replaced in.
- *A published head pins the whole chain.* ``netfix ledger head`` prints the newest record's id and hash;
  ``netfix ledger verify --head ID:HASH`` fails unless the chain still holds that record unchanged, which catches
  truncation and wholesale rewrites that a chain alone cannot.
- *Files are named by content.* A payload's ``"files"`` entry, ``{role: {"path": ..., "sha256": ...}}`` (plus
  ``"input": true`` for a file the run read rather than wrote), is what :meth:`Ledger.verify` re-hashes. Each file
  is checked against the *latest* record naming it, so re-running a command onto the same path is not reported
  forever; a file a run read that differs from what the run before recorded is reported (it changed unrecorded).
  These file checks live in :mod:`netfix.ledger_files`.

Example:
    >>> from netfix.ledger import Ledger
    >>> led = Ledger("runs/ledger.sqlite")
    >>> rid = led.append("train", {"method": "train", "metrics": {"test_acc": 97.1}})
    >>> led.verify()
    []
"""

from __future__ import annotations

import builtins
import contextlib
import hashlib
import json
import os
import sqlite3
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Union

import numpy as np
import torch

from .errors import ConfigError, unknown
from .data import indices_digest
from .ledger_files import FileStates

__all__ = ["KINDS", "Ledger", "Audit", "ledger_path", "indices_digest", "parse_head"]

KINDS = ("train", "unlearn", "relearn", "edit", "forget", "commit")
GENESIS = "0" * 64  # the prev_hash of the first record
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
    head_id: int | None = None

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
        body = self._body(kind, payload)
        with self._transaction():
            return self._write(kind, body)

    def begin(self, kind: str, payload: Mapping[str, Any]) -> int:
        """Append a *pending* record (``"status": "pending"``) for files about to be published; returns its id.
        :meth:`committing` publishes them and commits it."""
        return self.append(kind, {**payload, "status": "pending"})

    @contextlib.contextmanager
    def committing(self, pending: int) -> Iterator[None]:
        """Hold the write lock while the block publishes the pending record's files (renames), then append its
        ``commit`` record in the same transaction. If the block fails, nothing is committed."""
        body = self._body("commit", {"commits": int(pending)})
        with self._transaction():
            yield
            self._write("commit", body)

    def _body(self, kind: str, payload: Mapping[str, Any]) -> Any:
        if kind not in KINDS:
            raise unknown("kind", kind, KINDS, "kind")
        if not isinstance(payload, Mapping):
            raise ConfigError(f"payload: expected a dict of JSON-serialisable values; got {type(payload).__name__}.")
        return _jsonable(dict(payload), "payload")

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        try:
            self._conn.execute("BEGIN IMMEDIATE")  # the write lock first, then the last hash: no two heads
        except sqlite3.Error as e:
            raise ConfigError(f"ledger: cannot write {self.path} ({e}). Fix: check that the file is writable and "
                              "not locked by a stuck process, or pass another --ledger path.") from None
        try:
            yield
            self._conn.execute("COMMIT")
        except BaseException as e:
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")
            if isinstance(e, sqlite3.Error):
                raise ConfigError(f"ledger: cannot write {self.path} ({e}); nothing was recorded. Fix: check that the "
                                  "file is writable and the disk not full, or pass another --ledger path.") from None
            raise

    def _write(self, kind: str, payload: Any) -> int:
        """The INSERT, inside a transaction."""
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

    def head(self) -> tuple[int, str] | None:
        """``(id, hash)`` of the newest record (``None`` for an empty ledger): publish it elsewhere, then
        ``verify(head=...)`` proves the chain was neither truncated nor rewritten since.

        Example:
            >>> Ledger().head()
            (12, '3f2a...')
        """
        row = self._conn.execute("SELECT id, hash FROM records ORDER BY id DESC LIMIT 1").fetchone()
        return (int(row[0]), str(row[1])) if row else None

    def audit(self, head: "str | None" = None) -> Audit:
        """Check the hash chain, the files the records name and (``head``: ``"ID:HASH"`` or a bare hash, from
        :meth:`head`) that the chain still holds a published head; see :meth:`verify`."""
        pinned = parse_head(head) if head is not None else None
        self._conn.execute("BEGIN")  # one snapshot: an append running meanwhile is not mistaken for a deletion
        try:
            rows = self._rows()
            seq = self._conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'records'").fetchone()
        finally:
            self._conn.execute("COMMIT")
        out = Audit(records=len(rows))
        payloads = _chain(rows, out.problems)
        last = rows[-1][0] if rows else 0
        if seq and seq[0] > last:
            out.problems.append(f"records {last + 1}..{seq[0]} were deleted (the ledger once held record {seq[0]}).")
        if pinned is not None:
            out.problems.extend(_check_head(rows, pinned))
        files = FileStates()
        for rid, payload in payloads:
            out.problems.extend(files.follow(rid, payload))
        out.problems.extend(files.check())
        out.files = len(files.accepted)
        out.head = rows[-1][5] if rows else None
        out.head_id = rows[-1][0] if rows else None
        return out

    def verify(self, head: "str | None" = None) -> builtins.list[str]:
        """Every problem found, one line each; an empty list means all good.

        (a) The hash chain: a record edited or deleted is named by id; with ``head``, a chain that no longer holds
        that record unchanged. (b) The files the records name, each checked against what the records allow it to
        be now: the latest committed content, or that of a run that was interrupted while publishing
        (``"<path>: sha256 changed (recorded ..., now ...)"`` or ``"<path>: missing"``); and a file a run read
        (``"input": true``) that differs from what the runs before it recorded (it changed unrecorded in between).

        Example:
            >>> Ledger().verify()
            ['/runs/m.safetensors: sha256 changed (recorded 3f2a..., now 9c01...) [record 2, model]']
        """
        return self.audit(head).problems


def parse_head(head: str) -> tuple[int | None, str]:
    """``"ID:HASH"`` or ``"HASH"`` (as ``netfix ledger head`` prints it) as ``(id or None, hash)``."""
    text = str(head).strip()
    rid, sep, digest = text.rpartition(":")
    digest = digest.lower()
    if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest) or (sep and not rid.isdigit()):
        raise ConfigError(f"--head: expected ID:HASH (64 hex digits) as `netfix ledger head` prints it; got {head!r}.")
    return (int(rid) if sep else None), digest


def _check_head(rows: builtins.list[tuple[Any, ...]], pinned: tuple[int | None, str]) -> builtins.list[str]:
    rid, digest = pinned
    for row in rows:
        if row[5] == digest and (rid is None or row[0] == rid):
            return []
    where = f"record {rid} with hash {digest[:12]}..." if rid is not None else f"a record with hash {digest[:12]}..."
    return [f"the ledger no longer holds the published head ({where}): records at or before it were deleted, or "
            "the chain was rewritten."]


def _chain(rows: builtins.list[tuple[Any, ...]], problems: builtins.list[str]) -> builtins.list[tuple[int, Any]]:
    """Check each record's link and hash; returns the parsed payloads in order."""
    out = []
    prev, prev_id = GENESIS, None
    for rid, created, kind, text, prev_hash, digest in rows:
        if prev_hash != prev:
            before = f"record {prev_id}'s hash" if prev_id is not None else "the chain's start"
            problems.append(f"record {rid}: prev_hash does not match {before} (a record before it was deleted or "
                            "rewritten).")
        prev, prev_id = digest, rid
        try:
            payload = json.loads(text)
        except (TypeError, ValueError):
            problems.append(f"record {rid}: payload is not valid JSON (the record was edited after it was written).")
            continue
        if _record_hash(prev_hash, created, kind, payload) != digest:
            problems.append(f"record {rid}: hash does not match its content (the record was edited after it was "
                            "written).")
        out.append((rid, payload if kind != "commit" or not isinstance(payload, dict) else {"_commit": payload}))
    return out
