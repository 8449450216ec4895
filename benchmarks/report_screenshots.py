"""The report screenshots in docs/screenshots/: a class-forgetting unlearn report with a reference, in Chromium.

What it runs (the commands a user types, in a temporary folder with its own ``NETFIX_HOME``, so no ledger record
lands in ~/.netfix)::

    netfix train --data mnist5k --epochs 5 --out runs/original
    netfix train --data mnist5k --epochs 5 --scenario class_forget:cls=0 --subset retain --out runs/retrained
    netfix unlearn runs/original --data mnist5k --scenario class_forget:cls=0 --method ogd --reference runs/retrained

then screenshots ``runs/original-ogd.report.html`` with headless Chromium (``--window-size=1280,H``), trims the
white margins and, if the PNG is over 400 KB, scales it down until it is not. Everything is seeded (seed 0), so a
rerun draws the same page. About 30 s on 2 CPU cores.

Run (the "after" picture, from this working tree)::

    .venv/bin/python benchmarks/report_screenshots.py --out docs/screenshots/report_after.png

The "before" picture is the same run by the code before issue 22's report work (commit a953e8a), taken from an
exported copy of that commit's sources (``git archive`` reads the repository and changes nothing)::

    mkdir -p /tmp/netfix-a953e8a && git archive a953e8a src | tar -x -C /tmp/netfix-a953e8a
    .venv/bin/python benchmarks/report_screenshots.py --src /tmp/netfix-a953e8a/src \\
        --out docs/screenshots/report_before.png

Needs a Chromium binary (``--browser``; default: the first of chromium, chromium-browser, google-chrome on PATH).
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from PIL import Image, ImageChops

ROOT = Path(__file__).resolve().parents[1]
MAX_BYTES = 400_000
STEPS = (
    ["train", "--data", "mnist5k", "--epochs", "5", "--out", "runs/original"],
    ["train", "--data", "mnist5k", "--epochs", "5", "--scenario", "class_forget:cls=0", "--subset", "retain",
     "--out", "runs/retrained"],
    ["unlearn", "runs/original", "--data", "mnist5k", "--scenario", "class_forget:cls=0", "--method", "ogd",
     "--reference", "runs/retrained"],
)


def make_report(work: Path, src: Path) -> Path:
    """Run :data:`STEPS` with the netfix found in ``src`` (cwd ``work``); the unlearn run's HTML report."""
    env = {**os.environ, "PYTHONPATH": str(src), "NETFIX_HOME": str(work / "home"), "OMP_NUM_THREADS": "1",
           "OMP_WAIT_POLICY": "PASSIVE"}
    for step in STEPS:
        subprocess.run([sys.executable, "-m", "netfix", *step, "--quiet", "--seed", "0"], cwd=work, env=env,
                       check=True, stdout=subprocess.DEVNULL)
    return work / "runs" / "original-ogd.report.html"


def screenshot(page: Path, out: Path, browser: str, height: int = 6000) -> None:
    """Chromium's picture of ``page`` at 1280 px wide and up to ``height`` px tall, written to ``out``."""
    subprocess.run([browser, "--headless", "--disable-gpu", "--no-sandbox", "--hide-scrollbars",
                    f"--screenshot={out}", f"--window-size=1280,{height}", page.resolve().as_uri()],
                   check=True, capture_output=True, timeout=180)


def trimmed(image: Image.Image, pad: int = 16) -> Image.Image:
    """``image`` without its white margins (keeping ``pad`` px of white around the content)."""
    rgb = image.convert("RGB")
    box = ImageChops.difference(rgb, Image.new("RGB", rgb.size, "white")).getbbox()
    if box is None:
        return rgb
    left, top, right, bottom = box
    return rgb.crop((max(0, left - pad), max(0, top - pad), min(rgb.width, right + pad),
                     min(rgb.height, bottom + pad)))


def small_png(image: Image.Image, max_bytes: int = MAX_BYTES) -> bytes:
    """``image`` as an optimised PNG, scaled down by steps of 10 % until it is at most ``max_bytes``."""
    scale = 1.0
    while True:
        size = (round(image.width * scale), round(image.height * scale))
        shown = image if scale == 1.0 else image.resize(size, Image.Resampling.LANCZOS)
        buf = io.BytesIO()
        shown.quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(buf, format="PNG", optimize=True)
        if buf.tell() <= max_bytes or scale < 0.3:
            return buf.getvalue()
        scale *= 0.9


def find_browser() -> str | None:
    """The first Chromium-like browser on PATH, or None."""
    return next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)


def main(argv: list[str] | None = None) -> Path:
    """Parse the options, run, shoot, trim, shrink and write the PNG; returns its path."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots" / "report_after.png")
    p.add_argument("--src", type=Path, default=ROOT / "src", help="the netfix sources to run (default: this tree's)")
    p.add_argument("--browser", default=find_browser(), help="Chromium binary")
    p.add_argument("--keep", type=Path, help="also copy the rendered HTML report here")
    args = p.parse_args(argv)
    if not args.browser:
        p.error("no chromium binary found on PATH; pass --browser")
    with tempfile.TemporaryDirectory(prefix="netfix-shots-") as tmp:
        work = Path(tmp)
        page = make_report(work, args.src.resolve())
        if args.keep:
            shutil.copyfile(page, args.keep)
        raw = work / "shot.png"
        screenshot(page, raw, args.browser)
        with Image.open(raw) as img:
            data = small_png(trimmed(img))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_bytes(data)
    print(f"{args.out}: {len(data) / 1000:.0f} KB")
    return args.out


if __name__ == "__main__":
    main()
