"""SQL fragments both drift statements use (Databricks SQL,
https://docs.databricks.com/aws/en/sql/language-manual/; the
local workspace runs the same text on DuckDB)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from shared.statements import literal, quote_ident

# The largest finite DOUBLE. ``abs(x) <= MAX_DOUBLE`` is false for NULL (unknown), NaN (both
# engines order NaN above every number: Databricks "NaN semantics", DuckDB "NaN values") and
# ±infinity, so one comparison keeps exactly the finite values.
MAX_DOUBLE = "1.7976931348623157E308"
REFERENCE, CURRENT = "drift_ref", "drift_cur"


def double(value: float) -> str:
    """A DOUBLE literal that reads back as exactly ``value``: the shortest repr, with an
    exponent (Databricks reads ``0.1`` as a DECIMAL, ``0.1E0`` as a DOUBLE)."""
    if not math.isfinite(value):
        raise ValueError(f"no finite literal for {value!r}")
    text = repr(float(value))
    return text if "e" in text or "E" in text else text + "E0"


def as_double(column: str) -> str:
    return f"CAST({quote_ident(column)} AS DOUBLE)"


def as_string(column: str) -> str:
    return f"CAST({quote_ident(column)} AS STRING)"


def finite(expr: str) -> str:
    return f"abs({expr}) <= {MAX_DOUBLE}"


def strings(values: Iterable[str]) -> str:
    return ", ".join(literal(v) for v in values)


def records(rows: Iterable[Mapping[str, Any] | Sequence[Any]], names: Sequence[str]) -> list[Mapping[str, Any]]:
    """Result rows as mappings: rows as ``shared.statements.rows`` gives them (lists in the
    statement's column order) or already keyed by column name."""
    out: list[Mapping[str, Any]] = []
    for row in rows:
        if isinstance(row, Mapping):
            out.append(row)
        else:
            if len(row) != len(names):
                raise ValueError(f"a drift result row has {len(row)} values, expected {len(names)} ({names})")
            out.append(dict(zip(names, row, strict=True)))
    return out


def by_column(rows: Iterable[Mapping[str, Any] | Sequence[Any]],
              names: Sequence[str]) -> dict[str, list[Mapping[str, Any]]]:
    """``records(rows, names)`` grouped by their ``column_name``."""
    out: dict[str, list[Mapping[str, Any]]] = {}
    for row in records(rows, names):
        out.setdefault(str(row["column_name"]), []).append(row)
    return out
