"""Persisted rollouts and the one-writer-per-endpoint lease.

``rollouts`` (partition: endpoint, row: rollout id) holds each rollout's state machine: its
step, a sequence number that every transition increments, and what it needs to undo itself.
``endpoints`` (row: endpoint name) holds the lease: the ``active`` rollout (the only one that
may write the endpoint), at most one ``queued`` newer rollout, and the last good config.
Both are changed only by conditional writes on the ETag (shared.tables), so two workers that
got the same message cannot both move a rollout on.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from typing import Any

from shared.tables import ConcurrencyConflict, Entity, EntityExists, TableService

ROLLOUTS = "rollouts"
ENDPOINTS = "endpoints"
_ENDPOINT_PARTITION = "endpoint"
TERMINAL = frozenset({"done", "failed", "superseded"})
_HISTORY = 40


def rollout_id(origin_kind: str, origin_id: str, environment: str) -> str:
    """The same command retried maps to the same rollout, so it never starts twice."""
    return hashlib.sha256(f"{origin_kind}|{origin_id}|{environment}".encode()).hexdigest()[:24]


def create(tables: TableService, endpoint: str, rid: str, data: dict[str, Any]) -> tuple[Entity, bool]:
    now = time.time()
    row = {"id": rid, "endpoint": endpoint, "step": "resolve", "seq": 0, "status": "pending", "attempt": 0,
           "created_at": now, "updated_at": now, "history": [], **data}
    try:
        return tables.insert(ROLLOUTS, endpoint, rid, row), True
    except EntityExists:
        existing = tables.get(ROLLOUTS, endpoint, rid)
        assert existing is not None
        return existing, False


def get(tables: TableService, endpoint: str, rid: str) -> Entity | None:
    return tables.get(ROLLOUTS, endpoint, rid)


def for_endpoint(tables: TableService, endpoint: str) -> list[dict[str, Any]]:
    return sorted((e.data for e in tables.query(ROLLOUTS, endpoint)), key=lambda r: r["created_at"])


def all_rollouts(tables: TableService) -> list[dict[str, Any]]:
    return sorted((e.data for e in tables.query(ROLLOUTS)), key=lambda r: r["created_at"])


def advance(tables: TableService, entity: Entity, note: str, **changes: Any) -> Entity:
    """Conditional write of one transition; ConcurrencyConflict if someone else moved it first."""
    data = dict(entity.data)
    data.update(changes)
    data["seq"] = entity.data["seq"] + 1
    data["updated_at"] = time.time()
    history = [*data.get("history", []), {"at": data["updated_at"], "step": entity.data["step"], "note": note}]
    data["history"] = history[-_HISTORY:]
    return tables.update(ROLLOUTS, Entity(entity.partition_key, entity.row_key, data, entity.etag))


def endpoint_state(tables: TableService, endpoint: str) -> dict[str, Any]:
    entity = tables.get(ENDPOINTS, _ENDPOINT_PARTITION, endpoint)
    return entity.data if entity else {}


def all_endpoints(tables: TableService) -> dict[str, dict[str, Any]]:
    return {e.row_key: e.data for e in tables.query(ENDPOINTS, _ENDPOINT_PARTITION)}


@dataclass(frozen=True)
class Claim:
    active: bool  # this rollout now holds the lease
    superseded: str | None = None  # an older queued rollout that this one displaced


def _change_endpoint(tables: TableService, endpoint: str, change) -> Any:
    """Read-modify-write the endpoint row until the conditional write wins."""
    for _ in range(50):
        entity = tables.get(ENDPOINTS, _ENDPOINT_PARTITION, endpoint)
        data = dict(entity.data) if entity else {"active": None, "queued": None}
        result, new = change(data)
        if new is None:
            return result
        try:
            if entity is None:
                tables.insert(ENDPOINTS, _ENDPOINT_PARTITION, endpoint, new)
            else:
                tables.update(ENDPOINTS, Entity(entity.partition_key, entity.row_key, new, entity.etag))
            return result
        except (ConcurrencyConflict, EntityExists):
            continue
    raise ConcurrencyConflict(f"endpoint {endpoint}: lease contended too long")


def claim(tables: TableService, endpoint: str, rid: str) -> Claim:
    """Take the lease, or queue behind the active rollout (displacing an older queued one)."""

    def change(data: dict[str, Any]):
        if data.get("active") == rid:
            return Claim(True), None
        if data.get("queued") == rid:
            return Claim(False), None
        if not data.get("active"):
            return Claim(True), {**data, "active": rid}
        return Claim(False, data.get("queued")), {**data, "queued": rid}

    return _change_endpoint(tables, endpoint, change)


def release(tables: TableService, endpoint: str, rid: str, **good: Any) -> str | None:
    """Hand the lease to the queued rollout (if any); returns whoever holds it now.
    ``good`` (last_good config, serving version) is recorded when the rollout succeeded."""

    def change(data: dict[str, Any]):
        if data.get("active") != rid:
            return data.get("active"), None
        nxt = data.get("queued")
        # Each hand-over starts a new generation: reconciles that decide within one generation
        # agree on one rollout id, so they cannot start the same version twice.
        return nxt, {**data, **good, "active": nxt, "queued": None, "generation": data.get("generation", 0) + 1}

    return _change_endpoint(tables, endpoint, change)
