"""Repair sweep (timer ``%REACTOR_REPAIR_SCHEDULE%``): hands on work whose worker is gone.

Messages are hints; the records and rollout rows are the truth (docs/architecture.md principles 1, 3, 5).
A host killed mid-message keeps that message invisible for its receive timeout (10 minutes in Azure: Microsoft
Learn, "Azure Queue storage trigger for Azure Functions",
https://learn.microsoft.com/en-us/azure/azure-functions/functions-bindings-storage-queue-trigger), so the
product does not wait for it:

- an open event whose claim expired (its reconcile may never have been sent) gets its
  reconcile sent again; the command's id is the event's, so it is acted on once;
- an open command whose claim expired (its worker died, or its redrive was lost) is
  redriven (a stepwise ``running`` one too: its next redrive was lost); a ``running`` command
  whose rollout has ended is closed with its outcome;
- the rollout holding an endpoint's lease gets its current step again when its message is
  ``REPAIR_GRACE_SECONDS`` overdue (``due_at``), or when it was handed the lease and never
  started (a step whose message was lost after its commit, or whose worker died holding its
  claim, which expires); the step claim (shared.rollouts L5) makes a late original harmless.

Open events and commands are found through the journal's open index (shared.journal, J5), so
a tick reads the open work and the leases, never the finished history. Records written before
the indexes existed get their entries from a one-off migration, a page per tick.

Then retention. Finished records older than ``RECORD_RETENTION_DAYS`` go every tick, oldest
first through the journal's done index, up to ``_RECORD_BATCHES`` transactions of
``journal.BATCH`` records per kind: 1,000 per kind per tick, 120,000 an hour at a 30 s tick,
far above what the product writes (the monitor's 48 a day per environment is 600 an hour at
300 environments), so a backlog drains and the journal stays at the horizon's size. Monitor
decisions and judged windows older than ``RECORD_RETENTION_DAYS`` and finished rollouts (with
their analysis runs) older than ``ROLLOUT_RETENTION_DAYS`` go hourly, oldest first through
time-ordered keys (shared.rollouts L6, shared.monitoring.store), up to ``_HISTORY_BATCH`` of each
per endpoint; a run that fills a budget runs again the next tick, until none does, so an
endpoint drains 100 rollouts, 100 decisions and 50 windows a tick (12,000 rollouts an hour),
far above what one endpoint's rollouts (one per registered version or operator command) and
its monitor (one decision and one window per check, 48 a day) write. Rollouts and windows
written before their indexes get them from a second one-off migration, a page per tick, which
also deletes analysis runs the previous retention left without their rollout.
With the sweep every 30 s, claims of 45 s and a grace of 30 s, everything accepted reaches
a terminal state within about 2 minutes of a restart (tests/test_crash_recovery.py).
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from handlers.deps import Deps
from handlers.rollout import kick, start
from handlers.webhook import CLAIM_SECONDS
from shared import commands, journal, rollouts
from shared.delivery import store as analyses
from shared.log import correlated, step
from shared.monitoring import store as monitor_store
from shared.policy import PolicyError
from shared.queues import COMMANDS_QUEUE, enqueue

STATE = "watermarks"
_RETENTION_EVERY = 3600.0
_HISTORY_BATCH = 100
_RECORD_BATCHES = 20
_MIGRATIONS = ("rollouts", "analyses", "monitor")
# Its cursor's row key. Named anew when an index is added (the rollouts' new index, shared.rollouts
# L9), so a deployment that finished the previous migration runs them once more: each is idempotent.
HISTORY_INDEXES = "history-indexes-2"
# The journal's migration cursor, named anew when the rejected index (shared.journal J6) was added.
RECORD_INDEXES = "indexes-2"


def tick(deps: Deps) -> dict[str, int]:
    with correlated(f"repair-{uuid.uuid4()}"):
        now = deps.clock()
        done = {"events": _events(deps, now), "commands": _commands(deps, now), "rollouts": _rollouts(deps, now),
                "deleted": _retention(deps, now)}
        if any(done.values()):
            step("repair.tick", **done)
        return done


def _events(deps: Deps, now: float) -> int:
    sent = 0
    for rec in journal.stale(deps.tables, "event", now=now):
        if journal.claim(deps.tables, "event", rec["key"], now=now, claim_seconds=CLAIM_SECONDS).act:
            enqueue(deps.queues, COMMANDS_QUEUE, commands.for_event(rec["key"]))
            step("repair.event", logging.WARNING, record=rec["key"], model=rec["event"]["model"])
            sent += 1
    return sent


def _commands(deps: Deps, now: float) -> int:
    repaired = 0
    for rec in journal.stale(deps.tables, "command", now=now):
        # A command that started rollouts ends when they do; a stepwise one (publish_features,
        # check_drift, retrain) goes on by its own redrives, so a lost one is sent again here.
        if rec["status"] == "running" and rec.get("started"):
            repaired += _close_if_ended(deps, rec)
            continue
        begun = journal.claim(deps.tables, "command", rec["key"], now=now, claim_seconds=deps.settings.claim_seconds)
        if begun.act:
            commands.send_redrive(deps.queues, rec["key"], begun.record["claim_holder"])
            step("repair.command", logging.WARNING, record=rec["key"], attempts=begun.record.get("attempts"))
            repaired += 1
    return repaired


def _close_if_ended(deps: Deps, rec: dict[str, Any]) -> int:
    """A command whose rollout ended before its record could be closed (a crash in between)."""
    for endpoint, rid in rec.get("started") or []:
        row = rollouts.get(deps.tables, endpoint, rid)
        data = row.data if row else {"status": "failed", "reason": f"rollout {rid} no longer exists"}
        if data["status"] in rollouts.TERMINAL:
            journal.update(deps.tables, "command", rec["key"], data["status"], reason=data.get("reason") or "",
                           rollout=rid)
            step("repair.closed", logging.WARNING, record=rec["key"], rollout=rid, status=data["status"])
            return 1
    return 0


def _endpoints(deps: Deps) -> list[str]:
    """The policy's endpoints: the policy's size bounds every per-endpoint loop of a tick."""
    return [env.endpoint for mp in deps.policy().models for env in mp.environments.values()]


def _rollouts(deps: Deps, now: float) -> int:
    grace = deps.settings.repair_grace_seconds
    kicked = 0
    for endpoint in _endpoints(deps):
        lease = rollouts.lease(deps.tables, endpoint)
        rid = lease.get("active")
        entity = rollouts.get(deps.tables, endpoint, rid) if rid else None
        if entity is None or entity.data["status"] in rollouts.TERMINAL:
            kicked += _retire_kept(deps, endpoint, lease, now)
            continue
        row = entity.data
        # A running rollout is late past its next message's due time; a pending one, past the
        # moment it was handed the lease.
        due = row.get("due_at") if row["status"] == "running" else lease.get("active_since")
        if due is not None and now - due > grace and not row.get("paused"):
            kick(deps, endpoint, rid)
            step("repair.rollout", logging.WARNING, rollout=rid, endpoint=endpoint, step=row["step"],
                 late_s=round(now - due, 1))
            kicked += 1
    return kicked


def _retire_kept(deps: Deps, endpoint: str, lease: dict[str, Any], now: float) -> int:
    """The rollback window of the entity the last good config keeps at 0% is over (shared.rollouts
    L8): a rollout, the endpoint's only writer, removes it. Its id is the window's, so ticks
    repeat it harmlessly."""
    kept = lease.get("kept")
    if not kept or kept["until"] > now or lease.get("active") or lease.get("queued"):
        return 0
    rid = rollouts.rollout_id("retire_kept", f"{endpoint}|{kept['entity']}|{kept['until']}", kept["environment"])
    try:
        start(deps, model=kept["model"], environment=kept["environment"], version=lease.get("serving_version"),
              alias=None, origin={}, cid=f"retire-{rid}", rid=rid, purpose="retire_kept")
    except PolicyError:
        return 0  # the environment left the policy: nothing of ours to retire
    step("repair.retire_kept", endpoint=endpoint, version=kept["version"], rollout=rid)
    return 1


def _retention(deps: Deps, now: float) -> int:
    _index_old_records(deps)
    _index_old_history(deps)
    return _expire_records(deps, now) + _expire_history(deps, now)


def _index_old_records(deps: Deps) -> None:
    """The one-off migration of records written before the journal's indexes (J5, J6): a page of a
    kind per tick, from a cursor kept in the state table, until every kind is done; then one
    point read per tick."""
    mark = deps.tables.get(STATE, "repair", RECORD_INDEXES)
    at = mark.data if mark else {"kind": 0, "continuation": None}
    if at.get("done"):
        return
    token = journal.backfill(deps.tables, journal.KINDS[at["kind"]], at["continuation"])
    following = at["kind"] + (token is None)
    deps.tables.upsert(STATE, "repair", RECORD_INDEXES, {"done": True} if following == len(journal.KINDS)
                       else {"kind": following, "continuation": token})


def _expire_records(deps: Deps, now: float) -> int:
    """Records past the horizon, oldest first, until none is left or the tick's budget is spent."""
    horizon = now - deps.settings.record_retention_days * 86400
    deleted = 0
    for kind in journal.KINDS:
        for _ in range(_RECORD_BATCHES):
            n = journal.delete_finished(deps.tables, kind, older_than=horizon)
            deleted += n
            if n < journal.BATCH:
                break
    return deleted


def _index_old_history(deps: Deps) -> None:
    """The one-off migration of the rollouts and judged windows written before their indexes
    (shared.rollouts L6 and L9, shared.monitoring.store) and of the analysis runs the previous retention
    left without their rollout: one page per tick, endpoint by endpoint in name order, from a
    cursor in the state table; then one point read per tick. (An endpoint added to the policy
    later has nothing written before the indexes.)"""
    mark = deps.tables.get(STATE, "repair", HISTORY_INDEXES)
    at = mark.data if mark else {}
    if at.get("done"):
        return
    endpoints = sorted(e for e in set(_endpoints(deps)) if e >= at.get("endpoint", ""))
    if not endpoints:
        deps.tables.upsert(STATE, "repair", HISTORY_INDEXES, {"done": True})
        return
    endpoint = endpoints[0]
    kind, token = (at["kind"], at["continuation"]) if endpoint == at.get("endpoint") else (0, None)
    if _MIGRATIONS[kind] == "rollouts":
        token = rollouts.index_page(deps.tables, endpoint, token)
    elif _MIGRATIONS[kind] == "analyses":
        token = analyses.orphans_page(deps.tables, endpoint, token,
                                      lambda rid: rollouts.get(deps.tables, endpoint, rid) is not None)
    else:
        token = monitor_store.index_page(deps.tables, endpoint, token)
    if token is None and kind + 1 == len(_MIGRATIONS):
        following = endpoints[1:]
        deps.tables.upsert(STATE, "repair", HISTORY_INDEXES,
                           {"endpoint": following[0], "kind": 0, "continuation": None} if following else {"done": True})
    else:
        deps.tables.upsert(STATE, "repair", HISTORY_INDEXES,
                           {"endpoint": endpoint, "kind": kind + (token is None), "continuation": token})


def _expire_history(deps: Deps, now: float) -> int:
    """Hourly, and every tick while the last run filled a budget (module docstring)."""
    mark = deps.tables.get(STATE, "repair", "retention")
    if mark and not mark.data.get("behind") and now - mark.data.get("at", 0) < _RETENTION_EVERY:
        return 0
    s, deleted, behind = deps.settings, 0, False
    for endpoint in _endpoints(deps):
        n = rollouts.delete_finished(deps.tables, endpoint, older_than=now - s.rollout_retention_days * 86400,
                                     limit=_HISTORY_BATCH,
                                     before=lambda rid, e=endpoint: analyses.delete_for_rollout(deps.tables, e, rid))
        m = monitor_store.delete_older(deps.tables, endpoint, older_than=now - s.record_retention_days * 86400,
                                       limit=_HISTORY_BATCH)
        deleted, behind = deleted + n + m, behind or n == _HISTORY_BATCH or m >= _HISTORY_BATCH // 2
    deps.tables.upsert(STATE, "repair", "retention", {"at": now, "deleted": deleted, "behind": behind})
    return deleted
