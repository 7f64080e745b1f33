"""What we keep of requests refused before they proved who sent them: bounded by design.

Anyone can send the webhook an unsigned or oversized request, so such rejections must not
cost a record each (journal invariant J4). Per HTTP status we keep one counter row (the
total and a count per reason code, first and last time seen) and a ring of ``SAMPLES`` recent
samples with their reason and a short excerpt: storage stays at ``SAMPLES + 1`` rows per
status whatever the traffic. Counting is best effort under contention (a sample is still kept).

A sample is what anyone sent, so its excerpt and reason are redacted (shared.redaction) before
they are stored, and again when served (rows kept before redaction was added).
"""

from __future__ import annotations

import time
from typing import Any

from shared.redaction import excerpt, redact, redact_value
from shared.tables import ConcurrencyConflict, Entity, EntityExists, TableService

TABLE = "rejections"
SAMPLES = 50
_EXCERPT = 512
_COUNTER = "count"


def note(tables: TableService, status: int, code: str, reason: str, body: bytes) -> str:
    """Count one rejection and keep it as a sample; returns the sample's reference."""
    now = time.time()
    partition = str(status)
    n = _count(tables, partition, code, now)
    slot = f"sample-{n % SAMPLES:03d}"
    tables.upsert(TABLE, partition, slot, {
        "at": now, "status": status, "code": code, "reason": redact(reason), "n": n,
        "excerpt": excerpt(body, _EXCERPT), "size": len(body),
    })
    return f"{partition}/{slot}"


def _count(tables: TableService, partition: str, code: str, now: float) -> int:
    for _ in range(3):
        entity = tables.get(TABLE, partition, _COUNTER)
        data: dict[str, Any] = dict(entity.data) if entity else {"total": 0, "by_code": {}, "first_at": now}
        data["total"] += 1
        data["by_code"] = {**data["by_code"], code: data["by_code"].get(code, 0) + 1}
        data["last_at"] = now
        try:
            if entity is None:
                tables.insert(TABLE, partition, _COUNTER, data)
            else:
                tables.update(TABLE, Entity(partition, _COUNTER, data, entity.etag))
            return int(data["total"])
        except (ConcurrencyConflict, EntityExists):
            continue
    return int(now * 1000)  # contended: a sample slot all the same, the count catches up later


def summary(tables: TableService) -> dict[str, Any]:
    """Counters and the recent samples, newest first, per status (operators' view)."""
    out: dict[str, Any] = {}
    for e in tables.query(TABLE):
        entry = out.setdefault(e.partition_key, {"counts": {}, "samples": []})
        if e.row_key == _COUNTER:
            entry["counts"] = e.data
        else:
            entry["samples"].append(redact_value(e.data))
    for entry in out.values():
        entry["samples"].sort(key=lambda d: d.get("at", 0), reverse=True)
    return out
