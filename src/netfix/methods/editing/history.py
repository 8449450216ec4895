"""The edit history a model carries in its card: every edit gets an id (:func:`list` returns them, oldest first);
:func:`revert` removes an adaptor entry (exact: the model without that edit, whatever came after it), or undoes the
most recent weight edit, whose replaced weights the model's :class:`~.memory.EditMemory` keeps (docs/methods.md
§10).

Example:
    >>> out = netfix.edit(model, x[None], torch.tensor([3]), editor="adaptor", rehearsal=train)
    >>> [e["id"] for e in netfix.edits.list(out.model)]
    [1]
    >>> back = netfix.edits.revert(out.model, 1)      # predictions exactly as before the edit
"""

from __future__ import annotations

import builtins
import hashlib
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

import torch
from torch import nn

from ... import card
from ..._runtime import check_model, copy_model
from ...errors import ConfigError, NotAModelError, unknown
from .memory import MEMORY, EditMemory, memory_of

__all__ = ["list", "revert", "record_weight_edit", "inputs_digest"]

_MAX_LOG = 1_000_000             # edits a card may record


def card_record(model: nn.Module) -> dict[str, Any]:
    """The model's edit record (its card's ``edits``), with the defaults of a model without edits."""
    rec = card.of(model).edits
    return {"log": [], "next_id": 1, "layer": None, "undo": None, **(rec or {})}


def timestamp() -> str:
    """Now, in UTC, as an edit's ``created``."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def inputs_digest(X: Any) -> str:
    """sha256 of the edited inputs' bytes (tensors, or a dict of them in key order)."""
    h = hashlib.sha256()
    items = sorted(X.items()) if isinstance(X, Mapping) else [("", X)]
    for k, v in items:
        h.update(str(k).encode())
        h.update(v.detach().to("cpu").contiguous().numpy().tobytes())
    return h.hexdigest()


def list(model: nn.Module) -> builtins.list[dict[str, Any]]:  # noqa: A001 - the public name netfix.edits.list
    """The edits ``model`` holds, oldest first: ``id``, ``kind`` (``"adaptor"``: one codebook entry; ``"weights"``:
    a gradient edit), ``editor``, ``target`` (or ``targets``), ``created``, ``inputs_sha256`` and, for weight edits,
    ``undoable`` (only the most recent weight edit is)."""
    rec = card_record(model)
    undo = rec.get("undo") or {}
    return [{**e, "undoable": e["id"] == undo.get("id")} if e["kind"] == "weights" else dict(e) for e in rec["log"]]


def revert(model: nn.Module, edit_id: int) -> nn.Module:
    """A copy of ``model`` without the edit ``edit_id`` (see :func:`list`). An adaptor entry is removed exactly:
    the copy predicts what the model would without that edit, whatever came after it. A weight edit can be undone
    only when it is the most recent one; its weights are restored bit for bit."""
    check_model(model)
    if isinstance(edit_id, bool) or not isinstance(edit_id, int):
        raise ConfigError(f"edit_id: expected an int (an id from netfix.edits.list); got {type(edit_id).__name__}.")
    rec = card_record(model)
    entries = {e["id"]: e for e in rec["log"]}
    if edit_id not in entries:
        raise unknown("edit id", edit_id, [str(i) for i in entries] or ["(none: the model holds no edits)"],
                      "edit_id")
    device = next(model.parameters()).device
    net = copy_model(model, device)
    mem = memory_of(net)
    entry = entries[edit_id]
    log = [e for e in rec["log"] if e["id"] != edit_id]
    if entry["kind"] == "adaptor":
        assert mem is not None  # an adaptor entry is held by the memory
        row = (mem.entry_ids == edit_id).nonzero().flatten()
        if len(row) != 1:
            raise NotAModelError(f"model: its edit record names adaptor entry {edit_id}, which its codebook does not "
                                 "hold; the model's file was changed.")
        r = int(row)
        keep_keys = mem.key_entry != r
        keys, radii = mem.keys[keep_keys], mem.radii[keep_keys]
        key_entry = mem.key_entry[keep_keys]
        key_entry = key_entry - (key_entry > r).long()
        keep = torch.ones(len(mem.entry_ids), dtype=torch.bool, device=mem.entry_ids.device)
        keep[r] = False
        mem.keys, mem.radii, mem.key_entry = keys, radii, key_entry
        mem.values, mem.entry_ids = mem.values[keep], mem.entry_ids[keep]
        undo = rec.get("undo")
    else:
        undo = rec.get("undo") or {}
        if undo.get("id") != edit_id or mem is None:
            later = [e["id"] for e in rec["log"] if e["kind"] == "weights" and e["id"] > edit_id]
            why = (f"weight edit {later[-1]} came after it" if later else "its weights before it were not kept")
            raise ConfigError(f"edit_id: weight edit {edit_id} cannot be undone: {why}. netfix keeps the weights "
                              "replaced by the most recent weight edit only. Fix: revert the most recent weight "
                              "edit, or reload the model file saved before this edit.")
        params = dict(net.named_parameters())
        with torch.no_grad():
            for name, saved in zip(undo["params"], mem.undo_tensors()):
                params[name].copy_(saved)
        for i in range(len(undo["params"])):
            delattr(mem, f"undo_{i}")
        undo = None
    finish(net, mem, {**rec, "log": log, "undo": undo})
    return net


def finish(net: nn.Module, mem: "EditMemory | None", rec: dict[str, Any]) -> None:
    """Store the history; drop the memory when it holds nothing."""
    if mem is not None and mem.keys.numel() == 0 and len(mem.entry_ids) == 0 and not mem.undo_tensors():
        mem.detach(net)
        delattr(net, MEMORY)
        rec = {**rec, "layer": None}
    elif mem is not None:
        rec = {**rec, "layer": mem.layer or None}
    card.update(net, edits=rec if rec["log"] or rec.get("next_id", 1) > 1 else None)


def record_weight_edit(net: nn.Module, before: Mapping[str, torch.Tensor], entry: dict[str, Any]) -> int:
    """Enter a gradient edit of ``net`` (already applied) in its history, keeping ``before`` (the replaced
    weights, by parameter name) so that it can be undone. Returns its id."""
    rec = card_record(net)
    mem = memory_of(net)
    if mem is None:
        mem = EditMemory().attach(net)
        mem.to(next(net.parameters()).device)
    for i in range(len(mem.undo_tensors())):
        delattr(mem, f"undo_{i}")
    names = sorted(before)
    for i, name in enumerate(names):
        mem.register_buffer(f"undo_{i}", before[name].detach().clone())
    eid = int(rec["next_id"])
    log = rec["log"] + [{"id": eid, "kind": "weights", "created": timestamp(), **entry}]
    finish(net, mem, {**rec, "log": bounded(log), "next_id": eid + 1, "undo": {"id": eid, "params": names}})
    return eid


def bounded(log: builtins.list[dict[str, Any]]) -> builtins.list[dict[str, Any]]:
    """``log``, refused when it is longer than a card may record."""
    if len(log) > _MAX_LOG:
        raise ConfigError(f"model: holds {_MAX_LOG} edits already; netfix records at most that many.")
    return log
