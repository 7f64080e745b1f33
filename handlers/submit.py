"""``POST /api/commands``: an operator (the CLI's HTTP backend, another system with a function
key) sends one command, as it would put it on the commands queue (README "Sending a command from
another system").

The body is validated with the queue's own schema (shared.commands.parse_external: the same
depth and size bounds, the app's own fields and kinds refused), so a bad command answers 400 with
the reason and is never enqueued; like other bad input that has no record of its own, it is
counted with a sample in the bounded rejections table (shared.rejections), never a record per
request.

A valid command is recorded before the answer, with the digest of its payload, and only a
``redrive`` naming the record is enqueued (handlers.commands.submit does the same for the app's
own commands), so the answer already knows the key's history: an idempotency key first used with
another payload answers 400 with the reason and changes nothing; the same payload again answers
202 ``duplicate`` with the first record, whatever its state, and is not sent again (Powertools'
idempotency, shared.commands). A new command answers 202 with the key of its journal record
(``GET /api/records?kind=command&key=...``); what it then does, or why it is rejected (a model
the policy does not name, a rollout that already ended), is in that record. If the enqueue
fails after the record, the claim expires and the repair sweep sends the redrive.
"""

from __future__ import annotations

import logging
import uuid

from handlers import commands as command_handler
from handlers.deps import Deps
from handlers.http_types import Request, Response
from shared import commands, rejections
from shared.commands import CommandRejected
from shared.log import step


def _refuse(deps: Deps, req: Request, code: str, reason: str) -> Response:
    ref = rejections.note(deps.tables, 400, code, reason, req.body)
    step("command.refused", logging.WARNING, reason=reason, sample=ref)
    return Response(400, {"error": reason})


def handle(deps: Deps, req: Request) -> Response:
    try:
        # Without an idempotency key the record is keyed by an id of ours, as a queue message's.
        env = commands.parse_external(req.body, uuid.uuid4().hex, source="http")
    except CommandRejected as exc:
        return _refuse(deps, req, "bad_command", f"invalid command: {exc}")
    token = uuid.uuid4().hex
    rec, created = command_handler.accept(deps, env, attempts=0, holder=token)
    if not created:
        conflict = commands.conflicts(env, rec)
        if conflict:
            return _refuse(deps, req, "id_reused", f"invalid command: {conflict}")
        step("command.duplicate", id=env.id, record=env.key, status=rec.get("status"))
        return Response(202, {"kind": "command", "record": env.key, "status": "duplicate", "first": rec})
    commands.send_redrive(deps.queues, env.key, token)
    step("command.submitted", record=env.key)
    return Response(202, {"kind": "command", "record": env.key, "status": "accepted"})
