"""Reading a model file, trusting nothing it says: the header is read and bounded first (:mod:`.header`), the
architecture it names is built on the meta device and compared with the file's tensors (:mod:`.rebuild`), the
weights' sha256 is checked against the one the file records, and only then is the model allocated and filled.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from torch import nn

from .. import card
from .._runtime import resolve_device
from ..errors import NotAModelError, UnsafeFileError
from .header import model_ref, read_file, refuse, weights_digest
from .rebuild import build_plan, check_tensors, flexible_state, state_shapes

__all__ = ["LoadedModel", "read_model", "load", "read_meta", "file_ref"]


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
        return model_ref(self.path, self.sha256, self.weights_sha256)


def file_ref(path: "str | os.PathLike[str]") -> dict[str, str]:
    """``{"path", "sha256", "weights_sha256"}`` of a saved model file, read once (nothing is built)."""
    target, blob, header, side, start, legacy = read_file(path)
    return model_ref(target, hashlib.sha256(blob).hexdigest(), weights_digest(blob, start, legacy))


def read_meta(path: "str | os.PathLike[str]") -> dict[str, Any]:
    """The metadata of a saved model (architecture, input shape, classes, data, recipe, ...), checked to be a
    netfix model file; nothing is built or loaded.

    Example:
        >>> netfix.io.read_meta("runs/original")["data"]["name"]
        'fashion-mnist'
    """
    return read_file(path)[3]


def _check_weights_hash(side: dict[str, Any], weights_sha: str, target: Path, allow_unhashed: bool) -> None:
    """Refuse weights that differ from the sha256 the metadata records, or (unless allowed) an unrecorded one."""
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


def _built(build: Callable[[], nn.Module], target: Path) -> nn.Module:
    """The real model, from the builder :func:`.rebuild.build_plan` chose."""
    try:
        return build()
    except NotAModelError:
        raise
    except Exception as e:  # noqa: BLE001 - the caller's factory failing on this file's arguments
        raise NotAModelError(f"path: {target}: its architecture could not be built ({type(e).__name__}: {e}).") \
            from None


def _fill(net: nn.Module, state: dict[str, torch.Tensor], header: dict[str, Any], side: dict[str, Any],
          checked: bool, target: Path) -> None:
    """Give ``net`` the file's edits and weights; ``checked``: its tensors were compared on the meta device."""
    from ..methods.editing import memory as edits

    shapes = {k: v["shape"] for k, v in header.items() if k != "__metadata__"}
    old = edits.memory_of(net)
    if old is not None:  # a caller's module that holds edits itself: the file's record replaces them
        old.detach(net)
        delattr(net, edits.MEMORY)
    try:
        edits.restore(net, side.get("edits"), shapes)
    except NotAModelError as e:
        raise refuse(target, str(e)) from None
    if not checked:  # the architecture could not be built on the meta device: check it now
        check_tensors(header, state_shapes(net), flexible_state(net), target)
    try:
        result = net.load_state_dict(state, strict=False)
    except RuntimeError as e:  # size mismatches
        raise NotAModelError(f"path: the weights in {target} do not fit the architecture ({e}).") from None
    if result.missing_keys or result.unexpected_keys:
        raise NotAModelError(f"path: the weights in {target} do not fit the architecture "
                             f"(missing: {result.missing_keys[:5]}, unexpected: {result.unexpected_keys[:5]}).")


def _label(net: nn.Module, side: dict[str, Any], legacy: bool) -> None:
    """Record on ``net``'s card what the file says of it (architecture, shapes, data, recipe, edits)."""
    data = side.get("data")
    if legacy and not data and (side.get("meta") or {}).get("dataset"):
        data = {"name": side["meta"]["dataset"], "fingerprint": side.get("data_fingerprint")}
    arch = side["architecture"] if "name" in side["architecture"] else card.of(net).architecture
    card.update(net, architecture=arch, input_shape=side.get("input_shape"), num_classes=side.get("num_classes"),
                recipe=side.get("recipe"), editor=side.get("editor"), data=data, io=side.get("io"),
                edits=side.get("edits"))


def read_model(path: "str | os.PathLike[str]", device: "torch.device | str | None" = "cpu", *,
               model: nn.Module | None = None, trust_factory: bool = False,
               allow_unhashed: bool = False) -> LoadedModel:
    """:func:`load`, also returning the file's sha256 as read and its metadata (what a certificate needs)."""
    target, blob, header, side, start, legacy = read_file(path)
    build, expected, flexible = build_plan(side, target, model, trust_factory)
    from ..methods.editing import memory as edits

    shapes = {k: v["shape"] for k, v in header.items() if k != "__metadata__"}
    try:
        memory = edits.expected_state(side.get("edits"), shapes)
    except NotAModelError as e:
        raise refuse(target, str(e)) from None
    if expected:
        check_tensors(header, {**{k: v for k, v in expected.items() if not k.startswith(edits.MEMORY + ".")},
                               **memory}, flexible, target)
    weights_sha = weights_digest(blob, start, legacy)
    _check_weights_hash(side, weights_sha, target, allow_unhashed)
    try:
        state = st_load(blob)
    except (SafetensorError, ValueError, OSError) as e:
        raise NotAModelError(f"path: {target} is not a safetensors file ({e}).") from None
    net = _built(build, target)
    _fill(net, state, header, side, bool(expected), target)
    _label(net, side, legacy)
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

