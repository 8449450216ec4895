"""netfix.io: one-file models (safetensors with netfix's metadata in its header), atomic writes, no unpickling,
and the old two-file format still read."""

from __future__ import annotations

import hashlib
import json
import os
import pickle

import numpy as np
import pytest
import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save
from torch import nn

import netfix
from netfix import io as nio
from netfix import models
from netfix.errors import ConfigError, NotAModelError, UnsafeFileError


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


def rewrite_meta(path, change) -> None:
    """Change the netfix metadata inside a saved file, keeping its tensors (so the weights hash still holds)."""
    blob = path.read_bytes()
    n = int.from_bytes(blob[:8], "little")
    header = json.loads(blob[8:8 + n])
    side = json.loads(header["__metadata__"]["netfix"])
    change(side)
    path.write_bytes(st_save(st_load(blob), metadata={**header["__metadata__"], "netfix": json.dumps(side)}))


def write_legacy(folder, name, model, **side_changes) -> None:
    """A model in the old two-file format: NAME.safetensors (tensors only) + NAME.json (sidecar)."""
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    blob = st_save(state, metadata={"format": "netfix-model"})
    (folder / f"{name}.safetensors").write_bytes(blob)
    info = netfix.card.of(model)
    spec = {**info.architecture, "input_shape": info.input_shape, "num_classes": info.num_classes}
    side = {"format": "netfix-model", "format_version": 1,
            "architecture": {"name": spec["name"], "kwargs": spec["kwargs"]}, "input_shape": spec["input_shape"],
            "num_classes": spec["num_classes"], "weights_sha256": hashlib.sha256(blob).hexdigest(), "meta": {}}
    side.update(side_changes)
    (folder / f"{name}.json").write_text(json.dumps(side))


@pytest.fixture
def x8():
    return torch.rand(5, 1, 8, 8, generator=torch.Generator().manual_seed(1))


@pytest.fixture
def saved_mlp(tmp_path):
    model = _mlp()
    nio.save(model, tmp_path / "m")
    return model


# ---------------------------------------------------------------------------------------------------------------
# round trips
# ---------------------------------------------------------------------------------------------------------------


def test_mlp_round_trip_gives_identical_outputs(tmp_path, x8):
    model = _mlp()
    nio.save(model, tmp_path / "m")
    loaded = netfix.load(tmp_path / "m")
    assert type(loaded) is type(model) and _same_state(model, loaded)
    assert torch.equal(_outputs(model, x8), _outputs(loaded, x8))


def test_resnet_round_trip_keeps_batchnorm_buffers_and_outputs(tmp_path, x8):
    model = _resnet_with_running_stats()
    nio.save(model, tmp_path / "r")
    loaded = netfix.load(tmp_path / "r")
    assert int(loaded.bn1.num_batches_tracked) == 2 and _same_state(model, loaded)
    assert torch.equal(_outputs(model, x8), _outputs(loaded, x8))


def test_mixed_linear_round_trip_keeps_its_fitted_preconditioner(tmp_path, digits):
    train, _ = digits
    core = netfix.train(_mlp(), train, epochs=1, progress=False).model
    ml = netfix.methods.mixed_linear.MixedLinear(core, ["fc"]).with_preconditioner(train.subset(range(200)), rank=8)
    nio.save(ml, tmp_path / "ml")
    loaded = netfix.load(tmp_path / "ml")
    assert loaded.precond_vectors.shape == ml.precond_vectors.shape and _same_state(ml, loaded)


def test_loaded_model_is_in_eval_mode_on_cpu(tmp_path, saved_mlp):
    loaded = netfix.load(tmp_path / "m")
    assert loaded.training is False and all(p.device.type == "cpu" for p in loaded.parameters())


def test_save_does_not_change_the_model_or_its_mode(tmp_path):
    model = _resnet_with_running_stats()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    nio.save(model, tmp_path / "r")
    assert model.training is True
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_the_model_file_carries_recipe_and_the_data_it_was_trained_on(tmp_path, digits):
    train, _ = digits
    out = netfix.train(_mlp(), train, epochs=1, progress=False)
    nio.save(out.model, tmp_path / "m", {"dataset": "digits"})
    loaded = netfix.load(tmp_path / "m")
    info = netfix.card.of(loaded)
    assert info.recipe == netfix.card.of(out.model).recipe
    assert info.data["name"] == "digits" and info.data["fingerprint"] == train.fingerprint()
    assert info.data["range"] == [0.0, 1.0] and info.data["num_classes"] == 10


# ---------------------------------------------------------------------------------------------------------------
# one file, its metadata
# ---------------------------------------------------------------------------------------------------------------


def test_save_writes_one_file(tmp_path):
    assert nio.save(_mlp(), tmp_path / "m") == tmp_path / "m.safetensors"
    assert nio.save(_mlp(), tmp_path / "n.safetensors") == tmp_path / "n.safetensors"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.safetensors", "n.safetensors"]


def test_save_creates_missing_folders(tmp_path):
    nio.save(_mlp(), tmp_path / "a" / "b" / "m")
    assert (tmp_path / "a" / "b" / "m.safetensors").is_file()


@pytest.mark.parametrize("suffix", ["", ".safetensors"])
def test_load_accepts_path_with_or_without_extension(tmp_path, saved_mlp, suffix, x8):
    assert torch.equal(_outputs(saved_mlp, x8), _outputs(netfix.load(str(tmp_path / "m") + suffix), x8))


def test_metadata_has_format_architecture_hash_and_versions(tmp_path, saved_mlp):
    side = nio.read_meta(tmp_path / "m")
    assert side["format"] == "netfix-model" and side["format_version"] == 2
    assert side["architecture"] == {"name": "mlp", "kwargs": {"hidden": [16]}}
    assert side["input_shape"] == [1, 8, 8] and side["num_classes"] == 10
    assert side["weights_sha256"] == nio.weights_sha256(saved_mlp)
    assert side["netfix_version"] == netfix.__version__ and side["torch_version"] == torch.__version__


def test_weights_hash_covers_the_tensors_not_the_metadata(tmp_path):
    a = nio.serialize(_mlp(0), {"run": 1})
    b = nio.serialize(_mlp(0), {"run": 2})
    c = nio.serialize(_mlp(1), {"run": 1})
    assert a.weights_sha256 == b.weights_sha256 != c.weights_sha256
    assert a.sha256 != b.sha256 and a.sha256 == hashlib.sha256(a.data).hexdigest()


def test_extra_meta_is_kept(tmp_path):
    nio.save(_mlp(), tmp_path / "m", {"data_fingerprint": "abc123", "run": 7})
    side = nio.read_meta(tmp_path / "m")
    assert side["data"]["fingerprint"] == "abc123" and side["meta"] == {"run": 7}


def test_save_refuses_non_json_meta_and_writes_nothing(tmp_path):
    with pytest.raises(ConfigError, match=r"^meta: every value must be JSON-serialisable"):
        nio.save(_mlp(), tmp_path / "m", {"when": object()})
    with pytest.raises(ConfigError, match=r"^meta: every value must be JSON-serialisable"):
        nio.save(_mlp(), tmp_path / "m", {"x": float("nan")})
    assert list(tmp_path.iterdir()) == []


def test_save_refuses_to_write_a_factory_that_names_code(tmp_path):
    with pytest.raises(ConfigError, match=r"^meta\['factory'\]: netfix no longer writes files that name code"):
        nio.save(_mlp(), tmp_path / "p", {"factory": "os:system", "factory_kwargs": {"command": "true"}})
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------------------------------------------------
# user architectures: registered in code, or the instance passed
# ---------------------------------------------------------------------------------------------------------------


class TwoPath(nn.Module):
    """Non-sequential forward, BatchNorm and a plain buffer."""

    def __init__(self, d_in: int = 6, hidden: int = 8, k: int = 3) -> None:
        super().__init__()
        self.a, self.b = nn.Linear(d_in, hidden), nn.Linear(d_in, hidden)
        self.bn = nn.BatchNorm1d(hidden)
        self.head = nn.Linear(hidden, k)
        self.register_buffer("scale", torch.ones(1))

    def forward(self, x):
        x = x.flatten(1)
        return self.head(torch.relu(self.bn(self.a(x) + torch.tanh(self.b(x))))) * self.scale


def two_path(input_shape, num_classes, hidden=8):
    return TwoPath(int(np.prod(input_shape)), hidden, num_classes)


@pytest.fixture
def registered():
    models.register("two-path-test", two_path, replace=True)
    yield "two-path-test"
    models.unregister("two-path-test")


def test_a_registered_architecture_round_trips_by_name(tmp_path, registered):
    model = models.build(registered, (6,), 3, hidden=5, seed=0)
    model.train()
    with torch.no_grad():
        model.scale.fill_(2.0)
        model(torch.randn(16, 6, generator=torch.Generator().manual_seed(0)))  # BatchNorm statistics
    nio.save(model, tmp_path / "u")
    assert nio.read_meta(tmp_path / "u")["architecture"] == {"name": registered, "kwargs": {"hidden": 5}}
    loaded = netfix.load(tmp_path / "u")
    assert type(loaded) is TwoPath and float(loaded.scale) == 2.0 and _same_state(model, loaded)


def test_a_file_naming_an_unregistered_architecture_lists_the_known_ones(tmp_path, registered):
    nio.save(models.build(registered, (6,), 3, seed=0), tmp_path / "u")
    assert models.unregister(registered)
    with pytest.raises(NotAModelError, match=r"unknown model 'two-path-test'\. Valid models: .*'mlp'"):
        netfix.load(tmp_path / "u")


def test_an_unregistered_module_is_saved_and_loaded_into_the_callers_instance(tmp_path, x8):
    model = TwoPath(64, 8, 10)
    nio.save(model, tmp_path / "p")
    assert nio.read_meta(tmp_path / "p")["architecture"] == {"class": "test_io.TwoPath"}
    with pytest.raises(NotAModelError, match=r"holds the weights of 'test_io\.TwoPath', which is not a registered "
                                             r"architecture\. Fix: pass the module to fill, netfix\.load\(path, "
                                             r"model=YourNet"):
        netfix.load(tmp_path / "p")
    blank = TwoPath(64, 8, 10)
    loaded = netfix.load(tmp_path / "p", model=blank)
    assert loaded is not blank and _same_state(model, loaded) and not _same_state(model, blank)
    assert torch.equal(_outputs(model, x8), _outputs(loaded, x8))


def test_model_instance_of_other_shapes_is_refused(tmp_path):
    nio.save(TwoPath(64, 8, 10), tmp_path / "p")
    with pytest.raises(NotAModelError, match=r"do not fit the architecture \(.*file \(8, 64\) vs architecture"):
        netfix.load(tmp_path / "p", model=TwoPath(64, 16, 10))


def test_register_refuses_netfix_names_and_silent_replacement(registered):
    with pytest.raises(ConfigError, match="'mlp' is one of netfix's own architectures"):
        models.register("mlp", two_path)
    with pytest.raises(ConfigError, match="already registered"):
        models.register(registered, lambda s, k: two_path(s, k))
    with pytest.raises(ConfigError, match="factory: expected a callable"):
        models.register("x", 3)


def test_an_entry_point_plugin_supplies_the_architecture(tmp_path, monkeypatch):
    """A package declares `[project.entry-points."netfix.architectures"] name = "module:factory"`: installed
    metadata, not the model file, says what code provides the name."""
    (tmp_path / "netfix_plugin_test.py").write_text(
        "from torch import nn\n"
        "def tiny(input_shape, num_classes, width=4):\n"
        "    return nn.Sequential(nn.Flatten(), nn.Linear(64, width), nn.ReLU(), nn.Linear(width, num_classes))\n")
    dist = tmp_path / "netfix_plugin_test-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: netfix-plugin-test\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[netfix.architectures]\ntiny-plugin = netfix_plugin_test:tiny\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        model = models.build("tiny-plugin", (1, 8, 8), 10, width=6, seed=0)
        nio.save(model, tmp_path / "t")
        assert models.unregister("tiny-plugin")  # a fresh program: the name is found again through the entry point
        assert _same_state(model, netfix.load(tmp_path / "t"))
    finally:
        models.unregister("tiny-plugin")


# ---------------------------------------------------------------------------------------------------------------
# load refuses what is not a netfix model
# ---------------------------------------------------------------------------------------------------------------


def test_load_missing_file_raises_a_value_error(tmp_path):
    with pytest.raises(NotAModelError, match=r"nothere\.safetensors not found\. Fix: pass the path netfix\.save"):
        netfix.load(tmp_path / "nothere")
    with pytest.raises(ValueError):
        netfix.load(tmp_path / "nothere")


@pytest.mark.parametrize("content, why", [
    (b"", "too short for safetensors"),
    ((10**9).to_bytes(8, "little") + b"{}", "header claims 1000000000 bytes"),
    ((5).to_bytes(8, "little") + b"[1,2]", "header is not a JSON object"),
    ((4).to_bytes(8, "little") + b"{no ", "header is not JSON"),
])
def test_load_refuses_bytes_that_are_not_safetensors(tmp_path, content, why):
    (tmp_path / "m.safetensors").write_bytes(content)
    with pytest.raises(NotAModelError, match=f"is not a netfix model file \\(.*{why}"):
        netfix.load(tmp_path / "m")


def test_load_refuses_a_safetensors_file_without_netfix_metadata(tmp_path):
    (tmp_path / "m.safetensors").write_bytes(st_save({"w": torch.zeros(2)}))
    with pytest.raises(NotAModelError, match=r"no netfix metadata in its header and no sidecar m\.json"):
        netfix.load(tmp_path / "m")


def test_load_refuses_tensor_offsets_outside_the_file(tmp_path, saved_mlp):
    path = tmp_path / "m.safetensors"
    blob = bytearray(path.read_bytes())
    n = int.from_bytes(blob[:8], "little")
    header = json.loads(blob[8:8 + n])
    name = next(k for k in header if k != "__metadata__")
    header[name]["data_offsets"] = [0, 10**12]
    text = json.dumps(header).encode()
    path.write_bytes(len(text).to_bytes(8, "little") + text + bytes(blob[8 + n:]))
    with pytest.raises(NotAModelError, match=r"lies outside the file"):
        netfix.load(tmp_path / "m")


def test_load_newer_format_version_raises(tmp_path, saved_mlp):
    rewrite_meta(tmp_path / "m.safetensors", lambda side: side.update(format_version=99))
    with pytest.raises(NotAModelError, match=r"has format version 99, newer than this netfix reads \(2\)\. Fix"):
        netfix.load(tmp_path / "m")


def test_load_weights_changed_after_saving_raises(tmp_path, saved_mlp):
    w = tmp_path / "m.safetensors"
    blob = bytearray(w.read_bytes())
    blob[-1] ^= 0x01  # one bit of one weight
    w.write_bytes(bytes(blob))
    with pytest.raises(NotAModelError, match=r"its weights do not match the sha256 its metadata records .*: they "
                                             r"changed after saving or are corrupt"):
        netfix.load(tmp_path / "m")


def test_load_without_a_weights_hash_is_refused_with_how_to_resave(tmp_path, saved_mlp, x8):
    rewrite_meta(tmp_path / "m.safetensors", lambda side: side.pop("weights_sha256"))
    with pytest.raises(UnsafeFileError, match=r"records no sha256 of its weights.*allow_unhashed=True\) and save it "
                                              r"again with netfix\.save"):
        netfix.load(tmp_path / "m")
    loaded = netfix.load(tmp_path / "m", allow_unhashed=True)
    nio.save(loaded, tmp_path / "again")
    assert torch.equal(_outputs(saved_mlp, x8), _outputs(netfix.load(tmp_path / "again"), x8))


def test_load_weights_of_other_shapes_are_refused_before_building(tmp_path, saved_mlp):
    rewrite_meta(tmp_path / "m.safetensors", lambda side: side["architecture"]["kwargs"].update(hidden=[32]))
    with pytest.raises(NotAModelError, match=r"do not fit the architecture \(body\.1\.weight: file \(16, 64\) vs "
                                             r"architecture \(32, 64\)"):
        netfix.load(tmp_path / "m")


def test_load_weights_with_missing_layers_are_refused(tmp_path, saved_mlp):
    rewrite_meta(tmp_path / "m.safetensors", lambda side: side["architecture"]["kwargs"].update(hidden=[16, 16]))
    with pytest.raises(NotAModelError, match=r"do not fit the architecture \(missing: \['body\.3\.bias', "
                                             r"'body\.3\.weight'\], unexpected: \[\]\)"):
        netfix.load(tmp_path / "m")


def test_load_refuses_an_architecture_that_cannot_be_built(tmp_path, saved_mlp):
    rewrite_meta(tmp_path / "m.safetensors", lambda side: side["architecture"]["kwargs"].update(hidden="wide"))
    with pytest.raises(NotAModelError, match=r"its architecture cannot be built \(ConfigError: hidden: expected positive"):
        netfix.load(tmp_path / "m")


def test_load_never_unpickles(tmp_path, monkeypatch, x8):
    resnet = _resnet_with_running_stats()
    nio.save(resnet, tmp_path / "r")

    def forbidden(*args, **kwargs):
        raise AssertionError("unpickling was attempted")

    monkeypatch.setattr(torch, "load", forbidden)
    monkeypatch.setattr(pickle, "load", forbidden)
    monkeypatch.setattr(pickle, "loads", forbidden)
    assert torch.equal(_outputs(resnet, x8), _outputs(netfix.load(tmp_path / "r"), x8))


def test_the_file_is_safetensors_not_pickle(tmp_path, saved_mlp):
    from safetensors.torch import load_file

    assert set(load_file(str(tmp_path / "m.safetensors"))) == set(saved_mlp.state_dict())
    assert not (tmp_path / "m.safetensors").read_bytes().startswith(b"\x80")  # no pickle protocol header


# ---------------------------------------------------------------------------------------------------------------
# the old two-file format
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", ["", ".safetensors", ".json"])
def test_old_two_file_models_still_load(tmp_path, x8, suffix):
    model = _mlp()
    write_legacy(tmp_path, "old", model)
    assert torch.equal(_outputs(model, x8), _outputs(netfix.load(str(tmp_path / "old") + suffix), x8))


def test_old_format_weights_changed_after_saving_are_refused(tmp_path):
    write_legacy(tmp_path, "old", _mlp())
    blob = bytearray((tmp_path / "old.safetensors").read_bytes())
    blob[-1] ^= 1
    (tmp_path / "old.safetensors").write_bytes(bytes(blob))
    with pytest.raises(NotAModelError, match="its weights do not match the sha256"):
        netfix.load(tmp_path / "old")


def test_old_format_sidecar_that_is_not_netfix_is_refused(tmp_path):
    write_legacy(tmp_path, "old", _mlp())
    (tmp_path / "old.json").write_text('{"hello": "world"}')
    with pytest.raises(NotAModelError, match=r"is not a netfix model file \(no \"format\": \"netfix-model\""):
        netfix.load(tmp_path / "old")


def test_a_lone_json_is_not_a_model(tmp_path):
    (tmp_path / "x.json").write_text('{"hello": 1}')
    with pytest.raises(NotAModelError, match=r"x\.json is not a netfix model file \(there is no x\.safetensors"):
        netfix.load(tmp_path / "x.json")


def test_old_factory_files_load_only_when_trusted_in_code(tmp_path, monkeypatch):
    (tmp_path / "old_factory_test.py").write_text(
        "from torch import nn\n"
        "def make(width=4):\n"
        "    return nn.Sequential(nn.Flatten(), nn.Linear(64, width), nn.ReLU(), nn.Linear(width, 10))\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import importlib

    model = importlib.import_module("old_factory_test").make(5)
    netfix.card.update(model, architecture={"name": "unused", "kwargs": {}}, input_shape=[1, 8, 8], num_classes=10)
    write_legacy(tmp_path, "old", model, architecture={"factory": "old_factory_test:make", "kwargs": {"width": 5}})
    with pytest.raises(UnsafeFileError, match=r"names the factory 'old_factory_test:make': loading it would import "
                                              r"and run code the file chose.*trust_factory=True"):
        netfix.load(tmp_path / "old")
    assert _same_state(model, netfix.load(tmp_path / "old", trust_factory=True))


# ---------------------------------------------------------------------------------------------------------------
# atomic writes, temporary files
# ---------------------------------------------------------------------------------------------------------------


def _temps(folder) -> list[str]:
    return [p.name for p in folder.iterdir() if p.name.endswith((".tmp", ".bak"))]


def test_atomic_write_replaces_content_and_leaves_no_temp_files(tmp_path):
    target = tmp_path / "f.bin"
    nio.atomic_write(target, b"hello")
    nio.atomic_write(target, b"world!")
    assert target.read_bytes() == b"world!" and [p.name for p in tmp_path.iterdir()] == ["f.bin"]


def test_a_failed_rename_keeps_the_old_model_and_no_temp_file(tmp_path, monkeypatch, x8):
    old = _mlp(0)
    nio.save(old, tmp_path / "m")

    def boom(src, dst):
        raise OSError("rename failed")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError, match="rename failed"):
        nio.save(_mlp(1), tmp_path / "m")
    monkeypatch.undo()
    assert _temps(tmp_path) == []
    assert torch.equal(_outputs(old, x8), _outputs(netfix.load(tmp_path / "m"), x8))


def test_a_failed_fsync_keeps_the_old_content_and_no_temp_file(tmp_path, monkeypatch):
    target = tmp_path / "f.bin"
    target.write_bytes(b"old content")
    monkeypatch.setattr(os, "fsync", lambda fd: (_ for _ in ()).throw(OSError("fsync failed")))
    with pytest.raises(OSError, match="fsync failed"):
        nio.atomic_write(target, b"new")
    assert target.read_bytes() == b"old content" and [p.name for p in tmp_path.iterdir()] == ["f.bin"]


def test_the_next_write_removes_temp_files_of_dead_writers_only(tmp_path):
    target = tmp_path / "m.safetensors"
    dead = tmp_path / f".m.safetensors.{2**22 + 12345}.abc.tmp"   # a pid no process has
    alive = tmp_path / f".m.safetensors.{os.getppid()}.def.tmp"  # a writer that still runs
    legacy = tmp_path / ".m.safetensors.0123abcd.bak"            # an older netfix's backup, no pid
    for p in (dead, alive, legacy):
        p.write_bytes(b"x" * 100)
    old = os.path.getmtime(legacy) - 3600
    os.utime(legacy, (old, old))
    nio.save(_mlp(), target)
    assert sorted(_temps(tmp_path)) == [alive.name]


def test_saved_files_get_the_umask_mode_not_0600(tmp_path):
    old = os.umask(0o022)
    try:
        path = nio.save(_mlp(0), tmp_path / "m")
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o644


def test_the_same_model_saved_twice_gives_the_same_bytes(tmp_path):
    """A file's sha256 names its content: safetensors writes its metadata map in a varying order, which netfix
    puts in sorted order, so equal models and metadata give byte-identical files (and equal hashes)."""
    model = models.build("mlp", (1, 8, 8), 10, seed=0)
    blobs = {nio.serialize(model, {"dataset": "digits", "n": [1, 2, 3]}).data for _ in range(12)}
    assert len(blobs) == 1
    nio.save(model, tmp_path / "a", {"dataset": "digits"})
    nio.save(model, tmp_path / "b", {"dataset": "digits"})
    assert (tmp_path / "a.safetensors").read_bytes() == (tmp_path / "b.safetensors").read_bytes()
    assert _same_state(model, netfix.load(tmp_path / "a"))
