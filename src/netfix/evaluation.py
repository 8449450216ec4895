"""Metrics: accuracies, fault rate, membership-inference attacks and the gap to a reference (docs/methods.md §6).

The attack functions are pure (arrays in, a number out) so they can be tested and reused; :func:`evaluate`
runs a model once per split and assembles a :class:`Metrics` mapping. Accuracies are in percent.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ._runtime import check_model, copy_model, eval_mode, model_device, resolve_device
from .data import DataLike, LabeledData, as_data, batches
from .adapter import as_logits
from .errors import ConfigError, DataError, ModelError
from .forget_score import forget_score
from .outputs import outputs as _outputs, predict
from .training import model_view
from .streaming import move

__all__ = ["Metrics", "evaluate", "predict", "accuracy", "mia_efficacy", "loss_mia", "forget_score", "GAP_KEYS",
           "LEGEND"]

# The four numbers the unlearning literature's "average gap" compares with retraining.
GAP_KEYS = ("ua", "retain_acc", "test_acc", "mia_efficacy")


# One line per metric, for tables and `netfix evaluate --explain` (docs/methods.md §6 has the details).
LEGEND: dict[str, str] = {
    "forget_acc": "accuracy on the forget set (%)",
    "ua": "UA, unlearning accuracy: 100 - forget_acc; a retrained model's UA is the target, not 100",
    "retain_acc": "RA, accuracy on the retained training data (%)",
    "test_acc": "TA, accuracy on the test set (%)",
    "fault_rate": "% of the fault's test inputs predicted as the fault's label (0 when repaired)",
    "fault_acc": "accuracy on the fault's test inputs (%)",
    "mia_efficacy": "MIA-efficacy: % of the forget set an SVC membership attack, trained on retain vs test, calls "
                    "non-members",
    "mia_loss_acc": "accuracy of a loss-threshold membership attack on forget vs test (50 = cannot tell)",
    "test_confidence": "mean top softmax probability on the test set",
    "agreement": "% of test inputs where the model and the reference predict the same class",
    "kl": "mean KL(reference || model) of the predicted distributions on the test set",
    "gap": "mean |model - reference| over UA, RA, TA and MIA-efficacy, in points (0 = the reference's behaviour)",
    "rte": "run time as a % of retraining's, measured in the same run (100 = as slow as retraining)",
}


class Metrics(dict):
    """A mapping of metric name -> value. Keys that don't apply to the given sets are absent.

    Always (with the sets they need): ``forget_acc``, ``ua`` (= 100 - forget_acc), ``retain_acc``,
    ``test_acc``, ``per_class_acc`` (test, {class: %}), ``test_confidence`` (mean max-softmax on test),
    ``fault_rate`` (% of fault_test predicted fault_label), ``fault_acc`` (accuracy on fault_test),
    ``mia_efficacy`` (% of forget predicted non-member), ``mia_loss_acc`` (loss-attack accuracy, ideal 50);
    with a ``reference``: ``agreement`` (% equal test predictions), ``kl`` (mean KL(ref || model) on test),
    ``gap`` (mean |difference| over UA, RA, TA, MIA-efficacy) and ``reference`` (the reference's own metrics).
    """

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


def _balanced(a: np.ndarray, b: np.ndarray, rng: np.random.Generator, cap: int | None
              ) -> tuple[np.ndarray, np.ndarray]:
    """Random equal-size subsets of a and b (size min(len(a), len(b), cap))."""
    n = min(len(a), len(b), cap or len(a))
    return rng.choice(a, n, replace=False), rng.choice(b, n, replace=False)


def mia_efficacy(conf_retain: np.ndarray, conf_test: np.ndarray, conf_forget: np.ndarray, seed: int = 0,
                 max_samples: int | None = 5000) -> float:
    """MIA-efficacy (SalUn): an RBF SVC (C=3, gamma="auto") learns member (retain) vs non-member (test) from the
    true-class confidence; returns the % of forget samples it calls non-members. Higher = better forgotten.

    Members are a random subset of retain the size of the test set (retain is often ordered by class, so "the
    first |D_t|" would be biased); ``max_samples`` caps each side for the SVC's quadratic cost."""
    from sklearn.svm import SVC

    if len(conf_forget) == 0 or len(conf_retain) == 0 or len(conf_test) == 0:
        raise DataError("mia_efficacy: forget, retain and test confidences must all be non-empty.")
    rng = np.random.default_rng(seed)
    members, non_members = _balanced(conf_retain, conf_test, rng, max_samples)
    X = np.concatenate([members, non_members])[:, None]
    y = np.concatenate([np.ones(len(members)), np.zeros(len(non_members))])
    clf = SVC(C=3, gamma="auto", kernel="rbf").fit(X, y)
    return float(100.0 * np.mean(clf.predict(conf_forget[:, None]) == 0))


def loss_mia(loss_forget: np.ndarray, loss_test: np.ndarray, seed: int = 0) -> float:
    """Loss-based attack (unlearning-challenge kit): logistic regression on per-sample CE loss, forget vs test
    (balanced by random subsampling), 10 stratified shuffle splits of test size 0.1; mean accuracy in %.
    50 means the forget set is indistinguishable from unseen data."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedShuffleSplit, cross_val_score

    rng = np.random.default_rng(seed)
    f, t = _balanced(loss_forget, loss_test, rng, None)
    if len(f) < 5:
        raise DataError(f"loss_mia: needs at least 5 forget and 5 test samples; got {len(f)}.")
    X = np.concatenate([f, t])[:, None]
    y = np.concatenate([np.ones(len(f)), np.zeros(len(t))])
    cv = StratifiedShuffleSplit(n_splits=10, test_size=0.1, random_state=0)
    return float(100.0 * cross_val_score(LogisticRegression(), X, y, cv=cv, scoring="accuracy").mean())


def accuracy(model: nn.Module, data: LabeledData, batch_size: int = 1024) -> float:
    """Accuracy (%) of ``model`` on ``data`` (already validated), in eval mode, on the model's device."""
    return _summary(model, data, batch_size).accuracy


class _Summary:
    """What the metrics need from one pass of a model over a set, a batch at a time — O(1) floats per sample
    (prediction, true-class confidence, loss), never the (N, K) logits: memory stays flat in the set's size."""

    def __init__(self, n: int, per_sample: bool = True) -> None:
        self.pred = torch.empty(n, dtype=torch.int32)
        self.conf = torch.empty(n if per_sample else 0)  # the attacks' inputs, kept only when an attack runs
        self.loss = torch.empty(n if per_sample else 0)
        self.max_conf = 0.0
        self.finite = True
        self.bad = 0

    @property
    def accuracy(self) -> float:
        return float(100.0 * self.correct.float().mean()) if len(self.pred) else float("nan")

    def fill(self, at: int, logits: torch.Tensor, y: torch.Tensor) -> None:
        bad = ~torch.isfinite(logits).all(1)
        if bool(bad.any()):
            self.finite, self.bad = False, self.bad + int(bad.sum())
        prob = F.softmax(logits, 1)
        n = len(y)
        self.pred[at:at + n] = logits.argmax(1)
        if len(self.conf):
            self.conf[at:at + n] = prob.gather(1, y[:, None]).squeeze(1)
            self.loss[at:at + n] = F.cross_entropy(logits, y, reduction="none")
        self.max_conf += float(prob.max(1).values.double().sum())

    def finish(self, y: torch.Tensor) -> "_Summary":
        self.correct = self.pred == y.to(torch.int32)
        return self


def _summary(model: nn.Module, data: LabeledData, batch_size: int, per_sample: bool = False) -> _Summary:
    out = _Summary(len(data), per_sample)
    for at, logits, y in _outputs(model, data, batch_size):
        out.fill(at, logits, y)
    return out.finish(data.y)


@torch.no_grad()
def _agreement_kl(model: nn.Module, reference: nn.Module, data: LabeledData, batch_size: int) -> tuple[float, float]:
    """(% equal predictions, mean KL(reference ‖ model)) on ``data``: both models in one pass, batch by batch."""
    dev = model_device(model)
    view, rview = (as_logits(m, move(data.X[:2], dev)) for m in (model, reference))
    same, kl = 0, 0.0
    with eval_mode(model), eval_mode(reference):
        for X, _ in batches(data, batch_size, device=dev, reuse=True):
            t, r = F.log_softmax(view(X).float(), 1), F.log_softmax(rview(X).float(), 1)
            same += int((t.argmax(1) == r.argmax(1)).sum())
            kl += float(F.kl_div(t, r, log_target=True, reduction="sum"))
    return 100.0 * same / len(data), kl / len(data)


def _single(model: nn.Module, sets: dict[str, LabeledData], fault_label: int | None, seed: int,
            mia_samples: int | None, batch_size: int) -> Metrics:
    attacked = {"forget", "retain", "test"} if {"forget", "retain", "test"} <= sets.keys() else \
        {"forget", "test"} if {"forget", "test"} <= sets.keys() else set()
    passes = {k: _summary(model, d, batch_size, k in attacked) for k, d in sets.items()}
    for key, out in passes.items():
        if not out.finite:
            raise ModelError(f"model: gives NaN or infinite logits on {out.bad} of {len(out.pred)} {key} samples, so "
                             "it cannot be measured. Fix: check its weights for NaN/inf (a diverged training or "
                             "repair); repeat the run with a smaller learning rate.")
    m = Metrics()
    for key in ("forget", "retain", "test"):
        if key in sets:
            m[f"{key}_acc"] = passes[key].accuracy
    if "forget" in sets:
        m["ua"] = 100.0 - m["forget_acc"]
    if "test" in sets:
        t, y = passes["test"], sets["test"].y
        m["per_class_acc"] = {int(c): float(100.0 * t.correct[y == c].float().mean())
                              for c in torch.unique(y).tolist()}
        m["test_confidence"] = float(100.0 * t.max_conf / len(y)) if len(y) else float("nan")
    if "fault_test" in sets:
        ft = passes["fault_test"]
        m["fault_acc"] = ft.accuracy
        if fault_label is not None:
            m["fault_rate"] = float(100.0 * (ft.pred == fault_label).float().mean())
    if {"forget", "retain", "test"} <= sets.keys():
        m["mia_efficacy"] = mia_efficacy(passes["retain"].conf.numpy(), passes["test"].conf.numpy(),
                                         passes["forget"].conf.numpy(), seed, mia_samples)
    if {"forget", "test"} <= sets.keys() and min(len(sets["forget"]), len(sets["test"])) >= 5:
        m["mia_loss_acc"] = loss_mia(passes["forget"].loss.numpy(), passes["test"].loss.numpy(), seed)
    return m


def evaluate(model: nn.Module, forget: DataLike | None = None, retain: DataLike | None = None,
             test: DataLike | None = None, fault_test: DataLike | None = None, fault_label: int | None = None,
             reference: nn.Module | None = None, *, scenario: Any = None, seed: int = 0,
             device: "torch.device | str | None" = None, batch_size: int = 1024,
             mia_samples: int | None = 5000) -> Metrics:
    """Measure ``model`` on whichever sets are given (see :class:`Metrics` for the keys).

    ``scenario`` (a :class:`netfix.scenarios.Scenario`) fills forget / retain / test / fault_test / fault_label
    at once; explicit arguments win. ``reference`` (e.g. the model retrained from scratch on ``retain``) adds
    ``agreement``, ``kl`` and ``gap``. ``mia_samples`` caps each side of the SVC attack. The model is not
    changed (evaluation runs in eval mode and restores the mode).

    Example:
        >>> m = netfix.evaluate(model, scenario=s, reference=retrained)
        >>> round(m["gap"], 1), m["test_acc"] > 90
    """
    if scenario is not None:
        forget = forget if forget is not None else scenario.forget
        retain = retain if retain is not None else scenario.retain
        test = test if test is not None else scenario.test
        fault_test = fault_test if fault_test is not None else scenario.fault_test
        fault_label = fault_label if fault_label is not None else scenario.fault_label
    check_model(model)
    if reference is not None:
        check_model(reference, "reference")
    given = {"forget": forget, "retain": retain, "test": test, "fault_test": fault_test}
    raw = {k: v for k, v in given.items() if v is not None}
    if not raw:
        raise DataError("evaluate: no data given; pass at least one of forget, retain, test, fault_test "
                        "(or scenario=).")
    dev = resolve_device(device)
    net = model if model_device(model) == dev else copy_model(model, dev)
    first = as_data(next(iter(raw.values())), next(iter(raw)))
    net, k = model_view(net, first, next(iter(raw)), remember=False)
    sets = {name: as_data(d, name, num_classes=k) for name, d in raw.items()}
    if fault_label is not None and not (isinstance(fault_label, int) and 0 <= fault_label < k):
        raise ConfigError(f"fault_label: expected a class index in [0, {k}); got {fault_label!r}.")
    if fault_label is not None and "fault_test" not in sets:
        raise ConfigError("fault_label: given without fault_test; pass the test inputs that trigger the fault.")
    m = _single(net, sets, fault_label, seed, mia_samples, batch_size)
    if reference is not None:
        ref = reference if model_device(reference) == dev else copy_model(reference, dev, "reference")
        ref, k_ref = model_view(ref, first, "reference", remember=False)
        if k_ref != k:
            raise ConfigError(f"reference: has {k_ref} outputs but model has {k}; "
                              "expected the same classes.")
        rm = _single(ref, sets, fault_label, seed, mia_samples, batch_size)
        m["reference"] = {key: v for key, v in rm.items() if key != "per_class_acc"}
        shared = [key for key in GAP_KEYS if key in m and key in rm]
        if shared:
            m["gap"] = float(np.mean([abs(m[key] - rm[key]) for key in shared]))
        if "test" in sets and len(sets["test"]):
            m["agreement"], m["kl"] = _agreement_kl(net, ref, sets["test"], batch_size)
    return m
