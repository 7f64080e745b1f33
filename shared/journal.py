"""The journal: every event and command we accepted or rejected, and how it ended.

One entity per record in the ``records`` table, partitioned by kind (``event``, ``command``,
``poison``). A record is written before the request is acknowledged and ends in a terminal
status (``done``, ``failed``, ``superseded``, ``rejected``, ``ignored``), with the reason.
Operators list them (``GET /api/records``).
"""

from __future__ import annotations

import time
from typing import Any

from shared.tables import ConcurrencyConflict, EntityExists, TableService

TABLE = "records"
IDENTITIES = "event_identities"
TERMINAL = frozenset({"done", "failed", "superseded", "rejected", "ignored"})
_MAX_EXCERPT = 2048


def excerpt(body: bytes) -> str:
    """What we keep of a rejected body: enough to diagnose, never unbounded."""
    text = body[:_MAX_EXCERPT].decode("utf-8", errors="replace")
    return text + ("…" if len(body) > _MAX_EXCERPT else "")


def record(tables: TableService, kind: str, record_id: str, status: str, **fields: Any) -> tuple[dict[str, Any], bool]:
    """Insert a record; returns (record, created). An existing record is returned unchanged."""
    now = time.time()
    data = {"kind": kind, "id": record_id, "status": status, "received_at": now, "updated_at": now, **fields}
    try:
        tables.insert(TABLE, kind, record_id, data)
        return data, True
    except EntityExists:
        existing = tables.get(TABLE, kind, record_id)
        return (existing.data if existing else data), False


def claim_identity(tables: TableService, identity: str, record_id: str) -> str | None:
    """Remember an event identity; returns the record id that claimed it first if it is not new."""
    try:
        tables.insert(IDENTITIES, identity[:2], identity, {"record": record_id})
        return None
    except EntityExists:
        existing = tables.get(IDENTITIES, identity[:2], identity)
        first = existing.data.get("record") if existing else None
        return None if first == record_id else first


def update(tables: TableService, kind: str, record_id: str, status: str, **fields: Any) -> None:
    """Move a record on. A terminal record keeps its outcome."""
    for _ in range(10):
        entity = tables.get(TABLE, kind, record_id)
        if entity is None:
            record(tables, kind, record_id, status, **fields)
            return
        if entity.data.get("status") in TERMINAL and status not in TERMINAL:
            return
        entity.data.update(fields, status=status, updated_at=time.time())
        try:
            tables.update(TABLE, entity)
            return
        except ConcurrencyConflict:
            continue
    raise ConcurrencyConflict(f"{TABLE}/{kind}/{record_id}: too many concurrent updates")


def get(tables: TableService, kind: str, record_id: str) -> dict[str, Any] | None:
    entity = tables.get(TABLE, kind, record_id)
    return entity.data if entity else None


def list_records(tables: TableService, kind: str | None = None, status: str | None = None) -> list[dict[str, Any]]:
    filters = {"status": status} if status else {}
    rows = [e.data for e in tables.query(TABLE, kind, **filters)]
    return sorted(rows, key=lambda r: r.get("received_at", 0))
