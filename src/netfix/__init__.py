"""netfix: repair trained PyTorch classifiers without retraining them from scratch.

Public API (README.md; each function's docstring): datasets, scenarios, models, :func:`train`, :func:`unlearn`,
:func:`relearn`, :func:`evaluate`, :func:`save`, :func:`load`, and the method registry :mod:`netfix.methods`.

Example:
    >>> import netfix
    >>> train, test = netfix.datasets.load("mnist5k")
    >>> s = netfix.scenarios.mislabel(train, test, source=7, target=1)
    >>> model = netfix.models.build("mlp", train.input_shape, 10, seed=0)
    >>> faulty = netfix.train(model, s.train, epochs=10).model
    >>> netfix.evaluate(faulty, scenario=s)["fault_rate"]
"""

import os as _os
import sys as _sys


def _command_line() -> bool:
    """Whether this process is the ``netfix`` command (the console script or ``python -m netfix``)."""
    argv0 = _os.path.basename(_sys.argv[0]) if _sys.argv else ""
    orig = list(getattr(_sys, "orig_argv", []))
    return argv0 in ("netfix", "netfix.exe") or any(a == "-m" and b == "netfix" for a, b in zip(orig, orig[1:]))


# The command keeps its speed on a busy machine: OpenMP threads that spin while waiting made torch 20-70x slower
# under a competing load (docs/results.md). Set before torch loads; a value the user set wins; a program that
# imports netfix as a library keeps its own setting.
if _command_line() and "torch" not in _sys.modules:
    _os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from ._version import __version__  # noqa: E402
from . import data as datasets  # noqa: E402  # netfix.datasets.load / available
from . import bench, card, errors, evaluation, methods, models, scenarios  # noqa: E402
# netfix.editing / edits / edit_metrics / forgetting / mixed: compatibility aliases of the method families' folders
from . import editing, edit_metrics, edits, forgetting, mixed  # noqa: E402
from .evaluation import Metrics, evaluate  # noqa: E402
from .methods.editing import EditableTraining, EditOutcome, edit  # noqa: E402
from .io import load, save  # noqa: E402
from .methods import relearn, unlearn  # noqa: E402
from .training import Outcome, train  # noqa: E402

__all__ = [
    "__version__", "datasets", "scenarios", "models", "methods", "errors", "evaluation", "bench", "edit_metrics", "mixed",
    "card", "edits",
    "train", "unlearn", "relearn", "evaluate", "edit", "EditableTraining", "save", "load", "Outcome", "EditOutcome",
    "Metrics",
]
