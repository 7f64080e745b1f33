"""Commands queue: ``deploy``, ``reconcile``, ``publish_features``, ``check_drift`` and ``retrain``
from other systems, the webhook, the watcher and the monitor; the operators' ``promote``,
``pause``, ``resume``, ``abort`` and ``rollback`` (handlers/steering.py); ``redrive`` from the app
itself.

An invalid message is recorded as rejected and acknowledged, so it never cycles into the
poison queue (docs/architecture.md "Queue commands"). A valid one is recorded, with the command itself and
the digest of its payload, before it acts, and only the worker holding the record's claim acts
(shared.journal). A later message under the same key is compared with that digest (as
Powertools' idempotency does): the same payload is a duplicate, answered with the first record
whatever its state and never acted on again (a record whose worker died is the repair sweep's
to hand on); another payload is rejected with a record of its own and changes nothing. Its
record ends when the rollouts it started end.

Transient trouble (Databricks, the registry, storage) never sends a command to the poison
queue: the handler records the error and the attempt, and sends itself a ``redrive`` of the
record after a capped exponential delay, as rollout steps do; after ``MAX_ATTEMPTS`` the
record fails with the last error. A worker that dies mid-command leaves a claim that expires,
and the repair sweep redrives the record (handlers/repair.py).
"""

from __future__ import annotations

import logging
import uuid
from typing import Any, NamedTuple

from handlers import monitor, rollout, steering
from handlers.deps import Deps
from shared import commands, journal, rollouts, serving
from shared import features as feature_tables
from shared.app_state import note_denied
from shared.commands import (
    Acting,
    CheckDrift,
    CommandRejected,
    Deploy,
    Envelope,
    Hold,
    Internal,
    Pinning,
    PublishFeatures,
    Reconcile,
    Redrive,
    Release,
    Retrain,
    Steering,
)
from shared.log import correlated, step
from shared.policy import PolicyError
from shared.registry import VersionNotFound, resolve

MAX_ATTEMPTS = 8


def handle_message(deps: Deps, body: bytes, message_id: str) -> None:
    try:
        env = commands.requested(deps.tables, commands.parse(body, message_id))
    except CommandRejected as exc:
        _reject(deps, message_id, str(exc), body)
        return
    if isinstance(env.command, Redrive):
        # A command that started rollouts has handed its work to them (they end it, or the sweep
        # does): a redrive delivered again, or sent by hand, finds nothing left to claim.
        if (journal.get(deps.tables, "command", env.key) or {}).get("started"):
            step("command.duplicate", record=env.key, status="running")
            return
        try:
            begun = journal.claim(deps.tables, "command", env.key, now=deps.clock(),
                                  claim_seconds=deps.settings.claim_seconds, token=env.command.token)
        except LookupError:
            step("command.redrive_unknown", logging.WARNING, record=env.key)
            return
        if not begun.act:
            return
        rec, cmd = begun.record, commands.stored(begun.record["command"])
    else:
        cmd = env.command
        rec, created = accept(deps, env, attempts=1)
        if not created:
            conflict = commands.conflicts(env, rec)
            if conflict:
                _reject(deps, message_id, conflict, body)
                return
            with correlated(rec.get("cid") or env.correlation_id):
                step("command.duplicate", id=env.id, record=env.key, status=rec.get("status"))
                _close_duplicate_event(deps, cmd, rec)
            return
    cid = rec.get("cid") or env.correlation_id
    with correlated(cid):
        _act(deps, env.key, rec, cmd, cid)


def _reject(deps: Deps, message_id: str, reason: str, body: bytes) -> None:
    journal.record(deps.tables, "command", journal.key("msg", message_id), "rejected", id=message_id,
                   reason=reason, excerpt=journal.excerpt(body))
    with correlated(message_id):
        step("command.rejected", logging.WARNING, message=message_id, reason=reason)


def accept(deps: Deps, env: Envelope, *, attempts: int, holder: str | None = None) -> tuple[dict[str, Any], bool]:
    """Record ``env``'s command with its payload digest and a claim for ``holder`` (a new one by
    default); returns the record and whether it is new. An existing record is left unchanged:
    the caller compares it with shared.commands.conflicts."""
    cmd = env.command
    assert not isinstance(cmd, Internal)
    return journal.record(deps.tables, "command", env.key, "accepted", id=env.id, source=env.source,
                          command=cmd.model_dump(mode="json", exclude_none=True), cid=env.correlation_id,
                          body_sha=commands.digest(cmd), claim_holder=holder or uuid.uuid4().hex,
                          claim_until=deps.clock() + deps.settings.claim_seconds, attempts=attempts)


def _close_duplicate_event(deps: Deps, cmd: Acting, rec: dict[str, Any]) -> None:
    """A duplicate still answers for the event that sent it: once its command has ended, the
    event takes its outcome (the first worker may have died between ending the command and
    closing the event)."""
    if cmd.event and rec.get("status") in journal.TERMINAL:
        _close_event(deps, cmd.event, rec["status"], rec.get("reason") or "; ".join(rec.get("outcome") or []))


def _act(deps: Deps, key: str, rec: dict[str, Any], cmd: Acting, cid: str) -> None:
    origin = {"kind": "command", "id": key}
    step("command.received", command=cmd.command, model=cmd.model, id=rec.get("id"), attempt=rec.get("attempts"))
    try:
        if isinstance(cmd, PublishFeatures | CheckDrift | Retrain):
            _stepwise(deps, key, rec, cmd)
            return
        by = str(rec.get("source") or "unknown")
        if isinstance(cmd, Hold | Release):
            outcomes = pin(deps, key, cmd, by, origin, cid)
        elif isinstance(cmd, Steering) and steering.is_undo(deps, cmd):
            outcomes = [Outcome(*steering.undo(deps, key, cmd, by, origin, cid))]
        elif isinstance(cmd, Steering):
            outcomes = [Outcome(steering.apply(deps, key, cmd))]
        elif isinstance(cmd, Deploy):
            outcomes = [deploy(deps, cmd, origin, cid, key=key, by=by)]
        else:
            outcomes = reconcile(deps, cmd, origin, cid)
    except (PolicyError, steering.Refused) as exc:
        journal.update(deps.tables, "command", key, "rejected", reason=str(exc))
        step("command.rejected", logging.WARNING, id=key, reason=str(exc))
        _close_event(deps, cmd.event, "rejected", str(exc))
        return
    except Exception as exc:  # transient until proven otherwise: retried inside our own state
        _retry(deps, key, rec, cmd, exc)
        return
    outcome = [o.text for o in outcomes]
    started = [list(o.rollout) for o in outcomes if o.rollout]
    journal.update(deps.tables, "command", key, "running" if started else "done", outcome=outcome, claim_until=None,
                   started=started)
    step("command.done", id=key, outcome=outcome)
    _close_event(deps, cmd.event, "done", "; ".join(outcome))


# How long a stepwise command may keep waiting: statements and syncs as long as a rollout waits
# for its endpoint; a retraining run as long as a job may reasonably train.
_RUN_WAIT_SECONDS = 48 * 3600.0


def _stepwise(deps: Deps, key: str, rec: dict[str, Any], cmd: PublishFeatures | CheckDrift | Retrain) -> None:
    """One step of a command that goes on over several messages. More work to do goes on at
    once; a wait (a statement still running, another writer's claim, a job run) is looked at
    again with capped backoff, never waited for in the function (docs/architecture.md principle 3)."""
    if isinstance(cmd, PublishFeatures):
        outcome, status, cursors = publish_features(deps, cmd, rec.get("cursors") or {})
        fields: dict[str, Any] = {"cursors": cursors}
        limit = deps.settings.wait_timeout_seconds
    elif isinstance(cmd, CheckDrift):
        status, outcome, cursor = monitor.check_drift(deps, key, rec, cmd)
        fields, limit = {"cursor": cursor}, deps.settings.wait_timeout_seconds
    else:
        status, outcome, fields = monitor.retrain(deps, key, rec, cmd)
        limit = _RUN_WAIT_SECONDS
    s, now = deps.settings, deps.clock()
    if status == "progress":
        _redrive(deps, key, delay=0.0, status="running", outcome=outcome, attempts=0, waits=0, waiting_since=None,
                 **fields)
    elif status == "wait" and now - (rec.get("waiting_since") or now) <= limit:
        waits = int(rec.get("waits") or 0) + 1
        delay = min(s.backoff_cap_seconds, s.backoff_base_seconds * 2 ** (waits - 1))
        _redrive(deps, key, delay=delay, status="running", outcome=outcome, attempts=0, waits=waits,
                 waiting_since=rec.get("waiting_since") or now, **fields)
    else:
        if status == "wait":
            status = "failed"
            outcome = [*outcome, f"gave up waiting after {limit:.0f} s"]
        journal.update(deps.tables, "command", key, status, outcome=outcome, **fields)
        _close_event(deps, cmd.event, "done", "; ".join(outcome))
    step(f"command.{status}", id=key, outcome=outcome)


def _retry(deps: Deps, key: str, rec: dict[str, Any], cmd: Acting, exc: Exception) -> None:
    note_denied(deps.tables, exc, f"command {cmd.command} of {cmd.model}", deps.clock())
    attempts = int(rec.get("attempts") or 1)
    error = f"{type(exc).__name__}: {exc}"
    if attempts >= MAX_ATTEMPTS:
        reason = f"gave up after {attempts} attempts: {error}"
        journal.update(deps.tables, "command", key, "failed", reason=reason)
        if isinstance(cmd, CheckDrift):
            monitor.record_failure(deps, cmd, reason)
        step("command.failed", logging.ERROR, id=key, reason=reason)
        _close_event(deps, cmd.event, "failed", reason)
        return
    s = deps.settings
    delay = min(s.backoff_cap_seconds, s.backoff_base_seconds * 2 ** (attempts - 1))
    step("command.retry", logging.WARNING, id=key, attempt=attempts, delay_s=delay, error=error)
    _redrive(deps, key, delay=delay, status="accepted", last_error=error)


def _redrive(deps: Deps, key: str, *, delay: float, status: str, **fields: Any) -> None:
    """Hand the record and its claim on to a later message. The claim is recorded first: if the
    enqueue then fails, the claim expires and the repair sweep sends the redrive instead."""
    until = deps.clock() + delay + deps.settings.claim_seconds
    token = journal.hand_on(deps.tables, "command", key, status, until=until, **fields)
    commands.send_redrive(deps.queues, key, token, delay=delay)


def submit(deps: Deps, key: str, command: dict[str, Any], cid: str) -> bool:
    """Our own command (the watcher's, the monitor's): recorded before it is sent, so that a
    lost message is redriven by the sweep like any other, and only the record's key travels.
    Returns False if that record already existed."""
    token = uuid.uuid4().hex
    _, created = accept(deps, Envelope(commands.stored(command), key, "app", cid, key), attempts=0, holder=token)
    if created:
        commands.send_redrive(deps.queues, key, token)
    return created


def _close_event(deps: Deps, event_key: str | None, status: str, outcome: str) -> None:
    """The webhook event that asked for this command is done once the command has run."""
    if event_key:
        journal.update(deps.tables, "event", event_key, status, outcome=outcome, claim_until=None)


class Outcome(NamedTuple):
    text: str
    rollout: tuple[str, str] | None = None  # (endpoint, id) it started: the command ends when that rollout does


def pin(deps: Deps, key: str, cmd: Pinning, by: str, origin: dict[str, str], cid: str) -> list[Outcome]:
    """``hold`` or ``release``, then the environment's reconcile, which under the hold brings the
    held version and after the release what the policy tracks."""
    said = Outcome(steering.pin(deps, key, cmd, by))
    again = Reconcile(command="reconcile", model=cmd.model, environment=cmd.environment)
    return [said, *reconcile(deps, again, origin, cid)]


def _older(version: str, than: str | None) -> bool:
    return than is not None and int(version) < int(than)


def deploy(deps: Deps, cmd: Deploy, origin: dict[str, str], cid: str, *, key: str = "", by: str = "unknown",
           ) -> Outcome:
    """An explicit rollout, which retries a version that failed. A version that already serves
    with nothing in flight needs none, and one already rolling out is joined, not repeated.

    Under a hold (shared.rollouts L7) only the held version deploys; another is refused. A deploy
    of a version older than the serving champion holds the environment at it (unless ``hold``
    is false), so reconcile does not bring the newer one straight back (README "Undo and hold")."""
    mp = deps.policy().model(cmd.model)
    env = mp.environments.get(cmd.environment) if mp else None
    try:
        version = cmd.version or resolve(deps.registry(), cmd.model, alias=cmd.alias).version
    except VersionNotFound:
        version = None  # the rollout's resolve step fails it, with the reason
    if env is not None and version:
        lease = rollouts.lease(deps.tables, env.endpoint)
        hold = lease.get("hold")
        if hold and str(hold["version"]) != str(version):
            raise steering.Refused(f"{cmd.environment} is {rollouts.hold_note(hold)}; send release first to deploy "
                                   f"version {version}")
        if not hold and (cmd.hold or (cmd.hold is None and _older(version, lease.get("serving_version")))):
            why = f"deploy of version {version}" + (f", older than version {lease.get('serving_version')}"
                                                    if cmd.hold is None else "")
            rollouts.set_hold(deps.tables, env.endpoint, steering.new_hold(deps, version, by, why, key))
    if env is not None and cmd.version:
        view = serving.read(deps.workspace(), env.endpoint)
        if not lease.get("active") and _serves(view, lease, mp.name, cmd.version, env):
            return Outcome(f"{cmd.environment}: version {cmd.version} already serves")
    row, ours = rollout.start(deps, model=cmd.model, environment=cmd.environment, version=cmd.version,
                              alias=cmd.alias, origin=origin, cid=cid, join=True)
    if not ours:
        return Outcome(f"{cmd.environment}: version {cmd.version} is already rolling out ({row['id']})")
    return Outcome(f"rollout {row['id']} for {cmd.environment}", (row["endpoint"], row["id"]))


def _serves(view: serving.EndpointView, lease: dict[str, Any], model: str, version: str, env: Any) -> bool:
    """Whether ``version`` serves alone, or with the previous champion kept at 0% for the rollback
    window (the last good config, shared.rollouts L8)."""
    if view.serves(serving.single_version_config(model, version, env.served_entity)):
        return True
    return bool(lease.get("kept")) and str(lease.get("serving_version")) == str(version) \
        and view.serves(lease["last_good"])


def reconcile(deps: Deps, cmd: Reconcile, origin: dict[str, str], cid: str) -> list[Outcome]:
    """Compare what should serve (policy + registry) with what serves, and start what differs.

    Desired state is the truth (docs/architecture.md principle 1): the endpoint itself is read, so a
    lost event or a hand-made change is repaired too. A version whose rollout failed is not
    retried by reconcile; an explicit ``deploy`` retries it. It reads the endpoint's lease row
    (after the endpoint), never its rollout history.
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
    view = serving.read(deps.workspace(), env.endpoint)
    # The lease is read after the endpoint: a rollout that ends between the two reads (often the
    # very one whose alias change sent this reconcile) then shows as idle, so what the endpoint
    # showed is its end state, not a step on the way.
    lease = rollouts.lease(deps.tables, env.endpoint)
    hold = lease.get("hold")
    held = ""
    if hold and str(hold["version"]) != version:
        # The hold, not the registry, says what serves (shared.rollouts L7).
        held = f" (version {version} not rolled out: {rollouts.hold_note(hold)})"
        version = str(hold["version"])
    failed = (lease.get("failed") or {}).get(version)
    if failed:
        return Outcome(f"{name}: version {version} failed before ({failed}); send deploy to retry{held}")
    if _serves(view, lease, model, version, env) and not lease.get("active"):
        return Outcome(f"{name}: version {version} already serves{held}")
    rid = rollouts.rollout_id(origin["kind"], origin["id"], name)
    # The version is pinned as resolved now; the alias it followed is recorded with it.
    row, ours = rollout.start(deps, model=model, environment=name, version=version,
                              alias=None if held else env.track_alias, origin=origin, cid=cid, rid=rid, join=True)
    if not ours:
        return Outcome(f"{name}: version {version} is already rolling out ({row['id']}){held}")
    return Outcome(f"rollout {row['id']} of version {version} to {name}{held}", (row["endpoint"], row["id"]))


def publish_features(deps: Deps, cmd: PublishFeatures, cursors: dict[str, Any],
                     ) -> tuple[list[str], str, dict[str, Any]]:
    """Refresh online copies now: Databricks-side tables get a sync triggered; a third-party
    store is copied to here, one time-bounded message after another (the cursors go on in the
    record). Returns the outcome, ``progress`` / ``wait`` / ``done`` / ``failed``, and the
    cursors to resume from."""
    mp = deps.policy().model(cmd.model)
    if mp is None or mp.features is None:
        raise PolicyError(f"model {cmd.model!r} has no feature tables in the policy")
    if cmd.table and cmd.table not in {t.source for t in mp.features.tables}:
        raise PolicyError(f"model {cmd.model!r} has no feature table {cmd.table!r} in the policy")
    if not deps.settings.warehouse_id:
        raise PolicyError("DATABRICKS_WAREHOUSE_ID is not set: feature tables are read through a SQL warehouse")
    s = deps.settings
    statuses = feature_tables.ensure(deps.workspace(), s.warehouse_id, mp.features, s.env, cursors,
                                     now=deps.clock(), budget_seconds=s.feature_step_budget_seconds, only=cmd.table,
                                     refresh=True)
    outcome = [f"{st.source}: {st.state}: {st.note}" for st in statuses]
    nxt = {st.source: st.cursor for st in statuses if st.cursor}
    if any(st.state == "progress" for st in statuses):
        return outcome, "progress", nxt
    # A Databricks-side table is pending once its sync was triggered: that is the refresh asked for.
    # A third-party copy or a statement still running must be looked at again.
    own_copy = mp.features.store.kind == "rdbms"
    if any(st.state == "pending" and (st.cursor or own_copy) for st in statuses):
        return outcome, "wait", nxt
    return outcome, "failed" if any(st.state == "failed" for st in statuses) else "done", {}
