"""Trust: a model file never runs code or exhausts memory, files survive kills and races, a certificate never
vouches for a no-op, a ledger cannot be truncated or rewritten unnoticed, and a user's mistake is a clear error."""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

import netfix
from netfix import io as nio
from netfix.cli import main
from netfix.errors import DataError, NotAModelError
from netfix.ledger import Ledger

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _home(tmp_path, monkeypatch):
    monkeypatch.setenv("NETFIX_HOME", str(tmp_path / "home"))


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def digits_model(tmp_path_factory, digits):
    """A small MLP trained on digits through the CLI's own path (so the file records its dataset)."""
    folder = tmp_path_factory.mktemp("trusted")
    train, _ = digits
    out = netfix.train(netfix.models.build("mlp", train.input_shape, 10, hidden=(32,), seed=0), train, epochs=5,
                       progress=False)
    netfix.save(out.model, folder / "m", {"dataset": "digits"})
    return folder / "m"


# ---------------------------------------------------------------------------------------------------------------
# a file never makes netfix import or call anything
# ---------------------------------------------------------------------------------------------------------------

EVIL_MODULE = "netfix_evil_payload"


def _payloads(marker: Path) -> dict[str, dict]:
    """Architectures a crafted file may name, each of which would create ``marker`` if it ran."""
    return {
        "os:system": {"factory": "os:system", "kwargs": {"command": f"touch {marker}"}},
        "subprocess:run": {"factory": "subprocess:run", "kwargs": {"args": ["touch", str(marker)]}},
        "builtins:exec": {"factory": "builtins:exec",
                          "kwargs": {"source": f"open({str(marker)!r}, 'w').close()"}},
        "module in the current folder": {"factory": f"{EVIL_MODULE}:make", "kwargs": {}},
        "registered-looking name": {"name": f"{EVIL_MODULE}:make", "kwargs": {}},
    }


def _craft(folder: Path, name: str, arch: dict, legacy: bool) -> Path:
    """A model file (new one-file format, or the old sidecar pair) whose metadata names ``arch``."""
    model = netfix.models.build("mlp", (1, 8, 8), 10, hidden=(32,), seed=0)
    if legacy:
        blob = st_save({k: v.contiguous() for k, v in model.state_dict().items()}, metadata={"format": "netfix-model"})
        (folder / f"{name}.safetensors").write_bytes(blob)
        import hashlib

        side = {"format": "netfix-model", "format_version": 1, "architecture": arch, "input_shape": [1, 8, 8],
                "num_classes": 10, "weights_sha256": hashlib.sha256(blob).hexdigest(),
                "meta": {"dataset": "digits"}}
        (folder / f"{name}.json").write_text(json.dumps(side))
    else:
        ser = nio.serialize(model, {"dataset": "digits"})
        blob = ser.data
        n = int.from_bytes(blob[:8], "little")
        header = json.loads(blob[8:8 + n])
        side = json.loads(header["__metadata__"]["netfix"])
        side["architecture"] = arch
        (folder / f"{name}.safetensors").write_bytes(
            st_save(st_load(blob), metadata={**header["__metadata__"], "netfix": json.dumps(side)}))
    return folder / name


@pytest.fixture
def evil_folder(tmp_path, monkeypatch):
    """The current folder holds a module whose import creates the marker, and is on sys.path (as under
    `python -m netfix`)."""
    marker = tmp_path / "PWNED"
    (tmp_path / f"{EVIL_MODULE}.py").write_text(
        f"open({str(marker)!r}, 'w').close()\n"
        "def make(*a, **k):\n"
        f"    open({str(marker)!r}, 'w').close()\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop(EVIL_MODULE, None)
    yield tmp_path, marker
    sys.modules.pop(EVIL_MODULE, None)


@pytest.mark.parametrize("legacy", [False, True], ids=["one-file", "old-sidecar"])
@pytest.mark.parametrize("payload", list(_payloads(Path("x"))))
def test_load_runs_nothing_a_file_names(evil_folder, payload, legacy):
    folder, marker = evil_folder
    path = _craft(folder, "evil", _payloads(marker)[payload], legacy)
    with pytest.raises(NotAModelError) as e:
        netfix.load(path)
    assert "Fix:" in str(e.value)
    assert not marker.exists() and EVIL_MODULE not in sys.modules


def _verb_argvs(path: Path, good: Path) -> dict[str, list]:
    return {
        "evaluate": ["evaluate", path],
        "unlearn": ["unlearn", path, "--scenario", "class_forget:cls=1", "--method", "finetune"],
        "unlearn --reference": ["unlearn", good, "--scenario", "class_forget:cls=1", "--method", "finetune",
                                "--reference", path, "--out", good.parent / "out"],
        "relearn": ["relearn", path, "--scenario", "mislabel:source=7,target=1", "--method", "finetune"],
        "edit": ["edit", path, "--indices", "0", "--targets", "1"],
        "train --from": ["train", "--from", path, "--epochs", "1"],
        "evaluate --reference": ["evaluate", good, "--reference", path],
    }


@pytest.mark.parametrize("legacy", [False, True], ids=["one-file", "old-sidecar"])
def test_every_cli_verb_that_reads_a_model_runs_nothing_a_file_names(evil_folder, capsys, digits_model, legacy):
    folder, marker = evil_folder
    for payload, arch in _payloads(marker).items():
        path = _craft(folder, f"evil-{len(payload)}", arch, legacy)
        for verb, argv in _verb_argvs(path, digits_model).items():
            code, out, err = run(capsys, *argv, "--quiet")
            assert code == 2 and "error:" in err and "Traceback" not in err, (payload, verb, err)
            assert not marker.exists() and EVIL_MODULE not in sys.modules, (payload, verb)


def test_python_dash_m_netfix_runs_nothing_from_the_current_folder(tmp_path):
    """The real entry point, with the payload module importable from the folder the command runs in."""
    marker = tmp_path / "PWNED"
    (tmp_path / f"{EVIL_MODULE}.py").write_text(f"open({str(marker)!r}, 'w').close()\ndef make(): pass\n")
    for legacy in (False, True):
        path = _craft(tmp_path, f"evil{int(legacy)}", {"factory": f"{EVIL_MODULE}:make", "kwargs": {}}, legacy)
        res = subprocess.run([sys.executable, "-m", "netfix", "evaluate", str(path), "--quiet"], cwd=tmp_path,
                             capture_output=True, text=True, timeout=120,
                             env={**os.environ, "NETFIX_HOME": str(tmp_path / "home")})
        assert res.returncode == 2 and "trust_factory=True" in res.stderr and "Traceback" not in res.stderr
    assert not marker.exists()


def test_a_tampered_weight_is_refused_through_the_cli(capsys, tmp_path, digits_model):
    path = tmp_path / "t.safetensors"
    blob = bytearray(nio.model_file(digits_model).read_bytes())
    blob[-3] ^= 0x10
    path.write_bytes(bytes(blob))
    code, _, err = run(capsys, "evaluate", path)
    assert code == 2 and "its weights do not match the sha256" in err


MEMORY_SCRIPT = textwrap.dedent('''
    import json, resource, sys
    import netfix
    from netfix.errors import NetfixError
    results = {}
    for path in sys.argv[1:]:
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        try:
            netfix.load(path)
            outcome = "loaded"
        except NetfixError as e:
            outcome = type(e).__name__ + ": " + str(e)[:200]
        except Exception as e:  # noqa: BLE001 - the test reports it
            outcome = "CRASH " + type(e).__name__ + ": " + str(e)[:200]
        results[path] = [outcome, (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024]
    print(json.dumps(results))
''')


def test_huge_sizes_in_a_small_file_are_refused_before_allocating(tmp_path):
    """num_classes 10,000,000 would allocate ~10 GB; huge widths or input shapes more. Each is refused with peak
    memory (max RSS) growing by less than 200 MB."""
    small = nio.serialize(netfix.models.build("mlp", (1, 8, 8), 10, hidden=(32,), seed=0))
    cases = {"classes": lambda s: s.update(num_classes=10_000_000),
             "width": lambda s: s["architecture"]["kwargs"].update(hidden=[1 << 24, 1 << 24]),
             "input": lambda s: s.update(input_shape=[65536, 65536, 3]),
             "resnet": lambda s: s.update(architecture={"name": "resnet", "kwargs": {"depth": 8, "width": 1 << 20}}),
             "absurd": lambda s: s.update(num_classes=10**15)}
    paths = []
    for name, change in cases.items():
        blob = small.data
        n = int.from_bytes(blob[:8], "little")
        header = json.loads(blob[8:8 + n])
        side = json.loads(header["__metadata__"]["netfix"])
        change(side)
        path = tmp_path / f"{name}.safetensors"
        path.write_bytes(st_save(st_load(blob), metadata={**header["__metadata__"], "netfix": json.dumps(side)}))
        paths.append(str(path))
    res = subprocess.run([sys.executable, "-c", MEMORY_SCRIPT, *paths], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    for path, (outcome, grew_mb) in json.loads(res.stdout).items():
        assert outcome.startswith(("NotAModelError", "UnsafeFileError")), (path, outcome)
        assert grew_mb < 200, (path, grew_mb)


# ---------------------------------------------------------------------------------------------------------------
# one model, one atomic unit: kills and races
# ---------------------------------------------------------------------------------------------------------------


def _writer(path: Path, blobs: list, rounds: int | None) -> None:
    """Child process body: publish the given serialized models to ``path`` in turn; pure file I/O, no torch."""
    i = 0
    while rounds is None or i < rounds:
        nio.publish(path, blobs[i % len(blobs)])
        i += 1
    os._exit(0)


def _fork(target, *args) -> int:
    pid = os.fork()
    if pid == 0:
        try:
            target(*args)
        finally:
            os._exit(0)
    return pid


def _weights(model) -> dict:
    return {k: v.clone() for k, v in model.state_dict().items()}


def _one_of(model, candidates) -> bool:
    state = model.state_dict()
    return any(all(torch.equal(state[k], c[k]) for k in c) for c in candidates)


def test_save_killed_at_random_points_leaves_the_old_or_the_new_model(tmp_path):
    """50 writers, each SIGKILLed at a random moment while saving over and over: every load afterwards gives one
    of the saved models, and the next save removes every temporary file the killed writers left."""
    models = [netfix.models.build("mlp", (1, 8, 8), 10, hidden=(256,), seed=s) for s in range(2)]
    blobs = [nio.serialize(m) for m in models]
    states = [_weights(m) for m in models]
    path = tmp_path / "m"
    rng = random.Random(0)
    for _ in range(50):
        pid = _fork(_writer, path, blobs, None)
        time.sleep(rng.uniform(0.0, 0.05))
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        if nio.model_file(path).exists():
            assert _one_of(netfix.load(path), states)
    nio.publish(path, blobs[0])
    assert [p.name for p in tmp_path.iterdir()] == ["m.safetensors"]


def test_three_writers_and_a_reader_race_on_one_path(tmp_path):
    """3 processes × 200 saves to one path while this process loads it again and again: no writer fails, every
    read gives a consistent model (one of the three), the last writer wins, no temporary file remains."""
    models = [netfix.models.build("mlp", (1, 8, 8), 10, hidden=(64,), seed=s) for s in range(3)]
    states = [_weights(m) for m in models]
    path = tmp_path / "race"
    nio.publish(path, nio.serialize(models[0]))
    pids = [_fork(_writer, path, [nio.serialize(m)], 200) for m in models]
    reads, running, statuses = 0, set(pids), []
    while running:
        assert _one_of(netfix.load(path), states)
        reads += 1
        for pid in list(running):
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                running.discard(pid)
                statuses.append(os.waitstatus_to_exitcode(status))
    assert statuses == [0, 0, 0] and reads > 0 and _one_of(netfix.load(path), states)
    assert [p.name for p in tmp_path.iterdir()] == ["race.safetensors"]


UNLEARN_KILL_TRIALS = 4


def test_unlearn_killed_at_random_points_leaves_loadable_models_and_a_ledger_that_verifies(tmp_path, digits_model):
    """`netfix unlearn --out` SIGKILLed at random moments of its second half (where it saves and records): the
    output is absent, the old model or the new one; `ledger verify` never reports tampering; no temp files stay."""
    source = tmp_path / "src"
    nio.publish(source, nio.serialize(netfix.load(digits_model), {"dataset": "digits"}))
    env = {**os.environ, "NETFIX_HOME": str(tmp_path / "home"), "OMP_WAIT_POLICY": "PASSIVE"}
    argv = [sys.executable, "-m", "netfix", "unlearn", str(source), "--scenario", "class_forget:cls=1", "--method",
            "finetune", "--option", "epochs=1", "--out", str(tmp_path / "new"), "--overwrite", "--quiet"]
    start = time.perf_counter()
    assert subprocess.run(argv, env=env, capture_output=True, timeout=300).returncode == 0
    full = time.perf_counter() - start
    rng = random.Random(1)
    for trial in range(UNLEARN_KILL_TRIALS):
        proc = subprocess.Popen(argv + ["--seed", str(trial + 1)], env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.5, 1.0) * full)
        proc.kill()
        proc.wait()
        if nio.model_file(tmp_path / "new").exists():
            netfix.load(tmp_path / "new")
        with Ledger(tmp_path / "home" / "ledger.sqlite") as led:
            assert led.verify() == [], trial
    nio.publish(tmp_path / "new", nio.serialize(netfix.load(source)))
    nio.atomic_write(tmp_path / "new.certificate.json", b"{}")
    assert not [p.name for p in tmp_path.iterdir() if p.name.endswith((".tmp", ".bak"))]


def _publish_then_die(stage: str, folder: Path, blobs: dict) -> None:
    """Child body: publish a model and a certificate with the ledger, SIGKILLed right after ``stage``."""
    from netfix import runs
    from netfix.ledger import Ledger as L

    def die_after(fn):
        def wrapped(*a, **k):
            out = fn(*a, **k)
            os.kill(os.getpid(), signal.SIGKILL)
            return out
        return wrapped

    if stage == "staged":
        runs.stage = die_after(runs.stage)
    elif stage == "pending":
        L.begin = die_after(L.begin)
    elif stage == "renamed":
        runs.replace_staged = die_after(runs.replace_staged)
    runs.publish_recorded("unlearn", {"model": (folder / "m.safetensors", blobs["model"]),
                                      "certificate": (folder / "m.certificate.json", blobs["cert"])},
                          ledger=folder / "l.sqlite", method="test")


@pytest.mark.parametrize("stage", ["staged", "pending", "renamed", "committed"])
def test_a_kill_at_each_stage_of_publishing_leaves_a_consistent_state(tmp_path, stage):
    """Killed after writing temp files, after the pending record, after the first rename, or after the commit:
    the model is the old or the new one, the ledger verifies, and the next write clears the temp files."""
    old = nio.serialize(netfix.models.build("mlp", (1, 8, 8), 10, hidden=(8,), seed=0))
    new = nio.serialize(netfix.models.build("mlp", (1, 8, 8), 10, hidden=(8,), seed=1))
    from netfix.runs import publish_recorded

    publish_recorded("train", {"model": (tmp_path / "m.safetensors", old.data)}, ledger=tmp_path / "l.sqlite")
    for _ in range(5):
        pid = _fork(_publish_then_die, stage, tmp_path, {"model": new.data, "cert": b"{}"})
        os.waitpid(pid, 0)
        assert nio.file_ref(tmp_path / "m")["weights_sha256"] in (old.weights_sha256, new.weights_sha256)
        with Ledger(tmp_path / "l.sqlite") as led:
            assert led.verify() == [], stage
    nio.publish(tmp_path / "m", new)
    nio.atomic_write(tmp_path / "m.certificate.json", b"{}")
    assert not [p.name for p in tmp_path.iterdir() if p.name.endswith((".tmp", ".bak"))]


# ---------------------------------------------------------------------------------------------------------------
# certificates can't lie; outputs are never lost
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("method, option", [("scrub", "epochs=-1"), ("salun", "epochs=0"), ("finetune", "epochs=0"),
                                            ("finetune", "lr=abc"), ("neggrad", "momentum=-1"),
                                            ("finetune", "weight_decay=nan"), ("scrub", "epochs=True")])
def test_bad_options_are_refused_before_any_work(capsys, tmp_path, digits_model, method, option):
    code, out, err = run(capsys, "unlearn", digits_model, "--scenario", "class_forget:cls=1", "--method", method,
                         "--option", option, "--out", tmp_path / "x", "--quiet")
    assert code == 2 and out == "" and "Fix:" in err and "Traceback" not in err
    assert not list(tmp_path.iterdir())


def test_a_run_that_changes_nothing_gets_no_file_no_record_no_certificate(capsys, tmp_path, digits_model):
    code, _, err = run(capsys, "unlearn", digits_model, "--scenario", "class_forget:cls=1", "--method", "finetune",
                       "--option", "lr=1e-30", "--out", tmp_path / "x", "--quiet")
    assert code == 2 and "changed no weight" in err and not list(tmp_path.iterdir())
    assert not (tmp_path / "home" / "ledger.sqlite").exists()


def test_certificate_refuses_a_model_identical_to_the_original(tmp_path, digits_model):
    from netfix.errors import NoChangeError
    from netfix.runs import certificate

    nio.publish(tmp_path / "copy", nio.serialize(netfix.load(digits_model), {"note": "other metadata"}))
    with pytest.raises(NoChangeError, match="its weights are exactly the original's"):
        certificate(digits_model, tmp_path / "copy", [1, 2], "finetune", {}, {})


def test_out_equal_to_the_source_or_the_reference_is_refused(capsys, tmp_path, digits_model):
    before = nio.model_file(digits_model).read_bytes()
    for out in (digits_model, nio.model_file(digits_model)):
        code, _, err = run(capsys, "unlearn", digits_model, "--scenario", "class_forget:cls=1", "--method",
                           "finetune", "--out", out, "--overwrite")
        assert code == 2 and "is a model this command reads" in err
    other = tmp_path / "o"
    nio.publish(other, nio.serialize(netfix.load(digits_model)))
    code, _, err = run(capsys, "unlearn", other, "--scenario", "class_forget:cls=1", "--method", "finetune",
                       "--reference", digits_model, "--out", digits_model)
    assert code == 2 and "is a model this command reads" in err
    assert nio.model_file(digits_model).read_bytes() == before


def test_existing_outputs_are_never_replaced_without_overwrite(capsys, tmp_path, digits_model, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert run(capsys, "train", "--data", "digits", "--epochs", "1", "--quiet")[0] == 0
    code, _, err = run(capsys, "train", "--data", "digits", "--epochs", "1", "--quiet")
    assert code == 2 and "runs/mlp-digits.safetensors already exist" in err and "--overwrite" in err
    assert run(capsys, "train", "--data", "digits", "--epochs", "1", "--overwrite", "--quiet")[0] == 0
    (tmp_path / "a.run.json").write_text("{}")  # the run document of a model 'a': a model 'a.run' can't clobber it
    nio.publish(tmp_path / "a", nio.serialize(netfix.load(digits_model), {"dataset": "digits"}))
    code, _, _ = run(capsys, "unlearn", tmp_path / "a", "--scenario", "class_forget:cls=1", "--method", "finetune",
                     "--option", "epochs=1", "--out", tmp_path / "a.run", "--quiet")
    assert code == 0 and (tmp_path / "a.run.json").read_text() == "{}"


def test_the_certificate_hashes_the_source_as_it_was_read(capsys, tmp_path, digits_model):
    from netfix.io import file_sha256

    code, out, _ = run(capsys, "unlearn", digits_model, "--scenario", "class_forget:cls=1", "--method", "finetune",
                       "--option", "epochs=1", "--out", tmp_path / "new", "--json", "--quiet")
    cert = json.loads(Path(json.loads(out)["certificate"]).read_text())
    assert code == 0 and cert["original"]["sha256"] == file_sha256(nio.model_file(digits_model))
    assert cert["original"]["sha256"] != cert["new"]["sha256"]
    assert cert["original"]["weights_sha256"] != cert["new"]["weights_sha256"]


# ---------------------------------------------------------------------------------------------------------------
# the data a model was trained on is part of the model
# ---------------------------------------------------------------------------------------------------------------


def test_without_data_a_verb_uses_the_models_own_dataset(capsys, digits_model):
    code, out, _ = run(capsys, "evaluate", digits_model, "--json", "--quiet")
    assert code == 0 and json.loads(out)["dataset"] == "digits"


def test_another_dataset_is_refused_unless_allowed(capsys, tmp_path, digits_model):
    code, _, err = run(capsys, "unlearn", digits_model, "--data", "mnist5k", "--scenario", "class_forget:cls=1",
                       "--method", "finetune", "--out", tmp_path / "x")
    assert code == 2 and "'mnist5k' is not the dataset the model was trained on ('digits')" in err
    assert not list(tmp_path.iterdir())
    code, _, err = run(capsys, "evaluate", digits_model, "--data", "mnist5k", "--allow-data-mismatch")
    assert code == 2 and "could not run on inputs of shape (1, 28, 28)" in err  # shapes still can't fit


def test_inputs_far_outside_the_training_range_are_refused(digits_model, digits):
    train, test = digits
    model = netfix.load(digits_model)
    s = netfix.scenarios.class_forget((train.X * 255, train.y), (test.X * 255, test.y), cls=1)
    with pytest.raises(DataError, match=r"forget: inputs range over \[0, 255\], far outside the \[0, 1\] the model "
                                        r"was trained on\. Fix: preprocess"):
        netfix.unlearn(model, s.forget, s.retain, method="finetune")


def test_a_forget_set_overlapping_the_retain_set_is_refused(digits_model, digits):
    train, test = digits
    s = netfix.scenarios.class_forget(train, test, cls=1)
    retain = (torch.cat([s.retain.X, s.forget.X[:2]]), torch.cat([s.retain.y, s.forget.y[:2]]))
    with pytest.raises(DataError, match=r"forget: 2 of its samples are also in retain .*Fix: build retain as"):
        netfix.unlearn(netfix.load(digits_model), s.forget, retain, method="finetune")


# ---------------------------------------------------------------------------------------------------------------
# the ledger: a published head catches truncation and rewrites; kills never raise false alarms
# ---------------------------------------------------------------------------------------------------------------


def _sql(path: Path, *statements: str) -> None:
    conn = sqlite3.connect(path)
    try:
        for st in statements:
            conn.execute(st)
        conn.commit()
    finally:
        conn.close()


@pytest.fixture
def recorded(capsys, tmp_path, digits_model):
    """Two runs recorded, and the head published after them."""
    led = tmp_path / "l.sqlite"
    for seed in (1, 2):
        code, _, _ = run(capsys, "unlearn", digits_model, "--scenario", "class_forget:cls=1", "--method", "finetune",
                         "--option", "epochs=1", "--seed", seed, "--out", tmp_path / f"u{seed}", "--ledger", led,
                         "--quiet")
        assert code == 0
    code, head, _ = run(capsys, "ledger", "head", "--ledger", led)
    assert code == 0 and head.strip().startswith("4:")
    return led, head.strip()


def test_verify_with_the_published_head_passes_on_an_untouched_ledger(capsys, recorded):
    led, head = recorded
    code, out, _ = run(capsys, "ledger", "verify", "--ledger", led, "--head", head)
    assert code == 0 and out.startswith("ok: 4 records")


def test_truncating_the_ledger_and_hiding_it_is_caught_by_the_head(capsys, recorded):
    led, head = recorded
    _sql(led, "DELETE FROM records WHERE id >= 3", "UPDATE sqlite_sequence SET seq = 2 WHERE name = 'records'")
    assert run(capsys, "ledger", "verify", "--ledger", led)[0] == 0  # the chain alone cannot tell
    code, out, _ = run(capsys, "ledger", "verify", "--ledger", led, "--head", head)
    assert code == 1 and "no longer holds the published head (record 4" in out


def test_rewriting_the_whole_chain_is_caught_by_the_head(capsys, recorded):
    from netfix.ledger import GENESIS, _record_hash

    led, head = recorded
    conn = sqlite3.connect(led)
    rows = conn.execute("SELECT id, created, kind, payload FROM records ORDER BY id").fetchall()
    prev = GENESIS
    for rid, created, kind, text in rows:  # a forger recomputes every hash after editing the first record
        payload = json.loads(text)
        if rid == 1:
            payload["method"] = "retrain"
        digest = _record_hash(prev, created, kind, payload)
        conn.execute("UPDATE records SET payload = ?, prev_hash = ?, hash = ? WHERE id = ?",
                     (json.dumps(payload, sort_keys=True, separators=(",", ":")), prev, digest, rid))
        prev = digest
    conn.commit()
    conn.close()
    assert run(capsys, "ledger", "verify", "--ledger", led)[0] == 0
    code, out, _ = run(capsys, "ledger", "verify", "--ledger", led, "--head", head)
    assert code == 1 and "no longer holds the published head" in out


def test_a_malformed_head_is_a_clear_error(capsys, recorded):
    led, _ = recorded
    code, _, err = run(capsys, "ledger", "verify", "--ledger", led, "--head", "xyz")
    assert code == 2 and "--head: expected ID:HASH" in err


def test_a_publish_interrupted_after_the_rename_is_not_tampering(tmp_path):
    """The pending record names the new file; the kill comes between the rename and the commit."""
    from netfix.runs import publish_recorded

    led = tmp_path / "l.sqlite"
    model = netfix.models.build("mlp", (1, 8, 8), 10, hidden=(8,), seed=0)
    publish_recorded("train", {"model": (tmp_path / "m.safetensors", nio.serialize(model).data)}, ledger=led)
    newer = nio.serialize(netfix.models.build("mlp", (1, 8, 8), 10, hidden=(8,), seed=1)).data
    with Ledger(led) as ledger:
        pending = ledger.begin("train", {"files": {"model": {"path": str((tmp_path / "m.safetensors").resolve()),
                                                             "sha256": __import__("hashlib").sha256(newer)
                                                             .hexdigest()}}})
        assert ledger.verify() == []  # killed before the rename: the old file is fine
        (tmp_path / "m.safetensors").write_bytes(newer)
        assert ledger.verify() == []  # killed after it: the new one is fine too
        (tmp_path / "m.safetensors").write_bytes(newer + b"x")
        assert "sha256 changed" in ledger.verify()[0]  # anything else is still caught
        assert pending == 3


# ---------------------------------------------------------------------------------------------------------------
# the CLI never shows a traceback for a user's mistake
# ---------------------------------------------------------------------------------------------------------------


def test_missing_paths_and_malformed_inputs_are_one_line_errors(capsys, tmp_path, digits_model):
    np.save(tmp_path / "obj.npy", np.array([1, "a"], dtype=object), allow_pickle=True)
    np.save(tmp_path / "float.npy", np.array([1.5, 2.0]))
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "r.json").write_text('{"rows": [1, 2], "columns": 5}')
    cases = [
        (["evaluate", tmp_path / "nothere"], "not found"),
        (["unlearn", digits_model, "--forget-indices", tmp_path / "obj.npy", "--out", tmp_path / "o"],
         "is not a .npy array of integers"),
        (["unlearn", digits_model, "--forget-indices", tmp_path / "float.npy", "--out", tmp_path / "o"],
         "not integers"),
        (["report", tmp_path / "bad"], "is not a run document netfix can render"),
        (["train", "--data", "digits", "--out", "/proc/x/y"], "--out: expected a path in a folder you can write to"),
        (["ledger", "show", "3", "--ledger", tmp_path / "none.sqlite"], "is empty"),
    ]
    for argv, match in cases:
        code, out, err = run(capsys, *argv, "--quiet")
        assert code == 2 and match in err and "Traceback" not in err, (argv, err)


def test_a_model_with_nan_weights_is_a_clear_error(capsys, tmp_path, digits_model):
    model = netfix.load(digits_model)
    with torch.no_grad():
        model.fc.weight[0, 0] = float("nan")
    nio.publish(tmp_path / "nan", nio.serialize(model, {"dataset": "digits"}))
    code, _, err = run(capsys, "evaluate", tmp_path / "nan")
    assert code == 2 and "gives NaN or infinite logits" in err


def test_a_closed_pipe_ends_quietly(tmp_path, digits_model):
    env = {**os.environ, "NETFIX_HOME": str(tmp_path / "home")}
    cmd = f"{sys.executable} -m netfix datasets | head -c 1 >/dev/null"
    res = subprocess.run(["bash", "-c", cmd + "; echo ${PIPESTATUS[0]}"], capture_output=True, text=True, env=env,
                         timeout=120)
    assert "Traceback" not in res.stderr and "BrokenPipe" not in res.stderr


def test_progress_bars_only_on_a_terminal_unless_forced(tmp_path):
    env = {**os.environ, "NETFIX_HOME": str(tmp_path / "home"), "OMP_WAIT_POLICY": "PASSIVE"}
    base = [sys.executable, "-m", "netfix", "train", "--data", "digits", "--epochs", "2"]
    plain = subprocess.run(base + ["--out", str(tmp_path / "a")], capture_output=True, text=True, env=env,
                           timeout=300)
    forced = subprocess.run(base + ["--out", str(tmp_path / "b"), "--progress"], capture_output=True, text=True,
                            env=env, timeout=300)
    assert plain.returncode == forced.returncode == 0
    assert "step/s" not in plain.stderr and "it/s" not in plain.stderr and "%|" not in plain.stderr
    assert "step/s" in forced.stderr


def test_an_edit_with_inputs_far_outside_the_training_range_is_refused(digits_model, digits):
    _, test = digits
    with pytest.raises(DataError, match=r"inputs: inputs range over \[0, 255\], far outside the \[0, 1\]"):
        netfix.edit(netfix.load(digits_model), test.X[:2] * 255, torch.tensor([1, 2]))
