"""What several verbs share: reading a model (hashed as it is read), the data a verb runs on (the model's own
unless told otherwise, and never silently another), the outputs it may write, and option parsing."""

from __future__ import annotations

import argparse
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .. import card
from ..data import LabeledData, as_data, check_range
from ..errors import ConfigError, DataError, NetfixError
from ..io import LoadedModel, model_file

log = logging.getLogger("netfix")


def progress(args: argparse.Namespace) -> "bool | None":
    """Bars when forced (--progress), never when --quiet, else only when stderr is a terminal."""
    if getattr(args, "progress", False):
        return True
    return False if getattr(args, "quiet", False) else None


def read_model(path: Path, argument: str, args: argparse.Namespace) -> LoadedModel:
    """A saved model, with its bytes' sha256 taken as it was read; errors name the flag."""
    from ..io import read_model as read

    try:
        return read(path, device=args.device or "cpu")
    except NetfixError as e:
        text = str(e)
        raise type(e)(f"{argument}: {text[6:]}" if text.startswith("path: ") else text) from None


@dataclass
class Data:
    """The dataset a verb runs on: its name and splits."""

    name: str
    train: LabeledData
    test: LabeledData


def load_named(args: argparse.Namespace, name: str) -> tuple[LabeledData, LabeledData]:
    """``datasets.load(name)``, a streamed set (image folder, CIFAR) read by ``--workers`` DataLoader workers."""
    from .. import datasets

    train, test = datasets.load(name)
    if getattr(args, "workers", 0):
        train, test = (as_data(d, d.name, workers=args.workers) for d in (train, test))
    return train, test


def model_data(args: argparse.Namespace, loaded: LoadedModel, *others: "LoadedModel | None",
               default: "str | None" = None) -> Data:
    """The data a verb reading ``loaded`` runs on: ``--data``, else the dataset the model records. A ``--data``
    whose name, input shape, classes or value range differs from the model's is refused unless
    ``--allow-data-mismatch`` (which also lifts the library's own range check on the models read)."""
    recorded = dict(card.of(loaded.model).data or {})
    name = args.data or recorded.get("name") or default
    if not name:
        raise ConfigError("--data: the model records no dataset it was trained on (it was saved without one). Fix: "
                          "pass --data NAME (see `netfix datasets`).")
    mismatch = getattr(args, "allow_data_mismatch", False)
    if args.data and recorded.get("name") and args.data != recorded["name"] and not mismatch:
        raise ConfigError(f"--data: {args.data!r} is not the dataset the model was trained on "
                          f"({recorded['name']!r}). Fix: drop --data to use {recorded['name']!r}, or add "
                          "--allow-data-mismatch if you mean it.")
    train, test = load_named(args, name)
    if mismatch:
        for m in (loaded, *others):
            data = card.of(m.model).data if m is not None else None
            if m is not None and data:
                card.update(m.model, data={k: v for k, v in data.items() if k != "range"})
        return Data(name, train, test)
    shape = loaded.meta.get("input_shape") or recorded.get("input_shape")
    if shape and list(train.input_shape) != list(shape):
        raise ConfigError(f"--data: {name!r} has inputs of shape {train.input_shape}, the model takes {tuple(shape)}. "
                          "Fix: pass the dataset the model was trained on.")
    k = loaded.meta.get("num_classes") or recorded.get("num_classes")
    if k and train.num_classes != k:
        raise ConfigError(f"--data: {name!r} has {train.num_classes} classes, the model {k}. Fix: pass the dataset "
                          "the model was trained on.")
    check_range(train, recorded, "--data")
    return Data(name, train, test)


def outputs(args: argparse.Namespace, stem: Path, roles: "tuple[str, ...]", reads: "tuple[Path | None, ...]" = ()
            ) -> dict[str, Path]:
    """The files a verb will write for the model at ``stem``, checked before any work
    (:func:`netfix.runs.output_paths`; errors name --out)."""
    from ..runs import output_paths

    return output_paths(stem, roles, reads=reads, overwrite=bool(getattr(args, "overwrite", False)),
                        argument="--out")


def stem_of(path: Path) -> Path:
    """``dir/name`` for ``dir/name``, ``dir/name.safetensors`` or ``dir/name.json``."""
    return model_file(path).with_suffix("")


def parse_kv(items: list[str], what: str, specs: "tuple[str, ...]" = ("operator",)) -> dict[str, Any]:
    """``KEY=VALUE`` flags as a dict; ``a,b`` is a list; ``specs`` keep their commas (``operator=imp:keep=0.3``)."""
    from ..scenarios import parse_value

    out: dict[str, Any] = {}
    for item in items:
        key, eq, value = item.partition("=")
        if not eq or not key:
            raise ConfigError(f"{what}: expected KEY=VALUE; got {item!r}.")
        if key in specs:
            out[key] = value
            continue
        parts = [parse_value(v) for v in value.split(",")]
        out[key] = parts if "," in value else parts[0]
    return out


def read_indices(path: Path, argument: str = "--forget-indices") -> np.ndarray:
    """Sample indices from a file: one integer per line, or a .npy array of integers (never pickled)."""
    if not path.is_file():
        raise DataError(f"{argument}: {path} not found.")
    if path.suffix == ".npy":
        try:
            a = np.load(path, allow_pickle=False)
        except (ValueError, OSError, EOFError) as e:
            raise DataError(f"{argument}: {path} is not a .npy array of integers ({e}). Fix: save it with "
                            "np.save(path, np.asarray(indices, dtype=np.int64)).") from None
        if not isinstance(a, np.ndarray) or not np.issubdtype(a.dtype, np.integer):
            raise DataError(f"{argument}: {path} holds {getattr(a, 'dtype', type(a).__name__)}, not integers. "
                            "Fix: save np.asarray(indices, dtype=np.int64).")
        return a.astype(np.int64).reshape(-1) if a.ndim <= 1 else a.astype(np.int64)
    try:
        text = path.read_text()
        return np.array([int(line) for line in text.split() if line.strip()], dtype=np.int64)
    except (ValueError, UnicodeDecodeError):
        raise DataError(f"{argument}: {path} must hold one integer per line.") from None


def scenario(args: argparse.Namespace, train: LabeledData, test: LabeledData) -> Any:
    """The scenario or deletion request the flags describe, or None."""
    from .. import scenarios

    if getattr(args, "scenario", None):
        return scenarios.from_spec(args.scenario, train, test)
    if getattr(args, "forget_indices", None):
        return scenarios.from_indices(train, test, read_indices(args.forget_indices))
    return None


def ints(text: str, option: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ConfigError(f"{option}: expected comma-separated integers, e.g. 3,17; got {text!r}.") from None


def proof_text(proof: dict[str, Any]) -> str:
    if "ledger_record" not in proof:
        return ""
    return (f"\nledger: record {proof['ledger_record']} in {proof['ledger']}"
            + (f"\ncertificate: {proof['certificate']}" if "certificate" in proof else ""))
