"""Commands other systems (and our own webhook and watcher) put on the commands queue.

Versioned JSON, accepted in two forms:

- a plain object: ``{"schema_version": 1, "command": "deploy", "model": "taxi_fare",
  "environment": "prod", "version": "3"}``;
- a CloudEvents 1.0 JSON envelope (structured mode; required attributes ``specversion``,
  ``id``, ``source``, ``type``): ``{"specversion": "1.0", "id": "...", "source": "/ci",
  "type": "com.modelops.reactor.deploy.v1", "data": {"model": ..., ...}}``.

Either form may carry an idempotency key (plain: ``"id"``; CloudEvents: ``source`` + ``id``).
As in Powertools for AWS Lambda's idempotency utility ("Idempotency", docs.powertools.aws.dev/
lambda/python/latest/utilities/idempotency/), the key is bound to the payload first sent with
it (:func:`digest`, stored as the record's ``body_sha``): the same key with the same payload is
a duplicate, answered with the first record and never acted on again; with another payload it
is refused (handlers/commands.py). Without a key, the queue message id is the key.

The body is read as the registry webhook reads its own (shared.events.json_object: UTF-8,
nested at most ``MAX_DEPTH`` deep, no NaN, no lone surrogates), so no body can exhaust the
parser. An invalid message raises :class:`CommandRejected`; the caller records the reason and
acknowledges the message, so it is never retried into the poison queue.

Some fields only the app sets (marked ``app_only``: the event or decision that asked for a
command, the window and version a retraining is for): a command from outside that names one is
refused, since a sender naming a real event or decision would close that event or spend that
decision's cooldown. The app's own commands never travel as a queue message that carries them:
they are written into a record first, and the message only names the record, so the command is
read back from what the app wrote:

- ``{"command": "redrive", "record": KEY}`` re-runs the accepted command stored in record KEY
  (a retry after a transient failure, the app's own ``submit``, or the repair sweep handing on
  the work of a worker that died). It never creates a record, so it cannot start anything new;
- ``{"command": "event", "record": KEY}`` runs the reconcile that the accepted registry event
  in event record KEY asks for (:func:`event_reconcile`; the webhook and the repair sweep).

Whoever can write the queue can send these too, but they only name what the app recorded.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass
from typing import Annotated, Any, Literal, get_args

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, model_validator

from shared import azure_limits, journal
from shared.events import MalformedEvent, json_object
from shared.queues import COMMANDS_QUEUE, QueueService, enqueue
from shared.tables import TableService

SCHEMA_VERSION = 1
CLOUDEVENT_TYPE_PREFIX = "com.modelops.reactor."
# The queue trigger reads base64 (messageEncoding; Microsoft Learn, "Azure Queue storage trigger for Azure
# Functions",
# https://learn.microsoft.com/en-us/azure/azure-functions/functions-bindings-storage-queue-trigger) and Azure
# takes at most 64 KiB of message text: :func:`send` enqueues the body itself, so a body of at
# most 3/4 of that always fits, whatever its characters.
MAX_MESSAGE_BYTES = azure_limits.MAX_MESSAGE_BYTES * 3 // 4
# Marks a field only the app sets (module docstring).
_APP_ONLY: dict[str, Any] = {"app_only": True}


class CommandRejected(ValueError):
    """The message is not a command we accept; the reason is recorded."""


_KEY = r"^[A-Za-z0-9._@=+:~-]{1,200}$"


class _Command(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    schema_version: Literal[1] = 1
    correlation_id: str | None = Field(None, max_length=200)
    id: str | None = Field(None, pattern=_KEY, description="idempotency key: the same id is acted on once")
    event: str | None = Field(None, pattern=_KEY, description="the event record that asked for this",
                              json_schema_extra=_APP_ONLY)


class Deploy(_Command):
    """Roll ``model`` out to ``environment``: an explicit version, the version an alias points to,
    or (neither given) the latest version."""

    command: Literal["deploy"]
    model: str = Field(min_length=1, max_length=500)
    environment: str = Field(min_length=1, max_length=100)
    version: str | None = Field(None, pattern=r"^[1-9][0-9]{0,9}$")
    alias: str | None = Field(None, min_length=1, max_length=255)
    hold: bool | None = Field(None, description="pin the environment to this version until release (default: "
                              "only when it is older than the serving champion)")

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
    decision: str | None = Field(None, pattern=_KEY, json_schema_extra=_APP_ONLY)
    version: str | None = Field(None, pattern=r"^[1-9][0-9]{0,9}$", description="the serving version",
                                json_schema_extra=_APP_ONLY)
    window_start: float | None = Field(None, allow_inf_nan=False, description="the triggering window",
                                       json_schema_extra=_APP_ONLY)


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


class Hold(_Command):
    """Pin ``environment`` to ``version`` until ``release``: reconcile (webhooks, the watcher,
    retraining's new versions) and deploys of another version leave it alone (handlers/steering.py)."""

    command: Literal["hold"]
    model: str = Field(min_length=1, max_length=500)
    environment: str = Field(min_length=1, max_length=100)
    version: str = Field(pattern=r"^[1-9][0-9]{0,9}$")
    reason: str = Field(min_length=1, max_length=500)


class Release(_Command):
    """End ``environment``'s hold: reconcile moves it to what the policy tracks again."""

    command: Literal["release"]
    model: str = Field(min_length=1, max_length=500)
    environment: str = Field(min_length=1, max_length=100)
    reason: str | None = Field(None, max_length=500)


Pinning = Hold | Release


class Redrive(BaseModel):
    """Internal: run the accepted command stored in ``record`` again."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    schema_version: Literal[1] = 1
    command: Literal["redrive"]
    record: str = Field(pattern=_KEY)
    token: str | None = Field(None, pattern=_KEY, description="the claim the record's last holder handed on")


class EventRef(BaseModel):
    """Internal: run the reconcile the accepted event in event record ``record`` asks for."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    schema_version: Literal[1] = 1
    command: Literal["event"]
    record: str = Field(pattern=_KEY)


Acting = (Deploy | Reconcile | PublishFeatures | CheckDrift | Retrain | Promote | Pause | Resume | Abort | Rollback
          | Hold | Release)
Internal = Redrive | EventRef
Command = Annotated[Acting | Internal, Field(discriminator="command")]
_adapter: TypeAdapter[Acting | Internal] = TypeAdapter(Command)
_acting: TypeAdapter[Acting] = TypeAdapter(Annotated[Acting, Field(discriminator="command")])
_APP_FIELDS = {get_args(cls.model_fields["command"].annotation)[0]:
               frozenset(name for name, f in cls.model_fields.items() if f.json_schema_extra == _APP_ONLY)
               for cls in get_args(Acting)}


@dataclass(frozen=True)
class Envelope:
    command: Acting | Internal
    id: str
    source: str
    correlation_id: str
    key: str  # the journal record's key (shared.journal.key): the idempotency key, namespaced


def stored(command: dict[str, Any]) -> Acting:
    """The command kept in an accepted record (the app's fields included), validated again."""
    return _acting.validate_python(command)


def digest(command: Acting) -> str:
    """The hash an idempotency key is bound to: canonical JSON of the validated command, so
    spacing, key order and defaults written out or left off do not make another payload."""
    canonical = json.dumps(command.model_dump(mode="json", exclude_none=True), sort_keys=True,
                           separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def for_event(event_key: str) -> dict[str, Any]:
    """The message that asks for the reconcile of the accepted event in ``event_key``."""
    return {"schema_version": SCHEMA_VERSION, "command": "event", "record": event_key}


def event_reconcile(event_key: str, record: dict[str, Any]) -> Envelope:
    """The reconcile an accepted event asks for, from the event's record. Its id is the event's,
    so asking again (a redelivery that took over, the repair sweep) is a duplicate; its record
    key is in the app's own namespace (``app:``), which no sender's id reaches (theirs are
    ``id:``, ``msg:`` or ``ce~``), so no sender can take the key before the app does."""
    event, cid = record["event"], record.get("cid") or record["id"]
    ident = event_key.replace("event:", "event-")
    cmd = Reconcile(command="reconcile", model=event["model"], id=ident, event=event_key, correlation_id=cid,
                    reason=f"{event['source']} {event['kind']} v{event.get('version') or '-'}")
    return Envelope(cmd, ident, "app", cid, journal.key("app", ident))


def _problems(exc: ValidationError) -> str:
    return "; ".join(f"{'.'.join(str(p) for p in e['loc']) or '(message)'}: {e['msg']}" for e in exc.errors())


def parse(body: bytes, message_id: str, source: str = "queue") -> Envelope:
    """A message as it came from the queue (``source``: who carried it); the app's fields refused."""
    if len(body) > MAX_MESSAGE_BYTES:
        raise CommandRejected(f"message is {len(body)} bytes; the limit is {MAX_MESSAGE_BYTES}")
    try:
        data = json_object(body)
    except MalformedEvent as exc:
        raise CommandRejected(str(exc)) from exc
    event_id = message_id
    cloudevent = "specversion" in data
    if cloudevent:
        data, event_id, source = _unwrap_cloudevent(data)
    elif "command" not in data:
        raise CommandRejected("missing 'command' (or a CloudEvents envelope with 'specversion')")
    name = data["command"]
    forged = sorted(_APP_FIELDS.get(name, frozenset()) & data.keys()) if isinstance(name, str) else []
    if forged:
        raise CommandRejected("; ".join(f"'{name}' is set by the app, never by a sender" for name in forged))
    try:
        command = _adapter.validate_python(data)
    except ValidationError as exc:
        raise CommandRejected(_problems(exc)) from exc
    if isinstance(command, Internal):
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


def requested(tables: TableService, env: Envelope) -> Envelope:
    """The command a message asks for: an event reference becomes the reconcile its event record
    asks for (CommandRejected when it names no such record); anything else is as parsed."""
    if not isinstance(env.command, EventRef):
        return env
    rec = journal.get(tables, "event", env.key)
    if rec is None or "event" not in rec or rec.get("status") == "ignored":
        raise CommandRejected(f"event record {env.key} asks for no reconcile")
    return event_reconcile(env.key, rec)


def conflicts(env: Envelope, rec: dict[str, Any]) -> str | None:
    """Why ``env`` may not be a duplicate of the record under its key: another payload (None when
    it is the same one)."""
    cmd = env.command
    assert not isinstance(cmd, Internal)
    if rec.get("body_sha") == digest(cmd):
        return None
    return (f"id {env.id!r} was already used for a different command (record {env.key}); an idempotency key "
            "names one payload, so send another command with a new id")


def parse_external(body: bytes, message_id: str, source: str = "queue") -> Envelope:
    """:func:`parse`, and CommandRejected for the app's own kinds (``redrive``, ``event``)."""
    env = parse(body, message_id, source)
    if isinstance(env.command, Internal):
        raise CommandRejected(f"{env.command.command} is the app's own command; it is not sent from outside")
    return env


def send(queues: QueueService, body: bytes) -> str:
    """Validate ``body`` as the queue handler will (:func:`parse`) and put it on the commands queue
    in the trigger's encoding; returns the key of the journal record the command will have, so a
    sender can follow it. CommandRejected, and nothing sent, for a command the handler would reject
    on sight, and for the app's own kinds. The body goes as it came, so what is measured against
    ``MAX_MESSAGE_BYTES`` is what is enqueued (re-encoding could only grow it)."""
    pending = "unsent"
    env = parse_external(body, pending)
    message_id = queues.send(COMMANDS_QUEUE, base64.b64encode(body).decode("ascii"))
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


def send_redrive(queues: QueueService, key: str, token: str, *, delay: float = 0.0) -> None:
    """Ask for the accepted command in record ``key`` to run again, by whoever holds ``token``
    (the claim its last holder handed on): the app's own message, never a sender's."""
    enqueue(queues, COMMANDS_QUEUE, {"schema_version": 1, "command": "redrive", "record": key, "token": token},
            delay=delay)
