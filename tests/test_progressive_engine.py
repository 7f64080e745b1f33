"""Progressive delivery on the rollout engine (tests/engine.py: the real handlers over SQLite,
a clock the test moves): the traffic steps and the configs written, the alias lifecycle, a host
killed at every message and a storage failure at every write of a canary, and every operator
command, including on a finished or unknown rollout. The analysis itself runs against the real
stack (tests/test_progressive_scenarios.py); here the canary's steps are timed, not analysed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from shared import journal, serving
from tests.engine import ENDPOINT, MODEL, Driver, Faults

CANARY = {
    "aliases": {"challenger": "Challenger", "champion": ["Champion"]},
    "strategy": {"kind": "canary", "bake": "2m", "abort_delay": "1m",
                 "steps": [{"weight": 10, "bake": "5m", "analysis": False},
                           {"weight": 50, "bake": "5m", "analysis": False}]},
}


def deploy(d: Driver, version: str, key: str | None = None) -> None:
    d.command({"command": "deploy", "model": MODEL, "environment": "prod", "version": version,
               **({"id": key} if key else {})})


def steer(d: Driver, command: str, key: str, **fields: Any) -> None:
    d.command({"command": command, "model": MODEL, "environment": "prod", "id": key, **fields})


def routes_of(d: Driver) -> list[dict[str, int]]:
    """Each config written, as version → traffic %."""
    out = []
    for cfg in d.serving_api.writes:
        names = {e["name"]: str(e["entity_version"]) for e in cfg["served_entities"]}
        out.append({names[n]: p for n, p in serving.routes(cfg).items()})
    return out


def first_version(d: Driver) -> tuple[str, str]:
    v1, v2 = d.registry.register(), d.registry.register()
    deploy(d, v1)
    d.run()
    return v1, v2


def run_until(d: Driver, cond, limit: int = 500) -> None:
    """Run messages (moving the clock to the next one) until ``cond()``."""
    for _ in range(limit):
        if cond():
            return
        if not d.step():
            nxt = d.next_visible()
            assert nxt is not None, "nothing left to run"
            d.clock.now = max(d.clock.now, nxt + 0.001)
    raise AssertionError(f"never reached; rollouts: {d.rollouts()}")


def live(d: Driver) -> dict[str, Any]:
    """The rollout in progress (empty before it exists or after it ended)."""
    return next((r for r in d.rollouts() if r["status"] == "running"), {})


def command_record(d: Driver, key: str) -> dict[str, Any]:
    return journal.get(d.raw_tables, "command", journal.key("id", key))


def test_a_canary_takes_10_then_50_then_100_percent_and_retires_the_old_version(tmp_path: Path) -> None:
    d = Driver(tmp_path, env=CANARY)
    v1, v2 = first_version(d)
    assert d.registry.aliases == {"Champion": v1}
    deploy(d, v2)
    run_until(d, lambda: live(d).get("step") == "bake" and live(d)["weight"] == 10)
    assert d.registry.aliases == {"Champion": v1, "Challenger": v2}
    shifted = live(d)["shifted_at"]
    run_until(d, lambda: live(d).get("step") == "bake" and live(d)["weight"] == 50)
    assert live(d)["shifted_at"] - shifted >= 300, "the 10% step was not baked for 5 minutes"
    d.run()
    d.check_quiet()
    (row,) = [r for r in d.rollouts() if r["version"] == v2]
    assert row["status"] == "done", row
    # 0% beside the champion (smoke), 10, 50, 100 with the old one at 0%, then the old one removed.
    assert routes_of(d)[1:] == [{v1: 100, v2: 0}, {v1: 90, v2: 10}, {v1: 50, v2: 50}, {v1: 0, v2: 100}, {v2: 100}]
    assert d.registry.aliases == {"Champion": v2}, "the promoted version is champion, no longer challenger"
    steps = [h["step"] for h in row["history"]]
    assert steps.index("smoke") < steps.index("shift") < steps.index("promote")


def test_a_direct_rollout_smoke_tests_at_zero_traffic_before_taking_it_all(tmp_path: Path) -> None:
    d = Driver(tmp_path)
    v1, v2 = first_version(d)
    deploy(d, v2)
    d.run()
    d.check_quiet()
    assert routes_of(d)[1:] == [{v1: 100, v2: 0}, {v1: 0, v2: 100}, {v2: 100}]
    assert d.registry.aliases == {"Champion": v2}


def test_a_version_that_fails_its_smoke_query_never_takes_traffic(tmp_path: Path) -> None:
    d = Driver(tmp_path, env=CANARY)
    v1, v2 = first_version(d)
    d.serving_api.bad_answers.add(v2)
    deploy(d, v2)
    d.run()
    d.check_quiet()
    assert [r[v2] for r in routes_of(d) if v2 in r] == [0], "the broken version had a route above 0%"
    assert d.serving_api.serving(ENDPOINT) == [v1] and d.registry.aliases == {"Champion": v1}


def _canary_scenario(d: Driver) -> tuple[str, str]:
    v1, v2 = first_version(d)
    deploy(d, v2, key="ci-v2")
    d.run()
    return v1, v2


def test_a_host_killed_at_every_step_boundary_of_a_canary_still_ends_it(tmp_path: Path) -> None:
    """The host dies holding the k-th rollout-step message, for every k: the message comes back
    after the receive timeout (or the repair sweep sends the step again) and the canary ends."""
    clean = Driver(tmp_path / "clean", env=CANARY)
    _canary_scenario(clean)
    total = clean.steps_taken
    assert total > 15
    for k in range(1, total + 1):
        d = Driver(tmp_path / f"k{k}", env=CANARY)
        d.crash_at = {k}
        _, v2 = _canary_scenario(d)
        d.run()
        try:
            d.check_quiet()
            assert d.crashes == 1
            assert d.serving_api.serving(ENDPOINT) == [v2] and d.registry.aliases == {"Champion": v2}
            assert [r["status"] for r in d.rollouts()] == ["done", "done"]
        except AssertionError as exc:
            raise AssertionError(f"host killed at message {k}: {exc}") from exc


@pytest.mark.parametrize("after", [False, True], ids=["fails-before-write", "fails-after-write"])
def test_a_storage_failure_at_every_write_of_a_canary_still_ends_it(tmp_path: Path, after: bool) -> None:
    clean = Driver(tmp_path / "clean", env=CANARY)
    _canary_scenario(clean)
    for at in range(1, clean.faults.count + 1):
        d = Driver(tmp_path / f"{after}-{at}", Faults(at=at, after=after), env=CANARY)
        _, v2 = _canary_scenario(d)
        d.run()
        try:
            d.check_quiet()
            assert d.serving_api.serving(ENDPOINT) == [v2] and d.registry.aliases.get("Champion") == v2
        except AssertionError as exc:
            raise AssertionError(f"fault at write {at} ({d.faults.fired}): {exc}") from exc


def test_pause_holds_a_canary_and_resume_goes_on(tmp_path: Path) -> None:
    d = Driver(tmp_path, env=CANARY)
    _v1, v2 = first_version(d)
    deploy(d, v2)
    run_until(d, lambda: live(d).get("step") == "bake" and live(d)["weight"] == 10)
    steer(d, "pause", "p1", reason="looking at the dashboards")
    run_until(d, lambda: (command_record(d, "p1") or {}).get("status") == "done")
    d.clock.now += 3600  # far past the bake
    d.run(horizon=600)
    row = live(d)
    assert row["step"] == "bake" and row["weight"] == 10 and row["paused"]["reason"] == "looking at the dashboards"
    assert command_record(d, "p1")["status"] == "done"
    steer(d, "pause", "p2")
    d.run(horizon=600)
    assert "already paused" in command_record(d, "p2")["reason"]
    steer(d, "resume", "r1")
    d.run()
    d.check_quiet()
    assert d.serving_api.serving(ENDPOINT) == [v2] and d.registry.aliases == {"Champion": v2}


def test_promote_skips_the_rest_of_a_step_and_promote_full_skips_to_all_traffic(tmp_path: Path) -> None:
    d = Driver(tmp_path, env={**CANARY, "strategy": {**CANARY["strategy"], "steps": [
        {"weight": 10, "bake": "1h", "analysis": False}, {"weight": 30, "bake": "1h", "analysis": False},
        {"weight": 60, "bake": "1h", "analysis": False}]}})
    _v1, v2 = first_version(d)
    deploy(d, v2)
    run_until(d, lambda: live(d).get("step") == "bake" and live(d)["weight"] == 10)
    at = d.clock.now
    steer(d, "promote", "next")
    run_until(d, lambda: live(d).get("step") == "bake" and live(d)["weight"] == 30)
    assert d.clock.now - at < 3600, "promote did not cut the bake short"
    steer(d, "promote", "all", full=True)
    d.run()
    d.check_quiet()
    assert [r[v2] for r in routes_of(d) if v2 in r] == [0, 10, 30, 100, 100], "60% was not skipped"
    assert d.registry.aliases == {"Champion": v2}


def test_abort_during_a_bake_puts_traffic_back_at_once_and_removes_the_candidate_later(tmp_path: Path) -> None:
    d = Driver(tmp_path, env=CANARY)
    v1, v2 = first_version(d)
    deploy(d, v2, key="ci-v2")
    run_until(d, lambda: live(d).get("step") == "bake" and live(d)["weight"] == 50)
    steer(d, "abort", "stop", reason="latency alarm")
    run_until(d, lambda: live(d).get("step") == "retire")
    assert routes_of(d)[-1] == {v1: 100, v2: 0}, "traffic was not put back on the champion at once"
    restored = d.clock.now
    d.run()
    d.check_quiet()
    (row,) = [r for r in d.rollouts() if r["version"] == v2]
    assert row["status"] == "aborted" and "latency alarm" in row["reason"], row
    assert routes_of(d)[-1] == {v1: 100}
    retired = next(h["at"] for h in row["history"] if h["step"] == "retire" and "removing versions" in h["note"])
    assert retired - restored >= 60, "the candidate was removed before abort_delay"
    assert d.registry.aliases == {"Champion": v1}, "abort moved an alias"
    # The deploy that asked for it ends failed with the operator's reason; reconcile leaves v2 alone.
    assert command_record(d, "ci-v2")["status"] == "failed"


def test_rollback_after_promotion_restores_the_previous_config_and_champion(tmp_path: Path) -> None:
    d = Driver(tmp_path, env=CANARY)
    v1, v2 = first_version(d)
    deploy(d, v2)
    run_until(d, lambda: live(d).get("step") == "bake" and live(d)["weight"] == 100)
    assert d.registry.aliases == {"Champion": v2}
    steer(d, "abort", "too-late")
    d.run(horizon=30)
    assert "already champion; send rollback" in command_record(d, "too-late")["reason"]
    steer(d, "rollback", "undo", reason="revenue dropped")
    d.run()
    d.check_quiet()
    (row,) = [r for r in d.rollouts() if r["version"] == v2]
    assert row["status"] == "rolled_back" and "revenue dropped" in row["reason"]
    assert d.serving_api.serving(ENDPOINT) == [v1]
    assert d.registry.aliases == {"Champion": v1}, "the champion alias did not go back to the previous champion"


def test_operator_commands_on_a_finished_unknown_or_early_rollout_are_rejected_with_the_reason(
        tmp_path: Path) -> None:
    d = Driver(tmp_path, env=CANARY)
    _v1, v2 = first_version(d)
    (done,) = d.rollouts()
    for i, command in enumerate(("promote", "pause", "resume", "abort", "rollback")):
        steer(d, command, f"none-{i}")
        steer(d, command, f"ended-{i}", rollout=done["id"])
        steer(d, command, f"unknown-{i}", rollout="0" * 24)
    d.command({"command": "promote", "model": MODEL, "environment": "nowhere", "id": "bad-env"})
    d.command({"command": "promote", "model": MODEL, "environment": "prod", "rollout": "not-an-id"})
    d.run()
    for i in range(5):
        # With nothing in progress, rollback is the undo of the last rollout (tests/test_undo_hold.py):
        # here the first version, with no previous champion to go back to.
        assert command_record(d, f"none-{i}")["reason"].startswith(f"no rollout in progress on endpoint {ENDPOINT}")
        assert "already ended done" in command_record(d, f"ended-{i}")["reason"]
        assert command_record(d, f"unknown-{i}")["reason"] == f"no rollout {'0' * 24} on endpoint {ENDPOINT}"
        for key in (f"none-{i}", f"ended-{i}", f"unknown-{i}"):
            assert command_record(d, key)["status"] == "rejected"
    assert "no environment 'nowhere'" in command_record(d, "bad-env")["reason"]
    bad = [r for r in journal.list_records(d.raw_tables, "command", "rejected") if "rollout" in (r.get("reason") or "")
           and "pattern" in r["reason"]]
    assert bad, "a malformed rollout id was not rejected by the schema"
    # Before its smoke queries passed, a version cannot be promoted; resume needs a pause.
    deploy(d, v2)
    run_until(d, lambda: live(d).get("step") == "wait_deploy")
    steer(d, "promote", "early")
    steer(d, "resume", "not-paused")
    d.run()
    assert "has not passed its smoke queries yet" in command_record(d, "early")["reason"]
    assert "is not paused" in command_record(d, "not-paused")["reason"]
    d.check_quiet()
    assert d.serving_api.serving(ENDPOINT) == [v2] and [r["status"] for r in d.rollouts()] == ["done", "done"]
