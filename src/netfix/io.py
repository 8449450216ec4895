"""Model files: ``NAME.safetensors`` (weights and buffers) + ``NAME.json`` (how to rebuild the architecture).

Nothing is ever unpickled: weights are safetensors, metadata is JSON, and the architecture is rebuilt either from
netfix's own registry (``netfix.models.build``) or from a user factory named ``package.module:function`` in the
sidecar. Files are written atomically (temporary file in the same folder, fsync, rename), and the sidecar keeps
the sha256 of the weights, which :func:`load` checks.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import tempfile
import uuid
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save
from torch import nn

from . import __version__
from ._runtime import check_model, resolve_device
from .errors import ConfigError, NotAModelError

__all__ = ["save", "load", "read_meta", "atomic_write", "atomic_write_many", "file_sha256", "model_paths"]

FORMAT = "netfix-model"
FORMAT_VERSION = 1


def model_paths(path: "str | os.PathLike[str]") -> tuple[Path, Path]:
    """``(weights, sidecar)`` for ``dir/name``, ``dir/name.safetensors`` or ``dir/name.json``."""
    p = Path(path)
    if p.suffix in (".safetensors", ".json"):
        p = p.with_suffix("")
    return p.with_name(p.name + ".safetensors"), p.with_name(p.name + ".json")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _temp_file(path: Path, data: bytes) -> str:
    """``data`` in a fsynced temporary file beside ``path``; returns its name."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
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


def atomic_write(path: "str | os.PathLike[str]", data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the new one, never a partial one."""
    atomic_write_many({Path(path): data})


def atomic_write_many(files: "dict[Path, bytes]") -> None:
    """Replace several files together: all are written to temporary files first, then renamed in turn; if a
    rename fails, the files already replaced are rolled back to their old content (kept as hard links).

    Under torchrun only rank 0 writes (:func:`netfix.distributed.is_main`): every rank holds the same weights and
    numbers, and N processes renaming onto one path would race."""
    from .distributed import is_main

    if not is_main():
        return
    temps: dict[Path, str] = {}
    backups: dict[Path, str | None] = {}  # old content of each file before its rename (None: it did not exist)
    replaced: list[Path] = []
    kept: set[str] = set()  # backups whose restore failed: never delete the only old copy
    try:
        for path, data in files.items():
            temps[path] = _temp_file(path, data)
        for path, tmp in temps.items():
            backups[path] = None
            if path.exists():
                backups[path] = str(path.with_name(f".{path.name}.{uuid.uuid4().hex}.bak"))
                os.link(path, backups[path])  # type: ignore[arg-type]
            os.replace(tmp, path)
            replaced.append(path)
    except BaseException:
        for path in reversed(replaced):
            backup = backups[path]
            try:
                if backup is not None:
                    os.replace(backup, path)  # the old content again
                else:
                    path.unlink()  # it did not exist before
            except OSError:
                if backup is not None:
                    kept.add(backup)  # keep the original error, and the old content beside the file
        raise
    finally:
        for tmp in temps.values():
            if os.path.exists(tmp):
                os.unlink(tmp)
        for backup in backups.values():
            if backup is not None and backup not in kept and os.path.exists(backup):
                os.unlink(backup)


def file_sha256(path: "str | os.PathLike[str]") -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _architecture(model: nn.Module, meta: dict[str, Any]) -> dict[str, Any]:
    if "factory" in meta:
        factory = meta["factory"]
        if not isinstance(factory, str) or factory.count(":") != 1:
            raise ConfigError(f"meta['factory']: expected 'package.module:function'; got {factory!r}.")
        kwargs = meta.get("factory_kwargs", {})
        try:
            json.dumps(kwargs)
        except TypeError:
            raise ConfigError("meta['factory_kwargs']: must be JSON-serialisable (numbers, strings, lists, "
                              "dicts).") from None
        return {"factory": factory, "kwargs": kwargs}
    spec = getattr(model, "netfix_spec", None)
    if spec is None:
        raise ConfigError("model: netfix cannot tell how to rebuild this architecture. Fix: build it with "
                          "netfix.models.build(...), or pass meta={'factory': 'package.module:function', "
                          "'factory_kwargs': {...}} naming a function that returns the untrained model.")
    return {"name": spec["name"], "kwargs": spec["kwargs"]}


def save(model: nn.Module, path: "str | os.PathLike[str]", meta: dict[str, Any] | None = None) -> Path:
    """Save ``model`` as ``path.safetensors`` + ``path.json``; returns the weights' path.

    ``meta`` may hold ``factory`` / ``factory_kwargs`` (for user architectures), ``input_shape``,
    ``num_classes``, ``data_fingerprint`` and any other JSON-serialisable fields (kept under ``"meta"``).

    Example:
        >>> netfix.save(out.model, "runs/demo/original", {"data_fingerprint": train.fingerprint()})
        PosixPath('runs/demo/original.safetensors')
    """
    check_model(model)
    meta = dict(meta or {})
    arch = _architecture(model, meta)
    spec = getattr(model, "netfix_spec", None) or {}
    weights, sidecar = model_paths(path)
    state = {k: v.detach().to("cpu").contiguous().clone() for k, v in model.state_dict().items()}
    blob = st_save(state, metadata={"format": FORMAT})
    side = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "architecture": arch,
        "input_shape": meta.pop("input_shape", spec.get("input_shape")),
        "num_classes": meta.pop("num_classes", spec.get("num_classes")),
        "data_fingerprint": meta.pop("data_fingerprint", None),
        "recipe": getattr(model, "netfix_recipe", None),
        "editor": getattr(model, "netfix_editor", None),  # what Editable Training learned (netfix.edit uses it)
        "weights_file": weights.name,
        "weights_sha256": hashlib.sha256(blob).hexdigest(),
        "netfix_version": __version__,
        "torch_version": torch.__version__,
        "meta": {k: v for k, v in meta.items() if k not in ("factory", "factory_kwargs")},
    }
    try:
        text = json.dumps(side, indent=2, sort_keys=True)
    except TypeError as e:
        raise ConfigError(f"meta: every value must be JSON-serialisable ({e}).") from None
    atomic_write_many({weights: blob, sidecar: text.encode()})
    return weights


def read_meta(path: "str | os.PathLike[str]") -> dict[str, Any]:
    """The sidecar of a saved model, checked to be a netfix model file."""
    weights, sidecar = model_paths(path)
    if not sidecar.is_file():
        raise NotAModelError(f"path: {sidecar} not found; a netfix model is NAME.safetensors + NAME.json. "
                             f"Fix: pass the path netfix.save wrote (with or without the extension).")
    try:
        side = json.loads(sidecar.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise NotAModelError(f"path: {sidecar} is not valid JSON ({e}); it is not a netfix model sidecar.") from None
    if not isinstance(side, dict) or side.get("format") != FORMAT:
        raise NotAModelError(f"path: {sidecar} is not a netfix model sidecar (no \"format\": \"{FORMAT}\").")
    if side.get("format_version", 0) > FORMAT_VERSION:
        raise NotAModelError(f"path: {sidecar} has format version {side['format_version']}, newer than this "
                             f"netfix reads ({FORMAT_VERSION}). Fix: upgrade netfix.")
    return side


def _rebuild(side: dict[str, Any], sidecar: Path) -> nn.Module:
    from .models import build

    arch = side.get("architecture") or {}
    if "name" in arch:
        model = build(arch["name"], side["input_shape"], side["num_classes"], **arch.get("kwargs", {}))
    elif "factory" in arch:
        module_name, _, fn_name = arch["factory"].partition(":")
        try:
            fn = getattr(importlib.import_module(module_name), fn_name)
        except (ImportError, AttributeError) as e:
            raise NotAModelError(f"path: {sidecar} names the factory {arch['factory']!r}, which cannot be imported "
                                 f"({e}). Fix: install the package that defines it, or put it on PYTHONPATH.") from None
        model = fn(**arch.get("kwargs", {}))
        if not isinstance(model, nn.Module):
            raise NotAModelError(f"path: factory {arch['factory']!r} returned {type(model).__name__}, not an "
                                 "nn.Module.")
    else:
        raise NotAModelError(f"path: {sidecar} names no architecture (expected 'name' or 'factory').")
    return model


def load(path: "str | os.PathLike[str]", device: "torch.device | str | None" = "cpu") -> nn.Module:
    """Load a model saved by :func:`save`: rebuild the architecture, check the weights' sha256, load them.

    Example:
        >>> model = netfix.load("runs/demo/original")
    """
    side = read_meta(path)
    weights, sidecar = model_paths(path)
    if not weights.is_file():
        raise NotAModelError(f"path: {weights} not found next to its sidecar {sidecar.name}.")
    blob = weights.read_bytes()
    digest = hashlib.sha256(blob).hexdigest()
    if side.get("weights_sha256") and digest != side["weights_sha256"]:
        raise NotAModelError(f"path: {weights} does not match its sidecar (sha256 {digest[:12]}... != "
                             f"{side['weights_sha256'][:12]}...): the weights changed after saving or are corrupt.")
    try:
        state = st_load(blob)
    except (SafetensorError, ValueError, OSError) as e:
        raise NotAModelError(f"path: {weights} is not a safetensors file ({e}).") from None
    model = _rebuild(side, sidecar)
    try:
        result = model.load_state_dict(state, strict=False)
    except RuntimeError as e:  # size mismatches
        raise NotAModelError(f"path: the weights in {weights} do not fit the architecture ({e}).") from None
    if result.missing_keys or result.unexpected_keys:
        raise NotAModelError(f"path: the weights in {weights} do not fit the architecture "
                             f"(missing: {result.missing_keys[:5]}, unexpected: {result.unexpected_keys[:5]}).")
    if side.get("recipe"):
        model.netfix_recipe = side["recipe"]  # type: ignore[assignment]
    if side.get("editor"):
        model.netfix_editor = side["editor"]  # type: ignore[assignment]
    model.eval()
    return model.to(resolve_device(device))
