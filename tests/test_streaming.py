"""Streaming a user's Dataset (read batch by batch, never copied whole) gives exactly what the in-memory path gives:
the same fingerprints, predictions, training run and, for every unlearning method, the same weights."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch
from torch.utils.data import Dataset

import netfix
from netfix.data import LabeledData, as_data, concat, indices_digest
from netfix.errors import DataError, DataTypeError
from netfix.streaming import StreamedInputs


class Items(Dataset):
    """A user's map-style dataset: (x, y) pairs, counting how many items were read; ``targets`` like torchvision's
    datasets (labels known without reading an item)."""

    def __init__(self, X, y, transform=None, targets=True):
        self.X, self.y, self.transform, self.reads = X, y, transform, 0
        if targets:
            self.targets = list(map(int, y))

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        self.reads += 1
        x = self.X[i]
        return (self.transform(x) if self.transform else x), int(self.y[i])


class DictItems(Dataset):
    def __init__(self, items):
        self.items = items

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]


@pytest.fixture(scope="module")
def digits():
    train, test = netfix.datasets.load("digits")
    return train, test


def _streamed(d: LabeledData) -> LabeledData:
    out = as_data(Items(d.X, d.y), d.name, num_classes=d.num_classes, stream=True)
    assert out.streamed and isinstance(out.X, StreamedInputs)
    return out


def test_a_streamed_set_is_a_view_until_read(digits):
    train, _ = digits
    ds = Items(train.X, train.y)
    s = as_data(ds, "train", stream=True)
    assert ds.reads <= 1 and len(s) == len(train) and s.input_shape == train.input_shape  # item 0, for its shape
    sub = s.subset(np.arange(10, 20))
    assert sub.streamed and ds.reads <= 1
    assert torch.equal(sub.X[2:5], train.X[12:15]) and ds.reads <= 4
    assert torch.equal(sub.X[torch.tensor([0, 9])], train.X[[10, 19]])
    plain = Items(train.X, train.y, targets=False)  # no targets: one pass reads the labels
    assert torch.equal(as_data(plain, "train", stream=True).y, train.y) and plain.reads == len(train) + 1


def test_fingerprint_digests_and_range_match_the_in_memory_set(digits):
    train, _ = digits
    s = _streamed(train)
    assert s.fingerprint() == train.fingerprint()
    assert s.sample_digests() == train.sample_digests()
    assert s.value_range() == train.value_range()
    assert s.describe() == train.describe()


def test_small_plain_datasets_are_copied_and_datasets_with_transforms_stream(digits):
    train, _ = digits
    assert not as_data(Items(train.X, train.y), "d").streamed  # the fast path
    assert as_data(Items(train.X, train.y, transform=lambda x: x), "d").streamed  # augmentations drawn afresh


def test_concat_of_streamed_and_in_memory_parts_reads_in_order(digits):
    train, _ = digits
    a, b = _streamed(train.subset(np.arange(5))), train.subset(np.arange(5, 9))
    both = concat([a, b], "both")
    assert both.streamed and len(both) == 9
    assert torch.equal(both.X[:], train.X[:9]) and torch.equal(both.y, train.y[:9])


def test_bad_items_are_named_as_they_stream(digits):
    train, _ = digits
    X = train.X[:20].clone()
    X[7, 0, 0, 0] = float("nan")
    s = as_data(Items(X, train.y[:20]), "forget", stream=True)
    with pytest.raises(DataError, match=r"^forget: the item 7 holds NaN"):
        s.X[:]
    ragged = Items([torch.zeros(1, 8, 8)] * 3 + [torch.zeros(1, 8, 9)], [0, 1, 2, 3])
    with pytest.raises(DataError, match=r"^retain: the item 3 has shape \(1, 8, 9\) but item 0 has \(1, 8, 8\)"):
        as_data(ragged, "retain", stream=True).X[:]
    with pytest.raises(DataTypeError, match=r"^data: item 0 is a dict without a label"):
        as_data(DictItems([{"x": torch.zeros(3)}]), "data", stream=True)


def test_labels_out_of_range_are_refused_before_any_work(digits):
    train, _ = digits
    ds = Items(train.X[:10], [0] * 9 + [12])
    with pytest.raises(DataError, match=r"^retain: labels must lie in \[0, 10\)"):
        as_data(ds, "retain", num_classes=10, stream=True)


def test_training_and_prediction_are_identical_streamed(digits):
    train, test = digits
    m = netfix.models.build("mlp", train.input_shape, 10, hidden=(32,), seed=0)
    a = netfix.train(m, train, epochs=2, seed=3, progress=False).model
    b = netfix.train(m, _streamed(train), epochs=2, seed=3, progress=False).model
    for p, q in zip(a.parameters(), b.parameters()):
        assert torch.allclose(p, q, rtol=1e-5, atol=1e-7)
    assert torch.equal(netfix.evaluation.predict(a, test), netfix.evaluation.predict(a, _streamed(test)))
    ma, mb = netfix.evaluate(a, test=test), netfix.evaluate(a, test=_streamed(test))
    assert ma == mb


@pytest.fixture(scope="module")
def trained(digits):
    train, _ = digits
    m = netfix.models.build("mlp", train.input_shape, 10, hidden=(32,), seed=0)
    return netfix.train(m, train, epochs=5, seed=0, progress=False).model


@pytest.mark.parametrize("method", [m for m in netfix.methods.available() if m != "mixed-linear"])
def test_every_method_gives_the_same_weights_streamed(digits, trained, method):
    train, test = digits
    s = netfix.scenarios.class_forget(train, test, cls=3)
    forget, retain = s.forget.subset(np.arange(40)), s.retain.subset(np.arange(0, len(s.retain), 4))
    held = test.subset(np.arange(0, len(test), 3))
    outs = []
    for f, r, h in ((forget, retain, held), (_streamed(forget), _streamed(retain), _streamed(held))):
        spec = netfix.methods.get(method)
        extra = {**spec.fast, **({"heldout": h} if spec.heldout else {})}  # a quick run: few epochs
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            outs.append(netfix.unlearn(trained, f, r, method=method, seed=0, progress=False,
                                       **extra).model)
    for (n, p), q in zip(outs[0].state_dict().items(), outs[1].state_dict().values()):
        assert torch.allclose(p.float(), q.float(), rtol=1e-5, atol=1e-6), (method, n)


def _write_cifar10(folder, n_per_file=6, seed=0):
    """The CIFAR-10 binary version's six files, small: records of 1 label byte + 3072 pixel bytes."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    files = [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]
    for f in files:
        labels = rng.integers(0, 10, n_per_file, dtype=np.uint8)
        pixels = rng.integers(0, 256, (n_per_file, 3072), dtype=np.uint8)
        (folder / f).write_bytes(np.concatenate([labels[:, None], pixels], axis=1).tobytes())


def test_cifar10_loads_streamed_from_netfix_data_and_trains(tmp_path, monkeypatch):
    monkeypatch.setenv("NETFIX_DATA", str(tmp_path))
    with pytest.raises(DataError, match=r"data_batch_1\.bin.*netfix never downloads"):
        netfix.datasets.load("cifar10")
    assert not netfix.datasets.available()["cifar10"]["present"]
    _write_cifar10(tmp_path / "cifar10" / "cifar-10-batches-bin")
    assert netfix.datasets.available()["cifar10"]["present"]
    train, test = netfix.datasets.load("cifar10")
    assert train.streamed and len(train) == 30 and len(test) == 6 and train.input_shape == (3, 32, 32)
    raw = np.frombuffer((tmp_path / "cifar10" / "cifar-10-batches-bin" / "data_batch_1.bin").read_bytes(), np.uint8)
    assert int(train.y[0]) == raw[0] and torch.equal(train.X[0], torch.from_numpy(raw[1:3073].astype(np.float32)
                                                                                  .reshape(3, 32, 32) / 255))
    model = netfix.models.build("resnet18", train.input_shape, 10, width=4, seed=0)
    out = netfix.train(model, train, epochs=1, batch_size=8, progress=False)
    assert netfix.evaluate(out.model, test=test)["test_acc"] >= 0
    s = netfix.scenarios.from_indices(train, test, [0, 3, 5])
    gone = netfix.unlearn(out.model, s.forget, s.retain, method="finetune", progress=False, epochs=1)
    assert gone.model is not out.model and s.retain.streamed


def test_a_deletion_request_as_indices_needs_no_retain_set(digits, trained):
    train, _ = digits
    ds = Items(train.X, train.y, transform=lambda x: x)  # the user's dataset, streamed
    ids = [5, 17, 400, 1000]
    out = netfix.unlearn(trained, netfix.data.Request(ds, ids), method="finetune", epochs=1, progress=False)
    assert out.config["request"] == indices_digest(ids)
    keep = np.setdiff1d(np.arange(len(train)), ids)
    ref = netfix.unlearn(trained, train.subset(ids), train.subset(keep), method="finetune", epochs=1,
                         progress=False)
    for p, q in zip(out.model.parameters(), ref.model.parameters()):
        assert torch.allclose(p, q, rtol=1e-5, atol=1e-6)
    sub = netfix.unlearn(trained, torch.utils.data.Subset(ds, ids), method="finetune", epochs=1, progress=False)
    assert sub.config["request"] == out.config["request"]


@pytest.mark.parametrize("ids, match", [([], "is empty"), ([1, 1], "duplicates"), ([5000], r"must lie in \[0, 1437\)"),
                                        ([[1, 2]], "1-D list of integer")])
def test_bad_forget_indices_are_refused(digits, ids, match):
    train, _ = digits
    with pytest.raises(DataError, match=rf"^forget_indices: .*{match}"):
        netfix.data.Request(train, ids)


def test_unlearn_without_retain_says_how_to_give_a_request(digits, trained):
    train, _ = digits
    with pytest.raises(netfix.errors.ConfigError, match=r"^retain: missing.*netfix\.data\.Request"):
        netfix.unlearn(trained, train.subset([1, 2]))


def _image_folder(root, per_class=(12, 4), size=8, seed=0):
    """DIR/train/<class>/*.png and DIR/test/<class>/*.png: three classes of grayscale images, each class a
    different bright quadrant (learnable), written with Pillow."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    for split, n in zip(("train", "test"), per_class):
        for c, name in enumerate(("cat", "dog", "owl")):
            (root / split / name).mkdir(parents=True)
            for i in range(n):
                a = rng.integers(0, 60, (size, size), dtype=np.uint8)
                a[(c // 2) * 4:(c // 2) * 4 + 4, (c % 2) * 4:(c % 2) * 4 + 4] += 180
                Image.fromarray(a, mode="L").save(root / split / name / f"{i:03d}.png")


def test_cli_trains_and_unlearns_an_image_folder_given_indices(tmp_path, monkeypatch):
    from netfix.cli import main

    monkeypatch.setenv("NETFIX_HOME", str(tmp_path / "home"))
    _image_folder(tmp_path / "photos")
    monkeypatch.chdir(tmp_path)
    assert main(["train", "--model", "mlp", "--data-dir", "photos", "--epochs", "30", "--quiet"]) == 0
    model = netfix.load(tmp_path / "runs" / "mlp-photos")
    assert netfix.card.of(model).data["name"] == f"folder:{(tmp_path / 'photos').resolve()}"
    (tmp_path / "forget.txt").write_text("0\n5\n30\n")
    code = main(["unlearn", "runs/mlp-photos", "--forget-indices", "forget.txt", "--method", "finetune",
                 "--option", "epochs=2", "--workers", "2", "--quiet", "--json"])
    assert code == 0 and (tmp_path / "runs" / "mlp-photos-finetune.certificate.json").is_file()
    cert = json.loads((tmp_path / "runs" / "mlp-photos-finetune.certificate.json").read_text())
    assert json.dumps(cert).count(indices_digest([0, 5, 30])["sha256"]) >= 1
    assert main(["evaluate", "runs/mlp-photos", "--quiet"]) == 0
    assert main(["train", "--data-dir", "nowhere", "--quiet"]) == 2
    assert main(["train", "--data-dir", "photos", "--workers", "-1", "--quiet"]) == 2


def test_the_memory_bench_measures_a_streamed_disk_dataset(tmp_path):
    """`netfix bench memory`'s pieces at a tiny size: the files it writes, and one measured call (in-process)."""
    from netfix.bench import memory
    from netfix.formats import ArrayDataset

    x_path, y_path = memory._write(tmp_path, 600)
    X = np.load(x_path, mmap_mode="r")
    assert X.shape == (600, 3, 32, 32) and X.dtype == np.uint8 and np.load(y_path).max() <= 9
    ds = ArrayDataset(x_path, y_path, transform=memory._scale)
    data = as_data(ds, "d", stream=True)
    assert data.streamed and float(data.X[:5].max()) <= 1.0
    netfix.save(netfix.models.build("mlp", (3, 32, 32), 10, hidden=(16,), seed=0), tmp_path / "model")
    got = memory._measure(("evaluate", "stream", str(x_path), str(y_path), 600))
    assert got["seconds"] > 0 and got["peak_mb"] >= 0 and got["steps"] == 0  # evaluation takes no step


class Jitter(Dataset):
    """A dataset with a random augmentation drawn from numpy's global generator (as users' transforms do)."""

    def __init__(self, d: LabeledData):
        self.X, self.y = d.X.numpy(), d.y.numpy()

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        return torch.from_numpy(self.X[i] + np.random.normal(0, 0.05, self.X[i].shape).astype(np.float32)), int(self.y[i])


def test_worker_processes_read_batches_ahead_and_repeat_exactly(digits):
    train, _ = digits
    plain = _streamed(train)
    two = as_data(Items(train.X, train.y), num_classes=10, stream=True, workers=2)
    assert two.X.workers == 2 and two.subset([0, 1]).X.workers == 2  # views keep their readers
    model = netfix.models.build("mlp", train.input_shape, 10, seed=0)
    # no augmentation: the batches (and so predictions) read by workers are the ones read in this process
    torch.testing.assert_close(netfix.evaluation.predict(model, two), netfix.evaluation.predict(model, plain))
    # a random augmentation: drawn in the workers from generators seeded by the run's seed — same seed, same weights
    jitter = as_data(Jitter(train), num_classes=10, stream=True, workers=2)
    runs = [netfix.train(model, jitter, epochs=1, seed=s, progress=False).model for s in (3, 3, 4)]
    flat = [torch.cat([p.detach().flatten() for p in m.parameters()]) for m in runs]
    assert torch.equal(flat[0], flat[1]) and not torch.equal(flat[0], flat[2])


@pytest.mark.parametrize("workers", [-1, 1.5, True, "2"])
def test_bad_worker_counts_are_refused(digits, workers):
    with pytest.raises(DataTypeError, match="workers: expected an integer"):
        as_data(Items(digits[0].X, digits[0].y), stream=True, workers=workers)


def test_mixed_linear_streams_its_features_through_a_file_and_matches_in_memory(digits):
    from netfix.methods.mixed_linear import MixedLinear, UserTraining

    train, _ = digits
    core_data, user = train.subset(np.arange(200)), train.subset(np.arange(200, 700))
    core = netfix.train(netfix.models.build("mlp", train.input_shape, 10, hidden=(32, 32), seed=0), core_data,
                        epochs=10, seed=0, progress=False).model
    ml = MixedLinear(core, ["body.3", "fc"])
    feats = ml.features(_streamed(user).X, batch_size=128)
    assert all(t.untyped_storage().filename for t in feats)  # file-backed pages, not the heap
    torch.testing.assert_close(feats, ml.features(user.X, batch_size=128), rtol=0, atol=0)
    cfg = UserTraining(epochs=3, polish_max_iter=50)
    a, b = (ml.fit_user(d, cfg, progress=False).model for d in (user, _streamed(user)))
    torch.testing.assert_close(a.user_vector(), b.user_vector(), rtol=1e-5, atol=1e-7)
    forget, keep = np.arange(0, 50), np.arange(50, 500)
    fa = a.forget(user.subset(forget), user.subset(keep))
    fb = b.forget(_streamed(user).subset(forget), _streamed(user).subset(keep))
    torch.testing.assert_close(fa.model.user_vector(), fb.model.user_vector(), rtol=1e-5, atol=1e-6)
    assert fa.cg_iterations == fb.cg_iterations


def test_a_backdoor_on_a_streamed_set_is_stamped_as_read(digits):
    train, test = digits
    a = netfix.scenarios.backdoor(train, test, target=0, fraction=0.1, seed=0)
    b = netfix.scenarios.backdoor(_streamed(train), _streamed(test), target=0, fraction=0.1, seed=0)
    assert b.train.streamed and b.fault_test.streamed  # nothing copied
    for part in ("train", "forget", "retain", "fault_test", "corrected"):
        x, y = getattr(a, part), getattr(b, part)
        assert torch.equal(x.y, y.y), part
        assert torch.equal(x.tensor, y.tensor), part


def test_the_disproportionate_forgetting_analysis_is_the_same_streamed(digits):
    train, test = digits
    s = netfix.scenarios.label_noise(train, test, fraction=0.2, seed=0)
    noisy = np.zeros(len(s.train), bool)
    noisy[s.forget_indices] = True
    m = netfix.models.build("mlp", train.input_shape, 10, hidden=(32,), seed=0)
    a, b = (netfix.methods.forget_relearn.disproportionate_forgetting(m, d, "llf", noisy, epochs=3, seed=0, progress=False)
            for d in (s.train, _streamed(s.train)))
    assert a == b and len(a["checkpoints"]) == 3
