"""netfix bench: the JSON document's shape, rte against the same run's retrain, tables in markdown, bad input."""

from __future__ import annotations

import json
import math

import pytest
import torch

import netfix
from netfix import bench
from netfix.cli import main
from netfix.errors import UnknownNameError


def test_summarise_means_and_sample_std():
    rows = [{"m": "a", "x": 1.0}, {"m": "a", "x": 3.0}, {"m": "b", "x": 5.0}, {"m": "b", "x": None}]
    out = bench.summarise(rows, ["m"], ["x"])
    assert out[0] == {"m": "a", "x": 2.0, "x_std": pytest.approx(2 ** 0.5), "n": 2}
    assert out[1]["x"] == 5.0 and out[1]["x_std"] == 0.0 and out[1]["n"] == 2


def test_update_markdown_replaces_only_its_block(tmp_path):
    path = tmp_path / "results.md"
    path.write_text("# Results\n\nkeep me\n")
    bench.update_markdown(path, "x:data", "| a |\n|---|\n| 1 |")
    bench.update_markdown(path, "y:data", "second")
    bench.update_markdown(path, "x:data", "| a |\n|---|\n| 2 |")
    text = path.read_text()
    assert text.startswith("# Results\n\nkeep me\n")
    assert "| 2 |" in text and "| 1 |" not in text and text.count("<!-- bench:x:data -->") == 1
    assert text.index("bench:x:data") < text.index("bench:y:data")


def test_unknown_bench_is_refused():
    with pytest.raises(UnknownNameError, match="unknown bench 'ogd'"):
        bench.run("ogd")


@pytest.fixture(scope="module")
def ogd_doc(tmp_path_factory):
    path = tmp_path_factory.mktemp("bench") / "ogd.json"
    doc = bench.run("ogd-debug", quick=True, data="digits", progress=False, json_path=path)
    return doc, json.loads(path.read_text())


def test_ogd_debug_document_has_the_api_shape(ogd_doc):
    doc, written = ogd_doc
    for key in ("bench", "dataset", "quick", "seeds", "reference_seconds", "rows", "env"):
        assert key in written
    assert written["bench"] == "ogd-debug" and written["dataset"] == "digits" and written["quick"] is True
    assert set(written["env"]) >= {"torch", "device", "threads", "netfix"}
    methods = {(r["scenario"], r["method"]) for r in written["rows"]}
    expected = {"original", "ogd-unlearn", "ogd-unlearn-relearn", "unprojected-unlearn-relearn", "finetune", "retrain"}
    assert methods == {(s, m) for s in ("mislabel", "backdoor") for m in expected}
    for r in written["rows"]:
        for col in ("test_acc", "fault_rate", "affected_class_acc", "other_classes_acc", "mean_confidence"):
            assert 0.0 <= r[col] <= 100.0


def test_rte_is_relative_to_the_same_runs_retrain(ogd_doc):
    _, written = ogd_doc
    for r in written["raw"]:
        if r["method"] == "retrain":
            assert r["rte"] == pytest.approx(100.0)
        elif r["seconds"] is not None:
            assert r["rte"] == pytest.approx(100.0 * r["seconds"] / r["reference_seconds"])


def test_the_faulty_model_shows_the_fault_and_ogd_repairs_it(ogd_doc):
    _, written = ogd_doc
    rows = {(r["scenario"], r["method"]): r for r in written["rows"]}
    assert rows["mislabel", "original"]["fault_rate"] > 80
    assert rows["mislabel", "ogd-unlearn-relearn"]["fault_rate"] < 10
    assert rows["mislabel", "ogd-unlearn-relearn"]["affected_class_acc"] > 70


def test_ogd_debug_rows_report_steps_beside_seconds(ogd_doc):
    """Every timed row has its optimizer steps; retrain's are epochs × ⌈N / batch⌉ (the MLP recipe's batch), and
    steps_pct is % of them, as rte is % of its seconds."""
    doc, written = ogd_doc
    n = len(netfix.datasets.load("digits")[0])  # the corrected data + the rest: the whole training set
    expected = written["epochs"] * math.ceil(n / netfix.models.recipe("mlp")["batch_size"])
    raw = {(r["scenario"], r["method"]): r for r in written["raw"]}
    for scenario in ("mislabel", "backdoor"):
        assert raw[scenario, "retrain"]["steps"] == expected and raw[scenario, "retrain"]["steps_pct"] == 100.0
        assert raw[scenario, "original"]["steps"] is None and raw[scenario, "original"]["steps_pct"] is None
        for method in ("ogd-unlearn", "ogd-unlearn-relearn", "unprojected-unlearn-relearn", "finetune"):
            r = raw[scenario, method]
            assert r["steps"] > 0 and r["steps_pct"] == pytest.approx(100.0 * r["steps"] / expected)
        assert raw[scenario, "ogd-unlearn-relearn"]["steps"] > raw[scenario, "ogd-unlearn"]["steps"]
        assert raw[scenario, "ogd-unlearn-relearn"]["memory_grads"] > raw[scenario, "ogd-unlearn"]["memory_grads"] > 0
        assert raw[scenario, "unprojected-unlearn-relearn"]["memory_grads"] == 0  # no projection, no memory
    header = doc["table"].splitlines()[0]
    assert "| steps | steps_pct | memory_grads |" in header
    assert f"| {expected} | 100.0 |" in doc["table"]  # whole steps, one-decimal percentages


def test_count_steps_counts_every_optimizer_step_in_the_block():
    w = torch.nn.Parameter(torch.zeros(3))
    sgd, adam = torch.optim.SGD([w], lr=0.1), torch.optim.Adam([w], lr=0.1)
    with bench.count_steps() as outer:
        for opt in (sgd, adam, sgd):
            w.grad = torch.ones(3)
            opt.step()
        with bench.count_steps() as inner:
            adam.step()
    sgd.step()  # outside: not counted
    assert outer.steps == 4 and inner.steps == 1
    assert bench.counted(lambda: sgd.step()) == (None, 1)


def test_counted_training_takes_epochs_times_batches(digits):
    train, _ = digits
    model = netfix.models.build("mlp", train.input_shape, 10, hidden=(16,), seed=0)
    out, steps = bench.counted(lambda: netfix.train(model, train, epochs=2, batch_size=100, progress=False))
    assert steps == 2 * math.ceil(len(train) / 100) == out.history[-1]["step"]


def test_work_helpers():
    assert bench.percent(5, 20) == 25.0 and bench.percent(None, 20) is None and bench.percent(5, 0) is None
    rows = bench.show_work([{"steps": 12.4, "steps_pct": 3.14159, "memory_grads": 600, "seconds": 1.5},
                            {"steps": None, "steps_pct": "1.0 ± 0.1"}])
    assert rows[0] == {"steps": "12", "steps_pct": "3.1", "memory_grads": "600", "seconds": 1.5}
    assert rows[1] == {"steps": None, "steps_pct": "1.0 ± 0.1"}
    history = [{"phase": "unlearn", "memory_rank": 300}, {"step": 5}, {"phase": "relearn", "memory_rank": 280}]
    assert bench.memory_grads(history) == 580 and bench.memory_grads([{"step": 3}]) == 0


def test_grad_memory_builds_the_same_projector_three_ways(tmp_path):
    doc = bench.run("grad-memory", quick=True, samples=12, repeats=1, progress=False)
    assert {r["method"] for r in doc["rows"]} == {"loop", "batched-dense", "batched"}
    assert {r["model"] for r in doc["rows"]} == {"mlp", "lenet", "resnet"}
    for r in doc["rows"]:
        assert r["max_diff"] < 1e-3 and r["samples"] == 12 and r["speedup"] > 0


def test_cli_bench_writes_json_and_markdown(tmp_path, capsys):
    out, md = tmp_path / "gm.json", tmp_path / "results.md"
    code = main(["bench", "grad-memory", "--quick", "--samples", "8", "--quiet", "--device", "cpu",
                 "--json", str(out), "--markdown", str(md)])
    printed = capsys.readouterr().out
    assert code == 0 and "speedup" in printed
    doc = json.loads(out.read_text())
    assert doc["command"].startswith("netfix bench grad-memory --quick")
    assert "<!-- bench:grad-memory:mnist5k:8:quick -->" in md.read_text() and "| mlp |" in md.read_text()


@pytest.mark.parametrize("argv, message", [
    (["bench", "nope"], "unknown bench 'nope'"),
    (["bench", "ogd-debug", "--seeds", "0"], "argument --seeds: expected a whole number in [1, 1000]; got 0"),
    (["bench", "ogd-debug", "--samples", "5"], "--samples: bench 'ogd-debug' has no such option"),
    (["bench", "grad-memory", "--data", "cifar"], "unknown dataset 'cifar'"),
])
def test_cli_bench_bad_input_exits_2(capsys, argv, message):
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_every_bench_option_is_one_its_run_takes():
    """What a bench declares (BenchInfo.options) is what ``netfix bench NAME --OPTION`` accepts: each is a keyword
    of the bench's ``run``, and an option several benches take has one type."""
    import importlib
    import inspect

    types = {}
    for name, info in netfix.bench.BENCHES.items():
        run = importlib.import_module(f"netfix.bench.{info.module}").run
        assert set(info.options) <= set(inspect.signature(run).parameters), name
        for key, option in info.options.items():
            assert types.setdefault(key, option.type) is option.type, (name, key)


def test_cli_bench_list(capsys):
    assert main(["bench", "list", "--json"]) == 0
    assert set(json.loads(capsys.readouterr().out)["benches"]) == set(netfix.bench.available())


def test_every_bench_says_how_long_it_takes(capsys):
    """``netfix bench list`` gives each bench's measured duration, quick and full."""
    assert main(["bench", "list"]) == 0
    printed = capsys.readouterr().out
    for name, text in netfix.bench.available().items():
        info = netfix.bench.BENCHES.get(name)
        assert text.startswith(info.summary) and text.endswith(f"--quick: {info.quick}; full: {info.full}")
        assert info.quick.startswith("~") and info.quick.endswith("on one CPU core") and info.full
        assert info.quick in printed


@pytest.fixture(scope="module")
def unlearn_doc():
    return bench.run("unlearn", quick=True, data="digits", methods="finetune,ogd", progress=False)


def test_unlearn_bench_rows_and_gap_definition(unlearn_doc):
    rows = {(r["scenario"], r["method"]): r for r in unlearn_doc["rows"]}
    assert set(rows) == {(s, m) for s in ("random_forget", "class_forget")
                         for m in ("original", "retrain", "finetune", "ogd")}
    for (scenario, method), r in rows.items():
        assert {"UA", "RA", "TA", "MIA", "mia_loss_acc", "gap"} <= r.keys()
        if method == "retrain":
            assert r["gap"] == 0.0 and r["rte"] == pytest.approx(100.0)
    for r in unlearn_doc["raw"]:
        if r["method"] not in ("original", "retrain"):
            ref = next(x for x in unlearn_doc["raw"] if x["method"] == "retrain" and x["scenario"] == r["scenario"])
            expected = sum(abs(r[k] - ref[k]) for k in ("UA", "RA", "TA", "MIA")) / 4
            assert r["gap"] == pytest.approx(expected, abs=1e-6)
    # a class the retrained model never saw is never predicted: UA 100
    assert rows["class_forget", "retrain"]["UA"] == 100.0


def test_unlearn_bench_steps_against_retrain(unlearn_doc):
    """retrain takes epochs × ⌈retained / batch⌉ steps; every other method's steps and steps_pct beside them."""
    batch = netfix.models.recipe("mlp")["batch_size"]
    for scenario in ("random_forget", "class_forget"):
        raw = {r["method"]: r for r in unlearn_doc["raw"] if r["scenario"] == scenario}
        ref = raw["retrain"]
        assert ref["steps"] == unlearn_doc["epochs"]["mlp"] * math.ceil(ref["options"]["n_retain"] / batch)
        assert ref["steps_pct"] == 100.0
        assert raw["finetune"]["steps"] > 0
        for method in ("finetune", "ogd"):  # ogd may stop before its first step: the request already holds
            assert raw[method]["steps_pct"] == pytest.approx(100.0 * raw[method]["steps"] / ref["steps"])
        assert raw["original"].get("steps") is None  # the original: no operation, no work


def test_unlearn_bench_refuses_unknown_methods_and_models():
    with pytest.raises(UnknownNameError, match="unknown method 'nope'"):
        bench.run("unlearn", quick=True, data="digits", methods="nope")
    with pytest.raises(UnknownNameError, match="unknown model 'vgg'"):
        bench.run("unlearn", quick=True, data="digits", archs="vgg")


def test_forget_relearn_bench_quick_document(tmp_path):
    """The quick forget-relearn bench: every row it promises, the analysis and the repair (mnist5k, 1 seed)."""
    doc = netfix.bench.run("forget-relearn", quick=True, progress=False, json_path=tmp_path / "fr.json")
    methods = {"long-baseline", "llf", "ke", "imp", "shrink-perturb", "targeted"}
    assert {(r["method"], r["noise"]) for r in doc["rows"]} == {(m, n) for m in methods for n in (0.0, 0.2, 0.4)}
    assert all({"test_acc", "test_acc_std", "seconds", "delta"} <= set(r) for r in doc["rows"])
    assert all(r["delta"] == 0 for r in doc["rows"] if r["method"] == "long-baseline")
    # equal compute: every method takes 3 generations × 5 epochs × ⌈2000 / 128⌉ optimizer steps
    assert {r["steps"] for r in doc["rows"]} == {3 * 5 * math.ceil(doc["train_size"] / 128)}
    a = doc["analysis"]
    ops = methods - {"long-baseline"}
    assert a["best_schedule"] in ops and set(a["ratio_by_operator"]) == ops | {f"{m}@analysis" for m in ops | {"random"}}
    ratios = [r for r in a["ratio_by_operator"].values() if r is not None]  # None: the quick run memorised too little
    assert a["noisy_to_clean_forgetting"] == (max(ratios) if ratios else None)
    assert {c["method"] for c in doc["controls"]} == {"restarts-only", "short-baseline"}
    assert doc["repair"]["time_share"] < 1 and len(doc["repair"]["runs"]) == 1
    assert doc["repair"]["step_share"] == pytest.approx(1 / 3)  # one generation of three
    assert json.loads((tmp_path / "fr.json").read_text())["bench"] == "forget-relearn"
