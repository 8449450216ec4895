"""Edits that accumulate — the adaptor, the edit history a model carries, editing sessions (docs/methods.md §10).

Compatibility alias: the code moved to :mod:`netfix.methods.editing` (CHANGELOG.md): ``.adaptor``, ``.memory``,
``.history``, ``.session``. ``netfix.edits.list``, ``revert``, ``Session``, ``size_bytes`` stay the public API.

Example:
    >>> out = netfix.edit(model, x[None], torch.tensor([3]), editor="adaptor", rehearsal=train)
    >>> [e["id"] for e in netfix.edits.list(out.model)]
    [1]
    >>> back = netfix.edits.revert(out.model, 1)      # predictions exactly as before the edit
"""

from .methods.editing.adaptor import (AdaptorConfig, adapt, adaptor_layer, default_layer,  # noqa: F401
                                      rehearsal_keys)
from .methods.editing.history import inputs_digest, list, record_weight_edit, revert  # noqa: F401, A004
from .methods.editing.memory import MEMORY, EditMemory, expected_state, memory_of, restore, size_bytes  # noqa: F401
from .methods.editing.session import SESSION_REHEARSAL, Session  # noqa: F401

__all__ = ["AdaptorConfig", "EditMemory", "list", "revert", "memory_of", "size_bytes", "MEMORY", "Session"]
