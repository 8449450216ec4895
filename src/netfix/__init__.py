"""netfix: repair trained PyTorch classifiers without retraining them from scratch.

Public API (see docs/api.md in the repository): datasets, scenarios, models, :func:`train`, :func:`unlearn`,
:func:`relearn`, :func:`evaluate`, :func:`save`, :func:`load`, and the method registry :mod:`netfix.methods`.

Example:
    >>> import netfix
    >>> train, test = netfix.datasets.load("mnist5k")
    >>> s = netfix.scenarios.mislabel(train, test, source=7, target=1)
    >>> model = netfix.models.build("mlp", train.input_shape, 10, seed=0)
    >>> faulty = netfix.train(model, s.train, epochs=10).model
    >>> netfix.evaluate(faulty, scenario=s)["fault_rate"]
"""

from ._version import __version__
from . import data as datasets  # netfix.datasets.load / available
from . import bench, card, edit_metrics, edits, errors, evaluation, methods, mixed, models, scenarios
from .evaluation import Metrics, evaluate
from .editing import EditableTraining, EditOutcome, edit
from .io import load, save
from .methods import relearn, unlearn
from .training import Outcome, train

__all__ = [
    "__version__", "datasets", "scenarios", "models", "methods", "errors", "evaluation", "bench", "edit_metrics", "mixed",
    "card", "edits",
    "train", "unlearn", "relearn", "evaluate", "edit", "EditableTraining", "save", "load", "Outcome", "EditOutcome",
    "Metrics",
]
