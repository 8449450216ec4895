"""Forgetting operators: each a small object whose ``op(model)`` returns a **new**, partly forgotten model (the
caller's is untouched), and their registry :data:`OPERATORS` (:func:`operator` builds one from a spec).

Example:
    >>> op = operator("ke:keep=0.8")
    >>> forgotten = op(model, seed=0)
"""

from __future__ import annotations

import copy
import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn

from ..._runtime import check_model, eval_mode, model_device
from ...data import DataLike, LabeledData, as_data, batches
from ...errors import ConfigError, DataError, ModelError, unknown
from ...gradients import squared_gradient_importance
from ...registry import Registry
from ...validation import MAX_BATCH, Options, check_seed, option

__all__ = ["Operator", "LaterLayerReinit", "KernelReinit", "RandomReinit", "MagnitudeRewind", "ShrinkPerturb",
           "TargetedReinit", "OPERATORS", "operator", "operators", "layers", "label_margins"]

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


OPERATORS: Registry[type[Operator]] = Registry("operator", "operator")  # the forgetting operators, by name
for _cls in (LaterLayerReinit, KernelReinit, RandomReinit, MagnitudeRewind, ShrinkPerturb, TargetedReinit):
    OPERATORS.add(_cls.name, _cls)


def operators() -> list[str]:
    """Names of the forgetting operators :func:`operator` builds."""
    return OPERATORS.names()


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
    from ...scenarios import parse_spec

    name, parsed = parse_spec(spec, "operator", "ke:keep=0.8")
    cls = OPERATORS.get(name)
    for key in parsed:
        if key in options:
            raise ConfigError(f"operator: {key!r} is given both in the spec {spec!r} and as an option; expected it "
                              "once. Fix: drop one of them.")
    options = {**options, **parsed}
    valid = [f.name for f in dataclasses.fields(cls) if not f.name.startswith("_")]
    for key in options:
        if key not in valid:
            raise unknown("option", key, valid, f"operator {name!r}")
    if isinstance(options.get("start"), (int, float)) and not isinstance(options["start"], bool):
        options["start"] = str(options["start"])  # a module name that parsed as a number, e.g. "llf:start=3"
    return cls(**options)
