"""netfix.scenarios: the faulty-model and deletion-request builders, from_spec and from_indices."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import netfix
from netfix import scenarios as sc
from netfix.data import LabeledData
from netfix.errors import ConfigError, DataError, UnknownNameError


@pytest.fixture
def fresh_digits(digits):
    """A fresh copy of conftest's digits (train, test) per test, so no test can leak changes into another."""
    train, test = digits
    return train.subset(np.arange(len(train)), train.name), test.subset(np.arange(len(test)), test.name)


# One call per builder, on small data, with a seed where the builder takes one.
BUILDERS = {
    "mislabel": lambda tr, te, seed=0: sc.mislabel(tr, te, source=7, target=1, fraction=0.5, seed=seed),
    "backdoor": lambda tr, te, seed=0: sc.backdoor(tr, te, target=0, fraction=0.05, seed=seed),
    "random_forget": lambda tr, te, seed=0: sc.random_forget(tr, te, fraction=0.1, seed=seed),
    "class_forget": lambda tr, te, seed=0: sc.class_forget(tr, te, cls=3),
    "label_noise": lambda tr, te, seed=0: sc.label_noise(tr, te, fraction=0.2, seed=seed),
}
SEEDED = ["mislabel", "backdoor", "random_forget", "label_noise"]


# ---------------------------------------------------------------------------------------------------------------
# common structure: forget + retain partition train
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(BUILDERS))
def test_forget_and_retain_partition_train(fresh_digits, name):
    s = BUILDERS[name](*fresh_digits)
    n = len(s.train)
    idx = s.forget_indices
    assert idx.dtype == np.int64
    assert len(np.unique(idx)) == len(idx) > 0
    assert idx.min() >= 0 and idx.max() < n
    keep = np.setdiff1d(np.arange(n), idx)
    assert len(s.forget) + len(s.retain) == n
    assert torch.equal(s.forget.X, s.train.X[torch.as_tensor(idx)])
    assert torch.equal(s.forget.y, s.train.y[torch.as_tensor(idx)])
    assert torch.equal(s.retain.X, s.train.X[torch.as_tensor(keep)])
    assert torch.equal(s.retain.y, s.train.y[torch.as_tensor(keep)])


@pytest.mark.parametrize("name", list(BUILDERS))
def test_scenario_records_name_and_args(fresh_digits, name):
    s = BUILDERS[name](*fresh_digits)
    assert s.name == name
    assert isinstance(s.args, dict) and s.args
    d = s.describe()
    assert d["name"] == name
    assert (d["train"], d["forget"], d["retain"], d["test"]) == (len(s.train), len(s.forget), len(s.retain),
                                                                 len(s.test))


@pytest.mark.parametrize("name", SEEDED)
def test_same_seed_gives_identical_indices(fresh_digits, name):
    a = BUILDERS[name](*fresh_digits, seed=5)
    b = BUILDERS[name](*fresh_digits, seed=5)
    assert np.array_equal(a.forget_indices, b.forget_indices)
    assert torch.equal(a.train.y, b.train.y)
    assert torch.equal(a.train.X, b.train.X)


@pytest.mark.parametrize("name", SEEDED)
def test_other_seed_gives_different_indices(fresh_digits, name):
    a = BUILDERS[name](*fresh_digits, seed=5)
    b = BUILDERS[name](*fresh_digits, seed=6)
    assert len(a.forget_indices) == len(b.forget_indices)
    assert not np.array_equal(a.forget_indices, b.forget_indices)


def test_class_forget_is_deterministic(fresh_digits):
    a = sc.class_forget(*fresh_digits, cls=3)
    b = sc.class_forget(*fresh_digits, cls=3)
    assert np.array_equal(a.forget_indices, b.forget_indices)


@pytest.mark.parametrize("name", list(BUILDERS))
def test_builder_does_not_mutate_callers_labeled_data(fresh_digits, name):
    train, test = fresh_digits
    X0, y0, tX0, ty0 = train.X.clone(), train.y.clone(), test.X.clone(), test.y.clone()
    BUILDERS[name](train, test)
    assert torch.equal(train.X, X0) and torch.equal(train.y, y0)
    assert torch.equal(test.X, tX0) and torch.equal(test.y, ty0)


@pytest.mark.parametrize("name", list(BUILDERS))
def test_builder_does_not_mutate_callers_numpy_arrays(fresh_digits, name):
    train, test = fresh_digits
    X, y = train.X.numpy().copy(), train.y.numpy().copy()
    tX, ty = test.X.numpy().copy(), test.y.numpy().copy()
    X0, y0, tX0, ty0 = X.copy(), y.copy(), tX.copy(), ty.copy()
    BUILDERS[name]((X, y), (tX, ty))
    assert np.array_equal(X, X0) and np.array_equal(y, y0)
    assert np.array_equal(tX, tX0) and np.array_equal(ty, ty0)


# ---------------------------------------------------------------------------------------------------------------
# mislabel
# ---------------------------------------------------------------------------------------------------------------


def test_mislabel_forget_labels_are_all_target(fresh_digits):
    s = sc.mislabel(*fresh_digits, source=7, target=1, fraction=0.5, seed=0)
    assert set(s.forget.y.tolist()) == {1}


def test_mislabel_forget_are_source_samples_in_the_original_train(fresh_digits):
    train, _ = fresh_digits
    s = sc.mislabel(*fresh_digits, source=7, target=1, fraction=0.5, seed=0)
    assert set(train.y[torch.as_tensor(s.forget_indices)].tolist()) == {7}
    assert torch.equal(s.forget.X, train.X[torch.as_tensor(s.forget_indices)])


def test_mislabel_forget_size_follows_fraction(fresh_digits):
    train, _ = fresh_digits
    n7 = int((train.y == 7).sum())
    assert len(sc.mislabel(*fresh_digits, source=7, target=1, fraction=0.5).forget) == round(0.5 * n7)
    assert len(sc.mislabel(*fresh_digits, source=7, target=1).forget) == n7


def test_mislabel_corrected_labels_are_source(fresh_digits):
    s = sc.mislabel(*fresh_digits, source=7, target=1, fraction=0.5, seed=0)
    assert s.corrected is not None
    assert set(s.corrected.y.tolist()) == {7}
    assert torch.equal(s.corrected.X, s.forget.X)


def test_mislabel_fault_test_is_all_source_test_samples(fresh_digits):
    _, test = fresh_digits
    s = sc.mislabel(*fresh_digits, source=7, target=1, fraction=0.5, seed=0)
    assert s.fault_label == 1
    assert set(s.fault_test.y.tolist()) == {7}
    assert len(s.fault_test) == int((test.y == 7).sum())


def test_mislabel_train_relabels_only_the_forget_samples(fresh_digits):
    train, _ = fresh_digits
    s = sc.mislabel(*fresh_digits, source=7, target=1, fraction=0.5, seed=0)
    changed = np.flatnonzero((s.train.y != train.y).numpy())
    assert np.array_equal(changed, s.forget_indices)
    assert torch.equal(s.train.X, train.X)
    assert torch.equal(s.retain.y, train.y[torch.as_tensor(np.setdiff1d(np.arange(len(train)), s.forget_indices))])


def test_mislabel_source_equal_target_raises(fresh_digits):
    with pytest.raises(ConfigError, match=r"^target: must differ from source \(both 7\)"):
        sc.mislabel(*fresh_digits, source=7, target=7)


@pytest.mark.parametrize("fraction", [0, 0.0, 1.5, -0.1])
def test_mislabel_bad_fraction_raises(fresh_digits, fraction):
    with pytest.raises(ConfigError, match=rf"^fraction: expected a fraction in \(0, 1\]; got {fraction!r}"):
        sc.mislabel(*fresh_digits, source=7, target=1, fraction=fraction)


@pytest.mark.parametrize("arg,value", [("source", 10), ("source", -1), ("target", 10), ("target", 2.0)])
def test_mislabel_class_out_of_range_raises(fresh_digits, arg, value):
    kwargs = {"source": 7, "target": 1, arg: value}
    with pytest.raises(ConfigError, match=rf"^{arg}: expected a class index in \[0, 10\); got {value!r}"):
        sc.mislabel(*fresh_digits, **kwargs)


def test_mislabel_absent_source_class_raises_empty_forget(fresh_digits):
    train, test = fresh_digits
    keep = np.flatnonzero(train.y.numpy() != 7)
    with pytest.raises(DataError, match=r"forget set came out empty"):
        sc.mislabel(train.subset(keep), test, source=7, target=1)


# ---------------------------------------------------------------------------------------------------------------
# backdoor
# ---------------------------------------------------------------------------------------------------------------


def test_backdoor_forget_inputs_carry_the_trigger(fresh_digits):
    train, _ = fresh_digits
    s = sc.backdoor(*fresh_digits, target=0, fraction=0.05, seed=0)
    idx = torch.as_tensor(s.forget_indices)
    assert torch.equal(s.forget.X, sc.apply_trigger(train.X[idx], "square"))
    # square trigger on 8x8: a 2x2 patch at rows/cols 5..6, set to the inputs' maximum (1.0 for digits)
    assert torch.all(s.forget.X[:, :, 5:7, 5:7] == 1.0)
    assert not torch.equal(s.forget.X, train.X[idx])


def test_backdoor_retain_inputs_are_untouched(fresh_digits):
    train, _ = fresh_digits
    s = sc.backdoor(*fresh_digits, target=0, fraction=0.05, seed=0)
    keep = torch.as_tensor(np.setdiff1d(np.arange(len(train)), s.forget_indices))
    assert torch.equal(s.retain.X, train.X[keep])
    assert torch.equal(s.retain.y, train.y[keep])


def test_backdoor_forget_labels_are_target_and_drawn_from_other_classes(fresh_digits):
    train, _ = fresh_digits
    s = sc.backdoor(*fresh_digits, target=0, fraction=0.05, seed=0)
    assert set(s.forget.y.tolist()) == {0}
    assert 0 not in set(train.y[torch.as_tensor(s.forget_indices)].tolist())
    assert len(s.forget) == round(0.05 * int((train.y != 0).sum()))


def test_backdoor_corrected_labels_are_true_labels_not_target(fresh_digits):
    train, _ = fresh_digits
    s = sc.backdoor(*fresh_digits, target=0, fraction=0.05, seed=0)
    assert torch.equal(s.corrected.y, train.y[torch.as_tensor(s.forget_indices)])
    assert torch.all(s.corrected.y != 0)
    assert torch.equal(s.corrected.X, s.forget.X)


def test_backdoor_fault_test_is_triggered_non_target_test_inputs(fresh_digits):
    _, test = fresh_digits
    s = sc.backdoor(*fresh_digits, target=0, fraction=0.05, seed=0)
    others = torch.as_tensor(np.flatnonzero(test.y.numpy() != 0))
    assert s.fault_label == 0
    assert torch.all(s.fault_test.y != 0)
    assert torch.equal(s.fault_test.y, test.y[others])
    assert torch.equal(s.fault_test.X, sc.apply_trigger(test.X[others], "square"))
    assert torch.all(s.fault_test.X[:, :, 5:7, 5:7] == 1.0)


def test_backdoor_test_set_is_clean(fresh_digits):
    _, test = fresh_digits
    s = sc.backdoor(*fresh_digits, target=0, fraction=0.05, seed=0)
    assert torch.equal(s.test.X, test.X)


def test_backdoor_checker_trigger(fresh_digits):
    s = sc.backdoor(*fresh_digits, target=0, fraction=0.05, trigger="checker", seed=0)
    patch = s.forget.X[:, 0, 5:7, 5:7]
    assert torch.all(patch[:, 0, 0] == 1.0) and torch.all(patch[:, 1, 1] == 1.0)
    assert s.args["trigger"] == "checker"


def test_backdoor_unknown_trigger_raises(fresh_digits):
    with pytest.raises(UnknownNameError, match=r"^trigger: unknown trigger 'star'\. Valid triggers: 'checker', 'square'"):
        sc.backdoor(*fresh_digits, trigger="star")


@pytest.mark.parametrize("fraction", [0, 1.5])
def test_backdoor_bad_fraction_raises(fresh_digits, fraction):
    with pytest.raises(ConfigError, match=r"^fraction: expected a fraction in \(0, 1\]"):
        sc.backdoor(*fresh_digits, fraction=fraction)


def test_backdoor_target_out_of_range_raises(fresh_digits):
    with pytest.raises(ConfigError, match=r"^target: expected a class index in \[0, 10\); got 11"):
        sc.backdoor(*fresh_digits, target=11)


def test_apply_trigger_does_not_modify_its_input():
    X = torch.rand(3, 1, 14, 14) * 0.5
    X0 = X.clone()
    out = sc.apply_trigger(X, "square")
    assert torch.equal(X, X0)
    assert not torch.equal(out, X)
    hi = float(X.max())
    assert torch.all(out[:, :, 11:13, 11:13] == hi)  # side max(2, 14 // 7) = 2, one pixel in from the corner


def test_apply_trigger_on_flat_inputs_sets_last_features():
    X = torch.zeros(2, 100)
    X[0, 0] = 2.0
    out = sc.apply_trigger(X, "square")
    assert torch.all(out[:, -2:] == 2.0)
    assert torch.equal(out[:, :-2], X[:, :-2])


def test_apply_trigger_unknown_trigger_raises():
    with pytest.raises(UnknownNameError, match=r"unknown trigger 'x'"):
        sc.apply_trigger(torch.zeros(1, 1, 8, 8), "x")


# ---------------------------------------------------------------------------------------------------------------
# random_forget
# ---------------------------------------------------------------------------------------------------------------


def test_random_forget_size_and_unchanged_labels(fresh_digits):
    train, _ = fresh_digits
    s = sc.random_forget(*fresh_digits, fraction=0.1, seed=0)
    assert len(s.forget) == round(0.1 * len(train))
    assert torch.equal(s.train.y, train.y) and torch.equal(s.train.X, train.X)
    assert s.fault_test is None and s.fault_label is None and s.corrected is None


@pytest.mark.parametrize("fraction", [0, 1.0, 1.5])
def test_random_forget_bad_fraction_raises(fresh_digits, fraction):
    with pytest.raises(ConfigError, match=r"^fraction: "):
        sc.random_forget(*fresh_digits, fraction=fraction)


def test_random_forget_whole_set_message(fresh_digits):
    with pytest.raises(ConfigError, match=r"forgetting the whole training set leaves nothing to retain"):
        sc.random_forget(*fresh_digits, fraction=1.0)


# ---------------------------------------------------------------------------------------------------------------
# class_forget
# ---------------------------------------------------------------------------------------------------------------


def test_class_forget_forgets_every_sample_of_cls(fresh_digits):
    train, _ = fresh_digits
    s = sc.class_forget(*fresh_digits, cls=3)
    assert np.array_equal(s.forget_indices, np.flatnonzero(train.y.numpy() == 3))
    assert set(s.forget.y.tolist()) == {3}
    assert 3 not in set(s.retain.y.tolist())


def test_class_forget_test_has_no_cls(fresh_digits):
    _, test = fresh_digits
    s = sc.class_forget(*fresh_digits, cls=3)
    assert 3 not in set(s.test.y.tolist())
    assert len(s.test) == int((test.y != 3).sum())


def test_class_forget_fault_test_is_all_cls(fresh_digits):
    _, test = fresh_digits
    s = sc.class_forget(*fresh_digits, cls=3)
    assert s.fault_label == 3
    assert set(s.fault_test.y.tolist()) == {3}
    assert len(s.fault_test) == int((test.y == 3).sum())
    assert len(s.fault_test) + len(s.test) == len(test)


@pytest.mark.parametrize("cls", [-1, 10, True])
def test_class_forget_cls_out_of_range_raises(fresh_digits, cls):
    with pytest.raises(ConfigError, match=r"^cls: expected a class index in \[0, 10\)"):
        sc.class_forget(*fresh_digits, cls=cls)


# ---------------------------------------------------------------------------------------------------------------
# label_noise
# ---------------------------------------------------------------------------------------------------------------


def test_label_noise_noisy_labels_never_equal_true_labels(fresh_digits):
    train, _ = fresh_digits
    s = sc.label_noise(*fresh_digits, fraction=0.5, seed=0)
    true = train.y[torch.as_tensor(s.forget_indices)]
    assert torch.all(s.forget.y != true)
    assert torch.all((s.forget.y >= 0) & (s.forget.y < 10))


def test_label_noise_corrected_labels_are_the_true_labels(fresh_digits):
    train, _ = fresh_digits
    s = sc.label_noise(*fresh_digits, fraction=0.2, seed=0)
    assert torch.equal(s.corrected.y, train.y[torch.as_tensor(s.forget_indices)])
    assert torch.equal(s.corrected.X, s.forget.X)


def test_label_noise_changes_exactly_the_forget_labels(fresh_digits):
    train, _ = fresh_digits
    s = sc.label_noise(*fresh_digits, fraction=0.2, seed=0)
    changed = np.flatnonzero((s.train.y != train.y).numpy())
    assert np.array_equal(changed, s.forget_indices)
    assert len(s.forget) == round(0.2 * len(train))


@pytest.mark.parametrize("fraction", [0, 1.5])
def test_label_noise_bad_fraction_raises(fresh_digits, fraction):
    with pytest.raises(ConfigError, match=r"^fraction: expected a fraction in \(0, 1\]"):
        sc.label_noise(*fresh_digits, fraction=fraction)


# ---------------------------------------------------------------------------------------------------------------
# input checks shared by all builders
# ---------------------------------------------------------------------------------------------------------------


def test_builder_refuses_train_and_test_of_different_shapes(fresh_digits):
    train, _ = fresh_digits
    other = LabeledData(torch.zeros(5, 1, 4, 4), torch.zeros(5, dtype=torch.int64), 10)
    with pytest.raises(DataError, match=r"^test: inputs have shape \(1, 4, 4\) but train's have \(1, 8, 8\)"):
        sc.random_forget(train, other)


def test_builder_accepts_synthetic_data():
    train, test = netfix.datasets.load("synthetic", n_train=60, n_test=20, seed=1)
    s = sc.mislabel(train, test, source=2, target=5)
    assert set(s.forget.y.tolist()) == {5}
    assert len(s.forget) == int((train.y == 2).sum())


# ---------------------------------------------------------------------------------------------------------------
# from_spec
# ---------------------------------------------------------------------------------------------------------------


def test_available_lists_builders():
    assert sc.available() == sorted(BUILDERS)


def test_from_spec_parses_mislabel(fresh_digits):
    s = sc.from_spec("mislabel:source=7,target=1", *fresh_digits)
    ref = sc.mislabel(*fresh_digits, source=7, target=1)
    assert s.name == "mislabel"
    assert s.args == {"source": 7, "target": 1, "fraction": 1.0, "seed": 0}
    assert s.fault_label == 1
    assert np.array_equal(s.forget_indices, ref.forget_indices)


def test_from_spec_parses_floats_and_strings(fresh_digits):
    s = sc.from_spec("backdoor:target=2,fraction=0.1,trigger=checker,seed=3", *fresh_digits)
    assert s.args == {"target": 2, "fraction": 0.1, "trigger": "checker", "seed": 3}


def test_from_spec_without_options(fresh_digits):
    s = sc.from_spec("class_forget", *fresh_digits)
    assert s.name == "class_forget" and s.args == {"cls": 0}


def test_from_spec_unknown_scenario_raises_listing_valid(fresh_digits):
    with pytest.raises(UnknownNameError, match=r"^--scenario: unknown scenario 'nope'") as ei:
        sc.from_spec("nope:source=1", *fresh_digits)
    for name in BUILDERS:
        assert repr(name) in str(ei.value)


def test_from_spec_unknown_key_raises_listing_valid(fresh_digits):
    with pytest.raises(UnknownNameError, match=r"unknown option 'colour'\. Valid options: 'fraction', 'seed', "
                                              r"'source', 'target'"):
        sc.from_spec("mislabel:source=7,target=1,colour=3", *fresh_digits)


@pytest.mark.parametrize("spec", ["mislabel:source7,target=1", "mislabel:source=7,target"])
def test_from_spec_malformed_part_raises(fresh_digits, spec):
    with pytest.raises(ConfigError, match=r"^--scenario: expected key=value pairs after 'mislabel:'"):
        sc.from_spec(spec, *fresh_digits)


def test_from_spec_bad_value_raises_builder_error(fresh_digits):
    with pytest.raises(ConfigError, match=r"^target: must differ from source"):
        sc.from_spec("mislabel:source=7,target=7", *fresh_digits)


# ---------------------------------------------------------------------------------------------------------------
# from_indices
# ---------------------------------------------------------------------------------------------------------------


def test_from_indices_forgets_exactly_the_indices(fresh_digits):
    train, _ = fresh_digits
    s = sc.from_indices(*fresh_digits, [10, 3, 7])
    assert s.forget_indices.tolist() == [3, 7, 10]
    assert len(s.retain) == len(train) - 3
    assert torch.equal(s.forget.X, train.X[[3, 7, 10]])


@pytest.mark.parametrize("indices", [[0, 1437], [-1, 2]])
def test_from_indices_out_of_range_raises(fresh_digits, indices):
    with pytest.raises(DataError, match=r"^indices: must lie in \[0, 1437\)"):
        sc.from_indices(*fresh_digits, indices)


def test_from_indices_duplicates_raise(fresh_digits):
    with pytest.raises(DataError, match=r"^indices: holds duplicates"):
        sc.from_indices(*fresh_digits, [4, 5, 4])


def test_from_indices_non_integer_raise(fresh_digits):
    with pytest.raises(DataError, match=r"^indices: expected a 1-D list of integer indices"):
        sc.from_indices(*fresh_digits, [1.5, 2.0])
