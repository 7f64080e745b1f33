"""Webhook signature checks for the two registries that can call us.

- MLflow 3 (MLflow, "Webhooks", https://mlflow.org/docs/latest/ml/webhooks; the Standard Webhooks scheme):
  ``X-MLflow-Signature: v1,<base64 HMAC-SHA256(secret, "{delivery_id}.{timestamp}.{body}")>``
  with ``X-MLflow-Delivery-Id`` and ``X-MLflow-Timestamp`` (Unix seconds). Timestamps outside
  the tolerance window, past or future, are refused so that a captured request cannot be replayed.
- Databricks workspace registry (Azure Databricks, "MLflow Model Registry Webhooks on Azure Databricks",
  https://learn.microsoft.com/en-us/azure/databricks/mlflow/model-registry-webhooks): ``X-Databricks-Signature``,
  lowercase hex HMAC-SHA256 of the raw body.

``verify_delivery`` is the one decision the webhook makes. The scheme is chosen by which
*signature* header is present, never by other ``X-MLflow-*`` headers. When both signature
headers are present, each scheme whose secret is configured is tried, MLflow first, and the
first that verifies is accepted: either signature alone proves the body came from a holder
of that secret, so the other header cannot make an authentic delivery less authentic.

Header values are checked for shape before any arithmetic or hashing, so no caller can make
the check itself fail. A header sent twice reaches us joined with ``", "`` (RFC 9110 §5.3);
a signature header then matches if any presented entry matches, whatever their order.

Every comparison is constant-time (``hmac.compare_digest``).

A secret setting that still holds a platform reference is no secret: App Service passes an
unresolved reference through as the setting's value (Microsoft Learn, "Use Key Vault references
as app settings in Azure App Service and Azure Functions",
https://learn.microsoft.com/en-us/azure/app-service/app-service-key-vault-references: "If a
reference isn't resolved properly, the reference string is used instead"), and that string is in
the template, the portal and the deployment history. :func:`secret_state` tells it apart, and
every delivery that would need it is refused (``unresolved_secret``) until the platform resolves
it; the start-up check and ``GET /api/status`` say so (:func:`secret_problems`).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from shared.redaction import is_secret_reference

PUBLIC_MESSAGE = "signature verification failed"

# Stable reason codes, few enough to count per code.
NO_SIGNATURE = "no_signature"
NO_SECRET = "no_secret"
UNRESOLVED_SECRET = "unresolved_secret"
MALFORMED_HEADER = "malformed_header"
OUTSIDE_WINDOW = "outside_window"
MISMATCH = "mismatch"

# A signature list bigger than this is not a secret rotation; refusing it bounds the work.
MAX_SIGNATURE_HEADER_CHARS = 4096
MAX_SIGNATURES = 16

# MLflow sends a UUID; Standard Webhooks ids look like "msg_2KWPBg...". Both fit, and the id
# becomes a storage key and a log correlation id, so nothing else is let through.
_DELIVERY_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}")
# Unix seconds as MLflow sends them (``str(int(time.time()))``). Twelve digits reach year
# 33658, and bounding the length keeps the window arithmetic in float range.
_TIMESTAMP = re.compile(r"[0-9]{1,12}")
# Standard Webhooks: "v<n>,<base64>" entries separated by spaces; "v1a,..." (asymmetric) and
# other versions are allowed in the list but never match a v1 HMAC. A repeated header adds
# a "," separator, with or without a following space.
_SIG_ENTRY = r"v[0-9]{1,3}[a-z]?,[A-Za-z0-9+/]{1,128}={0,2}"
_SIG_LIST = re.compile(rf"{_SIG_ENTRY}(?:(?:,[ \t]*|[ \t]+){_SIG_ENTRY})*")
_SIG_ENTRIES = re.compile(_SIG_ENTRY)
_HEX_LIST = re.compile(r"[0-9A-Fa-f]{64}(?:(?:,[ \t]*|[ \t]+)[0-9A-Fa-f]{64})*")
_HEX_ENTRIES = re.compile(r"[0-9A-Fa-f]{64}")
# App Service references ("@Microsoft.KeyVault(...)", "@Microsoft.AppConfiguration(...)"):
# matched by prefix and case-insensitively, wider than shared.redaction's shape, because a
# reference the platform could not parse is passed through too, and failing closed costs nothing.
_PLATFORM_REFERENCE = re.compile(r"\s*@microsoft\.[a-z]+\(", re.IGNORECASE)

SECRET_SETTINGS = {"mlflow": "MLFLOW_WEBHOOK_SECRET", "databricks": "DATABRICKS_WEBHOOK_SECRET"}
SecretState = Literal["set", "missing", "unresolved"]


class SignatureError(Exception):
    """The request is not provably from the registry: answered 401.

    ``str(exc)`` is the only text for the caller (``PUBLIC_MESSAGE``): it says neither the
    server time nor which secret is configured. ``reason`` is a stable code (the constants
    above) and ``detail`` the full explanation, both for the record and the log.
    """

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(PUBLIC_MESSAGE)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class Verified:
    """Who signed the delivery, and its id (the record key)."""

    source: Literal["mlflow", "databricks"]
    delivery_id: str


def mlflow_signature(secret: str, delivery_id: str, timestamp: str, body: bytes) -> str:
    signed = delivery_id.encode() + b"." + timestamp.encode() + b"." + body
    digest = hmac.new(secret.encode(), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


def databricks_signature(secret: str, body: bytes) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def is_platform_reference(value: str) -> bool:
    """``value`` is still an App Service reference (``@Microsoft.KeyVault(...)``, ...): module doc."""
    return bool(_PLATFORM_REFERENCE.match(value))


def secret_state(value: str) -> SecretState:
    """``missing`` (empty), ``unresolved`` (still a reference: module doc) or ``set``."""
    if not value:
        return "missing"
    if is_platform_reference(value) or is_secret_reference(value):
        return "unresolved"
    return "set"


def secret_problems(states: Mapping[str, SecretState]) -> list[str]:
    """What an operator must fix, in words, from ``{source: state}`` (keys of SECRET_SETTINGS).
    One missing secret is normal (a workspace uses one registry); both missing, or any
    unresolved, refuses deliveries."""
    out = [f"{SECRET_SETTINGS[source]} is a reference the platform has not resolved: every {source} "
           "delivery is refused until it is (check the app identity's access to the vault)"
           for source, state in states.items() if state == "unresolved"]
    if all(state == "missing" for state in states.values()):
        out.append("no webhook secret is set (MLFLOW_WEBHOOK_SECRET, DATABRICKS_WEBHOOK_SECRET): every delivery "
                   "is refused")
    return out


def _require(secret: str, source: str) -> None:
    state = secret_state(secret)
    if state == "missing":
        raise SignatureError(NO_SECRET, f"no {source} webhook secret is configured ({SECRET_SETTINGS[source]})")
    if state == "unresolved":
        # Never the value: it is what a caller would sign with.
        raise SignatureError(UNRESOLVED_SECRET, f"{SECRET_SETTINGS[source]} is still an unresolved reference, not a "
                                                "secret: refused until the platform resolves it")


def _header(headers: Mapping[str, str], name: str) -> str:
    value = headers.get(name.lower())
    if value is None:
        raise SignatureError(MALFORMED_HEADER, f"missing {name} header")
    return value


def _shaped(value: str, pattern: re.Pattern[str], name: str, shape: str) -> str:
    value = value.strip(" \t")
    if len(value) > MAX_SIGNATURE_HEADER_CHARS or not pattern.fullmatch(value):
        # Say how long it was, never what it was: the detail is stored and logged.
        raise SignatureError(MALFORMED_HEADER, f"{name} is not {shape} ({len(value)} characters)")
    return value


def _signatures(headers: Mapping[str, str], name: str, shape: re.Pattern[str], entry: re.Pattern[str],
                what: str) -> list[str]:
    """The signatures a header presents (a repeated header arrives comma-joined), at most
    ``MAX_SIGNATURES`` of them."""
    entries = entry.findall(_shaped(_header(headers, name), shape, name, what))
    if len(entries) > MAX_SIGNATURES:
        raise SignatureError(MALFORMED_HEADER, f"{name} has {len(entries)} entries; at most {MAX_SIGNATURES} are read")
    return entries


def _match(expected: str, entries: list[str], name: str) -> None:
    # Every entry is compared, so the time taken does not depend on which one matched.
    matches = [hmac.compare_digest(expected.encode(), e.encode()) for e in entries]
    if not any(matches):
        raise SignatureError(MISMATCH, f"{name} does not match")


def verify_mlflow(headers: Mapping[str, str], body: bytes, secret: str, *, now: float, tolerance: float) -> str:
    """Check an MLflow 3 delivery; returns its delivery id. ``headers`` keys are lower case."""
    _require(secret, "mlflow")
    delivery_id = _shaped(_header(headers, "X-MLflow-Delivery-Id"), _DELIVERY_ID, "X-MLflow-Delivery-Id",
                          "1 to 128 letters, digits and _.:- (a repeated header?)")
    timestamp = _shaped(_header(headers, "X-MLflow-Timestamp"), _TIMESTAMP, "X-MLflow-Timestamp",
                        "Unix seconds, 1 to 12 ASCII digits")
    entries = _signatures(headers, "X-MLflow-Signature", _SIG_LIST, _SIG_ENTRIES, "a list of v1,<base64> entries")
    sent_at = int(timestamp)
    if abs(now - sent_at) > tolerance:
        raise SignatureError(OUTSIDE_WINDOW,
                             f"timestamp {sent_at} is outside the {int(tolerance)} s window (now {int(now)})")
    _match(mlflow_signature(secret, delivery_id, timestamp, body), entries, "X-MLflow-Signature")
    return delivery_id


def verify_databricks(headers: Mapping[str, str], body: bytes, secret: str) -> str:
    """Check a Databricks registry delivery; returns its delivery id.

    Databricks sends no delivery id; a redelivery has the same body, so the id is its hash.
    """
    _require(secret, "databricks")
    entries = _signatures(headers, "X-Databricks-Signature", _HEX_LIST, _HEX_ENTRIES,
                          "lowercase hex HMAC-SHA256 (64 hex digits)")
    _match(databricks_signature(secret, body), [e.lower() for e in entries], "X-Databricks-Signature")
    return "dbx-" + hashlib.sha256(body).hexdigest()[:32]


def verify_delivery(headers: Mapping[str, str], body: bytes, *, mlflow_secret: str, databricks_secret: str,
                    now: float, tolerance: float) -> Verified:
    """Decide whether a webhook request is an authentic registry delivery (rules in the module doc).

    ``headers`` keys are lower case. Raises ``SignatureError`` when it is not.
    """
    has_mlflow = "x-mlflow-signature" in headers
    has_databricks = "x-databricks-signature" in headers
    if not has_mlflow and not has_databricks:
        hint = " (an MLflow webhook without a secret?)" if "x-mlflow-delivery-id" in headers else ""
        raise SignatureError(NO_SIGNATURE, f"no X-MLflow-Signature or X-Databricks-Signature header{hint}")
    if has_mlflow and not has_databricks:
        return Verified("mlflow", verify_mlflow(headers, body, mlflow_secret, now=now, tolerance=tolerance))
    if has_databricks and not has_mlflow:
        return Verified("databricks", verify_databricks(headers, body, databricks_secret))
    failures: list[SignatureError] = []
    if mlflow_secret:
        try:
            return Verified("mlflow", verify_mlflow(headers, body, mlflow_secret, now=now, tolerance=tolerance))
        except SignatureError as exc:
            failures.append(exc)
    if databricks_secret:
        try:
            return Verified("databricks", verify_databricks(headers, body, databricks_secret))
        except SignatureError as exc:
            failures.append(exc)
    if not failures:
        raise SignatureError(NO_SECRET, "both signature headers are present and no webhook secret is configured")
    raise SignatureError(failures[0].reason, "both signature headers are present; "
                                             + "; ".join(f.detail for f in failures))
