"""Registry webhook: verify, normalize, record, enqueue ``reconcile``, answer 202.

Follows DESIGN.md "Registry webhook". MLflow 3 deliveries (``X-MLflow-*`` headers) and
Databricks workspace-registry deliveries (``X-Databricks-Signature``) are told apart by
their headers. The record is written before we answer, so an accepted event is never lost;
a redelivery (same delivery id) or the same event through a second webhook (same identity)
is acknowledged and not acted on twice. MLflow retries 429 and 5xx deliveries (reference
mlflow-webhooks.md), so storage trouble answers 503, never 500.
"""

from __future__ import annotations

import hashlib
import logging
import uuid

from handlers.deps import Deps
from handlers.http_types import Request, Response
from shared import journal
from shared.events import MalformedEvent, RegistryEvent, from_databricks, from_mlflow
from shared.log import correlated, step
from shared.policy import PolicyError
from shared.queues import COMMANDS_QUEUE, enqueue
from shared.signatures import SignatureError, verify_databricks, verify_mlflow


def _reject(deps: Deps, req: Request, status: int, reason: str, record_id: str | None = None) -> Response:
    rid = record_id or f"rejected-{uuid.uuid4()}"
    journal.record(deps.tables, "event", rid, "rejected", http_status=status, reason=reason,
                   excerpt=journal.excerpt(req.body))
    step("webhook.rejected", logging.WARNING, record=rid, status=status, reason=reason)
    return Response(status, {"error": reason, "record": rid})


def handle(deps: Deps, req: Request) -> Response:
    s = deps.settings
    if len(req.body) > s.webhook_max_body_bytes:
        return _reject(deps, req, 413, f"body is {len(req.body)} bytes; the limit is {s.webhook_max_body_bytes}")
    h = req.headers
    try:
        if "x-mlflow-signature" in h or "x-mlflow-delivery-id" in h:
            delivery_id = verify_mlflow(h, req.body, s.mlflow_webhook_secret, now=deps.clock(),
                                        tolerance=s.webhook_tolerance_seconds)
            parse = from_mlflow
        elif "x-databricks-signature" in h:
            verify_databricks(h, req.body, s.databricks_webhook_secret)
            # Databricks sends no delivery id; a redelivery has the same body.
            delivery_id = "dbx-" + hashlib.sha256(req.body).hexdigest()[:32]
            parse = from_databricks
        else:
            raise SignatureError("no X-MLflow-Signature or X-Databricks-Signature header")
    except SignatureError as exc:
        return _reject(deps, req, 401, str(exc))
    with correlated(delivery_id):
        try:
            event = parse(req.body)
        except MalformedEvent as exc:
            return _reject(deps, req, 400, str(exc), record_id=f"rejected-{delivery_id}")
        return _accept(deps, delivery_id, event)


def _accept(deps: Deps, delivery_id: str, event: RegistryEvent) -> Response:
    rec, created = journal.record(deps.tables, "event", delivery_id, "accepted", event=event.as_dict())
    if not created and rec.get("status") != "accepted":
        step("webhook.duplicate", delivery=delivery_id, status=rec.get("status"))
        return Response(202, {"status": "duplicate", "record": delivery_id})
    first = journal.claim_identity(deps.tables, event.identity, delivery_id)
    if first:
        reason = f"same event as record {first}"
        journal.update(deps.tables, "event", delivery_id, "ignored", reason=reason)
        step("webhook.duplicate", delivery=delivery_id, first=first)
        return Response(202, {"status": "duplicate", "record": delivery_id})
    ignored = _why_ignored(deps, event)
    if ignored:
        journal.update(deps.tables, "event", delivery_id, "ignored", reason=ignored)
        step("webhook.ignored", kind=event.kind, model=event.model, reason=ignored)
        return Response(202, {"status": "ignored", "reason": ignored, "record": delivery_id})
    enqueue(deps.queues, COMMANDS_QUEUE, {
        "schema_version": 1, "command": "reconcile", "model": event.model,
        "reason": f"{event.source} {event.kind} v{event.version or '-'}", "correlation_id": delivery_id,
    })
    journal.update(deps.tables, "event", delivery_id, "queued")
    step("webhook.accepted", kind=event.kind, model=event.model, version=event.version, alias=event.alias)
    return Response(202, {"status": "accepted", "record": delivery_id})


def _why_ignored(deps: Deps, event: RegistryEvent) -> str | None:
    if not event.acted_on:
        return f"{event.kind} does not change what serves"
    try:
        known = deps.policy().model(event.model) is not None
    except PolicyError:
        return None  # let reconcile run and record the policy error against the command
    return None if known else f"model {event.model!r} is not in the policy"
