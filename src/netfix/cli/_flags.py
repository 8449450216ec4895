"""The flags several verbs share, and the argparse types that check their values (:mod:`netfix.validation`), so
that a bad number is a usage error naming the flag, before any work."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Callable

from ..errors import ConfigError
from ..validation import check_scalar


def number(kind: type, low: "float | None" = None, high: "float | None" = None, *, low_open: bool = False,
           ) -> Callable[[str], Any]:
    """An argparse ``type``: the text as ``kind`` (int or float) within the range; errors say what was expected."""
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {'a whole number' if kind is int else 'a number'}; "
                                             f"got {text!r}") from None
        try:
            return check_scalar(value, "value", kind, low=low, high=high, low_open=low_open)
        except ConfigError as e:
            raise argparse.ArgumentTypeError(str(e).split(": ", 1)[1].split(" Fix:")[0].rstrip(".")) from None
    parse.__name__ = kind.__name__  # argparse names the type in its messages
    return parse


COUNT = number(int, 1, 1_000_000)
EPOCHS = number(int, 1, 100_000)
SEED = number(int, 0, 2**63 - 1)
WORKERS = number(int, 0, 256)
POSITIVE = number(float, 0, 1e6, low_open=True)
NONNEGATIVE = number(float, 0, 1e6)


def common(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.add_argument("--json", action="store_true", help="print only a JSON result on stdout")
    p.add_argument("--quiet", action="store_true", help="no progress bars or logs on stderr")
    p.add_argument("--progress", action="store_true",
                   help="progress bars even when stderr is not a terminal (default: only on a terminal)")
    return p


def compute(p: argparse.ArgumentParser) -> None:
    p.add_argument("--seed", type=SEED, default=0, help="random seed (default 0)")
    p.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: cuda when available)")


def data_args(p: argparse.ArgumentParser, scenario: bool = True) -> None:
    p.add_argument("--data", default=None,
                   help="built-in dataset (see `netfix datasets`); default: the one the model was trained on")
    p.add_argument("--data-dir", type=Path, default=None, metavar="DIR",
                   help="your own images instead of --data: DIR/train/<class>/<image> and DIR/test/<class>/<image> "
                        "(PNG/JPEG), read lazily")
    p.add_argument("--workers", type=WORKERS, default=0, metavar="N",
                   help="DataLoader worker processes reading a streamed set (--data-dir, cifar10/100) ahead of the "
                        "model (default 0: read in this process)")
    p.add_argument("--allow-data-mismatch", action="store_true",
                   help="accept --data that differs from the model's own (name, shape, classes or value range)")
    if scenario:
        g = p.add_mutually_exclusive_group()
        g.add_argument("--scenario", help="fault or deletion request, e.g. mislabel:source=7,target=1, "
                                          "class_forget:cls=0, random_forget:fraction=0.1, backdoor:target=0, "
                                          "label_noise:fraction=0.2")
        g.add_argument("--forget-indices", type=Path,
                       help="file of training-set indices to forget (one per line, or a .npy of integers)")


def outputs(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("--out", type=Path, default=None, help=f"{what} path, without extension")
    p.add_argument("--overwrite", action="store_true", help="replace outputs that already exist (default: refuse)")


def ledger_arg(p: argparse.ArgumentParser, default: Any = None, what: str = "the run is recorded in") -> None:
    p.add_argument("--ledger", type=Path, default=default, metavar="PATH",
                   help=f"ledger file {what} (default $NETFIX_HOME/ledger.sqlite, NETFIX_HOME defaulting to "
                        "~/.netfix)")


def writes_model(p: argparse.ArgumentParser, what: str) -> None:
    """The flags of a verb that writes a model: its output path (``what``), compute and the ledger."""
    outputs(p, what)
    compute(p)
    ledger_arg(p)
