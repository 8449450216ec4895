"""Editing single predictions in a few gradient steps (Editable Neural Networks, Sinitsin et al. 2020; docs/methods.md §2).

An edit changes what a model predicts for specific inputs — ``targets`` become the argmax — by a few steps of an
*editor* on a chosen subset of parameters, and stops as soon as every target is reached. The edit loss is the margin

    l_e(x, t) = max(0, max_{y≠t} log p(y|x) − log p(t|x)),

zero exactly when t is the argmax. Editors (u_i is the update direction, θ ← θ − lr·u_i):

- ``sgd``: u = g;
- ``momentum``: m ← μ·m + g, u = m;
- ``rmsprop``: s ← β·s + (1−β)·g² (s = g² at the first step), u = g / √(s + ε);
- ``adam``: bias-corrected first and second moments, u = m̂ / (√v̂ + ε).

The editor is written over a dict of parameter tensors with ``torch.func.functional_call``, so the same steps can
be differentiated through (Editable Training, which trains models to be cheap to edit, builds on it). Models run in
eval mode: BatchNorm uses its running statistics, which an edit never changes.

Example:
    >>> out = netfix.edit(model, test.X[:1], torch.tensor([3]), editor="rmsprop")
    >>> out.success, out.steps
    ([True], 2)
"""

from __future__ import annotations

import copy
import dataclasses
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from ._runtime import check_model, copy_model, eval_mode, resolve_device, seeded
from . import card
from .data import DataLike, as_data, check_range
from .streaming import DictBatch, move
from .errors import ConfigError, DataError, DataTypeError, ModelError, unknown
from .gradients import param_names
from .models import EditBlock
from .training import Outcome, model_view
from .validation import Options, check_choice, check_scalar, check_seed, option

__all__ = ["EDITORS", "LIFELONG", "FINETUNE_RECIPE", "EditorConfig", "editor_config", "FrozenSplit", "EditOutcome", "EditableTraining", "edit",
           "edit_loss", "default_edit_params", "add_edit_block", "editor_steps", "run_editor"]

EDITORS = ("sgd", "momentum", "rmsprop", "adam")
LIFELONG = ("adaptor",)  # editors that change no weight (netfix.edits)
REHEARSAL_SIZE = 128     # retained inputs an edit rehearses at most (a larger set is sampled down, seeded)
MAX_EDIT_STEPS = 10_000  # an edit that needs more steps than this is not a few-step edit
# Fixed step sizes per editor, for Editable Training (which trains for one step size) and for callers who pass no
# ``scale``: rmsprop's is the paper's (1e-3); the others were picked on a held-out split of mnist5k's training set
# (MLP, 20 edits to random wrong labels). netfix.edit itself finds its step (EditorConfig.scale): a fixed step was
# 0/20 successful on a confidently trained residual BatchNorm network and cost 30 points on a small ViT.
DEFAULT_LR = {"sgd": 3e-3, "momentum": 5e-4, "rmsprop": 1e-3, "adam": 1e-3}
# The automatic step's first size, relative to the edited weights, and its growth: chosen on validation edits over
# several architectures (benchmarks/zoo_select.py --part edit; docs/results.md).
AUTO_SCALE, AUTO_GROWTH, AUTO_TRIES = 3e-3, 2.0, 8
# How netfix fine-tunes an inserted edit block (with the rest frozen): the paper's optimiser for editable models
# (Adam 1e-3, gradient clip 10), a cosine schedule; measured in docs/results.md (issue 6).
FINETUNE_RECIPE: dict[str, Any] = {"optimizer": "adam", "lr": 1e-3, "lr_schedule": "cosine", "batch_size": 128, "grad_clip": 10.0}


@dataclass
class EditorConfig(Options):
    """Options of an edit. Units: lr per step; ``c_loc`` weights the rehearsal KL against the edit loss."""

    editor: str = option("rmsprop", "the editor (see the module docstring)", choices=EDITORS)
    max_steps: int = option(10, "editor steps at most (k); the edit stops as soon as every target is reached",
                            unit="steps", low=1, high=MAX_EDIT_STEPS)
    lr: float | None = option(None, "a fixed step size", unit="per step", low=0, high=10, low_open=True,
                              none="automatic: see scale")
    scale: float = option(AUTO_SCALE, "automatic step: the first step moves the edited weights by this fraction of "
                          "their norm; an edit that misses a target within max_steps is retried from the original "
                          "weights with a step ×growth larger, so the smallest tried step that succeeds is kept "
                          "(when none does, the last, largest try)",
                          unit="relative", low=0, high=10, low_open=True)
    growth: float = option(AUTO_GROWTH, "automatic step: factor between tries", low=1, high=100, low_open=True)
    tries: int = option(AUTO_TRIES, "automatic step: tries at most (1 = no growth)", low=1, high=50)
    momentum: float = option(0.9, "μ of the momentum editor", low=0, high=1, high_open=True)
    beta: float = option(0.5, "β of the RMSProp editor (the paper's initial value)", low=0, high=1, high_open=True)
    betas: tuple[float, float] = option((0.9, 0.999), "Adam's moment decays", low=0, high=1, high_open=True)
    eps: float = option(1e-6, "ε in the RMSProp / Adam denominators", low=0, high=1, low_open=True)
    c_loc: float = option(1.0, "weight of KL(original ‖ edited) on the rehearsal batch, when one is given", low=0,
                          high=1e6)
    params: list[str] | None = option(None, "module-name prefixes to edit", none="default_edit_params()")

    @property
    def step_size(self) -> float:
        return float(self.lr if self.lr is not None else DEFAULT_LR[self.editor])


@dataclass
class EditOutcome(Outcome):
    """An :class:`~netfix.training.Outcome` plus ``success`` (one bool per edited input: its target is the argmax
    after the edit) and ``steps`` (editor steps taken)."""

    success: list[bool] = field(default_factory=list)
    steps: int = 0


def edit_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per-sample margin loss max(0, max_{y≠t} log p(y|x) − log p(t|x)); zero iff ``targets`` is the argmax
    (ties count as reached)."""
    logp = F.log_softmax(logits, 1)
    target = logp.gather(1, targets[:, None]).squeeze(1)
    others = logp.scatter(1, targets[:, None], float("-inf")).max(1).values
    return F.relu(others - target)


_NORMS = (nn.modules.batchnorm._BatchNorm, nn.LayerNorm, nn.GroupNorm, nn.modules.instancenorm._InstanceNorm)


def default_edit_params(model: nn.Module, num_classes: "int | None" = None) -> list[str]:
    """The default part of a model to edit. A model with an edit block (:func:`add_edit_block`) is edited at the
    block's output projection, ``edit_block.out``: on Fashion-MNIST's ResNet-8 that costs a fifth to a sixth of the
    drawdown of editing ``layer3`` + ``fc`` (docs/results.md, issue 6). Otherwise its classifier head: the last
    ``nn.Linear`` with ``num_classes`` outputs (``fc`` of netfix's models, ``classifier`` of a Hugging Face model);
    without one, the last module holding parameters that is not a normalisation layer."""
    block = getattr(model, "edit_block", None)
    if isinstance(block, EditBlock) and block.out.weight.requires_grad:
        return ["edit_block.out"]
    linears = [n for n, m in model.named_modules() if isinstance(m, nn.Linear) and m.weight.requires_grad
               and (num_classes is None or m.out_features == num_classes)]
    if linears:
        return linears[-1:]
    owners = [n for n, m in model.named_modules() if n and not isinstance(m, _NORMS)
              and any(p.requires_grad for p in m.parameters(recurse=False))]
    return owners[-1:] if owners else [n.rsplit(".", 1)[0] for n, _ in model.named_parameters()][-1:]


def add_edit_block(model: nn.Module, hidden: int = 1024, seed: int = 0) -> nn.Module:
    """A copy of ``model`` with an :class:`~netfix.models.EditBlock` of ``hidden`` units inserted before its
    classifier — the part Editable Training then trains and edits (Sinitsin et al.'s ImageNet recipe: a trained
    network, a new residual block, fine-tuned to be editable). The block's output projection starts at zero, so the
    copy computes exactly what ``model`` does; ``seed`` draws its input projection. ``model`` must be a netfix
    reference architecture (:func:`netfix.models.build`, or :func:`netfix.load` of one), whose saved files then
    rebuild the block; the caller's model is not changed.

    Example:
        >>> m = add_edit_block(trained, hidden=1024)
        >>> out = netfix.train(m, train_set, epochs=10, params=["edit_block"], editable=EditableTraining())
    """
    from . import models

    check_model(model)
    hidden = check_scalar(hidden, "hidden", int, low=1, high=1 << 20, default=1024)
    seed = check_seed(seed)
    info = card.of(model)
    spec = info.architecture
    if not isinstance(spec, dict) or spec.get("name") not in ("mlp", "lenet", "resnet", "resnet18", "vit"):
        raise ModelError("model: add_edit_block needs a netfix reference architecture (mlp, lenet or resnet, from "
                         "netfix.models.build or netfix.load). Fix: for your own module, put "
                         "netfix.models.EditBlock(width, hidden) before its classifier and train it.")
    kwargs = dict(spec.get("kwargs", {}))
    if kwargs.get("edit_block"):
        raise ConfigError(f"model: already has an edit block of {kwargs['edit_block']} units; edit or train it "
                          "as it is.")
    kwargs["edit_block"] = hidden
    if info.input_shape is None or info.num_classes is None:
        raise ModelError("model: its card records no input shape or classes, so its architecture cannot be rebuilt "
                         "with a block. Fix: build it with netfix.models.build or load it with netfix.load.")
    fresh = models.build(spec["name"], info.input_shape, info.num_classes, seed=seed, **kwargs)
    missing, unexpected = fresh.load_state_dict(model.state_dict(), strict=False)
    if unexpected or any(not k.startswith("edit_block.") for k in missing):
        raise ModelError(f"model: its weights do not match its architecture {spec['name']} (missing "
                         f"{[k for k in missing if not k.startswith('edit_block.')]}, unexpected {unexpected}).")
    card.update(fresh, recipe=copy.deepcopy(info.recipe), data=copy.deepcopy(info.data))
    device = next(model.parameters()).device
    return fresh.to(device).train(model.training)


class FrozenSplit:
    """``model`` cut where the edited parameters start: ``model(x) == tail(*prefix(x))``, where ``prefix`` holds no
    edited parameter. An edit only changes the tail, so the prefix's outputs are computed once per input and reused
    by every editor step and every evaluation of an edited model — for netfix's ResNet edited at ``layer3``, most of
    the network's cost is paid once instead of at every step.

    Built by tracing the model with ``torch.fx``: a node is in the tail when it calls an edited module (or reads an
    edited parameter) or uses a tail node's output; the prefix outputs every other node the tail reads. The cut is
    checked on ``example`` inputs (eval mode) and, when the model can't be traced or the check fails, the split is
    the whole model (``prefix`` the identity): always correct, only slower. The tail shares the model's modules, so
    it sees the model's parameters and ``functional_call`` with the model's parameter names works on it.
    """

    def __init__(self, model: nn.Module, names: "Sequence[str]", example: torch.Tensor) -> None:
        self.model, self.exact = model, False
        self.prefix: Any = None
        self.tail: nn.Module = model
        try:
            self._trace(model, set(names))
        except Exception:  # untraceable (data-dependent control flow, ...): the whole model is the tail
            self.prefix, self.tail = None, model
            return
        with eval_mode(model), torch.no_grad():
            want = model(example)
            got = self.tail(*self.features(example))
        if got.shape != want.shape or not torch.allclose(got, want, rtol=1e-4, atol=1e-5):
            self.prefix, self.tail = None, model
        else:
            self.exact = True

    def _trace(self, model: nn.Module, names: set[str]) -> None:
        import torch.fx as fx

        gm = fx.symbolic_trace(model)
        owners = {n.rsplit(".", 1)[0] for n in names}

        def edited_module(target: str) -> bool:
            return any(target == o or o.startswith(target + ".") or target.startswith(o + ".") for o in owners)

        tail_nodes: set[fx.Node] = set()
        for node in gm.graph.nodes:
            if node.op == "call_module" and edited_module(node.target) or node.op == "get_attr" and \
                    node.target in names or node.op not in ("placeholder", "output", "get_attr") and \
                    any(a in tail_nodes for a in node.all_input_nodes):
                tail_nodes.add(node)
        output = next(n for n in gm.graph.nodes if n.op == "output")
        if not any(a in tail_nodes for a in output.all_input_nodes):
            raise ValueError("the output does not depend on the edited parameters")
        boundary: list[fx.Node] = []
        for node in list(tail_nodes) + [output]:
            for a in node.all_input_nodes:
                if a not in tail_nodes and a.op != "get_attr" and a not in boundary:
                    boundary.append(a)
        order = {n: i for i, n in enumerate(gm.graph.nodes)}
        boundary.sort(key=order.__getitem__)
        tail_graph, env = fx.Graph(), {}
        for b in boundary:
            env[b] = tail_graph.placeholder(f"cut_{b.name}")
        for node in gm.graph.nodes:
            if node in tail_nodes or node is output:
                for a in node.all_input_nodes:
                    if a not in env:  # an untouched attribute (a frozen constant) the tail reads
                        env[a] = tail_graph.node_copy(a, env.__getitem__)
                env[node] = tail_graph.node_copy(node, env.__getitem__)
        needed: set[fx.Node] = set()
        stack = list(boundary)
        while stack:
            node = stack.pop()
            if node not in needed:
                needed.add(node)
                stack.extend(node.all_input_nodes)
        prefix_graph = fx.Graph()
        penv: dict[Any, Any] = {}
        for node in gm.graph.nodes:
            if node in needed or node.op == "placeholder":
                penv[node] = prefix_graph.node_copy(node, penv.__getitem__)
        prefix_graph.output(tuple(penv[b] for b in boundary))
        self.prefix = fx.GraphModule(gm, prefix_graph)
        self.tail = fx.GraphModule(gm, tail_graph)

    def features(self, X: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The tail's inputs for ``X`` (the prefix's outputs; ``(X,)`` when the split is the whole model)."""
        if self.prefix is None:
            return (X,)
        out = self.prefix(X)
        return tuple(out) if isinstance(out, (tuple, list)) else (out,)

    def batched_features(self, X: torch.Tensor, batch_size: int = 512) -> tuple[torch.Tensor, ...]:
        """:meth:`features` for a large set, in batches, without gradients (eval mode is the caller's)."""
        with torch.no_grad():
            parts = [self.features(X[i:i + batch_size]) for i in range(0, len(X), batch_size)]
        return tuple(torch.cat(p) for p in zip(*parts)) if parts else (X[:0],)


def editor_steps(model: nn.Module, params: dict[str, torch.Tensor], X: "torch.Tensor | tuple[torch.Tensor, ...]",
                 targets: torch.Tensor, cfg: EditorConfig, *,
                 rehearsal: "torch.Tensor | tuple[torch.Tensor, ...] | None" = None,
                 reference: torch.Tensor | None = None, create_graph: bool = False, detach: bool = True,
                 lr: "float | torch.Tensor | None" = None
                 ) -> tuple[dict[str, torch.Tensor], int, list[dict[str, Any]]]:
    """Run the editor on ``params`` (name -> tensor, the edited subset; the rest of the model is fixed) until every
    target is the argmax or ``cfg.max_steps``. Returns the new parameters, the steps taken and a per-step history.
    ``X`` (and ``rehearsal``) may be a tuple of inputs, for a model taking several (the tail of a
    :class:`FrozenSplit`).

    With ``rehearsal`` (a control batch) and ``reference`` (the pre-edit model's log-probabilities on it), each step
    also minimises ``cfg.c_loc`` × KL(reference ‖ edited) there. For training through the editor:
    ``create_graph=True`` differentiates through the update directions too (second order), ``detach=False`` keeps
    the returned tensors connected to ``params`` (first order when ``create_graph`` is False), and ``lr`` may be a
    tensor (a learnable step size)."""
    lr = cfg.step_size if lr is None else lr
    args = X if isinstance(X, tuple) else (X,)
    control = rehearsal if isinstance(rehearsal, tuple) or rehearsal is None else (rehearsal,)
    state: dict[str, torch.Tensor] = {}
    history: list[dict[str, Any]] = []
    names = list(params)
    steps = 0
    current = dict(params)
    for step in range(cfg.max_steps + 1):
        logits = functional_call(model, current, args)
        losses = edit_loss(logits, targets)
        reached = bool((losses <= 0).all())
        history.append({"step": step, "edit_loss": float(losses.detach().mean()), "reached": int((losses <= 0).sum())})
        if reached or step == cfg.max_steps:
            break
        loss = losses.sum()
        if control is not None and reference is not None and cfg.c_loc > 0:
            logp = F.log_softmax(functional_call(model, current, control), 1)
            loss = loss + cfg.c_loc * F.kl_div(logp, reference, log_target=True, reduction="batchmean")
        grads = torch.autograd.grad(loss, [current[n] for n in names], create_graph=create_graph)
        new = {}
        for n, g in zip(names, grads):
            if cfg.editor == "sgd":
                u = g
            elif cfg.editor == "momentum":
                state[n] = g if n not in state else cfg.momentum * state[n] + g
                u = state[n]
            elif cfg.editor == "rmsprop":
                sq = g * g
                state[n] = sq if n not in state else cfg.beta * state[n] + (1 - cfg.beta) * sq
                u = g / torch.sqrt(state[n] + cfg.eps)
            else:
                b1, b2 = cfg.betas
                m = (1 - b1) * g if f"{n}.m" not in state else b1 * state[f"{n}.m"] + (1 - b1) * g
                v = (1 - b2) * g * g if f"{n}.v" not in state else b2 * state[f"{n}.v"] + (1 - b2) * g * g
                state[f"{n}.m"], state[f"{n}.v"] = m, v
                t = step + 1
                u = (m / (1 - b1 ** t)) / (torch.sqrt(v / (1 - b2 ** t)) + cfg.eps)
            new[n] = current[n] - lr * u
        current = {**current, **new}
        steps += 1
    out = {n: t.detach() for n, t in current.items()} if detach else current
    return out, steps, history


def _update_norm(cfg: EditorConfig, grads: "Sequence[torch.Tensor]") -> float:
    """The norm of the editor's first update direction for these gradients."""
    total = 0.0
    for g in grads:
        if cfg.editor in ("sgd", "momentum"):
            u = g
        elif cfg.editor == "rmsprop":
            u = g / torch.sqrt(g * g + cfg.eps)
        else:
            u = g / (g.abs() + cfg.eps)
        total += float((u * u).sum())
    return math.sqrt(total)


def run_editor(model: nn.Module, params: dict[str, torch.Tensor], X: "torch.Tensor | tuple[torch.Tensor, ...]",
               targets: torch.Tensor, cfg: EditorConfig, *,
               rehearsal: "torch.Tensor | tuple[torch.Tensor, ...] | None" = None,
               reference: torch.Tensor | None = None) -> tuple[dict[str, torch.Tensor], int, list[dict[str, Any]]]:
    """:func:`editor_steps` at ``cfg.lr`` when one is set; else with the automatic step: the first step moves the
    edited weights by ``cfg.scale`` of their norm, and an edit that misses a target within ``cfg.max_steps`` is
    retried from the original weights with a step ``cfg.growth`` times larger, up to ``cfg.tries`` times — so the
    kept edit is the one made with the smallest tried step that reaches every target (the least change). Steps
    count every try."""
    if cfg.lr is not None:
        return editor_steps(model, params, X, targets, cfg, rehearsal=rehearsal, reference=reference)
    args = X if isinstance(X, tuple) else (X,)
    names = list(params)
    losses = edit_loss(functional_call(model, params, args), targets)
    if bool((losses <= 0).all()):
        return {n: t.detach() for n, t in params.items()}, 0, [{"step": 0, "reached": len(targets), "lr": 0.0}]
    grads = torch.autograd.grad(losses.sum(), [params[n] for n in names])
    weights = math.sqrt(sum(float((params[n].detach() ** 2).sum()) for n in names)) or 1.0
    lr = cfg.scale * weights / max(_update_norm(cfg, grads), 1e-12)
    total, history = 0, []
    for attempt in range(cfg.tries):
        new, steps, hist = editor_steps(model, params, X, targets, cfg, rehearsal=rehearsal, reference=reference,
                                        lr=lr)
        total += steps
        history += [{**h, "lr": lr, "try": attempt + 1} for h in hist]
        if hist[-1]["reached"] == len(targets) or attempt == cfg.tries - 1:
            return new, total, history
        lr *= cfg.growth
    raise AssertionError("unreachable")


def editor_config(model: nn.Module, editor: str, max_steps: int, params: "Sequence[str] | None",
                  options: dict[str, Any]) -> EditorConfig:
    """The editor's options for ``model``: a model from Editable Training is edited where it was trained to be
    (its ``params``, unless given) and, with the editor it was trained for, at the step size it learned (unless
    ``lr`` is given)."""
    editor = check_choice(editor, "editor", EDITORS, default="rmsprop")  # before it is compared with the model's
    valid = {f.name for f in dataclasses.fields(EditorConfig)} - {"editor", "max_steps", "params"}
    for key in options:
        if key not in valid:
            raise unknown("option", key, sorted(valid), "edit")
    options = dict(options)
    trained_for = card.of(model).editor or {}
    if "lr" not in options and trained_for.get("editor") == editor:  # the step size Editable Training learned
        options["lr"] = float(trained_for["lr"])
    if params is None and trained_for.get("params"):  # the part Editable Training made editable
        params = trained_for["params"]
    return EditorConfig(editor=editor, max_steps=max_steps, params=params, **options)  # type: ignore[arg-type]


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
    eps, c_loc, ...) or, for the adaptor, :class:`netfix.edits.AdaptorConfig`'s. To edit sequentially, edit the
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
    """The checked options of an edit: an :class:`EditorConfig`, or an :class:`netfix.edits.AdaptorConfig`."""
    from . import edits as history

    if not isinstance(editor, str) or editor not in EDITORS + LIFELONG:
        raise unknown("editor", editor, list(EDITORS + LIFELONG), "editor")
    if editor != "adaptor":
        return editor_config(model, editor, max_steps, params, options)
    if params is not None:
        raise ConfigError("params: the adaptor changes no parameter; it sits on one layer. Fix: pass "
                          "layer='module name' instead, or leave params out.")
    valid = {f.name for f in dataclasses.fields(history.AdaptorConfig)}
    for key in options:
        if key not in valid:
            raise unknown("option", key, sorted(valid), "edit(editor='adaptor')")
    return history.AdaptorConfig(**options)


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
    from . import edits as history

    start = time.perf_counter()
    n_control = 0 if control is None else len(next(iter(control.values())) if isinstance(control, dict)
                                                  else control)
    if isinstance(spec, history.AdaptorConfig):
        rng = card.of(net).data or {}
        value_range = (float(rng["range"][0]), float(rng["range"][1])) if rng.get("range") else None
        with eval_mode(net):
            layer = history.adaptor_layer(net, spec, job.num_classes)
            ctrl = rehearsal_keys
            if ctrl is None and control is not None:
                ctrl = history.rehearsal_keys(net, job.view, layer, control)
            ids, reached = history.adapt(net, job.view, job.Xd, job.yd, spec, layer, ctrl, value_range, generator,
                                         history.inputs_digest(job.X))
            if reached is None:
                with torch.no_grad():
                    reached = (job.view(job.Xd).argmax(1) == job.yd).tolist()
            success = reached
        seconds = time.perf_counter() - start
        net.eval()
        config = {"editor": "adaptor", **asdict(spec), "layer": layer, "device": str(dev), "seed": seed,
                  "n_inputs": len(job.data), "edit_ids": ids, "rehearsal": n_control}
        return EditOutcome(model=net, method="edit/adaptor", config=config, seconds=seconds, history=[],
                           success=[bool(s) for s in success], steps=0)
    cfg: EditorConfig = spec
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
        ids = [history.record_weight_edit(net, before, {
            "editor": cfg.editor, "params": prefixes, "targets": job.yd.tolist(), "n_inputs": len(job.data),
            "inputs_sha256": history.inputs_digest(job.X), "steps": steps})]
    config = {**asdict(cfg), "params": prefixes, "lr": used[-1] if used else cfg.lr, "device": str(dev), "seed": seed,
              "n_inputs": len(job.data), "edited_parameters": names, "edit_ids": ids, "rehearsal": n_control}
    return EditOutcome(model=net, method=f"edit/{cfg.editor}", config=config, seconds=seconds, history=history_,
                       success=[bool(s) for s in success], steps=steps)


@dataclass
class EditableTraining(Options):
    """Editable Training (docs/methods.md §2): train so that later edits are cheap and local. Each batch adds

        c_edit · l_e(θ̂) + c_loc · KL(p(·|x, θ) ‖ p(·|x, θ̂)),   θ̂ = Edit^k(θ) on one training image with a random
                                                                   wrong label,

    backpropagating through the k unrolled editor steps (second order through ``torch.autograd.grad`` with
    ``create_graph``; ``first_order=True`` drops the second-order terms). Locality is measured on the training batch
    against p(θ) of the base loss's own forward pass (training mode), detached, as the official code does; the edit
    and the edited model run in eval mode (BatchNorm running statistics). The edit term only acts on edits
    that fail (l_e is 0 once the target is the argmax). ``learn_editor_lr`` trains the editor's log step size with the
    model (the paper's way). Measured on Fashion-MNIST (docs/results.md, issue 6): a learned step shrank from 2e-3
    to 1.1e-3, below what edits need within 3 steps, and edits at the larger step kept most of their drawdown;
    holding the step at the one edits will use cut drawdown five-fold, so the step is held by default
    (``learn_editor_lr=True`` learns it). Either way, :func:`edit` uses the step the model was trained for, unless
    given another.

    ``sequential=S`` trains for edits that accumulate: per batch, S edits are applied one after another (each
    from the previous one's result, each on a training image with a random wrong label), the edit term is the mean
    edit loss of all S after the last — the earlier edits must still hold — and locality compares the batch's
    predictions after all S with those before.

    Pass it as ``netfix.train(..., editable=EditableTraining())``. To make a trained model editable, insert an edit
    block and fine-tune only it (and the classifier) — the paper's ImageNet recipe and netfix's measured best:
    ``netfix.train(add_edit_block(model), data, epochs=10, params=["edit_block", "fc"],
    editable=EditableTraining(edit_params=["edit_block.out"], lr=4e-3, learn_editor_lr=False))``. With a frozen
    prefix the loss runs it once per batch (:class:`FrozenSplit`), not at every editor step.
    """

    c_edit: float = option(0.01, "weight of the edit loss after k editor steps", low=0, high=1e6)
    c_loc: float = option(0.01, "weight of KL(before ‖ after the edit) on the training batch", low=0, high=1e6)
    editor: str = option("rmsprop", "the editor trained for (see EDITORS)", choices=EDITORS)
    edit_params: list[str] | None = option(None, "module-name prefixes the editor changes",
                                           none="default_edit_params()")
    max_steps: int = option(10, "editor steps k, unrolled (each one kept in the graph)", unit="steps", low=1,
                            high=1000)
    lr: float | None = option(None, "editor step size to start from", unit="per step", low=0, high=10,
                              low_open=True, none="DEFAULT_LR[editor]")
    learn_editor_lr: bool = option(False, "train log(lr) with the model (the paper's way); the default holds "
                                   "the step: a learned step shrank below what edits need (docs/results.md)")
    first_order: bool = option(False, "True: no second-order terms through the editor (faster, cruder)")
    sequential: int = option(1, "edits applied one after another per batch, each from the previous one's result; "
                             "the edit loss asks all of them to still hold after the last, and locality is measured "
                             "after the last (training for accumulated edits; 1 = the paper's one edit)",
                             unit="edits", low=1, high=64)

    def __post_init__(self) -> None:
        super().__post_init__()
        self._log_lr: torch.Tensor | None = None  # the editor's log step size, created on the training device

    def check(self) -> None:
        if self.c_edit == 0 and self.c_loc == 0:
            raise ConfigError("c_edit, c_loc: expected at least one weight > 0; got both 0, so Editable Training "
                              "would add nothing to the loss. Fix: set c_edit=0.01 and c_loc=0.01 (the defaults), "
                              "or train without editable=.")

    def editor_config(self) -> EditorConfig:
        return EditorConfig(editor=self.editor, max_steps=self.max_steps, lr=self.lr)

    def parameters(self, device: torch.device) -> list[torch.Tensor]:
        """The editor's trainable parameters (its log step size), created on ``device``."""
        if self._log_lr is None or self._log_lr.device != device:
            start = math.log(self.editor_config().step_size)
            self._log_lr = torch.tensor(start, device=device, requires_grad=self.learn_editor_lr)
        return [self._log_lr] if self.learn_editor_lr else []

    @property
    def editor_lr(self) -> float:
        return float(self._log_lr.detach().exp()) if self._log_lr is not None else self.editor_config().step_size

    def describe(self) -> dict[str, Any]:
        """The options and the editor step the model was trained for (the run's ``config["editable"]``)."""
        return {**asdict(self), "editor_lr": self.editor_lr}

    def card_fields(self) -> dict[str, Any]:
        """The editor the trained model records on its card, so that ``netfix.edit`` uses it by default."""
        return {"editor": {"editor": self.editor, "lr": self.editor_lr, "params": self.edit_params,
                           "max_steps": self.max_steps}}

    def loss_fn(self, model: nn.Module, generator: torch.Generator, num_classes: int):  # type: ignore[no-untyped-def]
        """The training loss for :func:`netfix.training.fit`: cross-entropy + the edit and locality terms."""
        names = param_names(model, self.edit_params if self.edit_params is not None else default_edit_params(model))
        cfg = self.editor_config()
        log_lr = self.parameters(next(model.parameters()).device)[0] if self.learn_editor_lr else None

        trainable = {n for n, p in model.named_parameters() if p.requires_grad}
        cut: dict[str, Any] = {}  # the FrozenSplit, built on the first batch

        def split_for(m: nn.Module, X: torch.Tensor) -> "FrozenSplit | None":
            """A cut below every trained or edited parameter, when the model has a frozen prefix (a fine-tune such
            as ``train(..., params=["edit_block"])``) and runs unwrapped: its features are then computed once per
            batch instead of at every editor step. Under DDP the wrapper must run the forward (gradient sync)."""
            if "split" not in cut:
                frozen = any(not p.requires_grad for p in model.parameters())
                split = FrozenSplit(model, sorted(trainable | set(names)), X[:2]) if frozen and m is model else None
                cut["split"] = split if split is not None and split.exact and split.prefix is not None else None
                # whether the prefix computes differently in eval mode (fit fixes the modes before the first step)
                cut["varies"] = cut["split"] is not None and any(
                    mod.training for mod in cut["split"].prefix.modules()
                    if isinstance(mod, (nn.modules.batchnorm._BatchNorm, nn.Dropout)))
            return cut["split"] if m is model else None

        def loss(m: nn.Module, X: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            split = split_for(m, X)
            net: nn.Module = model  # edits run on the unwrapped model (under DDP, ``m`` is the wrapper)
            if split is not None:  # the prefix holds only frozen parameters: run it once, without gradients
                with torch.no_grad():
                    feats = split.features(X)
                    if cut["varies"]:
                        with eval_mode(m):
                            feats_eval = split.features(X)
                    else:
                        feats_eval = feats
                net, inputs, inputs_eval = split.tail, feats, feats_eval
            else:
                inputs = inputs_eval = (X,)
            logits = net(*inputs) if split is not None else m(X)
            base = F.cross_entropy(logits, y)
            # locality's reference is this forward's own (training-mode) prediction, detached, as in the official
            # code: with an eval-mode reference a BatchNorm model can satisfy locality by making its eval-mode
            # outputs insensitive to everything (measured: held-out accuracy fell to 25-30 % at c_loc = 0.1)
            before = F.log_softmax(logits.detach(), 1)
            chosen = []
            for _ in range(self.sequential):  # the first draw is the one-edit objective's
                i = int(torch.randint(len(y), (1,), generator=generator))
                shift = int(torch.randint(1, num_classes, (1,), generator=generator))
                chosen.append((tuple(t[i:i + 1] for t in inputs_eval), (y[i:i + 1] + shift) % num_classes))
            edited: dict[str, torch.Tensor] = {n: p for n, p in model.named_parameters() if n in names}
            lr = log_lr.exp() if log_lr is not None else None
            with eval_mode(m):
                for x_e, t_e in chosen:  # each edit starts from the previous one's result
                    edited, _, _ = editor_steps(net, edited, x_e, t_e, cfg, create_graph=not self.first_order,
                                                detach=False, lr=lr)
                after = F.log_softmax(functional_call(net, edited, inputs_eval), 1)
                l_e = torch.stack([edit_loss(functional_call(net, edited, x_e), t_e).mean()
                                   for x_e, t_e in chosen]).mean()
            kl = F.kl_div(after, before, log_target=True, reduction="batchmean")
            return base + self.c_edit * l_e + self.c_loc * kl
        return loss
