"""Compatibility alias: moved to :mod:`netfix.methods.mixed_linear` (the model, its training, the method) and
:mod:`netfix.solvers` (conjugate gradient, Lanczos) (CHANGELOG.md). This module re-exports them under their old
names.
"""

from .methods.mixed_linear import (  # noqa: F401
    FitOutcome, ForgetOutcome, MixedLinear, UserTraining, core_user_split)
from .solvers import conjugate_gradient, lanczos  # noqa: F401

__all__ = ["MixedLinear", "UserTraining", "FitOutcome", "ForgetOutcome", "conjugate_gradient", "lanczos",
           "core_user_split"]
