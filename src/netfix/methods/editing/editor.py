"""The gradient editors: a few steps on a chosen subset of parameters until the targets are the argmax
(Editable Neural Networks, Sinitsin et al. 2020; docs/methods.md §2).

The edit loss is the margin

    l_e(x, t) = max(0, max_{y≠t} log p(y|x) − log p(t|x)),

zero exactly when t is the argmax. Editors (u_i is the update direction, θ ← θ − lr·u_i), each one entry of the
registry :data:`editors`:

- ``sgd``: u = g;
- ``momentum``: m ← μ·m + g, u = m;
- ``rmsprop``: s ← β·s + (1−β)·g² (s = g² at the first step), u = g / √(s + ε);
- ``adam``: bias-corrected first and second moments, u = m̂ / (√v̂ + ε).

The editor is written over a dict of parameter tensors with ``torch.func.functional_call``, so the same steps can
be differentiated through (Editable Training, which trains models to be cheap to edit, builds on it).

Example:
    >>> cfg = EditorConfig(editor="rmsprop", lr=1e-3)
    >>> new, steps, history = run_editor(model, params, x[None], torch.tensor([3]), cfg)
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from ... import card
from ...errors import unknown
from ...registry import Registry
from ...validation import Options, check_choice, option

__all__ = ["Editor", "editors", "EDITORS", "DEFAULT_LR", "MAX_EDIT_STEPS", "EditorConfig", "edit_loss",
           "editor_steps", "run_editor", "editor_config"]

# (g, state, name, step, cfg) -> u: a parameter's update direction from its gradient; moments kept in ``state``
Direction = Callable[[torch.Tensor, dict[str, torch.Tensor], str, int, "EditorConfig"], torch.Tensor]


@dataclass(frozen=True)
class Editor:
    """A registered editor. A gradient editor turns each edited tensor's gradient into its update direction
    (``direction``; ``first`` is the direction of a first step, on whose norm the automatic step is sized). An
    editor without ``direction`` changes no weight (the adaptor, registered by :mod:`.adaptor`)."""

    order: int                                    # where it is listed (EDITORS, choices, the benches' tables)
    summary: str
    lr: float = 0.0                               # the fixed step size (DEFAULT_LR), per step
    direction: "Direction | None" = None
    first: "Callable[[torch.Tensor, EditorConfig], torch.Tensor] | None" = None


def _sgd(g: torch.Tensor, state: dict[str, torch.Tensor], n: str, step: int, cfg: EditorConfig) -> torch.Tensor:
    return g


def _momentum(g: torch.Tensor, state: dict[str, torch.Tensor], n: str, step: int, cfg: EditorConfig
              ) -> torch.Tensor:
    state[n] = g if n not in state else cfg.momentum * state[n] + g
    return state[n]


def _rmsprop(g: torch.Tensor, state: dict[str, torch.Tensor], n: str, step: int, cfg: EditorConfig
             ) -> torch.Tensor:
    sq = g * g
    state[n] = sq if n not in state else cfg.beta * state[n] + (1 - cfg.beta) * sq
    return g / torch.sqrt(state[n] + cfg.eps)


def _adam(g: torch.Tensor, state: dict[str, torch.Tensor], n: str, step: int, cfg: EditorConfig) -> torch.Tensor:
    b1, b2 = cfg.betas
    m = (1 - b1) * g if f"{n}.m" not in state else b1 * state[f"{n}.m"] + (1 - b1) * g
    v = (1 - b2) * g * g if f"{n}.v" not in state else b2 * state[f"{n}.v"] + (1 - b2) * g * g
    state[f"{n}.m"], state[f"{n}.v"] = m, v
    t = step + 1
    return (m / (1 - b1 ** t)) / (torch.sqrt(v / (1 - b2 ** t)) + cfg.eps)


# Fixed step sizes (``lr``), for Editable Training (which trains for one step size) and for callers who pass no
# ``scale``: rmsprop's is the paper's (1e-3); the others were picked on a held-out split of mnist5k's training set
# (MLP, 20 edits to random wrong labels). netfix.edit itself finds its step (EditorConfig.scale): a fixed step was
# 0/20 successful on a confidently trained residual BatchNorm network and cost 30 points on a small ViT.
editors: Registry[Editor] = Registry("editor", "editor")
editors.add("sgd", Editor(order=0, summary="u = g", lr=3e-3, direction=_sgd, first=lambda g, cfg: g))
editors.add("momentum", Editor(order=1, summary="m ← μ·m + g, u = m", lr=5e-4, direction=_momentum,
                               first=lambda g, cfg: g))
editors.add("rmsprop", Editor(order=2, summary="s ← β·s + (1−β)·g², u = g / √(s + ε)", lr=1e-3, direction=_rmsprop,
                              first=lambda g, cfg: g / torch.sqrt(g * g + cfg.eps)))
editors.add("adam", Editor(order=3, summary="bias-corrected moments, u = m̂ / (√v̂ + ε)", lr=1e-3, direction=_adam,
                           first=lambda g, cfg: g / (g.abs() + cfg.eps)))

# the gradient editors, in their listed order
EDITORS = tuple(n for _, n in sorted((e.order, n) for n, e in editors.items() if e.direction is not None))
DEFAULT_LR = {n: editors.get(n).lr for n in EDITORS}
MAX_EDIT_STEPS = 10_000  # an edit that needs more steps than this is not a few-step edit
# The automatic step's first size, relative to the edited weights, and its growth: chosen on validation edits over
# several architectures (benchmarks/zoo_select.py --part edit; docs/results.md).
AUTO_SCALE, AUTO_GROWTH, AUTO_TRIES = 3e-3, 2.0, 8


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


def edit_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per-sample margin loss max(0, max_{y≠t} log p(y|x) − log p(t|x)); zero iff ``targets`` is the argmax
    (ties count as reached)."""
    logp = F.log_softmax(logits, 1)
    target = logp.gather(1, targets[:, None]).squeeze(1)
    others = logp.scatter(1, targets[:, None], float("-inf")).max(1).values
    return F.relu(others - target)


def editor_steps(model: nn.Module, params: dict[str, torch.Tensor], X: "torch.Tensor | tuple[torch.Tensor, ...]",
                 targets: torch.Tensor, cfg: EditorConfig, *,
                 rehearsal: "torch.Tensor | tuple[torch.Tensor, ...] | None" = None,
                 reference: torch.Tensor | None = None, create_graph: bool = False, detach: bool = True,
                 lr: "float | torch.Tensor | None" = None
                 ) -> tuple[dict[str, torch.Tensor], int, list[dict[str, Any]]]:
    """Run the editor on ``params`` (name -> tensor, the edited subset; the rest of the model is fixed) until every
    target is the argmax or ``cfg.max_steps``. Returns the new parameters, the steps taken and a per-step history.
    ``X`` (and ``rehearsal``) may be a tuple of inputs, for a model taking several (the tail of a
    :class:`~netfix.models.split.FrozenSplit`).

    With ``rehearsal`` (a control batch) and ``reference`` (the pre-edit model's log-probabilities on it), each step
    also minimises ``cfg.c_loc`` × KL(reference ‖ edited) there. For training through the editor:
    ``create_graph=True`` differentiates through the update directions too (second order), ``detach=False`` keeps
    the returned tensors connected to ``params`` (first order when ``create_graph`` is False), and ``lr`` may be a
    tensor (a learnable step size)."""
    lr = cfg.step_size if lr is None else lr
    direction = editors.get(cfg.editor).direction
    assert direction is not None  # EditorConfig admits only gradient editors
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
            u = direction(g, state, n, step, cfg)
            new[n] = current[n] - lr * u
        current = {**current, **new}
        steps += 1
    out = {n: t.detach() for n, t in current.items()} if detach else current
    return out, steps, history


def _update_norm(cfg: EditorConfig, grads: "Sequence[torch.Tensor]") -> float:
    """The norm of the editor's first update direction for these gradients."""
    first = editors.get(cfg.editor).first
    assert first is not None  # EditorConfig admits only gradient editors
    total = 0.0
    for g in grads:
        u = first(g, cfg)
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
