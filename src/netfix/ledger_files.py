"""The file half of :meth:`netfix.ledger.Ledger.audit`: following the ledger's records in order, what each file
they name may hold now (:class:`FileStates`), and the files on disk checked against that; a file a run read
(``"input": true``) is checked against what the records before it allowed.
"""

from __future__ import annotations

import os
from typing import Any

from .io.atomic import file_sha256

__all__ = ["FileStates"]


class FileStates:
    """What each recorded file may be now. A committed record (or a commit) fixes a file's content; a pending
    record that never commits adds a possible content (its run may have renamed the file before being killed)."""

    def __init__(self) -> None:
        self.accepted: dict[str, set[str | None]] = {}    # path -> contents it may have now (None: absent)
        self.latest: dict[str, tuple[str, int, str]] = {}  # path -> (sha256, record id, role) last fixed
        self.pending: dict[int, dict[str, Any]] = {}       # pending record id -> its files
        self.loose: dict[str, dict[int, str]] = {}         # path -> {pending id: content} not (yet) committed

    def follow(self, rid: int, payload: Any) -> list[str]:
        """Take in record ``rid``'s payload (a commit's as ``{"_commit": payload}``); returns its problems."""
        if not isinstance(payload, dict):
            return []
        if "_commit" in payload:
            target = payload["_commit"].get("commits")
            files = self.pending.pop(target, None) if isinstance(target, int) else None
            if files is None:
                return [f"record {rid}: commits record {target!r}, which is not a pending record before it."]
            for role, entry in files.items():
                self.loose.get(entry["path"], {}).pop(target, None)
                self._fix(entry["path"], entry["sha256"], target, role)
            return []
        files = payload.get("files")
        if files is None:
            return []
        if not isinstance(files, dict):
            return [f"record {rid}: payload 'files' is not a dict of role -> {{'path', 'sha256'}}."]
        problems, written = [], {}
        for role, entry in files.items():
            if not (isinstance(entry, dict) and isinstance(entry.get("path"), str)
                    and isinstance(entry.get("sha256"), str)):
                problems.append(f"record {rid}: files[{role!r}] is not {{'path': str, 'sha256': str}}.")
                continue
            path, sha = entry["path"], entry["sha256"]
            if entry.get("input"):
                if path in self.accepted and sha not in self._allowed(path):
                    before, rid0, role0 = self.latest.get(path, ("?", "?", "?"))
                    problems.append(f"{path}: changed after record {rid0} ({role0}) and before record {rid} read it "
                                    f"as {role} (recorded {before[:12]}..., read {sha[:12]}...)")
                self._fix(path, sha, rid, role)  # what it was when read
                continue
            written[role] = entry
        if payload.get("status") == "pending":
            self.pending[rid] = written
            for entry in written.values():
                self.loose.setdefault(entry["path"], {})[rid] = entry["sha256"]
                self.accepted.setdefault(entry["path"], {None})
        else:
            for role, entry in written.items():
                self._fix(entry["path"], entry["sha256"], rid, role)
        return problems

    def _allowed(self, path: str) -> set[str | None]:
        return self.accepted.get(path, set()) | set(self.loose.get(path, {}).values())

    def _fix(self, path: str, sha: str, rid: int, role: str) -> None:
        self.accepted[path] = {sha}
        self.latest[path] = (sha, rid, str(role))

    def check(self) -> list[str]:
        """Every file followed, compared with what it may hold now: one line per problem."""
        problems = []
        for path in self.accepted:
            allowed = self._allowed(path)
            where = "[record {}, {}]".format(*self.latest[path][1:]) if path in self.latest else "[pending record]"
            try:
                now = file_sha256(path) if os.path.isfile(path) else None
            except OSError as e:
                problems.append(f"{path}: unreadable ({e}) {where}")
                continue
            if now in allowed:
                continue
            if now is None:
                problems.append(f"{path}: missing {where}")
            else:
                recorded = self.latest.get(path, (next(iter(a for a in allowed if a), "?"),))[0]
                problems.append(f"{path}: sha256 changed (recorded {recorded[:12]}..., now {now[:12]}...) {where}")
        return problems
