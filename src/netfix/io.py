"""Model files: one ``NAME.safetensors`` holding the weights and buffers *and* netfix's metadata (JSON in the
safetensors header's ``__metadata__``), so one rename publishes a model and a reader never sees a mismatched pair.

Loading trusts nothing the file says:

- **No code runs because a file names it.** The file names an architecture *registered in code*
  (:func:`netfix.models.register`, the ``netfix.architectures`` entry-point group, or netfix's own); or the caller
  passes the module to fill (``load(path, model=my_module)``). Files of the old two-file format that name a
  ``module:function`` factory load only with ``trust_factory=True`` in code. Nothing is unpickled.
- **Nothing large is allocated before it is checked.** The header is read and bounded first (its size, every
  tensor's dtype, shape and offsets within the file); the architecture is built on PyTorch's ``meta`` device and
  its tensors compared with the header's names and shapes before the real model is allocated, so a small file
  cannot ask for a huge model.
- **The weights are checked.** The header records the sha256 of the tensor data; a file without it, or whose data
  does not match it, is refused.

Writes are atomic (a fsynced temporary file beside the target, then one rename), concurrent writers to one path
never fail (the last rename wins), and temporary files left by killed writers are removed by the next write to the
same path. The old format (``NAME.safetensors`` + ``NAME.json`` sidecar) is still read, with the same refusals.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save
from torch import nn

from . import card
from ._runtime import check_model, resolve_device
from ._version import __version__
from .errors import ConfigError, NotAModelError, UnknownNameError, UnsafeFileError

__all__ = ["save", "load", "read_meta", "read_model", "file_ref", "serialize", "publish", "atomic_write",
           "stage", "replace_staged", "file_sha256", "model_file", "clean_stale", "LoadedModel", "Serialized"]

FORMAT = "netfix-model"
FORMAT_VERSION = 2
_MAX_HEADER = 64 << 20          # bytes of safetensors header (JSON) netfix reads at most
_MAX_SIDECAR = 16 << 20         # bytes of a legacy JSON sidecar
_DTYPES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1,
           "U16": 2, "U32": 4, "U64": 8, "F8_E4M3": 1, "F8_E5M2": 1}
_STALE_SECONDS = 24 * 3600      # a temporary file whose writer may still live is removed only after this


# ---------------------------------------------------------------------------------------------------------------
# paths and atomic writes
# ---------------------------------------------------------------------------------------------------------------

def model_file(path: "str | os.PathLike[str]") -> Path:
    """The model file for ``dir/name``, ``dir/name.safetensors`` or ``dir/name.json`` (an old sidecar)."""
    p = Path(path)
    if p.suffix in (".safetensors", ".json"):
        p = p.with_suffix("")
    return p.with_name(p.name + ".safetensors")


def _sidecar(path: "str | os.PathLike[str]") -> Path:
    """The old format's JSON sidecar beside a model file."""
    return model_file(path).with_suffix(".json")


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
    from .distributed import is_main

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
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# ---------------------------------------------------------------------------------------------------------------
# writing
# ---------------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Serialized:
    """A model as the bytes of its file: ``data`` (the whole file), its ``sha256``, and ``weights_sha256`` (of the
    tensor data alone: equal for equal weights, whatever the metadata)."""

    data: bytes
    sha256: str
    weights_sha256: str
    meta: dict[str, Any]

    def ref(self, path: "str | os.PathLike[str]") -> dict[str, str]:
        """``{"path", "sha256", "weights_sha256"}`` of these bytes once written to ``path``'s model file."""
        return {"path": str(model_file(path).resolve()), "sha256": self.sha256, "weights_sha256": self.weights_sha256}


def _architecture(model: nn.Module, meta: dict[str, Any]) -> dict[str, Any]:
    if "factory" in meta or "factory_kwargs" in meta:
        raise ConfigError("meta['factory']: netfix no longer writes files that name code to run (whoever loads the "
                          "file would run it). Fix: register the architecture in your program, "
                          "netfix.models.register('my-net', factory), build the model with "
                          "netfix.models.build('my-net', input_shape, num_classes, **kwargs) and save that; or save "
                          "without it and load with netfix.load(path, model=MyNet(...)).")
    arch = meta.pop("architecture", None)
    if arch is not None:
        if not (isinstance(arch, dict) and isinstance(arch.get("name"), str)):
            raise ConfigError(f"meta['architecture']: expected {{'name': a registered architecture, 'kwargs': "
                              f"{{...}}}}; got {arch!r}.")
        return {"name": arch["name"], "kwargs": dict(arch.get("kwargs") or {})}
    spec = card.of(model).architecture
    if spec is not None and "name" in spec:
        return {"name": spec["name"], "kwargs": spec.get("kwargs") or {}}
    from .models import hf

    described = hf.describe(model)  # a Hugging Face classifier: rebuilt from its config, which is data
    if described is not None:
        return described
    # an unregistered user module: its class is recorded for people to read; loading needs model=
    cls = type(model)
    return {"class": f"{cls.__module__}.{cls.__qualname__}"}


def serialize(model: nn.Module, meta: dict[str, Any] | None = None) -> Serialized:
    """The bytes of ``model``'s file (see :func:`save`), without writing anything."""
    check_model(model)
    meta = dict(meta or {})
    arch = _architecture(model, meta)
    info = card.of(model)
    if arch.get("name") == "transformers" and (info.input_shape is None or info.num_classes is None):
        from .models import hf

        shape, k = hf.shape_and_classes(model)
        info = replace(info, input_shape=info.input_shape or shape, num_classes=info.num_classes or k)
    state = {k: v.detach().to("cpu").contiguous().clone() for k, v in model.state_dict().items()}
    data_info = dict(info.data or {})
    if "dataset" in meta:
        data_info["name"] = meta.pop("dataset")
    if "data_fingerprint" in meta:
        data_info["fingerprint"] = meta.pop("data_fingerprint")
    side = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "architecture": arch,
        "input_shape": meta.pop("input_shape", info.input_shape),
        "num_classes": meta.pop("num_classes", info.num_classes),
        "data": data_info or None,
        "recipe": info.recipe,
        "editor": info.editor,  # what Editable Training learned (netfix.edit uses it)
        "io": info.io,          # how to call the model (its input keyword, where its logits are)
        "edits": info.edits,    # the edits it holds (netfix.edits): their log; the codebook is in the tensors
        "netfix_version": __version__,
        "torch_version": torch.__version__,
        "meta": meta,
    }
    base = {"format": FORMAT, "format_version": str(FORMAT_VERSION)}
    first = st_save(state, metadata=base)  # the tensor data does not depend on the metadata: hash it once
    n = int.from_bytes(first[:8], "little")
    weights_sha = hashlib.sha256(first[8 + n:]).hexdigest()
    side["weights_sha256"] = weights_sha
    try:
        text = json.dumps(side, sort_keys=True, allow_nan=False)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"meta: every value must be JSON-serialisable, finite numbers included ({e}).") from None
    blob = st_save(state, metadata={**base, "netfix": text})
    return Serialized(blob, hashlib.sha256(blob).hexdigest(), weights_sha, side)


def publish(path: "str | os.PathLike[str]", serialized: Serialized) -> Path:
    """Write a serialized model (:func:`serialize`) to ``path`` atomically; returns the file's path."""
    target = model_file(path)
    atomic_write(target, serialized.data)
    return target


def save(model: nn.Module, path: "str | os.PathLike[str]", meta: dict[str, Any] | None = None) -> Path:
    """Save ``model`` as one file, ``path.safetensors`` (weights, buffers and metadata); returns its path.

    ``meta`` may hold ``architecture`` (``{"name": a registered architecture, "kwargs": {...}}``, for a model you
    built yourself), ``input_shape``, ``num_classes``, ``dataset`` (the data's name), ``data_fingerprint`` and any
    other JSON-serialisable fields (kept under ``"meta"``). A model of an unregistered class is saved too; it is
    loaded with ``netfix.load(path, model=MyNet(...))``.

    Example:
        >>> netfix.save(out.model, "runs/demo/original", {"dataset": "mnist5k"})
        PosixPath('runs/demo/original.safetensors')
    """
    return publish(path, serialize(model, meta))


# ---------------------------------------------------------------------------------------------------------------
# reading: header first, bounded, then the architecture on the meta device, then the weights
# ---------------------------------------------------------------------------------------------------------------

@dataclass
class LoadedModel:
    """A loaded model with what was read: ``path``, the file's ``sha256`` *as read* (for ledgers and
    certificates), ``weights_sha256`` and the metadata."""

    model: nn.Module
    path: Path
    sha256: str
    weights_sha256: str
    meta: dict[str, Any]

    @property
    def ref(self) -> dict[str, str]:
        """``{"path", "sha256", "weights_sha256"}``: the file as it was read, for ledgers and certificates."""
        return {"path": str(self.path.resolve()), "sha256": self.sha256, "weights_sha256": self.weights_sha256}


def _refuse(path: Path, why: str) -> NotAModelError:
    return NotAModelError(f"path: {path} is not a netfix model file ({why}).")


def _read_header(path: Path, blob: bytes) -> tuple[dict[str, Any], int]:
    """The safetensors header of ``blob`` (checked: size, dtypes, shapes, offsets inside the file) and where the
    tensor data starts."""
    if len(blob) < 8:
        raise _refuse(path, f"{len(blob)} bytes, too short for safetensors")
    n = int.from_bytes(blob[:8], "little")
    if n < 2 or n > min(_MAX_HEADER, len(blob) - 8):
        raise _refuse(path, f"its header claims {n} bytes in a {len(blob)}-byte file")
    try:
        header = json.loads(blob[8:8 + n])
    except (UnicodeDecodeError, ValueError):
        raise _refuse(path, "its header is not JSON") from None
    if not isinstance(header, dict):
        raise _refuse(path, "its header is not a JSON object")
    data_len = len(blob) - 8 - n
    for name, entry in header.items():
        if name == "__metadata__":
            if not isinstance(entry, dict) or not all(isinstance(v, str) for v in entry.values()):
                raise _refuse(path, "__metadata__ is not a map of strings")
            continue
        if not isinstance(entry, dict):
            raise _refuse(path, f"tensor {name!r} has no description")
        dtype, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
        if dtype not in _DTYPES or not isinstance(shape, list) or not all(
                isinstance(s, int) and not isinstance(s, bool) and 0 <= s < 1 << 40 for s in shape):
            raise _refuse(path, f"tensor {name!r} has dtype {dtype!r} and shape {shape!r}")
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(isinstance(o, int) for o in offsets)
                and 0 <= offsets[0] <= offsets[1] <= data_len):
            raise _refuse(path, f"tensor {name!r} lies outside the file ({offsets!r}, {data_len} data bytes)")
        numel = 1
        for s in shape:
            numel *= s
        if numel * _DTYPES[dtype] != offsets[1] - offsets[0]:
            raise _refuse(path, f"tensor {name!r}: shape {shape} of {dtype} does not fill {offsets}")
    return header, 8 + n


def _bounded_json(value: Any, where: str, path: Path, depth: int = 0) -> None:
    """Architecture arguments are data: JSON scalars, short lists, small dicts, moderate numbers."""
    if depth > 8:
        raise UnsafeFileError(f"path: {path}: {where} nests deeper than 8 levels.")
    if isinstance(value, bool) or value is None:
        return
    if isinstance(value, (int, float)):
        if not abs(value) <= 1 << 24:
            raise UnsafeFileError(f"path: {path}: {where} = {value!r} is beyond any sane architecture size "
                                  f"(|value| <= {1 << 24}); the file is corrupt or crafted.")
        return
    if isinstance(value, str):
        if len(value) > 10_000:
            raise UnsafeFileError(f"path: {path}: {where} is a string of {len(value)} characters.")
        return
    if isinstance(value, list):
        if len(value) > 4096:
            raise UnsafeFileError(f"path: {path}: {where} is a list of {len(value)} entries.")
        for i, v in enumerate(value):
            _bounded_json(v, f"{where}[{i}]", path, depth + 1)
        return
    if isinstance(value, dict):
        if len(value) > 1024:
            raise UnsafeFileError(f"path: {path}: {where} has {len(value)} keys.")
        for k, v in value.items():
            _bounded_json(v, f"{where}.{k}", path, depth + 1)
        return
    raise UnsafeFileError(f"path: {path}: {where} holds a {type(value).__name__}.")


def _check_side(side: Any, path: Path) -> dict[str, Any]:
    """The metadata, checked: a netfix model of a format this netfix reads, with bounded numbers."""
    if not isinstance(side, dict) or side.get("format") != FORMAT:
        raise _refuse(path, f"no \"format\": \"{FORMAT}\" in its metadata")
    version = side.get("format_version", 0)
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise NotAModelError(f"path: {path} has format version {version!r}, newer than this netfix reads "
                             f"({FORMAT_VERSION}). Fix: upgrade netfix.")
    shape = side.get("input_shape")
    if shape is not None and not (isinstance(shape, list) and 1 <= len(shape) <= 8 and all(
            isinstance(s, int) and not isinstance(s, bool) and 1 <= s <= 1 << 16 for s in shape)):
        raise UnsafeFileError(f"path: {path}: input_shape {shape!r} is not a list of 1-8 sizes in [1, 65536].")
    k = side.get("num_classes")
    if k is not None and not (isinstance(k, int) and not isinstance(k, bool) and 2 <= k <= 1_000_000):
        raise UnsafeFileError(f"path: {path}: num_classes {k!r} is not a class count in [2, 1000000].")
    arch = side.get("architecture")
    if not isinstance(arch, dict):
        raise _refuse(path, "it names no architecture")
    _bounded_json(arch, "architecture", path)
    return side


def _metadata(path: Path, header: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """The netfix metadata: from the file's own header, else (the old format) from its JSON sidecar. The flag says
    whether it came from the old sidecar."""
    own = header.get("__metadata__") or {}
    if "netfix" in own:
        try:
            side = json.loads(own["netfix"])
        except ValueError:
            raise _refuse(path, "its netfix metadata is not JSON") from None
        return _check_side(side, path), False
    side_path = _sidecar(path)
    if own.get("format") != FORMAT or not side_path.is_file():
        raise _refuse(path, f"no netfix metadata in its header and no sidecar {side_path.name} beside it")
    if side_path.stat().st_size > _MAX_SIDECAR:
        raise UnsafeFileError(f"path: {side_path} is {side_path.stat().st_size} bytes, too large for a sidecar.")
    try:
        side = json.loads(side_path.read_bytes())
    except (UnicodeDecodeError, ValueError) as e:
        raise NotAModelError(f"path: {side_path} is not valid JSON ({e}); it is not a netfix model sidecar.") from None
    return _check_side(side, side_path), True


def _read(path: "str | os.PathLike[str]") -> tuple[Path, bytes, dict[str, Any], dict[str, Any], int, bool]:
    target = model_file(path)
    if not target.is_file():
        lone = _sidecar(path)
        if lone.is_file():
            raise _refuse(lone, f"there is no {target.name} beside it")
        raise NotAModelError(f"path: {target} not found. Fix: pass the path netfix.save wrote (with or without the "
                             ".safetensors extension).")
    with open(target, "rb") as f:  # one read: hashes and tensors come from the same bytes, whatever renames happen
        blob = f.read()
    header, start = _read_header(target, blob)
    side, legacy = _metadata(target, header)
    return target, blob, header, side, start, legacy


def file_ref(path: "str | os.PathLike[str]") -> dict[str, str]:
    """``{"path", "sha256", "weights_sha256"}`` of a saved model file, read once (nothing is built)."""
    target, blob, header, side, start, legacy = _read(path)
    weights = hashlib.sha256(blob if legacy else memoryview(blob)[start:]).hexdigest()
    return {"path": str(target.resolve()), "sha256": hashlib.sha256(blob).hexdigest(), "weights_sha256": weights}


def read_meta(path: "str | os.PathLike[str]") -> dict[str, Any]:
    """The metadata of a saved model (architecture, input shape, classes, data, recipe, ...), checked to be a
    netfix model file; nothing is built or loaded.

    Example:
        >>> netfix.io.read_meta("runs/original")["data"]["name"]
        'fashion-mnist'
    """
    return _read(path)[3]


def _expected_state(side: dict[str, Any], target: Path, model: nn.Module | None,
                    trust_factory: bool) -> tuple[Any, dict[str, tuple[int, ...]], set[str]]:
    """How to build the model (a callable, or the caller's instance), the state names and shapes it will hold
    (from a build on the meta device: nothing allocated) and the names whose shape may differ from the build's."""
    from .models import architecture

    arch = side["architecture"]
    if model is not None:
        check_model(model, "model")
        instance = model
        return (lambda: copy.deepcopy(instance)), _shapes(instance), _flexible(instance)
    if "factory" in arch:
        if not trust_factory:
            raise UnsafeFileError(f"path: {target} names the factory {arch['factory']!r}: loading it would import and "
                                  "run code the file chose. netfix never does that on a file's say-so. Fix: register "
                                  "the architecture in your program (netfix.models.register) and pass "
                                  "model=netfix.models.build(...), or pass model=YourNet(...); if you wrote this file "
                                  "yourself and trust it, load it in Python with netfix.load(path, "
                                  "trust_factory=True) and save it again.")
        build = _trusted_factory(arch, target)
    elif "name" in arch:
        try:
            own = architecture(arch["name"], "architecture") is None  # netfix's own?
        except UnknownNameError as e:
            raise NotAModelError(f"path: {target} names an architecture this program does not know ({e}). Fix: "
                                 "register it with netfix.models.register(name, factory) (or install the package "
                                 "that provides it), or pass model=YourNet(...).") from None
        if side.get("num_classes") is None or side.get("input_shape") is None and arch["name"] != "transformers":
            raise _refuse(target, "it records no input_shape / num_classes to build its architecture with")
        kwargs = arch.get("kwargs") or {}
        if not isinstance(kwargs, dict):
            raise _refuse(target, f"architecture kwargs {kwargs!r} is not a dict")

        def build() -> nn.Module:
            from .models import build as build_model

            return build_model(arch["name"], side.get("input_shape") or [1], side["num_classes"], **kwargs)
    else:
        cls = arch.get("class", "an unregistered class")
        raise NotAModelError(f"path: {target} holds the weights of {cls!r}, which is not a registered architecture. "
                             "Fix: pass the module to fill, netfix.load(path, model=YourNet(...)), or register the "
                             "architecture with netfix.models.register(name, factory) and save it from a model "
                             "built with netfix.models.build.")
    try:
        with torch.device("meta"):
            probe = build()
        return build, _shapes(probe), _flexible(probe)
    except NotAModelError:
        raise
    except Exception as e:  # noqa: BLE001 - a builder that cannot run on the meta device, or bad kwargs
        from .errors import NetfixError

        if isinstance(e, NetfixError) or "name" in arch and own:
            raise NotAModelError(f"path: {target}: its architecture cannot be built ({type(e).__name__}: {e}).") \
                from None
        return build, {}, set()  # a user factory that needs real tensors: checked after building, below


def _trusted_factory(arch: dict[str, Any], target: Path) -> Any:
    import importlib

    name = arch["factory"]
    if not isinstance(name, str) or name.count(":") != 1:
        raise _refuse(target, f"factory {name!r} is not 'package.module:function'")
    module_name, _, fn_name = name.partition(":")
    try:
        fn = getattr(importlib.import_module(module_name), fn_name)
    except (ImportError, AttributeError) as e:
        raise NotAModelError(f"path: {target} names the factory {name!r}, which cannot be imported ({e}).") from None
    kwargs = arch.get("kwargs", {})

    def build() -> nn.Module:
        made = fn(**kwargs)
        if not isinstance(made, nn.Module):
            raise NotAModelError(f"path: factory {name!r} returned {type(made).__name__}, not an nn.Module.")
        return made
    return build


def _shapes(model: nn.Module) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def _flexible(model: nn.Module) -> set[str]:
    """State entries whose size is data, not architecture: those a fresh build holds empty (e.g. a
    preconditioner whose rank is set by fitting). Their bytes are in the file, so they are bounded by its size."""
    return {k for k, v in model.state_dict().items() if v.numel() == 0}


def _check_tensors(header: dict[str, Any], expected: dict[str, tuple[int, ...]], flexible: set[str],
                   target: Path) -> None:
    held = {k: tuple(v["shape"]) for k, v in header.items() if k != "__metadata__"}
    missing = sorted(set(expected) - set(held))
    extra = sorted(set(held) - set(expected))
    if missing or extra:
        raise NotAModelError(f"path: the weights in {target} do not fit the architecture (missing: {missing[:5]}, "
                             f"unexpected: {extra[:5]}).")
    wrong = [f"{k}: file {held[k]} vs architecture {expected[k]}" for k in expected
             if k not in flexible and held[k] != expected[k]]
    if wrong:
        raise NotAModelError(f"path: the weights in {target} do not fit the architecture ({'; '.join(wrong[:3])}). "
                             "The file is corrupt, or its metadata was changed.")


def read_model(path: "str | os.PathLike[str]", device: "torch.device | str | None" = "cpu", *,
               model: nn.Module | None = None, trust_factory: bool = False,
               allow_unhashed: bool = False) -> LoadedModel:
    """:func:`load`, also returning the file's sha256 as read and its metadata (what a certificate needs)."""
    target, blob, header, side, start, legacy = _read(path)
    build, expected, flexible = _expected_state(side, target, model, trust_factory)
    from . import edits

    shapes = {k: v["shape"] for k, v in header.items() if k != "__metadata__"}
    try:
        memory = edits.expected_state(side.get("edits"), shapes)
    except NotAModelError as e:
        raise _refuse(target, str(e)) from None
    if expected:
        _check_tensors(header, {**{k: v for k, v in expected.items() if not k.startswith(edits.MEMORY + ".")},
                                **memory}, flexible, target)
    # the old format hashed the whole weights file; the new one hashes the tensor data (the header holds the hash)
    weights_sha = hashlib.sha256(blob if legacy else memoryview(blob)[start:]).hexdigest()
    recorded = side.get("weights_sha256")
    if not recorded:
        if not allow_unhashed:
            raise UnsafeFileError(f"path: {target} records no sha256 of its weights, so their integrity cannot be "
                                  "checked. Fix: if you trust the file, load it in Python with netfix.load(path, "
                                  "allow_unhashed=True) and save it again with netfix.save, which records the hash.")
    elif weights_sha != recorded:
        raise NotAModelError(f"path: {target}: its weights do not match the sha256 its metadata records "
                             f"({weights_sha[:12]}... != {str(recorded)[:12]}...): they changed after saving or are "
                             "corrupt.")
    try:
        state = st_load(blob)
    except (SafetensorError, ValueError, OSError) as e:
        raise NotAModelError(f"path: {target} is not a safetensors file ({e}).") from None
    try:
        net = build()
    except NotAModelError:
        raise
    except Exception as e:  # noqa: BLE001 - the caller's factory failing on this file's arguments
        raise NotAModelError(f"path: {target}: its architecture could not be built ({type(e).__name__}: {e}).") \
            from None
    old = edits.memory_of(net)
    if old is not None:  # a caller's module that holds edits itself: the file's record replaces them
        old.detach(net)
        delattr(net, edits.MEMORY)
    try:
        edits.restore(net, side.get("edits"), shapes)
    except NotAModelError as e:
        raise _refuse(target, str(e)) from None
    if not expected:  # the architecture could not be built on the meta device: check it now
        _check_tensors(header, _shapes(net), _flexible(net), target)
    try:
        result = net.load_state_dict(state, strict=False)
    except RuntimeError as e:  # size mismatches
        raise NotAModelError(f"path: the weights in {target} do not fit the architecture ({e}).") from None
    if result.missing_keys or result.unexpected_keys:
        raise NotAModelError(f"path: the weights in {target} do not fit the architecture "
                             f"(missing: {result.missing_keys[:5]}, unexpected: {result.unexpected_keys[:5]}).")
    data = side.get("data")
    if legacy and not data and (side.get("meta") or {}).get("dataset"):
        data = {"name": side["meta"]["dataset"], "fingerprint": side.get("data_fingerprint")}
    arch = side["architecture"] if "name" in side["architecture"] else card.of(net).architecture
    card.update(net, architecture=arch, input_shape=side.get("input_shape"), num_classes=side.get("num_classes"),
                recipe=side.get("recipe"), editor=side.get("editor"), data=data, io=side.get("io"),
                edits=side.get("edits"))
    net.eval()
    return LoadedModel(net.to(resolve_device(device)), target, hashlib.sha256(blob).hexdigest(), weights_sha, side)


def load(path: "str | os.PathLike[str]", device: "torch.device | str | None" = "cpu", *,
         model: nn.Module | None = None, trust_factory: bool = False, allow_unhashed: bool = False) -> nn.Module:
    """Load a model saved by :func:`save`, checking everything before trusting it (see the module docstring).

    ``model``: the module to fill (a copy of it is returned, the caller's is untouched) — for an architecture that
    is not registered. ``trust_factory``: load an old file that names a ``module:function`` factory, importing and
    calling it — only for files you wrote. ``allow_unhashed``: accept an old file without a weights hash.

    Example:
        >>> model = netfix.load("runs/demo/original")
        >>> mine = netfix.load("runs/mine", model=MyNet())
    """
    return read_model(path, device, model=model, trust_factory=trust_factory, allow_unhashed=allow_unhashed).model


def weights_sha256(model: nn.Module) -> str:
    """sha256 of ``model``'s tensor data as :func:`save` would write it (equal weights, equal hash)."""
    state = {k: v.detach().to("cpu").contiguous().clone() for k, v in model.state_dict().items()}
    first = st_save(state, metadata={"format": FORMAT})
    n = int.from_bytes(first[:8], "little")
    return hashlib.sha256(first[8 + n:]).hexdigest()
