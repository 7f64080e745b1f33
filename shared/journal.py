"""The journal: every event and command we accepted, and how it ended.

One entity per record in the ``records`` table, partitioned by kind (``event``, ``command``,
``poison``). A record is written before the request is acknowledged and ends in a terminal
status (``done``, ``failed``, ``superseded``, ``rejected``, ``ignored``), with the reason.
Operators page through them (``GET /api/records``).

Two indexes live beside the records, in the same partition, so each is written in the same
entity-group transaction as the record it names (Azure's batch is all or nothing within one
partition): ``~open:<key>`` while a record is open, written with it and deleted as it closes,
and ``~done:<finish time, ms>:<key>`` from the moment it is terminal. The sweep reads the open
index, so its reads follow the open work, not the history; retention reads the done index from
its oldest end up to the horizon, so it reads only what it deletes. And
``~rejected:<inverted receipt time, ms>:<key>`` names each record that ended ``rejected``, written
with its done entry (which names it, so retention deletes all three at once): the "Log tail
pattern" of "Table design patterns" (Microsoft Learn,
https://learn.microsoft.com/en-us/azure/storage/tables/table-storage-design-patterns#log-tail-pattern),
so an ascending scan of a kind's partition reads its rejected records newest first and the
rejections page (:func:`rejected_page`) merges the kinds' scans. ``~`` sorts after every record
key (keys start with a namespace, a word), so the indexes are the partition's last rows.

Keys are namespaced by who chose the identifier (:func:`key`), so a sender-chosen id can never
collide with another sender's or with ours. A record is also the inbox entry of the work it
asks for: it keeps the command, and a worker acts only while it holds the record's claim
(``claim_until``, taken with a conditional write), so two deliveries of one message never both
act, and a claim left by a crashed worker expires and the repair sweep hands the work on.

Invariants (tests/test_journal.py, tests/test_rollout_engine.py):

- J1: a record, once terminal, keeps its status and outcome.
- J2: at most one worker holds a record's claim at a time.
- J3: a non-terminal record whose claim has expired is found by :func:`stale` (the sweep).
- J4: storage per rejected anonymous request is bounded (shared.rejections), not per request.
- J5: a record is open exactly while its ``~open:`` index entry exists, and terminal exactly
  while its ``~done:`` entry does (one transaction moves both; the one exception, an open entry
  the migration (:func:`backfill`) wrote for a record that closed meanwhile, is removed by
  :func:`open_records`), so the sweep and retention read O(open work) and O(records due) entities,
  whatever the finished history (tests/test_history.py).
- J6: a record is ``rejected`` exactly while its ``~rejected:`` entry exists (the transaction
  that ends it writes both, retention deletes both with the done entry; records rejected before
  the index get theirs from :func:`backfill`); an entry whose record is gone (the migration
  raced retention) is skipped and deleted by :func:`rejected_page`.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import time
import uuid
from dataclasses import dataclass
from typing import Any, Literal

from shared import redaction
from shared.redaction import redact_value
from shared.tables import (
    MAX_TRANSACTION_OPS,
    ConcurrencyConflict,
    Entity,
    EntityExists,
    Op,
    RowRange,
    TableService,
    continuation_keys,
    continuation_token,
    delete_indexed,
)

TABLE = "records"
KINDS = ("event", "command", "poison")
TERMINAL = frozenset({"done", "failed", "superseded", "rejected", "ignored"})
_MAX_EXCERPT = 2048
_SAFE_ID = re.compile(r"[A-Za-z0-9._@=+-]{1,200}")
_NAMESPACE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
KEY_PATTERN = re.compile(r"[A-Za-z0-9._@=+:~-]{1,250}")  # what key makes
_OPEN, _DONE, _REJECTED = "~open:", "~done:", "~rejected:"
_NEWEST = 10**15 - 1  # the inverted times stay 15 digits until the year 33658


def _open_key(record_key: str) -> str:
    return _OPEN + record_key


def _done_key(at: float, record_key: str) -> str:
    return f"{_DONE}{max(0, int(at * 1000)):015d}:{record_key}"


def _rejected_key(received_at: float, record_key: str) -> str:
    return f"{_REJECTED}{_NEWEST - max(0, int(received_at * 1000)):015d}:{record_key}"


def _closing_ops(at: float, data: dict[str, Any]) -> list[Op]:
    """The index entries of a record that ends (J5, J6): its done entry and, if rejected, its
    rejected entry, which the done entry names so retention deletes it unread."""
    rk = data["key"]
    if data.get("status") != "rejected":
        return [Op("upsert", _done_key(at, rk), {"key": rk})]
    rejected = _rejected_key(data.get("received_at") or 0, rk)
    return [Op("upsert", _done_key(at, rk), {"key": rk, "rejected": rejected}), Op("upsert", rejected, {"key": rk})]


def _batches(groups: list[list[Op]]) -> list[list[Op]]:
    """The groups packed into transactions of at most MAX_TRANSACTION_OPS, none split: what one
    record's entries are, they are together."""
    out: list[list[Op]] = [[]]
    for group in groups:
        if len(out[-1]) + len(group) > MAX_TRANSACTION_OPS:
            out.append([])
        out[-1].extend(group)
    return [b for b in out if b]


def _is_record(entity: Entity) -> bool:
    return not entity.row_key.startswith("~")


def key(namespace: str, ident: str) -> str:
    """The row key of a record whose id ``ident`` was chosen by ``namespace`` (a sender or us).

    A readable ``namespace:ident`` when the id is short and plain; otherwise ``namespace~`` and
    a hash, so no id can reach a key character Azure forbids (``/ \\ # ?``, controls) or look
    like another namespace's key. A namespace is a word, so no key sorts among the indexes."""
    if not _NAMESPACE.fullmatch(namespace):
        raise ValueError(f"record namespace {namespace!r} is not a word")
    if _SAFE_ID.fullmatch(ident):
        return f"{namespace}:{ident}"
    return f"{namespace}~{hashlib.sha256(ident.encode('utf-8', 'surrogatepass')).hexdigest()[:40]}"


def excerpt(body: bytes) -> str:
    """What we keep of a rejected body: enough to diagnose, never unbounded, and redacted before
    it is cut (shared.redaction.excerpt), so a credential across the cut is masked whole."""
    return redaction.excerpt(body, _MAX_EXCERPT) + ("…" if len(body) > _MAX_EXCERPT else "")


def record(tables: TableService, kind: str, record_key: str, status: str, **fields: Any) -> tuple[dict[str, Any], bool]:
    """Insert a record and its index entry in one transaction (J5); returns (record, created). An
    existing record is returned unchanged."""
    now = time.time()
    # What operators read never carries a credential (shared.redaction), whatever a sender put in.
    data = {"kind": kind, "id": record_key, "status": status, "received_at": now, "updated_at": now,
            **redact_value(fields), "key": record_key}
    entries = _closing_ops(now, data) if status in TERMINAL else [Op("upsert", _open_key(record_key),
                                                                         {"key": record_key})]
    try:
        tables.transact(TABLE, kind, [Op.insert(record_key, data), *entries])
        return data, True
    except EntityExists:
        existing = tables.get(TABLE, kind, record_key)
        return (existing.data if existing else data), False


@dataclass(frozen=True)
class Begun:
    """What :func:`begin` found: ``new`` or ``claimed`` (act on it), ``busy`` (another worker
    holds the claim), or ``finished`` (terminal: a duplicate)."""

    state: Literal["new", "claimed", "busy", "finished"]
    record: dict[str, Any]

    @property
    def act(self) -> bool:
        return self.state in ("new", "claimed")


def begin(tables: TableService, kind: str, record_key: str, *, now: float, claim_seconds: float,
          **fields: Any) -> Begun:
    """Record the request and take its claim, or take the claim of an earlier delivery of it
    whose worker is gone (its claim expired). Exactly one caller gets to act (J2)."""
    holder = uuid.uuid4().hex
    data, created = record(tables, kind, record_key, "accepted", claim_until=now + claim_seconds,
                           claim_holder=holder, attempts=1, **fields)
    if created:
        return Begun("new", data)
    return claim(tables, kind, record_key, now=now, claim_seconds=claim_seconds)


def claim(tables: TableService, kind: str, record_key: str, *, now: float, claim_seconds: float,
          token: str | None = None) -> Begun:
    """Take an open record's claim: when it has expired, or when ``token`` is the one its holder
    handed on (:func:`hand_on`). Conditional on the ETag, so one of two racing callers wins (J2)."""
    entity = tables.get(TABLE, kind, record_key)
    if entity is None:
        raise LookupError(f"{kind} record {record_key} does not exist")
    data = entity.data
    if data.get("status") in TERMINAL:
        return Begun("finished", data)
    handed = token is not None and data.get("claim_holder") == token
    if not handed and (data.get("claim_until") or 0) > now:
        return Begun("busy", data)
    data = {**data, "claim_until": now + claim_seconds, "claim_holder": uuid.uuid4().hex,
            "attempts": data.get("attempts", 0) + 1, "updated_at": now}
    try:
        tables.update(TABLE, Entity(entity.partition_key, entity.row_key, data, entity.etag))
    except ConcurrencyConflict:
        return Begun("busy", data)
    return Begun("claimed", data)


def hand_on(tables: TableService, kind: str, record_key: str, status: str, *, until: float,
            **fields: Any) -> str:
    """Pass the record's claim to a later message: returns the token that message presents to
    :func:`claim`. Until ``until`` nobody else (a duplicate, the sweep) takes it."""
    token = uuid.uuid4().hex
    update(tables, kind, record_key, status, claim_until=until, claim_holder=token, **fields)
    return token


def update(tables: TableService, kind: str, record_key: str, status: str, **fields: Any) -> dict[str, Any]:
    """Move a record on; returns it as stored. A terminal record keeps its outcome (J1)."""
    for _ in range(10):
        entity = tables.get(TABLE, kind, record_key)
        if entity is None:
            return record(tables, kind, record_key, status, **fields)[0]
        if entity.data.get("status") in TERMINAL:
            return entity.data
        now = time.time()
        entity.data.update(redact_value(fields), status=status, updated_at=now)
        try:
            if status in TERMINAL:  # closes: the open entry goes, the done entry comes, with it (J5)
                # A record written before the indexes existed has no open entry to delete.
                opened = tables.get(TABLE, kind, _open_key(record_key))
                tables.transact(TABLE, kind, [Op.update(entity), *([Op.delete(opened)] if opened else []),
                                              *_closing_ops(now, {**entity.data, "key": record_key})])
            else:
                tables.update(TABLE, entity)
            return entity.data
        except ConcurrencyConflict:
            continue
    raise ConcurrencyConflict(f"{TABLE}/{kind}/{record_key}: too many concurrent updates")


def get(tables: TableService, kind: str, record_key: str) -> dict[str, Any] | None:
    entity = tables.get(TABLE, kind, record_key)
    return entity.data if entity else None


def list_records(tables: TableService, kind: str | None = None, status: str | None = None) -> list[dict[str, Any]]:
    """Every record (of a kind, with a status), oldest first: for tests and the demo, whose
    journals are small. Operators page with :func:`page`."""
    filters = {"status": status} if status else {}
    rows = [e.data for e in tables.query(TABLE, kind, **filters) if _is_record(e)]
    return sorted(rows, key=lambda r: r.get("received_at", 0))


def page(tables: TableService, kind: str | None, status: str | None, *, limit: int,
         continuation: str | None) -> tuple[list[dict[str, Any]], str | None]:
    """One page of records in key order, filtered by status. A page may hold fewer than
    ``limit`` records when the filter drops some; the token continues after them."""
    got = tables.query_page(TABLE, kind, limit=limit, continuation=continuation)
    rows = [e.data for e in got.entities if _is_record(e) and (status is None or e.data.get("status") == status)]
    return rows, got.continuation


def rejected_page(tables: TableService, *, limit: int, continuation: str | None
                  ) -> tuple[list[dict[str, Any]], str | None]:
    """Up to ``limit`` rejected records of every kind, newest received first across pages (J6):
    per kind, ``limit`` entries of its rejected index after the token's entry, merged by row key
    (the inverted time; then the kind), and a point read per record shown; the token names the
    last entry shown (None: no more). ValueError for a token this service did not issue."""
    after = continuation_keys(continuation) if continuation else ("", "")
    stop = RowRange.prefix(_REJECTED).stop
    found: list[tuple[str, str, Entity]] = []
    more = False
    for kind in KINDS:
        # Order is (row key, kind): a kind after the token's may repeat its row key. A space sorts
        # before every character a key may hold (KEY_PATTERN), so key + " " starts just past key.
        start = max(_REJECTED, after[1] + ("" if kind > after[0] else " "))
        got = tables.query_page(TABLE, kind, limit=limit, rows=RowRange(start, stop))
        found += [(e.row_key, kind, e) for e in got.entities]
        more = more or got.continuation is not None
    found.sort(key=lambda f: (f[0], f[1]))
    shown, rows = found[:limit], []
    for _, kind, entry in shown:
        rec = get(tables, kind, entry.data["key"])
        if rec is None:  # dangling (J6): the migration raced retention
            with contextlib.suppress(ConcurrencyConflict):
                tables.delete(TABLE, entry)
        else:
            rows.append(rec)
    more = more or len(found) > limit
    return rows, continuation_token(shown[-1][1], shown[-1][0]) if more and shown else None


def open_records(tables: TableService, kind: str) -> list[dict[str, Any]]:
    """Every open record of ``kind``, through the open index and the records it names: O(open
    work), not O(history) (J5). An entry :func:`backfill` left for a record that closed meanwhile
    is removed on the way."""
    found = []
    for entry in tables.query(TABLE, kind, rows=RowRange.prefix(_OPEN)):
        rec = get(tables, kind, entry.data["key"])
        if rec is None or rec.get("status") in TERMINAL:
            with contextlib.suppress(ConcurrencyConflict):
                tables.delete(TABLE, entry)
        else:
            found.append(rec)
    return found


def stale(tables: TableService, kind: str, *, now: float) -> list[dict[str, Any]]:
    """Open records whose claim has expired: their worker is gone or their message is lost (J3)."""
    return [rec for rec in open_records(tables, kind) if (rec.get("claim_until") or 0) <= now]


def backfill(tables: TableService, kind: str, continuation: str | None) -> str | None:
    """One page of the migration to the indexes: give the records of ``kind`` on the page at
    ``continuation`` the entry of their state, as records written before the indexes existed
    have none; returns where the next page starts, None after the last. Entries are upserted, so
    a page done twice is harmless; an open entry written for a record that closed meanwhile is
    removed by :func:`open_records`."""
    got = tables.query_page(TABLE, kind, continuation=continuation, rows=RowRange("", "~"))  # records only
    groups = [_closing_ops(e.data.get("updated_at") or 0, {**e.data, "key": e.row_key})
              if e.data.get("status") in TERMINAL else [Op("upsert", _open_key(e.row_key), {"key": e.row_key})]
              for e in got.entities]
    for ops in _batches(groups):
        tables.transact(TABLE, kind, ops)
    return got.continuation


BATCH = MAX_TRANSACTION_OPS // 2  # records per batch: a record and its done entry (and rejected entry) each


def delete_finished(tables: TableService, kind: str, *, older_than: float) -> int:
    """Retention: delete the oldest (at most :data:`BATCH`) terminal records that ended before
    ``older_than``, each with its index entries in the same transaction; returns how many. Reads
    the done index from its oldest end, so it reads only what it deletes (J5, J6)."""
    due = tables.query_page(TABLE, kind, limit=BATCH, rows=RowRange(_DONE, _done_key(older_than, ""))).entities
    deleted = 0
    # Up to three deletes per record (J6), so a third of a transaction's operations per part.
    for i in range(0, len(due), MAX_TRANSACTION_OPS // 3):
        part = due[i:i + MAX_TRANSACTION_OPS // 3]
        try:
            tables.transact(TABLE, kind, [op for e in part for op in
                                          (Op("delete", e.data["key"]), Op.delete(e),
                                           *(Op("delete", k) for k in _rejected_of(e)))])
            deleted += len(part)
        except ConcurrencyConflict:  # a record already gone (deleted by hand): each on its own
            deleted += sum(delete_indexed(tables, TABLE, e, _rejected_of(e)) for e in part)
    return deleted


def _rejected_of(done_entry: Entity) -> tuple[str, ...]:
    return (done_entry.data["rejected"],) if "rejected" in done_entry.data else ()


