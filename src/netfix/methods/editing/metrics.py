"""How good are edits? Success rate, steps, drawdown, latency and robustness, each edit applied to the original
model independently (docs/methods.md §2); edits that accumulate are measured by :mod:`.lifelong`.

- **success rate**: % of edits whose target became the argmax within ``max_steps``;
- **mean steps**: editor steps per edit;
- **drawdown**: points of accuracy on a test set lost per edit, *each edit applied to the original model
  independently* (signed, as in the official code: negative when an edit happens to help);
- **latency**: wall time of one edit on a loaded model (median over edits);
- **robustness**: % of successful edits still holding when their input is slightly perturbed (Gaussian noise, a
  1-pixel shift) — what a lookup table of overrides cannot do.

Besides the four editors and the adaptor, the two alternatives the Editable Neural Networks paper argues against
are measured the same way (:mod:`.alternatives`): ``"finetune"`` and ``"lookup-table"``.

Example:
    >>> m = netfix.edit_metrics.measure_edits(model, X_edit, wrong_labels, test, editor="rmsprop")
    >>> m.success_rate, m.mean_steps, m.drawdown
    (100.0, 2.3, 0.41)
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

from ..._runtime import copy_model, eval_mode, resolve_device, seeded
from ...data import DataLike, as_data
from ...errors import DataError, unknown
from ...training import model_view
from .adaptor import adapt, adaptor_layer, input_range, rehearsal_keys
from .alternatives import EditFinetuneConfig, finetune_row, lookup_rows
from .apply import REHEARSAL_SIZE, editor_spec, prepare, rehearsal_batch
from .editor import EDITORS, EditorConfig, editor_config
from .measure import Perturb, PreparedModel, check_edits, perturbations, perturbed_inputs, progress_bar
from .memory import MEMORY, memory_of

__all__ = ["EditMetrics", "measure_edits"]


@dataclass
class EditMetrics:
    """What :func:`measure_edits` measured. Accuracies and drawdowns in points (%), latency in milliseconds."""

    method: str
    n_edits: int
    success_rate: float                # % of edits reached within the step budget
    mean_steps: float                  # steps per edit (0 for the lookup table)
    drawdown: float                    # mean accuracy lost per edit, each on the original model (signed)
    latency_ms: float                  # median wall time of one edit
    base_acc: float                    # the unedited model's accuracy on the drawdown set
    holds: dict[str, float] = field(default_factory=dict)  # % of successful edits holding under each perturbation
    per_edit: list[dict[str, Any]] = field(default_factory=list)

    def row(self) -> dict[str, Any]:
        """A flat dict for tables and JSON (per-edit details left out)."""
        out = {k: v for k, v in asdict(self).items() if k not in ("per_edit", "holds")}
        out.update({f"holds_{k}": v for k, v in self.holds.items()})
        return out


def measure_edits(model: nn.Module, inputs: Any, targets: Any, test: DataLike, *, editor: str = "rmsprop",
                  max_steps: int = 10, params: "Sequence[str] | None" = None, replay: DataLike | None = None,
                  finetune: EditFinetuneConfig | None = None, perturb: "Mapping[str, Perturb] | None" = None,
                  device: "torch.device | str | None" = None, seed: int = 0, progress: bool | None = None,
                  **options: Any) -> EditMetrics:
    """Apply each edit (``inputs[i]`` → ``targets[i]``) to the original model independently and measure success,
    steps, drawdown on ``test``, latency and robustness to ``perturb`` (default :func:`~.measure.perturbations`).

    ``editor``: one of ``sgd``, ``momentum``, ``rmsprop``, ``adam`` (with ``max_steps``, ``params`` and the other
    :class:`~.editor.EditorConfig` fields as ``options``; a model from Editable Training uses its learned step
    size, as :func:`netfix.edit` does), or an alternative: ``"finetune"`` (needs ``replay``, training data; options
    in :class:`~.alternatives.EditFinetuneConfig`) or ``"lookup-table"``. The model is never changed.
    """
    X, y, test_data = check_edits(model, inputs, targets, test, editor)
    if editor == "finetune" and replay is None:
        raise DataError("replay: editor='finetune' fine-tunes with replay of training data; pass replay=train.")
    perturb = perturbations() if perturb is None else perturb
    dev = resolve_device(device)
    cfg = None
    acfg = None
    if editor in EDITORS:
        cfg = editor_config(model, editor, max_steps, params, options)
        params = cfg.params
    elif editor == "adaptor":
        acfg = editor_spec(model, "adaptor", max_steps, None, options)
    elif options:
        raise unknown("option", next(iter(options)), sorted(EditorConfig.__dataclass_fields__), "measure_edits")
    with seeded(seed, dev) as g:
        net, k = model_view(copy_model(model, dev), test_data, "test")
        if acfg is not None:
            params = [adaptor_layer(net, acfg, k)]
        with eval_mode(net):
            prep = PreparedModel(net, test_data, params, dev)
            perturbed = perturbed_inputs(X, perturb, g)
            rows = []
            if editor == "lookup-table":
                rows = lookup_rows(prep, X.to(dev), y.to(dev), {k: v.to(dev) for k, v in perturbed.items()})
            elif editor == "adaptor":
                rows = _adaptor_rows(prep, net, X.to(dev), y.to(dev), {k: v.to(dev) for k, v in perturbed.items()},
                                     acfg, replay, g, progress)
            else:
                bar = progress_bar(len(X), f"edits ({editor})", progress)
                for i in range(len(X)):
                    x, t = X[i:i + 1].to(dev), y[i:i + 1].to(dev)
                    if editor == "finetune":
                        assert replay is not None  # checked before any work
                        row = finetune_row(net, prep, x, t, as_data(replay, "replay"), finetune or EditFinetuneConfig(),
                                           {k: v[i:i + 1].to(dev) for k, v in perturbed.items()}, g)
                    else:
                        start = time.perf_counter()
                        assert cfg is not None  # an editor's config, built before any work
                        new, steps = prep.run_editor(prep.original, x, t, cfg)
                        ok = prep.reached(new, x, t)
                        latency = time.perf_counter() - start
                        row = {"success": ok, "steps": steps, "latency_ms": 1000 * latency,
                               "drawdown": prep.base_acc - prep.accuracy(new)}
                        for name, xp in perturbed.items():
                            row[f"holds_{name}"] = prep.reached(new, xp[i:i + 1].to(dev), t)
                    rows.append(row)
                    bar.update(1)
                bar.close()
    return _summarise(editor, rows, prep.base_acc, list(perturbed))


def _summarise(method: str, rows: list[dict[str, Any]], base_acc: float, perturbed: list[str]) -> EditMetrics:
    ok = [r for r in rows if r["success"]]
    holds = {name: 100.0 * sum(r[f"holds_{name}"] for r in ok) / len(ok) if ok else 0.0 for name in perturbed}
    return EditMetrics(method=method, n_edits=len(rows),
                       success_rate=100.0 * len(ok) / len(rows),
                       mean_steps=sum(r["steps"] for r in rows) / len(rows),
                       drawdown=sum(r["drawdown"] for r in rows) / len(rows),
                       latency_ms=statistics.median(r["latency_ms"] for r in rows),
                       base_acc=base_acc, holds=holds, per_edit=rows)


def _adaptor_rows(prep: PreparedModel, net: nn.Module, X: torch.Tensor, y: torch.Tensor,
                  perturbed: dict[str, torch.Tensor], cfg: Any, replay: Any, g: torch.Generator,
                  progress: bool | None) -> list[dict[str, Any]]:
    """Each edit = one adaptor entry on the original model (the codebook emptied between edits); its effect on
    the drawdown set is read through the cut's tail, which calls the adapted layer and so its codebook."""
    layer = prep.prefixes[0]
    value_range = input_range(net)
    job = prepare(net, net, X[:1], y[:1])
    control = rehearsal_batch(replay, job, REHEARSAL_SIZE, 0, X.device) if replay is not None else None
    ctrl = rehearsal_keys(net, job.view, layer, control) if control is not None else None
    rows = []
    bar = progress_bar(len(X), "edits (adaptor)", progress)
    for i in range(len(X)):
        mem = memory_of(net)
        if mem is not None:
            mem.detach(net)
            delattr(net, MEMORY)
        start = time.perf_counter()
        _, reached = adapt(net, job.view, X[i:i + 1], y[i:i + 1], cfg, layer, ctrl, value_range, g, "")
        latency = time.perf_counter() - start
        row = {"success": bool(reached[0]) if reached is not None else prep.reached(prep.original, X[i:i + 1],
                                                                                   y[i:i + 1]),
               "steps": 0, "latency_ms": 1000 * latency, "drawdown": prep.base_acc - prep.accuracy(prep.original)}
        for name, xp in perturbed.items():
            row[f"holds_{name}"] = prep.reached(prep.original, xp[i:i + 1], y[i:i + 1])
        rows.append(row)
        bar.update(1)
    bar.close()
    mem = memory_of(net)
    if mem is not None:
        mem.detach(net)
        delattr(net, MEMORY)
    return rows
