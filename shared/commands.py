"""Commands other systems (and our own webhook and watcher) put on the commands queue.

Versioned JSON, accepted in two forms:

- a plain object: ``{"schema_version": 1, "command": "deploy", "model": "taxi_fare",
  "environment": "prod", "version": "3"}``;
- a CloudEvents 1.0 JSON envelope (structured mode; required attributes ``specversion``,
  ``id``, ``source``, ``type``): ``{"specversion": "1.0", "id": "...", "source": "/ci",
  "type": "com.modelops.reactor.deploy.v1", "data": {"model": ..., ...}}``.

An invalid message raises :class:`CommandRejected`; the caller records the reason and
acknowledges the message, so it is never retried into the poison queue.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, model_validator

SCHEMA_VERSION = 1
CLOUDEVENT_TYPE_PREFIX = "com.modelops.reactor."
MAX_MESSAGE_BYTES = 48 * 1024  # what fits in 64 KiB of base64 (reference azure-functions.md §3)


class CommandRejected(ValueError):
    """The message is not a command we accept; the reason is recorded."""


class _Command(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    schema_version: Literal[1] = 1
    correlation_id: str | None = Field(None, max_length=200)


class Deploy(_Command):
    """Roll ``model`` out to ``environment``: an explicit version, the version an alias points to,
    or (neither given) the latest version."""

    command: Literal["deploy"]
    model: str = Field(min_length=1, max_length=500)
    environment: str = Field(min_length=1, max_length=100)
    version: str | None = Field(None, pattern=r"^[1-9][0-9]{0,9}$")
    alias: str | None = Field(None, min_length=1, max_length=255)

    @model_validator(mode="after")
    def _one_ref(self) -> Deploy:
        if self.version and self.alias:
            raise ValueError("give version or alias, not both")
        return self


class Reconcile(_Command):
    """Bring ``model`` (one environment, or all of them) to the state the policy and registry declare."""

    command: Literal["reconcile"]
    model: str = Field(min_length=1, max_length=500)
    environment: str | None = Field(None, min_length=1, max_length=100)
    reason: str | None = Field(None, max_length=500)


class PublishFeatures(_Command):
    """Refresh the online copy of one feature table of ``model`` (``table``), or of all of them."""

    command: Literal["publish_features"]
    model: str = Field(min_length=1, max_length=500)
    table: str | None = Field(None, min_length=1, max_length=500)
    # Set by the app when one message could not finish the work: where the next one resumes.
    resume: dict[str, Any] | None = None


Command = Annotated[Deploy | Reconcile | PublishFeatures, Field(discriminator="command")]
_adapter: TypeAdapter[Deploy | Reconcile | PublishFeatures] = TypeAdapter(Command)


@dataclass(frozen=True)
class Envelope:
    command: Deploy | Reconcile | PublishFeatures
    id: str
    source: str
    correlation_id: str


def _problems(exc: ValidationError) -> str:
    return "; ".join(f"{'.'.join(str(p) for p in e['loc']) or '(message)'}: {e['msg']}" for e in exc.errors())


def parse(body: bytes, message_id: str) -> Envelope:
    if len(body) > MAX_MESSAGE_BYTES:
        raise CommandRejected(f"message is {len(body)} bytes; the limit is {MAX_MESSAGE_BYTES}")
    try:
        data: Any = json.loads(body)
    except (UnicodeDecodeError, ValueError) as exc:
        raise CommandRejected(f"not JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise CommandRejected("a command must be a JSON object")
    source = "queue"
    event_id = message_id
    if "specversion" in data:
        data, event_id, source = _unwrap_cloudevent(data)
    elif "command" not in data:
        raise CommandRejected("missing 'command' (or a CloudEvents envelope with 'specversion')")
    try:
        command = _adapter.validate_python(data)
    except ValidationError as exc:
        raise CommandRejected(_problems(exc)) from exc
    return Envelope(command, event_id, source, command.correlation_id or event_id)


def _unwrap_cloudevent(event: dict[str, Any]) -> tuple[dict[str, Any], str, str]:
    if event.get("specversion") != "1.0":
        raise CommandRejected(f"unsupported CloudEvents specversion {event.get('specversion')!r}; expected '1.0'")
    for attr in ("id", "source", "type"):
        if not isinstance(event.get(attr), str) or not event[attr]:
            raise CommandRejected(f"CloudEvents attribute '{attr}' is required")
    ctype = event.get("datacontenttype", "application/json")
    if ctype != "application/json":
        raise CommandRejected(f"datacontenttype {ctype!r} is not supported; send application/json")
    etype: str = event["type"]
    if not etype.startswith(CLOUDEVENT_TYPE_PREFIX):
        raise CommandRejected(f"type {etype!r} is not ours; expected {CLOUDEVENT_TYPE_PREFIX}<command>.v1")
    name, _, version = etype[len(CLOUDEVENT_TYPE_PREFIX):].partition(".")
    if version != f"v{SCHEMA_VERSION}":
        raise CommandRejected(f"type {etype!r}: unsupported schema version {version!r}; expected v{SCHEMA_VERSION}")
    payload = event.get("data")
    if not isinstance(payload, dict):
        raise CommandRejected("CloudEvents 'data' must be a JSON object")
    return {**payload, "command": name}, event["id"], event["source"]
