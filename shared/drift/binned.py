"""The one-scan drift mode: numeric columns judged on fine bins by one grouped scan (a hash
aggregate, no sort), with the error bound each binned figure carries around the exact figure
(scipy's ``ks_2samp`` statistic and ``wasserstein_distance``,
https://docs.scipy.org/doc/scipy/reference/stats.html). The SQL uses only ``asinh``, ``floor``,
``least``, ``greatest``, ``CASE`` and plain aggregates (Databricks SQL language reference,
https://docs.databricks.com/aws/en/sql/language-manual/; the local workspace runs the same text on DuckDB).

Why not the exact statement (``shared.drift.comparison``): exact KS D and Wasserstein-1 need
the CDFs at every observed value, so the warehouse sorts every numeric column's values, and the
sort's time and memory grow with the rows. Binned figures need per-bin aggregates only.

Why not 1 000 reference-quantile bins looked up per row: neither Databricks SQL nor DuckDB has
a binary search over a list of edges, and a CASE tree over 1 000 edges costs about ten times an
arithmetic bucket per row (0.17 s against 0.02 s per million values on this project's machine).
So a value's fine bin is arithmetic, on a grid frozen from the version's baseline
(``shared.drift.baseline``: its min, max and deciles, stored once per version):

- ``cell``: ``CELLS`` equal cells of t = asinh((x - c)·k) over [t(min), t(max)], c = the
  reference median decile, 1/k = half the q10..q90 spread (the range or 1 when that is 0), so the
  cells are about linear in x near the centre and logarithmic in the tails (a heavy tail does
  not swallow the grid); values below the reference's min are cell -1, above its max cell
  ``CELLS``;
- ``decile``: the frozen decile bin, right-closed as in the exact statement, so the counts per
  decile bin, hence PSI and JS, are the exact mode's own.

One row per (cell, decile) group: each side's count and sum, and the group's min and max over
both sides (part ``bin``), and part ``missing`` as in the exact statement. Categorical columns
are the exact statement's category counts (chi-square unchanged), in the same statement.

The figures (``binned_metrics``), with F and G the reference's and the current's CDFs, groups
taken in value order, and for group i: a, b its min and max, p, q its reference and current
mass, d_i = F - G just after it (d before the first group is 0):

- KS D: |F - G| is d_i at the top of group i and constant between groups, and inside group i it
  lies in [d_{i-1} - q, d_{i-1} + p]. So the exact D lies in [max |d_i|, max(max |d_i|,
  max over groups of that range's far end)]: within the largest group's mass (``min(p, q)`` at
  most above max |d_i|) of the figure. The figure is the interval's midpoint, the bound its half
  width.
- W1 = ∫|F - G| dx: exact between groups (|d_i| times the gap). Inside a group,
  ∫_a^b (F - G) dx = d_{i-1}·(b - a) + (p·b - S_ref/n) - (q·b - S_cur/m) from the sums S, which is
  ∫|F - G| exactly when F - G keeps one sign in the group (its range above does not straddle 0);
  otherwise ∫|F - G| lies between |∫(F - G)| and the least of (|d_{i-1}|·(b - a) + the two
  sides' ∫ from a, |d_i|·(b - a) + the two sides' ∫ to b, (b - a)·max |range|): the bin widths'
  contribution. Plus the rounding of the warehouse's sums (at most c·ε·c·max(|a|, |b|) for c
  values, naive summation). Figure: midpoint; bound: half width. The normalised W1 divides both
  by max(std, 0.001), as the exact mode does.
- KS p: from the figure D (``shared.drift.pvalues``); PSI, JS: exact, as the exact mode.

So no exact figure is ever farther than ``ks_bound`` / ``wasserstein_bound`` from the binned
one (tests/test_drift_stats.py checks it against scipy on random data). A verdict whose
threshold lies within the bound is recomputed by the exact statement (``shared.monitoring.check``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from shared.drift.baseline import Baseline, Column, NumericBaseline
from shared.drift.comparison import MIN_STD, ColumnDrift, drift_metrics, drift_sql
from shared.drift.distances import js_distance, psi
from shared.drift.pvalues import ks_pvalue
from shared.drift.sqltext import CURRENT, REFERENCE, as_double, by_column, double, finite
from shared.statements import literal

CELLS = 1000
BINNED_COLUMNS = ("column_name", "part", "key", "ref_value", "cur_value", "cell", "decile", "ref_sum", "cur_sum", "lo",
                  "hi")
_EPS = 2.0**-52


@dataclass(frozen=True)
class Grid:
    """A numeric column's frozen cells: t = asinh((x - centre)·scale), ``per_t`` cells per unit of t."""

    lo: float
    hi: float
    centre: float
    scale: float
    t_lo: float
    per_t: float  # 0: one cell (a constant reference)
    cells: int

    def cell_sql(self, x: str) -> str:
        inner = "0" if self.per_t == 0 else (
            f"least({self.cells - 1}, greatest(0, CAST(floor((asinh(({x} - {double(self.centre)}) * "
            f"{double(self.scale)}) - {double(self.t_lo)}) * {double(self.per_t)}) AS BIGINT)))")
        return (f"CASE WHEN {x} < {double(self.lo)} THEN -1 WHEN {x} > {double(self.hi)} THEN {self.cells} "
                f"ELSE {inner} END")


def grid(b: NumericBaseline, cells: int = CELLS) -> Grid | None:
    """The column's grid from its frozen baseline (module docstring); None without a reference value."""
    if b.lo is None or b.hi is None or not b.edges:
        return None
    lo, hi, edges = b.lo, b.hi, b.edges
    centre = edges[len(edges) // 2]
    spread = (edges[-1] - edges[0]) / 2 or (hi - lo) / 2 or 1.0
    # The scale stays finite and (x - centre)·scale stays far from overflow over [lo, hi].
    scale = 1.0 / max(spread, (hi - lo) * 1e-12, 1e-300)
    t_lo, t_hi = math.asinh((lo - centre) * scale), math.asinh((hi - centre) * scale)
    per_t = cells / (t_hi - t_lo) if t_hi > t_lo else 0.0
    return Grid(lo, hi, centre, scale, t_lo, per_t, cells)


# ---------------------------------------------------------------------------------- SQL
def binned_sql(reference: str, current: str, columns: Sequence[Column], baseline: Baseline, cells: int = CELLS) -> str:
    """One statement, one grouped scan of both sides: the numeric columns' groups and the
    categorical columns' counts (module docstring). Rows are ``BINNED_COLUMNS``."""
    if not columns:
        raise ValueError("a drift check needs at least one column")
    parts = []
    categorical = []
    for c in columns:
        b = baseline.column(c)
        if isinstance(b, NumericBaseline):
            parts.append(_numeric_part(c.name, b, reference, current, cells))
        else:
            categorical.append(c)
    if categorical:
        nulls = ", ".join(f"CAST(NULL AS {t}) AS {n}" for n, t in (
            ("cell", "BIGINT"), ("decile", "BIGINT"), ("ref_sum", "DOUBLE"), ("cur_sum", "DOUBLE"), ("lo", "DOUBLE"),
            ("hi", "DOUBLE")))
        parts.append(f"SELECT column_name, part, key, ref_value, cur_value, {nulls} "
                     f"FROM ({drift_sql(reference, current, categorical, baseline)}) AS cat")
    return " UNION ALL ".join(parts)


def _numeric_part(column: str, b: NumericBaseline, reference: str, current: str, cells: int) -> str:
    g = grid(b, cells)
    whens = " ".join(f"WHEN x <= {double(e)} THEN {i}" for i, e in enumerate(b.edges))
    decile = f"CASE {whens} ELSE {len(b.edges)} END" if whens else "0"
    cell = g.cell_sql("x") if g else "0"
    sides = (f"SELECT {as_double(column)} AS x, 1 AS r FROM {reference} AS {REFERENCE} "
             f"UNION ALL SELECT {as_double(column)} AS x, 0 AS r FROM {current} AS {CURRENT}")
    return (
        f"SELECT {literal(column)} AS column_name, part, CAST(NULL AS STRING) AS key, "
        f"SUM(r) AS ref_value, SUM(1 - r) AS cur_value, cell, decile, "
        f"SUM(x * r) AS ref_sum, SUM(x * (1 - r)) AS cur_sum, MIN(x) AS lo, MAX(x) AS hi "
        f"FROM (SELECT CASE WHEN ok = 1 THEN 'bin' ELSE 'missing' END AS part, "
        f"CASE WHEN ok = 1 THEN {cell} END AS cell, CASE WHEN ok = 1 THEN {decile} END AS decile, "
        f"CASE WHEN ok = 1 THEN x END AS x, r FROM ("
        f"SELECT x, r, CASE WHEN {finite('x')} THEN 1 ELSE 0 END AS ok FROM ({sides}) AS u) AS o) AS v "
        f"GROUP BY part, cell, decile")


# ---------------------------------------------------------------------------------- metrics
@dataclass(frozen=True)
class BinnedDrift(ColumnDrift):
    """A column's binned figures: each exact figure lies within its ``*_bound`` of this one."""

    ks_bound: float | None = None
    wasserstein_bound: float | None = None
    wasserstein_norm_bound: float | None = None


@dataclass
class _Group:
    decile: int
    cell: int
    r: int
    c: int
    r_sum: float
    c_sum: float
    lo: float
    hi: float

    def absorb(self, o: _Group) -> None:
        self.r, self.c, self.r_sum, self.c_sum = self.r + o.r, self.c + o.c, self.r_sum + o.r_sum, self.c_sum + o.c_sum
        self.lo, self.hi = min(self.lo, o.lo), max(self.hi, o.hi)


def binned_metrics(rows: Iterable[Mapping[str, Any] | Sequence[Any]], columns: Sequence[Column],
                   baseline: Baseline) -> dict[str, ColumnDrift]:
    """Figures per column from ``binned_sql``'s rows: ``BinnedDrift`` for numeric columns, the
    exact mode's ``ColumnDrift`` for categorical ones (module docstring)."""
    found = by_column(rows, BINNED_COLUMNS)
    out: dict[str, ColumnDrift] = {}
    categorical = [c for c in columns if not isinstance(baseline.column(c), NumericBaseline)]
    if categorical:
        out.update(drift_metrics([r for c in categorical for r in found.get(c.name, [])], categorical, baseline))
    for c in columns:
        b = baseline.column(c)
        if isinstance(b, NumericBaseline):
            out[c.name] = _numeric(c, b, found.get(c.name, []))
    return {c.name: out[c.name] for c in columns}


def _numeric(c: Column, b: NumericBaseline, rows: list[Mapping[str, Any]]) -> ColumnDrift:
    deciles_ref, deciles_cur = [0] * b.bins, [0] * b.bins
    nulls = [0, 0]
    groups: list[_Group] = []
    for row in rows:
        r, k = int(row["ref_value"] or 0), int(row["cur_value"] or 0)
        if row["part"] == "missing":
            nulls[0] += r
            nulls[1] += k
            continue
        if row["part"] != "bin":
            raise ValueError(f"column {c.name!r}: unknown drift row part {row['part']!r}")
        d = int(row["decile"])
        if not 0 <= d < b.bins:
            raise ValueError(f"column {c.name!r}: bin {d} is outside the baseline's {b.bins} bins")
        deciles_ref[d] += r
        deciles_cur[d] += k
        groups.append(_Group(d, int(row["cell"]), r, k, float(row["ref_sum"] or 0.0), float(row["cur_sum"] or 0.0),
                             float(row["lo"]), float(row["hi"])))
    n, m = sum(deciles_ref), sum(deciles_cur)
    out = BinnedDrift(c.kind, n, m, nulls[0], nulls[1])
    if n == 0 or m == 0:
        return out
    (d_lo, d_hi), (w_lo, w_hi) = _bounds(_in_order(groups), n, m)
    d, w1 = (d_lo + d_hi) / 2, (w_lo + w_hi) / 2
    w_bound = (w_hi - w_lo) / 2
    floor = None if b.std is None else max(b.std, MIN_STD)
    return replace(out, psi=psi(deciles_ref, deciles_cur), js=js_distance(deciles_ref, deciles_cur), ks_d=d,
                   ks_p=ks_pvalue(d, n, m), wasserstein=w1, wasserstein_norm=None if floor is None else w1 / floor,
                   ks_bound=(d_hi - d_lo) / 2, wasserstein_bound=w_bound,
                   wasserstein_norm_bound=None if floor is None else w_bound / floor)


def _in_order(groups: list[_Group]) -> list[_Group]:
    """The groups in value order, overlapping ones merged (a cell is monotone in x up to the
    rounding of asinh; merging two groups only widens the bounds, never breaks them)."""
    merged: list[_Group] = []
    for g in sorted(groups, key=lambda g: (g.decile, g.cell, g.lo)):
        if merged and g.lo <= merged[-1].hi:
            merged[-1].absorb(g)
        else:
            merged.append(g)
    return merged


def _bounds(groups: list[_Group], n: int, m: int) -> tuple[tuple[float, float], tuple[float, float]]:
    """([lower, upper] of the exact KS D, [lower, upper] of the exact W1) (module docstring)."""
    nm = n * m
    cum_r = cum_c = 0
    d_lo = d_hi = 0.0
    w_lo: list[float] = []
    w_hi: list[float] = []
    slack: list[float] = []
    prev_hi: float | None = None
    for g in groups:
        before = (cum_r * m - cum_c * n) / nm  # F - G below the group (integers: no rounding until here)
        if prev_hi is not None:
            w_lo.append(abs(before) * (g.lo - prev_hi))
            w_hi.append(w_lo[-1])
        cum_r, cum_c = cum_r + g.r, cum_c + g.c
        after = (cum_r * m - cum_c * n) / nm
        p, q = g.r / n, g.c / m
        d_lo = max(d_lo, abs(after))
        d_hi = max(d_hi, abs(after))
        width = g.hi - g.lo
        if width > 0:
            low, high = before - q, before + p  # F - G inside the group
            d_hi = max(d_hi, high, -low)
            from_lo_r, from_lo_c = g.r_sum / n - p * g.lo, g.c_sum / m - q * g.lo  # Σ(v - a) / size
            to_hi_r, to_hi_c = p * g.hi - g.r_sum / n, q * g.hi - g.c_sum / m  # Σ(b - v) / size
            signed = before * width + to_hi_r - to_hi_c
            if low >= 0 or high <= 0:
                w_lo.append(abs(signed))
                w_hi.append(abs(signed))
            else:
                w_lo.append(abs(signed))
                w_hi.append(min(abs(before) * width + to_hi_r + to_hi_c, abs(after) * width + from_lo_r + from_lo_c,
                                width * max(high, -low)))
            magnitude = max(abs(g.lo), abs(g.hi))
            slack.append(8 * _EPS * (magnitude * ((g.r + 1) * p + (g.c + 1) * q) + abs(signed) + width))
        prev_hi = g.hi
    err = math.fsum(slack)
    return (d_lo, d_hi), (max(0.0, math.fsum(w_lo) - err), math.fsum(w_hi) + err)
