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
from conftest import ogd_repair
from netfix.bench.zoo_models import FULL_SIZE, ZOO, build, train_plain

pytest.importorskip("transformers")

ARCHS = list(ZOO)
KEYWORD = {"keyword": "image"}
# Measured miss (docs/results.md, "Any model"): on the small ViT, OGD's first-order protection (300 memory points)
# does not hold the retained accuracy within 3 points; every try loses more than the guard's collapse limit, so the
# guard returns the model unchanged (with a GuardWarning).
KNOWN_MISSES = {("hf-vit", "ogd")}
# On the keyword model (a 64-unit MLP), OGD's unlearn of a mislabel loses 7.5 points of retained accuracy at its
# default step, so the guard runs it at a quarter of it, where it barely forgets; relearn then fixes 26 of the 29
# mislabelled samples (89.7 %, the contract asks 90) — measured, docs/results.md.
KNOWN_RELEARN_MISSES = {"keyword"}


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
@pytest.mark.parametrize("method", ["ogd", "salun", "scrub", "random-label", "unseen"])
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
    """Where the contract is missed, the guard still keeps the model: either it forgets (UA >= 50) losing at most 15
    points of retained accuracy, or every try lost more than the guard's collapse limit and the model comes back
    unchanged, with a GuardWarning saying so — never the 11 % of an unguarded random-label run."""
    train, val = data
    s = netfix.scenarios.class_forget(train, val, cls=3)
    before = netfix.evaluate(zoo[arch], scenario=s)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = netfix.unlearn(zoo[arch], s.forget, s.retain, method=method, progress=False)
    after = netfix.evaluate(out.model, scenario=s)
    assert after["retain_acc"] >= before["retain_acc"] - 15 and after["test_acc"] > 50
    if out.history[-1].get("rolled_back"):
        assert any(issubclass(w.category, netfix.methods.GuardWarning) for w in caught)
        assert all(torch.equal(a, b) for a, b in zip(out.model.state_dict().values(), zoo[arch].state_dict().values()))
    else:
        assert after["ua"] >= 50


@pytest.mark.parametrize("arch", ARCHS)
def test_every_registered_method_runs_on_it(zoo, data, arch):
    train, val = data
    s = netfix.scenarios.random_forget(train, val, fraction=0.05)
    model = zoo[arch]
    state = _state(model)
    fast = {"fisher": {"max_samples": 200}}  # every other method at its defaults: no default may collapse a model
    for method in netfix.methods.available():
        if method == "mixed-linear":  # needs a model built as a netfix.methods.mixed_linear.MixedLinear
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            heldout = {"heldout": val} if netfix.methods.get(method).heldout else {}  # data it never trained on
            out = netfix.unlearn(model, s.forget, s.retain, method=method, progress=False, **fast.get(method, {}),
                                 **heldout)
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
    assert out.config["params"] == [netfix.methods.editing.default_edit_params(model, 10)[0]]  # the classifier head


@pytest.mark.parametrize("arch", ARCHS)
def test_unlearn_then_relearn_repairs_a_mislabelled_class(data, arch):
    train, val = data
    s = netfix.scenarios.mislabel(train, val, source=7, target=1)
    faulty = train_plain(build(arch, train.input_shape, 10, seed=0), s.train, epochs=30, keyword=KEYWORD.get(arch))
    assert netfix.evaluate(faulty, scenario=s)["fault_rate"] > 80
    m = ogd_repair(faulty, s)
    if arch in KNOWN_RELEARN_MISSES:  # still most of the class fixed, never worse
        assert m["fault_acc"] >= 80 and m["fault_rate"] <= 15, (m["fault_acc"], m["fault_rate"])
        pytest.xfail(f"measured miss: {m['fault_acc']:.1f} % of the class fixed (docs/results.md)")
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


def test_the_gpu_zoo_is_netfix_resnet18_and_vit_at_full_size():
    """``netfix bench zoo --device cuda`` adds these; built here (not trained) to check their size."""
    assert set(FULL_SIZE) == {"resnet18", "vit"}
    r18 = build("resnet18", (3, 32, 32), 10, seed=0)
    assert sum(p.numel() for p in r18.parameters()) == 11_173_962
    vit = build("vit", (3, 32, 32), 10, seed=0)
    assert len(vit.blocks) == 12 and vit.fc.in_features == 192
    assert netfix.card.of(vit).architecture == {"name": "vit", "kwargs": {"dim": 192, "depth": 12, "heads": 3}}


def test_train_plain_takes_a_device_and_returns_the_model_on_the_cpu(data):
    train, _ = data
    model = train_plain(build("keyword", train.input_shape, 10, seed=0), train.subset(np.arange(64), "few"),
                        epochs=1, keyword="image", device="cpu")
    assert all(p.device.type == "cpu" for p in model.parameters()) and not model.training
