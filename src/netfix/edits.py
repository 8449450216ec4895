"""Edits that accumulate: a key-value adaptor for lifelong editing, and the edit history a model carries
(docs/methods.md §10).

A model in production takes corrections one at a time, hundreds over its life. Gradient editors
(:func:`netfix.edit` with ``sgd`` … ``adam``) change shared weights, so each edit moves many other predictions and
later edits overwrite earlier ones. The **adaptor** (``netfix.edit(..., editor="adaptor")``) changes no weight:
it adds entries to a codebook held by the model, as GRACE does for language models (Hartvigsen et al., "Aging with
GRACE: Lifelong Model Editing with Discrete Key-Value Adaptors", NeurIPS 2023).

- **Where**: one layer (default: the classifier head, the last ``nn.Linear`` with one output per class). The
  *key* of an input is that layer's input, flattened; the *value* replaces the layer's output.
- **Keys and their radius**: an edit is meant to hold on its input and on slight variations of it, not on other
  inputs. netfix calibrates each edit's reach on its own perturbed copies: ``copies`` copies with Gaussian noise
  (std ``noise`` × the input range), and — for images — the input moved one pixel each way. Gaussian noise moves
  a network's features *consistently* (measured on Fashion-MNIST's ResNet-8: noisy copies sit 1.7 from the clean
  features but only 0.7 from each other, while the nearest other test image is 1.2 away), so an edit stores
  several keys: the clean input's, the noisy copies' centroid and one per shifted copy. Every key of an edit has
  the radius ``slack`` × the largest distance of a noisy copy to its centroid. With retained data
  (``rehearsal=``), each key's radius is cut below the nearest retained input the model predicts differently from
  the target, so the edit leaves known inputs alone.
- **Lookup**: an input whose key lies within some key's radius takes the value of the nearest such key; every
  other input goes through the layer unchanged. Keys never depend on each other (conflicts resolve by distance),
  so removing an entry gives exactly the model without that edit, whatever was added after it.
- **Values**: at the classifier head the value is the layer's output for the edited input with the target's and
  the predicted class's logits swapped (the target takes the top logit: the edit keeps the model's confidence,
  only the class changes). At another layer, the output is trained by gradient steps until the target wins by a
  margin.

Everything is data in the model: the codebook lives in buffers of a submodule, ``netfix_edits``
(:class:`EditMemory`), written into the model's file by :func:`netfix.save` and rebuilt by :func:`netfix.load`
from the file's record — no code is named by the file. The same memory holds the weights a gradient edit
replaced, for the most recent one, so that it can be undone bit for bit.

The history: every edit gets an id, recorded in the model's card (:func:`list` returns them). :func:`revert`
removes an adaptor entry (exact), or undoes the most recent weight edit.

Example:
    >>> out = netfix.edit(model, x[None], torch.tensor([3]), editor="adaptor", rehearsal=train)
    >>> [e["id"] for e in netfix.edits.list(out.model)]
    [1]
    >>> back = netfix.edits.revert(out.model, 1)      # predictions exactly as before the edit
"""

from __future__ import annotations

import builtins
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from . import card
from .errors import ConfigError, ModelError, NotAModelError, unknown
from .validation import Options, option

__all__ = ["AdaptorConfig", "EditMemory", "list", "revert", "memory_of", "size_bytes", "MEMORY"]

MEMORY = "netfix_edits"          # the submodule holding a model's codebook and undo weights
_MAX_LOG = 1_000_000             # edits a card may record


@dataclass
class AdaptorConfig(Options):
    """Options of the adaptor editor (``netfix.edit(..., editor="adaptor", **options)``)."""

    layer: str | None = option(None, "the module whose output an edit replaces (its input is the key)",
                               none="the classifier head (the last nn.Linear with one output per class)")
    radius: float | None = option(None, "a fixed radius for every key, in the layer's input units", low=0,
                                  high=1e12, none="calibrated per edit on its perturbed copies")
    noise: float = option(0.05, "std of the Gaussian noise of the calibration copies, as a fraction of the input "
                          "range (the model's recorded training range, else the edited input's)", unit="relative",
                          low=0, high=1)
    copies: int = option(8, "noisy copies per edit for the calibration", low=0, high=4096)
    shift: int = option(1, "pixels the shifted calibration copies move, each way along both axes (image inputs "
                        "only; 0 = none)", unit="pixels", low=0, high=64)
    slack: float = option(1.25, "the noisy copies' centroid key reaches slack × the copies' spread (the largest "
                          "distance of a copy to their centroid)", low=0, high=100, low_open=True)
    point: float = option(0.5, "the clean and shifted copies' keys reach point × the copies' spread", low=0,
                          high=100)
    keep_clear: float = option(1.0, "with rehearsal data: a key's radius is at most this fraction of its distance "
                               "to the nearest retained input the model predicts differently from the target",
                               low=0, high=1, low_open=True)
    margin: float = option(1.0, "values at a hidden layer: train until log p(target) beats every other class by "
                           "this much", unit="nats", low=0, high=100)
    value_steps: int = option(200, "values at a hidden layer: Adam steps at most", low=1, high=100_000)


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
            _module(model, self.layer, "layer").register_forward_hook(self.hook)
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


def _module(model: nn.Module, name: str, argument: str) -> nn.Module:
    found = dict(model.named_modules()).get(name)
    if found is None or not name:
        names = [n for n, _ in model.named_modules() if n]
        raise unknown("module", name, names[-20:], argument)
    return found


def memory_of(model: nn.Module) -> "EditMemory | None":
    found = getattr(model, MEMORY, None)
    return found if isinstance(found, EditMemory) else None


def size_bytes(model: nn.Module) -> int:
    """Bytes the model's edits occupy (its codebook and undo weights; 0 without edits)."""
    mem = memory_of(model)
    return mem.nbytes() if mem is not None else 0


# ---------------------------------------------------------------------------------------------------------------
# the history in the card
# ---------------------------------------------------------------------------------------------------------------

def _record(model: nn.Module) -> dict[str, Any]:
    rec = card.of(model).edits
    return {"log": [], "next_id": 1, "layer": None, "undo": None, **(rec or {})}


def _now() -> str:
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
    rec = _record(model)
    undo = rec.get("undo") or {}
    return [{**e, "undoable": e["id"] == undo.get("id")} if e["kind"] == "weights" else dict(e) for e in rec["log"]]


def revert(model: nn.Module, edit_id: int) -> nn.Module:
    """A copy of ``model`` without the edit ``edit_id`` (see :func:`list`). An adaptor entry is removed exactly:
    the copy predicts what the model would without that edit, whatever came after it. A weight edit can be undone
    only when it is the most recent one; its weights are restored bit for bit."""
    from ._runtime import check_model, copy_model

    check_model(model)
    if isinstance(edit_id, bool) or not isinstance(edit_id, int):
        raise ConfigError(f"edit_id: expected an int (an id from netfix.edits.list); got {type(edit_id).__name__}.")
    rec = _record(model)
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
    _finish(net, mem, {**rec, "log": log, "undo": undo})
    return net


def _finish(net: nn.Module, mem: "EditMemory | None", rec: dict[str, Any]) -> None:
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
    rec = _record(net)
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
    log = rec["log"] + [{"id": eid, "kind": "weights", "created": _now(), **entry}]
    _finish(net, mem, {**rec, "log": _bounded(log), "next_id": eid + 1, "undo": {"id": eid, "params": names}})
    return eid


def _bounded(log: builtins.list[dict[str, Any]]) -> builtins.list[dict[str, Any]]:
    if len(log) > _MAX_LOG:
        raise ConfigError(f"model: holds {_MAX_LOG} edits already; netfix records at most that many.")
    return log


# ---------------------------------------------------------------------------------------------------------------
# the adaptor editor
# ---------------------------------------------------------------------------------------------------------------

def default_layer(model: nn.Module, num_classes: "int | None") -> str:
    """The classifier head: the last ``nn.Linear`` with ``num_classes`` outputs (else the last ``nn.Linear``)."""
    linears = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    heads = [n for n, m in model.named_modules() if isinstance(m, nn.Linear) and m.out_features == num_classes]
    chosen = heads or linears
    if not chosen:
        raise ModelError("model: has no nn.Linear classifier head for the adaptor to sit on. Fix: pass "
                         "layer='name of the module whose output to replace' (netfix.edit(..., editor='adaptor', "
                         "layer=...)).")
    return chosen[-1]


def _shifted(x: torch.Tensor, shift: int) -> builtins.list[torch.Tensor]:
    """``x`` (1, ..., H, W) moved ``shift`` pixels each way along both axes, the uncovered edge filled with its
    minimum (its background)."""
    out = []
    fill = x.min()
    for dim in (-1, -2):
        for s in (shift, -shift):
            y = torch.roll(x, s, dims=dim)
            idx = [slice(None)] * x.ndim
            idx[dim] = slice(0, s) if s > 0 else slice(s, None)
            y[tuple(idx)] = fill
            out.append(y)
    return out


class _Capture:
    """Records the adapted layer's input and output (and may replace the output) during a forward."""

    def __init__(self, layer: nn.Module) -> None:
        self.inputs: "torch.Tensor | None" = None
        self.output: "torch.Tensor | None" = None
        self.replace: "torch.Tensor | None" = None
        self.handle = layer.register_forward_hook(self)

    def __call__(self, module: nn.Module, args: tuple[Any, ...], output: Any) -> Any:
        if not args or not isinstance(args[0], torch.Tensor) or not isinstance(output, torch.Tensor):
            raise ModelError("layer: the adaptor's layer must take a tensor and return a tensor of logits or "
                             "features. Fix: pass layer= a module such as the classifier head.")
        self.inputs, self.output = args[0].detach(), output.detach()
        return self.replace if self.replace is not None else output

    def close(self) -> None:
        self.handle.remove()


def adaptor_layer(net: nn.Module, cfg: AdaptorConfig, num_classes: "int | None") -> str:
    """The layer an adaptor edit of ``net`` sits on: the model's existing codebook's, ``cfg.layer`` or the head."""
    layer_name = cfg.layer or default_layer(net, num_classes)
    existing = memory_of(net)
    if existing is not None and existing.layer and existing.layer != layer_name:
        if cfg.layer is None:
            return existing.layer
        raise ConfigError(f"layer: the model's adaptor sits on {existing.layer!r}; got {layer_name!r}. A model holds "
                          f"one codebook. Fix: pass layer={existing.layer!r} (or leave it out).")
    _module(net, layer_name, "layer")
    return layer_name


def rehearsal_keys(net: nn.Module, view: nn.Module, layer_name: str, control: Any,
                   batch_size: int = 512) -> tuple[torch.Tensor, torch.Tensor]:
    """Retained inputs as the adaptor sees them: their keys at ``layer_name`` and the model's predictions."""
    cap = _Capture(_module(net, layer_name, "layer"))
    feats, preds = [], []
    try:
        with torch.no_grad():
            n = len(next(iter(control.values()))) if isinstance(control, Mapping) else len(control)
            for i in range(0, n, batch_size):
                part = {k: v[i:i + batch_size] for k, v in control.items()} if isinstance(control, Mapping) \
                    else control[i:i + batch_size]
                preds.append(view(part).argmax(1))
                feats.append(cap.inputs.flatten(1).float())  # type: ignore[union-attr]
    finally:
        cap.close()
    return torch.cat(feats), torch.cat(preds)


def adapt(net: nn.Module, view: nn.Module, X: Any, y: torch.Tensor, cfg: AdaptorConfig, layer_name: str,
          ctrl: "tuple[torch.Tensor, torch.Tensor] | None", value_range: "tuple[float, float] | None",
          generator: torch.Generator, inputs_sha256: str) -> tuple[builtins.list[int], "builtins.list[bool] | None"]:
    """Add one codebook entry per input of ``X`` to ``net`` (in place: ``net`` is the caller's copy), each
    predicting its target, at ``layer_name`` (:func:`adaptor_layer`). ``view`` computes ``net``'s logits from an
    input batch; ``ctrl``: retained inputs' keys and predictions (:func:`rehearsal_keys`). Returns the new
    entries' ids and, at the classifier head, whether each input is now predicted as its target (the model's
    output there is the codebook's answer for the input's key, so no second forward is needed; None at a hidden
    layer: the caller runs the model)."""
    existing = memory_of(net)
    layer = _module(net, layer_name, "layer")
    rec = _record(net)
    n = len(y)
    keys, owners, radii, values, ids = [], [], [], [], []
    clean, head = [], True
    cap = _Capture(layer)
    try:
        for i in range(n):
            xi = {k: v[i:i + 1] for k, v in X.items()} if isinstance(X, Mapping) else X[i:i + 1]
            t = y[i:i + 1]
            groups = _calibration(xi, cfg, value_range, generator)
            batch = torch.cat([xi, *groups.values()]) if groups else xi  # type: ignore[list-item]  # tensors here
            with torch.no_grad():
                logits = view(batch)
            feats = cap.inputs.flatten(1).float()  # type: ignore[union-attr]
            out0 = cap.output[:1]  # type: ignore[index]
            key_list, scale = [feats[0]], [cfg.point]
            spread = 0.0
            pos = 1
            for name, g in groups.items():
                block = feats[pos:pos + len(g)]
                pos += len(g)
                if name == "noise":
                    centre = block.mean(0)
                    key_list.append(centre)
                    scale.append(cfg.slack)
                    spread = float((block - centre).norm(dim=1).max())
                else:
                    key_list.extend(block)
                    scale.extend([cfg.point] * len(block))
            K = torch.stack(key_list)
            r = _radii(K, spread * torch.tensor(scale, device=K.device), int(t), cfg, ctrl)
            is_logits = out0.shape == logits[:1].shape and torch.allclose(out0, logits[:1].to(out0.dtype))
            head = head and is_logits
            clean.append(feats[0])
            value = _swap(out0[0], int(t)) if is_logits else _train_value(view, cap, xi, t, out0, cfg)
            eid = int(rec["next_id"]) + i
            keys.append(K)
            radii.append(r)
            owners.append(len(K))
            values.append(value)
            ids.append(eid)
    finally:
        cap.close()
    mem = existing
    if mem is None:
        mem = EditMemory().attach(net)
    if not mem.layer:
        mem.layer = layer_name
        mem.attach(net)
    dev = keys[0].device
    mem.to(dev)
    start = len(mem.entry_ids)
    new_keys = torch.cat(keys)
    owner = torch.cat([torch.full((k,), start + j, dtype=torch.int64, device=dev) for j, k in enumerate(owners)])
    if mem.keys.numel() == 0:
        mem.keys = new_keys.new_zeros(0, new_keys.shape[1])
        mem.values = values[0].new_zeros(0, *values[0].shape)
    if mem.keys.shape[1] != new_keys.shape[1] or tuple(mem.values.shape[1:]) != tuple(values[0].shape):
        raise ModelError(f"layer: {layer_name!r} now gives keys of {new_keys.shape[1]} features, its earlier edits "
                         f"{mem.keys.shape[1]}; the adaptor needs a layer of fixed size.")
    mem.keys = torch.cat([mem.keys, new_keys])
    mem.radii = torch.cat([mem.radii, torch.cat(radii).to(mem.radii.dtype)])
    mem.key_entry = torch.cat([mem.key_entry, owner])
    mem.values = torch.cat([mem.values, torch.stack(values).to(mem.values.dtype)])
    mem.entry_ids = torch.cat([mem.entry_ids, torch.tensor(ids, dtype=torch.int64, device=dev)])
    log = rec["log"] + [{"id": eid, "kind": "adaptor", "editor": "adaptor", "layer": layer_name, "target": int(t),
                         "keys": k, "created": _now(), "inputs_sha256": inputs_sha256, "input": j}
                        for j, (eid, t, k) in enumerate(zip(ids, y.tolist(), owners))]
    _finish(net, mem, {**rec, "log": _bounded(log), "next_id": ids[-1] + 1})
    if not head:
        return ids, None
    hit, entry = mem.lookup(torch.stack(clean))
    answers = mem.values[entry].flatten(1).argmax(1)
    return ids, [bool(h) and int(a) == int(t) for h, a, t in zip(hit, answers, y)]


def _calibration(x: Any, cfg: AdaptorConfig, value_range: "tuple[float, float] | None",
                 generator: torch.Generator) -> dict[str, torch.Tensor]:
    """The perturbed copies of one input that calibrate its keys: ``noise`` (Gaussian, clipped to the range) and
    ``shift`` (images: one pixel each way). Token inputs (a dict, or integer tensors) get none."""
    if isinstance(x, Mapping) or not torch.is_floating_point(x):
        return {}
    out: dict[str, torch.Tensor] = {}
    lo, hi = value_range if value_range is not None else (float(x.min()), float(x.max()))
    span = max(hi - lo, 1e-6)
    if cfg.copies > 1 and cfg.noise > 0:
        z = torch.randn((cfg.copies,) + tuple(x.shape[1:]), generator=generator).to(x.device, x.dtype)
        out["noise"] = (x + cfg.noise * span * z).clamp(lo, hi)
    if cfg.shift > 0 and x.ndim >= 4 and min(x.shape[-2:]) > 2 * cfg.shift:
        out["shift"] = torch.cat(_shifted(x, cfg.shift))
    return out


def _radii(K: torch.Tensor, reach: torch.Tensor, target: int, cfg: AdaptorConfig,
           ctrl: "tuple[torch.Tensor, torch.Tensor] | None") -> torch.Tensor:
    """Each key's radius: ``cfg.radius``; else ``reach`` (``slack`` or ``point`` × the noisy copies' spread, per
    key). Inputs without noisy copies
    (tokens) reach half-way to the nearest retained input predicted differently, or — without rehearsal data —
    their own key only. With rehearsal data no key reaches a retained input predicted differently from the
    target (``keep_clear``)."""
    # "its own key only": a radius above the float32 error of the lookup's distances (computed through a matrix
    # product, off by about 3.5e-4 of the vectors' norm for equal vectors)
    exact = 1e-3 * (float(K[0].norm()) + 1.0)
    clear = None
    if ctrl is not None:
        feats_r, pred_r = ctrl
        other = pred_r != target
        if bool(other.any()):
            clear = torch.cdist(K, feats_r[other]).min(1).values
    if cfg.radius is not None:
        r = torch.full((len(K),), float(cfg.radius), device=K.device)
    elif bool((reach > 0).any()):
        r = reach.to(K.dtype)
    elif clear is not None:
        r = 0.5 * clear
    else:
        r = torch.full((len(K),), exact, device=K.device)
    if clear is not None:
        r = torch.minimum(r, cfg.keep_clear * clear * (1 - 1e-3))  # just below: the lookup's distances are float32
    return r.clamp_min(0.0)


def _swap(logits: torch.Tensor, target: int) -> torch.Tensor:
    """``logits`` with the target's and the top class's values swapped: the target wins, confidence kept."""
    v = logits.detach().clone().float()
    top = int(v.argmax())
    if top != target:
        v[top], v[target] = v[target].clone(), v[top].clone()
    others = torch.cat([v[:target], v[target + 1:]])
    if len(others) and float(others.max()) >= float(v[target]):  # a tie: lift the target just above
        v[target] = others.max() + 1e-3 * (float(others.abs().max()) + 1.0)
    return v


def _train_value(view: nn.Module, cap: _Capture, x: Any, t: torch.Tensor, out0: torch.Tensor,
                 cfg: AdaptorConfig) -> torch.Tensor:
    """A hidden layer's replacement output for ``x`` that makes the model predict ``t`` with margin ``cfg.margin``:
    Adam on the output itself, the rest of the model fixed."""
    v = out0.detach().clone().float().requires_grad_(True)
    scale = float(out0.abs().mean()) + 1e-3
    opt = torch.optim.Adam([v], lr=0.05 * scale)
    try:
        for _ in range(cfg.value_steps):
            cap.replace = v.to(out0.dtype)
            logits = view(x)
            logp = F.log_softmax(logits, 1)
            others = logp.scatter(1, t[:, None], float("-inf")).max(1).values
            gap = logp.gather(1, t[:, None]).squeeze(1) - others
            if float(gap.min()) >= cfg.margin:
                break
            loss = F.relu(cfg.margin - gap).sum()
            opt.zero_grad()
            loss.backward()
            opt.step()
    finally:
        cap.replace = None
    return v.detach()[0]


# ---------------------------------------------------------------------------------------------------------------
# loading: rebuild the memory a file records
# ---------------------------------------------------------------------------------------------------------------

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


# ---------------------------------------------------------------------------------------------------------------
# an editing session
# ---------------------------------------------------------------------------------------------------------------

SESSION_REHEARSAL = 1024  # retained inputs a session keeps (their adaptor keys are computed once)


class Session:
    """One copy of a model that takes edits one at a time, in place — for a service that corrects a model often.

    :func:`netfix.edit` copies the model at every call (the caller's model is never changed) and samples the
    retained data again. A session copies the model once (``session.model``; the caller's is untouched), samples
    up to ``rehearsal_size`` retained inputs once and, for the adaptor, computes their keys once (again after a
    weight edit, which may move them). Each :meth:`edit` returns an :class:`~netfix.editing.EditOutcome` whose
    ``model`` is ``session.model``; every edit is in its history (:func:`list`), and :meth:`revert` removes one.

    Example:
        >>> s = netfix.edits.Session(model, rehearsal=train)          # editor="adaptor"
        >>> for x, t in corrections:
        ...     s.edit(x[None], torch.tensor([t]))
        >>> netfix.save(s.model, "runs/model-corrected")
    """

    def __init__(self, model: nn.Module, editor: str = "adaptor", *, rehearsal: Any = None,
                 rehearsal_size: int = SESSION_REHEARSAL, max_steps: int = 10,
                 params: "Sequence[str] | None" = None, device: "torch.device | str | None" = None, seed: int = 0,
                 **options: Any) -> None:
        from ._runtime import check_model, copy_model, resolve_device
        from .editing import editor_spec
        from .validation import check_scalar, check_seed

        self.spec = editor_spec(model, editor, max_steps, params, options)
        self.seed = check_seed(seed)
        self.rehearsal_size = check_scalar(rehearsal_size, "rehearsal_size", int, low=1, high=1 << 24,
                                           default=SESSION_REHEARSAL)
        check_model(model)
        self.device = resolve_device(device)
        self.model = copy_model(model, self.device)
        self.model.eval()
        self._rehearsal = rehearsal
        self._control: Any = None
        self._keys: Any = None
        self._views: dict[Any, Any] = {}
        self.edits = 0

    def edit(self, inputs: Any, targets: Any) -> Any:
        """Apply one edit (one call of :func:`netfix.edit`'s inputs and targets) to ``self.model``."""
        from .editing import apply_edit, prepare, rehearsal_batch

        job = prepare(self.model, self.model, inputs, targets, self._views)
        if self._control is None and self._rehearsal is not None:
            self._control = rehearsal_batch(self._rehearsal, job, self.rehearsal_size, self.seed, self.device)
        adaptor = isinstance(self.spec, AdaptorConfig)
        if adaptor and self._keys is None and self._control is not None:
            from ._runtime import eval_mode

            with eval_mode(self.model):
                layer = adaptor_layer(self.model, self.spec, job.num_classes)
                self._keys = rehearsal_keys(self.model, job.view, layer, self._control)
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.edits)
        out = apply_edit(self.model, job, self.spec, self._control, generator, self.device, self.seed,
                         rehearsal_keys=self._keys if adaptor else None)
        if not adaptor and out.config.get("edit_ids"):
            self._keys = None  # a weight edit may move the retained inputs' keys
        self.edits += 1
        return out

    def revert(self, edit_id: int) -> None:
        """Remove edit ``edit_id`` from ``self.model`` (see :func:`revert`)."""
        self.model = revert(self.model, edit_id)
        self._keys = None
        self._views = {}
