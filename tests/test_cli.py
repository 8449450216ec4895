"""The netfix command line: every verb, --json purity, and errors as exit status 2 with a message."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

import netfix
import torch

from netfix.cli import main

VERBS = ["demo", "datasets", "methods", "train", "evaluate", "unlearn", "relearn", "bench", "edit", "edits", "report",
         "ledger"]


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_help_lists_every_verb(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert all(v in out for v in VERBS)


@pytest.mark.parametrize("verb", VERBS)
def test_every_verb_has_help_json_and_quiet(capsys, verb):
    with pytest.raises(SystemExit) as e:
        main([verb, "--help"])
    out = capsys.readouterr().out
    assert e.value.code == 0 and "--json" in out and "--quiet" in out


def test_methods_lists_every_method_and_one_methods_options(capsys):
    code, out, _ = run(capsys, "methods", "--json")
    listed = json.loads(out)
    assert code == 0 and [r["method"] for r in listed["methods"]] == netfix.methods.available()
    assert all(r["what"] for r in listed["methods"])  # every method has its one-line summary
    code, out, _ = run(capsys, "methods", "ogd", "--json")
    ogd = json.loads(out)
    assert code == 0 and "unlearn" in ogd["modes"]
    import dataclasses

    fields = [f.name for f in dataclasses.fields(netfix.methods.get("ogd").config) if f.init]
    assert [o["name"] for o in ogd["options"]] == fields and all(o["help"] for o in ogd["options"])
    code, out, _ = run(capsys, "methods", "adaptor")
    assert code == 0 and "slack" in out and "keep_clear" in out
    code, _, err = run(capsys, "methods", "nope")
    assert code == 2 and "ogd" in err  # an unknown name lists the valid ones


@pytest.mark.parametrize("argv0,expected", [("netfix", "PASSIVE"), ("my_program.py", None)])
def test_the_command_waits_passively_for_openmp_a_library_user_keeps_its_setting(argv0, expected):
    """OpenMP threads that spin while waiting made torch 20-70x slower under a competing load: the netfix command
    sets passive waiting before torch loads; a program importing netfix keeps its own setting."""
    code = ("import os, sys; os.environ.pop('OMP_WAIT_POLICY', None); sys.argv = [%r]; import netfix; "
            "print(os.environ.get('OMP_WAIT_POLICY'))" % argv0)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == str(expected)


def test_evaluate_explain_defines_every_metric_and_tables_show_the_meaning(capsys, tmp_path):
    code, out, _ = run(capsys, "evaluate", "--explain")
    assert code == 0
    for name in ("ua", "retain_acc", "test_acc", "mia_efficacy", "gap", "rte"):
        assert any(line.startswith(name + " ") for line in out.splitlines()), name
    assert "UA" in out and "RA" in out and "TA" in out and "MIA-efficacy" in out
    assert run(capsys, "train", "--model", "mlp", "--data", "digits", "--epochs", "1", "--out", str(tmp_path / "m"),
               "--quiet")[0] == 0
    code, out, _ = run(capsys, "evaluate", str(tmp_path / "m"), "--quiet")
    assert code == 0 and "TA, accuracy on the test set" in out
    code, _, err = run(capsys, "evaluate")
    assert code == 2 and "--explain" in err


def test_method_help_lists_its_options_and_help_groups_verbs_by_task(capsys):
    with pytest.raises(SystemExit):
        main(["unlearn", "--method", "scrub", "--help"])
    out = capsys.readouterr().out
    assert "--method scrub" in out and "msteps" in out and "--scenario" in out  # the verb's flags and scrub's
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert "verbs by task" in out and "netfix methods ogd" in out


def test_bench_help_and_list_say_how_long_each_bench_takes(capsys):
    from netfix.bench import BENCHES

    with pytest.raises(SystemExit):
        main(["bench", "editable", "--help"])
    out = capsys.readouterr().out
    editable = BENCHES.get("editable")
    assert "bench editable:" in out and f"--quick: {editable.quick}" in out and "--sequential" in out
    code, out, _ = run(capsys, "bench", "list")
    assert code == 0 and all(out.count(f"{name} ") >= 1 for name in BENCHES)
    assert out.count("--quick: ") == len(BENCHES) and max(map(len, out.splitlines())) <= 100


def test_datasets_json(capsys):
    code, out, _ = run(capsys, "datasets", "--json")
    d = json.loads(out)["datasets"]
    assert code == 0 and d["digits"]["present"] and d["mnist5k"]["present"]


def test_train_then_evaluate_roundtrip(capsys, tmp_path):
    path = tmp_path / "m"
    code, out, _ = run(capsys, "train", "--data", "digits", "--model", "mlp", "--model-arg", "hidden=32",
                       "--epochs", "10", "--lr", "0.003", "--out", str(path), "--json", "--quiet")
    res = json.loads(out)
    assert code == 0 and res["test_acc"] > 80 and (tmp_path / "m.safetensors").is_file()
    code, out, _ = run(capsys, "evaluate", str(path), "--data", "digits", "--scenario", "class_forget:cls=2",
                       "--reference", str(path), "--json", "--quiet")
    m = json.loads(out)["metrics"]
    assert code == 0 and m["gap"] == 0.0 and "mia_efficacy" in m and m["fault_rate"] > 50


def test_train_on_retain_subset_and_evaluate_with_indices_file(capsys, tmp_path):
    idx = tmp_path / "forget.npy"
    np.save(idx, np.arange(0, 1437, 10))
    code, out, _ = run(capsys, "train", "--data", "digits", "--model-arg", "hidden=16", "--epochs", "1",
                       "--forget-indices", str(idx), "--subset", "retain", "--out", str(tmp_path / "r"), "--json",
                       "--quiet")
    assert code == 0
    txt = tmp_path / "forget.txt"
    txt.write_text("\n".join(str(i) for i in range(0, 1437, 10)))
    code, out, _ = run(capsys, "evaluate", str(tmp_path / "r"), "--data", "digits", "--forget-indices", str(txt),
                       "--quiet")
    assert code == 0 and "mia_efficacy" in out and "indices" in out


def test_demo_quick_json_is_pure_json_with_the_table(capsys, tmp_path):
    code, out, _ = run(capsys, "demo", "--quick", "--json", "--out", str(tmp_path / "demo"))
    res = json.loads(out)
    rows = {r["method"]: r for r in res["rows"]}
    assert code == 0 and list(rows) == ["original", "ogd (unlearn + relearn)", "retrain"]
    for r in rows.values():
        assert {"test_acc", "fault_rate", "class_acc", "other_classes_acc", "seconds", "rte"} <= r.keys()
    assert rows["original"]["fault_rate"] > 50 and rows["retrain"]["fault_rate"] < 10
    assert rows["ogd (unlearn + relearn)"]["fault_rate"] < 10 and rows["retrain"]["rte"] == 100.0
    for name in ("original", "ogd", "retrain"):
        assert (tmp_path / "demo" / f"{name}.safetensors").is_file()
    assert (tmp_path / "demo" / "metrics.json").is_file()
    page = (tmp_path / "demo" / "report.html").read_text()
    assert res["report"].endswith("report.html") and "ogd (unlearn + relearn)" in page
    assert page.count("data:image/png;base64,") >= 4  # accuracy, per-class, confusion, MIA


@pytest.mark.parametrize("argv, match", [
    (["train", "--data", "cifar"], "unknown dataset 'cifar'"),
    (["train", "--data", "digits", "--model", "vgg"], "unknown model 'vgg'"),
    (["train", "--data", "digits", "--scenario", "flip:x=1"], "unknown scenario 'flip'"),
    (["train", "--data", "digits", "--subset", "retain"], "needs --scenario"),
    (["evaluate", "no/such/model", "--data", "digits"], "not found"),
])
def test_errors_exit_2_with_a_message(capsys, argv, match):
    code, out, err = run(capsys, *argv, "--quiet")
    assert code == 2 and match in err and out == ""


def test_evaluate_refuses_a_file_that_is_not_a_model(capsys, tmp_path):
    (tmp_path / "x.json").write_text('{"hello": 1}')
    code, _, err = run(capsys, "evaluate", str(tmp_path / "x.json"), "--data", "digits")
    assert code == 2 and "not a netfix model" in err


def test_python_dash_m_netfix_runs():
    res = subprocess.run([sys.executable, "-m", "netfix", "--version"], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0 and "netfix" in res.stdout


def test_train_uses_the_models_recipe_unless_flags_override(capsys, tmp_path):
    code, out, _ = run(capsys, "train", "--data", "digits", "--model-arg", "hidden=8", "--epochs", "1",
                       "--batch-size", "32", "--out", str(tmp_path / "m"), "--json", "--quiet")
    recipe = json.loads(out)["recipe"]
    assert code == 0 and recipe["batch_size"] == 32 and recipe["lr_schedule"] == "cosine"


@pytest.fixture(scope="module")
def faulty_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("cli") / "faulty"
    assert main(["train", "--data", "digits", "--model-arg", "hidden=64", "--epochs", "20", "--lr", "0.003",
                 "--scenario", "mislabel:source=7,target=1", "--out", str(path), "--quiet"]) == 0
    return path


def test_unlearn_then_relearn_over_saved_models(capsys, faulty_file):
    capsys.readouterr()
    code, out, _ = run(capsys, "unlearn", str(faulty_file), "--data", "digits", "--scenario",
                       "mislabel:source=7,target=1", "--option", "objective=ascent", "--option", "lr=0.1",
                       "--guard", "off", "--json", "--quiet")
    res = json.loads(out)
    before, after = res["rows"]
    assert code == 0 and res["config"]["objective"] == "ascent" and res["config"]["lr"] == 0.1
    assert "guard" not in res["config"]  # --guard off: the user's step, as given
    assert after["forget_acc"] <= 10 and after["fault_rate"] < before["fault_rate"]
    code, out, _ = run(capsys, "relearn", res["model_path"], "--data", "digits", "--scenario",
                       "mislabel:source=7,target=1", "--method", "finetune", "--json", "--quiet")
    res = json.loads(out)
    assert code == 0 and res["mode"] == "relearn" and res["rows"][1]["fault_rate"] < 10
    assert res["model_path"].endswith("faulty-ogd-finetune.safetensors")


def test_guard_flag_sets_the_guard_and_refuses_bad_values(capsys, faulty_file, tmp_path):
    code, out, _ = run(capsys, "unlearn", str(faulty_file), "--scenario", "mislabel:source=7,target=1", "--option",
                       "objective=ascent", "--option", "lr=0.1", "--guard", "tolerance=1,tries=2",
                       "--out", str(tmp_path / "g"), "--json", "--quiet")
    guard = json.loads(out)["config"]["guard"]
    assert code == 0 and guard["tolerance"] == 1.0 and len(guard["tries"]) <= 2 and guard["tries"][0]["lr"] == 0.1
    for bad, match in [("tolerance=-1", "tolerance"), ("size=3", "--guard: expected 'off' or KEY=VALUE"),
                       ("tolerance", "--guard: expected KEY=VALUE")]:
        code, out, err = run(capsys, "unlearn", str(faulty_file), "--scenario", "class_forget:cls=1", "--guard", bad,
                             "--out", str(tmp_path / "bad"))
        assert code == 2 and match in err and out == "" and not (tmp_path / "bad.safetensors").exists()


@pytest.mark.parametrize("argv, match", [
    (["unlearn"], "needs --scenario or --forget-indices"),
    (["relearn", "--scenario", "random_forget:fraction=0.1"], "has no corrected labels"),
    (["unlearn", "--scenario", "class_forget:cls=1", "--method", "magic"], "unknown method 'magic'"),
    (["unlearn", "--scenario", "class_forget:cls=1", "--option", "speed=11"], "unknown option 'speed'"),
    (["unlearn", "--scenario", "class_forget:cls=1", "--budget", "20"], "--budget: only with --method auto"),
    (["unlearn", "--scenario", "class_forget:cls=1", "--method", "auto", "--budget", "0"], "argument --budget: expected a number in (0"),
    (["unlearn", "--method", "auto"], "needs --scenario or --forget-indices"),
    (["relearn", "--scenario", "mislabel:source=7,target=1", "--method", "auto"], "auto picks an unlearning"),
])
def test_repair_verbs_refuse_bad_requests(capsys, faulty_file, argv, match):
    verb, *rest = argv
    code, out, err = run(capsys, verb, str(faulty_file), "--data", "digits", *rest, "--quiet")
    assert code == 2 and match in err and out == ""


def test_unlearn_auto_runs_the_method_recommended_for_the_request_and_records_why(capsys, faulty_file, tmp_path):
    from netfix.methods._recommend import recommend

    code, out, _ = run(capsys, "unlearn", str(faulty_file), "--scenario", "class_forget:cls=1", "--method", "auto",
                       "--out", str(tmp_path / "a"), "--json", "--quiet")
    res = json.loads(out)
    auto = res["config"]["auto"]
    picked = recommend("class", model="mlp")  # the shipped table's pick on the benched MLP
    assert code == 0 and res["method"] == picked == auto["method"] and auto["request"] == "class"
    assert auto["model"] == "mlp" and picked in auto["reason"] and auto["budget"] is None
    before, after = res["rows"]
    assert after["forget_acc"] < 10 < before["forget_acc"]  # the class is forgotten
    assert json.loads((tmp_path / "a.certificate.json").read_text())["config"]["auto"] == auto
    code, out, _ = run(capsys, "unlearn", str(faulty_file), "--scenario", "random_forget:fraction=0.1",
                       "--method", "auto", "--budget", "30", "--out", str(tmp_path / "b"), "--quiet")
    picked = recommend("random", budget=30, model="mlp", heldout=False)  # no --heldout-indices: none that reads it
    assert code == 0 and out.startswith(f"auto: {picked} for this random request: ") and "rte <= 30 %" in out
    assert f"unlearn with {picked} on random_forget" in out and not netfix.methods.get(picked).heldout


def test_unlearn_reads_heldout_indices_and_evaluates_on_the_rest(capsys, faulty_file, tmp_path):
    (tmp_path / "held.txt").write_text("\n".join(str(i) for i in range(0, 360, 2)))
    code, out, _ = run(capsys, "unlearn", str(faulty_file), "--scenario", "random_forget:fraction=0.1",
                       "--method", "unseen", "--option", "epochs=3", "--heldout-indices", str(tmp_path / "held.txt"),
                       "--out", str(tmp_path / "u"), "--json", "--quiet")
    res = json.loads(out)
    assert code == 0 and res["config"]["n_heldout"] == 180 and res["history"][0]["matched"] > 0
    (tmp_path / "bad.txt").write_text("0\n999")
    code, _, err = run(capsys, "unlearn", str(faulty_file), "--scenario", "random_forget:fraction=0.1",
                       "--method", "unseen", "--heldout-indices", str(tmp_path / "bad.txt"), "--out",
                       str(tmp_path / "v"), "--quiet")
    assert code == 2 and "--heldout-indices: must lie in [0, 360)" in err
    code, _, err = run(capsys, "unlearn", str(faulty_file), "--scenario", "random_forget:fraction=0.1",
                       "--method", "unseen", "--out", str(tmp_path / "w"), "--quiet")
    assert code == 2 and "heldout: missing" in err and "Fix" in err


def test_edit_verb_edits_saves_and_reports(capsys, tmp_path, digits, trained):
    path = tmp_path / "model"
    netfix.save(trained, path)
    test = digits[1]
    dev = next(trained.parameters()).device
    targets = [(int(p) + 1) % 10 for p in trained(test.X[:2].to(dev)).argmax(1)]
    code, out, _ = run(capsys, "edit", str(path), "--data", "digits", "--indices", "0,1", "--targets",
                       ",".join(map(str, targets)), "--lr", "0.01", "--max-steps", "20", "--json", "--quiet")
    res = json.loads(out)
    assert code == 0 and res["success"] == [True, True] and res["method"] == "edit/rmsprop"
    edited = netfix.load(res["model_path"])
    assert edited(test.X[:2]).argmax(1).tolist() == targets


@pytest.mark.parametrize("extra, message", [
    (["--indices", "0,1", "--targets", "1"], "--targets: 1 targets for 2 indices"),
    (["--indices", "99999", "--targets", "1"], "--indices: [99999] out of range"),
    (["--indices", "a", "--targets", "1"], "--indices: expected comma-separated integers"),
    (["--indices", "0", "--targets", "1", "--editor", "newton"], "unknown editor 'newton'"),
])
def test_edit_verb_refuses_bad_input(capsys, tmp_path, trained, extra, message):
    path = tmp_path / "model"
    netfix.save(trained, path)
    code, _, err = run(capsys, "edit", str(path), "--data", "digits", *extra)
    assert code == 2 and message in err


def test_train_forget_relearn_then_repair_a_noisy_model(capsys, tmp_path):
    """`netfix train --forget-relearn` logs its generations; `netfix relearn --method forget-relearn` repairs a model
    trained on noisy labels with no corrected labels given (the scenario names the noisy training set)."""
    sched = tmp_path / "sched"
    code, out, _ = run(capsys, "train", "--data", "digits", "--scenario", "label_noise:fraction=0.4",
                       "--forget-relearn", "shrink-perturb:shrink=0.2,noise=0.3", "--generations", "2",
                       "--epochs", "2", "--out", str(sched), "--json", "--quiet")
    doc = json.loads(out)
    assert code == 0 and [g["generation"] for g in doc["generations"]] == [1, 2] and doc["history"]
    noisy = tmp_path / "noisy"
    run(capsys, "train", "--data", "digits", "--scenario", "label_noise:fraction=0.4", "--epochs", "60",
        "--model-arg", "hidden=128", "--lr", "3e-3", "--lr-schedule", "constant", "--out", str(noisy), "--quiet")
    code, out, _ = run(capsys, "relearn", str(noisy), "--data", "digits", "--scenario", "label_noise:fraction=0.4",
                       "--method", "forget-relearn", "--option", "operator=shrink-perturb:shrink=0.2,noise=0.3",
                       "--option", "generations=1", "--json", "--quiet")
    doc = json.loads(out)
    assert code == 0 and doc["config"]["operator"] == "shrink-perturb:shrink=0.2,noise=0.3"
    before, after = doc["rows"]
    assert after["test_acc"] > before["test_acc"]
    code, _, err = run(capsys, "train", "--data", "digits", "--forget-relearn", "nope", "--quiet")
    assert code == 2 and "operator" in err and "llf" in err


def test_train_from_a_saved_model_into_an_editable_one_then_edit_it(capsys, tmp_path):
    """`netfix train --from MODEL --edit-block H --editable` inserts an edit block, fine-tunes only it and fc with
    Editable Training, and `netfix edit` then changes edit_block.out at the step the model was trained for."""
    base = tmp_path / "base"
    code, out, _ = run(capsys, "train", "--data", "digits", "--model", "mlp", "--model-arg", "hidden=32",
                       "--epochs", "3", "--out", str(base), "--json", "--quiet")
    base_acc = json.loads(out)["test_acc"]
    assert code == 0
    code, out, _ = run(capsys, "train", "--data", "digits", "--from", str(base), "--edit-block", "64", "--editable",
                       "--edit-lr", "0.004", "--epochs", "1", "--json", "--quiet")
    res = json.loads(out)
    assert code == 0 and res["model_path"].endswith("base-editable.safetensors")
    assert res["test_acc"] >= base_acc - 5  # the block starts as the identity; a fine-tune keeps the accuracy
    editable = netfix.load(res["model_path"])
    before = netfix.load(base)
    assert netfix.card.of(editable).architecture["kwargs"]["edit_block"] == 64 and netfix.card.of(editable).editor["lr"] == pytest.approx(4e-3)
    frozen = {k: v for k, v in before.state_dict().items() if not k.startswith("fc.")}
    assert all(torch.equal(editable.state_dict()[k], v) for k, v in frozen.items())  # only edit_block + fc moved
    assert res["recipe"]["optimizer"] == "adam" and res["recipe"]["grad_clip"] == 10.0
    code, out, _ = run(capsys, "edit", res["model_path"], "--data", "digits", "--indices", "0", "--targets", "3",
                       "--json", "--quiet")
    edited = json.loads(out)
    assert code == 0 and edited["config"]["edited_parameters"] == ["edit_block.out.weight", "edit_block.out.bias"]
    assert edited["config"]["lr"] == pytest.approx(4e-3)  # the step the model was trained for


@pytest.mark.parametrize("extra, message", [
    (["--edit-lr", "0.01"], "--edit-lr: sets Editable Training's editor step; add --editable"),
    (["--editable", "--forget-relearn", "llf"], "drop --mixed-linear and --forget-relearn"),
    (["--editable", "--train-params", "layer9"], "params: 'layer9' selects no trainable parameter"),
])
def test_train_editable_flags_refuse_bad_combinations(capsys, extra, message):
    code, _, err = run(capsys, "train", "--data", "digits", "--epochs", "1", "--quiet", *extra)
    assert code == 2 and message in err
