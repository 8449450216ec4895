"""Compatibility alias: moved to :mod:`netfix.methods.forget_relearn` (CHANGELOG.md).

Forgetting operators, the :class:`ForgetRelearn` schedule and the :func:`disproportionate_forgetting` analysis now
live in the forget-relearn method's folder; this module re-exports them under their old names.
"""

from .methods.forget_relearn import (  # noqa: F401
    KernelReinit, LaterLayerReinit, MagnitudeRewind, Operator, RandomReinit, ShrinkPerturb, TargetedReinit,
    ForgetRelearn, disproportionate_forgetting, label_margins, layers, operator, operators)

__all__ = ["Operator", "LaterLayerReinit", "KernelReinit", "RandomReinit", "MagnitudeRewind", "ShrinkPerturb",
           "TargetedReinit", "ForgetRelearn", "operator", "operators", "layers", "label_margins",
           "disproportionate_forgetting"]
