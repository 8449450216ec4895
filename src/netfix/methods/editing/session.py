"""An editing session: one copy of a model that takes edits one at a time, in place (:class:`Session`;
docs/methods.md §10).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from ..._runtime import check_model, copy_model, eval_mode, resolve_device
from ...validation import check_scalar, check_seed
from .adaptor import AdaptorConfig, adaptor_layer, rehearsal_keys
from .apply import EditOutcome, apply_edit, editor_spec, prepare, rehearsal_batch
from .history import revert

__all__ = ["SESSION_REHEARSAL", "Session"]

SESSION_REHEARSAL = 1024  # retained inputs a session keeps (their adaptor keys are computed once)


class Session:
    """One copy of a model that takes edits one at a time, in place — for a service that corrects a model often.

    :func:`netfix.edit` copies the model at every call (the caller's model is never changed) and samples the
    retained data again. A session copies the model once (``session.model``; the caller's is untouched), samples
    up to ``rehearsal_size`` retained inputs once and, for the adaptor, computes their keys once (again after a
    weight edit, which may move them). Each :meth:`edit` returns an :class:`~.apply.EditOutcome` whose ``model`` is
    ``session.model``; every edit is in its history (:func:`netfix.edits.list`), and :meth:`revert` removes one.

    Example:
        >>> s = netfix.edits.Session(model, rehearsal=train)          # editor="adaptor"
        >>> for x, t in corrections:
        ...     s.edit(x[None], torch.tensor([t]))
        >>> netfix.save(s.model, "runs/model-corrected")
    """

    def __init__(self, model: nn.Module, editor: str = "adaptor", *, rehearsal: Any = None,
                 rehearsal_size: int = SESSION_REHEARSAL, max_steps: int = 10,
                 params: "Sequence[str] | None" = None, device: "torch.device | str | None" = None, seed: int = 0,
                 **options: Any) -> None:
        self.spec = editor_spec(model, editor, max_steps, params, options)
        self.seed = check_seed(seed)
        self.rehearsal_size = check_scalar(rehearsal_size, "rehearsal_size", int, low=1, high=1 << 24,
                                           default=SESSION_REHEARSAL)
        check_model(model)
        self.device = resolve_device(device)
        self.model = copy_model(model, self.device)
        self.model.eval()
        self._rehearsal = rehearsal
        self._control: Any = None
        self._keys: Any = None
        self._views: dict[Any, Any] = {}
        self.edits = 0

    def edit(self, inputs: Any, targets: Any) -> EditOutcome:
        """Apply one edit (one call of :func:`netfix.edit`'s inputs and targets) to ``self.model``."""
        job = prepare(self.model, self.model, inputs, targets, self._views)
        if self._control is None and self._rehearsal is not None:
            self._control = rehearsal_batch(self._rehearsal, job, self.rehearsal_size, self.seed, self.device)
        adaptor = isinstance(self.spec, AdaptorConfig)
        if adaptor and self._keys is None and self._control is not None:
            with eval_mode(self.model):
                layer = adaptor_layer(self.model, self.spec, job.num_classes)
                self._keys = rehearsal_keys(self.model, job.view, layer, self._control)
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.edits)
        out = apply_edit(self.model, job, self.spec, self._control, generator, self.device, self.seed,
                         rehearsal_keys=self._keys if adaptor else None)
        if not adaptor and out.config.get("edit_ids"):
            self._keys = None  # a weight edit may move the retained inputs' keys
        self.edits += 1
        return out

    def revert(self, edit_id: int) -> None:
        """Remove edit ``edit_id`` from ``self.model`` (see :func:`netfix.edits.revert`)."""
        self.model = revert(self.model, edit_id)
        self._keys = None
        self._views = {}
