"""The ledger (hash chain, file checks, one record per transaction) and forgetting certificates, in Python and
through `netfix ledger`."""

from __future__ import annotations

import hashlib
import json
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

import netfix
from netfix.cli import main
from netfix.errors import ConfigError, UnknownNameError
from netfix.io import file_sha256
from netfix.ledger import Ledger, indices_digest, ledger_path
from netfix.runs import certificate, record_run, write_certificate


@pytest.fixture(autouse=True)
def _home(tmp_path, monkeypatch):
    """Every default ledger lands in this test's folder, never in ~/.netfix."""
    monkeypatch.setenv("NETFIX_HOME", str(tmp_path / "home"))


def tiny(tmp_path: Path, name: str, seed: int = 0) -> Path:
    model = netfix.models.build("mlp", (1, 8, 8), 10, hidden=(16,), seed=seed)
    return netfix.save(model, tmp_path / name)


def flip_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def sql(path: Path, statement: str, *args: object) -> list[tuple]:
    """Run one statement on the ledger file directly, as someone tampering with it would."""
    conn = sqlite3.connect(path)
    try:
        out = conn.execute(statement, args).fetchall()
        conn.commit()
        return out
    finally:
        conn.close()


def rows(path: Path) -> int:
    conn = sqlite3.connect(path)
    try:
        return conn.execute("SELECT COUNT(*) FROM records").fetchone()[0]
    except sqlite3.OperationalError:  # a writer is still creating the table
        return 0
    finally:
        conn.close()


def test_default_path_is_under_netfix_home(tmp_path, monkeypatch):
    assert ledger_path() == tmp_path / "home" / "ledger.sqlite"
    assert ledger_path(tmp_path / "x.sqlite") == tmp_path / "x.sqlite"
    monkeypatch.delenv("NETFIX_HOME")
    assert ledger_path() == Path.home() / ".netfix" / "ledger.sqlite"


def test_append_list_and_get(tmp_path):
    with Ledger(tmp_path / "l.sqlite") as led:
        a = led.append("train", {"method": "train", "metrics": {"test_acc": 97.5}})
        b = led.append("unlearn", {"method": "ogd", "forget": (1, 2)})
        recs = led.list()
        assert [r["id"] for r in recs] == [a, b] and [r["kind"] for r in recs] == ["train", "unlearn"]
        assert led.get(b)["payload"] == {"method": "ogd", "forget": [1, 2]}
        assert recs[1]["prev_hash"] == recs[0]["hash"]
        assert led.verify() == []


def test_uses_wal_journal(tmp_path):
    Ledger(tmp_path / "l.sqlite").close()
    assert sql(tmp_path / "l.sqlite", "PRAGMA journal_mode") == [("wal",)]


def test_unknown_kind_lists_the_valid_kinds(tmp_path):
    with Ledger(tmp_path / "l.sqlite") as led:
        with pytest.raises(UnknownNameError, match="kind: unknown kind 'retrain'. Valid kinds: 'commit', 'edit', 'forget'"):
            led.append("retrain", {})


def test_unknown_id_is_named_with_the_ids_held(tmp_path):
    with Ledger(tmp_path / "l.sqlite") as led:
        led.append("train", {})
        with pytest.raises(ConfigError, match=r"id: no record 7 .* holds ids 1\.\.1\. Fix: pick an id"):
            led.get(7)


def test_payload_must_be_json(tmp_path):
    with Ledger(tmp_path / "l.sqlite") as led, pytest.raises(ConfigError, match="payload: every value must be JSON"):
        led.append("train", {"model": object()})


def test_not_a_ledger_file_is_refused(tmp_path):
    bad = tmp_path / "bad.sqlite"
    bad.write_bytes(b"not a database at all" * 100)
    with pytest.raises(ConfigError, match="path: .* is not a netfix ledger"):
        Ledger(bad)


def test_edited_payload_breaks_the_chain_at_that_record(tmp_path):
    path = tmp_path / "l.sqlite"
    with Ledger(path) as led:
        for i in range(3):
            led.append("train", {"epochs": i})
    sql(path, "UPDATE records SET payload = ? WHERE id = 2", json.dumps({"epochs": 99}))
    problems = Ledger(path).verify()
    assert len(problems) == 1 and problems[0].startswith("record 2: hash does not match its content")


def test_deleted_records_are_caught(tmp_path):
    path = tmp_path / "l.sqlite"
    with Ledger(path) as led:
        for i in range(4):
            led.append("edit", {"i": i})
    sql(path, "DELETE FROM records WHERE id IN (2, 4)")
    problems = Ledger(path).verify()
    assert any(p.startswith("record 3: prev_hash does not match record 1's hash") for p in problems)
    assert any(p.startswith("records 4..4 were deleted") for p in problems)


def test_verify_names_a_model_file_with_one_changed_byte(tmp_path):
    weights = tiny(tmp_path, "m")
    path = tmp_path / "l.sqlite"
    record_run("train", files={"model": weights}, ledger=path, method="train")
    assert Ledger(path).verify() == []
    recorded = file_sha256(weights)
    flip_byte(weights)
    problems = Ledger(path).verify()
    assert problems == [f"{weights.resolve()}: sha256 changed (recorded {recorded[:12]}..., now "
                        f"{file_sha256(weights)[:12]}...) [record 1, model]"]


def test_verify_names_a_missing_model_file(tmp_path):
    weights = tiny(tmp_path, "m")
    path = tmp_path / "l.sqlite"
    record_run("train", files={"model": weights}, ledger=path)
    weights.unlink()
    assert Ledger(path).verify() == [f"{weights.resolve()}: missing [record 1, model]"]


def test_a_file_rewritten_by_a_later_recorded_run_is_not_a_problem(tmp_path):
    path = tmp_path / "l.sqlite"
    record_run("train", files={"model": tiny(tmp_path, "m", seed=0)}, ledger=path)
    record_run("train", files={"model": tiny(tmp_path, "m", seed=1)}, ledger=path)
    assert Ledger(path).verify() == []


def test_an_input_changed_between_runs_is_named(tmp_path):
    path, weights = tmp_path / "l.sqlite", tiny(tmp_path, "m")
    record_run("train", files={"model": weights}, ledger=path)
    flip_byte(weights)
    record_run("unlearn", files={"model": tiny(tmp_path, "m2")}, inputs={"source": weights}, ledger=path)
    problems = Ledger(path).verify()
    assert len(problems) == 1
    assert problems[0].startswith(f"{weights.resolve()}: changed after record 1 (model) and before record 2 read it")


def test_record_run_refuses_a_file_that_does_not_exist(tmp_path):
    with pytest.raises(ConfigError, match=r"files\['model'\]: .*nope.safetensors not found"):
        record_run("train", files={"model": tmp_path / "nope.safetensors"}, ledger=tmp_path / "l.sqlite")


def test_failure_inside_the_transaction_leaves_no_partial_record(tmp_path, monkeypatch):
    path = tmp_path / "l.sqlite"
    led = Ledger(path)
    led.append("train", {"n": 1})
    insert = Ledger._write

    def insert_then_die(self, kind, payload):
        insert(self, kind, payload)  # the row is in the transaction now...
        raise RuntimeError("killed after the INSERT")

    monkeypatch.setattr(Ledger, "_write", insert_then_die)
    with pytest.raises(RuntimeError, match="killed after the INSERT"):
        led.append("unlearn", {"n": 2})
    monkeypatch.undo()
    assert rows(path) == 1 and led.verify() == []
    assert led.append("unlearn", {"n": 3}) == 2  # the lock was released and the id not consumed
    led.close()
    assert Ledger(path).verify() == []


def test_a_writer_killed_midway_leaves_a_clean_ledger(tmp_path):
    path = tmp_path / "l.sqlite"
    code = textwrap.dedent(f"""
        from netfix.ledger import Ledger
        led = Ledger({str(path)!r})
        i = 0
        while True:
            led.append("forget", {{"i": i, "pad": "x" * 20000}})
            i += 1
    """)
    proc = subprocess.Popen([sys.executable, "-c", code])
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and (not path.exists() or rows(path) < 20):
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    with Ledger(path) as led:
        n = len(led.list())
        assert n >= 20 and led.verify() == []
        assert led.append("forget", {"after": "kill"}) == n + 1


def test_certificate_names_both_models_and_the_forget_set(tmp_path):
    original, new = tiny(tmp_path, "m"), tiny(tmp_path, "m-ogd", seed=1)
    cert = certificate(tmp_path / "m", tmp_path / "m-ogd.safetensors", [17, 3, 5], "ogd", {"lr": 0.01},
                       {"forget_acc": 10.0}, {"forget_acc": 9.0}, seconds=1.5)
    assert cert["original"]["sha256"] == file_sha256(original) and cert["new"]["sha256"] == file_sha256(new)
    assert cert["original"]["weights_sha256"] != cert["new"]["weights_sha256"]
    assert cert["forget_set"]["count"] == 3
    assert cert["forget_set"]["sha256"] == hashlib.sha256(b"[3,5,17]").hexdigest()
    assert cert["method"] == "ogd" and cert["config"] == {"lr": 0.01} and cert["reference_metrics"]["forget_acc"] == 9
    assert cert["netfix_version"] == netfix.__version__ and cert["torch_version"] == torch.__version__
    out = write_certificate(cert, tmp_path / "m-ogd.certificate.json")
    assert json.loads(out.read_text()) == cert


def test_certificate_refuses_a_missing_model(tmp_path):
    tiny(tmp_path, "m")
    with pytest.raises(ValueError, match="new: .*gone.safetensors not found"):
        certificate(tmp_path / "m", tmp_path / "gone", [1], "ogd", {}, {})


def test_forget_set_digest_is_order_free_and_checks_integers():
    assert indices_digest(torch.tensor([5, 1])) == indices_digest([1, 5])
    with pytest.raises(ConfigError, match="forget_indices: expected a flat list of integer"):
        indices_digest([1.5])


def test_only_rank_zero_records(tmp_path, monkeypatch):
    weights = tiny(tmp_path, "m")
    monkeypatch.setattr(torch.distributed, "is_available", lambda: True)
    monkeypatch.setattr(torch.distributed, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.distributed, "get_rank", lambda: 1)
    assert record_run("train", files={"model": weights}, ledger=tmp_path / "l.sqlite") is None
    assert not (tmp_path / "l.sqlite").exists()


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_train_is_recorded_and_a_changed_file_fails_verify(capsys, tmp_path):
    led, model = tmp_path / "runs.sqlite", tmp_path / "m"
    code, out, _ = run(capsys, "train", "--data", "digits", "--model-arg", "hidden=16", "--epochs", "1",
                       "--out", model, "--ledger", led, "--json", "--quiet")
    res = json.loads(out)
    assert code == 0 and res["ledger_record"] == 1 and res["ledger"] == str(led)
    code, out, _ = run(capsys, "ledger", "list", "--ledger", led, "--json")
    recs = json.loads(out)["records"]
    assert code == 0 and [r["kind"] for r in recs] == ["train", "commit"]  # published, then committed
    assert recs[0]["payload"]["data"]["fingerprint"] == netfix.datasets.load("digits")[0].fingerprint()
    code, out, _ = run(capsys, "ledger", "--ledger", led, "show", "1")
    assert code == 0 and json.loads(out)["payload"]["files"]["model"]["sha256"] == file_sha256(res["model_path"])
    code, out, _ = run(capsys, "ledger", "verify", "--ledger", led)
    assert code == 0 and out.startswith("ok: 2 records, 1 files checked")
    flip_byte(Path(res["model_path"]))
    code, out, _ = run(capsys, "ledger", "verify", "--ledger", led)
    assert code == 1 and f"{Path(res['model_path']).resolve()}: sha256 changed" in out


def test_cli_ledger_list_on_a_fresh_home_prints_nothing_and_succeeds(capsys, tmp_path):
    code, out, err = run(capsys, "ledger", "list", "--ledger", tmp_path / "none.sqlite")
    assert code == 0 and out == "" and err == ""
    assert not (tmp_path / "none.sqlite").exists()  # reading creates nothing


def test_cli_unlearn_writes_a_certificate_with_the_right_hashes(capsys, tmp_path):
    model = tiny(tmp_path, "m")
    code, out, _ = run(capsys, "unlearn", model, "--data", "digits", "--scenario", "class_forget:cls=2",
                       "--method", "finetune", "--option", "epochs=1", "--json", "--quiet")
    res = json.loads(out)
    cert = json.loads(Path(res["certificate"]).read_text())
    assert code == 0 and res["certificate"] == str(tmp_path / "m-finetune.certificate.json")
    assert cert["original"]["sha256"] == file_sha256(tmp_path / "m.safetensors")
    assert cert["new"]["sha256"] == file_sha256(tmp_path / "m-finetune.safetensors")
    train, test = netfix.datasets.load("digits")
    forget = netfix.scenarios.class_forget(train, test, cls=2).forget_indices
    canon = json.dumps(sorted(int(i) for i in forget), separators=(",", ":")).encode()
    assert cert["forget_set"]["count"] == len(forget)
    assert cert["forget_set"]["sha256"] == hashlib.sha256(canon).hexdigest()
    assert cert["method"] == "finetune" and cert["config"]["epochs"] == 1 and "forget_acc" in cert["metrics"]
    led = ledger_path()  # no --ledger: $NETFIX_HOME/ledger.sqlite
    assert res["ledger"] == str(led)
    with Ledger(led) as ledger:
        recs = ledger.list()
        assert [r["kind"] for r in recs] == ["unlearn", "commit"] and ledger.verify() == []
        assert set(recs[0]["payload"]["files"]) == {"model", "source", "certificate"}
