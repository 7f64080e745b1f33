"""The rollout engine's invariants over the real handlers and SQLite state, without HTTP
(tests/engine.py): a failure injected at every storage write and enqueue, the sequence that
used to wedge an endpoint, replayable ends, crashes, poison, and a first version that fails."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from handlers import commands, rollout
from shared import journal, rollouts
from shared.commands import Reconcile
from shared.queues import COMMANDS_QUEUE
from tests.engine import ENDPOINT, MODEL, Driver, Faults, StorageFault


def deploy(d: Driver, version: str, key: str | None = None) -> None:
    # Without a hold: these tests are about how deploys and reconciles interleave (holds: tests/test_undo_hold.py).
    d.command({"command": "deploy", "model": MODEL, "environment": "prod", "version": version, "hold": False,
               **({"id": key} if key else {})})


def reconcile(d: Driver, key: str | None = None) -> None:
    d.command({"command": "reconcile", "model": MODEL, **({"id": key} if key else {})})


def send_webhook(d: Driver, version: str, delivery: str | None = None) -> None:
    """As MLflow does: a 5xx answer is retried (MLflow, "Webhooks", https://mlflow.org/docs/latest/ml/webhooks)."""
    for _ in range(4):
        if d.webhook(version, delivery).status < 500:
            return
    raise AssertionError("the webhook kept answering 5xx")


def scenario(d: Driver) -> None:
    """v1 by webhook, a broken v2 by webhook (delivered twice), v3 by an explicit deploy."""
    v1, v2, v3 = (d.registry.register() for _ in range(3))
    d.serving_api.bad_answers.add(v2)
    d.registry.versions = [v1]
    send_webhook(d, v1, "delivery-1")
    d.run()
    d.registry.versions = [v1, v2]
    send_webhook(d, v2, "delivery-2")
    send_webhook(d, v2, "delivery-2")
    d.run()
    d.registry.versions = [v1, v2, v3]
    deploy(d, v3, key="ci-run-3")
    d.run()


def assert_healthy_end(d: Driver) -> None:
    d.check_quiet()


def test_the_scenario_without_faults(tmp_path: Path) -> None:
    d = Driver(tmp_path)
    scenario(d)
    assert_healthy_end(d)
    assert d.serving_api.serving(ENDPOINT) == ["3"] and d.registry.aliases == {"Champion": "3"}
    by_version = {r["version"]: r["status"] for r in d.rollouts()}
    assert by_version == {"1": "done", "2": "failed", "3": "done"}
    assert d.faults.count > 30


@pytest.mark.parametrize("after", [False, True], ids=["fails-before-write", "fails-after-write"])
def test_a_failure_at_every_storage_write_and_enqueue_still_ends_healthy(tmp_path: Path, after: bool) -> None:
    """Each run fails one write (insert, update, transaction, upsert, delete or enqueue), before
    it takes effect or after (a timeout that hides a success); redelivery and the repair sweep
    must still end every rollout and record, release the lease and serve the desired version."""
    clean = Driver(tmp_path / "clean")
    scenario(clean)
    total = clean.faults.count
    kinds: set[str] = set()
    for at in range(1, total + 1):
        d = Driver(tmp_path / f"{after}-{at}", Faults(at=at, after=after))
        scenario(d)
        d.run()
        kinds.update(w.split(" ")[0] for w in d.faults.fired)
        try:
            assert_healthy_end(d)
            # Desired state is the truth: one more reconcile brings the policy's version.
            reconcile(d)
            d.run()
            assert_healthy_end(d)
            assert d.serving_api.serving(ENDPOINT) == ["3"], d.rollouts()
            assert d.registry.aliases.get("Champion") == "3"
        except AssertionError as exc:
            raise AssertionError(f"fault at write {at} ({d.faults.fired}): {exc}") from exc
    assert {"transact", "update", "upsert", "send"} <= kinds, kinds  # a record opens and closes by transaction


def test_a_superseded_reconcile_rollout_never_wedges_the_lease(tmp_path: Path) -> None:
    """deploy v1; reconcile (latest v3); deploy v2 supersedes it; reconcile again: before, the
    second reconcile re-created the superseded rollout's id and a finished rollout took the lease."""
    d = Driver(tmp_path)
    v1, v2, v3 = (d.registry.register() for _ in range(3))
    d.serving_api.settle_reads = 50  # v1's update takes a while
    deploy(d, v1)
    for _ in range(8):
        d.step()
    assert any(r["step"] == "wait_deploy" for r in d.rollouts())
    reconcile(d)
    d.step()
    deploy(d, v2)
    d.step()
    reconcile(d)
    d.step()
    d.check_lease()
    d.serving_api.endpoints[ENDPOINT].reads_left = 0  # v1's update finishes now, later ones at once
    d.serving_api.settle_reads = 1
    d.run()
    assert_healthy_end(d)
    by_version = {}
    for r in d.rollouts():
        by_version.setdefault(r["version"], []).append(r["status"])
    # The newest request takes the queued slot; the older queued ones end superseded.
    assert by_version[v1] == ["done"] and by_version[v2] == ["superseded"]
    assert sorted(by_version[v3]) == ["done", "superseded"]
    reconcile(d)
    d.run()
    assert d.records()[-1]["outcome"] == ["prod: version 3 already serves"]
    assert d.serving_api.serving(ENDPOINT) == [v3]


def test_rollouts_that_end_in_one_host_run_are_checked_in_the_order_they_ended(tmp_path: Path) -> None:
    """Found by the property test: v2 serves; a deploy of a bad v1 is past its deploy step when
    a reconcile of v2 queues behind it; v1 is rolled back to v2, and the reconcile's rollout,
    handed the lease, finds v2 serving and ends at once. Both ended while the test clock stood
    still, so the quiet check, ordering ends by ``finished_at``, fell back to the rollouts' ids
    (hashes of random message ids) and, for about half of those ids, saw the reconcile's end
    before the rollback: "version 2 rolled out twice in a row". The keys give the reconcile's
    rollout the lower id, the order that used to fail."""
    d = Driver(tmp_path)
    v1, v2 = d.registry.register(), d.registry.register()
    d.serving_api.bad_answers.add(v1)
    reconcile(d)
    d.run()
    deploy(d, v1, key="deploy-1")
    while d.step():  # the deploy, then v1's steps up to its wait for the endpoint update
        pass
    reconcile(d, key="reconcile-2")
    assert d.step()
    assert rollouts.lease(d.raw_tables, ENDPOINT)["queued_version"] == v2
    d.run()
    by_key = {r["origin"]["id"]: r for r in d.rollouts()}
    rolled_back, again = by_key[journal.key("id", "deploy-1")], by_key[journal.key("id", "reconcile-2")]
    (first,) = [r for r in by_key.values() if r not in (rolled_back, again)]
    assert again["id"] < rolled_back["id"]  # among equal times, ordering by id would put it first
    assert (first["version"], first["status"]) == (v2, "done")
    assert rolled_back["status"] == "failed" and "rolled back to versions 2" in rolled_back["reason"]
    assert (again["version"], again["status"]) == (v2, "done")
    assert [h["step"] for h in again["history"]] == ["resolve", "promote"]  # v2 served: nothing written
    assert first["finished_at"] < rolled_back["finished_at"] < again["finished_at"]
    assert_healthy_end(d)
    assert d.serving_api.serving(ENDPOINT) == [v2]


def test_an_end_whose_after_effects_fail_is_finished_by_the_redelivery(tmp_path: Path, monkeypatch) -> None:
    """The end commits the terminal state and the lease hand-over together; waking the next
    holder and closing the command run again when the message comes back."""
    d = Driver(tmp_path)
    v1, v2 = d.registry.register(), d.registry.register()
    d.serving_api.settle_reads = 3
    deploy(d, v1)
    for _ in range(4):
        d.step()
    deploy(d, v2)
    real_kick, failed = rollout.kick, []

    def kick_fails_once_after_an_end(deps, endpoint, rid):
        ended = [r for r in rollouts.for_endpoint(deps.tables, endpoint) if r["status"] == "done"]
        if ended and not failed:
            failed.append(rid)
            raise RuntimeError("queue unavailable")
        return real_kick(deps, endpoint, rid)

    monkeypatch.setattr(rollout, "kick", kick_fails_once_after_an_end)
    with pytest.raises(RuntimeError, match="queue unavailable"):
        for _ in range(200):
            if not d.step():
                d.clock.now += 1
    assert failed
    v1_row = next(r for r in d.rollouts() if r["version"] == v1)
    assert v1_row["status"] == "done"  # committed with the lease hand-over
    assert rollouts.lease(d.raw_tables, ENDPOINT)["active"] == failed[0]
    d.clock.now += 700  # the host's receive timeout for the message that raised
    d.run()
    assert_healthy_end(d)
    assert d.serving_api.serving(ENDPOINT) == [v2]
    assert [r["status"] for r in d.records() if r["kind"] == "command"] == ["done", "done"]


def test_a_first_version_that_fails_its_gates_does_not_stay_serving(tmp_path: Path) -> None:
    d = Driver(tmp_path)
    v1 = d.registry.register()
    d.serving_api.bad_answers.add(v1)
    send_webhook(d, v1)
    d.run()
    (row,) = d.rollouts()
    assert row["status"] == "failed" and "the endpoint served nothing before, so it was deleted" in row["reason"]
    assert ENDPOINT not in d.serving_api.endpoints and "Champion" not in d.registry.aliases
    assert_healthy_end(d)


def test_concurrent_deliveries_of_one_event_act_once(tmp_path: Path) -> None:
    d = Driver(tmp_path)
    for n in range(30):
        version = d.registry.register()
        answers: list[str] = []
        barrier = threading.Barrier(2)

        def deliver(version=version, answers=answers, barrier=barrier, n=n):
            barrier.wait()
            answers.append(d.webhook(version, f"delivery-{n}").payload["status"])

        threads = [threading.Thread(target=deliver) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(answers) == ["accepted", "duplicate"], (n, answers)
    assert d.raw_queues.count(COMMANDS_QUEUE) == 30


def crash_next(d: Driver) -> None:
    """Kill the host while it runs the next message there is, moving time on as the host would."""
    for _ in range(100):
        if d.step(crash=True):
            return
        nxt = d.next_visible()
        d.clock.now = (nxt + 0.001) if nxt is not None else d.clock.now + 30
        d.sweep()
    raise AssertionError("no message to crash on")


def test_crashed_hosts_leave_nothing_open_for_more_than_two_minutes(tmp_path: Path) -> None:
    """20 host deaths during 6 rollouts: each drops the message it was running (it stays
    invisible for the receive timeout, 10 minutes). With the default settings (claims of 45 s,
    a grace of 30 s, the sweep every 30 s) everything ends within 2 minutes of the last one."""
    import random

    rng = random.Random(6)
    d = Driver(tmp_path)
    d.serving_api.settle_reads = 3
    for _ in range(6):
        v = d.registry.register()
        send_webhook(d, v)
        for _ in range(rng.randrange(0, 3)):
            d.step()
        for _ in range(3):
            crash_next(d)
    for _ in range(2):
        crash_next(d)
    assert d.crashes == 20
    last_crash = d.clock.now
    ended = d.run(sweep_every=30)
    assert d.settled(), [(r["key"], r["status"]) for r in d.records() if r["status"] not in journal.TERMINAL]
    assert ended - last_crash <= 120, f"took {ended - last_crash:.0f} s"
    assert_healthy_end(d)
    reconcile(d)
    d.run()
    assert d.serving_api.serving(ENDPOINT) == ["6"] and d.registry.aliases["Champion"] == "6"


def test_databricks_trouble_retries_a_command_inside_the_product(tmp_path: Path) -> None:
    """A registry outage longer than the host's retries (5 dequeues) never sends the command to
    poison: it backs off in its record and completes once the registry is back."""
    d = Driver(tmp_path)
    v1 = d.registry.register()
    real = d.registry.search_model_versions
    outage = {"calls": 0}

    def flaky(filter_string, **kw):
        outage["calls"] += 1
        if outage["calls"] <= 6:
            raise ConnectionError("registry unreachable")
        return real(filter_string, **kw)

    d.registry.search_model_versions = flaky
    reconcile(d)
    d.run()
    assert outage["calls"] > 6 and not d.poisoned
    (cmd,) = [r for r in d.records() if r["kind"] == "command"]
    assert cmd["status"] == "done" and cmd["attempts"] == 7 and "registry unreachable" in cmd["last_error"]
    assert d.serving_api.serving(ENDPOINT) == [v1]


def test_a_command_that_never_recovers_fails_with_its_last_error(tmp_path: Path) -> None:
    d = Driver(tmp_path)
    d.registry.register()

    def down(filter_string, **kw):
        raise ConnectionError("registry unreachable")

    d.registry.search_model_versions = down
    reconcile(d)
    d.run()
    (cmd,) = [r for r in d.records() if r["kind"] == "command"]
    assert cmd["status"] == "failed" and "gave up after 8 attempts" in cmd["reason"]
    assert not d.poisoned


def test_a_poisoned_command_closes_its_original_record(tmp_path: Path) -> None:
    """Storage that fails every read and update of command records once the first delivery has
    recorded its command: the host gives up after 5 dequeues (each redelivery fails reading the
    record it would answer as a duplicate); the poison copy (a new message id) still finds and
    closes the original record."""
    d = Driver(tmp_path)
    reconcile(d)  # nothing is registered: it would end "nothing to serve"
    inner = d.deps.tables.inner
    real_update, real_get, real_transact = inner.update, inner.get, inner.transact

    def records_cannot_be_updated(table, entity):
        if table == journal.TABLE and entity.partition_key == "command":
            raise StorageFault("table service unavailable")
        return real_update(table, entity)

    def records_cannot_be_read(table, partition_key, row_key):
        if table == journal.TABLE and partition_key == "command":
            raise StorageFault("table service unavailable")
        return real_get(table, partition_key, row_key)

    def records_cannot_be_closed(table, partition_key, ops):  # a record closes by a transaction with an update
        if table == journal.TABLE and partition_key == "command" and any(op.kind == "update" for op in ops):
            raise StorageFault("table service unavailable")
        return real_transact(table, partition_key, ops)

    inner.update, inner.get = records_cannot_be_updated, records_cannot_be_read
    inner.transact = records_cannot_be_closed
    for _ in range(6):
        d.clock.now += 60
        assert d.step()
    assert len(d.poisoned) == 1
    inner.update, inner.get, inner.transact = real_update, real_get, real_transact
    d.run()
    (cmd,) = [r for r in d.records() if r["kind"] == "command"]
    (poison,) = [r for r in d.records() if r["kind"] == "poison"]
    assert cmd["status"] == "failed" and cmd["poison"] == poison["id"] and "gave up" in cmd["reason"]


def test_no_secret_in_an_error_reaches_a_rollout_or_a_record(tmp_path: Path) -> None:
    """Errors quote what they were given; a connection string's password must not be stored."""
    from databricks.sdk.errors import DatabricksError

    d = Driver(tmp_path)
    v1 = d.registry.register()
    secret = "s3cr3t-Pa55"

    def leaky(name, dataframe_records, served=None):
        raise DatabricksError(f"lookup failed: postgresql://app@db.example/features?password={secret}&sslmode=require")

    d.serving_api.query = leaky
    send_webhook(d, v1)
    d.run()
    (row,) = d.rollouts()
    assert row["status"] == "failed" and "lookup failed: postgresql://app@db.example/features" in row["reason"]
    stored = json.dumps([d.rollouts(), d.records(), rollouts.lease(d.raw_tables, ENDPOINT)])
    assert secret not in stored and "password=***" in stored


def test_a_rollout_whose_endpoint_write_landed_is_never_superseded_unsmoked(tmp_path: Path, monkeypatch) -> None:
    """Found by the property test: the deploy step wrote the endpoint, its commit failed, and a
    newer rollout queued meanwhile. Superseding it then left an untested version serving, which
    the next rollout took as the config to restore."""
    d = Driver(tmp_path)
    v1 = d.registry.register()
    deploy(d, v1)
    d.run()
    v2, v3 = d.registry.register(), d.registry.register()
    d.serving_api.bad_answers.add(v2)
    real_advance, failed = rollouts.advance, []

    def commit_fails_after_the_write(tables, entity, note, **changes):
        if entity.data["step"] == "deploy" and entity.data["version"] == v2 and not failed:
            failed.append(entity.row_key)
            raise StorageFault("commit lost after the endpoint was written")
        return real_advance(tables, entity, note, **changes)

    monkeypatch.setattr(rollouts, "advance", commit_fails_after_the_write)
    deploy(d, v2)
    while not failed:
        assert d.step() or d.run(limit=1) is not None
    assert d.serving_api.endpoints[ENDPOINT].pending is not None  # v2's update is on its way
    # v3's deploy is handled before v2's step comes back, so v3 waits in the queued slot.
    commands.handle_message(d.deps, json.dumps({"command": "deploy", "model": MODEL, "environment": "prod",
                                                "version": v3}).encode(), "deploy-v3")
    assert rollouts.lease(d.raw_tables, ENDPOINT)["queued_version"] == v3
    d.run()
    by_version = {r["version"]: r for r in d.rollouts()}
    assert by_version[v2]["status"] == "failed" and "rolled back to versions 1" in by_version[v2]["reason"]
    assert by_version[v3]["status"] == "done"
    assert_healthy_end(d)
    assert d.serving_api.serving(ENDPOINT) == [v3]


def test_a_reconcile_that_sees_the_rollout_end_between_its_reads_starts_no_second_one(tmp_path: Path) -> None:
    """The demo's race: a rollout's own alias change sends a reconcile, which reads the lease
    (the rollout still active), and the rollout ends before it reads the endpoint. The endpoint
    then serves the version alone and nothing is active: already served, no second rollout."""
    d = Driver(tmp_path)
    v1 = d.registry.register()
    d.registry.versions = [v1]
    deploy(d, v1)
    while not any(r["step"] == "smoke" and r["status"] not in rollouts.TERMINAL for r in d.rollouts()):
        if not d.step():  # the next step waits on the endpoint: move the clock to it
            visible = d.next_visible()
            assert visible is not None, [r["step"] for r in d.rollouts()]
            d.clock.now = max(d.clock.now, visible + 0.001)
    (first,) = d.rollouts()
    served = d.serving_api.get

    def get_after_the_rollout_ended(name: str):
        entity = rollouts.get(d.raw_tables, ENDPOINT, first["id"])
        if entity is not None and entity.data["status"] != "done":
            rollouts.finish(d.raw_tables, entity, "", now=d.clock(), status="done", reason="ended meanwhile")
        return served(name)

    d.serving_api.get = get_after_the_rollout_ended
    (outcome,) = commands.reconcile(d.deps, Reconcile(command="reconcile", model=MODEL),
                                    {"kind": "event", "id": "alias-event"}, "cid")
    d.serving_api.get = served
    assert outcome.text == f"prod: version {v1} already serves"
    assert [r["id"] for r in d.rollouts()] == [first["id"]]
