"""Editing single predictions: :func:`edit` makes given targets the argmax for given inputs, by a few steps of a
gradient editor (:mod:`.editor`) on a chosen subset of parameters, or by the adaptor's codebook (:mod:`.adaptor`),
and enters the edit in the model's history (:mod:`.history`). Models run in eval mode: BatchNorm uses its running
statistics, which an edit never changes. (The module is ``apply``, not ``edit``: the package exports the function
:func:`edit`, which would hide a submodule of that name.)

Example:
    >>> out = netfix.edit(model, test.X[:1], torch.tensor([3]), editor="rmsprop")
    >>> out.success, out.steps
    ([True], 2)
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ... import card
from ..._runtime import check_model, copy_model, eval_mode, resolve_device, seeded
from ...data import DataLike, as_data, check_range
from ...errors import ConfigError, DataError, DataTypeError, unknown
from ...gradients import param_names
from ...models.split import FrozenSplit
from ...streaming import DictBatch, move
from ...training import Outcome, model_view
from ...validation import check_scalar, check_seed
from .adaptor import AdaptorConfig, adapt, adaptor_layer, input_range, rehearsal_keys
from .editor import EditorConfig, editor_config, editors, run_editor
from .history import inputs_digest, record_weight_edit
from .surgery import default_edit_params

__all__ = ["LIFELONG", "REHEARSAL_SIZE", "EditOutcome", "EditJob", "edit", "editor_spec", "prepare",
           "rehearsal_batch", "apply_edit"]

LIFELONG = tuple(n for n, e in editors.items() if e.direction is None)  # editors that change no weight (the adaptor)
REHEARSAL_SIZE = 128     # retained inputs an edit rehearses at most (a larger set is sampled down, seeded)


@dataclass
class EditOutcome(Outcome):
    """An :class:`~netfix.training.Outcome` plus ``success`` (one bool per edited input: its target is the argmax
    after the edit) and ``steps`` (editor steps taken)."""

    success: list[bool] = field(default_factory=list)
    steps: int = 0


def _tensor(value: Any, argument: str) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value
    try:
        return torch.as_tensor(value)
    except (TypeError, ValueError, RuntimeError) as e:
        raise DataTypeError(f"{argument}: expected a tensor or array; got {type(value).__name__} ({e}). Fix: pass a "
                            "torch.Tensor or numpy array.") from None


def _inputs(value: Any) -> "torch.Tensor | dict[str, torch.Tensor]":
    """The edit's inputs: a batch tensor, or a dict of equally long batch tensors (a model's keyword inputs)."""
    if isinstance(value, Mapping):
        if not value:
            raise DataError("inputs: an empty dict; expected the model's inputs, e.g. {'input_ids': ..., "
                            "'attention_mask': ...}.")
        keyed = {str(k): _tensor(v, f"inputs[{k!r}]") for k, v in value.items()}
        lengths = {k: (len(v) if v.ndim else 0) for k, v in keyed.items()}
        if len(set(lengths.values())) != 1 or 0 in lengths.values():
            raise DataError(f"inputs: the dict's tensors must be batches of one length; got lengths {lengths}. Fix: "
                            "pass every input as (N, ...), e.g. x[None] for one input.")
        return keyed
    batch = _tensor(value, "inputs")
    if batch.ndim == 0:
        raise DataError("inputs: expected a batch (N, *input shape); got a single number. Fix: pass inputs as a "
                        "batch, e.g. x[None] for one input.")
    return batch


def _signature(x: Any) -> Any:
    """The per-sample shape of a batch (a dict of them for dict inputs)."""
    if isinstance(x, Mapping):
        return {k: tuple(v.shape[1:]) for k, v in x.items()}
    return tuple(x.shape[1:])


def edit(model: nn.Module, inputs: Any, targets: Any, editor: str = "rmsprop", max_steps: int = 10,
         params: "Sequence[str] | None" = None, *, rehearsal: DataLike | None = None,
         rehearsal_size: int = REHEARSAL_SIZE, device: "torch.device | str | None" = None, seed: int = 0,
         **options: Any) -> EditOutcome:
    """Make ``targets`` the predictions for ``inputs``; returns a new model (the caller's is not changed).

    ``editor``: a gradient editor (``sgd``, ``momentum``, ``rmsprop``, ``adam``) takes at most ``max_steps`` steps
    on the parameters under the module prefixes ``params`` (None: :func:`default_edit_params`); ``"adaptor"`` adds
    one key-value entry per input at one layer and changes no weight (:mod:`netfix.edits`: edits that accumulate
    by the thousand, each removable exactly; ``max_steps`` and ``params`` do not apply).

    ``inputs``: (N, *input shape), several edits at once — or, for a model taking keyword inputs (tokenized
    text), a dict of (N, ...) tensors such as ``{"input_ids": ..., "attention_mask": ...}``; ``targets``: N class
    indices. ``rehearsal``: retained data (a tensor of inputs, or data whose labels are ignored) the edit must
    leave alone — a gradient editor keeps its predictions close to the original's (KL, weight ``c_loc``), the
    adaptor keeps its keys clear of it; a larger set is sampled down to ``rehearsal_size`` inputs (seeded), so
    pass the whole training set. ``options``: the other :class:`EditorConfig` fields (lr, momentum, beta, betas,
    eps, c_loc, ...) or, for the adaptor, :class:`~.adaptor.AdaptorConfig`'s. To edit sequentially, edit the
    returned model again; every edit is entered in the model's history (:func:`netfix.edits.list`).

    Example:
        >>> out = netfix.edit(model, x[None], torch.tensor([3]))
        >>> out.model(x[None]).argmax(1)
        tensor([3])
    """
    spec = editor_spec(model, editor, max_steps, params, options)
    seed = check_seed(seed)
    rehearsal_size = check_scalar(rehearsal_size, "rehearsal_size", int, low=1, high=1 << 24, default=REHEARSAL_SIZE)
    check_model(model)
    dev = resolve_device(device)
    with seeded(seed, dev) as generator:
        net = copy_model(model, dev)
        job = prepare(net, model, inputs, targets)
        control = rehearsal_batch(rehearsal, job, rehearsal_size, seed, dev)
        return apply_edit(net, job, spec, control, generator, dev, seed)


@dataclass
class EditJob:
    """Checked edit inputs for one model: the model's logits view, its classes, the inputs as data, on device."""

    view: nn.Module
    num_classes: int
    data: Any
    X: Any               # the inputs as given (for their digest)
    Xd: Any              # on the device
    yd: torch.Tensor


def editor_spec(model: nn.Module, editor: str, max_steps: int, params: "Sequence[str] | None",
                options: dict[str, Any]) -> Any:
    """The checked options of an edit: an :class:`~.editor.EditorConfig`, or an :class:`~.adaptor.AdaptorConfig`.
    An unknown editor is an error listing the registered ones (:data:`~.editor.editors`)."""
    if editors.get(editor).direction is not None:
        return editor_config(model, editor, max_steps, params, options)
    if params is not None:
        raise ConfigError("params: the adaptor changes no parameter; it sits on one layer. Fix: pass "
                          "layer='module name' instead, or leave params out.")
    valid = {f.name for f in dataclasses.fields(AdaptorConfig)}
    for key in options:
        if key not in valid:
            raise unknown("option", key, sorted(valid), "edit(editor='adaptor')")
    return AdaptorConfig(**options)


def prepare(net: nn.Module, model: nn.Module, inputs: Any, targets: Any,
            known: "dict[Any, tuple[nn.Module, int]] | None" = None) -> EditJob:
    """Check the inputs and targets against ``model`` (whose copy ``net`` is edited). ``known``: a cache of the
    model's logits view per input shape (an editing session's: the view is probed once per shape)."""
    dev = next(net.parameters()).device
    y = _tensor(targets, "targets")
    if y.ndim == 0:
        y = y[None]
    X = _inputs(inputs)
    n = len(next(iter(X.values()))) if isinstance(X, dict) else len(X)
    if n != len(y):
        raise DataError(f"targets: {len(y)} targets for {n} inputs; expected one target per input "
                        "(pass inputs as a batch, e.g. x[None] for one input).")
    # a dict batch (tokenized text: input_ids, attention_mask, ...) goes through the same checks as a stream
    data = as_data(DictBatch(X, y), "inputs", stream=True) if isinstance(X, dict) else as_data((X, y), "inputs")
    check_range(data, card.of(model).data, "inputs")
    shape = str(_signature(data.X[:1]))
    if known is not None and shape in known:
        net_view, k = known[shape]
    else:
        net_view, k = model_view(net, data, "inputs")
        if known is not None:
            known[shape] = (net_view, k)
    data = as_data(data, "inputs", num_classes=k)
    if not data.streamed:
        data = data.in_memory("inputs")
    return EditJob(net_view, k, data, X, move(data.X[:], dev), data.y.to(dev))


def rehearsal_batch(rehearsal: Any, job: EditJob, size: int, seed: int, dev: torch.device) -> Any:
    """Retained inputs, sampled down to ``size`` (seeded), on ``dev``; None without."""
    if rehearsal is None:
        return None
    ctrl = as_data((rehearsal, torch.zeros(len(rehearsal), dtype=torch.int64)), "rehearsal") \
        if isinstance(rehearsal, torch.Tensor) else as_data(rehearsal, "rehearsal")
    if len(ctrl) == 0:
        raise DataError("rehearsal: empty; expected retained inputs (or leave rehearsal out).")
    if _signature(ctrl.X[:1]) != _signature(job.data.X[:1]):
        raise DataError(f"rehearsal: inputs have shape {_signature(ctrl.X[:1])} but inputs' have "
                        f"{_signature(job.data.X[:1])}; expected the same shape.")
    if len(ctrl) > size:
        pick = torch.randperm(len(ctrl), generator=torch.Generator().manual_seed(seed))[:size]
        ctrl = ctrl.subset(pick.sort().values, "rehearsal")
    return move(ctrl.X[:], dev)  # NaN/inf refused by as_data (a stream: as it is read)


def apply_edit(net: nn.Module, job: EditJob, spec: Any, control: Any, generator: torch.Generator,
               dev: torch.device, seed: int, rehearsal_keys: Any = None) -> EditOutcome:
    """Edit ``net`` in place (the caller's copy) and wrap it as an :class:`EditOutcome`. ``rehearsal_keys``: the
    adaptor's cached keys of ``control`` (an editing session's), else computed here."""
    start = time.perf_counter()
    n_control = 0 if control is None else len(next(iter(control.values())) if isinstance(control, dict)
                                                  else control)
    run = {"device": str(dev), "seed": seed, "n_inputs": len(job.data), "rehearsal": n_control}
    if isinstance(spec, AdaptorConfig):
        return _adaptor_edit(net, job, spec, control, generator, rehearsal_keys, start, run)
    return _weight_edit(net, job, spec, control, start, run)


def _adaptor_edit(net: nn.Module, job: EditJob, spec: AdaptorConfig, control: Any, generator: torch.Generator,
                  keys: Any, start: float, run: dict[str, Any]) -> EditOutcome:
    """One codebook entry per input (:func:`~.adaptor.adapt`); no weight changes."""
    with eval_mode(net):
        layer = adaptor_layer(net, spec, job.num_classes)
        ctrl = keys
        if ctrl is None and control is not None:
            ctrl = rehearsal_keys(net, job.view, layer, control)
        ids, reached = adapt(net, job.view, job.Xd, job.yd, spec, layer, ctrl, input_range(net), generator,
                             inputs_digest(job.X))
        if reached is None:
            with torch.no_grad():
                reached = (job.view(job.Xd).argmax(1) == job.yd).tolist()
        success = reached
    seconds = time.perf_counter() - start
    net.eval()
    config = {"editor": "adaptor", **asdict(spec), "layer": layer, "device": run["device"], "seed": run["seed"],
              "n_inputs": run["n_inputs"], "edit_ids": ids, "rehearsal": run["rehearsal"]}
    return EditOutcome(model=net, method="edit/adaptor", config=config, seconds=seconds, history=[],
                       success=[bool(s) for s in success], steps=0)


def _weight_edit(net: nn.Module, job: EditJob, cfg: EditorConfig, control: Any, start: float,
                 run: dict[str, Any]) -> EditOutcome:
    """A gradient editor's steps on the edited parameters' tail (:class:`~netfix.models.split.FrozenSplit`),
    entered in the history with the weights it replaced."""
    prefixes = cfg.params if cfg.params is not None else default_edit_params(net, job.num_classes)
    names = param_names(net, prefixes)
    with eval_mode(net):
        chosen = {n: p.detach().clone().requires_grad_(True) for n, p in net.named_parameters() if n in names}
        before = {n: p.detach().clone() for n, p in chosen.items()}
        split = FrozenSplit(job.view, names, job.Xd)
        reference, control_in = None, None
        with torch.no_grad():
            inputs_in = split.features(job.Xd)
            if control is not None:
                reference = F.log_softmax(job.view(control), 1)
                control_in = split.features(control)
        new, steps, history_ = run_editor(split.tail, chosen, inputs_in, job.yd, cfg, rehearsal=control_in,
                                          reference=reference)
        with torch.no_grad():
            for name, p in net.named_parameters():
                if name in new:
                    p.copy_(new[name])
            success = (job.view(job.Xd).argmax(1) == job.yd).tolist()
    seconds = time.perf_counter() - start
    net.eval()
    used = [h["lr"] for h in history_ if "lr" in h]
    ids = []
    if any(not torch.equal(before[n], new[n]) for n in before):
        ids = [record_weight_edit(net, before, {
            "editor": cfg.editor, "params": prefixes, "targets": job.yd.tolist(), "n_inputs": len(job.data),
            "inputs_sha256": inputs_digest(job.X), "steps": steps})]
    config = {**asdict(cfg), "params": prefixes, "lr": used[-1] if used else cfg.lr, "device": run["device"],
              "seed": run["seed"], "n_inputs": run["n_inputs"], "edited_parameters": names, "edit_ids": ids,
              "rehearsal": run["rehearsal"]}
    return EditOutcome(model=net, method=f"edit/{cfg.editor}", config=config, seconds=seconds, history=history_,
                       success=[bool(s) for s in success], steps=steps)
