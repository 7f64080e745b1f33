"""Freezing a drift baseline from the reference relation (deciles as
bin edges, with open ends as NannyML's "leftover" bin, https://github.com/NannyML/nannyml): one statement
of aggregates, and the small frozen description the app stores with the
model version.

``baseline_sql(reference, columns)`` is one Databricks SQL statement, a UNION ALL of one part per
column, each reading its column from ``<reference> AS drift_ref`` (as ``drift_sql`` does, see
``shared.drift.comparison``). Its rows are ``BASELINE_COLUMNS``:

- numeric column, one row, part ``numeric``: ``n`` finite values (NULL, NaN and ±infinity are
  ``missing``, left out of every distribution), ``std`` = stddev_pop, ``lo``/``hi`` = min/max,
  and the reference deciles ``q10``…``q90`` by ``percentile_cont(q) WITHIN GROUP (ORDER BY x)``
  (exact, linear interpolation, as ``numpy.quantile``'s default);
- categorical column (values compared as STRING): part ``category`` with the count ``n`` of each
  of the ``TOP_CATEGORIES`` most frequent values (ties by value), part ``other`` with the rest
  pooled, part ``missing`` with the NULLs.

``freeze(rows, columns)`` turns them into a ``Baseline``:

- numeric: ``edges`` = the deciles, deduplicated, sorted. The bins are right-closed with open
  ends: (-∞, e_0], (e_0, e_1], …, (e_{k-1}, +∞), k + 1 bins (numpy: bin index =
  ``searchsorted(edges, x, side="left")``; DuckDB's ``histogram(x, boundaries)`` has the same
  (a, b] sides). Values beyond the reference's range fall into the open end bins, NannyML's
  "leftover" idea without an empty reference bin. A constant reference gives one edge, two bins.
- categorical: ``categories`` = the most frequent values, at most ``TOP_CATEGORIES`` and at most
  ``CATEGORY_BYTES`` of JSON over all categorical columns together (split evenly), so the stored
  baseline stays small: with 9 edges per numeric column (under 300 bytes each) a model with a
  hundred columns stays well under 60 KiB. Everything else is "other" in the comparison.

``Baseline.to_dict()`` is JSON-safe (finite floats, ints, strings, None); ``from_dict`` reads it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from shared.drift.sqltext import REFERENCE, as_double, as_string, by_column, finite
from shared.statements import literal

TOP_CATEGORIES = 50
CATEGORY_BYTES = 32 * 1024
QUANTILES = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
_Q = tuple(f"q{round(q * 100)}" for q in QUANTILES)
BASELINE_COLUMNS = ("column_name", "part", "key", "n", "missing", "std", "lo", "hi", *_Q)
FORMAT = 1


@dataclass(frozen=True)
class Column:
    """A watched column: ``numeric`` (compared as DOUBLE) or ``categorical`` (as STRING)."""

    name: str
    kind: Literal["numeric", "categorical"]

    def __post_init__(self) -> None:
        if self.kind not in ("numeric", "categorical"):
            raise ValueError(f"column {self.name!r}: kind must be numeric or categorical, not {self.kind!r}")


@dataclass(frozen=True)
class NumericBaseline:
    edges: tuple[float, ...]  # inner edges; bins (-∞, e0], (e0, e1], …, (e_last, +∞)
    std: float | None  # stddev_pop of the reference's finite values (None: no finite value)
    n: int
    missing: int
    lo: float | None = None
    hi: float | None = None
    kind: Literal["numeric"] = "numeric"

    @property
    def bins(self) -> int:
        return len(self.edges) + 1


@dataclass(frozen=True)
class CategoricalBaseline:
    categories: tuple[str, ...]  # frozen, most frequent first; all else is "other"
    n: int
    missing: int
    other: int = 0  # reference values outside ``categories``
    kind: Literal["categorical"] = "categorical"

    @property
    def bins(self) -> int:
        return len(self.categories) + 1  # the categories, then "other"


@dataclass(frozen=True)
class Baseline:
    columns: dict[str, NumericBaseline | CategoricalBaseline] = field(default_factory=dict)

    def column(self, column: Column) -> NumericBaseline | CategoricalBaseline:
        found = self.columns.get(column.name)
        if found is None or found.kind != column.kind:
            raise ValueError(f"the baseline has no {column.kind} column {column.name!r}")
        return found

    def to_dict(self) -> dict[str, Any]:
        cols: dict[str, Any] = {}
        for col_name, b in self.columns.items():
            if isinstance(b, NumericBaseline):
                cols[col_name] = {"kind": b.kind, "edges": list(b.edges), "std": b.std, "n": b.n,
                                  "missing": b.missing, "min": b.lo, "max": b.hi}
            else:
                cols[col_name] = {"kind": b.kind, "categories": list(b.categories), "n": b.n,
                                  "missing": b.missing, "other": b.other}
        return {"format": FORMAT, "columns": cols}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Baseline:
        if data.get("format") != FORMAT:
            raise ValueError(f"unknown drift baseline format {data.get('format')!r}")
        cols: dict[str, NumericBaseline | CategoricalBaseline] = {}
        for col_name, d in data["columns"].items():
            if d["kind"] == "numeric":
                cols[col_name] = NumericBaseline(tuple(float(e) for e in d["edges"]), d.get("std"), int(d["n"]),
                                                 int(d["missing"]), d.get("min"), d.get("max"))
            else:
                cols[col_name] = CategoricalBaseline(tuple(d["categories"]), int(d["n"]), int(d["missing"]),
                                                     int(d.get("other", 0)))
        return cls(cols)


# ---------------------------------------------------------------------------------- SQL
def baseline_sql(reference: str, columns: Sequence[Column], top: int = TOP_CATEGORIES) -> str:
    """One statement of the reference's aggregates per column (module docstring)."""
    if not columns:
        raise ValueError("a baseline needs at least one column")
    parts = [_numeric_profile(c.name, reference) if c.kind == "numeric" else _category_profile(c.name, reference, top)
             for c in columns]
    return " UNION ALL ".join(parts)


def _numeric_profile(column: str, reference: str) -> str:
    x = as_double(column)
    quantiles = ", ".join(f"percentile_cont({q}) WITHIN GROUP (ORDER BY y) AS {a}" for q, a in zip(QUANTILES, _Q,
                                                                                                   strict=True))
    return (f"SELECT {literal(column)} AS column_name, 'numeric' AS part, CAST(NULL AS STRING) AS key, "
            f"count(y) AS n, count(*) - count(y) AS missing, stddev_pop(y) AS std, min(y) AS lo, max(y) AS hi, "
            f"{quantiles} "
            f"FROM (SELECT CASE WHEN {finite(x)} THEN {x} END AS y FROM {reference} AS {REFERENCE}) AS v")


def _category_profile(column: str, reference: str, top: int) -> str:
    nulls = ", ".join(f"CAST(NULL AS DOUBLE) AS {a}" for a in ("std", "lo", "hi", *_Q))
    top = int(top)
    values = f"SELECT {as_string(column)} AS v FROM {reference} AS {REFERENCE}"
    return (f"SELECT {literal(column)} AS column_name, part, key, SUM(cnt) AS n, CAST(NULL AS BIGINT) AS missing, "
            f"{nulls} FROM ("
            f"SELECT CASE WHEN v IS NULL THEN 'missing' WHEN rk <= {top} THEN 'category' ELSE 'other' END AS part, "
            f"CASE WHEN v IS NOT NULL AND rk <= {top} THEN v END AS key, cnt FROM ("
            f"SELECT v, cnt, ROW_NUMBER() OVER (ORDER BY CASE WHEN v IS NULL THEN 1 ELSE 0 END, cnt DESC, v) AS rk "
            f"FROM (SELECT v, count(*) AS cnt FROM ({values}) AS s "
            f"GROUP BY v) AS g) AS ranked) AS k GROUP BY part, key")


# ---------------------------------------------------------------------------------- freezing
def freeze(rows: Iterable[Mapping[str, Any] | Sequence[Any]], columns: Sequence[Column],
           category_bytes: int = CATEGORY_BYTES) -> Baseline:
    """The frozen baseline from ``baseline_sql``'s rows (module docstring)."""
    found_rows = by_column(rows, BASELINE_COLUMNS)
    n_categorical = sum(1 for c in columns if c.kind == "categorical")
    budget = category_bytes // max(1, n_categorical)
    out: dict[str, NumericBaseline | CategoricalBaseline] = {}
    for c in columns:
        found = found_rows.get(c.name, [])
        out[c.name] = _numeric(found) if c.kind == "numeric" else _categorical(found, budget)
    return Baseline(out)


def _float(value: Any) -> float | None:
    if value is None:
        return None
    v = float(value)
    return v if math.isfinite(v) else None


def _numeric(rows: list[Mapping[str, Any]]) -> NumericBaseline:
    if not rows:
        return NumericBaseline((), None, 0, 0)
    row = rows[0]
    quantiles = (_float(row[a]) for a in _Q)
    edges = tuple(sorted({q for q in quantiles if q is not None}))
    n = int(row["n"] or 0)
    return NumericBaseline(edges, _float(row["std"]) if n else None, n, int(row["missing"] or 0),
                           _float(row["lo"]), _float(row["hi"]))


def _categorical(rows: list[Mapping[str, Any]], budget: int) -> CategoricalBaseline:
    counts = {"missing": 0, "other": 0}
    ranked: list[tuple[int, str]] = []
    for row in rows:
        part, n = str(row["part"]), int(row["n"] or 0)
        if part == "category":
            ranked.append((n, str(row["key"])))
        else:
            counts[part] = counts.get(part, 0) + n
    ranked.sort(key=lambda t: (-t[0], t[1]))
    kept: list[str] = []
    used = 2  # the JSON list's brackets
    for n, value in ranked:
        size = len(json.dumps(value)) + 2  # the value and its separator
        if used + size > budget:
            counts["other"] += n
            continue
        kept.append(value)
        used += size
    total = sum(n for n, _ in ranked) + counts["other"]
    return CategoricalBaseline(tuple(kept), total, counts["missing"], counts["other"])
