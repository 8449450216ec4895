"""The registry of repair methods, and the two public operations that dispatch to it.

A method is one config dataclass (every option documented with its default) plus one function
``run(model, forget, retain, cfg, ctx) -> history``, registered once with :func:`register`. The function
receives a private copy of the model already on the target device and changes it in place; the registry does the
rest (validation, copying, seeding, timing, the :class:`~netfix.training.Outcome`). Adding a method = adding one
module to this package that calls :func:`register`; :func:`_discover` imports every module here.
"""

from __future__ import annotations

import dataclasses
import hashlib
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from .. import card
from .._runtime import check_model, copy_model, resolve_device, seeded, show_progress
from ..data import DataLike, LabeledData, Request, as_data, check_disjoint, check_range, concat, request_of
from ..errors import ConfigError, DataError, ModelError, NoChangeWarning, unknown
from ..registry import Registry
from ..training import Outcome, TrainFn, check_train_fn, describe_train_fn, model_view
from ._guard import Guard, GuardWarning, guarded
from ._recommend import Recommendation, recommend, recommend_details, request_kind

GUARD = Guard()  # the default: every method's run is redone with a smaller step if it costs > 3 points

__all__ = ["Method", "Context", "Guard", "GuardWarning", "register", "available", "get", "unlearn", "relearn",
           "kept_data", "recommend", "recommend_details", "request_kind", "Recommendation"]


@dataclass(frozen=True)
class Context:
    """What a method's ``run`` gets besides the model, data and its config."""

    device: torch.device
    generator: torch.Generator  # seeded CPU generator for samplers and draws
    seed: int
    progress: bool
    mode: str                   # "unlearn" or "relearn"
    train_fn: "TrainFn | None" = None  # the user's own training loop, for methods that train (retrain, forget-relearn)
    heldout: "LabeledData | None" = None  # samples the model never trained on, for methods that estimate unseen data


@dataclass(frozen=True)
class Method:
    """A registered method: its ``name``, ``config`` dataclass, ``run`` function, the ``modes`` it supports
    ("unlearn", "relearn") and a one-line ``summary``."""

    name: str
    config: type
    run: Callable[[nn.Module, LabeledData, LabeledData, Any, Context], list[dict[str, Any]]]
    modes: tuple[str, ...]
    summary: str
    needs_retain: str | None = None  # why the method cannot run without retained samples (None: it can)
    model_type: "tuple[type, str] | None" = None  # (the model class it needs, how to make one), None: any model
    strength: str | None = None  # the option the guard scales down when a run costs too much (e.g. "lr")
    guarded: bool = True  # False: exact or reference methods (retrain, mixed-linear), never redone
    trains: bool = False  # True: the method trains on the kept data, and can do it with the user's train_fn
    heldout: str | None = None  # what the method reads from held-out data (None: it has no use for it)
    heldout_for: tuple[str, ...] = ()  # the requests ("random", "class", "fault") it cannot serve without it
    fast: dict[str, Any] = field(default_factory=dict, hash=False)  # options of a quick run (the tests' few epochs)
    bench: dict[str, Any] = field(default_factory=dict, hash=False)  # options `netfix bench unlearn` runs it with
    # (saved model's metadata, forget indices, training set, argument) -> the retained set, for methods whose model
    # records which samples it may keep (mixed-linear: its user data); None: the request's own retain set
    retained_from_record: "Callable[..., LabeledData] | None" = field(default=None, hash=False)
    relearns_as_trained: bool = False  # relearn mode retrains the data as trained: no request, no corrected labels

    def make_config(self, options: dict[str, Any]) -> Any:
        """The config from user options; an unknown option is an error listing the valid ones."""
        valid = [f.name for f in dataclasses.fields(self.config)]
        for key in options:
            if key not in valid:
                raise unknown("option", key, valid, f"method {self.name!r}")
        return self.config(**options)


_METHODS: Registry[Method] = Registry("method", "method")


def register(name: str, config: type, modes: tuple[str, ...] = ("unlearn",), summary: str = "",
             needs_retain: str | None = None, model_type: "tuple[type, str] | None" = None,
             strength: str | None = None, guarded: bool = True, trains: bool = False,
             heldout: str | None = None, heldout_for: tuple[str, ...] = ("random", "class", "fault"),
             fast: "dict[str, Any] | None" = None, bench: "dict[str, Any] | None" = None,
             retained_from_record: "Callable[..., LabeledData] | None" = None, relearns_as_trained: bool = False
             ) -> Callable[[Callable[..., list[dict[str, Any]]]], Callable[..., list[dict[str, Any]]]]:
    """Decorator: register ``run`` under ``name`` with its config dataclass. ``needs_retain`` says why the method
    needs retained samples; an empty retain set is then refused with that reason before any work. ``model_type``:
    (class, how to make one) for a method that only works on models built its way; other models are refused.
    ``strength``: the option the guard (:mod:`netfix.methods._guard`) scales down when a run loses too much
    retained accuracy; ``guarded=False`` for methods that are never redone (exact, or the reference).
    ``trains``: the method trains on the kept data, which a user's ``train_fn`` can then do instead of netfix's
    loop (:func:`netfix.training.train_with`). ``heldout``: what the method reads from samples the model never
    trained on (``netfix.unlearn(..., heldout=...)``); methods without it refuse held-out data. ``heldout_for``: the
    kinds of request (:func:`request_kind`) it cannot serve without held-out data. ``fast``: the options of a quick
    run (few epochs), which the tests use; ``bench``: the options ``netfix bench unlearn`` runs it with where they
    differ from its defaults; both checked now, like a user's options. ``retained_from_record(meta, forget_indices,
    train, argument)``: the retained set a saved model's record implies (the CLI uses it instead of the request's);
    ``relearns_as_trained``: relearning takes the data as the model was trained on it (no corrected labels)."""
    def deco(run: Callable[..., list[dict[str, Any]]]) -> Callable[..., list[dict[str, Any]]]:
        method = Method(name, config, run, modes, summary or (run.__doc__ or "").strip().split("\n")[0],
                        needs_retain, model_type, strength, guarded, trains, heldout, heldout_for if heldout else (),
                        dict(fast or {}), dict(bench or {}), retained_from_record, relearns_as_trained)
        for options in (method.fast, method.bench):
            if options:
                method.make_config(options)
        _METHODS.add(name, method)
        return run
    return deco


def available() -> list[str]:
    """Names of every registered method.

    Example:
        >>> "retrain" in netfix.methods.available()
        True
    """
    return _METHODS.names()


def get(name: str) -> Method:
    """The registered method ``name``; unknown names raise an error listing the valid ones."""
    return _METHODS.get(name)


def kept_data(forget: LabeledData, retain: LabeledData, ctx: Context) -> LabeledData:
    """What a model should fit after the repair: ``retain`` when unlearning; ``protect`` plus the corrected
    ``data`` when relearning."""
    if ctx.mode == "unlearn":
        return retain
    return concat([retain, forget], "protect+data")


def _operate(mode: str, model: nn.Module, forget: DataLike, retain: DataLike, method: str,
             seed: int, device: "torch.device | str | None", progress: bool | None,
             options: dict[str, Any], guard: "Guard | None", train_fn: "TrainFn | None" = None,
             heldout: "DataLike | None" = None) -> Outcome:
    spec = get(method)
    check_train_fn(train_fn)
    if heldout is not None and spec.heldout is None:
        raise ConfigError(f"heldout: method {method!r} does not read held-out data; methods that do: "
                          f"{', '.join(n for n, m in _METHODS.items() if m.heldout)}. Fix: leave heldout out.")
    if train_fn is not None and not spec.trains:
        raise ConfigError(f"train_fn: method {method!r} does not train on the kept data, so it has no use for your "
                          f"training function; methods that do: "
                          f"{', '.join(n for n, m in _METHODS.items() if m.trains)}.")
    if guard is not None and not isinstance(guard, Guard):
        raise ConfigError(f"guard: expected a netfix.methods.Guard(...) or None (no guard); got "
                          f"{type(guard).__name__}.")
    if mode not in spec.modes:
        raise ConfigError(f"method: {method!r} cannot {mode}; methods that can: "
                          f"{', '.join(n for n, m in _METHODS.items() if mode in m.modes)}.")
    cfg = spec.make_config(options)
    check_model(model)
    if spec.model_type is not None and not isinstance(model, spec.model_type[0]):
        raise ModelError(f"model: method {method!r} needs a {spec.model_type[0].__name__}; got "
                         f"{type(model).__name__}. Fix: {spec.model_type[1]}")
    dev = resolve_device(device)
    names = ("forget", "retain") if mode == "unlearn" else ("data", "protect")
    f = as_data(forget, names[0])
    r = as_data(retain, names[1], allow_empty=True)
    if spec.needs_retain and len(r) == 0:
        raise DataError(f"{names[1]}: is empty; {spec.needs_retain} Fix: pass the samples to keep.")
    if f.input_shape != r.input_shape and len(r):
        raise DataError(f"{names[1]}: inputs have shape {r.input_shape} but {names[0]}'s have {f.input_shape}; "
                        "expected the same shape.")
    trained_on = card.of(model).data
    check_range(f, trained_on, names[0])
    check_range(r, trained_on, names[1])
    if mode == "unlearn":
        check_disjoint(f, r)
    h = _heldout(heldout, f, r, trained_on) if heldout is not None else None
    with seeded(seed, dev) as g:
        net = copy_model(model, dev)
        view, k = model_view(net, f, names[0])
        f = as_data(f, names[0], num_classes=k)
        r = as_data(r, names[1], num_classes=k, allow_empty=True)
        h = as_data(h, "heldout", num_classes=k) if h is not None else None
        ctx = Context(device=dev, generator=g, seed=seed, progress=show_progress(progress), mode=mode,
                      train_fn=train_fn, heldout=h)
        before = _state_digest(net)
        start = time.perf_counter()
        history, cfg, record = guarded(lambda c: spec.run(view, f, r, c, ctx), view, net, r, cfg, spec.strength,
                                       mode, guard if spec.guarded and train_fn is None else None, seed)
        seconds = time.perf_counter() - start
    net.eval()
    if mode == "unlearn" and len(r):  # what the model has now learned from is what was kept
        card.update(net, data={**(trained_on or {}), **r.describe()})
    changed = _state_digest(net) != before
    if not changed:
        warnings.warn(NoChangeWarning(f"{mode} with {method!r} left every weight as it was (no step changed the "
                                      f"model): nothing was {'forgotten' if mode == 'unlearn' else 'learned'}. Fix: "
                                      f"check the method's options (netfix.methods.get({method!r}).config)."),
                      stacklevel=3)
    config = {**dataclasses.asdict(cfg), "seed": seed, "device": str(dev), "mode": mode, "changed": changed,
              **({"guard": record} if record is not None else {}),
              **({"train_fn": describe_train_fn(train_fn)} if train_fn is not None else {}),
              **({"n_heldout": len(h), "heldout_fingerprint": h.fingerprint()} if h is not None else {}),
              "n_" + names[0]: len(f), "n_" + names[1]: len(r),
              names[0] + "_fingerprint": f.fingerprint(), names[1] + "_fingerprint": r.fingerprint()}
    return Outcome(model=net, method=method, config=config, seconds=seconds, history=history)


SHARED_HELDOUT = 0.01  # share of held-out samples that may also be training samples (a dataset's exact duplicates)


def _heldout(heldout: DataLike, forget: LabeledData, retain: LabeledData, trained_on: "dict[str, Any] | None"
             ) -> LabeledData:
    """The held-out set, checked: a non-empty labelled set shaped like the training inputs, in their range, that
    is not (beyond a dataset's few exact duplicates) made of the forget or retained samples."""
    h = as_data(heldout, "heldout")
    if h.input_shape != forget.input_shape:
        raise DataError(f"heldout: inputs have shape {h.input_shape} but forget's have {forget.input_shape}; "
                        "expected the same shape.")
    check_range(h, trained_on, "heldout")
    seen = set(forget.sample_digests()) | set(retain.sample_digests())
    shared = sum(d in seen for d in h.sample_digests())
    if shared > SHARED_HELDOUT * len(h):
        raise DataError(f"heldout: {shared} of its {len(h)} samples are training samples (in forget or retain); "
                        "held-out data must be data the model never trained on, or it teaches the method how the "
                        "model treats training samples. Fix: pass a validation split held out from training.")
    return h


def _state_digest(model: nn.Module) -> str:
    """sha256 of every parameter and buffer: tells whether a run changed the model at all."""
    h = hashlib.sha256()
    for name, t in model.state_dict().items():
        h.update(name.encode())
        h.update(t.detach().to("cpu").contiguous().reshape(-1).view(torch.uint8).numpy().data if t.numel() else b"")
    return h.hexdigest()


def unlearn(model: nn.Module, forget: "DataLike | Request", retain: "DataLike | None" = None, method: str = "ogd", *,
            seed: int = 0,
            device: "torch.device | str | None" = None, progress: bool | None = None,
            guard: "Guard | None" = GUARD, train_fn: "TrainFn | None" = None, heldout: "DataLike | None" = None,
            **options: Any) -> Outcome:
    """Remove what ``forget`` taught ``model`` while keeping what ``retain`` teaches; returns a new model.

    ``forget`` may be a deletion request — ``netfix.data.Request(dataset, forget_indices)`` or
    ``torch.utils.data.Subset(dataset, forget_indices)`` — with ``retain`` left out: the rest of ``dataset`` is
    kept, and ``config["request"]`` records the indices' count and sha256.
    ``options`` are the method's config fields (``netfix.methods.get(method).config``); unknown ones are errors.
    ``guard``: a run that loses more retained accuracy than ``guard.tolerance`` points is redone with a smaller step
    (:class:`Guard`; ``None``: unguarded).
    ``train_fn``: your own training loop, ``train_fn(model, dataset) -> model`` (see
    :func:`netfix.training.train_with`), used by the methods that train on the kept data — ``retrain`` (a reference
    trained exactly like your original, from a fresh initialisation), ``finetune`` (from the trained weights) and
    ``forget-relearn`` (each generation's relearning) — instead of netfix's loop and the model's recipe; other
    methods refuse it. It is called under the run's seed.
    ``heldout``: samples the model never trained on (a validation split), for the methods that estimate how the
    model treats unseen data — ``unseen`` and ``reference-guided``; other methods refuse it.

    Example:
        >>> out = netfix.unlearn(model, s.forget, s.retain, method="retrain", epochs=5)
        >>> out.model is model
        False
    """
    request = request_of(forget) if retain is None else None
    if retain is None and request is None:
        raise ConfigError("retain: missing; expected the samples to keep. Fix: pass retain=..., or give forget as "
                          "a deletion request: netfix.data.Request(train_dataset, forget_indices) or "
                          "torch.utils.data.Subset(train_dataset, forget_indices).")
    f, r = request.split() if request is not None else (forget, retain)
    if isinstance(f, Request) or r is None:
        raise ConfigError("forget: a netfix.data.Request stands for both sets; leave retain out.")
    out = _operate("unlearn", model, f, r, method, seed, device, progress, options, guard, train_fn, heldout)
    if request is not None:
        from ..data import indices_digest

        out.config["request"] = indices_digest(request.forget_indices)
    return out


def relearn(model: nn.Module, data: DataLike, protect: DataLike | None = None, method: str = "ogd", *,
            seed: int = 0, device: "torch.device | str | None" = None, progress: bool | None = None,
            guard: "Guard | None" = None, train_fn: "TrainFn | None" = None, **options: Any) -> Outcome:
    """Teach ``model`` the labels of ``data`` (e.g. a scenario's ``corrected`` set) while protecting what it does
    on ``protect``; returns a new model. ``guard``: unguarded by default — learning a corrected class legitimately
    moves some retained predictions (its neighbours'); pass a :class:`Guard` to bound that. ``train_fn``: as for
    :func:`unlearn`.

    Example:
        >>> out = netfix.relearn(model, s.corrected, protect=s.retain, method="retrain", epochs=5)
    """
    if protect is None:
        first = as_data(data, "data")
        protect = first.subset([], "protect")
    return _operate("relearn", model, data, protect, method, seed, device, progress, options, guard, train_fn)


def _discover() -> None:
    """Import every module of this package: each registers its method, so adding a method is adding a file."""
    import importlib
    import pkgutil

    for info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name):
        if not info.name.startswith("_"):
            importlib.import_module(f"{__name__}.{info.name}")


_discover()
