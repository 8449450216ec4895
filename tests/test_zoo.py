"""The foreign-model contract: models netfix did not build, trained by a plain PyTorch loop — Hugging Face ViT and
ResNet classifiers (tiny configs, random init, offline), a residual network with BatchNorm and Dropout and a
non-sequential forward, an MLP-Mixer-style network with LayerNorm and GELU, and a model that takes its input as a
keyword and returns a dict — go through every operation with netfix's defaults, and the outcomes hold."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

import netfix
from netfix.bench.zoo_models import ZOO, build, train_plain

pytest.importorskip("transformers")

ARCHS = list(ZOO)
KEYWORD = {"keyword": "image"}
# Measured misses (docs/results.md, "Any model"): on the small ViT, OGD's first-order protection (300 memory
# points) does not hold the retained accuracy within 3 points, and SalUn's guard retries trade forgetting for it.
KNOWN_MISSES = {("hf-vit", "ogd"), ("hf-vit", "salun")}


def _splits():
    train, _ = netfix.datasets.load("digits")
    perm = np.random.default_rng(1).permutation(len(train))
    return train.subset(np.sort(perm[300:]), "train"), train.subset(np.sort(perm[:300]), "val")


@pytest.fixture(scope="module")
def data():
    return _splits()


@pytest.fixture(scope="module")
def zoo(data):
    """Each architecture trained by the user's own loop (30 epochs of AdamW on 1,137 digits)."""
    train, _ = data
    torch.set_num_threads(2)
    return {a: train_plain(build(a, train.input_shape, 10, seed=0), train, epochs=30, keyword=KEYWORD.get(a))
            for a in ARCHS}


def _state(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("method", ["ogd", "salun", "scrub", "random-label"])
def test_class_forgetting_with_defaults_forgets_and_keeps_the_rest(zoo, data, arch, method):
    if (arch, method) in KNOWN_MISSES:
        pytest.xfail("measured miss on the small ViT (docs/results.md)")
    train, val = data
    model = zoo[arch]
    s = netfix.scenarios.class_forget(train, val, cls=3)
    before, state = netfix.evaluate(model, scenario=s), _state(model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = netfix.unlearn(model, s.forget, s.retain, method=method, progress=False)
    after = netfix.evaluate(out.model, scenario=s)
    assert type(out.model) is type(model)  # the user's own class comes back, never a wrapper
    assert after["ua"] >= 90 and after["retain_acc"] >= before["retain_acc"] - 3, (after["ua"], after["retain_acc"])
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())  # the caller's model is untouched


@pytest.mark.parametrize("arch, method", sorted(KNOWN_MISSES))
def test_the_known_misses_still_never_collapse(zoo, data, arch, method):
    """Where the contract is missed, the guard still keeps the model: it forgets, loses at most 15 points of
    retained accuracy (measured: 5-11), and stays far above the 11 % of an unguarded random-label run."""
    train, val = data
    s = netfix.scenarios.class_forget(train, val, cls=3)
    before = netfix.evaluate(zoo[arch], scenario=s)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = netfix.unlearn(zoo[arch], s.forget, s.retain, method=method, progress=False)
    after = netfix.evaluate(out.model, scenario=s)
    assert after["ua"] >= 50 and after["retain_acc"] >= before["retain_acc"] - 15 and after["test_acc"] > 50


@pytest.mark.parametrize("arch", ARCHS)
def test_every_registered_method_runs_on_it(zoo, data, arch):
    train, val = data
    s = netfix.scenarios.random_forget(train, val, fraction=0.05)
    model = zoo[arch]
    state = _state(model)
    fast = {"fisher": {"max_samples": 200}}  # every other method at its defaults: no default may collapse a model
    for method in netfix.methods.available():
        if method == "mixed-linear":  # needs a model built as a netfix.mixed.MixedLinear
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out = netfix.unlearn(model, s.forget, s.retain, method=method, progress=False, **fast.get(method, {}))
        m = netfix.evaluate(out.model, test=val)
        assert type(out.model) is type(model) and m["test_acc"] > 50, (method, m["test_acc"])
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())


@pytest.mark.parametrize("arch", ARCHS)
def test_the_default_editor_corrects_20_single_inputs(zoo, data, arch):
    """Each edit on the original model: a validation input the model gets wrong (or, once they run out, one it
    gets right) to its true label (the wrong ones) or to another label."""
    _, val = data
    model = zoo[arch]
    pred = netfix.evaluation.predict(model, val).argmax(1)
    order = torch.cat([torch.nonzero(pred != val.y).squeeze(1), torch.nonzero(pred == val.y).squeeze(1)])[:20]
    targets = torch.where(pred[order] != val.y[order], val.y[order], (val.y[order] + 1) % 10)
    base = netfix.evaluate(model, test=val)["test_acc"]
    ok, drawdown = 0, []
    for i, t in zip(order.tolist(), targets.tolist()):
        out = netfix.edit(model, val.X[i:i + 1], torch.tensor([t]))
        ok += out.success[0]
        drawdown.append(base - netfix.evaluate(out.model, test=val)["test_acc"])
    assert ok == 20
    assert out.config["params"] == [netfix.editing.default_edit_params(model, 10)[0]]  # the classifier head


@pytest.mark.parametrize("arch", ARCHS)
def test_unlearn_then_relearn_repairs_a_mislabelled_class(data, arch):
    train, val = data
    s = netfix.scenarios.mislabel(train, val, source=7, target=1)
    faulty = train_plain(build(arch, train.input_shape, 10, seed=0), s.train, epochs=30, keyword=KEYWORD.get(arch))
    assert netfix.evaluate(faulty, scenario=s)["fault_rate"] > 80
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        forgotten = netfix.unlearn(faulty, s.forget, s.retain, method="ogd", progress=False).model
        fixed = netfix.relearn(forgotten, s.corrected, protect=s.retain, method="ogd", progress=False).model
    m = netfix.evaluate(fixed, scenario=s)
    assert m["fault_acc"] >= 90 and m["fault_rate"] <= 10, (m["fault_acc"], m["fault_rate"])


@pytest.mark.parametrize("arch", ARCHS)
def test_save_and_load_give_identical_predictions(zoo, data, arch, tmp_path):
    _, val = data
    model = zoo[arch]
    path = netfix.save(model, tmp_path / arch)
    if arch.startswith("hf-"):
        loaded = netfix.load(path)  # rebuilt from its config: data, not code
    else:
        loaded = netfix.load(path, model=build(arch, val.input_shape, 10, seed=5))  # the user's class, filled
    assert type(loaded) is type(model)
    a, b = netfix.evaluation.predict(model, val), netfix.evaluation.predict(loaded, val)
    assert torch.equal(a, b)
