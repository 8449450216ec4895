"""The two alternatives to editing that the Editable Neural Networks paper argues against, measured the same way
as the editors (:func:`~.metrics.measure_edits`): ``"lookup-table"`` (a table of exact-input overrides,
:class:`LookupTable`) and ``"finetune"`` (fine-tune the whole network on the edited input, with replay of training
data, until the prediction flips; :class:`EditFinetuneConfig`).

Example:
    >>> table = LookupTable(model).add(x[None], torch.tensor([3]))
    >>> table(x[None]).argmax(1)
    tensor([3])
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from ...data import LabeledData
from ...errors import ConfigError
from ...streaming import move as move_batch
from .measure import PreparedModel

__all__ = ["LookupTable", "EditFinetuneConfig", "lookup_rows", "finetune_row"]


class LookupTable(nn.Module):
    """A model plus a table of overrides: an input stored with :meth:`add` (matched exactly, byte for byte) is
    predicted as its stored target; every other input goes to the model. The baseline an edit must beat: it never
    hurts other inputs, but does nothing for an input that differs by one pixel."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.table: dict[bytes, int] = {}

    @staticmethod
    def _keys(X: torch.Tensor) -> list[bytes]:
        rows = X.detach().to("cpu", torch.float32).contiguous().flatten(1).numpy()
        return [hashlib.sha256(r.tobytes()).digest() for r in rows]

    def add(self, inputs: torch.Tensor, targets: torch.Tensor) -> "LookupTable":
        for key, t in zip(self._keys(inputs), targets.tolist()):
            self.table[key] = int(t)
        return self

    def override(self, X: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        """``logits`` (the model's, for ``X``) with stored inputs' rows replaced by their target's one-hot ×
        (max |logit| + 1)."""
        if not self.table:
            return logits
        out = logits.clone()
        big = float(logits.detach().abs().max()) + 1.0
        for i, key in enumerate(self._keys(X)):
            if key in self.table:
                out[i] = 0.0
                out[i, self.table[key]] = big
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.override(x, self.model(x))


@dataclass
class EditFinetuneConfig:
    """The fine-tuning alternative: the whole network, cross-entropy on the edited input plus a replay batch of
    training data (BatchNorm in eval mode), SGD with momentum, until the edit's prediction flips."""

    lr: float = 0.01                   # SGD step size
    momentum: float = 0.9
    replay: int = 63                   # training images per step beside the edited input
    max_steps: int = 100               # steps at most

    def __post_init__(self) -> None:
        if not self.lr > 0 or not 0 <= self.momentum < 1 or self.replay < 0 or self.max_steps < 1:
            raise ConfigError(f"finetune: expected lr > 0, momentum in [0, 1), replay >= 0 and max_steps >= 1; "
                              f"got {asdict(self)}.")


def lookup_rows(prep: PreparedModel, X: torch.Tensor, y: torch.Tensor, perturbed: dict[str, torch.Tensor]
                 ) -> list[dict[str, Any]]:
    """Each edit = a table holding that one input; its effect on the drawdown set is the table's override applied
    to the model's cached outputs there (the wrapper's forward, without recomputing the unchanged model)."""
    base_logits = prep.logits(prep.original, prep.feats)
    base_correct = int((base_logits.argmax(1) == prep.y).sum())
    keys = LookupTable._keys(prep.X)
    rows = []
    for i in range(len(X)):
        start = time.perf_counter()
        table = LookupTable(prep.net).add(X[i:i + 1], y[i:i + 1])
        with torch.no_grad():
            ok = bool(table(X[i:i + 1]).argmax(1) == y[i])
        latency = time.perf_counter() - start
        key = LookupTable._keys(X[i:i + 1])[0]
        captured = [j for j, k in enumerate(keys) if k == key]
        correct = base_correct
        for j in captured:  # a test image identical to the edited input now predicts the edit's target
            correct += int(int(y[i]) == int(prep.y[j])) - int(int(base_logits[j].argmax()) == int(prep.y[j]))
        row = {"success": ok, "steps": 0, "latency_ms": 1000 * latency,
               "drawdown": 100.0 * (base_correct - correct) / len(prep.y)}
        with torch.no_grad():
            for name, xp in perturbed.items():
                row[f"holds_{name}"] = bool(table(xp[i:i + 1]).argmax(1) == y[i])
        rows.append(row)
    return rows


def finetune_row(net: nn.Module, prep: PreparedModel, x: torch.Tensor, t: torch.Tensor, replay: LabeledData,
                  cfg: EditFinetuneConfig, perturbed: dict[str, torch.Tensor], g: torch.Generator) -> dict[str, Any]:
    """Fine-tune every parameter on (x, t) plus replay until x is predicted as t; evaluate the whole network."""
    params = {n: p.detach().clone().requires_grad_(True) for n, p in net.named_parameters() if p.requires_grad}
    opt = torch.optim.SGD(list(params.values()), lr=cfg.lr, momentum=cfg.momentum)
    dev = x.device
    start = time.perf_counter()
    steps, ok = 0, False
    for steps in range(cfg.max_steps + 1):
        with torch.no_grad():
            ok = bool(functional_call(net, params, (x,)).argmax(1) == t)
        if ok or steps == cfg.max_steps:
            break
        loss = F.cross_entropy(functional_call(net, params, (x,)), t)
        if cfg.replay:
            idx = torch.randint(len(replay), (cfg.replay,), generator=g)
            loss = loss + F.cross_entropy(functional_call(net, params, (move_batch(replay.X[idx], dev),)), replay.y[idx].to(dev))
        opt.zero_grad()
        loss.backward()
        opt.step()
    latency = time.perf_counter() - start
    with torch.no_grad():
        correct = sum(int((functional_call(net, params, (prep.X[i:i + prep.batch_size],)).argmax(1)
                           == prep.y[i:i + prep.batch_size]).sum()) for i in range(0, len(prep.y), prep.batch_size))
        row = {"success": ok, "steps": steps, "latency_ms": 1000 * latency,
               "drawdown": prep.base_acc - 100.0 * correct / len(prep.y)}
        for name, xp in perturbed.items():
            row[f"holds_{name}"] = bool(functional_call(net, params, (xp,)).argmax(1) == t)
    return row
