"""The analysis query of a canary or A/B step: the candidate's and the champion's figures over the
same window of the endpoint's payload table, by SQL pushdown (docs/architecture.md principle 8: the
warehouse scans the table, a few aggregate rows come back).

Three statements through the Statement Execution API (``shared.statements.run``), keyed in the
caller's cursor:

- ``arms``: per arm, the monitor's health figures of that version in [start, end)
  (``shared.monitoring.relations.health``: requests, server errors = status >= 500, p95 of
  ``execution_duration_ms``, which is model time only), the two
  arms in one UNION ALL, each tagged so that a version measured against itself still gives two rows;
- ``shift_ref``: the frozen description of the champion's predictions in the window
  (``shared.drift.baseline_sql`` / ``freeze``: its deciles are the bin edges);
- ``shift``: the candidate's predictions in the same window against it
  (``shared.drift.drift_sql`` / ``drift_metrics`` on ``__prediction``): PSI on the champion's
  decile bins and the exact two-sample KS D. It also counts each arm's predictions (records of
  answered requests with a finite numeric prediction, ``relations.payload_records``).

``arms`` and ``shift_ref`` are both submitted before either is awaited; ``shift`` needs the
champion's edges, so it follows ``shift_ref``. While a statement runs, StatementPending is raised
(the first one still running) with every id kept in ``cursor["statements"]``; a later call with
the same cursor polls them. A finished statement's rows are kept in ``cursor["results"]`` until
the figures are complete, so no finished statement is submitted again (``statements.run``
forgets the id of a statement it returned), and are removed then, so the next measurement may
use the same cursor. StatementFailed propagates: the caller records a failed measurement.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from shared import statements
from shared.drift import Column, baseline_sql, drift_metrics, drift_sql, freeze
from shared.monitoring import relations
from shared.statements import literal

PREDICTION = Column("__prediction", "numeric")
KEYS = ("arms", "shift_ref", "shift")


@dataclass(frozen=True)
class Arm:
    version: str
    requests: int
    server_errors: int  # status >= 500
    p95_ms: float | None  # percentile_cont(0.95) of execution_duration_ms; None without requests
    predictions: int  # answered records with a numeric prediction


@dataclass(frozen=True)
class Figures:
    candidate: Arm
    champion: Arm
    psi: float | None  # candidate vs champion predictions, bins from the champion's deciles
    ks: float | None  # two-sample KS D of the same predictions; both None when a side has none


def arms_sql(payload_table: str, candidate: str, champion: str, start: float, end: float) -> str:
    """One statement, one row per arm (``arm`` = 'candidate' | 'champion'): requests,
    server_errors, client_errors and p95_ms of that arm's version in [start, end)."""
    return " UNION ALL ".join(
        f"SELECT {literal(arm)} AS arm, h.* FROM ({relations.health(payload_table, version, start, end)}) AS h"
        for arm, version in (("candidate", candidate), ("champion", champion)))


def predictions(payload_table: str, version: str, start: float, end: float) -> str:
    """The predictions of ``version``'s answered records in [start, end), as a relation."""
    return relations.window(relations.payload_records(payload_table, [], PREDICTION.kind), version, start, end)


def measure(w: Any, warehouse_id: str, payload_table: str, candidate: str, champion: str, start: float, end: float,
            cursor: dict[str, Any], deadline: float) -> Figures:
    """The figures of both arms over [start, end) (module docstring). Raises StatementPending
    while a statement runs (call again with the same cursor), StatementFailed when one failed."""
    done: dict[str, Any] = cursor.setdefault("results", {})
    pending: list[statements.StatementPending] = []

    def rows(key: str, statement: str) -> list[dict[str, Any]] | None:
        if key not in done:
            try:
                result = statements.run(w, warehouse_id, statement, cursor, key, deadline)
            except statements.StatementPending as exc:
                pending.append(exc)
                return None
            names = [n for n, _ in result.columns]
            done[key] = [dict(zip(names, row, strict=True)) for row in statements.rows(w, result)]
        return done[key]

    reference = predictions(payload_table, champion, start, end)
    arms = rows("arms", arms_sql(payload_table, candidate, champion, start, end))
    profile = rows("shift_ref", baseline_sql(reference, [PREDICTION]))
    shift = None
    if profile is not None:
        frozen = freeze(profile, [PREDICTION])
        current = predictions(payload_table, candidate, start, end)
        found = rows("shift", drift_sql(reference, current, [PREDICTION], frozen))
        shift = None if found is None else drift_metrics(found, [PREDICTION], frozen)[PREDICTION.name]
    if pending:
        raise pending[0]
    assert arms is not None and shift is not None
    for key in KEYS:
        del done[key]
    if not done:
        del cursor["results"]
    by_arm = {r["arm"]: r for r in arms}

    def arm(name: str, version: str, n_predictions: int) -> Arm:
        r = by_arm[name]
        p95 = r["p95_ms"]
        # count_if over no rows: 0 on Databricks, NULL on the local warehouse (DuckDB's translation).
        return Arm(version, int(r["requests"]), int(r["server_errors"] or 0), None if p95 is None else float(p95),
                   n_predictions)

    return Figures(arm("candidate", candidate, shift.n_cur), arm("champion", champion, shift.n_ref), shift.psi,
                   shift.ks_d)
