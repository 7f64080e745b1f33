"""Retention of the endpoint histories that must not grow with history (issue 16, item 10): finished
rollouts with their analysis runs, monitor decisions and judged windows are found by a
time-ordered range read and deleted oldest first, reading only what is deleted; retention keeps
up with a write rate past the old hourly cap; rows written before the indexes are migrated; and
the poisoned command's record is found among the open ones, not the history. Reads are counted
by bench.status_page.Counted around the real backends (SQLite and Azurite)."""

from __future__ import annotations

import contextlib
import dataclasses
import tempfile
import uuid
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from bench.status_page import Counted
from handlers import operators, repair
from shared import commands, journal, rollouts
from shared.delivery import store as analyses
from shared.monitoring import store as monitor_store
from shared.queues import COMMANDS_QUEUE, POISON_SUFFIX
from shared.tables import TableService
from shared.tables.sqlite import SqliteTableService
from tests.engine import ENDPOINT, Driver, Faults, FaultyTables, StorageFault

OLD, NEW, HORIZON = 1000.0, 10**6, 5000.0



def finished_rollouts(tables: TableService, endpoint: str, n: int, *, at: float, tag: str, runs: int = 0) -> list[str]:
    """``n`` rollouts created and ended at ``at``, each with ``runs`` analysis runs."""
    ids = []
    for i in range(n):
        rid = rollouts.rollout_id(tag, str(i), "prod")
        rollouts.claim(tables, endpoint, rid, {"model": "m", "version": f"{tag}{i}", "target": {"served_entities": []}},
                       now=at)
        for stage in range(1, runs + 1):
            analyses.put(tables, endpoint, {"id": analyses.key(rid, stage, 1), "rollout": rid, "finished_at": at})
        entity = rollouts.get(tables, endpoint, rid)
        assert entity is not None
        rollouts.finish(tables, entity, "", now=at, status="done", reason="history")
        ids.append(rid)
    return ids


def test_rollout_retention_reads_only_what_it_deletes(tables: TableService) -> None:
    """L6 on both backends: 3 rollouts (2 analysis runs each) ended before the horizon among 20,
    then 200, that ended after it, and one started before it that is still running; retention
    deletes exactly the 3 and their runs, reading the 3 index entries and the 6 runs either way."""
    endpoint = f"ep-{uuid.uuid4().hex[:8]}"
    running = rollouts.rollout_id("running", "0", "prod")
    rollouts.claim(tables, endpoint, running, {"model": "m", "version": "r", "target": {}}, now=OLD)
    reads, kept = [], 0
    for round_, history in enumerate((20, 200)):
        due = finished_rollouts(tables, endpoint, 3, at=OLD, tag=f"due{round_}", runs=2)
        kept += len(finished_rollouts(tables, endpoint, history - kept, at=NEW, tag=f"new{round_}", runs=1))
        counted = Counted(tables)
        deleted = rollouts.delete_finished(counted, endpoint, older_than=HORIZON, limit=100,  # type: ignore[arg-type]
                                           before=lambda rid, c=counted: analyses.delete_for_rollout(c, endpoint, rid))
        assert deleted == 3 and all(rollouts.get(tables, endpoint, rid) is None for rid in due)
        assert all(analyses.for_rollout(tables, endpoint, rid) == [] for rid in due)
        reads.append(counted.entities)
    assert reads == [3 + 6, 3 + 6], reads
    left = rollouts.for_endpoint(tables, endpoint)
    assert len(left) == kept + 1 and rollouts.get(tables, endpoint, running) is not None
    assert len(analyses.page(tables, endpoint, limit=1000, continuation=None).entities) == kept
    shown = rollouts.page(tables, endpoint, limit=1000, continuation=None)[0]
    assert sorted(r["id"] for r in shown) == sorted(r["id"] for r in left)  # no index row shown


def test_monitor_retention_reads_only_what_it_deletes(tables: TableService) -> None:
    """3 decisions and 2 windows older than the horizon among 20, then 200, newer ones of each:
    retention deletes exactly them, reading the 3 decisions and the 2 windows' index entries."""
    endpoint = f"ep-{uuid.uuid4().hex[:8]}"
    reads, newer = [], 0
    for round_, history in enumerate((20, 200)):
        for i in range(3):
            monitor_store.record_decision(tables, endpoint, {"verdict": "ok"}, now=OLD + i)
        for i in range(2):
            start = OLD + round_ * 100 + i * 10
            monitor_store.save_window(tables, endpoint, "1", start, {"start": start, "end": start + 10})
        for i in range(newer, history):
            monitor_store.record_decision(tables, endpoint, {"verdict": "ok"}, now=NEW + i)
            start = NEW + i * 10
            monitor_store.save_window(tables, endpoint, "1", start, {"start": start, "end": start + 10})
        newer = history
        counted = Counted(tables)
        assert monitor_store.delete_older(counted, endpoint, older_than=HORIZON, limit=100) == 5  # type: ignore[arg-type]
        reads.append(counted.entities)
    assert reads == [5, 5], reads
    assert len(monitor_store.decisions_page(tables, endpoint, limit=1000, continuation=None).entities) == 200
    assert [w["start"] for w in monitor_store.windows(tables, endpoint, "1")] == [NEW + i * 10 for i in range(200)]


def test_a_versions_windows_are_read_by_their_range_only(tables: TableService) -> None:
    """The check reads one version's windows: not the baselines, nor other versions' windows."""
    endpoint = f"ep-{uuid.uuid4().hex[:8]}"
    monitor_store.freeze_baseline(tables, endpoint, "1", {"version": "1"})
    for i in range(50):
        monitor_store.save_window(tables, endpoint, "1", i * 10.0, {"start": i * 10.0, "end": i * 10.0 + 10})
    for i in range(3):
        monitor_store.save_window(tables, endpoint, "2", i * 10.0, {"start": i * 10.0, "end": i * 10.0 + 10})
    counted = Counted(tables)
    assert [w["start"] for w in monitor_store.windows(counted, endpoint, "2")] == [0.0, 10.0, 20.0]  # type: ignore[arg-type]
    assert counted.entities == 3, counted.entities


_STEPS = st.lists(st.tuples(st.sampled_from(["claim", "done", "failed", "aborted", "retain"]), st.integers(0, 2),
                            st.one_of(st.none(), st.integers(1, 3)), st.booleans()), max_size=20)


@settings(max_examples=60, deadline=None)
@given(steps=_STEPS)
def test_done_entries_follow_the_rollouts_whatever_fails(steps) -> None:
    """L6 and L9 as properties: after any sequence of claims (which supersede a queued rollout),
    ends and retention runs of three rollouts (created at distinct times), any write failing
    before or after it takes effect, each terminal rollout has exactly one done entry and no other
    rollout has one, every rollout has exactly one new entry and no entry outlives its rollout,
    and the endpoint's pages list every rollout once, newest first; L1 holds meanwhile."""
    with tempfile.TemporaryDirectory() as tmp:
        tables = SqliteTableService(f"{tmp}/s.db")
        for now, (action, which, fault, after) in enumerate(steps):
            rid, faulty = f"r{which}", FaultyTables(tables, Faults(at=fault, after=after))
            with contextlib.suppress(StorageFault):
                if action == "claim":
                    rollouts.claim(faulty, "ep", rid, {"model": "m", "version": rid, "target": {}}, now=float(now))
                elif action == "retain":
                    rollouts.delete_finished(faulty, "ep", older_than=float(now), limit=2)
                elif (entity := rollouts.get(tables, "ep", rid)) and entity.data["status"] not in rollouts.TERMINAL:
                    rollouts.finish(faulty, entity, "", now=float(now), status=action, reason="test")
            rows = {e.row_key: e.data for e in tables.query(rollouts.ROLLOUTS, "ep")}
            kept = {k: r for k, r in rows.items() if not k.startswith("~") and k != rollouts.LEASE}
            terminal = sorted(k for k, r in kept.items() if r.get("status") in rollouts.TERMINAL)
            assert sorted(r["key"] for k, r in rows.items() if k.startswith("~done:")) == terminal, rows
            assert sorted(r["key"] for k, r in rows.items() if k.startswith("~new:")) == sorted(kept), rows
            shown, token = [], None
            while True:
                got, _, token = rollouts.page(tables, "ep", limit=1, continuation=token)
                shown += got
                if token is None:
                    break
            newest_first = sorted(kept.values(), key=lambda r: r["created_at"], reverse=True)
            assert [r["id"] for r in shown] == [r["id"] for r in newest_first], shown
            lease = rows.get(rollouts.LEASE, {})
            assert all(rows[lease[s]]["status"] not in rollouts.TERMINAL for s in ("active", "queued") if lease.get(s))


def seed_hour(d: Driver, per_tick: int, tag: str, n: int) -> int:
    """An hour of ``per_tick`` rollouts ending per 30 s sweep tick; asserts each tick reads no
    more than what retention deletes plus a constant. Returns the count of rollouts written."""
    for _ in range(120):
        for _ in range(per_tick):
            finished_rollouts(d.raw_tables, ENDPOINT, 1, at=d.clock.now, tag=f"{tag}-{n}")
            n += 1
        d.clock.now += 30
        counted = Counted(d.deps.tables)
        done = repair.tick(dataclasses.replace(d.deps, tables=counted))  # type: ignore[arg-type]
        # the deleted rollouts' entries (their run ranges are empty); the three marks, the lease
        assert counted.entities <= done["deleted"] + 6, (counted.entities, done)
    return n


def test_rollout_retention_keeps_up_with_a_write_rate_past_the_old_hourly_cap(tmp_path: Path) -> None:
    """300 rollouts ending an hour on one endpoint (the old sweep deleted at most 200 an hour per
    endpoint), for two hours, then two hours a retention period later: by the end every rollout
    past the horizon is gone and what is inside it stays."""
    d = Driver(tmp_path)
    horizon = d.deps.settings.rollout_retention_days * 86400
    for _ in range(len(journal.KINDS) + 3):
        d.sweep()  # the one-off migrations, over empty tables
    before = seed_hour(d, 5, "a", seed_hour(d, 5, "a", 0))
    d.clock.now += horizon
    after = seed_hour(d, 5, "b", seed_hour(d, 5, "b", 0))
    left = rollouts.for_endpoint(d.raw_tables, ENDPOINT)
    assert before == after == 1200 and all(r["finished_at"] >= d.clock.now - horizon for r in left), len(left)
    assert len(left) == after  # what is inside the horizon stays


def test_history_from_before_the_indexes_is_migrated_then_retained(tmp_path: Path) -> None:
    """Rows the previous version wrote: a finished rollout (no done entry) with its run, a judged
    window (no end entry), and a run whose rollout the old retention deleted. The sweep walks
    them a page per tick; the orphaned run goes, and past the horizons the rest goes too. After
    it, a tick reads one mark."""
    d = Driver(tmp_path)
    t = d.raw_tables
    rid = "0" * 24
    t.insert(rollouts.ROLLOUTS, ENDPOINT, rid, {"id": rid, "status": "done", "finished_at": d.clock.now,
                                                "created_at": d.clock.now})
    t.upsert(analyses.ANALYSES, ENDPOINT, analyses.key(rid, 1, 1), {"id": analyses.key(rid, 1, 1), "rollout": rid})
    t.upsert(analyses.ANALYSES, ENDPOINT, analyses.key("f" * 24, 1, 1), {"id": analyses.key("f" * 24, 1, 1)})
    t.upsert(monitor_store.MONITOR, ENDPOINT, "window~1~000000000000", {"start": 0.0, "end": d.clock.now})
    assert rollouts.page(t, ENDPOINT, limit=10, continuation=None)[0] == []  # not indexed yet
    for _ in range(len(journal.KINDS) + 4):
        d.sweep()
    assert t.get(repair.STATE, "repair", repair.HISTORY_INDEXES).data == {"done": True}  # type: ignore[union-attr]
    assert [r["id"] for r in rollouts.page(t, ENDPOINT, limit=10, continuation=None)[0]] == [rid]
    assert [e.row_key for e in t.query(analyses.ANALYSES, ENDPOINT)] == [analyses.key(rid, 1, 1)]
    d.clock.now += d.deps.settings.rollout_retention_days * 86400 + 1
    assert d.sweep()["deleted"] == 2  # the rollout, and the window (older than the records' horizon)
    assert t.query(rollouts.ROLLOUTS, ENDPOINT) == [] and t.query(analyses.ANALYSES, ENDPOINT) == []
    assert t.query(monitor_store.MONITOR, ENDPOINT) == []
    counted = Counted(d.deps.tables)
    repair._index_old_history(dataclasses.replace(d.deps, tables=counted))  # type: ignore[arg-type]
    assert counted.entities == 1


def test_the_migration_indexes_old_rollouts_newest_first_and_the_page_drops_a_dangling_entry(
        tables: TableService) -> None:
    """L9 on both backends: rollouts written before the new index (one still running), migrated a
    page at a time twice over, are listed once each, newest first across pages, beside one
    created since; an entry whose rollout is gone (the migration raced retention) is skipped by
    the page and deleted."""
    endpoint = f"ep-{uuid.uuid4().hex[:8]}"
    old = [f"{i:024x}" for i in range(5)]
    for i, rid in enumerate(old):  # ids ascending, times descending: key order is the wrong order
        tables.insert(rollouts.ROLLOUTS, endpoint, rid, {"id": rid, "status": "running" if i == 0 else "done",
                                                          "created_at": OLD - i, "finished_at": OLD})
    for _ in range(2):
        token = rollouts.index_page(tables, endpoint, None)
        assert token is None
    new = rollouts.rollout_id("new", "0", "prod")
    rollouts.claim(tables, endpoint, new, {"model": "m", "version": "9", "target": {}}, now=NEW)
    doomed = next(e for e in tables.query(rollouts.ROLLOUTS, endpoint) if e.data.get("key") == old[2]
                  and e.row_key.startswith("~new:"))
    tables.delete(rollouts.ROLLOUTS, tables.get(rollouts.ROLLOUTS, endpoint, old[2]))  # type: ignore[arg-type]
    shown, token = [], None
    while True:
        got, _, token = rollouts.page(tables, endpoint, limit=2, continuation=token)
        shown += [r["id"] for r in got]
        if token is None:
            break
    assert shown == [new, old[0], old[1], old[3], old[4]], shown
    assert tables.get(rollouts.ROLLOUTS, endpoint, doomed.row_key) is None


def test_a_poisoned_command_without_an_id_is_found_among_the_open_commands(tmp_path: Path) -> None:
    """Its record is open, so the open index is where it is looked for: the reads do not grow
    with the finished commands."""
    d = Driver(tmp_path)
    body = b'{"command": "reconcile", "model": "fare"}'
    env = commands.requested(d.raw_tables, commands.parse(body, "m-1"))
    journal.begin(d.raw_tables, "command", env.key, now=d.clock.now, claim_seconds=45,
                  command=env.command.model_dump(mode="json"), body_sha=commands.digest(env.command))
    reads = []
    for history in (20, 200):
        for i in range(len(reads) * 20, history):
            journal.record(d.raw_tables, "command", journal.key("hist", str(i)), "done",
                           body_sha=commands.digest(env.command))
        counted = Counted(d.raw_tables)
        found = operators._original_records(dataclasses.replace(d.deps, tables=counted), body, "poison-copy")  # type: ignore[arg-type]
        assert found == [env.key]
        reads.append(counted.entities)
    assert reads[0] == reads[1], reads
    operators.record_poison(d.deps, COMMANDS_QUEUE + POISON_SUFFIX, body, "poison-copy")
    assert journal.get(d.raw_tables, "command", env.key)["status"] == "failed"  # type: ignore[index]


def test_the_monitor_reads_which_versions_served_from_the_lease_not_the_history(tmp_path: Path) -> None:
    """A check asks since when a version serves and which version served before it: one read of
    the lease, whatever the endpoint's finished rollouts (30, then 300); the answers are those the
    history gives."""
    from handlers import monitor

    d = Driver(tmp_path)
    reads, n = [], 0
    for history in (30, 300):
        for i in range(n, history):
            finished_rollouts(d.raw_tables, ENDPOINT, 1, at=1000.0 + i, tag=f"v{i}")
        n = history
        counted = Counted(d.raw_tables)
        deps = dataclasses.replace(d.deps, tables=counted)
        since = monitor._serving_since(deps, ENDPOINT)  # type: ignore[arg-type]
        previous = monitor._previous_version(deps, ENDPOINT, f"v{n - 1}0", 60.0, now=1000.0 + n)  # type: ignore[arg-type]
        reads.append(counted.entities)
        assert since(f"v{n - 1}0") == 1000.0 + n - 1 and previous == f"v{n - 2}0"
    assert reads == [2, 2], reads  # the lease, once per question
    assert since("v00") is None  # ended done more than 20 rollouts ago: the check's default start applies


def test_a_lease_from_before_the_served_list_answers_from_the_rows_until_a_rollout_ends(tmp_path: Path) -> None:
    d = Driver(tmp_path)
    for i in range(2):
        finished_rollouts(d.raw_tables, ENDPOINT, 1, at=1000.0 + i, tag=f"old{i}-")
    lease = d.raw_tables.get(rollouts.ROLLOUTS, ENDPOINT, rollouts.LEASE)
    assert lease is not None
    d.raw_tables.update(rollouts.ROLLOUTS, dataclasses.replace(lease, data={
        k: v for k, v in lease.data.items() if k != "served"}))  # as the previous version wrote it
    assert [r["version"] for r in rollouts.served(d.raw_tables, ENDPOINT)] == ["old0-0", "old1-0"]
    finished_rollouts(d.raw_tables, ENDPOINT, 1, at=2000.0, tag="new")
    assert [r["version"] for r in rollouts.lease(d.raw_tables, ENDPOINT)["served"]] == ["old0-0", "old1-0", "new0"]
