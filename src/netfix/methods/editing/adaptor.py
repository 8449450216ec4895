"""The adaptor: lifelong editing by a key-value codebook, changing no weight (docs/methods.md §10).

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

The codebook lives in the model's :class:`~.memory.EditMemory`; every entry is in the model's history
(:mod:`.history`), from which it can be removed exactly.

Example:
    >>> out = netfix.edit(model, x[None], torch.tensor([3]), editor="adaptor", rehearsal=train)
    >>> out.success
    [True]
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ... import card
from ...errors import ConfigError, ModelError
from ...validation import Options, option
from .editor import Editor, editors
from .history import bounded, card_record, finish, timestamp
from .memory import EditMemory, memory_of, module_named

__all__ = ["AdaptorConfig", "adaptor_layer", "default_layer", "rehearsal_keys", "adapt", "input_range"]


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


editors.add("adaptor", Editor(order=4, summary="a key-value entry per edited input at one layer; changes no weight"))


def input_range(net: nn.Module) -> "tuple[float, float] | None":
    """The input range the model's card records (its training data's), which scales the calibration noise."""
    rng = card.of(net).data or {}
    return (float(rng["range"][0]), float(rng["range"][1])) if rng.get("range") else None


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


def _shifted(x: torch.Tensor, shift: int) -> list[torch.Tensor]:
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
    module_named(net, layer_name, "layer")
    return layer_name


def rehearsal_keys(net: nn.Module, view: nn.Module, layer_name: str, control: Any,
                   batch_size: int = 512) -> tuple[torch.Tensor, torch.Tensor]:
    """Retained inputs as the adaptor sees them: their keys at ``layer_name`` and the model's predictions."""
    cap = _Capture(module_named(net, layer_name, "layer"))
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
          generator: torch.Generator, inputs_sha256: str) -> tuple[list[int], "list[bool] | None"]:
    """Add one codebook entry per input of ``X`` to ``net`` (in place: ``net`` is the caller's copy), each
    predicting its target, at ``layer_name`` (:func:`adaptor_layer`). ``view`` computes ``net``'s logits from an
    input batch; ``ctrl``: retained inputs' keys and predictions (:func:`rehearsal_keys`). Returns the new
    entries' ids and, at the classifier head, whether each input is now predicted as its target (the model's
    output there is the codebook's answer for the input's key, so no second forward is needed; None at a hidden
    layer: the caller runs the model)."""
    existing = memory_of(net)
    layer = module_named(net, layer_name, "layer")
    rec = card_record(net)
    keys, owners, radii, values, ids = [], [], [], [], []
    clean, head = [], True
    cap = _Capture(layer)
    try:
        for i in range(len(y)):
            xi = {k: v[i:i + 1] for k, v in X.items()} if isinstance(X, Mapping) else X[i:i + 1]
            K, r, value, feat, is_logits = _entry(view, cap, xi, y[i:i + 1], cfg, value_range, generator, ctrl)
            head = head and is_logits
            clean.append(feat)
            keys.append(K)
            radii.append(r)
            owners.append(len(K))
            values.append(value)
            ids.append(int(rec["next_id"]) + i)
    finally:
        cap.close()
    mem = _store(net, existing, layer_name, keys, radii, owners, values, ids)
    log = rec["log"] + [{"id": eid, "kind": "adaptor", "editor": "adaptor", "layer": layer_name, "target": int(t),
                         "keys": k, "created": timestamp(), "inputs_sha256": inputs_sha256, "input": j}
                        for j, (eid, t, k) in enumerate(zip(ids, y.tolist(), owners))]
    finish(net, mem, {**rec, "log": bounded(log), "next_id": ids[-1] + 1})
    if not head:
        return ids, None
    hit, entry = mem.lookup(torch.stack(clean))
    answers = mem.values[entry].flatten(1).argmax(1)
    return ids, [bool(h) and int(a) == int(t) for h, a, t in zip(hit, answers, y)]


def _entry(view: nn.Module, cap: _Capture, xi: Any, t: torch.Tensor, cfg: AdaptorConfig,
           value_range: "tuple[float, float] | None", generator: torch.Generator,
           ctrl: "tuple[torch.Tensor, torch.Tensor] | None"
           ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, bool]:
    """One input's codebook entry: its keys (the clean input's, the noisy copies' centroid, one per shifted copy),
    their radii, its value, the clean key, and whether the layer's output is the model's logits."""
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
    value = _swap(out0[0], int(t)) if is_logits else _train_value(view, cap, xi, t, out0, cfg)
    return K, r, value, feats[0], is_logits


def _store(net: nn.Module, existing: "EditMemory | None", layer_name: str, keys: list[torch.Tensor],
           radii: list[torch.Tensor], owners: list[int], values: list[torch.Tensor], ids: list[int]) -> EditMemory:
    """Append the new entries (``owners``: keys per entry) to ``net``'s memory, made when it has none."""
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
    return mem


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
            if float(gap.detach().min()) >= cfg.margin:
                break
            loss = F.relu(cfg.margin - gap).sum()
            opt.zero_grad()
            loss.backward()
            opt.step()
    finally:
        cap.replace = None
    return v.detach()[0]
