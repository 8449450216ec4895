"""Edits that accumulate on one model, measured as they accumulate (docs/methods.md §2, §10):
:func:`sequential_edits` (a gradient editor, each edit from the previous one's result) and :func:`lifelong_edits`
(the adaptor, a gradient editor or the lookup table, measured every few edits: accuracy, how many earlier edits
still hold, latency and the bytes the edits added).

Example:
    >>> seq = netfix.edit_metrics.sequential_edits(model, X_edit[:50], wrong_labels[:50], test)
    >>> seq[-1]["edits"], seq[-1]["held"]
    (50, 96.0)
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..._runtime import copy_model, eval_mode, resolve_device, seeded
from ...data import DataLike
from ...errors import ConfigError, unknown
from ...training import model_view
from ...validation import check_scalar
from .adaptor import adaptor_layer
from .alternatives import LookupTable
from .apply import REHEARSAL_SIZE, prepare, rehearsal_batch
from .editor import EDITORS, EditorConfig, editor_config, run_editor
from .measure import Perturb, PreparedModel, check_edits, perturbations, perturbed_inputs, progress_bar
from .memory import size_bytes
from .session import SESSION_REHEARSAL, Session

__all__ = ["sequential_edits", "lifelong_edits"]


def sequential_edits(model: nn.Module, inputs: Any, targets: Any, test: DataLike, *, editor: str = "rmsprop",
                     max_steps: int = 10, params: "Sequence[str] | None" = None,
                     device: "torch.device | str | None" = None, seed: int = 0, progress: bool | None = None,
                     **options: Any) -> list[dict[str, Any]]:
    """Apply the edits one after another to the same model (each edit starts from the previous edit's result,
    with a fresh editor state). Returns one record per edit: ``edits`` (how many applied), ``drawdown`` (points
    lost on ``test`` against the original model), ``success`` (this edit reached its target), ``held`` (% of the
    edits so far whose target is still the argmax) and ``steps``."""
    X, y, test_data = check_edits(model, inputs, targets, test, editor)
    if editor not in EDITORS:
        raise ConfigError(f"editor: sequential_edits runs an editor ({', '.join(EDITORS)}); got {editor!r}.")
    cfg = editor_config(model, editor, max_steps, params, options)
    dev = resolve_device(device)
    out = []
    with seeded(seed, dev):
        net = copy_model(model, dev)
        with eval_mode(net):
            prep = PreparedModel(net, test_data, cfg.params, dev)
            Xd, yd = X.to(dev), y.to(dev)
            with torch.no_grad():
                edit_feats = prep.split.features(Xd)
            current = dict(prep.original)
            bar = progress_bar(len(X), f"sequential edits ({editor})", progress)
            for i in range(len(X)):
                current, steps = prep.run_editor(current, Xd[i:i + 1], yd[i:i + 1], cfg)
                held = prep.logits(current, tuple(f[:i + 1] for f in edit_feats)).argmax(1) == yd[:i + 1]
                out.append({"edits": i + 1, "steps": steps, "success": bool(held[-1]),
                            "held": 100.0 * float(held.float().mean()),
                            "drawdown": prep.base_acc - prep.accuracy(current)})
                bar.update(1)
            bar.close()
    return out


def lifelong_edits(model: nn.Module, inputs: Any, targets: Any, test: DataLike, *, editor: str = "adaptor",
                   every: int = 10, rehearsal: DataLike | None = None, max_steps: int = 10,
                   params: "Sequence[str] | None" = None, perturb: "Mapping[str, Perturb] | None" = None,
                   device: "torch.device | str | None" = None, seed: int = 0, progress: bool | None = None,
                   **options: Any) -> list[dict[str, Any]]:
    """Edits that accumulate: apply the edits one after another to one model and, after every ``every`` edits
    (and the last), measure ``test_acc`` and ``drawdown`` (points lost on ``test``), ``held`` (% of the edits so
    far still predicted as their targets), ``holds_<perturbation>`` (% of the edits so far whose perturbed input —
    :func:`perturbations`, drawn once — is predicted as the target), ``success`` (% of this window's edits that
    reached their target), ``latency_ms`` (median over this window), ``bytes`` (what the edits added to the
    model: the adaptor's codebook, a gradient edit's kept weights, the lookup table's entries).

    ``editor``: ``"adaptor"`` (an editing session, :class:`~.session.Session`, with ``options`` its
    :class:`~.adaptor.AdaptorConfig`), a gradient editor (each edit from the previous one's result, fresh
    editor state; with ``rehearsal``, a KL term keeps the original model's predictions on a rehearsal batch, as
    :func:`netfix.edit` does) or ``"lookup-table"``. ``rehearsal``: retained data (e.g. the training set), sampled
    down as :func:`netfix.edit` samples it. The model is never changed."""
    X, y, test_data = check_edits(model, inputs, targets, test, editor)
    every = check_scalar(every, "every", int, low=1, high=1 << 30, default=10)
    if editor == "finetune":
        raise ConfigError("editor: lifelong_edits runs the editors, the adaptor and the lookup table; got "
                          "'finetune' (one full-network fine-tune per edit: measure it with measure_edits).")
    perturb = perturbations() if perturb is None else perturb
    dev = resolve_device(device)
    cfg = editor_config(model, editor, max_steps, params, options) if editor in EDITORS else None
    if editor == "lookup-table" and options:
        raise unknown("option", next(iter(options)), [], "lifelong_edits(editor='lookup-table')")
    out: list[dict[str, Any]] = []
    with seeded(seed, dev) as g:
        Xd, yd = X.to(dev), y.to(dev)
        perturbed = {name: v.to(dev) for name, v in perturbed_inputs(X, perturb, g).items()}
        session = None
        if editor == "adaptor":
            session = Session(model, rehearsal=rehearsal, rehearsal_size=SESSION_REHEARSAL, device=dev, seed=seed,
                              **options)
            net, k = model_view(session.model, test_data, "test")
            names: "Sequence[str] | None" = [adaptor_layer(session.model, session.spec, k)]
        else:
            net, _ = model_view(copy_model(model, dev), test_data, "test")
            names = cfg.params if cfg is not None else params
        with eval_mode(net):
            prep = PreparedModel(net, test_data, names, dev)
            with torch.no_grad():
                feats = {"held": prep.split.features(Xd), **{n: prep.split.features(v) for n, v in perturbed.items()}}
            edits = _Accumulating(prep, editor, cfg, session)
            if cfg is not None and rehearsal is not None:
                edits.rehearse(X[:1], y[:1], rehearsal, seed, dev)
            window: list[tuple[float, bool]] = []
            bar = progress_bar(len(X), f"lifelong edits ({editor})", progress)
            for i in range(len(X)):
                window.append(edits.apply(X[i:i + 1], y[i:i + 1], Xd[i:i + 1], yd[i:i + 1]))
                bar.update(1)
                if (i + 1) % every and i + 1 != len(X):
                    continue
                out.append(edits.row(i + 1, yd, feats, {"held": Xd, **perturbed}, window))
                window = []
            bar.close()
    return out


class _Accumulating:
    """One model taking edits one after another — an adaptor session's model, a gradient editor's edited
    parameters (each edit from the previous one's result) or a lookup table — measured on ``prep``'s test set."""

    def __init__(self, prep: PreparedModel, editor: str, cfg: "EditorConfig | None", session: "Session | None"
                 ) -> None:
        self.prep, self.cfg, self.session = prep, cfg, session
        self.current = dict(prep.original)
        self.table = LookupTable(prep.net) if editor == "lookup-table" else None
        self.kept = sum(v.numel() * v.element_size() for v in prep.original.values())
        self.control_in: "tuple[torch.Tensor, ...] | None" = None
        self.reference: "torch.Tensor | None" = None

    def rehearse(self, x: torch.Tensor, t: torch.Tensor, rehearsal: DataLike, seed: int, dev: torch.device
                 ) -> None:
        """Keep the original model's predictions on a rehearsal batch, sampled as :func:`netfix.edit` does."""
        net = self.prep.net
        job = prepare(net, net, x, t)
        control = rehearsal_batch(rehearsal, job, REHEARSAL_SIZE, seed, dev)
        with torch.no_grad():
            self.reference = F.log_softmax(job.view(control), 1)
            self.control_in = self.prep.split.features(control)

    def apply(self, x: torch.Tensor, t: torch.Tensor, xd: torch.Tensor, td: torch.Tensor) -> tuple[float, bool]:
        """Apply the edit x -> t (``xd``, ``td``: on the device); its seconds and whether it reached its target."""
        if self.session is not None:
            res = self.session.edit(x, t)
            return res.seconds, bool(res.success[0])
        if self.table is not None:
            start = time.perf_counter()
            self.table.add(x, t)
            return time.perf_counter() - start, True
        assert self.cfg is not None
        prep = self.prep
        start = time.perf_counter()
        params_ = {n: v.detach().clone().requires_grad_(True) for n, v in self.current.items()}
        with torch.no_grad():
            f = prep.split.features(xd)
        self.current, _, _ = run_editor(prep.split.tail, params_, f, td, self.cfg, rehearsal=self.control_in,
                                        reference=self.reference)
        latency = time.perf_counter() - start
        return latency, prep.reached(self.current, xd, td)

    def row(self, done: int, yd: torch.Tensor, feats: dict[str, tuple[torch.Tensor, ...]],
            inputs: dict[str, torch.Tensor], window: list[tuple[float, bool]]) -> dict[str, Any]:
        """The measures after ``done`` edits: ``feats`` (and ``inputs``: the edited inputs, ``"held"``, and their
        perturbed copies) of the edits so far; ``window``: this window's (seconds, reached) per edit."""
        prep = self.prep
        if self.table is not None:
            with torch.no_grad():
                acc_logits = self.table.override(prep.X, prep.logits(prep.original, prep.feats))
                acc = 100.0 * float((acc_logits.argmax(1) == prep.y).float().mean())
                holds = {n: 100.0 * float((self.table.override(
                    v[:done], prep.logits(prep.original, tuple(f[:done] for f in feats[n]))).argmax(1)
                    == yd[:done]).float().mean()) for n, v in inputs.items()}
            added = 40 * len(self.table.table)  # a 32-byte digest and its target per entry
        else:
            acc = prep.accuracy(self.current)
            holds = {n: 100.0 * float((prep.logits(self.current, tuple(f[:done] for f in fs)).argmax(1)
                                       == yd[:done]).float().mean()) for n, fs in feats.items()}
            added = size_bytes(self.session.model) if self.session is not None else self.kept
        return {"edits": done, "test_acc": acc, "drawdown": prep.base_acc - acc,
                "held": holds.pop("held"), **{f"holds_{n}": v for n, v in holds.items()},
                "success": 100.0 * sum(ok for _, ok in window) / len(window),
                "latency_ms": 1000 * statistics.median(s for s, _ in window), "bytes": added}
