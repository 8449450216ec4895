"""``rum`` (RUM, the Refined-Unlearning Meta-algorithm): split ``forget`` by how much the model memorised each
sample, then unlearn the groups one after the other, each with a method of its own.

1. Refinement. Each forget sample gets a memorisation score from the model before any change — ``proxy=
   "confidence"``: 1 − p_y(x), the probability it gives the sample's own label taken from 1 (a memorised sample is an
   atypical one the model fits less surely than the samples its class shares features with; held-out free, one
   inference pass). The samples sorted by score are cut into ``groups`` equal parts, low to high.
2. Meta-unlearning. The groups are unlearned in turn (``order``: lowest memorisation first, the order the source
   found best), each by a registered method run on the same model in place, with ``retain`` as the kept data. The
   method of a group is the spec ``NAME[:key=value,...]`` (e.g. ``neggrad+:alpha=0.99,epochs=5``) of ``inner_low``
   (the first group), ``inner_high`` (the last) or ``inner_medium`` (those between), else of ``inner``, else the
   source's NegGrad+ setting for that group (gentler on the less memorised groups, longer and slower on the most).

Samples of groups not yet unlearned are never trained on as kept data: the retain set is the caller's throughout.
``step_scale`` multiplies every inner method's step option (its registry ``strength``, e.g. ``lr``): the guard
scales it down when a run costs too much retained accuracy. Source: Zhao et al., "What makes unlearning hard and
what to do about it" (NeurIPS 2024, arXiv 2406.01257); its confidence proxy from Zhao & Triantafillou,
"Scalability of memorization-based machine unlearning" (arXiv 2410.16516).
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from ..data import LabeledData
from ..errors import ConfigError, DataError, NetfixError, UnknownNameError, unknown
from ..evaluation import predict
from ..validation import Options, option
from . import Context, Method, available, get, register
from ._guard import _value

PROXIES = ("confidence", "random")
ORDERS = ("low-first", "high-first")
# the source's per-group NegGrad+ (its example run, low to high memorisation); chosen on a validation split over
# NegGrad+ at netfix's defaults, 4 epochs per group, and a random split (benchmarks/unlearn_select.py)
GROUP_DEFAULTS = {"inner_low": "neggrad+:alpha=0.99,epochs=5,lr=0.01",
                  "inner_medium": "neggrad+:alpha=0.97,epochs=5,lr=0.01",
                  "inner_high": "neggrad+:alpha=0.97,epochs=10,lr=0.001"}


@dataclass
class RUMConfig(Options):
    """Options of ``rum``: which method unlearns which memorisation group, and how the groups are made.

    Defaults marked in docs/results.md were chosen on a validation split (benchmarks/unlearn_select.py).
    """

    inner: str | None = option(None, "the method (spec NAME[:key=value,...]) of every group without one of its "
                               "own, e.g. 'neggrad+:epochs=5' or 'salun'", none=(
                                   "the source's NegGrad+ per group: low α=0.99, 5 epochs, lr 0.01; medium α=0.97, "
                                   "5 epochs, lr 0.01; high α=0.97, 10 epochs, lr 0.001"))
    inner_low: str | None = option(None, "method spec of the lowest-memorisation group", none="inner")
    inner_medium: str | None = option(None, "method spec of the groups between the lowest and the highest",
                                      none="inner")
    inner_high: str | None = option(None, "method spec of the highest-memorisation group", none="inner")
    groups: int = option(3, "memorisation groups the forget set is cut into (equal sizes)", low=1, high=10)
    proxy: str = option("confidence", "memorisation score: 'confidence' = 1 - p_y(x) of the model before "
                        "unlearning; 'random' = a random split (an ablation: sequential unlearning without "
                        "refinement)", choices=PROXIES, kind="proxy")
    order: str = option("low-first", "order the groups are unlearned in", choices=ORDERS)
    step_scale: float = option(1.0, "multiplies each inner method's step option (its strength, e.g. lr); the "
                               "guard lowers it. Across architectures (benchmarks/zoo_select.py, digits) 1.0 lost up "
                               "to 57 points of retained accuracy on LeNet unguarded and 0.5 at most 2.5, but 0.5 "
                               "forgets a class only partly on the MLP: 1.0 is kept, and the guard catches LeNet",
                               low=0, high=10, low_open=True)

    def check(self) -> None:
        for name in ("inner", "inner_low", "inner_medium", "inner_high"):
            spec = getattr(self, name)
            if spec is not None:
                inner_config(spec, name)

    def spec_of(self, group: int, count: int) -> tuple[str, str]:
        """(option name, spec) of the method that unlearns group ``group`` of ``count`` (0 = lowest memorisation;
        a single group is unlearned by ``inner``, else by the medium group's default)."""
        name = "inner_medium" if count == 1 else "inner_low" if group == 0 else "inner_high" \
            if group == count - 1 else "inner_medium"
        if count > 1 and getattr(self, name) is not None:
            return name, getattr(self, name)
        return ("inner", self.inner) if self.inner is not None else (name, GROUP_DEFAULTS[name])


def inner_config(spec: str, argument: str) -> tuple[Method, Any]:
    """The registered method and its config that ``spec`` (``NAME[:key=value,...]``) names; refuses unknown names
    (listing the valid ones), ``rum`` itself, methods that cannot unlearn or need a model type of their own, and
    bad options, each error naming ``argument``."""
    from ..scenarios import parse_spec

    name, opts = parse_spec(spec, argument, "neggrad+:alpha=0.99,epochs=5")
    valid = [m for m in available() if m != "rum" and "unlearn" in get(m).modes and get(m).model_type is None]
    if name == "rum":
        raise ConfigError(f"{argument}: expected a method other than 'rum' (it cannot run inside itself); got "
                          f"{spec!r}. Fix: pass e.g. {argument}='neggrad+'.")
    if name not in valid:
        if name in available():
            raise ConfigError(f"{argument}: method {name!r} cannot run inside rum (it cannot unlearn, or needs a "
                              f"model built its own way). Valid methods: {', '.join(valid)}.")
        raise unknown("method", name, valid, argument)
    spec_ = get(name)
    try:
        return spec_, spec_.make_config(opts)
    except UnknownNameError as e:  # already says "method 'NAME': unknown option ..."
        raise UnknownNameError(f"{argument}: {e}") from None
    except NetfixError as e:
        raise type(e)(f"{argument} ({name}): {e}") from None


def memorisation_scores(model: nn.Module, forget: LabeledData, proxy: str, ctx: Context) -> np.ndarray:
    """One score per forget sample, higher = more memorised (see ``proxy``)."""
    if proxy == "random":
        return torch.rand(len(forget), generator=ctx.generator, dtype=torch.float64).numpy()
    probs = torch.softmax(predict(model, forget).double(), dim=1)  # (N, K), eval mode, on the CPU
    return (1.0 - probs.gather(1, forget.y.view(-1, 1)).squeeze(1)).numpy()


def refine(scores: np.ndarray, groups: int) -> list[np.ndarray]:
    """Forget indices cut into ``groups`` parts of (nearly) equal size by ascending score (ties by index); a
    forget set smaller than ``groups`` gives fewer, non-empty parts."""
    order = np.argsort(scores, kind="stable")
    return [np.sort(part) for part in np.array_split(order, min(groups, len(order))) if len(part)]


def _scaled(spec: Method, cfg: Any, scale: float, mode: str) -> Any:
    """``cfg`` with the method's step option times ``scale`` (unchanged when it has none, or scale is 1)."""
    if scale == 1.0 or spec.strength is None:
        return cfg
    value = _value(cfg, spec.strength, mode)
    return cfg if value is None else dataclasses.replace(cfg, **{spec.strength: value * scale})


@register("rum", RUMConfig, modes=("unlearn",), strength="step_scale",
          summary="cut forget into memorisation groups and unlearn them in turn, low to high, each with its own "
                  "method (RUM)")
def run(model: nn.Module, forget: LabeledData, retain: LabeledData, cfg: RUMConfig,
        ctx: Context) -> list[dict[str, Any]]:
    """Refine the forget set by memorisation, then run the inner methods group by group."""
    start = time.perf_counter()
    scores = memorisation_scores(model, forget, cfg.proxy, ctx)
    parts = refine(scores, cfg.groups)
    plan = []  # (group index low→high, its indices, option name, method, config)
    for g, idx in enumerate(parts):
        argument, spec = cfg.spec_of(g, len(parts))
        method, inner_cfg = inner_config(spec, argument)
        if method.needs_retain and len(retain) == 0:
            raise DataError(f"retain: is empty; {method.needs_retain} Fix: pass the samples to keep, or another "
                            f"{argument}.")
        plan.append((g, idx, argument, method, _scaled(method, inner_cfg, cfg.step_scale, ctx.mode)))
    if cfg.order == "high-first":
        plan.reverse()
    history: list[dict[str, Any]] = [{
        "phase": "refine", "proxy": cfg.proxy, "sizes": [len(p) for p in parts],
        "score_ranges": [[float(scores[p].min()), float(scores[p].max())] for p in parts],
        "refine_seconds": time.perf_counter() - start}]
    for g, idx, argument, method, inner_cfg in plan:
        part = forget.subset(idx, f"forget-group{g}")
        for h in method.run(model, part, retain, inner_cfg, ctx):
            history.append({"group": g, "method": method.name, **h})
    return history
