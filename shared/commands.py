"""Commands other systems (and our own webhook and watcher) put on the commands queue.

Versioned JSON, accepted in two forms:

- a plain object: ``{"schema_version": 1, "command": "deploy", "model": "taxi_fare",
  "environment": "prod", "version": "3"}``;
- a CloudEvents 1.0 JSON envelope (structured mode; required attributes ``specversion``,
  ``id``, ``source``, ``type``): ``{"specversion": "1.0", "id": "...", "source": "/ci",
  "type": "com.modelops.reactor.deploy.v1", "data": {"model": ..., ...}}``.

Either form may carry an idempotency key (plain: ``"id"``; CloudEvents: ``source`` + ``id``):
the same key sent twice is acted on once. Without one, the queue message id is the key.

An invalid message raises :class:`CommandRejected`; the caller records the reason and
acknowledges the message, so it is never retried into the poison queue.

``{"command": "redrive", "record": KEY}`` is internal: it re-runs the accepted command stored
in record KEY (a retry after a transient failure, or the repair sweep handing on the work of
a worker that died). It never creates a record, so it cannot start anything new.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, model_validator

from shared import journal
from shared.queues import COMMANDS_QUEUE, QueueService, enqueue

SCHEMA_VERSION = 1
CLOUDEVENT_TYPE_PREFIX = "com.modelops.reactor."
MAX_MESSAGE_BYTES = 48 * 1024  # what fits in 64 KiB of base64 (reference azure-functions.md §3)


class CommandRejected(ValueError):
    """The message is not a command we accept; the reason is recorded."""


_KEY = r"^[A-Za-z0-9._@=+:~-]{1,200}$"


class _Command(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    schema_version: Literal[1] = 1
    correlation_id: str | None = Field(None, max_length=200)
    id: str | None = Field(None, pattern=_KEY, description="idempotency key: the same id is acted on once")
    event: str | None = Field(None, pattern=_KEY, description="the event record that asked for this (set by the app)")


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


class Window(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    start: AwareDatetime
    end: AwareDatetime

    @model_validator(mode="after")
    def _order(self) -> Window:
        if self.end <= self.start:
            raise ValueError("end must be after start")
        return self


class CheckDrift(_Command):
    """Judge ``model``'s monitoring windows in ``environment`` now (the monitor timer sends this
    too); with ``window``, that window only (ISO-8601 times with a zone)."""

    command: Literal["check_drift"]
    model: str = Field(min_length=1, max_length=500)
    environment: str = Field(min_length=1, max_length=100)
    window: Window | None = None


class Retrain(_Command):
    """Run the environment's retraining job (``jobs.run_now``) and follow the run to its end.
    ``decision`` is set by the monitor: the decision that asked for it."""

    command: Literal["retrain"]
    model: str = Field(min_length=1, max_length=500)
    environment: str = Field(min_length=1, max_length=100)
    reason: str = Field(min_length=1, max_length=500)
    decision: str | None = Field(None, pattern=_KEY)
    version: str | None = Field(None, pattern=r"^[1-9][0-9]{0,9}$", description="the serving version (set by the app)")
    window_start: float | None = Field(None, description="the triggering window (set by the app)")


class _Steer(_Command):
    """An operator's command to a rollout of ``model`` in ``environment``: the one holding the
    endpoint's lease, or ``rollout`` (its id) when given (handlers/steering.py)."""

    model: str = Field(min_length=1, max_length=500)
    environment: str = Field(min_length=1, max_length=100)
    rollout: str | None = Field(None, pattern=r"^[0-9a-f]{24}$")
    reason: str | None = Field(None, max_length=500)


class Promote(_Steer):
    """Go to the next traffic step now (skipping the rest of this one's bake and analysis), or with
    ``full`` straight to 100% (Argo Rollouts ``promote`` / ``promote --full``)."""

    command: Literal["promote"]
    full: bool = False


class Pause(_Steer):
    """Hold the rollout where it is until ``resume`` or ``promote``."""

    command: Literal["pause"]


class Resume(_Steer):
    """Go on from a pause (after an inconclusive analysis: a new analysis run)."""

    command: Literal["resume"]


class Abort(_Steer):
    """Traffic back to the champion at once; the candidate is removed after the abort delay."""

    command: Literal["abort"]


class Rollback(_Steer):
    """Restore the config that served before the rollout and move the aliases back to the
    previous champion."""

    command: Literal["rollback"]


Steering = Promote | Pause | Resume | Abort | Rollback


class Redrive(BaseModel):
    """Internal: run the accepted command stored in ``record`` again."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    schema_version: Literal[1] = 1
    command: Literal["redrive"]
    record: str = Field(pattern=_KEY)
    token: str | None = Field(None, pattern=_KEY, description="the claim the record's last holder handed on")


Acting = Deploy | Reconcile | PublishFeatures | CheckDrift | Retrain | Promote | Pause | Resume | Abort | Rollback
Command = Annotated[Acting | Redrive, Field(discriminator="command")]
_adapter: TypeAdapter[Acting | Redrive] = TypeAdapter(Command)
_acting: TypeAdapter[Acting] = TypeAdapter(Annotated[Acting, Field(discriminator="command")])


@dataclass(frozen=True)
class Envelope:
    command: Acting | Redrive
    id: str
    source: str
    correlation_id: str
    key: str  # the journal record's key (shared.journal.key): the idempotency key, namespaced


def stored(command: dict[str, Any]) -> Acting:
    """The command kept in an accepted record, validated again."""
    return _acting.validate_python(command)


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
    cloudevent = "specversion" in data
    if cloudevent:
        data, event_id, source = _unwrap_cloudevent(data)
    elif "command" not in data:
        raise CommandRejected("missing 'command' (or a CloudEvents envelope with 'specversion')")
    try:
        command = _adapter.validate_python(data)
    except ValidationError as exc:
        raise CommandRejected(_problems(exc)) from exc
    if isinstance(command, Redrive):
        return Envelope(command, command.record, "app", command.record, command.record)
    if cloudevent:
        # CloudEvents ids are unique per source (spec: source + id identify the event).
        digest = hashlib.sha256(f"{source}\n{event_id}".encode()).hexdigest()[:40]
        record_key = f"ce~{digest}"
    elif command.id:
        event_id, record_key = command.id, journal.key("id", command.id)
    else:
        record_key = journal.key("msg", message_id)
    return Envelope(command, event_id, source, command.correlation_id or event_id, record_key)


def send(queues: QueueService, body: bytes) -> str:
    """Validate ``body`` as the queue handler will (:func:`parse`) and put it on the commands queue
    in the trigger's encoding; returns the key of the journal record the command will have, so a
    sender can follow it. CommandRejected, and nothing sent, for a command the handler would reject
    on sight, and for ``redrive`` (the app's own)."""
    pending = "unsent"
    env = parse(body, pending)
    if isinstance(env.command, Redrive):
        raise CommandRejected("redrive is the app's own command; it is not sent from outside")
    message_id = enqueue(queues, COMMANDS_QUEUE, json.loads(body))
    # Without an idempotency key the record is keyed by the message id, known only now.
    return journal.key("msg", message_id) if env.key == journal.key("msg", pending) else env.key


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
