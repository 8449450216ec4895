"""Self-contained HTML reports: look at a repair instead of reading logs (``netfix report RUN_DIR``).

A report is one HTML file with no network access needed: plots are embedded as base64 PNG (matplotlib, Agg
backend), styles are inline. It opens with the headline — the before / after / reference table of the run — and
then the plots the run's data supports, each the content column's full width:

- for class forgetting, first of all the headline: the forgotten class's test accuracy before → after (and the
  reference's), e.g. ``forgotten class 0: 97.1 % → 0.0 % (reference 0.0 %)``;
- accuracy per split (forget / retain / test / fault test) for every model of the run, each bar's value written
  (a bar at 0, e.g. the reference's forget accuracy, still shows);
- per-class test accuracy for every model, and its change from the first model (the one before the repair); for
  class forgetting the forgotten class is included (from its own test samples, which the scenario's test split
  leaves out) and shaded;
- the first model's test confusion matrix and each later model's change from it (the reference's too), the
  forgotten class's row outlined;
- the membership-inference picture: histograms of true-class confidence on the forget set vs the test set, per
  model (a forgotten set should look like unseen data);
- for edits: success, steps and drawdown; for benches: their table and, where rows have ``gap`` and ``rte``, the
  trade-off plot (gap to retrain vs % of retrain's time);
- for unlearning benches, per request (random samples, a class, a fault): which method, at what cost — the Pareto
  front of (gap, rte) over methods (:mod:`netfix.bench.pareto`; the document's ``fronts``, or computed from its
  rows), as a scatter with the front drawn and a table.

The numbers behind the plots come from :func:`panel`, which a command calls while it still holds the models and
stores under ``"report"`` in its run document (JSON); :func:`render` only reads documents, so a report can be
re-rendered later from the run folder alone.

The package: :mod:`.measurements` (the numbers, measured on the models), :mod:`.figures` (the matplotlib plots) and
:mod:`.page` (the HTML: tables, headline, sections; reading run documents and writing the file).
"""

from .measurements import panel
from .page import collect, render, write

__all__ = ["panel", "render", "write", "collect"]
