"""Faulty-model and deletion-request builders.

A :class:`Scenario` says what the original model is trained on (``train``), what must be removed or corrected
(``forget``: the samples *as the model saw them*, indices ``forget_indices`` into ``train``), what stays
(``retain`` = train minus forget), and where meaningful how the fault shows (``fault_test``: test inputs that
trigger it; ``fault_label``: the label the faulty model gives them) and the fix (``corrected``: the forget inputs
with their right labels). Every builder is seeded and deterministic.

Example:
    >>> train, test = netfix.datasets.load("mnist5k")
    >>> s = mislabel(train, test, source=7, target=1)
    >>> s.name, len(s.forget), s.fault_label
    ('mislabel', 400, 1)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch
from torch.utils.data import Dataset

from .data import DataLike, LabeledData, as_data, check_indices
from .streaming import StreamedInputs
from .errors import ConfigError, DataError, unknown
from .registry import Registry
from .validation import _shown, check_scalar, check_seed

__all__ = ["Scenario", "mislabel", "backdoor", "random_forget", "class_forget", "label_noise", "from_spec",
           "from_indices", "available", "apply_trigger"]


@dataclass
class Scenario:
    """A faulty model to repair, or a deletion request to honour (see the module docstring)."""

    name: str
    args: dict[str, Any]
    train: LabeledData
    forget: LabeledData
    retain: LabeledData
    test: LabeledData
    forget_indices: np.ndarray
    fault_test: LabeledData | None = None  # test inputs that trigger the fault, with their *true* labels
    fault_label: int | None = None         # the label the faulty model gives fault_test
    corrected: LabeledData | None = None   # forget inputs with their right labels

    def describe(self) -> dict[str, Any]:
        """JSON-ready summary: name, arguments and set sizes."""
        d: dict[str, Any] = {"name": self.name, "args": dict(self.args), "train": len(self.train),
                             "forget": len(self.forget), "retain": len(self.retain), "test": len(self.test)}
        if self.fault_test is not None:
            d["fault_test"] = len(self.fault_test)
            d["fault_label"] = self.fault_label
        return d


def _split(name: str, args: dict[str, Any], train: LabeledData, test: LabeledData, forget_idx: np.ndarray,
           **extra: Any) -> Scenario:
    forget_idx = np.sort(np.asarray(forget_idx, dtype=np.int64))
    if len(forget_idx) == 0:
        raise DataError(f"{name}: the forget set came out empty for {args}; expected at least one sample. "
                        "Fix: raise the fraction or check the class exists in the training data.")
    keep = np.setdiff1d(np.arange(len(train)), forget_idx)
    return Scenario(name=name, args=args, train=train, forget=train.subset(forget_idx, f"{name}/forget"),
                    retain=train.subset(keep, f"{name}/retain"), test=test, forget_indices=forget_idx, **extra)


def _inputs(train: DataLike, test: DataLike) -> tuple[LabeledData, LabeledData]:
    tr = as_data(train, "train")
    te = as_data(test, "test")
    k = max(tr.num_classes, te.num_classes)
    if tr.input_shape != te.input_shape:
        raise DataError(f"test: inputs have shape {te.input_shape} but train's have {tr.input_shape}; "
                        "expected the same shape.")
    return as_data(tr, "train", num_classes=k), as_data(te, "test", num_classes=k)


def _check_class(value: Any, k: int, argument: str) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or not 0 <= int(value) < k:
        raise ConfigError(f"{argument}: expected a class index in [0, {k}); got {_shown(value)}. Fix: pass one of the "
                          f"data's {k} classes, 0 to {k - 1}.")
    return int(value)


def _check_fraction(value: Any, argument: str, default: float, whole: "str | None" = None) -> float:
    """A fraction in (0, 1]; with ``whole`` (why 1 cannot work), in (0, 1)."""
    try:
        fraction = float(check_scalar(value, argument, float, low=0, high=1, low_open=True, default=default))
    except ConfigError:  # the message scenarios have always given, with the Fix
        raise ConfigError(f"{argument}: expected a fraction in (0, 1]; got {_shown(value)}. Fix: pass e.g. "
                          f"{argument}={default!r} (the default).") from None
    if whole is not None and fraction >= 1.0:
        raise ConfigError(f"{argument}: expected < 1; got 1.0: {whole}. Fix: pass e.g. {argument}={default!r} "
                          "(the default).")
    return fraction


def _check_trigger(trigger: Any) -> str:
    if not isinstance(trigger, str):
        raise ConfigError(f"trigger: expected one of {', '.join(repr(t) for t in _TRIGGERS)}; got "
                          f"{_shown(trigger)}. Fix: pass e.g. trigger='square' (the default).")
    if trigger not in _TRIGGERS:
        e = unknown("trigger", trigger, list(_TRIGGERS), "trigger")
        raise type(e)(f"{e} Fix: pass e.g. trigger='square' (the default).")
    return trigger


def _draw(pool: np.ndarray, fraction: float, rng: np.random.Generator) -> np.ndarray:
    n = int(round(fraction * len(pool)))
    n = max(n, 1) if len(pool) else 0
    return rng.choice(pool, size=n, replace=False)


def mislabel(train: DataLike, test: DataLike, source: int, target: int, fraction: float = 1.0,
             seed: int = 0) -> Scenario:
    """Teach a wrong label: ``fraction`` of the training samples of class ``source`` are labelled ``target``.

    ``forget`` holds them with the wrong label, ``corrected`` with the right one; ``fault_test`` is the test
    samples of ``source`` and ``fault_label = target`` (fault rate = % of them predicted ``target``)."""
    tr, te = _inputs(train, test)
    source = _check_class(source, tr.num_classes, "source")
    target = _check_class(target, tr.num_classes, "target")
    if source == target:
        raise ConfigError(f"target: must differ from source (both {source}); expected another class. Fix: pick the "
                          "wrong label the model should learn for source, e.g. source=7, target=1.")
    fraction = _check_fraction(fraction, "fraction", 1.0)
    seed = check_seed(seed)
    rng = np.random.default_rng(seed)
    idx = _draw(np.flatnonzero(tr.y.numpy() == source), fraction, rng)
    y = tr.y.clone()
    y[torch.as_tensor(idx)] = target
    faulty = tr.with_labels(y, "mislabel/train")
    s = _split("mislabel", {"source": source, "target": target, "fraction": fraction, "seed": seed}, faulty, te,
               idx, fault_test=te.subset(np.flatnonzero(te.y.numpy() == source), "mislabel/fault_test"),
               fault_label=target)
    s.corrected = s.forget.with_labels(torch.full((len(s.forget),), source), "mislabel/corrected")
    return s


def apply_trigger(X: torch.Tensor, trigger: str = "square", size: int | None = None,
                  value: float | None = None) -> torch.Tensor:
    """Stamp a backdoor trigger on a copy of ``X`` (N, C, H, W) — or, for flat inputs, set the last features.

    ``square``: a solid bright patch in the bottom-right corner (side = H // 7, at least 2 pixels);
    ``checker``: the same patch in a checkerboard. Values are set to ``value`` (default: X's maximum)."""
    trigger = _check_trigger(trigger)
    if not isinstance(X, torch.Tensor) or X.ndim < 2:
        raise DataError(f"X: expected a batch of inputs, a tensor (N, C, H, W) or (N, features); got "
                        f"{_shown(X) if not isinstance(X, torch.Tensor) else 'shape ' + str(tuple(X.shape))}. Fix: "
                        "pass a batch, e.g. X[None] for one input.")
    size = check_scalar(size, "size", int, low=1, high=min(X.shape[-2:]) - 1 if X.ndim >= 3 else X.shape[1],
                        none="automatic")
    out = X.clone()
    hi = float(value) if value is not None else float(X.max()) if X.numel() else 1.0
    if X.ndim >= 3:
        h, w = X.shape[-2], X.shape[-1]
        s = size or max(2, h // 7)
        patch = _TRIGGERS[trigger](s).to(X.dtype) * hi
        out[..., h - s - 1:h - 1, w - s - 1:w - 1] = patch
    else:
        s = size or max(2, X.shape[1] // 50)
        out[:, -s:] = _TRIGGERS[trigger](s)[0].to(X.dtype) * hi
    return out


_TRIGGERS: dict[str, Callable[[int], torch.Tensor]] = {
    "square": lambda s: torch.ones(s, s),
    "checker": lambda s: (torch.arange(s)[:, None] + torch.arange(s)[None, :]) % 2 == 0,
}


class _Stamped(Dataset):
    """A streamed set's items with a trigger stamped on those at ``positions`` (read, and stamped, on demand)."""

    def __init__(self, inputs: StreamedInputs, positions: np.ndarray, trigger: str, value: float) -> None:
        self.inputs, self.stamped, self.trigger, self.value = inputs, set(positions.tolist()), trigger, value

    def __len__(self) -> int:
        return len(self.inputs)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        x = self.inputs[i]
        return (apply_trigger(x[None], self.trigger, value=self.value)[0] if i in self.stamped else x), 0


def backdoor(train: DataLike, test: DataLike, target: int = 0, fraction: float = 0.05, trigger: str = "square",
             seed: int = 0) -> Scenario:
    """Plant a backdoor: ``fraction`` of the training samples not of class ``target`` get ``trigger`` stamped on
    and the label ``target``.

    ``forget`` is the poisoned samples as trained on; ``corrected`` the same triggered inputs with their true
    labels (learning them teaches the model to ignore the trigger); ``fault_test`` is the triggered test samples
    not of ``target``, with true labels, and ``fault_label = target`` (fault rate = attack success rate)."""
    tr, te = _inputs(train, test)
    target = _check_class(target, tr.num_classes, "target")
    fraction = _check_fraction(fraction, "fraction", 0.05)
    trigger = _check_trigger(trigger)
    seed = check_seed(seed)
    rng = np.random.default_rng(seed)
    idx = _draw(np.flatnonzero(tr.y.numpy() != target), fraction, rng)
    t_idx = torch.as_tensor(idx)
    y = tr.y.clone()
    y[t_idx] = target
    if isinstance(tr.X, StreamedInputs):  # stamped as read: nothing of the training set is copied
        hi = tr.subset(idx).value_range()[1] if len(idx) else 1.0  # the stamped samples' maximum, as in memory
        poisoned = LabeledData(StreamedInputs(_Stamped(tr.X, idx, trigger, hi), workers=tr.X.workers), y,
                               tr.num_classes, "backdoor/train")
    else:
        X = tr.X.clone()
        X[t_idx] = apply_trigger(X[t_idx], trigger)
        poisoned = LabeledData(X, y, tr.num_classes, "backdoor/train")
    others = np.flatnonzero(te.y.numpy() != target)
    fault = te.subset(others, "backdoor/fault_test")
    if isinstance(fault.X, StreamedInputs):
        hi = fault.value_range()[1] if len(fault) else 1.0
        fault.X = StreamedInputs(_Stamped(fault.X, np.arange(len(fault)), trigger, hi), workers=fault.X.workers)
    else:
        fault.X = apply_trigger(fault.X, trigger)
    s = _split("backdoor", {"target": target, "fraction": fraction, "trigger": trigger, "seed": seed}, poisoned,
               te, idx, fault_test=fault, fault_label=target)
    s.corrected = s.forget.with_labels(tr.y[torch.as_tensor(s.forget_indices)], "backdoor/corrected")
    return s


def random_forget(train: DataLike, test: DataLike, fraction: float = 0.1, seed: int = 0) -> Scenario:
    """A deletion request for a uniformly random ``fraction`` of the training set (no fault to measure)."""
    tr, te = _inputs(train, test)
    fraction = _check_fraction(fraction, "fraction", 0.1, "forgetting the whole training set leaves nothing to retain")
    seed = check_seed(seed)
    idx = _draw(np.arange(len(tr)), fraction, np.random.default_rng(seed))
    return _split("random_forget", {"fraction": fraction, "seed": seed}, tr, te, idx)


def class_forget(train: DataLike, test: DataLike, cls: int = 0) -> Scenario:
    """A deletion request for every training sample of class ``cls``.

    ``test`` keeps only the other classes (test accuracy on what should survive, as in the class-wise
    unlearning literature); ``fault_test`` is the test samples of ``cls`` and ``fault_label = cls``: the fault
    rate is how often the model still recognises the forgotten class."""
    tr, te = _inputs(train, test)
    cls = _check_class(cls, tr.num_classes, "cls")
    idx = np.flatnonzero(tr.y.numpy() == cls)
    others = te.subset(np.flatnonzero(te.y.numpy() != cls), "class_forget/test")
    return _split("class_forget", {"cls": cls}, tr, others, idx,
                  fault_test=te.subset(np.flatnonzero(te.y.numpy() == cls), "class_forget/fault_test"),
                  fault_label=cls)


def label_noise(train: DataLike, test: DataLike, fraction: float = 0.2, seed: int = 0) -> Scenario:
    """Symmetric label noise: ``fraction`` of the training labels are replaced by a different random class.

    ``forget`` holds the noisy samples as trained on, ``corrected`` the same inputs with their true labels."""
    tr, te = _inputs(train, test)
    fraction = _check_fraction(fraction, "fraction", 0.2, "with every label wrong no clean sample is left to keep")
    seed = check_seed(seed)
    if tr.num_classes < 2:
        raise DataError(f"train: has {tr.num_classes} class; a wrong label needs at least two.")
    rng = np.random.default_rng(seed)
    idx = np.sort(_draw(np.arange(len(tr)), fraction, rng))
    true = tr.y[torch.as_tensor(idx)].clone()
    shift = torch.as_tensor(rng.integers(1, tr.num_classes, size=len(idx)))
    y = tr.y.clone()
    y[torch.as_tensor(idx)] = (true + shift) % tr.num_classes  # never the true class
    s = _split("label_noise", {"fraction": fraction, "seed": seed}, tr.with_labels(y, "label_noise/train"), te, idx)
    s.corrected = s.forget.with_labels(true, "label_noise/corrected")
    return s


def from_indices(train: DataLike, test: DataLike, indices: "np.ndarray | list[int]") -> Scenario:
    """A deletion request for the training samples at ``indices`` (e.g. read from a user's file)."""
    tr, te = _inputs(train, test)
    idx = np.asarray(indices)
    check_indices(idx, len(tr), "indices", "training set")
    return _split("indices", {"n": int(len(idx))}, tr, te, idx)


_BUILDERS: Registry[Callable[..., Scenario]] = Registry("scenario", "--scenario")  # the names from_spec takes
for _builder in (mislabel, backdoor, random_forget, class_forget, label_noise):
    _BUILDERS.add(_builder.__name__, _builder)


def available() -> list[str]:
    """Scenario names accepted by :func:`from_spec`."""
    return _BUILDERS.names()


def from_spec(spec: str, train: DataLike, test: DataLike) -> Scenario:
    """Build a scenario from a command-line spec ``NAME[:key=value,...]``, e.g. ``mislabel:source=7,target=1``."""
    import inspect

    if not isinstance(spec, str) or not spec.strip():
        raise ConfigError(f"--scenario: expected NAME[:key=value,...] with NAME one of {', '.join(available())}; "
                          f"got {_shown(spec)}. Fix: pass e.g. mislabel:source=7,target=1.")
    name, kwargs = parse_spec(spec, "--scenario", "mislabel:source=7,target=1")
    builder = _BUILDERS.get(name)
    params = inspect.signature(builder).parameters  # the builder's own keywords: the options a spec may set
    valid = [p for p in params if p not in ("train", "test")]
    for key in kwargs:
        if key not in valid:
            raise unknown("option", key, valid, f"--scenario {name}")
    missing = [p for p in valid if params[p].default is inspect.Parameter.empty and p not in kwargs]
    if missing:
        raise ConfigError(f"--scenario {name}: expected {', '.join(f'{m}=...' for m in missing)}; got "
                          f"{spec!r}. Fix: pass e.g. {name}:{','.join(f'{m}={i}' for i, m in enumerate(missing, 1))}.")
    return builder(train, test, **kwargs)


def parse_spec(spec: str, argument: str, example: str) -> tuple[str, dict[str, Any]]:
    """``NAME[:key=value,...]`` as (NAME, {key: value}), each value through :func:`parse_value`; a part without
    ``=``, an empty key or a key given twice is an error naming ``argument``."""
    name, _, rest = spec.partition(":")
    name = name.strip()
    out: dict[str, Any] = {}
    for part in rest.split(","):
        if not part.strip():
            continue
        key, eq, value = part.partition("=")
        key = key.strip()
        if not eq or not key:
            raise ConfigError(f"{argument}: expected key=value pairs after '{name}:'; got {part!r}. Fix: write it "
                              f"like {example}.")
        if key in out:
            raise ConfigError(f"{argument}: expected each key once; got {key!r} twice in {spec!r}. Fix: drop one.")
        out[key] = parse_value(value.strip())
    return name, out


def parse_value(v: str) -> Any:
    """A command-line value as an int, else a float, else True/False/None (any case), else the string."""
    for cast in (int, float):
        try:
            return cast(v)
        except ValueError:
            pass
    return _WORDS.get(v.lower(), v)


_WORDS: dict[str, Any] = {"true": True, "false": False, "none": None}
