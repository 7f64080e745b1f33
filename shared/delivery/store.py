"""Analysis runs as their own records (Argo Rollouts' AnalysisRun,
https://argoproj.github.io/argo-rollouts/features/analysis/), one Azure Tables partition per endpoint.

Table ``analyses``, row key ``<rollout>~<stage>~<run>``: the run's phase (Running / Successful /
Failed / Inconclusive / Error), its window, per metric the counters and the last measurements
(``shared.delivery.analysis``), and when it started and finished.

Invariant: the rollout row holds the run's state and is the truth; the record is written from it
*before* the rollout's conditional write commits that state. A crash in between leaves a record
one measurement ahead, which the redelivered step overwrites with the measurement it commits, so
once a step has committed, its run's record equals the rollout's. Records go with the repair
sweep's retention, like the rollouts they belong to.
"""

from __future__ import annotations

from typing import Any

from shared.tables import ConcurrencyConflict, Page, RowRange, TableService

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


def delete_older(tables: TableService, endpoint: str, *, older_than: float, limit: int) -> int:
    """Retention: delete up to ``limit`` finished runs that ended before ``older_than``."""
    deleted = 0
    for e in tables.query(ANALYSES, endpoint):
        if deleted >= limit:
            break
        if (e.data.get("finished_at") or older_than) < older_than:
            try:
                tables.delete(ANALYSES, e)
                deleted += 1
            except ConcurrencyConflict:
                continue
    return deleted
