"""Persisted rollouts and the one-writer-per-endpoint lease.

Table ``rollouts``, one partition per endpoint. Each rollout is a row (row key: rollout id)
holding its state machine: its step, a sequence number that every transition increments,
what it needs to undo itself, and ``due_at``, when its next message is expected. The row
``lease`` of the same partition is the endpoint's lease: the ``active`` rollout (the only one
that may write the endpoint), at most one ``queued`` newer rollout, the last good config, the
versions whose rollouts failed (so reconcile never reads the rollout history), the ``last``
rollout that ended (so a status summary, shared.overview, never reads it either) and the
latest rollouts that ended ``done`` (``served``: version, created and finished, so the monitor
knows since when a version serves and which served before it without reading it either).

Beside them, ``~done:<finish time, ms>:<rollout>`` names each terminal rollout, written in the
transaction that ends it (as shared.journal's done index), so retention reads the index from its
oldest end up to the horizon: only what it deletes, whatever the endpoint's history. And
``~new:<inverted creation time, ms>:<rollout>`` names every rollout, written in the transaction
that creates it: the "Log tail pattern" of "Table design patterns" (Microsoft Learn,
https://learn.microsoft.com/en-us/azure/storage/tables/table-storage-design-patterns#log-tail-pattern),
a row key that sorts in reverse time order, so an ascending scan, the only one Azure Tables
serves, reads the newest rollouts first and a page of rollouts is one page of this index and a
point read per entry. ``~`` sorts after every rollout id (hex) and ``lease``, so the indexes are
the partition's last rows.

Because a rollout and its lease share a partition, every change that touches both is one
entity-group transaction (all or nothing, shared.tables), and every other write is
conditional on the ETag. That gives these invariants, which tests/test_rollout_engine.py checks
after failures injected at every write:

- L1: ``active`` and ``queued`` name existing rollouts that are not terminal. Claiming, ending
  and superseding each change the rollout rows and the lease in one transaction; a lease found
  otherwise (data written before this scheme) is repaired by the next claim or end.
- L2: at most one rollout may write the endpoint: the one named ``active``.
- L3: a terminal rollout never changes again (every write is conditional on its ETag, and no
  step runs for a terminal row).
- L4: a displaced queued rollout ends ``superseded`` in the same transaction that displaces it.
- L5: a step runs in one worker at a time. Before its side effects a worker writes the
  ``claim`` of the row's current sequence number (conditional on the ETag, with a time limit);
  a message whose step is claimed by a live claim, or that names another sequence number, is
  dropped. The step commits conditionally on the claim's ETag and only then is the next step's
  message sent, so a worker that lost the row leaves no message behind. A claim whose worker
  died expires and the step is taken over (by the redelivered message or the repair sweep).
- L7: the lease's ``hold`` (``{"version", "by", "reason", "since", "record"}``, or absent) is
  written only by an operator's ``hold``, ``release``, ``rollback`` of a finished rollout or
  ``deploy`` (handlers/steering.py), each a conditional write of the lease row; claiming and
  ending rollouts copy it unchanged. While it is set, reconcile starts no rollout of another
  version and a deploy of another version is refused (handlers/commands.py).
- L8: the lease's ``kept`` (``{"version", "entity", "until", "model", "environment"}``, or None)
  names the previous champion's entity that the last good config keeps at 0% for the policy's
  ``rollback_window``; it is written only by the transaction that ends a rollout ``done`` (from
  that rollout's row), so it always describes ``last_good``. After ``until`` the repair sweep
  starts a rollout that removes it (``retire_kept``), which as lease holder is the only writer
  of the endpoint (L2); a rollout that ends done after it replaces it.
- L6: a rollout is terminal exactly while its ``~done:`` entry exists (the transaction that
  ends it writes the entry; retention deletes both in one), except rollouts ended before the
  index existed, which the migration (:func:`index_page`) gives theirs.
- L9: every rollout has exactly one ``~new:`` entry, at its ``created_at`` (which never changes):
  the transaction that creates it writes it, retention deletes it in the transaction that
  deletes the rollout (its done entry names it), and rollouts created before the index existed
  get theirs from the migration (:func:`index_page`). An entry whose rollout is gone (the
  migration raced retention) is skipped by :func:`page` and deleted there.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from shared import telemetry
from shared.redaction import redact, redact_value
from shared.tables import (
    MAX_TRANSACTION_OPS,
    ConcurrencyConflict,
    Entity,
    EntityExists,
    Op,
    Page,
    RowRange,
    TableService,
    delete_indexed,
)

ROLLOUTS = "rollouts"
LEASE = "lease"
# Ended by an operator's ``abort`` or ``rollback`` (handlers/steering.py): like ``failed``, the
# version is not retried by reconcile.
STOPPED = frozenset({"aborted", "rolled_back"})
TERMINAL = frozenset({"done", "failed", "superseded", *STOPPED})
_HISTORY = 40
_FAILED_KEPT = 20
_SERVED_KEPT = 20
_RETRIES = 50
_TEXT = frozenset({"reason", "failure", "smoke"})
# A note or reason quotes an error, whose length nobody bounds: clipped, the 40 history entries
# of a rollout stay far inside Azure's 1 MiB entity (docs/reliability.md, "Storage limits").
_MAX_TEXT = 2000
_DONE = "~done:"
_NEW = "~new:"
_NEWEST = 10**15 - 1  # the inverted times stay 15 digits until the year 33658
_ROWS = RowRange("", "~")  # the rollouts and the lease, not the index


def _clip(text: Any) -> Any:
    return text[:_MAX_TEXT] + "…" if isinstance(text, str) and len(text) > _MAX_TEXT else text


def rollout_id(origin_kind: str, origin_id: str, environment: str) -> str:
    """The same command retried maps to the same rollout, so it never starts twice."""
    return hashlib.sha256(f"{origin_kind}|{origin_id}|{environment}".encode()).hexdigest()[:24]


def _done_key(at: float, rid: str) -> str:
    return f"{_DONE}{max(0, int(at * 1000)):015d}:{rid}"


def _new_key(created_at: float, rid: str) -> str:
    return f"{_NEW}{_NEWEST - max(0, int(created_at * 1000)):015d}:{rid}"


def _done_op(at: float, row: dict[str, Any]) -> Op:
    # The done entry names the rollout's other index entry, so retention deletes both unread.
    return Op("upsert", _done_key(at, row["id"]), {"key": row["id"], "new": _new_key(row["created_at"], row["id"])})


def get(tables: TableService, endpoint: str, rid: str) -> Entity | None:
    return None if rid == LEASE else tables.get(ROLLOUTS, endpoint, rid)


def lease(tables: TableService, endpoint: str) -> dict[str, Any]:
    entity = tables.get(ROLLOUTS, endpoint, LEASE)
    return entity.data if entity else {}


def for_endpoint(tables: TableService, endpoint: str) -> list[dict[str, Any]]:
    """Every rollout of one endpoint, oldest first (bounded by the retention sweep)."""
    rows = [e.data for e in tables.query(ROLLOUTS, endpoint, rows=_ROWS) if e.row_key != LEASE]
    return sorted(rows, key=lambda r: r["created_at"])


def served(tables: TableService, endpoint: str) -> list[dict[str, Any]]:
    """The endpoint's latest (at most 20) rollouts that ended ``done``, oldest first: their
    ``version``, ``created_at`` and ``finished_at``. One read, the lease's ``served``; a lease
    written before it kept them has them read from the rows, until the next rollout ends done."""
    ls = lease(tables, endpoint)
    return sorted(ls["served"] if "served" in ls else _served_rows(tables, endpoint), key=lambda r: r["created_at"])


def _served_rows(tables: TableService, endpoint: str) -> list[dict[str, Any]]:
    return [{"version": r.get("version"), "created_at": r["created_at"],
             "finished_at": r.get("finished_at") or r.get("updated_at")}
            for r in for_endpoint(tables, endpoint) if r.get("status") == "done"][-_SERVED_KEPT:]


def page(tables: TableService, endpoint: str | None, *, limit: int, continuation: str | None,
         ) -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]], str | None]:
    """One page of rollouts and the leases met on it (operators' view). Of one endpoint: newest
    first across pages, one page of its ``~new:`` index and a point read per entry (L9), and its
    lease by a point read. Of every endpoint: in key order, without the lease and index rows."""
    if endpoint is not None:
        got: Page = tables.query_page(ROLLOUTS, endpoint, limit=limit, continuation=continuation,
                                      rows=RowRange.prefix(_NEW))
        rows = []
        for entry in got.entities:
            row = get(tables, endpoint, entry.data["key"])
            if row is not None:
                rows.append(row.data)
                continue
            # Dangling (L9): the migration wrote it as retention deleted the rollout.
            with contextlib.suppress(ConcurrencyConflict):
                tables.delete(ROLLOUTS, entry)
        return rows, {endpoint: lease(tables, endpoint)}, got.continuation
    got = tables.query_page(ROLLOUTS, endpoint, limit=limit, continuation=continuation)
    rows = [e.data for e in got.entities if e.row_key != LEASE and not e.row_key.startswith("~")]
    leases = {e.partition_key: e.data for e in got.entities if e.row_key == LEASE}
    return rows, leases, got.continuation


def _transition(row: dict[str, Any], note: str, changes: dict[str, Any], now: float) -> dict[str, Any]:
    # Reasons and notes quote errors, which may quote a connection string: never store a secret.
    # The configs (``target``, ``previous``) are written back to the endpoint, so they are kept as
    # they are: the policy admits secrets there only as {{secrets/...}} references.
    changes = {k: _clip(redact_value(v)) if k in _TEXT else v for k, v in changes.items()}
    note = _clip(redact(note))
    data = {**row, **changes}
    data["seq"] = row["seq"] + 1
    # The claim was on the step this transition ends; the next one is claimed afresh.
    data.pop("claim", None)
    data["updated_at"] = now
    history = [*row.get("history", []), {"at": data["updated_at"], "step": row["step"], "note": note}]
    data["history"] = history[-_HISTORY:]
    return data


def claimed_by_another(row: dict[str, Any], holder: str | None, now: float) -> bool:
    """Whether a live claim of the row's current step belongs to someone other than ``holder``."""
    claim = row.get("claim") or {}
    return claim.get("seq") == row["seq"] and claim.get("until", 0) > now and claim.get("by") != holder


def claim_step(tables: TableService, entity: Entity, *, holder: str, now: float, seconds: float) -> Entity | None:
    """Claim the rollout's current step for ``holder`` until ``now + seconds`` (invariant L5).

    A conditional write on the ETag, so of the workers that read the same row one wins; None
    when another worker holds a live claim of this step or the row changed since it was read.
    Only the returned entity may be committed (``advance``/``finish``), and its side effects run
    only after this write succeeded.
    """
    row = entity.data
    if row["status"] in TERMINAL or claimed_by_another(row, holder, now):
        return None
    data = {**row, "claim": {"seq": row["seq"], "by": holder, "until": now + seconds}}
    try:
        return tables.update(ROLLOUTS, Entity(entity.partition_key, entity.row_key, data, entity.etag))
    except ConcurrencyConflict:
        return None


def advance(tables: TableService, entity: Entity, note: str, *, now: float, **changes: Any) -> Entity:
    """Conditional write of one transition; ConcurrencyConflict if someone else moved it first."""
    data = _transition(entity.data, note, changes, now)
    return tables.update(ROLLOUTS, Entity(entity.partition_key, entity.row_key, data, entity.etag))


def hold_note(hold: dict[str, Any]) -> str:
    """A hold in words, as every view shows it: version, who set it, since when and why."""
    since = datetime.fromtimestamp(hold.get("since") or 0, tz=UTC).isoformat(timespec="seconds")
    record = f" (command {hold['record']})" if hold.get("record") else ""
    return (f"held at version {hold.get('version')} by {hold.get('by')}{record} since {since}: {hold.get('reason')}; "
            "reconcile and deploys of other versions leave it until release")


def set_hold(tables: TableService, endpoint: str, hold: dict[str, Any] | None) -> dict[str, Any] | None:
    """Set (or with None, clear) the endpoint's hold (invariant L7): a conditional write of the
    lease row, retried on a concurrent change. Returns the hold it replaced."""
    for _ in range(_RETRIES):
        entity = tables.get(ROLLOUTS, endpoint, LEASE)
        data = dict(entity.data) if entity else {}
        before = data.pop("hold", None)
        if hold is not None:
            data["hold"] = {**hold, "reason": _clip(redact(hold.get("reason") or ""))}
        try:
            tables.transact(ROLLOUTS, endpoint, [_lease_op(entity, data)])
        except (ConcurrencyConflict, EntityExists):
            continue
        return before
    raise ConcurrencyConflict(f"endpoint {endpoint}: lease contended too long")


@dataclass(frozen=True)
class Claim:
    rollout: dict[str, Any]
    active: bool  # it holds the lease (and must be sent its first step)
    created: bool  # this call created it
    superseded: dict[str, Any] | None = None  # the older queued rollout it displaced (now terminal)


def _live(tables: TableService, endpoint: str, rid: str | None) -> Entity | None:
    entity = get(tables, endpoint, rid) if rid else None
    return entity if entity and entity.data["status"] not in TERMINAL else None


def _repaired(tables: TableService, endpoint: str, ls: dict[str, Any], now: float) -> dict[str, Any]:
    """The lease with any slot that names a missing or terminal rollout cleared (invariant L1)."""
    ls = dict(ls)
    if ls.get("queued") and _live(tables, endpoint, ls["queued"]) is None:
        ls.update(queued=None, queued_version=None)
    if ls.get("active") and _live(tables, endpoint, ls["active"]) is None:
        ls.update(active=ls.get("queued"), active_version=ls.get("queued_version"), queued=None,
                  queued_version=None, active_since=now)
    return ls


def _lease_op(entity: Entity | None, data: dict[str, Any]) -> Op:
    return Op.insert(LEASE, data) if entity is None else Op.update(entity, data)


def _version_of(tables: TableService, endpoint: str, rid: str | None, known: str | None) -> str | None:
    if not rid or known:
        return known
    entity = get(tables, endpoint, rid)
    return entity.data.get("version") if entity else None


def claim(tables: TableService, endpoint: str, rid: str, data: dict[str, Any], *, now: float,
          join_version: str | None = None) -> Claim:
    """Create rollout ``rid`` and take the lease, or queue behind the active rollout (ending an
    older queued one as superseded), in one transaction. Idempotent per ``rid``.

    ``join_version``: when a live rollout of that version already holds or waits for the lease,
    return it instead of creating another (concurrent reconciles agree on one rollout).
    """
    for _ in range(_RETRIES):
        lease_entity = tables.get(ROLLOUTS, endpoint, LEASE)
        ls = _repaired(tables, endpoint, lease_entity.data if lease_entity else {}, now)
        existing = get(tables, endpoint, rid)
        if existing is not None:
            return Claim(existing.data, ls.get("active") == rid, False)
        if join_version:
            for slot in ("active", "queued"):
                if _version_of(tables, endpoint, ls.get(slot), ls.get(f"{slot}_version")) == join_version:
                    other = get(tables, endpoint, ls[slot])
                    if other is not None:
                        return Claim(other.data, slot == "active", False)
        row = {"id": rid, "endpoint": endpoint, "step": "resolve", "seq": 0, "status": "pending", "attempt": 0,
               "created_at": now, "updated_at": now, "history": [], **data}
        # Upserted: a dangling entry (L9) left at these keys must not stop the claim.
        ops = [Op.insert(rid, row), Op("upsert", _new_key(now, rid), {"key": rid})]
        displaced = None
        version = data.get("version")
        if not ls.get("active"):
            ls.update(active=rid, active_version=version, active_since=now)
        else:
            displaced = _live(tables, endpoint, ls.get("queued"))
            if displaced is not None:
                reason = f"superseded by newer rollout {rid}"
                ops.append(Op.update(displaced, _transition(
                    displaced.data, reason, {"status": "superseded", "reason": reason, "step": "end",
                                             "finished_at": now}, now)))
                ops.append(_done_op(now, displaced.data))
            ls.update(queued=rid, queued_version=version)
        ops.append(_lease_op(lease_entity, ls))
        try:
            written = tables.transact(ROLLOUTS, endpoint, ops)
        except (ConcurrencyConflict, EntityExists):
            continue
        gone = written[displaced.row_key].data if displaced is not None else None
        if gone is not None:
            telemetry.rollout_ended(gone)
        return Claim(written[rid].data, ls["active"] == rid, True, gone)
    raise ConcurrencyConflict(f"endpoint {endpoint}: lease contended too long")


@dataclass(frozen=True)
class Ended:
    rollout: dict[str, Any]
    holder: str | None  # who holds the lease now


def finish(tables: TableService, entity: Entity, note: str, *, now: float, status: str, reason: str,
           **changes: Any) -> Ended | None:
    """End a rollout and release or drop its place in the lease, in one transaction.

    Returns None when someone else moved the rollout first (its ETag changed). A ``done``
    rollout records its config as the endpoint's last good one; a ``failed`` one records its
    version, so reconcile does not retry it.
    """
    endpoint, rid = entity.partition_key, entity.row_key
    row = entity.data
    reason = redact(reason)
    for _ in range(_RETRIES):
        lease_entity = tables.get(ROLLOUTS, endpoint, LEASE)
        ls = dict(lease_entity.data) if lease_entity else {}
        if ls.get("active") == rid:
            ls.update(active=ls.get("queued"), active_version=ls.get("queued_version"), queued=None,
                      queued_version=None, active_since=now)
        elif ls.get("queued") == rid:
            ls.update(queued=None, queued_version=None)
        ls = _repaired(tables, endpoint, ls, now)
        version = row.get("version")
        failed = dict(ls.get("failed") or {})
        if status == "done":
            # The champion it replaced is the rollback pointer (docs/architecture.md "Rollout"); the
            # entity its config keeps at 0% for the rollback window, if any, is ``kept`` (L8).
            ls.update(last_good=row.get("final") or row["target"], serving_version=version, serving_model=row["model"],
                      previous_champion=row.get("champion") or ls.get("previous_champion"), kept=row.get("kept"))
            failed.pop(str(version), None)
            if not (row.get("requested") or {}).get("retire_kept"):
                # Retiring the kept entity changes what is on the endpoint, not which version serves.
                ls["served"] = [*(ls["served"] if "served" in ls else _served_rows(tables, endpoint)),
                                {"version": version, "created_at": row["created_at"], "finished_at": now}
                                ][-_SERVED_KEPT:]
        elif (status == "failed" or status in STOPPED) and version:
            failed.pop(str(version), None)
            failed[str(version)] = _clip(redact(reason))
        ls["failed"] = dict(list(failed.items())[-_FAILED_KEPT:])
        # The last rollout that ended, so a status summary finds it without reading the history.
        ls["last"] = rid
        new = _transition(row, note or reason, {"status": status, "reason": reason, "step": "end",
                                                "finished_at": now, **changes}, now)
        try:
            written = tables.transact(ROLLOUTS, endpoint, [Op.update(entity, new), _lease_op(lease_entity, ls),
                                                           _done_op(now, row)])
        except (ConcurrencyConflict, EntityExists):
            current = tables.get(ROLLOUTS, endpoint, rid)
            if current is None or current.etag != entity.etag:
                return None
            continue
        # Here, once: the commit that ended it (a lost answer to that commit goes unrecorded).
        telemetry.rollout_ended(written[rid].data)
        return Ended(written[rid].data, ls.get("active"))
    raise ConcurrencyConflict(f"endpoint {endpoint}: lease contended too long")


def delete_finished(tables: TableService, endpoint: str, *, older_than: float, limit: int,
                    before: Callable[[str], object] = lambda rid: None) -> int:
    """Retention: delete the oldest (at most ``limit``) rollouts that ended before ``older_than``,
    each with its done and new entries in one transaction (L6, L9), after ``before(rollout id)``
    (what belongs to the rollout goes first, so nothing outlives it); returns how many. Reads the
    done index from its oldest end, so it reads only what it deletes. A rollout already gone
    (deleted by hand) leaves only its entries to go."""
    due = tables.query_page(ROLLOUTS, endpoint, limit=limit, rows=RowRange(_DONE, _done_key(older_than, ""))).entities
    for entry in due:
        rid = entry.data["key"]
        before(rid)
        delete_indexed(tables, ROLLOUTS, entry, (entry.data["new"],) if "new" in entry.data else ())
    return len(due)


def index_page(tables: TableService, endpoint: str, continuation: str | None) -> str | None:
    """One page of the migration to the done and new indexes: for each rollout on the page at
    ``continuation``, its new entry and, if terminal, its done entry (rollouts written before
    either index existed lack them); returns where the next page starts, None after the last.
    Upserts at the row's ``created_at`` and ``finished_at``, which never change (L3), so a page
    done twice writes the same entries."""
    got = tables.query_page(ROLLOUTS, endpoint, continuation=continuation, rows=_ROWS)
    rows = [{**e.data, "id": e.row_key, "created_at": e.data.get("created_at") or 0} for e in got.entities
            if e.row_key != LEASE]
    ops = [Op("upsert", _new_key(r["created_at"], r["id"]), {"key": r["id"]}) for r in rows]
    ops += [_done_op(r.get("finished_at") or r.get("updated_at") or 0, r) for r in rows if r.get("status") in TERMINAL]
    for i in range(0, len(ops), MAX_TRANSACTION_OPS):
        tables.transact(ROLLOUTS, endpoint, ops[i:i + MAX_TRANSACTION_OPS])
    return got.continuation
