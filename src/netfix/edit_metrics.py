"""How good are edits? Success rate, steps, drawdown, sequential drawdown and latency (docs/methods.md §2).

- **success rate**: % of edits whose target became the argmax within ``max_steps``;
- **mean steps**: editor steps per edit;
- **drawdown**: points of accuracy on a test set lost per edit, *each edit applied to the original model
  independently* (signed, as in the official code: negative when an edit happens to help);
- **sequential drawdown**: points lost after 1, 2, …, N edits accumulated on one model, with how many earlier edits
  still hold;
- **latency**: wall time of one edit on a loaded model (median over edits);
- **robustness**: % of successful edits still holding when their input is slightly perturbed (Gaussian noise, a
  1-pixel shift) — what a lookup table of overrides cannot do.

Thousands of edited models are evaluated cheaply: an edit only changes the tail of the network
(:class:`~netfix.editing.FrozenSplit`), so the test set's prefix features are computed once and each edited model
only runs its tail. Results equal evaluating each edited model in full (a test checks this).

Besides the four editors, two alternatives the Editable Neural Networks paper argues against are measured the same
way: ``"finetune"`` (fine-tune the whole network on the edited input, with replay of training data, until the
prediction flips) and ``"lookup-table"`` (a table of exact-input overrides, :class:`LookupTable`).

Example:
    >>> m = netfix.edit_metrics.measure_edits(model, X_edit, wrong_labels, test, editor="rmsprop")
    >>> m.success_rate, m.mean_steps, m.drawdown
    (100.0, 2.3, 0.41)
"""

from __future__ import annotations

import hashlib
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from ._runtime import check_model, copy_model, eval_mode, resolve_device, seeded, show_progress
from .data import DataLike, LabeledData, as_data
from .editing import EDITORS, EditorConfig, FrozenSplit, default_edit_params, editor_config, run_editor
from .errors import ConfigError, DataError, unknown
from .gradients import param_names
from .training import model_view, num_outputs
from .streaming import move as move_batch

__all__ = ["ALTERNATIVES", "EditMetrics", "LookupTable", "EditFinetuneConfig", "measure_edits", "sequential_edits",
           "lifelong_edits", "perturbations"]

ALTERNATIVES = ("finetune", "lookup-table", "adaptor")
Perturb = Callable[[torch.Tensor, torch.Generator], torch.Tensor]


def perturbations(noise: float = 0.05, shift: int = 1) -> dict[str, Perturb]:
    """The two slight perturbations robustness is measured under: ``noise`` — Gaussian noise of std ``noise`` (in
    input units; netfix's images are in [0, 1]), clipped to the input's range; ``shift`` — the image moved ``shift``
    pixels right, the uncovered column filled with the image's minimum (its background). Flat inputs get only the
    noise."""

    def add_noise(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        z = torch.randn(x.shape, generator=g).to(x.device, x.dtype)
        return (x + noise * z).clamp(x.min(), x.max())

    def move(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        out = torch.roll(x, shift, dims=-1)
        fill = x.flatten(1).min(1).values.view(-1, *([1] * (x.ndim - 1)))
        out[..., :shift] = fill.expand_as(out[..., :shift])
        return out

    return {"noise": add_noise, "shift": move}


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


class _Editing:
    """One model prepared for many edits: its split, the drawdown set's cached features and base accuracy."""

    def __init__(self, model: nn.Module, test: LabeledData, params: "Sequence[str] | None", device: torch.device,
                 batch_size: int = 1000) -> None:
        self.net = model
        k = int(test.num_classes) if test.num_classes else None
        prefixes = list(params) if params is not None else default_edit_params(model, k)
        self.names = param_names(model, prefixes)
        self.prefixes = prefixes
        self.X, self.y = test.tensor.to(device), test.y.to(device)
        self.split = FrozenSplit(model, self.names, self.X[:8])
        self.feats = self.split.batched_features(self.X, batch_size)
        self.batch_size = batch_size
        self.original = {n: p.detach().clone() for n, p in model.named_parameters() if n in self.names}
        self.base_acc = self.accuracy(self.original)

    def logits(self, params: Mapping[str, torch.Tensor], feats: tuple[torch.Tensor, ...]) -> torch.Tensor:
        with torch.no_grad():
            n = len(feats[0])
            parts = [functional_call(self.split.tail, dict(params), tuple(f[i:i + self.batch_size] for f in feats))
                     for i in range(0, n, self.batch_size)]
        return torch.cat(parts)

    def accuracy(self, params: Mapping[str, torch.Tensor]) -> float:
        return 100.0 * float((self.logits(params, self.feats).argmax(1) == self.y).float().mean())

    def run_editor(self, start: Mapping[str, torch.Tensor], x: torch.Tensor, t: torch.Tensor, cfg: EditorConfig
                   ) -> tuple[dict[str, torch.Tensor], int]:
        params = {n: v.detach().clone().requires_grad_(True) for n, v in start.items()}
        with torch.no_grad():
            feats = self.split.features(x)
        new, steps, _ = run_editor(self.split.tail, params, feats, t, cfg)
        return new, steps

    def reached(self, params: Mapping[str, torch.Tensor], x: torch.Tensor, t: torch.Tensor) -> bool:
        with torch.no_grad():
            return bool((self.logits(params, self.split.features(x)).argmax(1) == t).all())


def _check(model: nn.Module, inputs: Any, targets: Any, test: DataLike, editor: str) -> tuple[
        torch.Tensor, torch.Tensor, LabeledData]:
    check_model(model)
    if editor not in EDITORS + ALTERNATIVES:
        raise unknown("editor", editor, list(EDITORS + ALTERNATIVES), "editor")
    X = inputs if isinstance(inputs, torch.Tensor) else torch.as_tensor(inputs)
    y = targets if isinstance(targets, torch.Tensor) else torch.as_tensor(targets)
    if len(X) == 0:
        raise DataError("inputs: no edits given; expected at least one input to edit.")
    if y.ndim != 1 or len(y) != len(X):
        raise DataError(f"targets: expected one class index per input ({len(X)}); got shape {tuple(y.shape)}.")
    test_data = as_data(test, "test")
    if X.shape[1:] != test_data.X.shape[1:]:
        raise DataError(f"inputs: shape {tuple(X.shape[1:])} differs from test's {tuple(test_data.X.shape[1:])}; "
                        "expected inputs from the same distribution as the test set.")
    k = num_outputs(model, test_data, "test")
    as_data((X, y), "inputs", num_classes=k)  # NaNs, label range
    return X, y.long(), test_data


def measure_edits(model: nn.Module, inputs: Any, targets: Any, test: DataLike, *, editor: str = "rmsprop",
                  max_steps: int = 10, params: "Sequence[str] | None" = None, replay: DataLike | None = None,
                  finetune: EditFinetuneConfig | None = None, perturb: "Mapping[str, Perturb] | None" = None,
                  device: "torch.device | str | None" = None, seed: int = 0, progress: bool | None = None,
                  **options: Any) -> EditMetrics:
    """Apply each edit (``inputs[i]`` → ``targets[i]``) to the original model independently and measure success,
    steps, drawdown on ``test``, latency and robustness to ``perturb`` (default :func:`perturbations`).

    ``editor``: one of ``sgd``, ``momentum``, ``rmsprop``, ``adam`` (with ``max_steps``, ``params`` and the other
    :class:`~netfix.editing.EditorConfig` fields as ``options``; a model from Editable Training uses its learned step
    size, as :func:`netfix.edit` does), or an alternative: ``"finetune"`` (needs ``replay``, training data; options
    in :class:`EditFinetuneConfig`) or ``"lookup-table"``. The model is never changed.
    """
    X, y, test_data = _check(model, inputs, targets, test, editor)
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
        from .editing import editor_spec

        acfg = editor_spec(model, "adaptor", max_steps, None, options)
    elif options:
        raise unknown("option", next(iter(options)), sorted(EditorConfig.__dataclass_fields__), "measure_edits")
    with seeded(seed, dev) as g:
        net, k = model_view(copy_model(model, dev), test_data, "test")
        if acfg is not None:
            from .edits import adaptor_layer

            params = [adaptor_layer(net, acfg, k)]
        with eval_mode(net):
            prep = _Editing(net, test_data, params, dev)
            perturbed = {name: fn(X, g) for name, fn in perturb.items()} if X.ndim >= 2 else {}
            if X.ndim < 4:
                perturbed.pop("shift", None)
            rows = []
            if editor == "lookup-table":
                rows = _lookup_rows(prep, X.to(dev), y.to(dev), {k: v.to(dev) for k, v in perturbed.items()})
            elif editor == "adaptor":
                rows = _adaptor_rows(prep, net, X.to(dev), y.to(dev), {k: v.to(dev) for k, v in perturbed.items()},
                                     acfg, replay, g, progress)
            else:
                bar = _bar(len(X), f"edits ({editor})", progress)
                for i in range(len(X)):
                    x, t = X[i:i + 1].to(dev), y[i:i + 1].to(dev)
                    if editor == "finetune":
                        assert replay is not None  # checked before any work
                        row = _finetune_row(net, prep, x, t, as_data(replay, "replay"), finetune or EditFinetuneConfig(),
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


def _adaptor_rows(prep: _Editing, net: nn.Module, X: torch.Tensor, y: torch.Tensor,
                  perturbed: dict[str, torch.Tensor], cfg: Any, replay: Any, g: torch.Generator,
                  progress: bool | None) -> list[dict[str, Any]]:
    """Each edit = one adaptor entry on the original model (the codebook emptied between edits); its effect on
    the drawdown set is read through the cut's tail, which calls the adapted layer and so its codebook."""
    from . import edits as history
    from .card import of as card_of
    from .editing import REHEARSAL_SIZE, prepare, rehearsal_batch

    layer = prep.prefixes[0]
    rng = card_of(net).data or {}
    value_range = (float(rng["range"][0]), float(rng["range"][1])) if rng.get("range") else None
    job = prepare(net, net, X[:1], y[:1])
    control = rehearsal_batch(replay, job, REHEARSAL_SIZE, 0, X.device) if replay is not None else None
    ctrl = history.rehearsal_keys(net, job.view, layer, control) if control is not None else None
    rows = []
    bar = _bar(len(X), "edits (adaptor)", progress)
    for i in range(len(X)):
        mem = history.memory_of(net)
        if mem is not None:
            mem.detach(net)
            delattr(net, history.MEMORY)
        start = time.perf_counter()
        _, reached = history.adapt(net, job.view, X[i:i + 1], y[i:i + 1], cfg, layer, ctrl, value_range, g, "")
        latency = time.perf_counter() - start
        row = {"success": bool(reached[0]) if reached is not None else prep.reached(prep.original, X[i:i + 1],
                                                                                   y[i:i + 1]),
               "steps": 0, "latency_ms": 1000 * latency, "drawdown": prep.base_acc - prep.accuracy(prep.original)}
        for name, xp in perturbed.items():
            row[f"holds_{name}"] = prep.reached(prep.original, xp[i:i + 1], y[i:i + 1])
        rows.append(row)
        bar.update(1)
    bar.close()
    mem = history.memory_of(net)
    if mem is not None:
        mem.detach(net)
        delattr(net, history.MEMORY)
    return rows


def _lookup_rows(prep: _Editing, X: torch.Tensor, y: torch.Tensor, perturbed: dict[str, torch.Tensor]
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


def _finetune_row(net: nn.Module, prep: _Editing, x: torch.Tensor, t: torch.Tensor, replay: LabeledData,
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


def sequential_edits(model: nn.Module, inputs: Any, targets: Any, test: DataLike, *, editor: str = "rmsprop",
                     max_steps: int = 10, params: "Sequence[str] | None" = None,
                     device: "torch.device | str | None" = None, seed: int = 0, progress: bool | None = None,
                     **options: Any) -> list[dict[str, Any]]:
    """Apply the edits one after another to the same model (each edit starts from the previous edit's result,
    with a fresh editor state). Returns one record per edit: ``edits`` (how many applied), ``drawdown`` (points
    lost on ``test`` against the original model), ``success`` (this edit reached its target), ``held`` (% of the
    edits so far whose target is still the argmax) and ``steps``."""
    X, y, test_data = _check(model, inputs, targets, test, editor)
    if editor not in EDITORS:
        raise ConfigError(f"editor: sequential_edits runs an editor ({', '.join(EDITORS)}); got {editor!r}.")
    cfg = editor_config(model, editor, max_steps, params, options)
    dev = resolve_device(device)
    out = []
    with seeded(seed, dev):
        net = copy_model(model, dev)
        with eval_mode(net):
            prep = _Editing(net, test_data, cfg.params, dev)
            Xd, yd = X.to(dev), y.to(dev)
            with torch.no_grad():
                edit_feats = prep.split.features(Xd)
            current = dict(prep.original)
            bar = _bar(len(X), f"sequential edits ({editor})", progress)
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

    ``editor``: ``"adaptor"`` (an editing session, :class:`netfix.edits.Session`, with ``options`` its
    :class:`~netfix.edits.AdaptorConfig`), a gradient editor (each edit from the previous one's result, fresh
    editor state; with ``rehearsal``, a KL term keeps the original model's predictions on a rehearsal batch, as
    :func:`netfix.edit` does) or ``"lookup-table"``. ``rehearsal``: retained data (e.g. the training set), sampled
    down as :func:`netfix.edit` samples it. The model is never changed."""
    from .editing import REHEARSAL_SIZE, prepare, rehearsal_batch
    from .edits import SESSION_REHEARSAL, Session, size_bytes
    from .validation import check_scalar

    X, y, test_data = _check(model, inputs, targets, test, editor)
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
        perturbed = {name: fn(X, g).to(dev) for name, fn in perturb.items()} if X.ndim >= 2 else {}
        if X.ndim < 4:
            perturbed.pop("shift", None)
        session = None
        if editor == "adaptor":
            session = Session(model, rehearsal=rehearsal, rehearsal_size=SESSION_REHEARSAL, device=dev, seed=seed,
                              **options)
            net, k = model_view(session.model, test_data, "test")
            from .edits import adaptor_layer

            names: "Sequence[str] | None" = [adaptor_layer(session.model, session.spec, k)]
        else:
            net, _ = model_view(copy_model(model, dev), test_data, "test")
            names = cfg.params if cfg is not None else params
        with eval_mode(net):
            prep = _Editing(net, test_data, names, dev)
            with torch.no_grad():
                feats = {"held": prep.split.features(Xd), **{n: prep.split.features(v) for n, v in perturbed.items()}}
            control_in = reference = None
            if cfg is not None and rehearsal is not None:
                job = prepare(net, net, X[:1], y[:1])
                control = rehearsal_batch(rehearsal, job, REHEARSAL_SIZE, seed, dev)
                with torch.no_grad():
                    reference = F.log_softmax(job.view(control), 1)
                    control_in = prep.split.features(control)
            current = dict(prep.original)
            table = LookupTable(net) if editor == "lookup-table" else None
            kept = sum(v.numel() * v.element_size() for v in prep.original.values())
            window: list[tuple[float, bool]] = []
            bar = _bar(len(X), f"lifelong edits ({editor})", progress)
            for i in range(len(X)):
                x, t = X[i:i + 1], y[i:i + 1]
                if session is not None:
                    res = session.edit(x, t)
                    window.append((res.seconds, bool(res.success[0])))
                elif table is not None:
                    start = time.perf_counter()
                    table.add(x, t)
                    window.append((time.perf_counter() - start, True))
                else:
                    assert cfg is not None
                    start = time.perf_counter()
                    params_ = {n: v.detach().clone().requires_grad_(True) for n, v in current.items()}
                    with torch.no_grad():
                        f = prep.split.features(Xd[i:i + 1])
                    current, _, _ = run_editor(prep.split.tail, params_, f, yd[i:i + 1], cfg,
                                               rehearsal=control_in, reference=reference)
                    latency = time.perf_counter() - start
                    window.append((latency, prep.reached(current, Xd[i:i + 1], yd[i:i + 1])))
                bar.update(1)
                if (i + 1) % every and i + 1 != len(X):
                    continue
                done = i + 1
                if table is not None:
                    with torch.no_grad():
                        acc_logits = table.override(prep.X, prep.logits(prep.original, prep.feats))
                        acc = 100.0 * float((acc_logits.argmax(1) == prep.y).float().mean())
                        holds = {n: 100.0 * float((table.override(
                            v[:done], prep.logits(prep.original, tuple(f[:done] for f in feats[n]))).argmax(1)
                            == yd[:done]).float().mean()) for n, v in (("held", Xd), *perturbed.items())}
                    added = 40 * len(table.table)  # a 32-byte digest and its target per entry
                else:
                    acc = prep.accuracy(current)
                    holds = {n: 100.0 * float((prep.logits(current, tuple(f[:done] for f in fs)).argmax(1)
                                               == yd[:done]).float().mean()) for n, fs in feats.items()}
                    added = size_bytes(session.model) if session is not None else kept
                out.append({"edits": done, "test_acc": acc, "drawdown": prep.base_acc - acc,
                            "held": holds.pop("held"), **{f"holds_{n}": v for n, v in holds.items()},
                            "success": 100.0 * sum(ok for _, ok in window) / len(window),
                            "latency_ms": 1000 * statistics.median(s for s, _ in window), "bytes": added})
                window = []
            bar.close()
    return out


def _bar(total: int, desc: str, progress: bool | None) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, disable=not show_progress(progress), leave=False)

