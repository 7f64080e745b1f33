"""One rollout step runs in one worker at a time, and every side effect on Databricks and the
registry belongs to a step that committed (shared.rollouts L5, handlers/rollout.py).

The real handlers over real SQLite state (tests/engine.py), with workers that overlap: while a
worker is inside a step (reading the endpoint) another message is run to its end, as a second
host instance would; joining commands and repeated hints send the current step again; a worker
dies inside a step (after its claim, before its commit) and its message comes back after the
receive timeout. Hypothesis draws the interleaving. Checked:

- no step (rollout, sequence number) runs in a worker while another worker is inside it;
- each write to the endpoint or the aliases was made by the worker that then committed that
  step, unless that worker died, and no two surviving workers wrote for the same step;
- once the world is quiet, every record and rollout has ended and the version serves.
"""

from __future__ import annotations

import itertools
import json
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from handlers import commands, rollout
from shared import journal, rollouts
from shared.queues import COMMANDS_QUEUE, ROLLOUT_QUEUE, decode_content
from shared.tables import ConcurrencyConflict, TableService
from tests.engine import ENDPOINT, MODEL, Driver


class Crash(BaseException):
    """The host dies here (not an Exception: no step catches it)."""


class Workers:
    """Runs messages as hosts do, nesting one worker inside another's step to overlap them."""

    def __init__(self, d: Driver, plan: list[str]) -> None:
        self.d, self.plan = d, plan
        self.frames: list[tuple[int, str, int]] = []  # (worker, rollout, seq) of the steps under way
        self.ids = itertools.count()
        self.dead: set[int] = set()
        self.writes: list[tuple[int, str, int, str]] = []
        self.commits: set[tuple[int, str, int]] = set()
        self.overlaps: list[str] = []
        self._wrap()

    def _wrap(self) -> None:
        api, reg = self.d.serving_api, self.d.registry
        real_get = api.get

        def get(name: str) -> Any:
            frame = self.frames[-1] if self.frames else None
            if frame is not None and any(f[1:] == frame[1:] for f in self.frames[:-1]):
                same = [f[0] for f in self.frames if f[1:] == frame[1:]]
                self.overlaps.append(f"step {frame[1:]} ran in workers {same}")
            what = self.plan.pop(0) if self.plan and frame is not None else None
            if what == "overlap":
                self.run_one()
            elif what == "die":
                raise Crash
            return real_get(name)

        api.get = get
        for obj, name in ((api, "create"), (api, "update_config"), (api, "delete"),
                          (reg, "set_registered_model_alias"), (reg, "delete_registered_model_alias")):
            setattr(obj, name, self._recorded(getattr(obj, name), name))
        for name in ("advance", "finish"):
            setattr(rollouts, name, self._committed(getattr(rollouts, name)))

    def _recorded(self, fn: Any, name: str) -> Any:
        def call(*args: Any, **kwargs: Any) -> Any:
            if self.frames:
                self.writes.append((*self.frames[-1], name))
            return fn(*args, **kwargs)
        return call

    def _committed(self, fn: Any) -> Any:
        def call(tables: Any, entity: Any, *args: Any, **kwargs: Any) -> Any:
            out = fn(tables, entity, *args, **kwargs)
            frame = self.frames[-1] if self.frames else None
            if out is not None and frame is not None and entity.row_key == frame[1]:
                self.commits.add(frame)
            return out
        return call

    def run_one(self) -> bool:
        """Take one visible message and run it to its end (or the worker's death)."""
        taken = self.d._take()
        if taken is None:
            return False
        queue, msg = taken
        body = decode_content(msg.content)
        if queue == ROLLOUT_QUEUE:
            m = json.loads(body)
            worker = next(self.ids)
            self.frames.append((worker, m["rollout"], m["seq"]))
            self.d.current = m["rollout"]
            try:
                rollout.handle_message(self.d.deps, body, msg.id)
            except Crash:
                self.dead.add(worker)
                return True  # the message stays invisible for the receive timeout
            finally:
                self.frames.pop()
                self.d.current = self.frames[-1][1] if self.frames else None
        elif queue == COMMANDS_QUEUE:
            commands.handle_message(self.d.deps, body, msg.id)
        self.d.raw_queues.delete(queue, msg.id, msg.pop_receipt)
        return True


ACTIONS = st.lists(st.sampled_from(["work", "work", "work", "hint", "join", "overlap", "overlap", "die"]),
                   min_size=5, max_size=60)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(actions=ACTIONS, plan=st.lists(st.sampled_from(["overlap", "overlap", "die", "none"]), max_size=30))
def test_a_step_runs_once_and_every_side_effect_belongs_to_its_commit(actions: list[str], plan: list[str]) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="claims-"))
    real = rollouts.advance, rollouts.finish
    try:
        d = Driver(tmp, env={"strategy": {"kind": "canary", "bake": "0s",
                                          "steps": [{"weight": 50, "bake": "1s", "analysis": False}]}})
        w = Workers(d, plan)
        version = d.registry.register()
        d.webhook(version)
        for what in actions:
            if what == "work" or what == "overlap":
                w.run_one()
            elif what == "hint":
                active = rollouts.lease(d.raw_tables, ENDPOINT).get("active")
                if active:
                    rollout.kick(d.deps, ENDPOINT, active)
            elif what == "join":
                d.command({"command": "reconcile", "model": MODEL})
            elif what == "die":
                w.plan.insert(0, "die")
                w.run_one()
        w.plan.clear()
        d.step = lambda crash=False: w.run_one()  # the drain runs through the same workers
        d.run(horizon=7200)

        assert not w.overlaps, w.overlaps
        by_step: dict[tuple[str, int], set[int]] = {}
        for worker, rid, seq, name in w.writes:
            if worker in w.dead:
                continue
            assert (worker, rid, seq) in w.commits, f"worker {worker} wrote ({name}) for step {seq} of {rid} " \
                                                    "and never committed it"
            by_step.setdefault((rid, seq), set()).add(worker)
        assert all(len(ws) == 1 for ws in by_step.values()), by_step
        d.check_quiet()
        assert d.serving_api.serving(ENDPOINT) == [version]
    finally:
        rollouts.advance, rollouts.finish = real
        shutil.rmtree(tmp, ignore_errors=True)



def test_the_step_claim_on_each_backend(tables: TableService) -> None:
    """Two workers that read the same row: one claim wins; a live claim keeps others out and its
    holder's redelivery back in; an expired one is taken over, and the old holder's commit fails;
    the commit ends the claim, so the next step is claimed afresh."""
    endpoint = f"ep-{uuid.uuid4().hex[:12]}"
    made = rollouts.claim(tables, endpoint, "r1", {"model": "m", "environment": "prod", "version": "1"}, now=0.0)
    read = rollouts.get(tables, endpoint, "r1")
    assert made.active and read is not None
    first = rollouts.claim_step(tables, read, holder="a", now=1.0, seconds=45)
    assert first is not None
    assert rollouts.claim_step(tables, read, holder="b", now=1.0, seconds=45) is None  # same ETag: lost
    fresh = rollouts.get(tables, endpoint, "r1")
    assert rollouts.claim_step(tables, fresh, holder="b", now=40.0, seconds=45) is None  # live claim
    again = rollouts.claim_step(tables, fresh, holder="a", now=40.0, seconds=45)  # its redelivery
    assert again is not None
    taken = rollouts.claim_step(tables, again, holder="b", now=100.0, seconds=45)  # expired
    assert taken is not None
    with pytest.raises(ConcurrencyConflict):
        rollouts.advance(tables, again, "a's late commit", now=101.0, step="validate")
    moved = rollouts.advance(tables, taken, "b's commit", now=101.0, step="validate")
    assert moved.data["seq"] == 1 and "claim" not in moved.data
    assert rollouts.claim_step(tables, moved, holder="c", now=102.0, seconds=45) is not None



def test_a_steering_command_waits_for_a_running_step_and_then_applies(tmp_path: Path) -> None:
    """An operator's pause that arrives while a worker is inside a step is retried, not applied
    under it: the step commits what it did, then the pause holds the rollout (handlers/steering.py)."""
    d = Driver(tmp_path, env={"strategy": {"kind": "canary", "bake": "0s",
                                           "steps": [{"weight": 50, "bake": "1h", "analysis": False}]}})
    w = Workers(d, [])
    d.step = lambda crash=False: w.run_one()
    d.webhook(d.registry.register())
    d.run(horizon=600)
    inside: list[dict[str, Any]] = []
    workers_get = d.serving_api.get

    def get(name: str) -> Any:
        row = rollouts.get(d.raw_tables, ENDPOINT, w.frames[-1][1]).data if w.frames else None
        if row and row["step"] == "shift" and not inside:
            inside.append(row)
            body = json.dumps({"command": "pause", "model": MODEL, "environment": "prod", "id": "pause-1"})
            commands.handle_message(d.deps, body.encode(), "m-pause")  # a second host takes it now
            # Asserted after the run: an assertion here would be the step's own error.
            inside.append(rollouts.get(d.raw_tables, ENDPOINT, row["id"]).data)
        return workers_get(name)

    d.serving_api.get = get
    d.webhook(d.registry.register())
    d.run(horizon=600)
    assert inside, "the canary never reached its shift"
    assert not inside[1].get("paused"), "the pause was applied under the running step"
    row = rollouts.get(d.raw_tables, ENDPOINT, inside[0]["id"]).data
    assert (row["id"], inside[0]["seq"]) in {f[1:] for f in w.commits}, "the shift under way lost its commit"
    assert row["weight"] == 50 and row.get("paused"), row
    rec = journal.get(d.raw_tables, "command", journal.key("id", "pause-1"))
    assert rec["status"] == "done" and rec["attempts"] >= 2, rec  # retried once the step was done
