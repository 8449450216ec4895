"""Editing single predictions (docs/methods.md §2, §10): :func:`edit` makes given targets the argmax for given
inputs — a few steps of a gradient editor, or the adaptor's key-value codebook that changes no weight — and the
edit enters the model's history, from which it can be reverted.

One module per idea, each importing only the ones listed before it:

- :mod:`.editor`: the registry of editors (:data:`editors`), the gradient editors' steps and their options;
- :mod:`.surgery`: the default part of a model to edit, and the edit block that makes a trained model editable;
- :mod:`.memory`, :mod:`.history`: the edits a model holds as data, and their ids in its card (list, revert);
- :mod:`.adaptor`: lifelong editing by a key-value codebook (registers the ``"adaptor"`` editor);
- :mod:`.apply`: :func:`edit` itself; :mod:`.session`: a model taking edits one at a time, in place;
- :mod:`.editable_training`: training models to be cheap to edit;
- :mod:`.measure`, :mod:`.alternatives`, :mod:`.metrics`, :mod:`.lifelong`: how good edits are, against the
  alternatives, one at a time and accumulated.

Adding a gradient editor is one registration in :mod:`.editor`.

Example:
    >>> out = netfix.edit(model, x[None], torch.tensor([3]), editor="rmsprop")
    >>> out.success
    [True]
"""

from .editor import (DEFAULT_LR, EDITORS, Editor, EditorConfig, edit_loss, editor_config, editor_steps, editors,
                     run_editor)
from .surgery import FINETUNE_RECIPE, add_edit_block, default_edit_params
from .memory import EditMemory, memory_of, size_bytes
from .adaptor import AdaptorConfig
from .apply import LIFELONG, REHEARSAL_SIZE, EditOutcome, edit
from .session import Session
from .editable_training import EditableTraining
from .alternatives import EditFinetuneConfig, LookupTable
from .measure import perturbations
from .metrics import EditMetrics, measure_edits
from .lifelong import lifelong_edits, sequential_edits

__all__ = ["edit", "EditOutcome", "EditorConfig", "AdaptorConfig", "Editor", "editors", "EDITORS", "LIFELONG",
           "DEFAULT_LR", "REHEARSAL_SIZE", "FINETUNE_RECIPE", "edit_loss", "editor_steps", "run_editor",
           "editor_config", "default_edit_params", "add_edit_block", "EditMemory", "memory_of", "size_bytes",
           "Session", "EditableTraining", "EditMetrics", "EditFinetuneConfig", "LookupTable", "perturbations",
           "measure_edits", "sequential_edits", "lifelong_edits"]
