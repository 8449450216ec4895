"""The verbs that change a saved model's predictions on chosen inputs: ``edit``, and ``edits`` (list a model's edits,
or revert one). Like the repair verbs, each checks its outputs before any work, refuses to save an edit that changed
no weight, and publishes the new model and its ledger record as one step (:mod:`netfix.runs`)."""

from __future__ import annotations

import argparse
from typing import Any

import torch

from .. import card
from .._tables import text_table
from ..errors import ConfigError, NetfixError
from ._common import ints, model_data, outputs, proof_text, read_model, stem_of


def edit(args: argparse.Namespace) -> dict[str, Any]:
    """``netfix edit``: change the predictions on chosen inputs; show label, prediction before and after."""
    from .. import edit as edit_model
    from ..runs import record_edit

    source = stem_of(args.model)
    stem = stem_of(args.out) if args.out else source.with_name(f"{source.name}-edit")
    paths = outputs(args, stem, ("model", "run", "report"), reads=(args.model,))
    loaded = read_model(args.model, "MODEL", args)
    data = model_data(args, loaded)
    pool = data.test if args.split == "test" else data.train
    indices, targets = ints(args.indices, "--indices"), ints(args.targets, "--targets")
    if not indices:
        raise ConfigError("--indices: no index given; expected e.g. --indices 3,17.")
    if len(indices) != len(targets):
        raise ConfigError(f"--targets: {len(targets)} targets for {len(indices)} indices; expected one per index.")
    bad = [i for i in indices if not 0 <= i < len(pool)]
    if bad:
        raise ConfigError(f"--indices: {bad} out of range for the {args.split} split of {data.name} "
                          f"({len(pool)} samples).")
    wrong = [t for t in targets if not 0 <= t < pool.num_classes]
    if wrong:
        raise ConfigError(f"--targets: {wrong} are not classes of {data.name} (0..{pool.num_classes - 1}).")
    chosen = pool.subset(indices, "edits")
    model = loaded.model
    options = {"lr": args.lr} if args.lr is not None else {}
    params = [p.strip() for p in args.params.split(",")] if args.params else None
    if args.editor == "adaptor" and (args.lr is not None or params is not None):
        raise ConfigError("--lr, --params: the adaptor takes no step size and changes no parameter; leave them out "
                          "(or pick a gradient --editor).")
    rehearsal = None if args.no_rehearsal else data.train
    out = edit_model(model, chosen.X, torch.as_tensor(targets), editor=args.editor, max_steps=args.max_steps,
                     params=params, rehearsal=rehearsal, device=args.device, seed=args.seed, **options)
    doc = record_edit(out, loaded, chosen, targets, test=data.test, paths=paths, ledger=args.ledger,
                      device=args.device, where={"data": data.name, "split": args.split, "indices": indices})
    broken, rows = doc["corrected_to_wrong"], doc["edits"]
    warning = (f"\nwarning: index {', '.join(map(str, broken))} was predicted correctly before; the edit makes it "
               "predict the target instead of the true label, as asked" if broken else "")
    doc["text"] = (f"{out.method}: {sum(out.success)}/{len(out.success)} edits reached in {out.steps} steps "
                   f"({1000 * out.seconds:.0f} ms)\n\n"
                   f"{text_table(rows, ('index', 'label', 'before', 'target', 'after', 'success'))}{warning}\n\n"
                   f"test accuracy: {doc['test_acc_before']:.2f} -> {doc['test_acc_after']:.2f}\n"
                   f"saved: {paths['model']}\nreport: {doc['report']}" + proof_text(doc))
    return doc


def edits(args: argparse.Namespace) -> dict[str, Any]:
    """``netfix edits``: the edits a saved model holds; ``--revert ID`` saves a copy without one."""
    from ..methods.editing import history, memory
    from .. import evaluate as measure
    from ..io import serialize
    from ..runs import publish_recorded

    source = stem_of(args.model)
    paths = None
    if args.revert is not None:
        stem = stem_of(args.out) if args.out else source.with_name(f"{source.name}-revert-{args.revert}")
        paths = outputs(args, stem, ("model",), reads=(args.model,))
    loaded = read_model(args.model, "MODEL", args)
    listed = history.list(loaded.model)
    rows = [{"id": e["id"], "kind": e["kind"], "editor": e.get("editor", ""),
             "target": e.get("target", e.get("targets", "")), "created": e.get("created", ""),
             "undoable": "yes" if e["kind"] == "adaptor" or e.get("undoable") else "no"} for e in listed]
    size = memory.size_bytes(loaded.model)
    table = text_table(rows, ("id", "kind", "editor", "target", "created", "undoable")) if rows else \
        "(no edits: this model holds none)"
    if args.revert is None:
        return {"edits": listed, "bytes": size, "text": f"{table}\n\n{len(rows)} edit(s), {size / 1024:.1f} KiB"}
    assert paths is not None
    try:
        back = history.revert(loaded.model, args.revert)
    except NetfixError as e:
        raise ConfigError(f"--revert: {e}") from None
    ser = serialize(back, {"method": "revert", "source_model": str(args.model), "reverted": args.revert})
    recorded = card.of(loaded.model).data or {}
    acc = {}
    if recorded.get("name"):
        data = model_data(args, loaded)
        acc = {"test_acc_before": measure(loaded.model, test=data.test, device=args.device)["test_acc"],
               "test_acc_after": measure(back, test=data.test, device=args.device)["test_acc"]}
    proof = publish_recorded("edit", {"model": (paths["model"], ser.data)}, inputs={"source": loaded.ref},
                             ledger=args.ledger, method="revert", config={"edit_id": args.revert},
                             edits={"reverted": args.revert}, metrics=acc)
    text = (f"reverted edit {args.revert} of {args.model}\nsaved: {paths['model']}"
            + (f"\ntest accuracy: {acc['test_acc_before']:.2f} -> {acc['test_acc_after']:.2f}" if acc else "")
            + proof_text(proof))
    return {"reverted": args.revert, "model_path": str(paths["model"]), **acc, **proof, "text": text}
