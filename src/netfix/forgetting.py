"""Forget-and-relearn (Zhou et al., "Fortuitous Forgetting in Connectionist Networks", ICLR 2022; docs/methods.md §3).

Forgetting is a tool: a *forgetting operator* perturbs a trained network so that it loses undesirable information
(memorised noisy labels, atypical examples) disproportionately; *relearning* on the same data, with a restarted
learning-rate schedule, then reinforces what is consistently useful. Repeating the pair for several generations
unifies Knowledge Evolution, iterative magnitude pruning with rewinding and iterated learning.

Operators (each a small object; ``op(model)`` returns a **new** model, the caller's is untouched):

- :class:`LaterLayerReinit` (``llf``): reinitialise every layer from a named one on (BatchNorm kept).
- :class:`KernelReinit` (``ke``): Knowledge Evolution's kernel-level split — keep the first ⌈s·C_out⌉ × ⌈s·C_in⌉
  kernels of each conv/linear layer, reinitialise the rest (s = 0.8).
- :class:`RandomReinit` (``random``): weight-level Bernoulli keep mask (0.5 hidden, 0.75 output layer).
- :class:`MagnitudeRewind` (``imp``): keep the top 30 % of weights by magnitude per layer (the output layer prunes
  half as many), rewind them to their initial values, zero the rest and keep them at zero while relearning.
- :class:`ShrinkPerturb` (``shrink-perturb``): w ← s·w + σ·w_fresh (Ash & Adams, 2020; s = 0.2, σ = 0.3).
- :class:`TargetedReinit` (``targeted``): reinitialise the weights most implicated in the low-margin examples
  (netfix's design; see its docstring for why).

:class:`ForgetRelearn` is a ``schedule=`` of :func:`netfix.train`; :func:`disproportionate_forgetting` is the
paper's analysis (apply an operator to a copy at checkpoints, without relearning, and compare what clean, noisy
and low-margin examples lose). Repair of an already-trained model: ``netfix.relearn(model, data,
method="forget-relearn")``.

Example:
    >>> op = netfix.forgetting.operator("llf:start=body.3")
    >>> out = netfix.train(model, noisy_train, schedule=netfix.forgetting.ForgetRelearn(op, generations=5,
    ...                                                                                  epochs_per_generation=10))
    >>> [h["train_acc"] for h in out.history if "generation" in h and "train_acc" in h]
"""

from __future__ import annotations

import copy
import dataclasses
import math
import time
from dataclasses import dataclass, field, replace
from collections.abc import Callable
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from ._runtime import check_model, eval_mode, model_device, seeded
from .data import DataLike, LabeledData, as_data, batches
from .errors import ConfigError, DataError, ModelError, unknown
from .gradients import squared_gradient_importance
from .validation import MAX_BATCH, MAX_EPOCHS, Options, check_scalar, check_seed, option

__all__ = ["Operator", "LaterLayerReinit", "KernelReinit", "RandomReinit", "MagnitudeRewind", "ShrinkPerturb",
           "TargetedReinit", "ForgetRelearn", "operator", "operators", "layers", "label_margins",
           "disproportionate_forgetting"]

_LAYER_TYPES = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


def layers(model: nn.Module) -> list[tuple[str, Any]]:
    """The model's linear and convolutional layers, in registration order (the last is taken as the output
    layer). Raises a clear error when there are none."""
    out: list[tuple[str, Any]] = [(n, m) for n, m in model.named_modules() if isinstance(m, _LAYER_TYPES)]
    if not out:
        raise ModelError("model: has no nn.Linear / nn.Conv layer for a forgetting operator to act on.")
    return out


def _fresh(model: nn.Module, seed: int) -> dict[str, torch.Tensor]:
    """Fresh initial values (each layer's own ``reset_parameters``, drawn on the CPU so every device gets the
    same numbers) for every linear/conv layer's parameters, keyed by parameter name. The seed is scrambled so that
    a model built with ``seed=s`` does not get its own initial weights back from an operator seeded with s."""
    out: dict[str, torch.Tensor] = {}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed((seed + 1) * 1_000_003 % 2 ** 31)
        for name, layer in layers(model):
            clone = copy.deepcopy(layer).to("cpu")
            clone.reset_parameters()
            for pname, p in clone.named_parameters():
                out[f"{name}.{pname}"] = p.detach()
    return out


@dataclass
class Operator(Options):
    """A forgetting operator. ``op(model, seed=0, data=None)`` returns a new model; subclasses implement
    :meth:`_forget` on a private copy. :meth:`begin` is called once before training from scratch (IMP records the
    initial weights there); :meth:`constrain` after every relearning step (IMP keeps pruned weights at zero)."""

    name: ClassVar[str] = ""
    needs_data: ClassVar[bool] = False   # the operator looks at the training data (targeted)

    def __call__(self, model: nn.Module, seed: int = 0, data: DataLike | None = None) -> nn.Module:
        check_model(model)
        seed = check_seed(seed)
        if self.needs_data and data is None:
            raise DataError(f"data: operator {self.name!r} chooses its weights from the training data; pass data=.")
        d = as_data(data, "data") if data is not None else None
        new = copy.deepcopy(model)
        with torch.no_grad():
            self._forget(new, seed, d)
        return new

    def _forget(self, model: nn.Module, seed: int, data: LabeledData | None) -> None:
        raise NotImplementedError

    def begin(self, model: nn.Module, seed: int) -> None:
        """Called once before training from scratch."""

    def constrain(self, model: nn.Module) -> None:
        """Called after every relearning step."""

    @property
    def has_constraint(self) -> bool:
        return type(self).constrain is not Operator.constrain

    def describe(self) -> dict[str, Any]:
        return {"operator": self.name, **{k: v for k, v in self.__dict__.items() if not k.startswith("_")}}

    @staticmethod
    def _blend(model: nn.Module, keep: dict[str, torch.Tensor], fresh: dict[str, torch.Tensor]) -> None:
        """Parameter ← keep·parameter + (1 − keep)·fresh, for each parameter named in ``keep`` (masks of 0/1)."""
        params = dict(model.named_parameters())
        for name, mask in keep.items():
            p = params[name]
            m = mask.to(p.device, p.dtype)
            p.copy_(m * p + (1 - m) * fresh[name].to(p.device, p.dtype))


@dataclass
class LaterLayerReinit(Operator):
    """``llf``: reinitialise every linear/conv layer from ``start`` on (module name or prefix, e.g. ``"body.3"``
    for netfix's MLP, ``"layer3"`` for its ResNet, ``"fc"`` for the classifier alone), with each layer's default
    initialiser (PyTorch's kaiming-uniform, a = √5). ``None``: the output layer alone. BatchNorm is kept."""

    start: str | None = option(None, "module name or prefix of the first layer to reinitialise",
                               none="the output layer alone")
    name: ClassVar[str] = "llf"

    def targets(self, model: nn.Module) -> list[str]:
        names = [n for n, _ in layers(model)]
        if self.start is None:
            return names[-1:]
        hits = [i for i, n in enumerate(names) if n == self.start or n.startswith(self.start + ".")]
        if not hits:
            raise ConfigError(f"start: {self.start!r} names no linear/conv layer. Valid: {', '.join(names)}.")
        return names[hits[0]:]

    def _forget(self, model: nn.Module, seed: int, data: LabeledData | None) -> None:
        fresh = _fresh(model, seed)
        chosen = self.targets(model)
        keep = {n: torch.zeros_like(p) for n, p in model.named_parameters() if n.rsplit(".", 1)[0] in chosen}
        self._blend(model, keep, fresh)


@dataclass
class KernelReinit(Operator):
    """``ke``: Knowledge Evolution's kernel-level split (KELS). In each linear/conv layer keep the first
    ⌈keep·C_out⌉ output × ⌈keep·C_in⌉ input kernels (and the matching biases), reinitialise the rest. The first
    layer keeps every input (they are the data's channels or pixels) and the output layer every output (the
    classes)."""

    keep: float = option(0.8, "share of each layer's output and input kernels kept (1 = the identity)", low=0,
                         high=1, low_open=True)
    name: ClassVar[str] = "ke"

    def _forget(self, model: nn.Module, seed: int, data: LabeledData | None) -> None:
        fresh = _fresh(model, seed)
        found = layers(model)
        keep: dict[str, torch.Tensor] = {}
        for i, (name, layer) in enumerate(found):
            w = layer.weight
            out_k = w.shape[0] if i == len(found) - 1 else math.ceil(self.keep * w.shape[0])
            in_k = w.shape[1] if i == 0 else math.ceil(self.keep * w.shape[1])
            m = torch.zeros_like(w)
            m[:out_k, :in_k] = 1
            keep[f"{name}.weight"] = m
            if getattr(layer, "bias", None) is not None:
                b = torch.zeros_like(layer.bias)
                b[:out_k] = 1
                keep[f"{name}.bias"] = b
        self._blend(model, keep, fresh)


@dataclass
class RandomReinit(Operator):
    """``random``: each weight and bias survives with probability ``keep`` (``keep_output`` in the output layer)
    and is otherwise redrawn from its layer's initialiser."""

    keep: float = option(0.5, "probability that a hidden layer's weight survives", low=0, high=1)
    keep_output: float = option(0.75, "probability that an output-layer weight survives", low=0, high=1)
    name: ClassVar[str] = "random"

    def _forget(self, model: nn.Module, seed: int, data: LabeledData | None) -> None:
        fresh = _fresh(model, seed)
        g = torch.Generator().manual_seed(seed + 1)
        found = layers(model)
        keep = {}
        for i, (name, layer) in enumerate(found):
            rate = self.keep_output if i == len(found) - 1 else self.keep
            for pname, p in layer.named_parameters():
                keep[f"{name}.{pname}"] = (torch.rand(p.shape, generator=g) < rate).float()
        self._blend(model, keep, fresh)


@dataclass
class MagnitudeRewind(Operator):
    """``imp``: magnitude pruning with rewinding. Keep the ``keep`` share of each layer's weights with the
    largest magnitude (the output layer prunes half as many: it keeps 1 − (1 − keep)/2), zero the others and
    rewind every kept weight and the biases to their initial values; pruned weights stay at zero while
    relearning (:meth:`constrain`). The initial values are the model's weights when a :class:`ForgetRelearn`
    run starts from scratch (:meth:`begin`); an operator that never saw the initialisation (repair of an
    already-trained model) draws one from the layers' initialisers. The mask is recomputed each generation over
    the surviving weights, so the sparsity stays at 1 − keep (one-shot pruning, repeated rewinding)."""

    keep: float = option(0.3, "share of each layer's weights kept (largest magnitude); the output layer keeps "
                         "1 - (1 - keep)/2", low=0, high=1, low_open=True)
    name: ClassVar[str] = "imp"
    _init: dict[str, torch.Tensor] = field(default_factory=dict, repr=False)
    _masks: dict[str, torch.Tensor] = field(default_factory=dict, repr=False)

    def begin(self, model: nn.Module, seed: int) -> None:
        self._init = {f"{n}.{pn}": p.detach().clone() for n, layer in layers(model)
                      for pn, p in layer.named_parameters()}
        self._masks = {}

    def _forget(self, model: nn.Module, seed: int, data: LabeledData | None) -> None:
        if not self._init:
            self._init = _fresh(model, seed)
        found = layers(model)
        params = dict(model.named_parameters())
        masks = {}
        for i, (name, layer) in enumerate(found):
            w = layer.weight
            rate = 1 - (1 - self.keep) / 2 if i == len(found) - 1 else self.keep
            k = max(1, math.ceil(rate * w.numel()))
            threshold = w.detach().abs().flatten().kthvalue(w.numel() - k + 1).values
            masks[f"{name}.weight"] = (w.detach().abs() >= threshold).to(w.dtype)
        for name, init in self._init.items():
            p = params[name]
            p.copy_(init.to(p.device, p.dtype) * masks.get(name, torch.ones_like(p)))
        self._masks = masks

    def constrain(self, model: nn.Module) -> None:
        if not self._masks:
            return
        params = dict(model.named_parameters())
        with torch.no_grad():
            for name, m in self._masks.items():
                params[name].mul_(m.to(params[name].device))

    def sparsity(self) -> float:
        """The share of weights currently pruned (0 before the first forgetting step)."""
        total = sum(m.numel() for m in self._masks.values())
        return 0.0 if not total else 1 - sum(float(m.sum()) for m in self._masks.values()) / total


@dataclass
class ShrinkPerturb(Operator):
    """``shrink-perturb``: every linear/conv parameter ← ``shrink``·w + ``noise``·w_fresh, w_fresh a fresh draw
    of the layer's initialiser (Ash & Adams, NeurIPS 2020): a soft forgetting that keeps the weights' direction
    while restoring the gradients' scale."""

    shrink: float = option(0.2, "factor s on the trained weights (chosen on a validation split, "
                           "benchmarks/forget_relearn_select.py, over 0.4 / 0.7); shrink=1 with noise=0 is the "
                           "identity (the restarted schedule alone, a control)", low=0, high=1)
    noise: float = option(0.3, "scale of the fresh initialisation added (chosen likewise, over 0.1 / 0.05)", low=0,
                          high=1e3)
    name: ClassVar[str] = "shrink-perturb"

    def _forget(self, model: nn.Module, seed: int, data: LabeledData | None) -> None:
        fresh = _fresh(model, seed)
        params = dict(model.named_parameters())
        for name, f in fresh.items():
            p = params[name]
            p.copy_(self.shrink * p + self.noise * f.to(p.device, p.dtype))


def label_margins(model: nn.Module, data: LabeledData, batch_size: int = 1024) -> torch.Tensor:
    """z_y − max_{j≠y} z_j per sample (eval mode): negative where the model disagrees with the label, small where
    it fits the label only barely — the signature of atypical and mislabelled examples."""
    dev = model_device(model)
    out = []
    with eval_mode(model), torch.no_grad():
        for X, y in batches(data, batch_size, None, dev):
            z = model(X)
            zy = z.gather(1, y[:, None]).squeeze(1)
            other = z.scatter(1, y[:, None], float("-inf")).max(1).values
            out.append((zy - other).cpu())
    return torch.cat(out)


@dataclass
class TargetedReinit(Operator):
    """``targeted``: reinitialise the weights the low-margin examples depend on, and little else.

    Memorised noisy labels and atypical examples are the ones a trained network fits with the smallest label
    margin (:func:`label_margins`): their fit rests on a few weights that the bulk of the data does not use.
    Random or layer-wise forgetting hits those weights only by chance; this operator finds them. It splits the
    training data into the ``fraction`` with the lowest margin (*hard*) and the rest (*easy*), estimates each
    weight's importance to either group as the mean squared minibatch gradient of the cross-entropy (a diagonal
    Fisher estimate, as SSD does for unlearning), and in every linear/conv layer from ``start`` on (``None``: all)
    reinitialises the ``reinit`` share of weights with the largest ratio I_hard / (I_easy + ε). Relearning then
    restores the easy examples' features quickly, while the hard examples must be fitted again from scratch —
    which, for noisy labels, is what the network learns last. The margins are recomputed each generation."""

    fraction: float = option(0.1, "share of training examples taken as the hard (low-margin) group", low=0, high=1,
                             low_open=True)
    reinit: float = option(0.5, "share of each layer's weights reinitialised (0.5 beat 0.2 on a validation split)",
                           low=0, high=1, low_open=True)
    start: str | None = option(None, "module name or prefix of the first layer acted on", none="every layer")
    batch_size: int = option(128, "samples per minibatch of the importance estimates", low=1, high=MAX_BATCH)
    name: ClassVar[str] = "targeted"
    needs_data: ClassVar[bool] = True

    def _forget(self, model: nn.Module, seed: int, data: LabeledData | None) -> None:
        assert data is not None
        if len(data) < 2:
            raise DataError("data: the targeted operator needs at least 2 samples to split into hard and easy.")
        margins = label_margins(model, data)
        n_hard = min(len(data) - 1, max(1, round(self.fraction * len(data))))
        order = margins.argsort()
        hard, easy = data.subset(order[:n_hard]), data.subset(order[n_hard:])
        with torch.enable_grad():
            i_hard = squared_gradient_importance(model, hard, self.batch_size)
            i_easy = squared_gradient_importance(model, easy, self.batch_size)
        chosen = LaterLayerReinit(self.start).targets(model) if self.start is not None else \
            [n for n, _ in layers(model)]
        fresh = _fresh(model, seed)
        keep = {}
        for name, p in model.named_parameters():
            if name.rsplit(".", 1)[0] not in chosen:
                continue
            ratio = i_hard[name] / (i_easy[name] + 1e-12 * float(i_easy[name].mean()) + 1e-30)
            k = round(self.reinit * p.numel())
            m = torch.ones_like(p)
            if k:
                m.view(-1)[ratio.flatten().topk(k).indices] = 0
            keep[name] = m
        self._blend(model, keep, fresh)


_OPERATORS: dict[str, type[Operator]] = {c.name: c for c in (LaterLayerReinit, KernelReinit, RandomReinit,
                                                             MagnitudeRewind, ShrinkPerturb, TargetedReinit)}


def operators() -> list[str]:
    """Names of the forgetting operators :func:`operator` builds."""
    return sorted(_OPERATORS)


def operator(spec: "str | Operator", **options: Any) -> Operator:
    """An operator from its name and options, or from a spec ``NAME[:key=value,...]`` (as the CLI takes it).

    Example:
        >>> operator("ke:keep=0.8")
        KernelReinit(keep=0.8)
    """
    if isinstance(spec, Operator):
        if options:
            raise ConfigError(f"options: expected none with an Operator object; got {sorted(options)}. Fix: set them "
                              "on the object instead, e.g. KernelReinit(keep=0.5).")
        return spec
    if not isinstance(spec, str) or not spec.strip():
        raise ConfigError(f"operator: expected a name ({', '.join(operators())}) or NAME:key=value,... or an "
                          f"Operator; got {spec!r}. Fix: pass e.g. operator='llf'.")
    from .scenarios import parse_spec

    name, parsed = parse_spec(spec, "operator", "ke:keep=0.8")
    if name not in _OPERATORS:
        raise unknown("operator", name, operators(), "operator")
    for key in parsed:
        if key in options:
            raise ConfigError(f"operator: {key!r} is given both in the spec {spec!r} and as an option; expected it "
                              "once. Fix: drop one of them.")
    options = {**options, **parsed}
    cls = _OPERATORS[name]
    valid = [f.name for f in dataclasses.fields(cls) if not f.name.startswith("_")]
    for key in options:
        if key not in valid:
            raise unknown("option", key, valid, f"operator {name!r}")
    if isinstance(options.get("start"), (int, float)) and not isinstance(options["start"], bool):
        options["start"] = str(options["start"])  # a module name that parsed as a number, e.g. "llf:start=3"
    return cls(**options)


@dataclass
class ForgetRelearn(Options):
    """A ``schedule=`` for :func:`netfix.train`: ``generations`` rounds of relearning for
    ``epochs_per_generation`` epochs each, with ``operator`` applied before every round but the first.

    ``restart_lr``: each generation restarts the learning-rate schedule and the optimizer state (the paper's
    setting); ``False`` runs one schedule over all generations. ``monitor``: optional held-out data whose accuracy
    is logged after every generation (with the training accuracy and loss) in the history."""

    operator: "Operator | str" = option(dataclasses.MISSING, "the forgetting operator, or its spec "
                                        "NAME[:key=value,...] (operators())")
    generations: int = option(5, "forget + relearn rounds (the operator acts before every round but the first)",
                              low=1, high=MAX_EPOCHS)
    epochs_per_generation: int = option(10, "relearning epochs per round", low=1, high=MAX_EPOCHS)
    restart_lr: bool = option(True, "restart the learning-rate schedule and optimizer state every round")
    monitor: Any = option(None, "held-out data (LabeledData, a Dataset or (X, y)) whose accuracy is logged after "
                          "every generation", none="no monitoring")

    def check(self) -> None:
        self.operator = operator(self.operator)
        if self.generations * self.epochs_per_generation > MAX_EPOCHS:
            raise ConfigError(f"generations, epochs_per_generation: expected at most {MAX_EPOCHS} epochs in all; "
                              f"got {self.generations} × {self.epochs_per_generation}. Fix: fewer generations or "
                              "epochs per generation.")
        if self.monitor is not None:
            self.monitor = as_data(self.monitor, "monitor")

    @property
    def epochs(self) -> int:
        return self.generations * self.epochs_per_generation

    def describe(self) -> dict[str, Any]:
        assert isinstance(self.operator, Operator)
        return {"schedule": "forget-relearn", **self.operator.describe(), "generations": self.generations,
                "epochs_per_generation": self.epochs_per_generation, "restart_lr": self.restart_lr}

    def run(self, model: nn.Module, data: LabeledData, cfg: Any, *, generator: torch.Generator,
            device: torch.device, seed: int, progress: bool, fit_kwargs: dict[str, Any],
            first_forget: bool = False, train_fn: "Callable[..., Any] | None" = None) -> list[dict[str, Any]]:
        """Train ``model`` (a private copy, changed in place) generation by generation; the history holds the
        per-epoch records (with their ``generation``) and one summary record per generation. ``train_fn``: the
        user's own loop relearns each generation (:func:`netfix.training.train_with`) instead of netfix's."""
        from .evaluation import accuracy
        from .training import fit, make_optimizer, train_with

        op = self.operator
        assert isinstance(op, Operator)
        if not first_forget:
            op.begin(model, seed)
        gen_cfg = replace(cfg, epochs=self.epochs_per_generation)
        steps_per_gen = self.epochs_per_generation * max(1, math.ceil(len(data) / cfg.batch_size))
        total = self.generations * steps_per_gen
        shared_opt = None if self.restart_lr else make_optimizer([p for p in model.parameters()
                                                                  if p.requires_grad], cfg)
        history: list[dict[str, Any]] = []
        start = time.perf_counter()
        for gen in range(1, self.generations + 1):
            forgot = None
            if gen > 1 or first_forget:
                with seeded(seed + 1000 * gen, device):
                    new = op(model, seed=seed + 1000 * gen, data=data if op.needs_data else None)
                model.load_state_dict(new.state_dict())
                forgot = accuracy(model, data)
            if train_fn is not None:
                hist = train_with(train_fn, model, data, desc=f"generation {gen}/{self.generations}")
                if op.has_constraint:
                    op.constrain(model)
            else:
                hist = fit(model, data, gen_cfg, generator=generator, device=device, progress=progress,
                           desc=f"generation {gen}/{self.generations}", optimizer=shared_opt,
                           after_step=op.constrain if op.has_constraint else None,
                           lr_steps=None if self.restart_lr else ((gen - 1) * steps_per_gen, total), **fit_kwargs)
            history += [{"generation": gen, **h} for h in hist]
            record: dict[str, Any] = {"generation": gen, "loss": hist[-1].get("loss") if hist else None,
                                      "train_acc": accuracy(model, data),
                                      "seconds": time.perf_counter() - start}
            if forgot is not None:
                record["train_acc_after_forgetting"] = forgot
            if self.monitor is not None:
                assert isinstance(self.monitor, LabeledData)
                record["monitor_acc"] = accuracy(model, self.monitor)
            if isinstance(op, MagnitudeRewind):
                record["sparsity"] = op.sparsity()
            history.append(record)
        return history


def disproportionate_forgetting(model: nn.Module, data: DataLike, operator_: "Operator | str", noisy: Any, *,
                                epochs: int = 30, every: int = 1, margin_fraction: float = 0.1, seed: int = 0,
                                device: "torch.device | str | None" = None, progress: bool | None = None,
                                **recipe: Any) -> dict[str, Any]:
    """The paper's analysis: train a copy of ``model`` on ``data`` (whose labels are wrong where the boolean
    ``noisy`` is true) for ``epochs`` with ``recipe`` (:func:`netfix.train` options), and after every ``every``
    epochs apply ``operator_`` to a copy **without relearning**, recording accuracy and loss before and after on
    three groups of training examples (one optimizer and one learning-rate schedule over all ``epochs``): ``clean`` (correct label), ``noisy`` (wrong label, as trained on) and
    ``low_margin`` (the ``margin_fraction`` of clean examples with the smallest label margin at that checkpoint).

    Returns ``{"checkpoints": [...], "ratio": R, ...}`` where R = Σ accuracy drop on noisy ÷ Σ accuracy drop on
    clean over the checkpoints at which the network had fit at least half of the noisy labels (the ratio is only
    meaningful once there is something memorised to forget; ``None`` if that never happens or if the operator
    changed no prediction of either group), and
    ``low_margin_ratio`` likewise for the low-margin group."""
    from ._runtime import copy_model, resolve_device, show_progress
    from .training import TrainConfig, fit, make_optimizer, model_view

    op = operator(operator_)
    ds = as_data(data, "data")
    mask = torch.as_tensor(noisy, dtype=torch.bool).flatten()
    if len(mask) != len(ds):
        raise DataError(f"noisy: expected one flag per sample of data ({len(ds)}); got {len(mask)}.")
    if not mask.any() or mask.all():
        raise DataError("noisy: needs both noisy and clean samples to compare what each loses.")
    epochs = check_scalar(epochs, "epochs", int, low=1, high=MAX_EPOCHS, default=30)
    every = check_scalar(every, "every", int, low=1, high=MAX_EPOCHS, default=1)
    margin_fraction = check_scalar(margin_fraction, "margin_fraction", float, low=0, high=1, low_open=True,
                                   default=0.1)
    seed = check_seed(seed)
    dev = resolve_device(device)
    cfg = TrainConfig(epochs=every, **recipe)
    noisy_set = ds.subset(torch.nonzero(mask).squeeze(1), "noisy")
    clean_idx = torch.nonzero(~mask).squeeze(1)
    clean_set = ds.subset(clean_idx, "clean")

    def measure(m: nn.Module, sets: dict[str, LabeledData]) -> dict[str, dict[str, float]]:
        out = {}
        with eval_mode(m), torch.no_grad():
            for key, s in sets.items():
                correct, loss = 0.0, 0.0
                for X, y in batches(s, 1024, None, dev):
                    z = m(X)
                    correct += float((z.argmax(1) == y).sum())
                    loss += float(F.cross_entropy(z, y, reduction="sum"))
                out[key] = {"acc": 100.0 * correct / len(s), "loss": loss / len(s)}
        return out

    checkpoints: list[dict[str, Any]] = []
    with seeded(seed, dev) as g:
        net, _ = model_view(copy_model(model, dev), ds)
        op.begin(net, seed)
        rounds = math.ceil(epochs / every)
        steps = max(1, math.ceil(len(ds) / cfg.batch_size))
        opt = make_optimizer([p for p in net.parameters() if p.requires_grad], cfg)  # one run, one optimizer
        constrain = None  # the operator acts on copies only: training itself is unconstrained
        for r in range(1, rounds + 1):
            fit(net, ds, replace(cfg, epochs=min(every, epochs - (r - 1) * every)), generator=g, device=dev,
                progress=show_progress(progress), desc=f"analysis {r}/{rounds}", optimizer=opt,
                lr_steps=((r - 1) * every * steps, epochs * steps), after_step=constrain)
            margins = label_margins(net, clean_set)
            k = max(1, round(margin_fraction * len(clean_set)))
            sets = {"clean": clean_set, "noisy": noisy_set,
                    "low_margin": clean_set.subset(margins.argsort()[:k], "low_margin")}
            before = measure(net, sets)
            forgotten = op(net, seed=seed + r, data=ds if op.needs_data else None)
            after = measure(forgotten, sets)
            checkpoints.append({"epoch": min(r * every, epochs), **{
                key: {"acc_before": before[key]["acc"], "acc_after": after[key]["acc"],
                      "acc_drop": before[key]["acc"] - after[key]["acc"],
                      "loss_before": before[key]["loss"], "loss_after": after[key]["loss"]}
                for key in sets}})
    memorised: list[dict[str, Any]] = [c for c in checkpoints if c["noisy"]["acc_before"] >= 50.0]

    def ratio(group: str) -> float | None:
        if not memorised:
            return None
        clean = sum(c["clean"]["acc_drop"] for c in memorised)
        other = sum(c[group]["acc_drop"] for c in memorised)
        if clean > 0:
            return other / clean
        return float("inf") if other > 0 else None  # nothing was forgotten: no ratio
    return {"operator": op.describe(), "checkpoints": checkpoints, "ratio": ratio("noisy"),
            "low_margin_ratio": ratio("low_margin"), "memorised_checkpoints": len(memorised)}
