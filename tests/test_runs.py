"""netfix.runs.record_repair: a Python user records a repair as the CLI does — model, certificate, run document,
report and ledger record in one step — and gets the same refusals (no overwrite, no no-op)."""

from __future__ import annotations

import hashlib
import json

import pytest
import torch

import netfix
from netfix.errors import ConfigError, NoChangeError
from netfix.ledger import Ledger
from netfix.runs import output_paths, record_repair


@pytest.fixture
def saved(tmp_path, trained):
    netfix.save(trained, tmp_path / "m")
    return tmp_path / "m"


@pytest.fixture
def request_(digits):
    return netfix.scenarios.class_forget(*digits, cls=3)


def _unlearn(path, s, **options):
    return netfix.unlearn(netfix.load(path), s.forget, s.retain, method="finetune", seed=0, progress=False,
                          **{"epochs": 1, **options})


def test_a_repair_is_saved_certified_reported_and_recorded(tmp_path, saved, request_):
    out = _unlearn(saved, request_)
    led = tmp_path / "ledger.sqlite"
    doc = record_repair(out, saved, mode="unlearn", method="finetune", scenario=request_, dataset="digits",
                        ledger=led)
    stem = tmp_path / "m-finetune"
    for suffix in (".safetensors", ".certificate.json", ".run.json", ".report.html"):
        assert stem.with_name(stem.name + suffix).is_file(), suffix
    assert doc["model_path"] == str(stem.with_name("m-finetune.safetensors"))
    cert = json.loads(stem.with_name("m-finetune.certificate.json").read_text())
    model_bytes = stem.with_name("m-finetune.safetensors").read_bytes()
    assert cert["new"]["sha256"] == hashlib.sha256(model_bytes).hexdigest()
    assert cert["forget_set"]["count"] == len(request_.forget_indices) and cert["method"] == "finetune"
    with Ledger(led) as ledger:
        record = ledger.get(doc["ledger_record"])
        assert ledger.verify() == []
    assert record["kind"] == "unlearn" and record["payload"]["method"] == "finetune"
    files = record["payload"]["files"]
    assert files["model"]["sha256"] == cert["new"]["sha256"] and files["source"]["input"]
    rows = {r["model"]: r for r in doc["rows"]}
    assert rows["after"]["forget_acc"] < rows["before"]["forget_acc"]  # the measured table: the class is forgotten
    x = request_.test.X[:16]
    assert torch.equal(netfix.load(stem).eval()(x), out.model.eval()(x))  # the saved model is the repaired one


def test_outputs_are_never_overwritten_unless_asked(tmp_path, saved, request_):
    out = _unlearn(saved, request_)
    led = tmp_path / "ledger.sqlite"
    first = record_repair(out, saved, mode="unlearn", method="finetune", scenario=request_, ledger=led)
    with pytest.raises(ConfigError, match=r"already exist.*overwrite=True"):
        record_repair(out, saved, mode="unlearn", method="finetune", scenario=request_, ledger=led)
    with pytest.raises(ConfigError, match="a model this run reads"):
        output_paths(saved, ("model",), reads=(saved,))
    doc = record_repair(out, saved, mode="unlearn", method="finetune", scenario=request_, ledger=led, overwrite=True)
    assert doc["ledger_record"] > first["ledger_record"]


def test_a_no_op_writes_nothing(tmp_path, saved, request_):
    with pytest.warns(netfix.errors.NoChangeWarning):
        out = netfix.unlearn(netfix.load(saved), request_.forget, request_.retain, method="finetune", epochs=1,
                             lr=1e-30, seed=0, progress=False)
    with pytest.raises(NoChangeError, match="changed no weight"):
        record_repair(out, saved, mode="unlearn", method="finetune", scenario=request_, ledger=tmp_path / "l.sqlite")
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("m-")) == []


def test_bad_arguments_are_refused_before_any_work(tmp_path, saved, request_, trained):
    out = _unlearn(saved, request_)
    with pytest.raises(ConfigError, match="mode: expected one of unlearn, relearn"):
        record_repair(out, saved, mode="forget", method="finetune", scenario=request_)
    with pytest.raises(ConfigError, match="source: expected a saved model's path"):
        record_repair(out, trained, mode="unlearn", method="finetune", scenario=request_)
    with pytest.raises(ConfigError, match="pass scenario= or test="):
        record_repair(out, saved, mode="relearn", method="finetune")
    with pytest.raises(ConfigError, match="scenario: an unlearning run is certified for its request"):
        record_repair(out, saved, mode="unlearn", method="finetune", test=request_.test)
    with pytest.raises(ConfigError, match="outcome: expected what netfix.unlearn"):
        record_repair(out.model, saved, mode="unlearn", method="finetune", scenario=request_)
    assert not list(tmp_path.glob("m-*"))  # nothing was written


def test_an_edit_is_saved_reported_and_recorded(tmp_path, saved, digits):
    from netfix.runs import record_edit

    _, test = digits
    chosen = test.subset([0, 1], "edits")
    wrong = [(int(y) + 1) % 10 for y in chosen.y]
    out = netfix.edit(netfix.load(saved), chosen.X, torch.tensor(wrong), editor="rmsprop", seed=0)
    led = tmp_path / "ledger.sqlite"
    doc = record_edit(out, saved, chosen, wrong, test=test, ledger=led,
                      where={"data": "digits", "split": "test", "indices": [0, 1]})
    assert all(out.success) and [r["after"] for r in doc["edits"]] == wrong  # the edit holds in the saved model
    saved_edit = netfix.load(tmp_path / "m-edit")
    assert saved_edit(chosen.X).argmax(1).tolist() == wrong
    assert (tmp_path / "m-edit.run.json").is_file() and (tmp_path / "m-edit.report.html").is_file()
    assert doc["corrected_to_wrong"] == [i for i, r in zip([0, 1], doc["edits"]) if r["before"] == r["label"]]
    with Ledger(led) as ledger:
        record = ledger.get(doc["ledger_record"])
    assert record["kind"] == "edit" and record["payload"]["edits"]["indices"] == [0, 1]
    with pytest.raises(ConfigError, match="targets: 1 targets for 2"):
        record_edit(out, saved, chosen, wrong[:1], test=test, ledger=led, overwrite=True)
    with pytest.raises(ConfigError, match="edited: expected the edited inputs as netfix LabeledData"):
        record_edit(out, saved, chosen.X, wrong, test=test, ledger=led, overwrite=True)
