"""What a retrained model would output on the forget set — the targets of ``unseen`` and ``reference-guided``.

A model retrained without the forget set has never seen those samples, so it treats them like any unseen sample:
the right estimate of its behaviour is the trained model's behaviour on data it never trained on (a held-out split).

- :func:`heldout_outputs`: the model's probabilities on a held-out set (by class), read once in batches.
- :func:`class_mean_targets`: every forget sample of class c gets the mean held-out probability vector of class c.
- :func:`matched_targets`: the forget samples of class c, ranked by how typical of c their neighbourhood is, get
  the held-out class-c outputs at the same rank (quantile matching): the targets have exactly the held-out
  distribution of confidences and errors (so the forget accuracy and a membership attack's view match unseen data),
  and the samples that sit among other classes' retained samples get the held-out outputs that are wrong or
  unsure, as the retrained model's errors fall on them.
- :func:`removed_label_targets`: the model's own probabilities with the sample's label taken out and the rest
  renormalised — what a model that never learned that label (a forgotten class; a backdoor's or a mislabel's
  wrong label) would say.

Everything streams: a pass over the retain set keeps only each forget sample's k nearest neighbours.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .._runtime import eval_mode
from ..data import LabeledData, batches
from ..errors import DataError

__all__ = ["at_most", "heldout_outputs", "class_mean_targets", "matched_targets", "removed_label_targets",
           "absent_labels", "Features", "neighbour_votes"]


class Features:
    """The model's representation at the input of its output layer (the layer whose output is the logits), read
    with a forward hook; models whose output layer cannot be found use the logits themselves."""

    def __init__(self, model: nn.Module, example: Any) -> None:
        self.model = model
        self.layer = _output_layer(model, example)

    @torch.no_grad()
    def __call__(self, X: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """(features (B, d), logits (B, K)) of a batch, in eval mode, float32."""
        seen: list[torch.Tensor] = []
        hook = self.layer.register_forward_hook(lambda m, i, o: seen.append(i[0])) if self.layer is not None \
            else None
        try:
            with eval_mode(self.model):
                logits = self.model(X).float()
        finally:
            if hook is not None:
                hook.remove()
        feats = seen[-1].float().flatten(1) if seen else logits
        return feats, logits


def _output_layer(model: nn.Module, example: Any) -> "nn.Module | None":
    """The last module (in call order) with its own parameters whose output has the logits' shape (B, K)."""
    calls: list[tuple[nn.Module, tuple[int, ...]]] = []
    hooks = [m.register_forward_hook(lambda mod, i, o: calls.append((mod, tuple(o.shape)))
                                     if isinstance(o, torch.Tensor) else None)
             for m in model.modules() if any(True for _ in m.parameters(recurse=False))]
    try:
        with eval_mode(model), torch.no_grad():
            logits = model(example)
    finally:
        for h in hooks:
            h.remove()
    outs = [m for m, shape in calls if shape == tuple(logits.shape)]
    return outs[-1] if outs else None


def heldout_outputs(model: nn.Module, heldout: LabeledData, batch_size: int, device: torch.device
                    ) -> torch.Tensor:
    """The model's probabilities (N, K) on ``heldout``, on the CPU."""
    out = []
    with eval_mode(model), torch.no_grad():
        for X, _ in batches(heldout, batch_size, device=device, reuse=True):
            out.append(model(X).float().softmax(1).cpu())
    return torch.cat(out) if out else torch.zeros(0, heldout.num_classes)


def at_most(data: LabeledData, n: int, generator: torch.Generator) -> LabeledData:
    """``data``, or a random subset of ``n`` of its samples (in order) when it holds more."""
    if len(data) <= n:
        return data
    pick = torch.randperm(len(data), generator=generator)[:n].sort().values
    return data.subset(pick.numpy(), data.name)


def absent_labels(forget: LabeledData, retain: LabeledData) -> torch.Tensor:
    """(N_forget,) bool: whether a forget sample's label has no retained sample (a forgotten class)."""
    kept = torch.bincount(retain.y.cpu(), minlength=forget.num_classes) > 0
    return ~kept[forget.y.cpu()]


def removed_label_targets(model: nn.Module, forget: LabeledData, batch_size: int, device: torch.device
                          ) -> torch.Tensor:
    """(N, K): each forget sample's probabilities with its own label removed and the rest renormalised."""
    out = []
    with eval_mode(model), torch.no_grad():
        for X, y in batches(forget, batch_size, device=device, reuse=True):
            logits = model(X).float().cpu()
            logits[torch.arange(len(y)), y.cpu()] = float("-inf")
            out.append(logits.softmax(1))
    return torch.cat(out) if out else torch.zeros(0, forget.num_classes)


def _need_classes(forget: LabeledData, heldout: LabeledData, which: torch.Tensor) -> None:
    have = torch.bincount(heldout.y.cpu(), minlength=forget.num_classes) > 0
    missing = sorted(set(forget.y.cpu()[which].tolist()) - set(torch.nonzero(have).flatten().tolist()))
    if missing:
        raise DataError(f"heldout: has no sample of class{'es' if len(missing) > 1 else ''} "
                        f"{', '.join(map(str, missing))}, which forget holds; the model's behaviour on unseen "
                        "samples of a class is estimated from held-out samples of it. Fix: pass a held-out set "
                        "(never trained on) with every class of the forget set, e.g. a stratified validation split.")


def class_mean_targets(forget: LabeledData, heldout: LabeledData, probs: torch.Tensor, which: torch.Tensor
                       ) -> torch.Tensor:
    """(N, K): forget sample i (where ``which[i]``) gets the mean of ``probs`` over the held-out samples of its
    class; the other rows are 0 (filled by the caller)."""
    _need_classes(forget, heldout, which)
    y, yh = forget.y.cpu(), heldout.y.cpu()
    q = torch.zeros(len(forget), probs.shape[1])
    for c in y[which].unique().tolist():
        q[(y == c) & which] = probs[yh == c].mean(0)
    return q


def neighbour_votes(features: Features, forget: LabeledData, retain: LabeledData, k: int, batch_size: int,
                    device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """((N_forget, K) share of each forget sample's ``k`` nearest retained samples — cosine distance in the model's
    features — carrying each label, (N_forget, K) the model's own probabilities on it). One streamed pass over
    ``retain``; only the running k best are held."""
    fx, px = [], []
    for X, _ in batches(forget, batch_size, device=device, reuse=True):
        feats, logits = features(X)
        fx.append(F.normalize(feats, dim=1))
        px.append(logits.softmax(1).cpu())
    f = torch.cat(fx)
    k = min(k, len(retain))
    best_d = torch.full((len(f), k), float("inf"), device=f.device)
    best_y = torch.zeros((len(f), k), dtype=torch.int64, device=f.device)
    for X, y in batches(retain, max(batch_size, 256), device=device, reuse=True):
        r = F.normalize(features(X)[0], dim=1)
        d = 1 - f @ r.T  # (N_forget, B)
        both_d = torch.cat([best_d, d], 1)
        both_y = torch.cat([best_y, y.to(f.device).expand(len(f), -1)], 1)
        best_d, at = both_d.topk(k, dim=1, largest=False)
        best_y = both_y.gather(1, at)
    votes = F.one_hot(best_y, forget.num_classes).float().mean(1).cpu()
    return votes, torch.cat(px)


def matched_targets(forget: LabeledData, heldout: LabeledData, probs: torch.Tensor, votes: torch.Tensor,
                    own: torch.Tensor, which: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """(N, K): within each class c, the forget samples (where ``which``) ordered by how many of their neighbours
    carry c (``votes[:, c]``; ties broken at random) get the held-out class-c probability vectors at the same
    quantile of their true-class probability. Each target keeps that vector's probability of c, and its other
    probabilities, largest first, go to the sample's other classes in the order of its neighbours' votes (ties: the
    model's own probabilities ``own``): an unseen sample's confidence profile, its errors pointing where the
    sample's neighbourhood does."""
    _need_classes(forget, heldout, which)
    y, yh = forget.y.cpu(), heldout.y.cpu()
    k = probs.shape[1]
    typicality = votes[torch.arange(len(y)), y]
    q = torch.zeros(len(forget), k)
    for c in y[which].unique().tolist():
        fi = torch.nonzero((y == c) & which).flatten()
        hi = torch.nonzero(yh == c).flatten()
        jitter = torch.rand(len(fi), generator=generator) * 1e-6
        f_order = fi[torch.argsort(typicality[fi] + jitter)]
        h_order = hi[torch.argsort(probs[hi, c])]
        pos = ((torch.arange(len(fi), dtype=torch.float64) + 0.5) * len(hi) / len(fi)).long().clamp(max=len(hi) - 1)
        chosen = probs[h_order[pos]]  # (n_c, K) held-out vectors, in f_order
        others = torch.tensor([j for j in range(k) if j != c])
        mass = chosen[:, others].sort(1, descending=True).values  # the other probabilities, largest first
        rank = votes[f_order][:, others] + 1e-3 * own[f_order][:, others]  # where this sample's errors would go
        slots = others[rank.argsort(1, descending=True)]  # (n_c, K-1) other classes, most likely first
        target = torch.zeros_like(chosen)
        target[:, c] = chosen[:, c]
        target.scatter_(1, slots, mass)
        q[f_order] = target
    return q
