"""What operators read: the journal of events and commands, and the rollouts.

Also the poison-queue reaction: a message the host gave up on is recorded as failed, with
its body, so that nothing accepted disappears silently (DESIGN.md principle 5).
"""

from __future__ import annotations

import logging

from handlers.deps import Deps
from handlers.http_types import Request, Response
from shared import journal, rollouts
from shared.log import correlated, step


def list_records(deps: Deps, req: Request) -> Response:
    kind = req.params.get("kind") or None
    status = req.params.get("status") or None
    if kind not in (None, "event", "command", "poison"):
        return Response(400, {"error": "kind must be event, command or poison"})
    return Response(200, {"records": journal.list_records(deps.tables, kind, status)})


def list_rollouts(deps: Deps, req: Request) -> Response:
    endpoint = req.params.get("endpoint")
    rows = rollouts.for_endpoint(deps.tables, endpoint) if endpoint else rollouts.all_rollouts(deps.tables)
    return Response(200, {"rollouts": rows, "endpoints": rollouts.all_endpoints(deps.tables)})


def record_poison(deps: Deps, queue: str, body: bytes, message_id: str) -> None:
    with correlated(message_id):
        journal.record(deps.tables, "poison", message_id, "failed", queue=queue,
                       reason=f"the host gave up on this message in {queue.removesuffix('-poison')}",
                       excerpt=journal.excerpt(body))
        step("poison.recorded", logging.ERROR, queue=queue, message=message_id)
