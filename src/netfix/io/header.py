"""The model file's format and the checks made before anything in it is trusted: the safetensors header bounded
(its size, every tensor's dtype, shape and offsets within the file) and netfix's metadata checked (format,
version, bounded numbers); the old format's JSON sidecar read with the same refusals.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from ..errors import NotAModelError, UnsafeFileError

__all__ = ["FORMAT", "FORMAT_VERSION", "model_file", "refuse", "read_file", "weights_digest", "model_ref"]

FORMAT = "netfix-model"
FORMAT_VERSION = 2
_MAX_HEADER = 64 << 20          # bytes of safetensors header (JSON) netfix reads at most
_MAX_SIDECAR = 16 << 20         # bytes of a legacy JSON sidecar
_DTYPES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1,
           "U16": 2, "U32": 4, "U64": 8, "F8_E4M3": 1, "F8_E5M2": 1}


def model_file(path: "str | os.PathLike[str]") -> Path:
    """The model file for ``dir/name``, ``dir/name.safetensors`` or ``dir/name.json`` (an old sidecar)."""
    p = Path(path)
    if p.suffix in (".safetensors", ".json"):
        p = p.with_suffix("")
    return p.with_name(p.name + ".safetensors")


def _sidecar(path: "str | os.PathLike[str]") -> Path:
    """The old format's JSON sidecar beside a model file."""
    return model_file(path).with_suffix(".json")

def refuse(path: Path, why: str) -> NotAModelError:
    """The error for a file that is not a netfix model, saying why."""
    return NotAModelError(f"path: {path} is not a netfix model file ({why}).")


def _read_header(path: Path, blob: bytes) -> tuple[dict[str, Any], int]:
    """The safetensors header of ``blob`` (checked: size, dtypes, shapes, offsets inside the file) and where the
    tensor data starts."""
    if len(blob) < 8:
        raise refuse(path, f"{len(blob)} bytes, too short for safetensors")
    n = int.from_bytes(blob[:8], "little")
    if n < 2 or n > min(_MAX_HEADER, len(blob) - 8):
        raise refuse(path, f"its header claims {n} bytes in a {len(blob)}-byte file")
    try:
        header = json.loads(blob[8:8 + n])
    except (UnicodeDecodeError, ValueError):
        raise refuse(path, "its header is not JSON") from None
    if not isinstance(header, dict):
        raise refuse(path, "its header is not a JSON object")
    data_len = len(blob) - 8 - n
    for name, entry in header.items():
        if name == "__metadata__":
            if not isinstance(entry, dict) or not all(isinstance(v, str) for v in entry.values()):
                raise refuse(path, "__metadata__ is not a map of strings")
            continue
        if not isinstance(entry, dict):
            raise refuse(path, f"tensor {name!r} has no description")
        dtype, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
        if dtype not in _DTYPES or not isinstance(shape, list) or not all(
                isinstance(s, int) and not isinstance(s, bool) and 0 <= s < 1 << 40 for s in shape):
            raise refuse(path, f"tensor {name!r} has dtype {dtype!r} and shape {shape!r}")
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(isinstance(o, int) for o in offsets)
                and 0 <= offsets[0] <= offsets[1] <= data_len):
            raise refuse(path, f"tensor {name!r} lies outside the file ({offsets!r}, {data_len} data bytes)")
        numel = 1
        for s in shape:
            numel *= s
        if numel * _DTYPES[dtype] != offsets[1] - offsets[0]:
            raise refuse(path, f"tensor {name!r}: shape {shape} of {dtype} does not fill {offsets}")
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
        raise refuse(path, f"no \"format\": \"{FORMAT}\" in its metadata")
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
        raise refuse(path, "it names no architecture")
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
            raise refuse(path, "its netfix metadata is not JSON") from None
        return _check_side(side, path), False
    side_path = _sidecar(path)
    if own.get("format") != FORMAT or not side_path.is_file():
        raise refuse(path, f"no netfix metadata in its header and no sidecar {side_path.name} beside it")
    if side_path.stat().st_size > _MAX_SIDECAR:
        raise UnsafeFileError(f"path: {side_path} is {side_path.stat().st_size} bytes, too large for a sidecar.")
    try:
        side = json.loads(side_path.read_bytes())
    except (UnicodeDecodeError, ValueError) as e:
        raise NotAModelError(f"path: {side_path} is not valid JSON ({e}); it is not a netfix model sidecar.") from None
    return _check_side(side, side_path), True


def read_file(path: "str | os.PathLike[str]") -> tuple[Path, bytes, dict[str, Any], dict[str, Any], int, bool]:
    """The model file of ``path``, read once and checked: ``(path, bytes, safetensors header, netfix metadata, where
    the tensor data starts, whether the metadata came from an old sidecar)``."""
    target = model_file(path)
    if not target.is_file():
        lone = _sidecar(path)
        if lone.is_file():
            raise refuse(lone, f"there is no {target.name} beside it")
        raise NotAModelError(f"path: {target} not found. Fix: pass the path netfix.save wrote (with or without the "
                             ".safetensors extension).")
    with open(target, "rb") as f:  # one read: hashes and tensors come from the same bytes, whatever renames happen
        blob = f.read()
    header, start = _read_header(target, blob)
    side, legacy = _metadata(target, header)
    return target, blob, header, side, start, legacy


def weights_digest(blob: bytes, start: int, legacy: bool) -> str:
    """The sha256 of a file's weights as its metadata records it: the old format hashed the whole weights file,
    the new one hashes the tensor data (``blob[start:]``; the header holds the hash)."""
    return hashlib.sha256(blob if legacy else memoryview(blob)[start:]).hexdigest()


def model_ref(path: Path, sha256: str, weights_sha256: str) -> dict[str, str]:
    """``{"path", "sha256", "weights_sha256"}`` of a model file (``path`` made absolute), for ledgers and
    certificates."""
    return {"path": str(path.resolve()), "sha256": sha256, "weights_sha256": weights_sha256}
