"""``POST /api/commands``: an operator (the CLI's HTTP backend, another system with a function
key) sends one command, as it would put it on the commands queue (README "Sending a command from
another system"); the app enqueues it in the encoding the queue trigger expects.

The body is validated with the queue's own schema (shared.commands.send) before anything is
sent, so a bad command answers 400 with the reason and is never enqueued; like other bad input
that has no record of its own, it is counted with a sample in the bounded rejections table
(shared.rejections), never a record per request. A valid command answers 202 with the key of the
journal record it will have (``GET /api/records?kind=command&key=...``). What the command then
does, or why it is rejected (a model the policy does not name, a rollout that already ended), is
in that record.
"""

from __future__ import annotations

import logging

from handlers.deps import Deps
from handlers.http_types import Request, Response
from shared import commands, rejections
from shared.commands import CommandRejected
from shared.log import step


def handle(deps: Deps, req: Request) -> Response:
    try:
        key = commands.send(deps.queues, req.body)
    except CommandRejected as exc:
        reason = f"invalid command: {exc}"
        ref = rejections.note(deps.tables, 400, "bad_command", reason, req.body)
        step("command.refused", logging.WARNING, reason=reason, sample=ref)
        return Response(400, {"error": reason})
    step("command.submitted", record=key)
    return Response(202, {"kind": "command", "record": key})
