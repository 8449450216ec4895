"""Recording a run: the files it writes, published and entered in the ledger as one step, and forgetting
certificates — the library functions behind the CLI's records, for Python users too.

:func:`record_repair` does all of it for a repair (what ``netfix unlearn`` / ``relearn`` write): the new model, its
certificate, the run's document and report, the ledger record; :func:`record_edit` for an edit (``netfix edit``).
Its parts: :mod:`.certificates`, :mod:`.publish` (files and ledger as one step), :mod:`.document` (the run's table,
report data and output paths).

:func:`publish_recorded` writes every output of a run (a model file, a certificate) to a temporary file first,
then commits a *pending* ledger record naming each output's path and sha256, then — holding the ledger's write
lock — renames them into place and commits. A kill at any point leaves the old files or the new ones, and a
ledger that verifies (:mod:`netfix.ledger`).

**A certificate** (:func:`certificate`) is one JSON document saying what a forgetting run did: the sha256 of the
original model file *as it was read* and of the new one (and of their tensor data), the sha256 and size of the
forget set, the method with its full config, the metrics beside the retrained reference's, the bound where the
method gives one, the time taken, and the netfix and torch versions. Anyone holding the files can check it with
``sha256sum``. A run whose weights are exactly the original's gets no certificate: a no-op is not a forgetting.

**A run's document** (:func:`write_run_document`) holds its table — :func:`metric_rows`, one row per model
(before, after, the reference) — and its report's data (:func:`report_panel`). A run on a saved model may also read
a held-out part of the test split (:func:`split_heldout`); a mixed-linear model keeps the user samples that remain
after the request (``netfix.methods.get("mixed-linear").retained_from_record``).

Example:
    >>> out = netfix.unlearn(netfix.load("runs/m"), s.forget, s.retain, method="ogd")
    >>> doc = record_repair(out, "runs/m", mode="unlearn", method="ogd", scenario=s, dataset="mnist5k")

    or, piece by piece:

    >>> ser = netfix.io.serialize(out.model, {"method": "ogd"})
    >>> cert = certificate(loaded.ref, ser.ref("runs/m-ogd"), s.forget_indices, "ogd", out.config, metrics)
    >>> publish_recorded("unlearn", {"model": ("runs/m-ogd.safetensors", ser.data),
    ...                              "certificate": ("runs/m-ogd.certificate.json", certificate_bytes(cert))},
    ...                  inputs={"source": loaded.ref}, method="ogd")
"""

from .certificates import (BOUND_KEYS, CERTIFICATE_FORMAT, CERTIFICATE_VERSION, certificate, certificate_bytes,
                           forgetting_bound, write_certificate)
from .document import (COLUMNS, SUFFIXES, metric_rows, output_paths, refuse_unchanged, report_panel, split_heldout,
                       write_run_document)
from .publish import ledger_location, publish_recorded, record_run
from .record import record_edit, record_repair, repair_roles

__all__ = ["record_repair", "record_edit", "repair_roles", "certificate", "certificate_bytes", "write_certificate",
           "record_run", "publish_recorded", "ledger_location", "CERTIFICATE_FORMAT", "CERTIFICATE_VERSION",
           "BOUND_KEYS", "COLUMNS", "SUFFIXES", "output_paths", "metric_rows", "report_panel", "forgetting_bound",
           "refuse_unchanged", "split_heldout", "write_run_document"]
