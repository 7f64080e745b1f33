"""Random interleavings of what the world does to the engine (registry webhooks, new and
repeated deliveries, deploy and reconcile commands, an operator's hold, release and rollback,
host crashes, message redelivery and duplication, a storage failure at any write, time passing),
checked against the invariants of shared/rollouts.py and shared/journal.py after every step, and at the end:

- at most one rollout writes an endpoint at a time (L2) and the lease never names an ended
  rollout (L1);
- once the world is quiet, every record and rollout is terminal and the lease is free;
- the endpoint never ends serving a version that failed its gates, and no version is rolled
  out twice in a row unless an operator deployed it again;
- desired state is the truth: one more reconcile (and a deploy for a version whose rollout
  was failed by the turmoil) serves the held version while an operator's hold lasts, and after
  the release the newest good version.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from shared import rollouts
from shared.queues import COMMANDS_QUEUE, ROLLOUT_QUEUE
from tests.engine import ENDPOINT, MODEL, Driver, StorageFault


class EngineMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.tmp = Path(tempfile.mkdtemp(prefix="engine-"))
        self.d = Driver(self.tmp)
        self.deliveries: list[tuple[str, str]] = []

    # --- the world -------------------------------------------------------------------------
    @rule(bad=st.booleans(), fails_load=st.booleans())
    def register_a_version(self, bad: bool, fails_load: bool) -> None:
        v = self.d.registry.register()
        if bad:
            (self.d.serving_api.fails_load if fails_load else self.d.serving_api.bad_answers).add(v)

    @precondition(lambda self: self.d.registry.versions)
    @rule(pick=st.integers(0, 50), repeat=st.booleans())
    def a_webhook_arrives(self, pick: int, repeat: bool) -> None:
        if repeat and self.deliveries:
            version, delivery = self.deliveries[pick % len(self.deliveries)]
        else:
            version = self.d.registry.versions[pick % len(self.d.registry.versions)]
            delivery = f"delivery-{len(self.deliveries)}"
            self.deliveries.append((version, delivery))
        try:
            answer = self.d.webhook(version, delivery)
        except StorageFault:
            return
        assert answer.status in (202, 503), answer

    @precondition(lambda self: self.d.registry.versions)
    @rule(pick=st.integers(0, 50))
    def an_operator_deploys(self, pick: int) -> None:
        version = self.d.registry.versions[pick % len(self.d.registry.versions)]
        # Unheld: the end check is that reconcile brings the latest (a hold pins: tests/test_undo_hold.py).
        self.d.command({"command": "deploy", "model": MODEL, "environment": "prod", "version": version, "hold": False})

    @precondition(lambda self: self.d.registry.versions)
    @rule(pick=st.integers(0, 50))
    def an_operator_holds(self, pick: int) -> None:
        version = self.d.registry.versions[pick % len(self.d.registry.versions)]
        self.d.command({"command": "hold", "model": MODEL, "environment": "prod", "version": version, "reason": "r"})

    @rule()
    def an_operator_releases(self) -> None:
        self.d.command({"command": "release", "model": MODEL, "environment": "prod"})

    @rule()
    def an_operator_rolls_back(self) -> None:
        """The running rollout's rollback, or with none the undo of the last one (a hold)."""
        self.d.command({"command": "rollback", "model": MODEL, "environment": "prod"})

    @rule()
    def a_reconcile_is_sent(self) -> None:
        self.d.command({"command": "reconcile", "model": MODEL})

    # --- the host --------------------------------------------------------------------------
    @rule(n=st.integers(1, 6))
    def the_host_works(self, n: int) -> None:
        for _ in range(n):
            self.d.step()

    @rule()
    def the_host_is_killed_mid_message(self) -> None:
        self.d.step(crash=True)

    @rule(pick=st.integers(0, 50))
    def a_message_is_delivered_twice(self, pick: int) -> None:
        pending = [(q, m) for q in (COMMANDS_QUEUE, ROLLOUT_QUEUE) for m in self.d.raw_queues.all_messages(q)]
        if pending:
            queue, msg = pending[pick % len(pending)]
            self.d.raw_queues.send(queue, msg.content)

    @rule(after=st.booleans(), ahead=st.integers(1, 8))
    def a_storage_write_will_fail(self, after: bool, ahead: int) -> None:
        self.d.faults.at = self.d.faults.count + ahead
        self.d.faults.after = after

    @rule(seconds=st.sampled_from([1, 5, 30, 120]))
    def time_passes(self, seconds: int) -> None:
        self.d.clock.now += seconds
        self.d.sweep()

    # --- what must hold ----------------------------------------------------------------------
    @invariant()
    def the_lease_is_sound(self) -> None:
        self.d.check_lease()

    def teardown(self) -> None:
        try:
            self.quiet_world_is_healthy()
        finally:
            shutil.rmtree(self.tmp, ignore_errors=True)

    def quiet_world_is_healthy(self) -> None:
        d = self.d
        d.faults.at = None
        d.clock.now += 700  # past the host's receive timeout: crashed messages come back too
        d.run(sweep_every=30)
        d.check_quiet()
        if not d.registry.versions:
            return
        latest = d.registry.versions[-1]
        broken = d.serving_api.bad_answers | d.serving_api.fails_load
        d.command({"command": "reconcile", "model": MODEL})
        d.run()
        lease = rollouts.lease(d.raw_tables, ENDPOINT)
        held = (lease.get("hold") or {}).get("version")
        if held:
            # A hold pins the environment (L7): reconcile serves the held version, never the latest.
            if held not in broken and held not in (lease.get("failed") or {}):
                assert d.serving_api.serving(ENDPOINT) == [held], d.rollouts()
            d.command({"command": "release", "model": MODEL, "environment": "prod"})
            d.run()
        if latest in broken:
            return
        if latest in (rollouts.lease(d.raw_tables, ENDPOINT).get("failed") or {}):
            d.command({"command": "deploy", "model": MODEL, "environment": "prod", "version": latest})
            d.run()
        assert d.serving_api.serving(ENDPOINT) == [latest], d.rollouts()
        assert d.registry.aliases.get("Champion") == latest


# In CI the examples are the same every run (a red CI must mean a change broke something);
# on a developer machine each run explores new ones (``--hypothesis-seed=N`` replays one).
EngineMachine.TestCase.settings = settings(max_examples=150, stateful_step_count=40, deadline=None,
                                           derandomize=os.environ.get("CI") == "true",
                                           suppress_health_check=[HealthCheck.too_slow])
test_random_interleavings_keep_the_invariants = EngineMachine.TestCase
