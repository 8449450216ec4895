"""Calling a model the one way netfix does — a batch in, logits (B, K) out — decided once per model.

Users bring models whose ``forward`` returns a tensor, a tuple or list (logits first), a dict or a Hugging Face
``ModelOutput`` (its ``logits``), and models that take their input as a keyword (``pixel_values=``,
``input_ids=``) or a batch that is a dict of tensors (a tokenized text batch, passed as ``**batch``). The *rule*
for a model — which keyword takes the input, where the logits are in the output — is found once, from the forward's
signature and one call on two samples, and kept on the model's card (so it is saved with it); a user can also set
it (:func:`adapt`).

Every operation then runs on a :class:`LogitsView` of its private copy of the model: a module that *shares* the
model's parameters, buffers and submodules (same objects, same names — ``params=["fc"]``, ``state_dict`` keys and
``torch.func.functional_call`` all see the user's names) and whose forward applies the rule. A model that already
maps a batch to a logits tensor is used as it is. The operation returns the user's own module, never the view.

Example:
    >>> hf = transformers.ViTForImageClassification(config)       # returns ImageClassifierOutput
    >>> out = netfix.unlearn(hf, s.forget, s.retain, method="ogd")   # works as for any model
    >>> type(out.model).__name__
    'ViTForImageClassification'
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from . import card
from .errors import ConfigError, ModelError

__all__ = ["adapt", "rule", "call", "LogitsView", "logits_model", "as_logits", "unwrap"]

_OUTPUT_NAMES = ("logits", "scores", "class_logits", "output", "out", "predictions", "preds", "y")
_INPUT_NAMES = ("pixel_values", "input_ids", "inputs_embeds", "input_values", "x", "inputs", "input", "images")


def adapt(model: nn.Module, input: "str | None" = None, output: "str | int | None" = None) -> nn.Module:
    """A copy of ``model`` that netfix calls as ``model(**{input: x})`` (``input=None``: ``model(x)``) and whose
    logits are ``out[output]`` (a key of a dict / ``ModelOutput``, or an index of a tuple; ``None``: the output
    itself). Only needed when netfix's own detection guesses wrong.

    Example:
        >>> m = netfix.adapter.adapt(my_model, input="image", output="scores")
    """
    if input is not None and (not isinstance(input, str) or not input.isidentifier()):
        raise ConfigError(f"input: expected the keyword the model takes its batch as, e.g. 'pixel_values'; got "
                          f"{input!r}.")
    if output is not None and (isinstance(output, bool) or not isinstance(output, (str, int))):
        raise ConfigError(f"output: expected a key like 'logits' or an index like 0 (or None: the output itself); "
                          f"got {output!r}.")
    new = copy.deepcopy(model)
    card.update(new, io={"input": input, "output": output, "set_by": "user"})
    return new


def _signature_input(model: nn.Module) -> "str | None":
    """The keyword the forward must take its batch as; None when the first argument can be positional."""
    try:
        params = [p for p in inspect.signature(model.forward).parameters.values()]
    except (TypeError, ValueError):
        return None
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL)]
    if positional:
        return None
    keywords = [p for p in params if p.kind == p.KEYWORD_ONLY]
    required = [p.name for p in keywords if p.default is p.empty]
    if required:
        return required[0]
    named = [p.name for p in keywords if p.name in _INPUT_NAMES]
    return named[0] if named else (keywords[0].name if keywords else None)


def _pick(out: Any, output: "str | int | None") -> Any:
    if output is None:
        return out
    if isinstance(output, str):
        return out[output] if isinstance(out, Mapping) else getattr(out, output)
    return out[output]


def call(model: nn.Module, io: "dict[str, Any] | None", x: Any) -> Any:
    """``model`` called on the batch ``x`` under the rule ``io``; returns what the rule says are the logits."""
    io = io or {}
    if isinstance(x, Mapping):
        out = model(**x)
    elif io.get("input"):
        out = model(**{io["input"]: x})
    else:
        out = model(x)
    return _pick(out, io.get("output"))


def _find_output(out: Any) -> "str | int | None":
    """Where the logits are in what the model returned (raises when nothing looks like them)."""
    if isinstance(out, torch.Tensor):
        return None
    if isinstance(out, Mapping) or hasattr(out, "keys"):
        for key in _OUTPUT_NAMES:
            if key in out and isinstance(out[key], torch.Tensor):
                return key
        tensors = [k for k in out if isinstance(out[k], torch.Tensor)]
        if len(tensors) == 1:
            return tensors[0]
    if isinstance(out, (tuple, list)) and out and isinstance(out[0], torch.Tensor):
        return 0
    raise ModelError(f"model: its forward returned {type(out).__name__}; netfix needs the logits (a (B, K) "
                     "tensor, a tuple whose first element is one, or a dict / ModelOutput with 'logits'). Fix: "
                     "netfix.adapter.adapt(model, output=KEY_OR_INDEX).")


def rule(model: nn.Module, sample: Any, remember: bool = True) -> dict[str, Any]:
    """The model's rule: from its card when known, else found from its signature and one call on ``sample``
    (written on its card when ``remember``: for netfix's private copies, never for a caller's model)."""
    io = card.of(model).io
    if io and (io.get("set_by") == "user" or isinstance(sample, Mapping) == bool(io.get("dict_input"))):
        return dict(io)
    found: dict[str, Any] = {"input": None if isinstance(sample, Mapping) else _signature_input(model),
                             "output": None}
    with torch.no_grad():
        was = [m.training for m in model.modules()]
        model.eval()
        try:
            out = call(model, found, sample)
        finally:
            for m, t in zip(model.modules(), was):
                m.training = t
    found["output"] = _find_output(out)
    found["dict_input"] = isinstance(sample, Mapping)
    if remember:
        card.update(model, io=found)
    return found


class LogitsView(nn.Module):
    """``model`` seen as ``batch -> logits``: the same parameters, buffers and submodules under the same names
    (shared, not copied), a forward that applies the model's rule. Training or editing the view trains or edits the
    model."""

    inner: nn.Module
    io: dict[str, Any]

    def __init__(self, model: nn.Module, io: dict[str, Any]) -> None:
        super().__init__()
        object.__setattr__(self, "inner", model)  # not a submodule: its children are the view's own
        object.__setattr__(self, "card_owner", model)  # netfix.card reads and writes the model's card
        object.__setattr__(self, "io", dict(io))
        for name in ("_parameters", "_buffers", "_modules", "_non_persistent_buffers_set"):
            object.__setattr__(self, name, getattr(model, name))

    def forward(self, x: Any) -> torch.Tensor:
        return call(self.inner, self.io, x)

    def train(self, mode: bool = True) -> "LogitsView":
        self.inner.train(mode)  # the model's own flag too: some forwards read self.training at the top
        self.training = mode
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> "LogitsView":
        return LogitsView(copy.deepcopy(self.inner, memo), self.io)


def logits_model(model: nn.Module, sample: Any, argument: str = "data", remember: bool = True
                 ) -> tuple[nn.Module, int]:
    """``(the model as netfix calls it, its number of classes)``, checked on ``sample`` (one or two inputs): the
    model itself when it maps a batch to logits, else a :class:`LogitsView`. ``remember``: keep the rule on the
    model's card (only for netfix's private copies). A model that cannot run on the data, or gives no (B, K)
    logits, is an error naming both shapes."""
    if isinstance(model, LogitsView):
        model = model.inner
    try:
        io = rule(model, sample, remember)
        view: nn.Module = model if not io.get("input") and io.get("output") is None else LogitsView(model, io)
        was = [m.training for m in model.modules()]
        model.eval()
        try:
            with torch.no_grad():
                out = view(sample)
        finally:
            for m, t in zip(model.modules(), was):
                m.training = t
    except (ModelError, ConfigError):
        raise
    except Exception as e:  # any failure here means model and data don't fit; say which shapes
        shape = _shape_text(sample)
        raise ModelError(f"{argument}: the model could not run on inputs of shape {shape} ({type(e).__name__}: "
                         f"{e}). Fix: pass data shaped like the model's training inputs.") from e
    n = _batch_len(sample)
    if not isinstance(out, torch.Tensor) or out.ndim != 2 or out.shape[0] != n:
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ModelError(f"model: expected logits of shape (batch, num_classes); got {got}. Fix: make forward() "
                         "return a (B, K) tensor, or tell netfix where the logits are: "
                         "netfix.adapter.adapt(model, output=KEY_OR_INDEX).")
    return view, int(out.shape[1])


def as_logits(model: nn.Module, sample: Any) -> nn.Module:
    """``model`` as netfix calls it, without checks or remembering (for measuring a model that may be the
    caller's): a view when its card or one probe on ``sample`` says so."""
    if isinstance(model, LogitsView):
        return model
    io = card.of(model).io
    if io is None:
        io = rule(model, sample, remember=False)
    return model if not io.get("input") and io.get("output") is None else LogitsView(model, io)


def unwrap(model: nn.Module) -> nn.Module:
    """The user's module behind a :class:`LogitsView` (the model itself otherwise)."""
    return model.inner if isinstance(model, LogitsView) else model


def _batch_len(x: Any) -> int:
    if isinstance(x, Mapping):
        return len(next(iter(x.values())))
    return len(x)


def _shape_text(x: Any) -> str:
    if isinstance(x, Mapping):
        return "{" + ", ".join(f"{k}: {tuple(v.shape[1:])}" for k, v in x.items() if hasattr(v, "shape")) + "}"
    return str(tuple(x.shape[1:])) if hasattr(x, "shape") else type(x).__name__
