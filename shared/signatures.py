"""Webhook signature checks for the two registries that can call us.

- MLflow 3 (reference mlflow-webhooks.md "A delivery"; the Standard Webhooks scheme):
  ``X-MLflow-Signature: v1,<base64 HMAC-SHA256(secret, "{delivery_id}.{timestamp}.{body}")>``
  with ``X-MLflow-Delivery-Id`` and ``X-MLflow-Timestamp`` (Unix seconds). Timestamps outside
  the tolerance window, past or future, are refused so that a captured request cannot be replayed.
- Databricks workspace registry (reference databricks-api.md §6): ``X-Databricks-Signature``,
  lowercase hex HMAC-SHA256 of the raw body.

Every comparison is constant-time (``hmac.compare_digest``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping


class SignatureError(Exception):
    """The request is not provably from the registry: answered 401, recorded with this reason."""


def _header(headers: Mapping[str, str], name: str) -> str:
    value = headers.get(name.lower()) or headers.get(name)
    if not value:
        raise SignatureError(f"missing {name} header")
    return value


def mlflow_signature(secret: str, delivery_id: str, timestamp: str, body: bytes) -> str:
    signed = delivery_id.encode() + b"." + timestamp.encode() + b"." + body
    digest = hmac.new(secret.encode(), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


def databricks_signature(secret: str, body: bytes) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify_mlflow(headers: Mapping[str, str], body: bytes, secret: str, *, now: float, tolerance: float) -> str:
    """Check an MLflow 3 delivery; returns its delivery id. ``headers`` keys are lower case."""
    if not secret:
        raise SignatureError("no MLflow webhook secret is configured (MLFLOW_WEBHOOK_SECRET)")
    delivery_id = _header(headers, "X-MLflow-Delivery-Id")
    timestamp = _header(headers, "X-MLflow-Timestamp")
    presented = _header(headers, "X-MLflow-Signature")
    try:
        sent_at = int(timestamp)
    except ValueError as exc:
        raise SignatureError("X-MLflow-Timestamp is not Unix seconds") from exc
    if abs(now - sent_at) > tolerance:
        raise SignatureError(f"timestamp {sent_at} is outside the {int(tolerance)} s window (now {int(now)})")
    expected = mlflow_signature(secret, delivery_id, timestamp, body)
    # Standard Webhooks allows several space-separated signatures (during secret rotation).
    if not any(hmac.compare_digest(expected.encode(), s.encode()) for s in presented.split()):
        raise SignatureError("X-MLflow-Signature does not match")
    return delivery_id


def verify_databricks(headers: Mapping[str, str], body: bytes, secret: str) -> None:
    if not secret:
        raise SignatureError("no Databricks webhook secret is configured (DATABRICKS_WEBHOOK_SECRET)")
    presented = _header(headers, "X-Databricks-Signature").strip().lower()
    if not hmac.compare_digest(databricks_signature(secret, body).encode(), presented.encode()):
        raise SignatureError("X-Databricks-Signature does not match")
