"""What operators read: the journal of events and commands, the rollouts, the rejections, the
status summary (shared.overview).

Every list is paged (``limit``, at most 1,000, and the ``continuation`` token the previous
page returned, as Azure Tables pages), so no request reads a whole table.

Also the poison-queue reaction: a message the host gave up on is recorded as failed, with
its body, and the record it belonged to is closed with that reason, so that nothing accepted
stays open or disappears silently (docs/architecture.md principle 5).
"""

from __future__ import annotations

import logging

from handlers.deps import Deps
from handlers.http_types import Request, Response
from shared import commands, journal, overview, rejections, rollouts
from shared.app_state import policy_and_app
from shared.commands import CommandRejected, Redrive
from shared.delivery import store as analyses
from shared.log import correlated, step
from shared.monitoring import store as monitor_store
from shared.queues import COMMANDS_QUEUE, POISON_SUFFIX
from shared.tables import MAX_PAGE

DEFAULT_PAGE = 100


def _paging(req: Request) -> tuple[int, str | None] | Response:
    raw = req.params.get("limit") or str(DEFAULT_PAGE)
    if not raw.isdigit() or not 0 < int(raw) <= MAX_PAGE:
        return Response(400, {"error": f"limit must be a whole number from 1 to {MAX_PAGE}"})
    return int(raw), req.params.get("continuation") or None


def list_records(deps: Deps, req: Request) -> Response:
    kind = req.params.get("kind") or None
    status = req.params.get("status") or None
    if kind == "rejections":
        return Response(200, {"rejections": rejections.summary(deps.tables)})
    if kind not in (None, *journal.KINDS):
        return Response(400, {"error": "kind must be event, command, poison or rejections"})
    if req.params.get("key"):
        # One record by its key (the one POST /api/commands answered), for a sender following it.
        if kind is None:
            return Response(400, {"error": "key= needs kind="})
        if not journal.KEY_PATTERN.fullmatch(req.params["key"]):
            return Response(400, {"error": "key is not a record key (shared.journal.key)"})
        found = journal.get(deps.tables, kind, req.params["key"])
        if found is None:
            return Response(404, {"error": f"no {kind} record {req.params['key']}"})
        return Response(200, {"records": [found], "continuation": None})
    paging = _paging(req)
    if isinstance(paging, Response):
        return paging
    try:
        rows, token = journal.page(deps.tables, kind, status, limit=paging[0], continuation=paging[1])
    except ValueError as exc:
        return Response(400, {"error": str(exc)})
    return Response(200, {"records": rows, "continuation": token})


def list_rollouts(deps: Deps, req: Request) -> Response:
    """A page of rollouts; with ``endpoint`` and ``rollout``, that rollout and its analysis runs."""
    endpoint, rid = req.params.get("endpoint") or None, req.params.get("rollout") or None
    if rid:
        try:
            entity = rollouts.get(deps.tables, endpoint, rid) if endpoint else None
        except ValueError as exc:
            return Response(400, {"error": str(exc)})
        if entity is None:
            return Response(404, {"error": f"no rollout {rid} on endpoint {endpoint}" if endpoint
                                  else "rollout= needs endpoint="})
        return Response(200, {"rollout": entity.data, "analyses": analyses.for_rollout(deps.tables, endpoint, rid)})
    paging = _paging(req)
    if isinstance(paging, Response):
        return paging
    try:
        rows, leases, token = rollouts.page(deps.tables, req.params.get("endpoint") or None, limit=paging[0],
                                            continuation=paging[1])
    except ValueError as exc:
        return Response(400, {"error": str(exc)})
    return Response(200, {"rollouts": rows, "endpoints": leases, "continuation": token})


def status(deps: Deps, req: Request) -> Response:
    """Per model and environment of the policy: what serves, the last rollout, the last verdict;
    and the app's own state (shared.app_state.app_status): each webhook secret's state (set,
    missing, unresolved), the settings that cannot work, and in ``attention`` what each stops,
    by setting name, never a value. An invalid policy file is the app's state too, not an outage
    (shared.app_state.policy_and_app), and no model's status can be told."""
    policy, app = policy_and_app(deps.settings, deps.policy, deps.tables, deps.clock())
    return Response(200, {"status": overview.status(deps.tables, policy) if policy else [], "app": app})


def list_decisions(deps: Deps, req: Request) -> Response:
    """The monitor's decisions, newest first per endpoint, with their figures (``endpoint=``
    narrows to one)."""
    paging = _paging(req)
    if isinstance(paging, Response):
        return paging
    try:
        got = monitor_store.decisions_page(deps.tables, req.params.get("endpoint") or None, limit=paging[0],
                                           continuation=paging[1])
    except ValueError as exc:
        return Response(400, {"error": str(exc)})
    return Response(200, {"decisions": [e.data for e in got.entities], "continuation": got.continuation})


def record_poison(deps: Deps, queue: str, body: bytes, message_id: str) -> None:
    reason = f"the host gave up on this message in {queue.removesuffix(POISON_SUFFIX)}"
    with correlated(message_id):
        journal.record(deps.tables, "poison", journal.key("msg", message_id), "failed", id=message_id, queue=queue,
                       reason=reason, excerpt=journal.excerpt(body))
        step("poison.recorded", logging.ERROR, queue=queue, message=message_id)
        if queue == COMMANDS_QUEUE + POISON_SUFFIX:
            for key in _original_records(deps, body, message_id):
                rec = journal.update(deps.tables, "command", key, "failed", reason=reason, poison=message_id)
                event = (rec.get("command") or {}).get("event")
                if event:
                    journal.update(deps.tables, "event", event, "failed", reason=reason)
                step("poison.closed", logging.ERROR, record=key)


def _original_records(deps: Deps, body: bytes, message_id: str) -> list[str]:
    """The open command records a poisoned message belonged to: never one its idempotency key
    names under another payload (that message was never its). The poison copy has a new message
    id, so a command without an id of its own is found by its payload's digest among the open
    commands (the journal's open index: a record a poisoned message belonged to is still open),
    never by reading the finished history."""
    try:
        env = commands.requested(deps.tables, commands.parse(body, message_id))
    except CommandRejected:
        return []
    if isinstance(env.command, Redrive):
        return [env.key] if journal.get(deps.tables, "command", env.key) else []
    if not env.key.startswith("msg:"):
        rec = journal.get(deps.tables, "command", env.key)
        return [env.key] if rec and not commands.conflicts(env, rec) else []
    sha = commands.digest(env.command)
    return [rec["key"] for rec in journal.open_records(deps.tables, "command") if rec.get("body_sha") == sha]
