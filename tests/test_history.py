"""Work that must not grow with history (issue 16, items 10 and 11): the repair sweep finds open
work by an index of it, retention deletes by a time-ordered index and keeps up with the
product's write rate, and one rollout's view reads that rollout's analysis runs only. Reads are
counted by bench.status_page.Counted around the real backends (SQLite, and Azurite where the
storage port is exercised directly)."""

from __future__ import annotations

import contextlib
import dataclasses
import uuid
from pathlib import Path
from types import SimpleNamespace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bench.status_page import Counted
from handlers import operators, repair
from handlers.http_types import Request
from shared import journal, rollouts
from shared.delivery import store as analyses
from shared.tables import Entity, RowRange, TableService
from shared.tables.sqlite import SqliteTableService
from tests.engine import ENDPOINT, MODEL, Driver, Faults, FaultyTables, StorageFault

CLAIM = 45.0



def finished(tables: TableService, kind: str, n: int, *, start: int = 0) -> None:
    for i in range(start, start + n):
        key = journal.key("hist", f"{kind}-{i}")
        journal.begin(tables, kind, key, now=0.0, claim_seconds=CLAIM)
        journal.update(tables, kind, key, "done", reason="history")


def test_the_sweep_reads_the_open_work_not_the_finished_history(tables: TableService) -> None:
    """J3 and J5 on both backends: 3 open records whose claim expired among 40, then 400,
    finished ones; the sweep finds exactly them and reads the same entities either way: each
    open index entry and the record it names."""
    kind = f"command{uuid.uuid4().hex[:8]}"  # a partition of this test's own
    for i in range(3):
        journal.begin(tables, kind, journal.key("open", str(i)), now=0.0, claim_seconds=CLAIM)
    journal.begin(tables, kind, journal.key("busy", "0"), now=1e12, claim_seconds=CLAIM)  # claimed: not stale
    reads = []
    for history in (40, 400):
        finished(tables, kind, history - len(reads) * 40, start=len(reads) * 40)
        counted = Counted(tables)
        found = journal.stale(counted, kind, now=CLAIM + 1)  # type: ignore[arg-type]
        assert sorted(r["key"] for r in found) == [journal.key("open", str(i)) for i in range(3)]
        reads.append(counted.entities)
    assert reads == [2 * 4, 2 * 4], reads  # 4 open entries and their 4 records, whatever the history
    again = journal.begin(tables, kind, journal.key("busy", "0"), now=1e12, claim_seconds=CLAIM)
    assert again.state == "busy"  # a second delivery meets the record (the transaction's insert conflicts)
    assert len(journal.page(tables, kind, None, limit=1000, continuation=None)[0]) == 404  # no index row shown


def test_one_rollouts_view_reads_its_own_analysis_runs_only(tmp_path: Path) -> None:
    d = Driver(tmp_path)
    d.registry.register()
    d.command({"command": "reconcile", "model": MODEL})
    d.run()
    (row,) = d.rollouts()
    for n in range(300):  # the endpoint's history: other rollouts' runs, before and after its own
        other = rollouts.rollout_id("history", str(n), "prod")
        for stage in (1, 2, 3):
            analyses.put(d.raw_tables, ENDPOINT, {"id": analyses.key(other, stage, 1), "rollout": other})
    own = [{"id": analyses.key(row["id"], stage, run), "rollout": row["id"]} for stage in (1, 2) for run in (1, 2)]
    for record in own:
        analyses.put(d.raw_tables, ENDPOINT, record)
    counted = Counted(d.deps.tables)
    resp = operators.list_rollouts(dataclasses.replace(d.deps, tables=counted),  # type: ignore[arg-type]
                                   Request("GET", b"", params={"endpoint": ENDPOINT, "rollout": row["id"]}))
    assert resp.status == 200 and resp.payload["analyses"] == own
    assert counted.entities == 1 + len(own), counted.entities  # the rollout row, then its runs


@pytest.mark.parametrize("after", [False, True], ids=["fails-before", "fails-after"])
def test_a_record_opens_and_closes_with_its_index_entries_or_not_at_all(tables: TableService, after: bool) -> None:
    """A failure injected at the write that opens a record, then at the one that closes it,
    taking effect or not (a timeout hiding a success): the record and its index entry move
    together, so a record whose worker crashed right after opening is found by the sweep, and
    one that closed is not."""
    kind, key = f"command{uuid.uuid4().hex[:8]}", journal.key("crash", "1")
    faulty = FaultyTables(tables, Faults(at=1, after=after))
    with pytest.raises(StorageFault):
        journal.begin(faulty, kind, key, now=0.0, claim_seconds=CLAIM)
    assert faulty.faults.fired == ["transact records"]
    if not after:
        assert tables.query(journal.TABLE, kind) == [] and journal.stale(tables, kind, now=CLAIM + 1) == []
        journal.begin(tables, kind, key, now=0.0, claim_seconds=CLAIM)  # the redelivery opens it
    assert [r["key"] for r in journal.stale(tables, kind, now=CLAIM + 1)] == [key]  # the worker is gone
    faulty = FaultyTables(tables, Faults(at=1, after=after))
    with pytest.raises(StorageFault):
        journal.update(faulty, kind, key, "done", reason="closed")
    assert faulty.faults.fired == ["transact records"]
    closed = journal.get(tables, kind, key)["status"] == "done"  # type: ignore[index]
    assert closed is after
    assert [r["key"] for r in journal.stale(tables, kind, now=CLAIM + 1)] == ([] if after else [key])
    rows = [e.row_key for e in tables.query(journal.TABLE, kind)]
    assert len(rows) == 2 and rows[0] == key and rows[1].startswith("~done:" if after else "~open:"), rows


def test_a_record_written_before_the_indexes_existed_still_closes(tables: TableService) -> None:
    """A record left open by the previous version (no open entry) closes, and gets its done entry."""
    kind, key = f"command{uuid.uuid4().hex[:8]}", journal.key("legacy", "1")
    tables.insert(journal.TABLE, kind, key, {"kind": kind, "id": key, "key": key, "status": "accepted",
                                             "received_at": 0.0, "updated_at": 0.0, "claim_until": 0.0})
    assert journal.update(tables, kind, key, "done", reason="closed")["status"] == "done"
    rows = [e.row_key for e in tables.query(journal.TABLE, kind)]
    assert len(rows) == 2 and rows[0] == key and rows[1].startswith("~done:"), rows


def test_an_open_entry_left_for_a_closed_record_is_removed_by_the_sweep(tables: TableService) -> None:
    """What the migration leaves when it indexes a record as open while the record closes."""
    kind, key = f"command{uuid.uuid4().hex[:8]}", journal.key("raced", "1")
    journal.record(tables, kind, key, "done")
    tables.upsert(journal.TABLE, kind, "~open:" + key, {"key": key})
    assert journal.stale(tables, kind, now=1e12) == []
    assert [e.row_key.split(":")[0] for e in tables.query(journal.TABLE, kind)] == ["raced", "~done"]


def test_retention_keeps_up_with_a_write_rate_past_the_old_hourly_cap(tmp_path: Path, monkeypatch) -> None:
    """1,200 records an hour (the old sweep deleted at most 200 an hour per kind) for two hours,
    then again two hours a retention period later, a sweep every 30 s: by the end every record
    past the horizon is gone, and no tick reads more than it deletes plus one empty page per kind."""
    d = Driver(tmp_path)
    monkeypatch.setattr(journal, "time", SimpleNamespace(time=d.clock))  # records stamped by the test's clock
    horizon = d.deps.settings.record_retention_days * 86400
    per_tick, n = 10, 0  # 10 records per 30 s tick: 1,200 an hour

    def two_hours() -> None:
        nonlocal n
        for _ in range(240):
            for _ in range(per_tick):
                journal.record(d.raw_tables, "command", journal.key("hist", str(n)), "done")
                n += 1
            d.clock.now += 30
            counted = Counted(d.deps.tables)
            done = repair.tick(dataclasses.replace(d.deps, tables=counted))  # type: ignore[arg-type]
            # the done entries it deleted by, an empty page per kind, the lease, the hourly mark
            assert counted.entities <= done["deleted"] + 8, (counted.entities, done)

    for _ in journal.KINDS:
        d.sweep()  # the one-off migration (test below) walks its empty kinds first
    two_hours()
    first = n
    d.clock.now += horizon
    two_hours()
    left = journal.list_records(d.raw_tables, "command")
    assert all(r["updated_at"] >= d.clock.now - horizon for r in left)
    assert len(left) >= n - first - per_tick  # what is inside the horizon stays


_STEPS = st.lists(st.tuples(st.sampled_from(["begin", "claim", "hand_on", "running", "done", "failed", "rejected",
                                             "retain"]),
                            st.integers(0, 2), st.one_of(st.none(), st.integers(1, 3)), st.booleans()),
                  max_size=25)


@settings(max_examples=60, deadline=None)
@given(steps=_STEPS)
def test_index_entries_follow_the_records_whatever_fails(steps) -> None:
    """J5 and J6 as properties: after any sequence of the journal's writes and retention runs on
    three records, any of them failing before or after it takes effect, each record has exactly
    the index entries of its state, no entry names a record that is not there, and the rejected
    ones are listed once each."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        tables = SqliteTableService(f"{tmp}/s.db")
        for action, which, fault, after in steps:
            key, faulty = journal.key("p", str(which)), FaultyTables(tables, Faults(at=fault, after=after))
            with contextlib.suppress(StorageFault, LookupError):
                if action == "begin":
                    journal.begin(faulty, "command", key, now=0.0, claim_seconds=CLAIM)
                elif action == "claim":
                    journal.claim(faulty, "command", key, now=CLAIM + 1, claim_seconds=CLAIM)
                elif action == "hand_on":
                    journal.hand_on(faulty, "command", key, "running", until=1.0)
                elif action == "retain":
                    journal.delete_finished(faulty, "command", older_than=1e12)
                else:
                    journal.update(faulty, "command", key, action)
            rows = {e.row_key: e for e in tables.query(journal.TABLE, "command")}
            records = {k: e.data for k, e in rows.items() if not k.startswith("~")}
            opened = {e.data["key"] for k, e in rows.items() if k.startswith("~open:")}
            done = [e.data["key"] for k, e in rows.items() if k.startswith("~done:")]
            assert opened == {k for k, r in records.items() if r["status"] not in journal.TERMINAL}, rows
            assert sorted(done) == sorted(k for k, r in records.items() if r["status"] in journal.TERMINAL), rows
            rejected = sorted(k for k, r in records.items() if r["status"] == "rejected")
            assert sorted(e.data["key"] for k, e in rows.items() if k.startswith("~rejected:")) == rejected, rows
            assert sorted(r["key"] for r in journal.rejected_page(tables, limit=5, continuation=None)[0]) == rejected


def test_rejected_records_of_every_kind_page_newest_first_old_ones_once_migrated(tables: TableService) -> None:
    """J6 on both backends: records rejected at distinct times, of every kind (the index is per
    kind's partition), one of them written before the index, paged two at a time: after the
    migration each appears once, newest received first across pages; an entry whose record is
    gone is skipped and deleted; a token this service did not issue is a ValueError."""
    keys = [journal.key(f"rej{uuid.uuid4().hex[:6]}", str(i)) for i in range(6)]
    for i, key in enumerate(keys):
        kind = journal.KINDS[i % 3]
        journal.record(tables, kind, key, "accepted")
        stored = tables.get(journal.TABLE, kind, key)
        assert stored is not None
        # The receipt times are distinct and ascending whatever the clock's resolution.
        tables.update(journal.TABLE, Entity(kind, key, {**stored.data, "received_at": 1e9 + i}, stored.etag))
        journal.update(tables, kind, key, "rejected", reason=f"bad {i}")
    legacy = journal.key(f"rej{uuid.uuid4().hex[:6]}", "legacy")
    tables.insert(journal.TABLE, "poison", legacy, {"kind": "poison", "id": legacy, "key": legacy, "status": "rejected",
                                                   "received_at": 1e9 + 2.5, "updated_at": 1e9 + 2.5})
    gone = tables.get(journal.TABLE, "event", keys[3])
    assert gone is not None

    def walk() -> list[str]:
        shown, token = [], None
        while True:
            got, token = journal.rejected_page(tables, limit=2, continuation=token)
            shown += [r["key"] for r in got if r["key"] in [*keys, legacy]]
            if token is None:
                return shown

    for kind in journal.KINDS:
        token = None
        while (token := journal.backfill(tables, kind, token)) is not None:
            pass
    tables.delete(journal.TABLE, gone)  # its entries stay: what a migration racing retention leaves
    assert walk() == [keys[5], keys[4], legacy, keys[2], keys[1], keys[0]]
    assert not [e for e in tables.query(journal.TABLE, "event", rows=RowRange.prefix("~rejected:"))
                if e.data["key"] == keys[3]]
    with pytest.raises(ValueError):
        journal.rejected_page(tables, limit=2, continuation="not-a-token")


def test_records_from_before_the_indexes_are_indexed_then_repaired_and_retained(tmp_path: Path) -> None:
    """The migration: an open command and a finished one written by the previous version (no
    index entries) are walked by the sweep, a page of a kind per tick; then the open one is
    redriven and the finished one, past the horizon, deleted. After it, a tick reads one mark."""
    d = Driver(tmp_path)
    for status in ("accepted", "done"):
        key = journal.key("legacy", status)
        d.raw_tables.insert(journal.TABLE, "command", key, {"kind": "command", "id": key, "key": key, "status": status,
                                                            "received_at": 0.0, "updated_at": 0.0, "claim_until": 0.0})
    done = [d.sweep() for _ in range(len(journal.KINDS) + 1)]
    assert sum(t["commands"] for t in done) == 1 and sum(t["deleted"] for t in done) == 1, done
    (left,) = journal.list_records(d.raw_tables, "command")
    assert left["key"] == journal.key("legacy", "accepted") and left["attempts"] == 1
    assert d.raw_tables.get(repair.STATE, "repair", repair.RECORD_INDEXES).data == {"done": True}  # type: ignore[union-attr]
