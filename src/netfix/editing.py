"""Compatibility alias: moved to :mod:`netfix.methods.editing` (CHANGELOG.md) — the editors and their options
(``.editor``), :func:`netfix.edit` (``.apply``), the edit block (``.surgery``), Editable Training
(``.editable_training``); :class:`FrozenSplit` moved to :mod:`netfix.models.split`.
"""

from .methods.editing.apply import (LIFELONG, REHEARSAL_SIZE, EditJob, EditOutcome, apply_edit,  # noqa: F401
                                    edit, editor_spec, prepare, rehearsal_batch)
from .methods.editing.editable_training import EditableTraining  # noqa: F401
from .methods.editing.editor import (AUTO_GROWTH, AUTO_SCALE, AUTO_TRIES, DEFAULT_LR, EDITORS,  # noqa: F401
                                     MAX_EDIT_STEPS, EditorConfig, edit_loss, editor_config, editor_steps,
                                     run_editor)
from .methods.editing.surgery import FINETUNE_RECIPE, add_edit_block, default_edit_params  # noqa: F401
from .models.split import FrozenSplit  # noqa: F401

__all__ = ["EDITORS", "LIFELONG", "FINETUNE_RECIPE", "EditorConfig", "editor_config", "FrozenSplit", "EditOutcome",
           "EditableTraining", "edit", "edit_loss", "default_edit_params", "add_edit_block", "editor_steps",
           "run_editor"]
