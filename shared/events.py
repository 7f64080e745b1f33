"""Registry events from either registry, normalized into one type.

MLflow 3 bodies are ``{"entity", "action", "timestamp", "data"}`` (reference
mlflow-webhooks.md); Databricks workspace-registry bodies are ``{"event", "webhook_id",
"event_timestamp", "model_name", "version", ...}`` (reference databricks-api.md §6).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from typing import Any

# The kinds that can change what should serve; others are recorded as ignored.
ACTED_ON = frozenset({
    "model_version.created",
    "model_version_alias.created",
    "model_version_alias.deleted",
    "model_version_tag.set",
    "model_version.stage_transitioned",
})

_DATABRICKS_KINDS = {
    "MODEL_VERSION_CREATED": "model_version.created",
    "MODEL_VERSION_TRANSITIONED_STAGE": "model_version.stage_transitioned",
    "MODEL_VERSION_TAG_SET": "model_version_tag.set",
    "REGISTERED_MODEL_CREATED": "registered_model.created",
}


class MalformedEvent(ValueError):
    """The body is not a registry event we can read: answered 400, recorded with this reason."""


@dataclass(frozen=True)
class RegistryEvent:
    source: str
    kind: str
    model: str
    version: str | None
    alias: str | None
    occurred_at: str

    @property
    def acted_on(self) -> bool:
        return self.kind in ACTED_ON

    @property
    def identity(self) -> str:
        """The same event delivered twice (two deliveries, two webhooks) has one identity."""
        key = "|".join([self.source, self.kind, self.model, self.version or "", self.alias or "", self.occurred_at])
        return hashlib.sha256(key.encode()).hexdigest()[:40]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _json_object(body: bytes) -> dict[str, Any]:
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, ValueError) as exc:
        raise MalformedEvent(f"body is not JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise MalformedEvent("body is not a JSON object")
    return data


def _text(data: dict[str, Any], key: str, where: str, required: bool = True) -> str | None:
    value = data.get(key)
    if value is None and not required:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, str) or not value:
        raise MalformedEvent(f"{where}{key} must be a non-empty string")
    return value


def from_mlflow(body: bytes) -> RegistryEvent:
    data = _json_object(body)
    entity = _text(data, "entity", "")
    action = _text(data, "action", "")
    payload = data.get("data")
    if not isinstance(payload, dict):
        raise MalformedEvent("data must be an object")
    kind = f"{entity}.{action}"
    versioned = kind.startswith("model_version")
    return RegistryEvent(
        source="mlflow",
        kind=kind,
        model=_text(payload, "name", "data.") or "",
        version=_text(payload, "version", "data.", required=versioned),
        alias=_text(payload, "alias", "data.", required=kind.startswith("model_version_alias")),
        occurred_at=str(data.get("timestamp", "")),
    )


def from_databricks(body: bytes) -> RegistryEvent:
    data = _json_object(body)
    event = _text(data, "event", "") or ""
    kind = _DATABRICKS_KINDS.get(event, event.lower())
    return RegistryEvent(
        source="databricks",
        kind=kind,
        model=_text(data, "model_name", "") or "",
        version=_text(data, "version", "", required=kind.startswith("model_version")),
        alias=None,
        occurred_at=str(data.get("event_timestamp", "")),
    )
