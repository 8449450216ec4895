"""README.md runs as written: every Python block and every command line, in order, from a fresh folder.

The blocks are extracted from the file itself. Python blocks run in one namespace (a reader's session); command
lines run through ``bash`` in the same folder, with the package's ``netfix`` first on ``PATH``, ``NETFIX_HOME`` in
the folder (the ledger) and ``runs/`` created by the commands themselves.

Two modes:

- ``make test`` (CI): the same text with small settings chosen here (:data:`SMALL`): one epoch where the README
  says more, mnist5k where it says fashion-mnist, ``--quick`` for the demo; ``netfix`` lines run through
  :func:`netfix.cli.main` in this process (torch is imported once, not forty times). Lines marked ``[full]`` in the
  README (a benchmark of minutes, several processes, ``make demo`` beside ``netfix demo --quick``) are left to the
  full mode.
- ``make readme-full`` (``NETFIX_README_FULL=1``): the README exactly as written, ``[full]`` lines included.

Lines marked ``[gpu]`` run only where torch sees CUDA; ``[skip: reason]`` states why a line is never run here
(``make test`` would run this test inside itself). A Python block preceded by ``<!-- readme: full -->`` runs only
in the full mode.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
FULL = os.environ.get("NETFIX_README_FULL", "") not in ("", "0")
TIMEOUT = 3600 if FULL else 600   # seconds per command line

# (pattern, replacement) applied to the README's text in CI mode: the same commands, small.
SMALL: list[tuple[str, str]] = [
    (r"--data fashion-mnist", "--data mnist5k"),
    (r'"fashion-mnist"', '"mnist5k"'),
    (r"--epochs \d+", "--epochs 1"),
    (r"--generations \d+", "--generations 2"),
    (r"\bepochs=\d+", "epochs=1"),
    (r"\bepochs_per_generation=\d+", "epochs_per_generation=1"),
    (r"\bgenerations=\d+", "generations=2"),
    (r"\bevery=\d+", "every=1"),
    (r"^netfix demo$", "netfix demo --quick"),
]


class Block:
    """One fenced block of README.md: its language, first line number, text and marker."""

    def __init__(self, lang: str, line: int, text: str, marker: str) -> None:
        self.lang, self.line, self.text, self.marker = lang, line, text, marker

    @property
    def id(self) -> str:
        return f"line{self.line}-{self.lang}"


def blocks(path: Path = README) -> list[Block]:
    """Every ```python and ```bash block of ``path``, in order, with the ``<!-- readme: ... -->`` marker above it."""
    out, lines = [], path.read_text().splitlines()
    i = 0
    while i < len(lines):
        m = re.match(r"^```(\w+)\s*$", lines[i])
        if not m:
            i += 1
            continue
        start, lang = i, m.group(1)
        j = i + 1
        while not lines[j].startswith("```"):
            j += 1
        above = lines[start - 1] if start else ""
        marker = re.match(r"<!-- readme: (.*) -->", above)
        if lang in ("python", "bash"):
            out.append(Block(lang, start + 2, "\n".join(lines[start + 1:j]), marker.group(1) if marker else ""))
        i = j + 1
    return out


def commands(text: str) -> list[tuple[int, str, str]]:
    """A bash block's command lines: ``(offset, command, marker)``, continuation lines joined; comment-only lines
    dropped. The marker is ``full``, ``gpu``, ``skip: ...`` or empty, read from the line's comment."""
    out: list[tuple[int, str, str]] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        first, cmd = i, lines[i]
        while cmd.rstrip().endswith("\\") and i + 1 < len(lines):
            i += 1
            cmd = cmd.rstrip()[:-1].rstrip() + " " + lines[i].strip()
        i += 1
        if not cmd.strip() or cmd.lstrip().startswith("#"):
            continue
        tag = re.search(r"\[(full|gpu|skip: [^\]]+)\]", cmd)
        out.append((first, cmd, tag.group(1) if tag else ""))
    return out


def small(text: str) -> str:
    """The README's text with CI's small settings (see :data:`SMALL`)."""
    if FULL:
        return text
    lines = []
    for line in text.splitlines():
        code, sep, comment = line.partition("  #")   # comments keep the README's numbers
        for pattern, repl in SMALL:
            code = re.sub(pattern, repl, code.rstrip() if "$" in pattern else code)
        lines.append(code + sep + comment)
    return "\n".join(lines)


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A fresh folder for the whole README, and the session state the blocks share."""
    path = tmp_path_factory.mktemp("readme")
    env = dict(os.environ, NETFIX_HOME=str(path / "home"), PATH=f"{Path(sys.executable).parent}{os.pathsep}"
               f"{os.environ.get('PATH', '')}", OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
    yield {"path": path, "env": env, "namespace": {"__name__": "__readme__"}, "failed": None, "seconds": {}}


@contextlib.contextmanager
def _cwd(path: Path) -> Iterator[None]:
    old = Path.cwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(old)


def _in_process(cmd: str, folder: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    """Run a ``netfix ...`` line through :func:`netfix.cli.main` in this process, in the README's folder with its
    environment (``make readme-full`` runs every line as its own process, as a reader does)."""
    from netfix.cli import main

    argv = shlex.split(cmd, comments=True)[1:]
    out, err = io.StringIO(), io.StringIO()
    saved = dict(os.environ)
    os.environ["NETFIX_HOME"] = folder["env"]["NETFIX_HOME"]
    root = logging.getLogger()
    handlers = list(root.handlers)
    try:
        with _cwd(folder["path"]), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(argv)
    finally:
        os.environ.clear()
        os.environ.update(saved)
        root.handlers[:] = handlers
    return subprocess.CompletedProcess(argv, code, out.getvalue(), err.getvalue())


def _run_line(cmd: str, marker: str, folder: dict[str, Any]) -> None:
    if marker.startswith("skip"):
        return
    if marker == "gpu" and not torch.cuda.is_available():
        return
    if marker == "full" and not FULL:
        return
    cwd = folder["path"]
    if cmd.startswith("make "):       # the Makefile's targets run where the Makefile is, as a reader runs them
        cwd = ROOT
    start = time.perf_counter()
    if not FULL and cmd.startswith("netfix ") and not set(cmd.partition("  #")[0]) & set("<>|;&$`"):
        r = _in_process(cmd, folder)  # CI: the same verb, without paying torch's import for every line
    else:
        r = subprocess.run(["bash", "-c", f"set -eo pipefail; {cmd}"], cwd=cwd, env=folder["env"],
                           capture_output=True, text=True, timeout=TIMEOUT)
    folder["seconds"][cmd] = time.perf_counter() - start
    if os.environ.get("NETFIX_README_TIMES"):        # where `make readme-full` keeps each line's seconds
        Path(os.environ["NETFIX_README_TIMES"]).write_text(json.dumps(folder["seconds"], indent=1))
    assert r.returncode == 0, f"README command failed ({r.returncode}): {cmd}\n--- stdout\n{r.stdout[-3000:]}\n" \
                              f"--- stderr\n{r.stderr[-3000:]}"


BLOCKS = blocks()


def test_readme_has_blocks() -> None:
    assert sum(b.lang == "python" for b in BLOCKS) >= 8 and sum(b.lang == "bash" for b in BLOCKS) >= 5
    for b in BLOCKS:
        for _, cmd, marker in commands(b.text) if b.lang == "bash" else []:
            assert cmd.split()[0] in ("netfix", "make", "torchrun", "printf", "seq", "python"), \
                f"README line {b.line}: {cmd!r} is not a command the README test knows how to run"


@pytest.mark.timeout(6 * 3600 if FULL else 900)   # a block of many commands; each line has its own TIMEOUT
@pytest.mark.parametrize("block", BLOCKS, ids=[b.id for b in BLOCKS])
def test_readme_block(block: Block, folder: dict[str, Any]) -> None:
    if folder["failed"] is not None:
        pytest.fail(f"an earlier README block failed ({folder['failed']}); the rest depends on it")
    folder["failed"] = block.id
    if block.marker == "full" and not FULL:
        folder["failed"] = None
        pytest.skip("marked <!-- readme: full -->: run by make readme-full")
    text = small(block.text)
    if block.lang == "python":
        code = compile(text, f"README.md:{block.line}", "exec")
        with _cwd(folder["path"]):
            exec(code, folder["namespace"])
    else:
        for _, cmd, marker in commands(text):
            _run_line(cmd, marker, folder)
    folder["failed"] = None


def test_small_settings_change_only_code() -> None:
    """The CI substitutions touch commands, never the numbers stated in comments."""
    if FULL:
        pytest.skip("full mode runs the README as written")
    assert small("netfix train --epochs 20 --data fashion-mnist  # 90.5 % after --epochs 5") == \
        "netfix train --epochs 1 --data mnist5k  # 90.5 % after --epochs 5"
    assert small("netfix demo") == "netfix demo --quick"
    assert commands("netfix a \\\n   --b 1  # [full] long\n# note\nnetfix c") == \
        [(0, "netfix a --b 1  # [full] long", "full"), (3, "netfix c", "")]
