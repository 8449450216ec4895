"""Forget-and-relearn (Zhou et al., "Fortuitous Forgetting in Connectionist Networks", ICLR 2022; docs/methods.md §3).

Forgetting is a tool: a *forgetting operator* perturbs a trained network so that it loses undesirable information
(memorised noisy labels, atypical examples) disproportionately; *relearning* on the same data, with a restarted
learning-rate schedule, then reinforces what is consistently useful. Repeating the pair for several generations
unifies Knowledge Evolution, iterative magnitude pruning with rewinding and iterated learning.

Operators (each a small object; ``op(model)`` returns a **new** model, the caller's is untouched):

- :class:`LaterLayerReinit` (``llf``): reinitialise every layer from a named one on (BatchNorm kept).
- :class:`KernelReinit` (``ke``): Knowledge Evolution's kernel-level split — keep the first ⌈s·C_out⌉ × ⌈s·C_in⌉
  kernels of each conv/linear layer, reinitialise the rest (s = 0.8).
- :class:`RandomReinit` (``random``): weight-level Bernoulli keep mask (0.5 hidden, 0.75 output layer).
- :class:`MagnitudeRewind` (``imp``): keep the top 30 % of weights by magnitude per layer (the output layer prunes
  half as many), rewind them to their initial values, zero the rest and keep them at zero while relearning.
- :class:`ShrinkPerturb` (``shrink-perturb``): w ← s·w + σ·w_fresh (Ash & Adams, 2020; s = 0.2, σ = 0.3).
- :class:`TargetedReinit` (``targeted``): reinitialise the weights most implicated in the low-margin examples
  (netfix's design; see its docstring for why).

One idea per file: ``operators.py`` (the operators and their registry :data:`OPERATORS`), ``schedule.py``
(:class:`ForgetRelearn`), ``experiment.py`` (:func:`disproportionate_forgetting`), ``method.py`` (the registered
``forget-relearn`` method). ``netfix.forgetting`` is a compatibility alias of this package.

:class:`ForgetRelearn` is a ``schedule=`` of :func:`netfix.train`; :func:`disproportionate_forgetting` is the
paper's analysis (apply an operator to a copy at checkpoints, without relearning, and compare what clean, noisy
and low-margin examples lose). Repair of an already-trained model: ``netfix.relearn(model, data,
method="forget-relearn")``.

Example:
    >>> from netfix.methods.forget_relearn import ForgetRelearn, operator
    >>> op = operator("llf:start=body.3")
    >>> out = netfix.train(model, noisy_train, schedule=ForgetRelearn(op, generations=5, epochs_per_generation=10))
    >>> [h["train_acc"] for h in out.history if "generation" in h and "train_acc" in h]
"""

from .experiment import disproportionate_forgetting
from .method import ForgetRelearnConfig  # registers the method "forget-relearn", once
from .operators import (OPERATORS, KernelReinit, LaterLayerReinit, MagnitudeRewind, Operator, RandomReinit,
                        ShrinkPerturb, TargetedReinit, label_margins, layers, operator, operators)
from .schedule import ForgetRelearn

__all__ = ["Operator", "LaterLayerReinit", "KernelReinit", "RandomReinit", "MagnitudeRewind", "ShrinkPerturb",
           "TargetedReinit", "ForgetRelearn", "ForgetRelearnConfig", "OPERATORS", "operator", "operators", "layers",
           "label_margins", "disproportionate_forgetting"]
