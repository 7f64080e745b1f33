"""Commands queue: ``deploy`` and ``reconcile`` from other systems, the webhook and the watcher.

An invalid message is recorded as rejected and acknowledged, so it never cycles into the
poison queue (DESIGN.md "Queue commands"). A valid one is recorded before it acts; its
record ends when the rollouts it started end.
"""

from __future__ import annotations

import logging
import os
from typing import Any, NamedTuple

from handlers import rollout
from handlers.deps import Deps
from shared import commands, journal, rollouts, serving
from shared import features as feature_tables
from shared.commands import CommandRejected, Deploy, PublishFeatures, Reconcile
from shared.log import correlated, step
from shared.policy import PolicyError
from shared.queues import COMMANDS_QUEUE, enqueue
from shared.registry import VersionNotFound, resolve


def handle_message(deps: Deps, body: bytes, message_id: str) -> None:
    try:
        env = commands.parse(body, message_id)
    except CommandRejected as exc:
        journal.record(deps.tables, "command", message_id, "rejected", reason=str(exc),
                       excerpt=journal.excerpt(body))
        with correlated(message_id):
            step("command.rejected", logging.WARNING, message=message_id, reason=str(exc))
        return
    cmd = env.command
    rec, created = journal.record(deps.tables, "command", env.id, "accepted", source=env.source,
                                  command=cmd.model_dump(exclude_none=True), cid=env.correlation_id)
    if not created and rec.get("status") != "accepted":
        with correlated(env.correlation_id):
            step("command.duplicate", id=env.id, status=rec.get("status"))
        return
    origin = {"kind": "command", "id": env.id}
    with correlated(env.correlation_id):
        step("command.received", command=cmd.command, model=cmd.model, id=env.id, source=env.source)
        try:
            if isinstance(cmd, PublishFeatures):
                outcome, status = publish_features(deps, cmd, env.id, env.correlation_id)
                first = (cmd.resume or {}).get("record", env.id)
                journal.update(deps.tables, "command", first, status, outcome=outcome)
                if first != env.id:
                    journal.update(deps.tables, "command", env.id, "done", outcome=[f"continued command {first}"])
                step(f"command.{status}", id=first, outcome=outcome)
                return
            if isinstance(cmd, Deploy):
                row, _ = rollout.start(deps, model=cmd.model, environment=cmd.environment, version=cmd.version,
                                       alias=cmd.alias, origin=origin, cid=env.correlation_id)
                outcomes = [Outcome(f"rollout {row['id']} for {cmd.environment}", started=True)]
            else:
                outcomes = reconcile(deps, cmd, origin, env.correlation_id)
        except PolicyError as exc:
            journal.update(deps.tables, "command", env.id, "rejected", reason=str(exc))
            step("command.rejected", logging.WARNING, id=env.id, reason=str(exc))
            _close_event(deps, env.correlation_id, f"rejected: {exc}")
            return
        outcome = [o.text for o in outcomes]
        started = any(o.started for o in outcomes)
        journal.update(deps.tables, "command", env.id, "running" if started else "done", outcome=outcome)
        step("command.done", id=env.id, outcome=outcome)
        _close_event(deps, env.correlation_id, "; ".join(outcome))


def _close_event(deps: Deps, cid: str, outcome: str) -> None:
    """The webhook event that asked for this reconcile is done once the reconcile has run."""
    if journal.get(deps.tables, "event", cid):
        journal.update(deps.tables, "event", cid, "done", outcome=outcome)


class Outcome(NamedTuple):
    text: str
    started: bool = False  # a rollout started, so the command ends when the rollout does


def reconcile(deps: Deps, cmd: Reconcile, origin: dict[str, str], cid: str) -> list[Outcome]:
    """Compare what should serve (policy + registry) with what serves, and start what differs.

    Desired state is the truth (DESIGN.md principle 1): the endpoint itself is read, so a
    lost event or a hand-made change is repaired too. A version whose rollout failed is not
    retried by reconcile; an explicit ``deploy`` retries it.
    """
    mp = deps.policy().model(cmd.model)
    if mp is None:
        return [Outcome(f"model {cmd.model!r} is not in the policy")]
    if cmd.environment and cmd.environment not in mp.environments:
        raise PolicyError(f"model {cmd.model!r} has no environment {cmd.environment!r} in the policy")
    names = [cmd.environment] if cmd.environment else list(mp.environments)
    return [_reconcile_env(deps, mp.name, name, mp.environments[name], origin, cid) for name in names]


def _reconcile_env(deps: Deps, model: str, name: str, env: Any, origin: dict[str, str], cid: str) -> Outcome:
    try:
        desired = resolve(deps.registry(), model, alias=env.track_alias)
    except VersionNotFound as exc:
        return Outcome(f"{name}: nothing to serve ({exc})")
    version = desired.version
    history = rollouts.for_endpoint(deps.tables, env.endpoint)
    in_flight = [r for r in history if r["status"] not in rollouts.TERMINAL and r.get("version") == version]
    if in_flight:
        return Outcome(f"{name}: version {version} is already rolling out ({in_flight[-1]['id']})")
    view = serving.read(deps.workspace(), env.endpoint)
    if view.serves(serving.single_version_config(model, version, env.served_entity)):
        return Outcome(f"{name}: version {version} already serves")
    failed = [r for r in history if r["status"] == "failed" and r.get("version") == version]
    if failed:
        return Outcome(f"{name}: version {version} failed before ({failed[-1].get('reason')}); send deploy to retry")
    generation = rollouts.endpoint_state(deps.tables, env.endpoint).get("generation", 0)
    rid = rollouts.rollout_id("reconcile", f"{model}|{version}|{generation}", name)
    row, ours = rollout.start(deps, model=model, environment=name, version=version, alias=None, origin=origin,
                              cid=cid, rid=rid)
    if not ours:
        return Outcome(f"{name}: version {version} is already rolling out ({row['id']})")
    return Outcome(f"rollout {row['id']} of version {version} to {name}", started=True)


def publish_features(deps: Deps, cmd: PublishFeatures, record_id: str, cid: str) -> tuple[list[str], str]:
    """Refresh online copies now: Databricks-side tables get a sync triggered; a third-party
    store is copied to here, one time-bounded message after another (``resume``)."""
    mp = deps.policy().model(cmd.model)
    if mp is None or mp.features is None:
        raise PolicyError(f"model {cmd.model!r} has no feature tables in the policy")
    if cmd.table and cmd.table not in {t.source for t in mp.features.tables}:
        raise PolicyError(f"model {cmd.model!r} has no feature table {cmd.table!r} in the policy")
    if not deps.settings.warehouse_id:
        raise PolicyError("DATABRICKS_WAREHOUSE_ID is not set: feature tables are read through a SQL warehouse")
    resume = cmd.resume or {}
    statuses = feature_tables.ensure(deps.workspace(), deps.settings.warehouse_id, mp.features, os.environ,
                                     resume.get("cursors") or {}, now=deps.clock(),
                                     budget_seconds=deps.settings.feature_step_budget_seconds, only=cmd.table,
                                     refresh=True)
    outcome = [f"{st.source}: {st.state}: {st.note}" for st in statuses]
    cursors = {st.source: st.cursor for st in statuses if st.cursor}
    if cursors:
        enqueue(deps.queues, COMMANDS_QUEUE, {
            "command": "publish_features", "model": cmd.model, "table": cmd.table, "correlation_id": cid,
            "resume": {"record": resume.get("record", record_id), "cursors": cursors},
        })
        return outcome, "running"
    return outcome, "failed" if any(st.state == "failed" for st in statuses) else "done"
