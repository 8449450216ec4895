"""Edit metrics: drawdown from the cached tail equals evaluating each edited model in full; lookup table, fine-tuning,
sequential edits, the FrozenSplit cut, and bad input."""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch import nn

import netfix
from netfix import bench
from netfix.methods.editing import LookupTable, measure_edits, perturbations, sequential_edits
from netfix.errors import ConfigError, DataError, UnknownNameError
from netfix.gradients import param_names
from netfix.models.split import FrozenSplit

from conftest import TwoBranch, snapshot


@pytest.fixture(scope="module")
def resnet(digits_resnet):
    return digits_resnet


@pytest.fixture(scope="module")
def edits(digits, resnet):
    _, test = digits
    X, y = test.X[:6], test.y[:6]
    return X, (y + 1 + torch.arange(6) % 9) % 10, test.subset(torch.arange(100, 300))


@pytest.mark.parametrize("name,kw,prefixes,cut", [
    ("resnet", {"depth": 8, "width": 4}, ["layer3", "fc"], (8, 8, 4, 4)),
    ("resnet", {"depth": 8, "width": 4}, ["fc"], (8, 16)),
    ("mlp", {"hidden": (16,)}, ["body", "fc"], (8, 64)),
    ("lenet", {}, ["fc"], (8, 84)),
])
def test_frozen_split_cuts_where_the_edited_parameters_start(name, kw, prefixes, cut):
    model = netfix.models.build(name, (1, 8, 8), 10, seed=0, **kw).eval()
    x = torch.rand(8, 1, 8, 8)
    split = FrozenSplit(model, param_names(model, prefixes), x[:2])
    feats = split.features(x)
    assert split.exact and tuple(feats[0].shape) == cut
    assert torch.allclose(split.tail(*feats), model(x), atol=1e-6)
    assert {n for n, _ in split.tail.named_parameters()} >= set(param_names(model, prefixes))


def test_frozen_split_handles_several_cut_tensors_and_untraceable_models():
    model = TwoBranch().eval()
    x = torch.rand(4, 1, 8, 8)
    split = FrozenSplit(model, param_names(model, ["head"]), x)
    assert split.exact and len(split.features(x)) == 2  # the dropout output and the skip branch's logits
    assert torch.allclose(split.tail(*split.features(x)), model(x), atol=1e-6)

    class Branchy(nn.Module):  # data-dependent control flow: torch.fx cannot trace it
        def __init__(self) -> None:
            super().__init__()
            self.a, self.fc = nn.Linear(64, 8), nn.Linear(8, 10)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = self.a(x.flatten(1))
            return self.fc(h if h.sum() > 0 else -h)

    m = Branchy().eval()
    split = FrozenSplit(m, param_names(m, ["fc"]), x)
    assert not split.exact and split.features(x) == (x,) and split.tail is m  # the whole model: slower, still right


def test_drawdown_equals_evaluating_each_edited_model_in_full(resnet, edits):
    X, targets, dd = edits
    before = snapshot(resnet)
    m = measure_edits(resnet, X[:3], targets[:3], dd, editor="rmsprop", lr=1e-2, progress=False)
    base = netfix.evaluate(resnet, test=dd)["test_acc"]
    assert m.base_acc == pytest.approx(base, abs=1e-3)
    for i, row in enumerate(m.per_edit):
        e = netfix.edit(resnet, X[i:i + 1], targets[i:i + 1], lr=1e-2)
        assert row["success"] == e.success[0] and row["steps"] == e.steps
        assert row["drawdown"] == pytest.approx(base - netfix.evaluate(e.model, test=dd)["test_acc"], abs=1e-3)
    assert m.drawdown == pytest.approx(sum(r["drawdown"] for r in m.per_edit) / 3)
    assert m.n_edits == 3 and 0 <= m.success_rate <= 100 and m.latency_ms > 0
    assert set(m.holds) == {"noise", "shift"}
    assert all(torch.equal(before[k], v) for k, v in resnet.state_dict().items())


def test_measure_edits_is_deterministic(resnet, edits):
    X, targets, dd = edits
    a = measure_edits(resnet, X, targets, dd, editor="sgd", lr=0.05, seed=1, progress=False).row()
    b = measure_edits(resnet, X, targets, dd, editor="sgd", lr=0.05, seed=1, progress=False).row()
    a.pop("latency_ms"), b.pop("latency_ms")
    assert a == b


def test_lookup_table_holds_exact_inputs_only(resnet, edits):
    X, targets, dd = edits
    table = LookupTable(resnet).add(X, targets)
    assert (table(X).argmax(1) == targets).all()
    shifted = perturbations()["shift"](X, torch.Generator().manual_seed(0))
    assert torch.equal(table(shifted), resnet(shifted))  # one pixel off: the table does nothing
    m = measure_edits(resnet, X, targets, dd, editor="lookup-table", progress=False)
    assert m.success_rate == 100.0 and m.mean_steps == 0 and m.drawdown == 0.0
    # a drawdown-set image identical to an edited one is captured by the table and counted
    predicted = resnet(X[:1]).argmax(1)  # labelled as the model predicts it: right before the edit, wrong after
    same = (torch.cat([dd.X, X[:1]]), torch.cat([dd.y, predicted]))
    m2 = measure_edits(resnet, X[:1], targets[:1], same, editor="lookup-table", progress=False)
    assert m2.drawdown == pytest.approx(100.0 / len(same[0]), abs=1e-4)


def test_finetune_alternative_needs_replay_and_flips_the_prediction(digits, resnet, edits):
    train, _ = digits
    X, targets, dd = edits
    with pytest.raises(DataError, match="replay"):
        measure_edits(resnet, X[:1], targets[:1], dd, editor="finetune")
    m = measure_edits(resnet, X[:2], targets[:2], dd, editor="finetune", replay=train, progress=False)
    assert m.success_rate == 100.0 and m.mean_steps >= 1


def test_sequential_edits_accumulate_on_one_model(resnet, edits):
    X, targets, dd = edits
    seq = sequential_edits(resnet, X, targets, dd, editor="rmsprop", lr=1e-2, progress=False)
    assert [s["edits"] for s in seq] == list(range(1, 7))
    single = measure_edits(resnet, X[:1], targets[:1], dd, editor="rmsprop", lr=1e-2, progress=False)
    assert seq[0]["drawdown"] == pytest.approx(single.drawdown, abs=1e-4)
    assert all(0 <= s["held"] <= 100 for s in seq)
    assert seq[0]["held"] == 100.0 * seq[0]["success"]


@pytest.mark.parametrize("kwargs,error,match", [
    ({"editor": "lbfgs"}, UnknownNameError, "editor"),
    ({"inputs": torch.zeros(0, 1, 8, 8), "targets": torch.zeros(0, dtype=torch.long)}, DataError, "no edits"),
    ({"targets": torch.tensor([10, 1])}, DataError, "targets|label"),
    ({"targets": torch.tensor([1])}, DataError, "targets"),
    ({"inputs": torch.zeros(2, 64)}, DataError, "shape"),
    ({"inputs": torch.full((2, 1, 8, 8), float("nan"))}, DataError, "NaN"),
    ({"editor": "lookup-table", "lr": 0.1}, UnknownNameError, "option"),
    ({"lr": -1.0}, ConfigError, "lr"),
])
def test_bad_input_is_refused(resnet, edits, kwargs, error, match):
    X, targets, dd = edits
    args = {"inputs": X[:2], "targets": targets[:2], **kwargs}
    with pytest.raises(error, match=match):
        measure_edits(resnet, args.pop("inputs"), args.pop("targets"), dd, progress=False, **args)


def test_editable_bench_rows(tmp_path):
    path = tmp_path / "editable.json"
    doc = bench.run("editable", quick=True, data="digits", progress=False, json_path=path, editors="sgd,rmsprop",
                    edits=8, sequential=12)
    written = json.loads(path.read_text())
    methods = [r["method"] for r in written["rows"]]
    assert methods == ["baseline/sgd", "baseline/rmsprop", "block/sgd", "block/rmsprop", "editable/sgd",
                       "editable/rmsprop", "finetune-on-edits", "lookup-table", "adaptor"]
    # --sequential: every editor on every arm (Sequential Editable Training included), the table and the adaptor
    lifelong = {r["method"]: r for r in written["lifelong"]}
    assert set(lifelong) == {f"{arm}/{e}" for arm in ("baseline", "block", "editable", "editable-seq")
                             for e in ("sgd", "rmsprop")} | {"lookup-table", "adaptor"}
    curve = written["lifelong_curves"]["adaptor"]
    assert [c["edits"] for c in curve] == [10, 12]  # every 10 and the last
    assert lifelong["adaptor"]["held"] == 100 and lifelong["lookup-table"]["held"] == 100
    assert lifelong["lookup-table"]["holds_noise"] <= 10  # exact-input overrides do not generalise
    assert curve[1]["bytes"] > curve[0]["bytes"] > 0  # the codebook grows with the edits
    assert "Edits that accumulate" in doc["table"]
    for r in written["rows"]:
        for col in ("n_edits", "success_rate", "mean_steps", "drawdown", "latency_ms", "test_acc"):
            assert r[col] is not None
        assert 0 <= r["success_rate"] <= 100
    by = {r["method"]: r for r in written["rows"]}
    assert by["lookup-table"]["drawdown"] == 0 and by["lookup-table"]["success_rate"] == 100
    assert by["adaptor"]["success_rate"] == 100 and by["adaptor"]["mean_steps"] == 0
    assert by["baseline/sgd"]["test_acc"] == by["baseline/rmsprop"]["test_acc"]
    assert len(written["sequential_curves"]["baseline/sgd"]) == 12 and written["n_edits"] == 12
    # the block and editable arms start from the baseline and only add fine-tuning time, and steps
    assert by["block/sgd"]["train_seconds"] > by["baseline/sgd"]["train_seconds"]
    base_steps = written["epochs"] * math.ceil(written["train_size"] / 128)  # epochs × ⌈N / batch⌉
    assert by["baseline/sgd"]["train_steps"] == by["lookup-table"]["train_steps"] == base_steps
    assert by["editable/sgd"]["train_steps"] == by["block/sgd"]["train_steps"] > base_steps
    assert "| train_steps |" in doc["table"].splitlines()[0]
    assert written["edit_params"] == {"baseline": ["layer3", "fc"], "block": ["edit_block.out"],
                                      "editable": ["edit_block.out"]}
    assert len(written["editable"]["learned_editor_lr"]) == 1
    assert "editable" in doc["table"] and doc["bench"] == "editable"
