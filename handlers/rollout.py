"""The rollout: a persisted state machine that one queue message advances by one step.

Direct strategy (DESIGN.md "Rollout"): resolve → validate → features → deploy → wait_deploy →
smoke → promote → done; a failed gate goes rollback → wait_rollback → failed, with the previous
endpoint config restored and the aliases untouched. An endpoint that served nothing before the
rollout (it created it, or it had no config) is deleted instead: no caller may ever get an
answer from a version that failed its gates (DESIGN.md principle 6), and nothing is left to
restore.

Each message names a rollout and the sequence number it expects. A step runs only when the
stored sequence matches, so duplicated, late and replayed messages do nothing. A step that
must wait for Databricks re-enqueues its rollout with a capped exponential delay; no function
sleeps on the platform. The next message is enqueued *before* the conditional write that
commits the transition: a crash in between leaves a message that waits for the redelivered
step to commit, never a rollout with no message. Ending a rollout commits its terminal state
and the lease hand-over in one transaction (shared.rollouts); what follows (waking the next
holder, closing the record that asked for it) is idempotent and is done again by any later
message of the ended rollout and by the repair sweep (handlers/repair.py), so a crash at any
point leaves nothing running, nothing holding the lease, and no record open.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from handlers.deps import Deps
from shared import features as feature_tables
from shared import journal, rollouts, serving, smoke, telemetry
from shared.log import correlated, step
from shared.monitoring import store as monitor_store
from shared.monitoring.store import DECISION_TAG
from shared.policy import Environment, ModelPolicy, PolicyError
from shared.queues import ROLLOUT_QUEUE, enqueue
from shared.registry import VersionNotFound, get_version, resolve, set_aliases
from shared.tables import ConcurrencyConflict, Entity

# Until it reaches ``deploy`` a newer rollout may take over (supersede) this one. Not in
# ``deploy`` itself: its write may have reached the endpoint while its commit failed, and a
# version written but never smoke-tested must be seen through to its smoke or its rollback.
_SUPERSEDABLE = frozenset({"resolve", "validate", "features"})
_MAX_STEP_ERRORS = 5
_MAX_EARLY = 30


@dataclass(frozen=True)
class Transition:
    step: str | None = None  # next step; None: the same step again (a wait) or the end
    status: str = "running"  # running | done | failed
    wait: bool = False
    note: str = ""
    reason: str = ""
    set: dict[str, Any] = field(default_factory=dict)


def go(next_step: str, note: str = "", **fields: Any) -> Transition:
    return Transition(step=next_step, note=note, set=fields)


def wait(note: str) -> Transition:
    return Transition(wait=True, note=note)


def fail(reason: str) -> Transition:
    return Transition(status="failed", reason=reason, note=reason)


def roll_back(reason: str, **fields: Any) -> Transition:
    return Transition(step="rollback", note=reason, set={"failure": reason, **fields})


@dataclass
class StepContext:
    deps: Deps
    row: dict[str, Any]
    model: ModelPolicy
    env: Environment

    @cached_property
    def w(self) -> Any:
        return self.deps.workspace()

    @cached_property
    def registry(self) -> Any:
        return self.deps.registry()

    @property
    def endpoint(self) -> str:
        return self.row["endpoint"]

    @property
    def target(self) -> dict[str, Any]:
        return self.row["target"]

    def waited_too_long(self) -> bool:
        started = self.row.get("wait_started")
        return started is not None and self.deps.clock() - started > self.env.wait_timeout_seconds

    def read(self) -> serving.EndpointView:
        return serving.read(self.w, self.endpoint)


def step_resolve(ctx: StepContext) -> Transition:
    req = ctx.row.get("requested") or {}
    try:
        info = resolve(ctx.registry, ctx.model.name, req.get("version"), req.get("alias"))
    except VersionNotFound as exc:
        return fail(str(exc))
    view = ctx.read()
    # The config that serves now is what a failed rollout restores. It is read before this
    # rollout writes anything, and no other rollout writes while we hold the lease.
    target = serving.single_version_config(ctx.model.name, info.version, ctx.env.served_entity)
    fields = {"version": info.version, "previous": view.active, "target": target}
    if view.serves(target) and not view.updating:
        return go("promote", f"version {info.version} already serves", **fields)
    return go("validate", f"resolved version {info.version}", **fields)


def step_validate(ctx: StepContext) -> Transition:
    try:
        info = get_version(ctx.registry, ctx.model.name, ctx.row["version"])
    except VersionNotFound as exc:
        return fail(str(exc))
    if info.status == "PENDING_REGISTRATION":
        if ctx.waited_too_long():
            return fail(f"version {info.version} still PENDING_REGISTRATION after {ctx.env.wait_timeout_seconds:.0f} s")
        return wait(f"version {info.version} is PENDING_REGISTRATION")
    if info.status != "READY":
        return fail(f"version {info.version} is {info.status}: {info.status_message}".rstrip(": "))
    missing = [t for t in ctx.model.required_tags if t not in info.tags]
    if missing:
        return fail(f"version {info.version} lacks required tag(s) {missing}")
    # A version a retraining run registered names the monitor's decision that launched it.
    cause = info.tags.get(DECISION_TAG)
    return go("features", f"version {info.version} is READY" + (f" (retrained by decision {cause})" if cause else ""),
              **({"caused_by": cause} if cause else {}))


def step_features(ctx: StepContext) -> Transition:
    """Feature tables published and in sync before anything serves (traffic never moves to a
    version whose features are not ready; the endpoint is untouched if they never are)."""
    features = ctx.model.features
    if features is None:
        return go("deploy", "no feature tables")
    s = ctx.deps.settings
    if not s.warehouse_id:
        return fail("DATABRICKS_WAREHOUSE_ID is not set: feature tables are checked through a SQL warehouse")
    statuses = feature_tables.ensure(ctx.w, s.warehouse_id, features, os.environ, ctx.row.get("feature_cursors") or {},
                                     now=ctx.deps.clock(), budget_seconds=s.feature_step_budget_seconds)
    summary = "; ".join(f"{st.source}: {st.note}" for st in statuses)
    if any(st.state == "failed" for st in statuses):
        return fail("features not ready, endpoint untouched: " + "; ".join(
            st.note for st in statuses if st.state == "failed"))
    if all(st.state == "ready" for st in statuses):
        return go("deploy", summary, feature_cursors=None)
    cursors = {st.source: st.cursor for st in statuses if st.cursor}
    if any(st.state == "progress" for st in statuses):
        return go("features", summary, feature_cursors=cursors)
    if ctx.waited_too_long():
        return fail(f"features not ready after {ctx.env.wait_timeout_seconds:.0f} s, endpoint untouched: {summary}")
    return Transition(wait=True, note=summary, set={"feature_cursors": cursors})


def step_deploy(ctx: StepContext) -> Transition:
    view = ctx.read()
    if view.serves(ctx.target):
        return go("wait_deploy", "endpoint already has this config")
    if view.updating:
        if ctx.waited_too_long():
            return fail("the endpoint stayed busy with another update; nothing was changed")
        return wait("endpoint is busy with another update")
    serving.write(ctx.w, ctx.endpoint, ctx.target, exists=view.exists)
    return go("wait_deploy", ("updated" if view.exists else "created") + f" endpoint for version {ctx.row['version']}")


def step_wait_deploy(ctx: StepContext) -> Transition:
    view = ctx.read()
    if view.updating or (view.serves(ctx.target) and view.ready != "READY"):
        if ctx.waited_too_long():
            return roll_back(f"endpoint not ready after {ctx.env.wait_timeout_seconds:.0f} s")
        return wait(f"endpoint {view.config_update}/{view.ready}")
    if view.serves(ctx.target):
        return go("smoke", "endpoint READY with the new version")
    detail = f": {view.message}" if view.message else ""
    return roll_back(f"endpoint update ended {view.config_update}{detail}")


def step_smoke(ctx: StepContext) -> Transition:
    table = ctx.env.inference_table
    if table is not None:
        # Before any query, so the smoke queries and everything after are captured.
        serving.ensure_capture(ctx.w, ctx.endpoint, table.catalog, table.schema_name, table.prefix or ctx.endpoint)
    outcomes = smoke.run(ctx.env.smoke, lambda records: serving.query(ctx.w, ctx.endpoint, records))
    results = [{"name": o.name, "passed": o.passed, "latency_ms": round(o.latency_ms, 1), "reason": o.reason}
               for o in outcomes]
    failed = [o for o in outcomes if not o.passed]
    if failed:
        more = f" (and {len(failed) - 1} more)" if len(failed) > 1 else ""
        return roll_back(f"smoke query '{failed[0].name}' failed: {failed[0].reason}{more}", smoke=results)
    return go("promote", f"{len(outcomes)} smoke queries passed", smoke=results)


def step_promote(ctx: StepContext) -> Transition:
    moved = set_aliases(ctx.registry, ctx.model.name, ctx.row["version"], ctx.env.aliases)
    aliases = ", ".join(f"@{a}" for a in ctx.env.aliases) or "no aliases"
    return Transition(status="done", note=f"version {ctx.row['version']} serves; {aliases} set",
                      set={"aliases_moved": moved})


def step_rollback(ctx: StepContext) -> Transition:
    previous = ctx.row.get("previous")
    failure = ctx.row.get("failure", "rollout failed")
    view = ctx.read()
    if previous is None:
        return _remove_endpoint(ctx, view, failure)
    if view.serves(previous) and not view.updating:
        return go("wait_rollback", "previous config still serves")
    if view.updating:
        if ctx.waited_too_long():
            return fail(f"{failure}; the endpoint stayed busy, so the previous config was not restored")
        return wait("endpoint busy; waiting to restore the previous config")
    serving.write(ctx.w, ctx.endpoint, previous, exists=view.exists)
    return go("wait_rollback", f"restoring versions {serving.served_versions(previous)}")


def _remove_endpoint(ctx: StepContext, view: serving.EndpointView, failure: str) -> Transition:
    """The endpoint served nothing before this rollout: delete it rather than leave the failed
    version answering (deleting while an update runs is allowed, and cancels it)."""
    if not view.exists:
        return fail(f"{failure}; nothing serves (the endpoint does not exist)")
    serving.delete(ctx.w, ctx.endpoint)
    return go("wait_rollback", "deleting the endpoint, which served nothing before this rollout")


def step_wait_rollback(ctx: StepContext) -> Transition:
    failure = ctx.row.get("failure", "rollout failed")
    view = ctx.read()
    if ctx.row.get("previous") is None:
        if view.exists:
            if ctx.waited_too_long():
                return fail(f"{failure}; deleting the endpoint did not finish")
            return wait("deleting the endpoint")
        return fail(f"{failure}; the endpoint served nothing before, so it was deleted")
    if view.updating:
        if ctx.waited_too_long():
            return fail(f"{failure}; restoring the previous config did not finish")
        return wait("restoring the previous config")
    if view.serves(ctx.row["previous"]):
        return fail(f"{failure} (rolled back to versions {serving.served_versions(ctx.row['previous'])})")
    return fail(f"{failure}; restoring the previous config ended {view.config_update}: {view.message}")


STEPS: dict[str, Callable[[StepContext], Transition]] = {
    "resolve": step_resolve,
    "validate": step_validate,
    "features": step_features,
    "deploy": step_deploy,
    "wait_deploy": step_wait_deploy,
    "smoke": step_smoke,
    "promote": step_promote,
    "rollback": step_rollback,
    "wait_rollback": step_wait_rollback,
}


def _message(row: dict[str, Any], seq: int, early: int = 0) -> dict[str, Any]:
    return {"rollout": row["id"], "endpoint": row["endpoint"], "seq": seq, "cid": row.get("cid"), "early": early}


def kick(deps: Deps, endpoint: str, rid: str) -> None:
    """Send a rollout's current step (a duplicate is harmless: its sequence number dedupes it)."""
    entity = rollouts.get(deps.tables, endpoint, rid)
    if entity and entity.data["status"] not in rollouts.TERMINAL:
        enqueue(deps.queues, ROLLOUT_QUEUE, _message(entity.data, entity.data["seq"]))


def start(deps: Deps, *, model: str, environment: str, version: str | None, alias: str | None,
          origin: dict[str, str], cid: str, rid: str | None = None, join: bool = False,
          ) -> tuple[dict[str, Any], bool]:
    """Create the rollout and take or queue for the endpoint's lease. Idempotent per ``rid``
    (default: per origin, so a retried command never starts twice). With ``join``, a live
    rollout of the same version is joined instead (reconcile). Returns the rollout and whether
    it is this origin's own (False: another origin had started it)."""
    mp = deps.policy().model(model)
    env = mp.environments.get(environment) if mp else None
    if mp is None or env is None:
        raise PolicyError(f"model {model!r} has no environment {environment!r} in the policy")
    rid = rid or rollouts.rollout_id(origin["kind"], origin["id"], environment)
    claim = rollouts.claim(deps.tables, env.endpoint, rid, {
        "model": model, "environment": environment, "version": version,
        "requested": {"version": version, "alias": alias}, "origin": origin, "cid": cid,
    }, now=deps.clock(), join_version=version if join else None)
    row = claim.rollout
    if claim.superseded:
        _after_end(deps, claim.superseded, None)
    step("rollout.start", rollout=row["id"], model=model, environment=environment, endpoint=env.endpoint,
         version=version, alias=alias, lease="active" if claim.active else "queued", new=claim.created)
    if claim.active and row["status"] == "pending":
        kick(deps, env.endpoint, row["id"])
    return row, row.get("origin") == origin


def _after_end(deps: Deps, row: dict[str, Any], holder: str | None) -> None:
    """What follows a rollout's end, safe to repeat: wake the lease's new holder if it has not
    started, and close the record that asked for the rollout."""
    if holder and holder != row["id"]:
        nxt = rollouts.get(deps.tables, row["endpoint"], holder)
        if nxt is not None and nxt.data["status"] == "pending":
            kick(deps, row["endpoint"], holder)
    _close_origin(deps, row, row["status"], row.get("reason") or "")
    if row.get("caused_by"):
        monitor_store.update_decision(deps.tables, row["endpoint"], row["caused_by"],
                                      rollout={"id": row["id"], "version": row.get("version"), "status": row["status"]})


def _close_origin(deps: Deps, row: dict[str, Any], status: str, reason: str) -> None:
    origin = row.get("origin") or {}
    if origin.get("kind") and origin.get("id"):
        journal.update(deps.tables, origin["kind"], origin["id"], status, reason=reason, rollout=row["id"],
                       version=row.get("version"))


def handle_message(deps: Deps, body: bytes, message_id: str) -> None:
    """Entry point of the rollout queue trigger."""
    try:
        msg = json.loads(body)
        endpoint, rid, seq = str(msg["endpoint"]), str(msg["rollout"]), int(msg["seq"])
        early = int(msg.get("early", 0))
    except (ValueError, KeyError, TypeError) as exc:
        journal.record(deps.tables, "command", message_id, "rejected", queue=ROLLOUT_QUEUE,
                       reason=f"not a rollout step message: {exc}", excerpt=journal.excerpt(body))
        step("rollout.rejected", logging.WARNING, message=message_id, reason=str(exc))
        return
    with correlated(str(msg.get("cid") or message_id)):
        _run(deps, endpoint, rid, seq, early)


def _run(deps: Deps, endpoint: str, rid: str, seq: int, early: int) -> None:
    entity = rollouts.get(deps.tables, endpoint, rid)
    if entity is None:
        step("rollout.unknown", logging.WARNING, rollout=rid)
        return
    row = entity.data
    if row["status"] in rollouts.TERMINAL:
        # A message of an ended rollout: finish what its end may not have done (a crash, a failed enqueue).
        step("rollout.duplicate", rollout=rid, seq=seq, current=row["seq"], status=row["status"])
        _after_end(deps, row, rollouts.lease(deps.tables, endpoint).get("active"))
        return
    if seq < row["seq"]:
        step("rollout.duplicate", rollout=rid, seq=seq, current=row["seq"], status=row["status"])
        return
    if seq > row["seq"]:
        # The step that sent this has not committed yet (or crashed before it could): look again soon.
        if early < _MAX_EARLY:
            enqueue(deps.queues, ROLLOUT_QUEUE, _message(row, seq, early + 1), delay=1.0)
        return
    lease = rollouts.lease(deps.tables, endpoint)
    if lease.get("active") != rid:
        step("rollout.not_leased", rollout=rid, active=lease.get("active"))
        return
    if row["step"] in _SUPERSEDABLE and lease.get("queued"):
        _finish(deps, entity, Transition(status="superseded", reason=f"superseded by newer rollout {lease['queued']}"))
        return
    # One span per step run: the step's Databricks and registry calls, then its commit.
    with telemetry.span(f"rollout.{row['step']}", rollout=rid, endpoint=endpoint, model=row["model"],
                        environment=row["environment"], version=row.get("version"), seq=seq) as span:
        tr = _execute(deps, row)
        span.set(status=tr.status, next=tr.step, wait=tr.wait, note=tr.note)
        _apply(deps, entity, tr)


def _execute(deps: Deps, row: dict[str, Any]) -> Transition:
    try:
        mp = deps.policy().model(row["model"])
        env = mp.environments.get(row["environment"]) if mp else None
        if mp is None or env is None:
            return fail(f"model {row['model']!r} environment {row['environment']!r} is no longer in the policy")
        return STEPS[row["step"]](StepContext(deps, row, mp, env))
    except Exception as exc:  # a step's failure is the rollout's to handle, never a lost message
        errors = row.get("errors", 0) + 1
        reason = f"{row['step']}: {type(exc).__name__}: {exc}"
        step("rollout.step_error", logging.WARNING, rollout=row["id"], step=row["step"], errors=errors,
             error=reason)
        if errors < _MAX_STEP_ERRORS:
            return Transition(wait=True, note=reason, set={"errors": errors})
        if row["step"] in ("deploy", "wait_deploy", "smoke"):
            return Transition(step="rollback", note=reason, set={"failure": reason, "errors": 0})
        return fail(reason)


def _backoff(deps: Deps, attempt: int) -> float:
    s = deps.settings
    return min(s.backoff_cap_seconds, s.backoff_base_seconds * 2 ** max(0, attempt - 1))


def _apply(deps: Deps, entity: Entity, tr: Transition) -> None:
    row = entity.data
    if tr.status != "running":
        _finish(deps, entity, tr)
        return
    now = deps.clock()
    if tr.wait:
        attempt = row.get("attempt", 0) + 1
        delay = _backoff(deps, attempt)
        changes = {"attempt": attempt, "wait_started": row.get("wait_started") or now}
    else:
        delay, changes = 0.0, {"attempt": 0, "wait_started": None, "errors": 0, "step": tr.step}
    changes.update(tr.set, status="running", due_at=now + delay)
    enqueue(deps.queues, ROLLOUT_QUEUE, _message(row, row["seq"] + 1), delay=delay)
    try:
        rollouts.advance(deps.tables, entity, tr.note, now=now, **changes)
    except ConcurrencyConflict:
        step("rollout.lost_race", rollout=row["id"], step=row["step"])
        return
    step("rollout.step", rollout=row["id"], step=row["step"], next=changes.get("step", row["step"]),
         version=row.get("version"), note=tr.note, **({"delay_s": round(delay, 2)} if tr.wait else {}))


def _finish(deps: Deps, entity: Entity, tr: Transition) -> None:
    """End a rollout: its terminal state and the lease hand-over commit together, then the
    idempotent after-effects run (and run again on any redelivery)."""
    row = entity.data
    reason = tr.reason or tr.note
    ended = rollouts.finish(deps.tables, entity, tr.note or reason, now=deps.clock(), status=tr.status,
                            reason=reason, **tr.set)
    if ended is None:
        step("rollout.lost_race", rollout=row["id"], step=row["step"])
        return
    level = logging.INFO if tr.status == "done" else logging.WARNING
    step(f"rollout.{tr.status}", level, rollout=row["id"], model=row["model"], version=row.get("version"),
         endpoint=row["endpoint"], reason=reason)
    _after_end(deps, ended.rollout, ended.holder)
