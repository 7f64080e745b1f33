"""Registry webhook: verify, normalize, record, enqueue ``reconcile``, answer 202.

Follows docs/architecture.md "Registry webhook". MLflow 3 deliveries (``X-MLflow-Signature``) and
Databricks workspace-registry deliveries (``X-Databricks-Signature``) are told apart by their
signature header (shared.signatures). An accepted delivery costs two storage round trips
before the 202 on Azure Storage, one commit on SQLite (shared.storage.one_commit): the record
is inserted (keyed by the event's identity, so a redelivery and the same event through a
second webhook are one record) and ``reconcile`` is enqueued. An event that changes nothing
the policy serves is recorded ``ignored`` in one write. Only
the request that inserted the record, or took over its expired claim, enqueues: concurrent
duplicates answer ``duplicate`` and never act. A crash between the two writes leaves an open
record whose claim expires, and the repair sweep enqueues its reconcile (handlers/repair.py).

Requests that are not provably from a registry (no or bad signature, too large to check)
answer 401/413 and cost bounded storage (shared.rejections), since anyone can send them.
A signed but malformed delivery answers 400 and is recorded once per delivery id. MLflow retries 429 and 5xx
deliveries (MLflow, "Webhooks", https://mlflow.org/docs/latest/ml/webhooks), so trouble in our own storage
answers 503, never 500; bad input never gets a 5xx.
"""

from __future__ import annotations

import logging

from handlers.deps import Deps
from handlers.http_types import Request, Response
from shared import commands, journal, rejections
from shared.events import MalformedEvent, RegistryEvent, from_databricks, from_mlflow
from shared.log import correlated, step
from shared.policy import PolicyError
from shared.queues import COMMANDS_QUEUE, enqueue
from shared.signatures import SignatureError, verify_delivery
from shared.storage import one_commit

# Long enough for one request's two writes; a redelivery after that takes the work over.
CLAIM_SECONDS = 10.0


def _refuse(deps: Deps, req: Request, status: int, code: str, public: str, detail: str) -> Response:
    ref = rejections.note(deps.tables, status, code, detail, req.body)
    step("webhook.rejected", logging.WARNING, status=status, code=code, reason=detail, sample=ref)
    return Response(status, {"error": public})


def handle(deps: Deps, req: Request) -> Response:
    s = deps.settings
    if len(req.body) > s.webhook_max_body_bytes:
        return _refuse(deps, req, 413, "too_large", f"the body is larger than {s.webhook_max_body_bytes} bytes",
                       f"body is {len(req.body)} bytes; the limit is {s.webhook_max_body_bytes}")
    try:
        verified = verify_delivery(req.headers, req.body, mlflow_secret=s.mlflow_webhook_secret,
                                   databricks_secret=s.databricks_webhook_secret, now=deps.clock(),
                                   tolerance=s.webhook_tolerance_seconds)
    except SignatureError as exc:
        return _refuse(deps, req, 401, exc.reason, str(exc), exc.detail)
    delivery_id = verified.delivery_id
    parse = from_mlflow if verified.source == "mlflow" else from_databricks
    with correlated(delivery_id):
        try:
            event = parse(req.body)
        except MalformedEvent as exc:
            rec_key = journal.key(verified.source, delivery_id)
            journal.record(deps.tables, "event", rec_key, "rejected", id=delivery_id, http_status=400,
                           reason=str(exc), excerpt=journal.excerpt(req.body))
            step("webhook.rejected", logging.WARNING, record=rec_key, status=400, reason=str(exc))
            return Response(400, {"error": str(exc), "record": rec_key})
        return _accept(deps, delivery_id, event)


def _accept(deps: Deps, delivery_id: str, event: RegistryEvent) -> Response:
    key = journal.key("event", event.identity)
    fields = {"id": delivery_id, "event": event.as_dict(), "cid": delivery_id}
    ignored = _why_ignored(deps, event)
    with one_commit(deps.tables, deps.queues):
        if ignored:
            record, newly_ignored = journal.record(deps.tables, "event", key, "ignored", reason=ignored, **fields)
            act = False
        else:
            begun = journal.begin(deps.tables, "event", key, now=deps.clock(), claim_seconds=CLAIM_SECONDS, **fields)
            record, newly_ignored, act = begun.record, False, begun.act
            if act:
                # Only the record's key travels: the reconcile, with the event it closes, is read
                # back from the record (shared.commands.event_reconcile), never from the message.
                enqueue(deps.queues, COMMANDS_QUEUE, commands.for_event(key))
    if newly_ignored:
        step("webhook.ignored", kind=event.kind, model=event.model, reason=ignored)
        return Response(202, {"status": "ignored", "reason": ignored, "record": key})
    if not act:
        step("webhook.duplicate", delivery=delivery_id, record=key, status=record.get("status"))
        return Response(202, {"status": "duplicate", "record": key})
    step("webhook.accepted", kind=event.kind, model=event.model, version=event.version, alias=event.alias)
    return Response(202, {"status": "accepted", "record": key})


def _why_ignored(deps: Deps, event: RegistryEvent) -> str | None:
    if not event.acted_on:
        return f"{event.kind} does not change what serves"
    try:
        known = deps.policy().model(event.model) is not None
    except PolicyError:
        return None  # let reconcile run and record the policy error against the command
    return None if known else f"model {event.model!r} is not in the policy"
