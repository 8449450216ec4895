"""Reports that show the change (issue 22): a real ``netfix unlearn --reference`` report for class forgetting —
the reference's row, the forgotten class as the headline and in the per-class plots, full-width figures whose
titles overlap nothing — checked in the HTML and, where a Chromium binary is installed, in its rendering."""

from __future__ import annotations

import base64
import json
import re
import shutil
import struct
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import netfix
from netfix import report
from netfix.report import figures as plots
from netfix.cli import main

SCENARIO = "class_forget:cls=0"


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Train on digits, retrain without class 0 (the reference), unlearn class 0 with ogd against it: the run's
    document, its HTML report's path and text, and the scenario (about 10 s)."""
    d = tmp_path_factory.mktemp("class-forget")
    common = ["--data", "digits", "--model-arg", "hidden=64", "--epochs", "15", "--lr", "0.003", "--quiet"]
    assert main(["train", *common, "--out", str(d / "original")]) == 0
    assert main(["train", *common, "--scenario", SCENARIO, "--subset", "retain", "--out", str(d / "retrained")]) == 0
    assert main(["unlearn", str(d / "original"), "--data", "digits", "--scenario", SCENARIO, "--method", "ogd",
                 "--reference", str(d / "retrained"), "--quiet"]) == 0
    page = d / "original-ogd.report.html"
    train, test = netfix.datasets.load("digits")
    return {"doc": json.loads((d / "original-ogd.run.json").read_text()), "page": page, "html": page.read_text(),
            "scenario": netfix.scenarios.from_spec(SCENARIO, train, test)}


def _text(page: str) -> str:
    """The page's text: tags dropped, embedded images cut out."""
    return re.sub(r"<[^>]+>", " ", re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "", page))


def test_the_reference_has_its_row_and_is_in_every_plot(run):
    doc, page = run["doc"], run["html"]
    assert [r["model"] for r in doc["rows"]] == ["before", "after", "reference"]
    assert list(doc["report"]["models"]) == ["before", "after", "reference"]
    table = page[page.index("<table>"):page.index("</table>")]
    ref = next(r for r in doc["rows"] if r["model"] == "reference")
    assert f"<td>reference</td><td>{ref['forget_acc']:.2f}</td><td>{ref['retain_acc']:.2f}</td>" in table
    assert page.count("data:image/png;base64,") == 4


def test_the_forgotten_class_is_the_headline_and_in_the_per_class_data(run):
    doc, s = run["doc"], run["scenario"]
    data, rows = doc["report"], {r["model"]: r for r in doc["rows"]}
    assert data["forgotten"] == 0
    for name, entry in data["models"].items():
        cm = np.array(entry["confusion"])
        assert cm.sum() == len(s.test) + len(s.fault_test)  # the class's own test samples counted too
        assert cm[0].sum() == len(s.fault_test) == int((s.fault_test.y == 0).sum()) > 0
        # for class_forget the fault rate is how often the class is still recognised: its per-class accuracy
        assert entry["per_class_acc"][0] == pytest.approx(rows[name]["fault_rate"])
        assert entry["acc"]["test"] == pytest.approx(rows[name]["test_acc"])  # the scenario's metric, unchanged
    assert rows["before"]["fault_rate"] > 50 and rows["after"]["fault_rate"] < 20
    acc = [rows[m]["fault_rate"] for m in ("before", "after", "reference")]
    line = f"forgotten class 0: {acc[0]:.1f} % → {acc[1]:.1f} % (reference {acc[2]:.1f} %)"
    text = _text(run["html"])
    assert line in text and text.index(line) < text.index("Before / after / reference")  # the first line


def test_old_documents_render_without_a_forgotten_class(run):
    data = {k: v for k, v in run["doc"]["report"].items() if k != "forgotten"}
    page = report.render({**run["doc"], "report": data})
    assert "forgotten class" not in page and page.count("data:image/png;base64,") == 4


def _png_size(uri: str) -> tuple[int, int]:
    raw = base64.b64decode(uri.split(",", 1)[1])
    assert raw[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", raw[16:24])


def test_figures_fill_the_column_and_stay_sharp(run):
    page = run["html"]
    assert re.search(r"img\{[^}]*width:100%", page)
    uris = re.findall(r"src='(data:image/png;base64,[^']+)'", page)
    widths = {_png_size(u)[0] for u in uris}
    assert widths == {round(plots.WIDTH * plots.DPI)} and min(widths) >= 1100  # at least the column's pixels


def test_no_title_or_legend_overlaps_another(run, monkeypatch):
    figures: list[Any] = []
    monkeypatch.setattr(plots, "_png", lambda fig: figures.append(fig) or "data:image/png;base64,")
    report.render(run["doc"])
    assert len(figures) == 4
    for fig in figures:
        fig.canvas.draw()
        r = fig.canvas.get_renderer()
        outside = [t for t in [fig._suptitle, *(a.title for a in fig.axes)] if t is not None and t.get_text()]
        outside += list(fig.legends)  # titles and figure legends: outside every axes
        inside = [a.get_legend() for a in fig.axes if a.get_legend() is not None]
        boxes = [x.get_window_extent(r) for x in outside + inside]
        assert not any(a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[i + 1:])
        axes = [a.get_window_extent(r) for a in fig.axes]
        assert not any(b.overlaps(a) for b in boxes[:len(outside)] for a in axes)
    import matplotlib.pyplot as plt

    for fig in figures:
        plt.close(fig)


def _chromium() -> str | None:
    """A Chromium binary on PATH, or None."""
    return next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)


def test_chromium_renders_the_reference_row_and_the_forgotten_class(run, tmp_path):
    browser = _chromium()
    if browser is None:
        pytest.skip("no chromium binary on PATH (chromium, chromium-browser, google-chrome); the HTML itself is "
                    "checked by the other tests")
    flags = [browser, "--headless", "--disable-gpu", "--no-sandbox", "--hide-scrollbars"]
    uri = Path(run["page"]).resolve().as_uri()
    dom = subprocess.run([*flags, "--dump-dom", uri], check=True, capture_output=True, text=True, timeout=120).stdout
    assert re.search(r"<td>reference</td>", dom) and "forgotten class 0:" in _text(dom)
    shot = tmp_path / "shot.png"
    subprocess.run([*flags, f"--screenshot={shot}", "--window-size=1280,3000", uri], check=True,
                   capture_output=True, timeout=120)
    import matplotlib.image as mpimg

    img = mpimg.imread(shot)[..., :3]
    assert img.shape[:2] == (3000, 1280)
    ink = img.mean(axis=2) < 0.9
    dark = (img.mean(axis=2) < 0.5).mean()
    assert 0.005 < dark < 0.5 and img.std() > 0.05  # text and plots on a white page: not blank, not all black
    cols = np.flatnonzero(ink.any(axis=0))
    assert cols[-1] - cols[0] > 0.8 * 1280  # the plots span the page, not under half of it
    rows = np.flatnonzero(ink.any(axis=1))
    assert rows[-1] > 2000  # full-width plots: the page runs past 2,000 px
