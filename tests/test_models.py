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
    assert models.available() == ["lenet", "mlp", "resnet", "resnet18", "vit"]


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


# ---------------------------------------------------------------------------------------------------------------
# resnet18 and vit (the unlearning literature's CIFAR ResNet-18 and a small ViT), at tiny sizes
# ---------------------------------------------------------------------------------------------------------------

ZOO = {"resnet18": {"width": 4}, "vit": {"dim": 16, "depth": 2, "heads": 2}}
ZOO_SHAPES = [(1, 28, 28), (3, 32, 32)]


@pytest.mark.parametrize("shape", ZOO_SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("name", list(ZOO))
def test_zoo_builds_batch_by_classes_logits(name, shape):
    model = models.build(name, shape, 7, seed=0, **ZOO[name]).eval()
    with torch.no_grad():
        out = model(torch.rand(3, *shape))
    assert out.shape == (3, 7) and torch.isfinite(out).all()
    assert name in models.available()
    assert netfix.card.of(model).architecture == {"name": name, "kwargs": ZOO[name]}


def test_resnet18_is_the_cifar_variant_with_named_stages():
    model = models.build("resnet18", (3, 32, 32), 10, width=4, seed=0)
    assert (model.conv1.kernel_size, model.conv1.stride) == ((3, 3), (1, 1))
    assert not any(isinstance(m, nn.MaxPool2d) for m in model.modules())
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    stages = [model.layer1, model.layer2, model.layer3, model.layer4]
    assert [len(s) for s in stages] == [2, 2, 2, 2]
    assert [s[0].conv1.out_channels for s in stages] == [4, 8, 16, 32]
    assert [s[0].conv1.stride for s in stages] == [(1, 1), (2, 2), (2, 2), (2, 2)]
    assert model.fc.in_features == 32 and list(dict(model.named_children()))[-1] == "fc"


def test_resnet18_default_width_is_the_standard_11m_parameter_model():
    model = models.build("resnet18", (3, 32, 32), 10, seed=0)
    assert sum(p.numel() for p in model.parameters()) == 11_173_962  # the CIFAR ResNet-18 of the literature


def test_vit_structure_and_names():
    model = models.build("vit", (1, 28, 28), 10, seed=0, **ZOO["vit"])
    pe = model.patch_embed
    assert isinstance(pe, nn.Conv2d) and pe.kernel_size == pe.stride == (4, 4) and pe.out_channels == 16
    assert model.pos_embed.shape == (1, 1 + 7 * 7, 16) and model.cls_token.shape == (1, 1, 16)
    assert len(model.blocks) == 2 and isinstance(model.norm, nn.LayerNorm)
    names = dict(model.named_modules())
    for n in ("blocks.0.norm1", "blocks.0.attn.qkv", "blocks.0.attn.proj", "blocks.1.mlp.fc1", "blocks.1.norm2", "fc"):
        assert n in names
    assert list(dict(model.named_children()))[-1] == "fc"


def test_vit_attention_matches_torch_multihead_attention():
    model = models.build("vit", (1, 8, 8), 10, seed=0, **ZOO["vit"]).eval()
    attn = model.blocks[0].attn
    mha = nn.MultiheadAttention(16, 2, batch_first=True).eval()
    with torch.no_grad():
        mha.in_proj_weight.copy_(attn.qkv.weight)
        mha.in_proj_bias.copy_(attn.qkv.bias)
        mha.out_proj.weight.copy_(attn.proj.weight)
        mha.out_proj.bias.copy_(attn.proj.bias)
        x = torch.randn(3, 5, 16)
        assert torch.allclose(attn(x), mha(x, x, x, need_weights=False)[0], atol=1e-5)


@pytest.mark.parametrize("patch", [5, 3])
def test_vit_patch_must_divide_the_image(patch):
    with pytest.raises(ConfigError, match=rf"^patch: the 28x28 input is not divisible into {patch}x{patch} "
                                          r"patches\. Fix: pass patch=4 \(divisors of both sides: 2, 4, 7, 14, 28\)"):
        models.build("vit", (1, 28, 28), 10, patch=patch)


@pytest.mark.parametrize("kwargs, field", [({"dim": 30, "heads": 4}, "heads"), ({"depth": 0}, "depth"),
                                           ({"mlp_ratio": 0}, "mlp_ratio"), ({"dropout": 1.0}, "dropout"),
                                           ({"dim": 2.5}, "dim")])
def test_vit_bad_options_raise_config_error(kwargs, field):
    with pytest.raises(ConfigError, match=rf"^{field}: "):
        models.build("vit", (1, 28, 28), 10, **kwargs)


@pytest.mark.parametrize("width", [0, True, 2.0])
def test_resnet18_bad_width_raises(width):
    with pytest.raises(ConfigError, match=r"^width: expected a positive number of channels"):
        models.build("resnet18", (3, 32, 32), 10, width=width)


@pytest.mark.parametrize("name", list(ZOO))
def test_zoo_flat_input_shape_raises(name):
    with pytest.raises(ConfigError, match=rf"^input_shape: {name} needs image inputs"):
        models.build(name, (784,), 10)


@pytest.mark.parametrize("name", list(ZOO))
def test_zoo_edit_block_leaves_the_function_unchanged_at_insertion(name):
    plain = models.build(name, (1, 28, 28), 10, seed=0, **ZOO[name])
    with torch.no_grad():  # non-trivial BatchNorm statistics
        plain.train()(torch.rand(16, 1, 28, 28))
    plain.eval()
    edited = models.build(name, (1, 28, 28), 10, seed=1, edit_block=8, **ZOO[name]).eval()
    missing, unexpected = edited.load_state_dict(plain.state_dict(), strict=False)
    assert not unexpected and missing and all(k.startswith("edit_block.") for k in missing)
    assert isinstance(edited.edit_block, models.EditBlock)
    assert list(dict(edited.named_children()))[-2:] == ["edit_block", "fc"]
    x = torch.rand(5, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(edited(x), plain(x))
    via = netfix.methods.editing.add_edit_block(plain, hidden=8, seed=1).eval()
    with torch.no_grad():
        assert torch.equal(via(x), plain(x))


@pytest.mark.parametrize("name", list(ZOO))
def test_zoo_save_load_round_trip(name, tmp_path):
    model = models.build(name, (3, 32, 32), 10, seed=0, edit_block=4, **ZOO[name])
    with torch.no_grad():
        model.train()(torch.rand(16, 3, 32, 32))
    model.eval()
    netfix.save(model, tmp_path / name)
    loaded = netfix.load(tmp_path / name).eval()
    assert type(loaded) is type(model) and _same_weights(loaded, model)
    x = torch.rand(4, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))


@pytest.mark.parametrize("name", list(ZOO))
def test_zoo_seed_is_reproducible(name):
    a = models.build(name, (1, 28, 28), 10, seed=3, **ZOO[name])
    assert _same_weights(a, models.build(name, (1, 28, 28), 10, seed=3, **ZOO[name]))
    assert _params_all_differ(a, models.build(name, (1, 28, 28), 10, seed=4, **ZOO[name]))
    r = models.reinit(a, seed=1)
    assert _params_all_differ(a, r) and _same_weights(r, models.reinit(a, seed=1))


@pytest.mark.parametrize("name", list(ZOO))
def test_zoo_trains_on_synthetic_with_its_recipe(name):
    train, _ = netfix.datasets.load("synthetic", n_train=256, n_test=32)
    model = models.build(name, train.input_shape, train.num_classes, seed=0, **ZOO[name])
    recipe = models.recipe(name)
    recipe["batch_size"] = 32  # 8 steps an epoch on 256 samples
    out = netfix.train(model, train, epochs=3, seed=0, progress=False, **recipe)
    losses = [h["loss"] for h in out.history if "loss" in h]
    assert losses[-1] < losses[0]
