"""The edits a model holds as data: :class:`EditMemory`, a submodule ``netfix_edits`` with the adaptor's key-value
codebook and the weights the most recent gradient edit replaced (docs/methods.md §10).

Everything is data in the model: the codebook lives in buffers of the memory, written into the model's file by
:func:`netfix.save` and rebuilt by :func:`netfix.load` from the file's record (:func:`expected_state`,
:func:`restore`) — no code is named by the file. The undo weights let the most recent gradient edit be undone bit
for bit.

Example:
    >>> out = netfix.edit(model, x[None], torch.tensor([3]), editor="adaptor")
    >>> memory_of(out.model).layer, size_bytes(out.model) > 0      # memory_of(model) is None without edits
    ('fc', True)
"""

from __future__ import annotations

import builtins
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from ...errors import ModelError, NotAModelError, unknown

__all__ = ["MEMORY", "EditMemory", "memory_of", "size_bytes", "module_named", "expected_state", "restore"]

MEMORY = "netfix_edits"          # the submodule holding a model's codebook and undo weights


class EditMemory(nn.Module):
    """The edits a model holds as data: a key-value codebook at one layer (buffers ``keys`` (m, d),
    ``key_entry`` (m,), ``radii`` (m,), ``values`` (n, *value shape), ``entry_ids`` (n,)) and the weights the most
    recent gradient edit replaced (``undo_0`` …). It is called as a forward hook of the adapted layer."""

    keys: torch.Tensor
    key_entry: torch.Tensor
    radii: torch.Tensor
    values: torch.Tensor
    entry_ids: torch.Tensor

    def __init__(self, layer: str = "", key_dim: int = 0, value_shape: Sequence[int] = (), n_keys: int = 0,
                 n_entries: int = 0, undo_shapes: Sequence[Sequence[int]] = ()) -> None:
        super().__init__()
        self.layer = layer
        self.register_buffer("keys", torch.zeros(n_keys, key_dim))
        self.register_buffer("key_entry", torch.zeros(n_keys, dtype=torch.int64))
        self.register_buffer("radii", torch.zeros(n_keys))
        self.register_buffer("values", torch.zeros(n_entries, *value_shape))
        self.register_buffer("entry_ids", torch.zeros(n_entries, dtype=torch.int64))
        for i, shape in enumerate(undo_shapes):
            self.register_buffer(f"undo_{i}", torch.zeros(*shape))

    # --- lookup ------------------------------------------------------------------------------------------------
    def lookup(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """For a batch of layer inputs: which rows hit a key (bool, (N,)) and the entry each hit takes."""
        q = h.detach().flatten(1).to(self.keys.dtype)
        if q.shape[1] != self.keys.shape[1]:
            raise ModelError(f"model: the edited layer {self.layer!r} received inputs of {q.shape[1]} features, but "
                             f"its edits' keys have {self.keys.shape[1]}. The adaptor needs a layer whose input size "
                             "is fixed. Fix: revert the adaptor edits, or edit with a gradient editor.")
        d = torch.cdist(q, self.keys)
        within = d <= self.radii
        hit = within.any(1)
        # the nearest key whose ball holds the input; on an exact tie the newest (re-editing an input wins)
        m = d.shape[1]
        best = (m - 1) - d.masked_fill(~within, float("inf")).flip(1).argmin(1)
        return hit, self.key_entry[best]

    def hook(self, module: nn.Module, args: tuple[Any, ...], output: Any) -> Any:
        if self.keys.numel() == 0 or not args or not isinstance(args[0], torch.Tensor) \
                or not isinstance(output, torch.Tensor) or output.shape[0] != args[0].shape[0]:
            return output
        hit, entry = self.lookup(args[0])
        if not bool(hit.any()):
            return output
        out = output.clone()
        out[hit] = self.values[entry[hit]].to(out.dtype)
        return out

    def attach(self, model: nn.Module) -> "EditMemory":
        """Register as ``model.netfix_edits`` and, when it holds a layer, as that layer's forward hook. (The hook
        is the bound method ``self.hook``: ``copy.deepcopy`` of the model binds the copy's hook to the copy's
        memory.)"""
        self.detach(model)
        setattr(model, MEMORY, self)
        if self.layer:
            module_named(model, self.layer, "layer").register_forward_hook(self.hook)
        return self

    def detach(self, model: nn.Module) -> None:
        """Remove this memory's hook from every module of ``model`` (found by identity, not by a handle: a
        deep-copied handle would point at the original model's hooks)."""
        for m in model.modules():
            for k, h in builtins.list(m._forward_hooks.items()):
                if getattr(h, "__self__", None) is self:
                    del m._forward_hooks[k]
                    m._forward_hooks_with_kwargs.pop(k, None)
                    m._forward_hooks_always_called.pop(k, None)

    def undo_tensors(self) -> builtins.list[torch.Tensor]:
        out, i = [], 0
        while hasattr(self, f"undo_{i}"):
            out.append(getattr(self, f"undo_{i}"))
            i += 1
        return out

    def nbytes(self) -> int:
        return sum(b.numel() * b.element_size() for b in self.buffers())


def module_named(model: nn.Module, name: str, argument: str) -> nn.Module:
    """The submodule ``name`` of ``model``; an unknown name is an error naming ``argument``."""
    found = dict(model.named_modules()).get(name)
    if found is None or not name:
        names = [n for n, _ in model.named_modules() if n]
        raise unknown("module", name, names[-20:], argument)
    return found


def memory_of(model: nn.Module) -> "EditMemory | None":
    """The model's :class:`EditMemory`; None when it holds no edits."""
    found = getattr(model, MEMORY, None)
    return found if isinstance(found, EditMemory) else None


def size_bytes(model: nn.Module) -> int:
    """Bytes the model's edits occupy (its codebook and undo weights; 0 without edits)."""
    mem = memory_of(model)
    return mem.nbytes() if mem is not None else 0


def expected_state(side_edits: Any, header_shapes: Mapping[str, Sequence[int]]) -> dict[str, tuple[int, ...]]:
    """The state names and shapes a file's edit record implies, checked against the file's tensors (their sizes
    are data, bounded by the file)."""
    if side_edits is None:
        return {}
    if not isinstance(side_edits, dict) or not isinstance(side_edits.get("log", []), builtins.list):
        raise NotAModelError("its edit record is not a record of edits")
    prefix = MEMORY + "."
    held = {k[len(prefix):]: tuple(v) for k, v in header_shapes.items() if k.startswith(prefix)}
    if not held:
        return {}
    undo = side_edits.get("undo") or {}
    n_undo = len(undo.get("params") or [])
    want = {"keys", "key_entry", "radii", "values", "entry_ids"} | {f"undo_{i}" for i in range(n_undo)}
    if set(held) != want:
        raise NotAModelError(f"its edit memory holds {sorted(held)}, its record implies {sorted(want)}")
    m, n = held["key_entry"], held["entry_ids"]
    if len(m) != 1 or len(n) != 1 or held["radii"] != m or len(held["keys"]) != 2 or held["keys"][0] != m[0] \
            or not held["values"] or held["values"][0] != n[0]:
        raise NotAModelError("its edit memory's tensors do not fit together (keys, radii, entries)")
    return {prefix + k: v for k, v in held.items()}


def restore(net: nn.Module, side_edits: Any, header_shapes: Mapping[str, Sequence[int]]) -> None:
    """Give a freshly built ``net`` the (empty) memory its file records, shaped to receive the file's tensors."""
    shapes = expected_state(side_edits, header_shapes)
    if not shapes:
        return
    p = MEMORY + "."
    layer = side_edits.get("layer") or ""
    if not isinstance(layer, str) or layer and layer not in dict(net.named_modules()):
        raise NotAModelError(f"its edits sit on layer {layer!r}, which the architecture does not have")
    undo = (side_edits.get("undo") or {}).get("params") or []
    params = {n: tuple(q.shape) for n, q in net.named_parameters()}
    for i, name in enumerate(undo):
        if not isinstance(name, str) or params.get(name) != tuple(shapes[f"{p}undo_{i}"]):
            raise NotAModelError(f"its undo record names {name!r}, which is not a parameter of that shape")
    n_undo = len(undo)
    mem = EditMemory(layer, shapes[p + "keys"][1], shapes[p + "values"][1:], shapes[p + "keys"][0],
                     shapes[p + "values"][0], [shapes[f"{p}undo_{i}"] for i in range(n_undo)])
    mem.attach(net)
