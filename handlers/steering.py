"""Operators steer a rollout: ``promote``, ``pause``, ``resume``, ``abort``, ``rollback`` (Argo
Rollouts' promote / promote --full / pause / abort / undo; Argo Rollouts, "Kubectl Plugin",
https://argoproj.github.io/argo-rollouts/features/kubectl-plugin/), sent on the commands queue like any command.

Each one is a conditional write of the rollout row (the same ETag check as a step's, so it
serialises with the steps), and names the command that made it in ``steered``: a redelivered
command that already took effect does nothing again. A change that needs a step to run sends
that step's message *after* the write, as a step does (a crash in between leaves a rollout whose
``due_at`` passes, and the repair sweep sends its step). While a worker holds the claim of the
rollout's current step (shared.rollouts L5) the command waits and is retried: the step's
side effects are under way and its commit must not be lost to the command.

``rollback`` with no rollout in progress undoes the last one that ended ``done`` (Argo Rollouts'
``undo``): the environment is held at the previous champion (shared.rollouts L7) and that version
is rolled out again. Inside the policy's ``rollback_window`` its entity is still on the endpoint
at 0% (L8), so the rollout is a route change; after it, a rollout like any other, through the
zero-traffic smoke. Either way its promote moves the aliases back. ``hold`` pins an environment
to a version, and ``release`` ends the pin.

A command that cannot apply is refused with the reason (recorded as rejected, no side effect):
an unknown rollout, one that has ended, or one in a state where the command means nothing
(promote before the smoke queries passed; abort once the candidate is champion, where rollback
is what restores the aliases too).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from handlers import rollout
from handlers.deps import Deps
from shared import rollouts
from shared.commands import Abort, Hold, Pause, Promote, Release, Resume, Rollback, Steering
from shared.policy import Environment, PolicyError
from shared.queues import ROLLOUT_QUEUE, enqueue
from shared.registry import VersionNotFound, get_version
from shared.tables import ConcurrencyConflict, Entity

_BEFORE_ENDPOINT = frozenset({"resolve", "validate", "features"})
_DEPLOYING = frozenset({"deploy", "wait_deploy", "smoke"})
_ROLLING_BACK = frozenset({"rollback", "wait_rollback"})
_STEERED_KEPT = 20
_RETRIES = 20


class Refused(ValueError):
    """The command does not apply to the rollout as it is; the reason says why."""


@dataclass(frozen=True)
class Change:
    note: str
    set: dict[str, Any] = field(default_factory=dict)
    run: bool = True  # send the rollout's step
    end: str | None = None  # end the rollout now with this status


def _environment(deps: Deps, model: str, environment: str) -> Environment:
    mp = deps.policy().model(model)
    env = mp.environments.get(environment) if mp else None
    if mp is None or env is None:
        raise PolicyError(f"model {model!r} has no environment {environment!r} in the policy")
    return env


def new_hold(deps: Deps, version: str, by: str, reason: str, record: str) -> dict[str, Any]:
    return {"version": str(version), "by": by, "reason": reason, "since": deps.clock(), "record": record}


def is_undo(deps: Deps, cmd: Steering) -> bool:
    """A ``rollback`` with no rollout named and none in progress: the undo of the last one that ended."""
    if not isinstance(cmd, Rollback) or cmd.rollout:
        return False
    env = _environment(deps, cmd.model, cmd.environment)
    return not rollouts.lease(deps.tables, env.endpoint).get("active")


def undo(deps: Deps, key: str, cmd: Rollback, by: str, origin: dict[str, str], cid: str,
         ) -> tuple[str, tuple[str, str] | None]:
    """Hold the environment at the previous champion and roll that version out again; the
    outcome and the rollout started (None: the one already going was joined)."""
    env = _environment(deps, cmd.model, cmd.environment)
    ls = rollouts.lease(deps.tables, env.endpoint)
    previous, serving_now = ls.get("previous_champion"), ls.get("serving_version")
    if not previous or str(previous) == str(serving_now):
        raise Refused(f"no rollout in progress on endpoint {env.endpoint} and no previous champion to go back to "
                      f"(serving version {serving_now or 'none'})")
    why = f"rollback from version {serving_now}" + (f": {cmd.reason}" if cmd.reason else "")
    rollouts.set_hold(deps.tables, env.endpoint, new_hold(deps, previous, by, why, key))
    kept = ls.get("kept") or {}
    inside = str(kept.get("version")) == str(previous) and kept.get("until", 0) > deps.clock()
    row, ours = rollout.start(deps, model=cmd.model, environment=cmd.environment, version=str(previous), alias=None,
                              origin=origin, cid=cid, join=True, purpose="undo" if inside else None)
    note = f"undo of version {serving_now}: held at version {previous}; "
    if not ours:
        return note + f"version {previous} is already rolling out ({row['id']})", None
    how = ("still on the endpoint at 0% (rollback window): a route change" if inside
           else "smoke first, then the strategy")
    return note + f"rollout {row['id']} of version {previous} ({how})", (row["endpoint"], row["id"])


def pin(deps: Deps, key: str, cmd: Hold | Release, by: str) -> str:
    """Set or end the environment's hold (shared.rollouts L7); the outcome, or Refused."""
    env = _environment(deps, cmd.model, cmd.environment)
    if isinstance(cmd, Hold):
        try:
            get_version(deps.registry(), cmd.model, cmd.version)
        except VersionNotFound as exc:
            raise Refused(str(exc)) from exc
        hold = new_hold(deps, cmd.version, by, cmd.reason, key)
        before = rollouts.set_hold(deps.tables, env.endpoint, hold)
        was = f" (was held at version {before['version']})" if before else ""
        return f"{cmd.environment}: {rollouts.hold_note(hold)}{was}"
    before = rollouts.set_hold(deps.tables, env.endpoint, None)
    if before is None:
        return f"{cmd.environment}: not held; nothing to release"
    why = f" ({cmd.reason})" if cmd.reason else ""
    return f"{cmd.environment}: released the hold at version {before['version']} set by {before.get('by')}{why}"


def apply(deps: Deps, key: str, cmd: Steering) -> str:
    """Apply ``cmd`` (its journal record ``key``) to its rollout; the outcome, or Refused."""
    env = _environment(deps, cmd.model, cmd.environment)
    for _ in range(_RETRIES):
        entity = _target(deps, env.endpoint, cmd)
        row = entity.data
        if key in (row.get("steered") or []):
            return f"{cmd.command} already applied to rollout {row['id']}"
        if rollouts.claimed_by_another(row, None, deps.clock()):
            raise ConcurrencyConflict(f"rollout {row['id']} is running its step {row['step']}; "
                                      f"{cmd.command} is retried")
        change = _decide(cmd, row, len(env.strategy.stages()))
        changes = {**change.set, "steered": [*(row.get("steered") or []), key][-_STEERED_KEPT:]}
        note = f"{cmd.command} by operator" + (f" ({cmd.reason})" if cmd.reason else "") + f": {change.note}"
        now = deps.clock()
        try:
            if change.end:
                if rollouts.finish(deps.tables, entity, note, now=now, status=change.end, reason=note,
                                   **changes) is None:
                    continue
                ended = rollouts.get(deps.tables, env.endpoint, row["id"])
                rollout.after_end(deps, ended.data if ended else row,
                                  rollouts.lease(deps.tables, env.endpoint).get("active"))
            else:
                # A paused rollout is due nowhere: the repair sweep leaves it alone.
                rollouts.advance(deps.tables, entity, note, now=now, **changes, due_at=now if change.run else None)
                if change.run:
                    enqueue(deps.queues, ROLLOUT_QUEUE, rollout.message(row, row["seq"] + 1))
        except ConcurrencyConflict:
            continue
        return f"rollout {row['id']}: {note}"
    raise ConcurrencyConflict(f"rollout on {env.endpoint} kept changing; {cmd.command} not applied")


def _target(deps: Deps, endpoint: str, cmd: Steering) -> Entity:
    if cmd.rollout:
        entity = rollouts.get(deps.tables, endpoint, cmd.rollout)
        if entity is None:
            raise Refused(f"no rollout {cmd.rollout} on endpoint {endpoint}")
    else:
        active = rollouts.lease(deps.tables, endpoint).get("active")
        entity = rollouts.get(deps.tables, endpoint, active) if active else None
        if entity is None:
            raise Refused(f"no rollout in progress on endpoint {endpoint}")
    if entity.data["status"] in rollouts.TERMINAL:
        d = entity.data
        raise Refused(f"rollout {d['id']} (version {d.get('version')}) already ended {d['status']}: "
                      f"{cmd.command} needs a rollout in progress")
    return entity


def _decide(cmd: Steering, row: dict[str, Any], stages: int) -> Change:
    s, version = row["step"], row.get("version")
    ending = bool(row.get("ending")) or s in _ROLLING_BACK
    promoted = row.get("stage", 0) >= stages and s not in _BEFORE_ENDPOINT | _DEPLOYING
    paused = row.get("paused")
    if ending and not isinstance(cmd, Pause | Resume):
        raise Refused(f"rollout {row['id']} is already rolling back ({row.get('failure')})")
    if isinstance(cmd, Pause):
        if ending:
            raise Refused(f"rollout {row['id']} is rolling back; there is nothing to pause")
        if paused:
            raise Refused(f"rollout {row['id']} is already paused: {paused.get('reason')}")
        return Change(f"paused at {s}", {"paused": {"reason": cmd.reason or "paused by an operator", "by": "operator",
                                                    "awaiting": "resume"}}, run=False)
    if isinstance(cmd, Resume):
        if not paused:
            raise Refused(f"rollout {row['id']} is not paused (step {s})")
        if paused.get("awaiting") == "decision":
            raise Refused(f"rollout {row['id']} waits for a decision on its A/B test: send promote or abort")
        # After an inconclusive analysis, Argo Rollouts starts a new run (https://argoproj.github.io/argo-rollouts/features/analysis/).
        return Change(f"resumed at {s}", {"paused": None, "run": None, "analysis_cursor": None})
    if isinstance(cmd, Promote):
        if s in _BEFORE_ENDPOINT | _DEPLOYING:
            raise Refused(f"version {version} has not passed its smoke queries yet (step {s}); promote applies "
                          "once it has")
        if promoted or s == "promote":
            raise Refused(f"version {version} is already taking all traffic")
        nxt = stages if cmd.full else row.get("stage", 0) + 1
        fields = {"paused": None, "run": None, "analysis_cursor": None, "wait_started": None, "attempt": 0,
                  "stage": nxt, "step": "shift" if nxt < stages else "promote"}
        return Change("to 100%" if nxt >= stages else f"to step {nxt + 1} of {stages}", fields)
    if isinstance(cmd, Abort):
        if promoted or s == "promote":
            raise Refused(f"version {version} is already champion; send rollback to restore the previous one")
        if s in _BEFORE_ENDPOINT:
            return Change(f"stopped at {s}, before the endpoint was touched", {"paused": None}, end="aborted")
        return Change("traffic back to the champion", _back(row, "aborted", _why("aborted by an operator", cmd)))
    assert isinstance(cmd, Rollback)
    if s in _BEFORE_ENDPOINT:
        raise Refused(f"version {version} has not reached the endpoint (step {s}); send abort to stop it")
    return Change("restoring the previous config and aliases",
                  _back(row, "rolled_back", _why("rolled back by an operator", cmd)))


def _why(what: str, cmd: Steering) -> str:
    return f"{what}: {cmd.reason}" if cmd.reason else what


def _back(row: dict[str, Any], status: str, failure: str) -> dict[str, Any]:
    return {"step": "rollback", "ending": status, "failure": failure, "paused": None, "run": None,
            "analysis_cursor": None, "wait_started": None, "attempt": 0}
