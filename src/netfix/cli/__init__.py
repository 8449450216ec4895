"""``netfix`` command line: a thin map from verbs to the Python API.

Every verb takes ``--help``, ``--json`` (only JSON on stdout; progress and logs go to stderr) and ``--quiet``. A
user's mistake is a one-line error and exit status 2, never a traceback: netfix's own errors, files that are
missing or unwritable, a closed pipe.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from typing import Any, Callable

from ..errors import ConfigError, NetfixError
from . import edit, misc, parser, repair, train

__all__ = ["main"]

_VERBS: dict[str, Callable[[argparse.Namespace], dict[str, Any]]] = {
    "demo": misc.demo, "datasets": misc.datasets, "methods": misc.methods, "train": train.train,
    "evaluate": repair.evaluate, "unlearn": repair.repair, "relearn": repair.repair, "edit": edit.edit,
    "edits": edit.edits, "bench": misc.bench, "report": misc.report, "ledger": misc.ledger,
}


def _method_help(p: argparse.ArgumentParser, argv: list[str]) -> None:
    """``netfix unlearn --method X --help``: the method's options under the verb's own flags."""
    if not argv or argv[0] not in ("unlearn", "relearn") or not {"-h", "--help"} & set(argv):
        return
    name = next((a.split("=", 1)[1] for a in argv if a.startswith("--method=")), None)
    if "--method" in argv and argv.index("--method") + 1 < len(argv):
        name = argv[argv.index("--method") + 1]
    if not name or name == "auto":
        return
    try:
        shown = misc.methods(argparse.Namespace(name=name))["text"]
    except NetfixError as e:
        shown = str(e)
    sub = next(a for a in p._actions if isinstance(a, argparse._SubParsersAction)).choices[argv[0]]
    sub.epilog = f"--method {name} (pass options as --option KEY=VALUE):\n\n{shown}"
    sub.formatter_class = argparse.RawDescriptionHelpFormatter


def _bench_help(p: argparse.ArgumentParser, argv: list[str]) -> None:
    """``netfix bench NAME --help``: what the bench measures and how long it takes, under the common flags."""
    from ..bench import BENCHES

    if len(argv) < 2 or argv[0] != "bench" or not {"-h", "--help"} & set(argv):
        return
    name = next((a for a in argv[1:] if a in BENCHES), None)
    if name is None:
        return
    sub = next(a for a in p._actions if isinstance(a, argparse._SubParsersAction)).choices["bench"]
    info = BENCHES.get(name)
    flags = ", ".join(f"--{key.replace('_', '-')}" for key in info.options)
    sub.epilog = f"bench {name}:\n\n{info.help()}" + (f"\n\nits options: {flags}" if flags else "")
    sub.formatter_class = argparse.RawDescriptionHelpFormatter


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``netfix`` command; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        p = parser.build()
        _method_help(p, argv)
        _bench_help(p, argv)
        args = p.parse_args(argv)
    except SystemExit as e:  # --help / --version end the program; a usage error (printed by argparse) is status 2
        if not e.code:
            raise
        return 2
    from .. import distributed

    if getattr(args, "data_dir", None) is not None:  # the user's image folder: a dataset name the model records
        if getattr(args, "data", None):
            return _fail(args, ConfigError("--data-dir: give --data or --data-dir, not both."))
        args.data = f"folder:{args.data_dir.expanduser().resolve()}"
    try:
        distributed.init_from_env(getattr(args, "device", None))  # under torchrun: join its process group
    except NetfixError as e:
        return _fail(args, e)
    if not distributed.is_main():
        args.quiet = True  # one process reports: rank 0
    logging.basicConfig(level=logging.WARNING if args.quiet or args.json in (True, "-") else logging.INFO,
                        format="netfix: %(message)s", stream=sys.stderr)
    try:
        result = _VERBS[args.verb](args)
        text = result.pop("text", "")
        code = int(result.pop("_exit", 0))  # a verb's own failure status, e.g. `ledger verify` finding a problem
        if distributed.is_main():
            if args.json:
                json.dump(result, sys.stdout, indent=2, default=str)
                sys.stdout.write("\n")
            elif text:
                print(text)
            sys.stdout.flush()
        return code
    except BrokenPipeError:  # `netfix ledger verify | head -1`: the reader left; say nothing more
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141
    except KeyboardInterrupt:
        print(f"netfix {args.verb}: interrupted", file=sys.stderr)
        return 130
    except NetfixError as e:
        return _fail(args, e)
    except OSError as e:  # a path that is missing, unreadable or unwritable
        where = f" ({e.filename})" if getattr(e, "filename", None) else ""
        return _fail(args, f"{e.strerror or e}{where}. Fix: check the path and its permissions.")


def _fail(args: argparse.Namespace, error: "Exception | str") -> int:
    print(f"netfix {args.verb}: error: {error}", file=sys.stderr)
    return 2
