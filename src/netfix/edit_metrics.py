"""How good are edits? Success rate, steps, drawdown, sequential drawdown and latency (docs/methods.md §2).

Compatibility alias: the code moved to :mod:`netfix.methods.editing` (CHANGELOG.md): ``.metrics``
(:func:`measure_edits`), ``.lifelong`` (:func:`sequential_edits`, :func:`lifelong_edits`), ``.baselines``
(:class:`LookupTable`, :class:`EditFinetuneConfig`), ``.measure`` (:func:`perturbations`).

Example:
    >>> m = netfix.edit_metrics.measure_edits(model, X_edit, wrong_labels, test, editor="rmsprop")
    >>> m.success_rate, m.mean_steps, m.drawdown
    (100.0, 2.3, 0.41)
"""

from .methods.editing.alternatives import EditFinetuneConfig, LookupTable  # noqa: F401
from .methods.editing.lifelong import lifelong_edits, sequential_edits  # noqa: F401
from .methods.editing.measure import ALTERNATIVES, Perturb, perturbations  # noqa: F401
from .methods.editing.metrics import EditMetrics, measure_edits  # noqa: F401

__all__ = ["ALTERNATIVES", "EditMetrics", "LookupTable", "EditFinetuneConfig", "measure_edits", "sequential_edits",
           "lifelong_edits", "perturbations"]
