"""netfix.io: save / load model files (safetensors + JSON sidecar), atomic writes, no unpickling."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import sys
import textwrap

import numpy as np
import pytest
import torch
from torch import nn

import netfix
from netfix import io as nio
from netfix import models
from netfix.errors import ConfigError, NotAModelError

FACTORY_MODULE = "netfix_io_test_factory"
FACTORY_SRC = textwrap.dedent('''
    import torch
    from torch import nn


    class TwoPath(nn.Module):
        """Non-sequential forward, BatchNorm and a plain buffer."""

        def __init__(self, d_in, hidden, k):
            super().__init__()
            self.a = nn.Linear(d_in, hidden)
            self.b = nn.Linear(d_in, hidden)
            self.bn = nn.BatchNorm1d(hidden)
            self.head = nn.Linear(hidden, k)
            self.register_buffer("scale", torch.ones(1))

        def forward(self, x):
            x = x.flatten(1)
            return self.head(torch.relu(self.bn(self.a(x) + torch.tanh(self.b(x))))) * self.scale


    def make_net(d_in=6, hidden=8, k=3):
        return TwoPath(d_in, hidden, k)


    def not_a_model():
        return "hello"
''')


# ---------------------------------------------------------------------------------------------------------------
# helpers and fixtures
# ---------------------------------------------------------------------------------------------------------------


def _mlp(seed: int = 0) -> nn.Module:
    return models.build("mlp", (1, 8, 8), 10, hidden=(16,), seed=seed)


def _resnet_with_running_stats() -> nn.Module:
    model = models.build("resnet", (1, 8, 8), 10, depth=8, width=4, seed=0)
    model.train()
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for _ in range(2):
            model(torch.rand(8, 1, 8, 8, generator=g) * 3 + 1)
    return model


def _outputs(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        return model(x)


def _same_state(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def _read_side(tmp_path, name="m") -> dict:
    return json.loads((tmp_path / f"{name}.json").read_text())


def _write_side(tmp_path, side, name="m") -> None:
    (tmp_path / f"{name}.json").write_text(json.dumps(side))


def _temp_leftovers(folder) -> list[str]:
    return [p.name for p in folder.iterdir() if p.name.endswith(".tmp")]


@pytest.fixture
def x8():
    return torch.rand(5, 1, 8, 8, generator=torch.Generator().manual_seed(1))


@pytest.fixture
def saved_mlp(tmp_path):
    model = _mlp()
    nio.save(model, tmp_path / "m")
    return model


@pytest.fixture
def factory_module(tmp_path, monkeypatch):
    """A user-architecture module written to tmp_path and importable for the duration of the test."""
    pkg = tmp_path / "userpkg"
    pkg.mkdir()
    (pkg / f"{FACTORY_MODULE}.py").write_text(FACTORY_SRC)
    monkeypatch.syspath_prepend(str(pkg))
    sys.modules.pop(FACTORY_MODULE, None)
    import importlib

    mod = importlib.import_module(FACTORY_MODULE)
    yield mod
    sys.modules.pop(FACTORY_MODULE, None)


# ---------------------------------------------------------------------------------------------------------------
# round trips
# ---------------------------------------------------------------------------------------------------------------


def test_mlp_round_trip_gives_identical_outputs(tmp_path, x8):
    model = _mlp()
    nio.save(model, tmp_path / "m")
    loaded = netfix.load(tmp_path / "m")
    assert type(loaded) is type(model)
    assert _same_state(model, loaded)
    assert torch.equal(_outputs(model, x8), _outputs(loaded, x8))


def test_resnet_round_trip_keeps_batchnorm_buffers(tmp_path, x8):
    model = _resnet_with_running_stats()
    nio.save(model, tmp_path / "r")
    loaded = netfix.load(tmp_path / "r")
    bn, bn2 = model.bn1, loaded.bn1
    assert int(bn.num_batches_tracked) == 2
    assert torch.equal(bn.running_mean, bn2.running_mean)
    assert torch.equal(bn.running_var, bn2.running_var)
    assert int(bn2.num_batches_tracked) == 2
    assert _same_state(model, loaded)


def test_resnet_round_trip_gives_identical_eval_outputs(tmp_path, x8):
    model = _resnet_with_running_stats()
    nio.save(model, tmp_path / "r")
    loaded = netfix.load(tmp_path / "r")
    assert torch.equal(_outputs(model, x8), _outputs(loaded, x8))


def test_loaded_model_is_in_eval_mode_on_cpu(tmp_path, saved_mlp):
    loaded = netfix.load(tmp_path / "m")
    assert loaded.training is False
    assert all(p.device.type == "cpu" for p in loaded.parameters())


def test_save_does_not_change_the_model_or_its_mode(tmp_path):
    model = _resnet_with_running_stats()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    nio.save(model, tmp_path / "r")
    assert model.training is True
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_user_factory_architecture_round_trip(tmp_path, factory_module):
    model = factory_module.make_net(d_in=6, hidden=5, k=3)
    model.train()
    with torch.no_grad():
        model.scale.fill_(2.0)
        model(torch.randn(16, 6, generator=torch.Generator().manual_seed(0)))  # BatchNorm stats
    nio.save(model, tmp_path / "u", {"factory": f"{FACTORY_MODULE}:make_net",
                                     "factory_kwargs": {"d_in": 6, "hidden": 5, "k": 3},
                                     "input_shape": [6], "num_classes": 3})
    loaded = netfix.load(tmp_path / "u")
    assert type(loaded).__name__ == "TwoPath"
    assert float(loaded.scale) == 2.0
    assert _same_state(model, loaded)
    x = torch.randn(4, 6, generator=torch.Generator().manual_seed(2))
    assert torch.equal(_outputs(model, x), _outputs(loaded, x))


def test_user_factory_sidecar_records_factory_shape_and_classes(tmp_path, factory_module):
    model = factory_module.make_net()
    nio.save(model, tmp_path / "u", {"factory": f"{FACTORY_MODULE}:make_net", "input_shape": [6],
                                     "num_classes": 3, "note": "hi"})
    side = _read_side(tmp_path, "u")
    assert side["architecture"] == {"factory": f"{FACTORY_MODULE}:make_net", "kwargs": {}}
    assert side["input_shape"] == [6] and side["num_classes"] == 3
    assert side["meta"] == {"note": "hi"}


def test_factory_meta_takes_precedence_over_netfix_spec(tmp_path, factory_module):
    model = factory_module.make_net()
    model.netfix_spec = {"name": "mlp", "kwargs": {}, "input_shape": [6], "num_classes": 3}
    nio.save(model, tmp_path / "u", {"factory": f"{FACTORY_MODULE}:make_net"})
    assert _read_side(tmp_path, "u")["architecture"]["factory"] == f"{FACTORY_MODULE}:make_net"


# ---------------------------------------------------------------------------------------------------------------
# file layout and sidecar
# ---------------------------------------------------------------------------------------------------------------


def test_save_writes_name_safetensors_and_name_json_only(tmp_path):
    out = nio.save(_mlp(), tmp_path / "m")
    assert out == tmp_path / "m.safetensors"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.json", "m.safetensors"]


def test_save_path_with_extension_writes_the_same_pair(tmp_path):
    out = nio.save(_mlp(), tmp_path / "m.safetensors")
    assert out == tmp_path / "m.safetensors"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.json", "m.safetensors"]


def test_save_creates_missing_folders(tmp_path):
    nio.save(_mlp(), tmp_path / "a" / "b" / "m")
    assert (tmp_path / "a" / "b" / "m.safetensors").is_file()
    assert (tmp_path / "a" / "b" / "m.json").is_file()


@pytest.mark.parametrize("suffix", ["", ".safetensors", ".json"])
def test_load_accepts_path_with_or_without_extension(tmp_path, saved_mlp, suffix, x8):
    loaded = netfix.load(str(tmp_path / "m") + suffix)
    assert torch.equal(_outputs(saved_mlp, x8), _outputs(loaded, x8))


def test_model_paths():
    for p in ("d/m", "d/m.safetensors", "d/m.json"):
        w, s = nio.model_paths(p)
        assert (str(w), str(s)) == ("d/m.safetensors", "d/m.json")


def test_sidecar_has_format_architecture_sha_and_version(tmp_path, saved_mlp):
    side = _read_side(tmp_path)
    assert side["format"] == "netfix-model"
    assert side["format_version"] == 1
    assert side["architecture"] == {"name": "mlp", "kwargs": {"hidden": [16]}}
    assert side["input_shape"] == [1, 8, 8]
    assert side["num_classes"] == 10
    assert side["weights_file"] == "m.safetensors"
    assert side["weights_sha256"] == hashlib.sha256((tmp_path / "m.safetensors").read_bytes()).hexdigest()
    assert side["weights_sha256"] == nio.file_sha256(tmp_path / "m.safetensors")
    assert side["netfix_version"] == netfix.__version__
    assert side["recipe"] is None


def test_sidecar_records_recipe_and_load_restores_it(tmp_path):
    model = _mlp()
    model.netfix_recipe = {"method": "train", "epochs": 3, "lr": 0.001}
    nio.save(model, tmp_path / "m")
    assert _read_side(tmp_path)["recipe"] == {"method": "train", "epochs": 3, "lr": 0.001}
    assert netfix.load(tmp_path / "m").netfix_recipe == {"method": "train", "epochs": 3, "lr": 0.001}


def test_sidecar_records_data_fingerprint_and_extra_meta(tmp_path):
    nio.save(_mlp(), tmp_path / "m", {"data_fingerprint": "abc123", "run": 7})
    side = _read_side(tmp_path)
    assert side["data_fingerprint"] == "abc123"
    assert side["meta"] == {"run": 7}
    assert nio.read_meta(tmp_path / "m")["meta"] == {"run": 7}


def test_save_refuses_non_json_meta(tmp_path):
    with pytest.raises(ConfigError, match=r"^meta: every value must be JSON-serialisable"):
        nio.save(_mlp(), tmp_path / "m", {"when": object()})
    assert list(tmp_path.iterdir()) == []


def test_save_plain_module_without_factory_raises(tmp_path):
    with pytest.raises(ConfigError, match=r"^model: netfix cannot tell how to rebuild this architecture\. "
                                          r"Fix: build it with netfix\.models\.build"):
        nio.save(nn.Sequential(nn.Flatten(), nn.Linear(4, 2)), tmp_path / "p")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("factory", ["no_colon", "a:b:c", 3])
def test_save_malformed_factory_raises(tmp_path, factory):
    with pytest.raises(ConfigError, match=r"^meta\['factory'\]: expected 'package\.module:function'"):
        nio.save(nn.Linear(4, 2), tmp_path / "p", {"factory": factory})


def test_save_non_json_factory_kwargs_raises(tmp_path):
    with pytest.raises(ConfigError, match=r"^meta\['factory_kwargs'\]: must be JSON-serialisable"):
        nio.save(nn.Linear(4, 2), tmp_path / "p", {"factory": "m:f", "factory_kwargs": {"x": object()}})


# ---------------------------------------------------------------------------------------------------------------
# load refuses what is not a netfix model
# ---------------------------------------------------------------------------------------------------------------


def test_load_missing_file_raises(tmp_path):
    with pytest.raises(NotAModelError, match=r"not found; a netfix model is NAME\.safetensors \+ NAME\.json"):
        netfix.load(tmp_path / "nothere")


def test_load_missing_weights_next_to_sidecar_raises(tmp_path, saved_mlp):
    (tmp_path / "m.safetensors").unlink()
    with pytest.raises(NotAModelError, match=r"m\.safetensors not found next to its sidecar m\.json"):
        netfix.load(tmp_path / "m")


def test_load_json_that_is_not_a_sidecar_raises(tmp_path, saved_mlp):
    _write_side(tmp_path, {"hello": "world"})
    with pytest.raises(NotAModelError, match=r"is not a netfix model sidecar \(no \"format\": \"netfix-model\"\)"):
        netfix.load(tmp_path / "m")


def test_load_json_list_raises(tmp_path, saved_mlp):
    (tmp_path / "m.json").write_text("[1, 2]")
    with pytest.raises(NotAModelError, match=r"is not a netfix model sidecar"):
        netfix.load(tmp_path / "m")


def test_load_invalid_json_raises(tmp_path, saved_mlp):
    (tmp_path / "m.json").write_text("{not json")
    with pytest.raises(NotAModelError, match=r"is not valid JSON .*; it is not a netfix model sidecar"):
        netfix.load(tmp_path / "m")


def test_load_newer_format_version_raises(tmp_path, saved_mlp):
    side = _read_side(tmp_path)
    side["format_version"] = 99
    _write_side(tmp_path, side)
    with pytest.raises(NotAModelError, match=r"has format version 99, newer than this netfix reads \(1\)\. "
                                             r"Fix: upgrade netfix"):
        netfix.load(tmp_path / "m")


def test_load_random_bytes_weights_with_matching_sha_raises(tmp_path, saved_mlp):
    junk = np.random.default_rng(0).integers(0, 256, size=512, dtype=np.uint8).tobytes()
    (tmp_path / "m.safetensors").write_bytes(junk)
    side = _read_side(tmp_path)
    side["weights_sha256"] = hashlib.sha256(junk).hexdigest()
    _write_side(tmp_path, side)
    with pytest.raises(NotAModelError, match=r"m\.safetensors is not a safetensors file"):
        netfix.load(tmp_path / "m")


def test_load_weights_changed_after_saving_raises(tmp_path, saved_mlp):
    w = tmp_path / "m.safetensors"
    blob = bytearray(w.read_bytes())
    blob[-1] ^= 0x01  # one bit of one weight
    w.write_bytes(bytes(blob))
    with pytest.raises(NotAModelError, match=r"does not match its sidecar \(sha256 .*\): the weights changed "
                                             r"after saving or are corrupt"):
        netfix.load(tmp_path / "m")


def test_load_weights_of_wrong_size_raise(tmp_path, saved_mlp):
    side = _read_side(tmp_path)
    side["architecture"]["kwargs"]["hidden"] = [32]  # same layer names, other shapes
    _write_side(tmp_path, side)
    with pytest.raises(NotAModelError, match=r"(?s)the weights in .*m\.safetensors do not fit the "
                                             r"architecture \(.*size mismatch for body\.1\.weight"):
        netfix.load(tmp_path / "m")


def test_load_weights_with_missing_layers_raise(tmp_path, saved_mlp):
    side = _read_side(tmp_path)
    side["architecture"]["kwargs"]["hidden"] = [16, 16]  # an extra layer the file has no weights for
    _write_side(tmp_path, side)
    with pytest.raises(NotAModelError, match=r"do not fit the architecture \(missing: \['body\.3\.weight', "
                                             r"'body\.3\.bias'\], unexpected: \[\]\)"):
        netfix.load(tmp_path / "m")


def test_load_weights_of_another_architecture_raise(tmp_path):
    nio.save(_resnet_with_running_stats(), tmp_path / "m")
    side = _read_side(tmp_path)
    side["architecture"] = {"name": "mlp", "kwargs": {"hidden": [16]}}
    _write_side(tmp_path, side)
    with pytest.raises(NotAModelError, match=r"(?s)do not fit the architecture \("):
        netfix.load(tmp_path / "m")


def test_load_sidecar_without_architecture_raises(tmp_path, saved_mlp):
    side = _read_side(tmp_path)
    side["architecture"] = {}
    _write_side(tmp_path, side)
    with pytest.raises(NotAModelError, match=r"names no architecture \(expected 'name' or 'factory'\)"):
        netfix.load(tmp_path / "m")


def test_load_unimportable_factory_raises(tmp_path, factory_module):
    nio.save(factory_module.make_net(), tmp_path / "u", {"factory": "no_such_module_xyz:make_net"})
    with pytest.raises(NotAModelError, match=r"names the factory 'no_such_module_xyz:make_net', which cannot be "
                                             r"imported .*Fix: install the package"):
        netfix.load(tmp_path / "u")


def test_load_factory_missing_function_raises(tmp_path, factory_module):
    nio.save(factory_module.make_net(), tmp_path / "u", {"factory": f"{FACTORY_MODULE}:nope"})
    with pytest.raises(NotAModelError, match=r"cannot be imported"):
        netfix.load(tmp_path / "u")


def test_load_factory_returning_non_module_raises(tmp_path, factory_module):
    nio.save(factory_module.make_net(), tmp_path / "u", {"factory": f"{FACTORY_MODULE}:not_a_model"})
    with pytest.raises(NotAModelError, match=r"returned str, not an nn\.Module"):
        netfix.load(tmp_path / "u")


def test_not_a_model_error_is_a_value_error(tmp_path):
    with pytest.raises(ValueError):
        netfix.load(tmp_path / "nothere")


# ---------------------------------------------------------------------------------------------------------------
# no unpickling
# ---------------------------------------------------------------------------------------------------------------


def test_load_never_unpickles(tmp_path, monkeypatch, x8, factory_module):
    resnet = _resnet_with_running_stats()
    nio.save(resnet, tmp_path / "r")
    nio.save(factory_module.make_net(), tmp_path / "u", {"factory": f"{FACTORY_MODULE}:make_net"})

    def forbidden(*args, **kwargs):
        raise AssertionError("unpickling was attempted")

    monkeypatch.setattr(torch, "load", forbidden)
    monkeypatch.setattr(pickle, "load", forbidden)
    monkeypatch.setattr(pickle, "loads", forbidden)
    loaded = netfix.load(tmp_path / "r")
    netfix.load(tmp_path / "u")
    assert torch.equal(_outputs(resnet, x8), _outputs(loaded, x8))


def test_weights_file_is_safetensors_not_pickle(tmp_path, saved_mlp):
    from safetensors.torch import load_file

    state = load_file(str(tmp_path / "m.safetensors"))
    assert set(state) == set(saved_mlp.state_dict())
    assert not (tmp_path / "m.safetensors").read_bytes().startswith(b"\x80")  # no pickle protocol header


# ---------------------------------------------------------------------------------------------------------------
# atomic writes
# ---------------------------------------------------------------------------------------------------------------


def test_atomic_write_writes_content_and_leaves_no_temp_files(tmp_path):
    target = tmp_path / "f.bin"
    nio.atomic_write(target, b"hello")
    nio.atomic_write(target, b"world!")
    assert target.read_bytes() == b"world!"
    assert [p.name for p in tmp_path.iterdir()] == ["f.bin"]


def test_save_leaves_no_temp_files(tmp_path):
    nio.save(_mlp(), tmp_path / "m")
    nio.save(_mlp(1), tmp_path / "m")  # overwrite
    assert _temp_leftovers(tmp_path) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.json", "m.safetensors"]


def test_atomic_write_failure_keeps_old_content_and_removes_temp(tmp_path, monkeypatch):
    target = tmp_path / "f.bin"
    target.write_bytes(b"old content")

    def boom(src, dst):
        raise OSError("disk on fire")

    monkeypatch.setattr(nio.os, "replace", boom)
    with pytest.raises(OSError, match="disk on fire"):
        nio.atomic_write(target, b"new content that never lands")
    assert target.read_bytes() == b"old content"
    assert [p.name for p in tmp_path.iterdir()] == ["f.bin"]


def test_atomic_write_failure_during_write_removes_temp(tmp_path, monkeypatch):
    target = tmp_path / "f.bin"
    target.write_bytes(b"old content")

    def boom(fd):
        raise OSError("fsync failed")

    monkeypatch.setattr(nio.os, "fsync", boom)
    with pytest.raises(OSError, match="fsync failed"):
        nio.atomic_write(target, b"new")
    assert target.read_bytes() == b"old content"
    assert [p.name for p in tmp_path.iterdir()] == ["f.bin"]


def test_save_failing_on_weights_rename_keeps_old_model_loadable(tmp_path, monkeypatch, x8):
    old = _mlp(0)
    nio.save(old, tmp_path / "m")

    def boom(src, dst):
        raise OSError("rename failed")

    monkeypatch.setattr(nio.os, "replace", boom)
    with pytest.raises(OSError):
        nio.save(_mlp(1), tmp_path / "m")
    monkeypatch.undo()
    assert _temp_leftovers(tmp_path) == []
    assert torch.equal(_outputs(old, x8), _outputs(netfix.load(tmp_path / "m"), x8))


def test_save_failing_on_sidecar_write_keeps_old_model_loadable(tmp_path, monkeypatch, x8):
    old = _mlp(0)
    nio.save(old, tmp_path / "m")
    real_replace = nio.os.replace
    calls = []

    def fail_second(src, dst):
        calls.append(dst)
        if len(calls) == 2:
            raise OSError("sidecar rename failed")
        return real_replace(src, dst)

    monkeypatch.setattr(nio.os, "replace", fail_second)
    with pytest.raises(OSError):
        nio.save(_mlp(1), tmp_path / "m")
    monkeypatch.undo()
    assert _temp_leftovers(tmp_path) == []
    assert torch.equal(_outputs(old, x8), _outputs(netfix.load(tmp_path / "m"), x8))


def test_saved_files_get_the_umask_mode_not_0600(tmp_path):
    old = os.umask(0o022)
    try:
        weights = nio.save(_mlp(0), tmp_path / "m")
    finally:
        os.umask(old)
    assert weights.stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "m.json").stat().st_mode & 0o777 == 0o644
