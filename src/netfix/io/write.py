"""Writing a model file: the weights, buffers and netfix's metadata (JSON in the safetensors header) as one file's
bytes, published with one atomic rename. Nothing written names code to run: the architecture is recorded as a
registered name with its arguments (data), or, for an unregistered class, only for people to read.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save as st_save
from torch import nn

from .. import card
from .._runtime import check_model
from .._version import __version__
from ..errors import ConfigError
from .atomic import atomic_write
from .header import FORMAT, FORMAT_VERSION, model_file, model_ref

__all__ = ["Serialized", "serialize", "publish", "save", "weights_sha256"]


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
        return model_ref(model_file(path), self.sha256, self.weights_sha256)


def _architecture(model: nn.Module, meta: dict[str, Any]) -> dict[str, Any]:
    """What the file records of ``model``'s architecture: a registered name and its arguments, a Hugging Face
    config, or (an unregistered class) its class name, for people to read."""
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
    from ..models import hf

    described = hf.describe(model)  # a Hugging Face classifier: rebuilt from its config, which is data
    if described is not None:
        return described
    # an unregistered user module: its class is recorded for people to read; loading needs model=
    cls = type(model)
    return {"class": f"{cls.__module__}.{cls.__qualname__}"}


def _metadata(model: nn.Module, meta: dict[str, Any]) -> dict[str, Any]:
    """netfix's metadata for ``model``'s file (all but the weights hash); ``meta`` is the caller's, consumed."""
    arch = _architecture(model, meta)
    info = card.of(model)
    if arch.get("name") == "transformers" and (info.input_shape is None or info.num_classes is None):
        from ..models import hf

        shape, k = hf.shape_and_classes(model)
        info = replace(info, input_shape=info.input_shape or shape, num_classes=info.num_classes or k)
    data_info = dict(info.data or {})
    if "dataset" in meta:
        data_info["name"] = meta.pop("dataset")
    if "data_fingerprint" in meta:
        data_info["fingerprint"] = meta.pop("data_fingerprint")
    return {
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


def _cpu_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """``model``'s state dict as contiguous CPU copies, as the file holds it."""
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in model.state_dict().items()}


def _tensor_sha256(state: dict[str, torch.Tensor], metadata: dict[str, str]) -> str:
    """sha256 of the tensor data of ``state``'s safetensors bytes (the same whatever the metadata)."""
    first = st_save(state, metadata=metadata)
    n = int.from_bytes(first[:8], "little")
    return hashlib.sha256(first[8 + n:]).hexdigest()


def _canonical(blob: bytes) -> bytes:
    """``blob`` with its header's metadata in sorted order: safetensors writes the metadata map in an order that
    varies from run to run, so the same model saved twice would get two sha256s. Only the header's order changes
    (same length, same tensors, same offsets); a header that would not round-trip exactly is left as written."""
    n = int.from_bytes(blob[:8], "little")
    header = json.loads(blob[8:8 + n])
    meta = header.pop("__metadata__", None)
    if meta is None:
        return blob
    text = json.dumps({"__metadata__": dict(sorted(meta.items())), **header}, separators=(",", ":")).encode()
    if len(text) > n or json.loads(text) != {"__metadata__": meta, **header}:
        return blob
    return blob[:8] + text.ljust(n) + blob[8 + n:]


def serialize(model: nn.Module, meta: dict[str, Any] | None = None) -> Serialized:
    """The bytes of ``model``'s file (see :func:`save`), without writing anything."""
    check_model(model)
    side = _metadata(model, dict(meta or {}))
    state = _cpu_state(model)
    base = {"format": FORMAT, "format_version": str(FORMAT_VERSION)}
    weights_sha = _tensor_sha256(state, base)  # the tensor data does not depend on the metadata: hash it once
    side["weights_sha256"] = weights_sha
    try:
        text = json.dumps(side, sort_keys=True, allow_nan=False)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"meta: every value must be JSON-serialisable, finite numbers included ({e}).") from None
    blob = _canonical(st_save(state, metadata={**base, "netfix": text}))
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


def weights_sha256(model: nn.Module) -> str:
    """sha256 of ``model``'s tensor data as :func:`save` would write it (equal weights, equal hash)."""
    return _tensor_sha256(_cpu_state(model), {"format": FORMAT})
