"""netfix.models: build (mlp / lenet / resnet), seeding, errors, and reinit."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import netfix
from netfix import models
from netfix.training import TrainConfig
from netfix.errors import ConfigError, UnknownNameError

SHAPES = [(1, 28, 28), (1, 8, 8), (3, 32, 32)]
# Small variants keep the tests fast; every architecture's defaults are covered once below.
SMALL = {"mlp": {"hidden": (16,)}, "lenet": {}, "resnet": {"depth": 8, "width": 4}}


def _same_weights(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def _params_all_differ(a: nn.Module, b: nn.Module) -> bool:
    """Every weight tensor that a random initialiser draws differs between a and b."""
    pa, pb = dict(a.named_parameters()), dict(b.named_parameters())
    random = [k for k in pa if pa[k].dim() > 1]  # conv / linear weights; BN weights init to constants
    return bool(random) and all(not torch.equal(pa[k], pb[k]) for k in random)


# ---------------------------------------------------------------------------------------------------------------
# build
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("name", ["mlp", "lenet", "resnet"])
def test_build_gives_batch_by_classes_logits(name, shape):
    model = models.build(name, input_shape=shape, num_classes=7, seed=0, **SMALL[name])
    model.eval()
    with torch.no_grad():
        out = model(torch.rand(3, *shape))
    assert out.shape == (3, 7)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", ["mlp", "lenet", "resnet"])
def test_build_with_default_options_works(name):
    model = models.build(name, (1, 8, 8), 10, seed=0)
    model.eval()
    with torch.no_grad():
        assert model(torch.rand(2, 1, 8, 8)).shape == (2, 10)


def test_build_mlp_accepts_flat_input_shape():
    model = models.build("mlp", (20,), 3, hidden=(8, 8), seed=0)
    assert model(torch.rand(4, 20)).shape == (4, 3)


def test_build_records_how_it_was_built():
    model = models.build("mlp", [1, 8, 8], 10, seed=0, hidden=(16, 8))
    info = netfix.card.of(model)
    assert info.architecture == {"name": "mlp", "kwargs": {"hidden": [16, 8]}}
    assert info.input_shape == [1, 8, 8] and info.num_classes == 10


def test_available_lists_models():
    assert models.available() == ["lenet", "mlp", "resnet"]


def test_resnet_has_batchnorm_and_named_stages():
    model = models.build("resnet", (3, 32, 32), 10, depth=8, width=4, seed=0)
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    for name in ("layer1", "layer2", "layer3", "fc"):
        assert hasattr(model, name)


def test_resnet_depth_sets_blocks_per_stage():
    model = models.build("resnet", (1, 8, 8), 10, depth=14, width=4, seed=0)
    assert len(model.layer1) == len(model.layer2) == len(model.layer3) == 2


@pytest.mark.parametrize("name", ["mlp", "lenet", "resnet"])
def test_same_seed_gives_identical_weights(name):
    a = models.build(name, (1, 8, 8), 10, seed=3, **SMALL[name])
    b = models.build(name, (1, 8, 8), 10, seed=3, **SMALL[name])
    assert _same_weights(a, b)


@pytest.mark.parametrize("name", ["mlp", "lenet", "resnet"])
def test_other_seed_gives_different_weights(name):
    a = models.build(name, (1, 8, 8), 10, seed=3, **SMALL[name])
    b = models.build(name, (1, 8, 8), 10, seed=4, **SMALL[name])
    assert _params_all_differ(a, b)


def test_build_seed_does_not_touch_global_rng():
    torch.manual_seed(99)
    expected = torch.rand(3)
    torch.manual_seed(99)
    models.build("mlp", (1, 8, 8), 10, seed=0, hidden=(8,))
    assert torch.equal(torch.rand(3), expected)


def test_unknown_model_name_raises_listing_valid():
    with pytest.raises(UnknownNameError, match=r"^name: unknown model 'vgg'\. Valid models: 'lenet', 'mixed-linear', 'mlp', 'resnet'"):
        models.build("vgg", (1, 28, 28), 10)


def test_unknown_kwarg_raises_config_error_naming_valid_options():
    with pytest.raises(ConfigError, match=r"^mlp: .*unexpected keyword argument 'widht'.*"
                                          r"Valid options: hidden, dropout, edit_block\."):
        models.build("mlp", (1, 28, 28), 10, widht=3)


def test_unknown_resnet_kwarg_names_resnet_options():
    with pytest.raises(ConfigError, match=r"^resnet: .*Valid options: depth, width, edit_block\."):
        models.build("resnet", (3, 32, 32), 10, hidden=(8,))


@pytest.mark.parametrize("depth", [7, 10, 21, 2])
def test_resnet_bad_depth_raises(depth):
    with pytest.raises(ConfigError, match=rf"^depth: a CIFAR-style ResNet has depth 6n\+2 .*got {depth}"):
        models.build("resnet", (3, 32, 32), 10, depth=depth)


def test_resnet_bad_width_raises():
    with pytest.raises(ConfigError, match=r"^width: expected a positive number of channels; got 0"):
        models.build("resnet", (3, 32, 32), 10, width=0)


@pytest.mark.parametrize("name", ["lenet", "resnet"])
def test_image_model_with_flat_input_shape_raises(name):
    with pytest.raises(ConfigError, match=rf"^input_shape: {name} needs image inputs \(C, H, W\); got \(784,\).*"
                                          r"Fix: use 'mlp'"):
        models.build(name, (784,), 10)


@pytest.mark.parametrize("shape", [(), (1, 0, 28), (1, -2, 28)])
def test_bad_input_shape_raises(shape):
    with pytest.raises(ConfigError, match=r"^input_shape: expected positive sizes"):
        models.build("mlp", shape, 10)


@pytest.mark.parametrize("k", [0, 1])
def test_fewer_than_two_classes_raises(k):
    with pytest.raises(ConfigError, match=rf"^num_classes: a classifier needs at least 2 classes; got {k}"):
        models.build("mlp", (1, 8, 8), k)


# ---------------------------------------------------------------------------------------------------------------
# reinit
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["mlp", "lenet", "resnet"])
def test_reinit_gives_different_weights_from_the_original(name):
    model = models.build(name, (1, 8, 8), 10, seed=0, **SMALL[name])
    fresh = models.reinit(model, seed=1)
    assert _params_all_differ(model, fresh)


def test_reinit_changes_trained_weights():
    model = models.build("mlp", (1, 8, 8), 10, seed=0, hidden=(16,))
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)  # stands in for training
    fresh = models.reinit(model, seed=0)
    assert _params_all_differ(model, fresh)
    assert all(not torch.equal(p, q) for p, q in zip(model.parameters(), fresh.parameters()))


@pytest.mark.parametrize("name", ["mlp", "resnet"])
def test_reinit_is_deterministic_in_seed(name):
    model = models.build(name, (1, 8, 8), 10, seed=0, **SMALL[name])
    assert _same_weights(models.reinit(model, seed=5), models.reinit(model, seed=5))
    assert _params_all_differ(models.reinit(model, seed=5), models.reinit(model, seed=6))


@pytest.mark.parametrize("name", ["mlp", "resnet"])
def test_reinit_does_not_modify_the_original(name):
    model = models.build(name, (1, 8, 8), 10, seed=0, **SMALL[name])
    before = {k: v.clone() for k, v in model.state_dict().items()}
    fresh = models.reinit(model, seed=1)
    assert fresh is not model
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_reinit_resets_batchnorm_running_stats():
    model = models.build("resnet", (1, 8, 8), 10, depth=8, width=4, seed=0)
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.rand(4, 1, 8, 8) * 5 + 2)
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert all(int(m.num_batches_tracked) == 3 for m in bns)
    assert not torch.equal(bns[0].running_mean, torch.zeros_like(bns[0].running_mean))

    fresh = models.reinit(model, seed=1)
    fresh_bns = [m for m in fresh.modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(fresh_bns) == len(bns)
    for m in fresh_bns:
        assert torch.equal(m.running_mean, torch.zeros_like(m.running_mean))
        assert torch.equal(m.running_var, torch.ones_like(m.running_var))
        assert int(m.num_batches_tracked) == 0
    # the original keeps its statistics
    assert all(int(m.num_batches_tracked) == 3 for m in bns)


def test_reinit_resets_batchnorm_affine_parameters():
    model = models.build("resnet", (1, 8, 8), 10, depth=8, width=4, seed=0)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.fill_(3.0)
                m.bias.fill_(-1.0)
    fresh = models.reinit(model, seed=0)
    for m in fresh.modules():
        if isinstance(m, nn.BatchNorm2d):
            assert torch.equal(m.weight, torch.ones_like(m.weight))
            assert torch.equal(m.bias, torch.zeros_like(m.bias))


def test_reinit_works_on_user_module_and_keeps_its_type():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Linear(4, 8)
            self.b = nn.Linear(8, 2)

        def forward(self, x):
            return self.b(torch.relu(self.a(x)))

    torch.manual_seed(0)
    net = Net()
    fresh = models.reinit(net, seed=2)
    assert type(fresh) is Net
    assert _params_all_differ(net, fresh)
    assert fresh(torch.rand(3, 4)).shape == (3, 2)


def test_reinit_keeps_the_build_spec():
    model = models.build("mlp", (1, 8, 8), 10, seed=0, hidden=(16,))
    assert netfix.card.of(models.reinit(model, seed=1)) == netfix.card.of(model)


def test_recipe_gives_train_keywords_for_every_reference_model():
    for name in models.available():
        r = models.recipe(name)
        assert {"optimizer", "lr", "lr_schedule", "batch_size"} <= r.keys()
        TrainConfig(**r)  # valid as it stands


def test_recipe_returns_a_copy_and_refuses_unknown_names():
    models.recipe("mlp")["lr"] = 99.0
    assert models.recipe("mlp")["lr"] != 99.0
    with pytest.raises(UnknownNameError, match="unknown model 'vgg'"):
        models.recipe("vgg")
