"""Distances and the contingency test on two count vectors over the same bins (checked against
``scipy``, https://docs.scipy.org/doc/scipy/reference/). Pure Python: the counts are the few aggregates the SQL returns.

Both vectors are counts per bin (frozen reference bins of a numeric column, or the frozen
categories plus "other" of a categorical one), so each metric is exact for those bins; how far
the binned value is from a value on other bins is a property of the binning, not an error of
the computation.

- PSI, natural log: PSI = Σ (c_i - r_i)·ln(c_i / r_i) over the proportions r (reference) and c
  (current). Zero rule (one rule, ``PSI_EPSILON``): bins empty on both sides are left out; then
  a proportion that is 0 on one side becomes ε = 1e-4 and that side is renormalised to sum 1.
  So a bin empty in the current but not in the reference, or the reverse, costs a finite,
  symmetric amount (PSI is symmetric). Evidently's rule differs (1e-4, or min/1e6, without
  renormalising; ``stattests/utils.py`` in https://github.com/evidentlyai/evidently), so values differ
  from Evidently's when a bin is empty.
- JS, base 2: the Jensen-Shannon *distance* sqrt(½ KL(p‖M) + ½ KL(q‖M)), M = (p + q)/2, in
  [0, 1], as ``scipy.spatial.distance.jensenshannon(p, q, base=2)``; 0·log 0 = 0, no zero rule
  needed. Evidently's "JS" uses natural logs: its value is this one x sqrt(ln 2).
- chi-square: ``scipy.stats.chi2_contingency`` of the 2xk table [reference counts; current
  counts] over the bins that are non-empty on at least one side (an all-zero column has zero
  expected counts, which scipy refuses); Yates' continuity correction when dof = 1 (each
  |O - E| shrunk by min(0.5, |O - E|), scipy's default ``correction=True``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from shared.drift.pvalues import chi2_sf

PSI_EPSILON = 1e-4


def _proportions(counts: Sequence[float]) -> list[float]:
    total = math.fsum(counts)
    if total <= 0:
        raise ValueError("a distribution needs at least one count")
    return [c / total for c in counts]


def _nonempty(ref: Sequence[float], cur: Sequence[float]) -> list[tuple[float, float]]:
    """The (reference, current) count pairs of the bins non-empty on at least one side."""
    return [(r, c) for r, c in zip(ref, cur, strict=True) if r > 0 or c > 0]


def psi(ref: Sequence[float], cur: Sequence[float]) -> float:
    """Population stability index of two count vectors (zero rule in the module docstring)."""
    kept = _nonempty(ref, cur)
    r = _proportions([r for r, _ in kept])
    c = _proportions([c for _, c in kept])
    r = _proportions([x if x > 0 else PSI_EPSILON for x in r])
    c = _proportions([x if x > 0 else PSI_EPSILON for x in c])
    return math.fsum((ci - ri) * math.log(ci / ri) for ri, ci in zip(r, c, strict=True))


def js_distance(ref: Sequence[float], cur: Sequence[float]) -> float:
    """Jensen-Shannon distance, base 2, of two count vectors."""
    p, q = _proportions(ref), _proportions(cur)
    parts = []
    for pi, qi in zip(p, q, strict=True):
        mi = (pi + qi) / 2.0
        if pi > 0:
            parts.append(pi * math.log(pi / mi))
        if qi > 0:
            parts.append(qi * math.log(qi / mi))
    total = math.fsum(parts) / 2.0 / math.log(2.0)
    return math.sqrt(max(0.0, total))


def chi2_contingency(ref: Sequence[float], cur: Sequence[float]) -> tuple[float, float, int]:
    """(statistic, p-value, dof) of the 2xk contingency test of two count vectors."""
    kept = _nonempty(ref, cur)
    n_ref, n_cur = math.fsum(r for r, _ in kept), math.fsum(c for _, c in kept)
    if n_ref <= 0 or n_cur <= 0:
        raise ValueError("the contingency test needs counts on both sides")
    dof = len(kept) - 1
    if dof == 0:
        return 0.0, 1.0, 0  # one category on both sides: nothing differs (scipy: 0.0, 1.0)
    total = n_ref + n_cur
    terms = []
    for r, c in kept:
        for observed, side in ((r, n_ref), (c, n_cur)):
            expected = side * (r + c) / total
            diff = abs(observed - expected)
            if dof == 1:
                diff -= min(0.5, diff)
            terms.append(diff * diff / expected)
    stat = math.fsum(terms)
    return stat, chi2_sf(stat, dof), dof
