"""What the monitor keeps, per endpoint (one Azure Tables partition each).

Table ``monitor``:

- ``baseline~<version>``: the version's frozen baseline (bin edges, categories, reference std;
  ``shared.drift``) and where it came from. Written once per version, by insert: two checks racing
  freeze one baseline, and a later one never moves it.
- ``window~<version>~<start>``: one window's figures and verdict. Written when its figures are
  complete; a window whose labels were not due yet is written again once they are.
- ``~end:<end, s>:<window key>``: the index of the windows by end, written in the transaction
  that writes the window (the same partition; a window's end never changes), so retention reads
  the windows due from the index's oldest end and nothing else. ``~`` sorts after every other key.
- ``state``: the last action (when and which decision), for the cooldown. Changed with its ETag.
- ``tick``: the keys of the last checks the monitor timer sent, so that it sends none while they run.

Table ``decisions``: every decision with its figures, listed at ``GET /api/monitor`` in
``listing_order``: newest ``at`` (the time of the check that decided) first, then by ``id``, which
orders the decisions one check makes at one time (one per version it judged). The row key,
``<inverted ms>~<id>``, is that order (Azure Tables returns a partition in row key order), and
``at`` is stored at the key's millisecond, so no two decisions can sort one way by key and the
other by ``at``. A decision written late (its check started earlier) lands below newer ones, not
on top. Deleted after ``RECORD_RETENTION_DAYS`` like the journal: the decisions older than the
horizon are the row keys past the horizon's inverted time, one range read.

Invariants: a decision is recorded before any action it causes is sent (the action's command is
submitted after, and is recorded itself, so the repair sweep hands it on if the sender dies);
``state.last_action_at`` moves only by a conditional update, so two checks of one window cannot
both act; windows are never judged against another version's baseline.
"""

from __future__ import annotations

import re
import time
import uuid
from typing import Any

from shared import telemetry
from shared.redaction import redact_value
from shared.tables import (
    MAX_TRANSACTION_OPS,
    ConcurrencyConflict,
    EntityExists,
    Op,
    Page,
    RowRange,
    TableService,
    delete_indexed,
)

DECISION_TAG = "reactor.decision"  # set by the retraining job on the version it registers
MONITOR = "monitor"
DECISIONS = "decisions"
STATE = "state"
_INVERT = 10**13
DECISION_ID = re.compile(r"[0-9]{13}-[0-9a-f]{8}")  # what record_decision makes
_END = "~end:"


def _window_key(version: str, start: float) -> str:
    return f"window~{version}~{int(start):012d}"


def _end_key(end: float, window_key: str) -> str:
    return f"{_END}{max(0, int(end)):012d}:{window_key}"


def baseline(tables: TableService, endpoint: str, version: str) -> dict[str, Any] | None:
    entity = tables.get(MONITOR, endpoint, f"baseline~{version}")
    return entity.data if entity else None


def freeze_baseline(tables: TableService, endpoint: str, version: str, data: dict[str, Any]) -> dict[str, Any]:
    """The version's baseline: ``data`` if none was frozen before, else the one that was."""
    try:
        return tables.insert(MONITOR, endpoint, f"baseline~{version}", data).data
    except EntityExists:
        found = baseline(tables, endpoint, version)
        assert found is not None  # baselines are deleted only with their endpoint's partition
        return found


def window(tables: TableService, endpoint: str, version: str, start: float) -> dict[str, Any] | None:
    entity = tables.get(MONITOR, endpoint, _window_key(version, start))
    return entity.data if entity else None


def save_window(tables: TableService, endpoint: str, version: str, start: float, data: dict[str, Any]) -> None:
    wkey = _window_key(version, start)
    tables.transact(MONITOR, endpoint, [Op("upsert", wkey, data),
                                        Op("upsert", _end_key(data["end"], wkey), {"key": wkey})])


def windows(tables: TableService, endpoint: str, version: str) -> list[dict[str, Any]]:
    """The version's judged windows, oldest first: their row-key range, which the retention sweep
    bounds, and none of the version's baselines or other versions' windows."""
    return [e.data for e in tables.query(MONITOR, endpoint, rows=RowRange.prefix(f"window~{version}~"))]


def state(tables: TableService, endpoint: str) -> dict[str, Any]:
    entity = tables.get(MONITOR, endpoint, STATE)
    return entity.data if entity else {}


def take_action(tables: TableService, endpoint: str, decision_id: str, *, now: float, cooldown_seconds: float) -> bool:
    """Move ``last_action_at`` to ``now`` unless an action happened within the cooldown (or
    another checker moved it first). True: this decision may act."""
    entity = tables.get(MONITOR, endpoint, STATE)
    data = dict(entity.data) if entity else {}
    last = data.get("last_action_at")
    if last is not None and now - float(last) < cooldown_seconds:
        return False
    data.update(last_action_at=now, last_decision=decision_id)
    try:
        if entity is None:
            tables.insert(MONITOR, endpoint, STATE, data)
        else:
            entity.data = data
            tables.update(MONITOR, entity)
    except (EntityExists, ConcurrencyConflict):
        return False
    return True


def record_decision(tables: TableService, endpoint: str, data: dict[str, Any], *, now: float) -> dict[str, Any]:
    """Record a decision made at ``now`` (``at``, to the millisecond of its key)."""
    ms = int(now * 1000)
    did = f"{ms:013d}-{uuid.uuid4().hex[:8]}"
    row = redact_value({**data, "id": did, "endpoint": endpoint, "at": ms / 1000})
    tables.insert(DECISIONS, endpoint, _decision_key(did), row)
    telemetry.monitor_decided(row)
    return row


def listing_order(decision: dict[str, Any]) -> tuple[float, str]:
    """The sort key of the order decisions are listed in, from their fields: newest ``at`` first,
    then ``id`` (module docstring); the row key gives the same order."""
    return -float(decision["at"]), str(decision["id"])


def _decision_key(did: str) -> str:
    ms = int(did.split("-", 1)[0])
    return f"{_INVERT - ms:013d}~{did}"


def update_decision(tables: TableService, endpoint: str, did: str, **fields: Any) -> dict[str, Any] | None:
    """Add what happened after the decision (the run launched, its outcome, the version rolled out)."""
    for _ in range(5):
        entity = tables.get(DECISIONS, endpoint, _decision_key(did))
        if entity is None:
            return None
        entity.data = redact_value({**entity.data, **fields, "updated_at": time.time()})
        try:
            return tables.update(DECISIONS, entity).data
        except ConcurrencyConflict:
            continue
    raise ConcurrencyConflict(f"decision {did} kept changing")


def decision(tables: TableService, endpoint: str, did: str) -> dict[str, Any] | None:
    """One decision by its id (a point read: its row key is made from the id), or None."""
    if not DECISION_ID.fullmatch(did):
        return None
    entity = tables.get(DECISIONS, endpoint, _decision_key(did))
    return entity.data if entity else None


def decisions_page(tables: TableService, endpoint: str | None, *, limit: int, continuation: str | None) -> Page:
    """A page of decisions in ``listing_order`` per endpoint (all endpoints: one after another)."""
    return tables.query_page(DECISIONS, endpoint, limit=limit, continuation=continuation)


def delete_older(tables: TableService, endpoint: str, *, older_than: float, limit: int) -> int:
    """Retention: up to ``limit`` decisions and up to ``limit`` windows older than ``older_than``
    (baselines and state stay); returns how many. Decisions are the key range past the horizon's
    inverted millisecond (their key is newest first, so that range is all due, newest due first);
    windows are found through the ``~end:`` index from its oldest end. Reads only what it deletes."""
    old = tables.query_page(DECISIONS, endpoint, limit=min(limit, MAX_TRANSACTION_OPS),
                            rows=RowRange(f"{_INVERT - int(older_than * 1000) + 1:013d}", "~")).entities
    if old:
        try:
            tables.transact(DECISIONS, endpoint, [Op.delete(e) for e in old])
        except ConcurrencyConflict:  # one was updated meanwhile: the next sweep reads it again
            old = []
    due = tables.query_page(MONITOR, endpoint, limit=min(limit, MAX_TRANSACTION_OPS // 2),
                            rows=RowRange(_END, _end_key(older_than, ""))).entities
    return len(old) + sum(delete_indexed(tables, MONITOR, e) for e in due)


def index_page(tables: TableService, endpoint: str, continuation: str | None) -> str | None:
    """One page of the migration to the windows' ``~end:`` index: entries for the windows on the
    page at ``continuation`` (written before the index existed); None after the last page.
    Upserts, so a page done twice writes the same entries."""
    got = tables.query_page(MONITOR, endpoint, continuation=continuation, rows=RowRange.prefix("window~"))
    ops = [Op("upsert", _end_key(e.data.get("end") or 0, e.row_key), {"key": e.row_key}) for e in got.entities]
    for i in range(0, len(ops), MAX_TRANSACTION_OPS):
        tables.transact(MONITOR, endpoint, ops[i:i + MAX_TRANSACTION_OPS])
    return got.continuation
