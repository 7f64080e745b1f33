"""Analysis runs as their own records (Argo Rollouts' AnalysisRun,
https://argoproj.github.io/argo-rollouts/features/analysis/), one Azure Tables partition per endpoint.

Table ``analyses``, row key ``<rollout>~<stage>~<run>``: the run's phase (Running / Successful /
Failed / Inconclusive / Error), its window, per metric the counters and the last measurements
(``shared.delivery.analysis``), and when it started and finished.

Invariant: the rollout row holds the run's state and is the truth; the record is written from it
*before* the rollout's conditional write commits that state. A crash in between leaves a record
one measurement ahead, which the redelivered step overwrites with the measurement it commits, so
once a step has committed, its run's record equals the rollout's. Records go with the rollout
they belong to: retention deletes a rollout's runs (the row-key range ``<rollout>~``) before the
rollout itself (shared.rollouts.forget), so a crash in between leaves the rollout, found again
by the next sweep, never runs without their rollout.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

from shared.tables import MAX_TRANSACTION_OPS, ConcurrencyConflict, Op, Page, RowRange, TableService

ANALYSES = "analyses"


def key(rollout: str, stage: int, run: int) -> str:
    return f"{rollout}~{stage:02d}~{run:02d}"


def put(tables: TableService, endpoint: str, record: dict[str, Any]) -> None:
    tables.upsert(ANALYSES, endpoint, record["id"], record)


def get(tables: TableService, endpoint: str, analysis: str) -> dict[str, Any] | None:
    entity = tables.get(ANALYSES, endpoint, analysis)
    return entity.data if entity else None


def for_rollout(tables: TableService, endpoint: str, rollout: str) -> list[dict[str, Any]]:
    """The rollout's runs in order (the row keys sort by stage, then run): the range of row keys
    that start with ``<rollout>~``, so the endpoint's other rollouts' runs are never read."""
    return [e.data for e in tables.query(ANALYSES, endpoint, rows=RowRange.prefix(rollout + "~"))]


def page(tables: TableService, endpoint: str | None, *, limit: int, continuation: str | None) -> Page:
    return tables.query_page(ANALYSES, endpoint, limit=limit, continuation=continuation)


def delete_for_rollout(tables: TableService, endpoint: str, rollout: str) -> int:
    """Retention: delete the rollout's runs, reading their row-key range only; returns how many."""
    keys = [e.row_key for e in tables.query(ANALYSES, endpoint, rows=RowRange.prefix(rollout + "~"))]
    _delete(tables, endpoint, keys)
    return len(keys)


def _delete(tables: TableService, endpoint: str, keys: list[str]) -> None:
    """Delete these runs, a transaction per 100; one already gone (another sweep) is passed over."""
    for i in range(0, len(keys), MAX_TRANSACTION_OPS):
        batch = keys[i:i + MAX_TRANSACTION_OPS]
        try:
            tables.transact(ANALYSES, endpoint, [Op("delete", k) for k in batch])
        except ConcurrencyConflict:
            for k in batch:
                with contextlib.suppress(ConcurrencyConflict):
                    tables.transact(ANALYSES, endpoint, [Op("delete", k)])


def orphans_page(tables: TableService, endpoint: str, continuation: str | None,
                 exists: Callable[[str], bool]) -> str | None:
    """One page of the migration from the previous retention, which deleted runs and rollouts
    apart and so may have left runs whose rollout is gone: delete those on the page at
    ``continuation``; returns where the next page starts, None after the last."""
    got = tables.query_page(ANALYSES, endpoint, continuation=continuation)
    rollouts = {e.row_key.split("~", 1)[0] for e in got.entities}
    gone = {r for r in rollouts if not exists(r)}
    _delete(tables, endpoint, [e.row_key for e in got.entities if e.row_key.split("~", 1)[0] in gone])
    return got.continuation
