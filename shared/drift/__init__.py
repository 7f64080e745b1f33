"""Drift statistics by SQL pushdown (checked against ``scipy.stats``,
https://docs.scipy.org/doc/scipy/reference/stats.html): the warehouse returns a few
aggregate rows per column, the metrics follow in pure Python (no numpy, scipy or pandas).

- ``baseline_sql`` / ``freeze`` (``shared.drift.baseline``): the frozen reference description
  (numeric bin edges from the reference deciles, top categories, reference std), stored per
  model version;
- ``drift_sql`` / ``drift_metrics`` (``shared.drift.comparison``): one statement per check and
  per column PSI, Jensen-Shannon (base 2), KS D and p, Wasserstein-1 (raw and normalised), and
  the chi-square contingency test;
- ``shared.drift.binned``: the one-scan mode, ``binned_sql`` / ``binned_metrics``: no sort, KS D
  and W1 with their error bounds, PSI, JS and chi-square as above;
- ``shared.drift.distances`` and ``shared.drift.pvalues``: the formulas, on counts and statistics.
"""

from shared.drift.baseline import (
    BASELINE_COLUMNS,
    Baseline,
    CategoricalBaseline,
    Column,
    NumericBaseline,
    baseline_sql,
    freeze,
)
from shared.drift.comparison import DRIFT_COLUMNS, ColumnDrift, drift_metrics, drift_sql

__all__ = ["BASELINE_COLUMNS", "DRIFT_COLUMNS", "Baseline", "CategoricalBaseline", "Column", "ColumnDrift",
           "NumericBaseline", "baseline_sql", "drift_metrics", "drift_sql", "freeze"]
