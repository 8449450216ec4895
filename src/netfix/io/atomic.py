"""Atomic file writes: a fsynced temporary file beside the target, then one rename, so readers see the old file or
the new one, never a partial one. Concurrent writers to one path never fail (the last rename wins), and temporary
files left by killed writers are removed by the next write to the same path. Also: staged writes (write now,
rename later, e.g. under a ledger's lock) and files' sha256.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import time
from pathlib import Path

__all__ = ["atomic_write", "stage", "replace_staged", "clean_stale", "file_sha256"]

_STALE_SECONDS = 24 * 3600      # a temporary file whose writer may still live is removed only after this


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _temp_prefix(path: Path) -> str:
    return f".{path.name}."


def _temp_file(path: Path, data: bytes) -> str:
    """``data`` in a fsynced temporary file beside ``path``, named after this process; returns its name."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f"{_temp_prefix(path)}{os.getpid()}.", suffix=".tmp", dir=path.parent)
    try:
        # mkstemp makes 0600 files; give the file the mode it replaces, else what the umask allows
        os.chmod(tmp, path.stat().st_mode & 0o777 if path.exists() else 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        os.unlink(tmp)
        raise
    return tmp


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True


def clean_stale(path: "str | os.PathLike[str]") -> list[Path]:
    """Remove temporary files beside ``path`` left by writers that were killed: those of a process that no longer
    runs, and any older than a day. Returns what was removed."""
    path = Path(path)
    removed: list[Path] = []
    prefix = _temp_prefix(path)
    try:
        entries = list(path.parent.iterdir())
    except OSError:
        return removed
    now = time.time()
    for p in entries:
        if not p.name.startswith(prefix) or not p.name.endswith((".tmp", ".bak")):
            continue
        rest = p.name[len(prefix):]
        pid_text = rest.split(".", 1)[0]
        try:
            age = now - p.stat().st_mtime
        except OSError:
            continue
        if pid_text.isdigit():
            pid = int(pid_text)
            stale = pid != os.getpid() and not _alive(pid) or age > _STALE_SECONDS
        else:  # a name from an older netfix, which wrote no pid: wait a minute for a writer that may still run
            stale = age > 60
        if stale:
            try:
                p.unlink()
                removed.append(p)
            except OSError:
                pass
    return removed


def stage(path: "str | os.PathLike[str]", data: bytes) -> str:
    """Write ``data`` to a fsynced temporary file beside ``path`` (to be renamed onto it); returns its name."""
    return _temp_file(Path(path), data)


def replace_staged(tmp: str, path: "str | os.PathLike[str]") -> None:
    """Rename a staged file (:func:`stage`) onto ``path`` (one atomic step) and make the rename durable."""
    os.replace(tmp, path)
    _fsync_dir(Path(path).parent)


def atomic_write(path: "str | os.PathLike[str]", data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the new one, never a partial one.

    Under torchrun only rank 0 writes (:func:`netfix.distributed.is_main`): every rank holds the same result, and N
    processes renaming onto one path would race."""
    from ..distributed import is_main

    if not is_main():
        return
    path = Path(path)
    tmp = _temp_file(path, data)
    try:
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)
    clean_stale(path)


def file_sha256(path: "str | os.PathLike[str]") -> str:
    """The sha256 (hex) of the file at ``path``, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
