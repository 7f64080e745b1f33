"""Registry events from either registry, normalized into one type.

MLflow 3 bodies are ``{"entity", "action", "timestamp", "data"}`` (MLflow,
"Webhooks", https://mlflow.org/docs/latest/ml/webhooks; payload fields as in ``mlflow.webhooks.types``); Databricks
workspace-registry bodies are ``{"event", "webhook_id", "event_timestamp", "model_name",
"version", ...}`` (Azure Databricks, "MLflow Model Registry Webhooks on Azure Databricks",
https://learn.microsoft.com/en-us/azure/databricks/mlflow/model-registry-webhooks).

Bodies are read defensively, because a valid signature proves who sent a body, not that it
is sane: the text must be UTF-8 JSON nested at most ``MAX_DEPTH`` deep (checked before
parsing, so the parser cannot run out of stack), every string must be Unicode text (no lone
surrogate escapes, which storage cannot encode), and the fields we keep must have the shapes
the registries give them (MLflow's own rules in ``mlflow.utils.validation``). Anything else is
a ``MalformedEvent``, answered 400.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any, NoReturn

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

# The deepest registry body is a Databricks tag list: body → "tags" list → tag object (3).
MAX_DEPTH = 16
# MLflow stores names in String(256) columns and refuses aliases over 255 characters.
MAX_NAME_CHARS = 256
MAX_ALIAS_CHARS = 255
# ISO-8601 with microseconds and offset is 32 characters; epoch milliseconds are 13 digits.
MAX_TIMESTAMP_CHARS = 64
MAX_EPOCH_MS = 10**16

# Stable reason codes, few enough to count per code.
NOT_JSON = "not_json"
TOO_DEEP = "too_deep"
NOT_UNICODE = "not_unicode"
NOT_OBJECT = "not_object"
BAD_FIELD = "bad_field"

# A JSON string, matched possessively so an unterminated one costs one linear scan.
_JSON_STRING = re.compile(rb'"(?:[^"\\]++|\\.)*+"', re.DOTALL)
_NOT_BRACKET = bytes(sorted(set(range(256)) - set(b"[]{}")))
_INNERMOST_PAIR = re.compile(rb"\[\]|\{\}")
_KIND_PART = re.compile(r"[a-z][a-z_]{0,63}")
_DATABRICKS_EVENT = re.compile(r"[A-Z][A-Z_]{0,63}")
# Versions are integers from 1 (MLflow's model_versions.version is an Integer column).
_VERSION = re.compile(r"[1-9][0-9]{0,9}")
# mlflow.utils.validation: _REGISTERED_MODEL_ALIAS_REGEX and the reserved version aliases.
_ALIAS = re.compile(r"[\w\-]+")
_VERSION_ALIAS = re.compile(r"[vV][0-9]+")


class MalformedEvent(ValueError):
    """The body is not a registry event we can read: answered 400, recorded with this reason.

    ``str(exc)`` says what is wrong and never quotes the body, so it is safe to answer, store
    and log; ``reason`` is a stable code (the constants above) to count by.
    """

    def __init__(self, message: str, reason: str = BAD_FIELD) -> None:
        super().__init__(message)
        self.reason = reason


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
        return {"source": self.source, "kind": self.kind, "model": self.model, "version": self.version,
                "alias": self.alias, "occurred_at": self.occurred_at}


def _check_depth(body: bytes) -> None:
    """Refuse bodies nested deeper than ``MAX_DEPTH`` without recursing.

    Strings are cut out first (brackets inside them do not nest), then each pass removes the
    innermost empty pairs: a body that is not empty after ``MAX_DEPTH`` passes is too deep.
    Working on bytes is exact for UTF-8, where quotes, backslashes and brackets never occur
    inside a multi-byte character.
    """
    brackets = _JSON_STRING.sub(b"", body).translate(None, _NOT_BRACKET)
    for _ in range(MAX_DEPTH):
        if not brackets:
            return
        brackets, removed = _INNERMOST_PAIR.subn(b"", brackets)
        if not removed:
            raise MalformedEvent("body is not JSON: its brackets do not balance", NOT_JSON)
    if brackets:
        raise MalformedEvent(f"body is nested deeper than {MAX_DEPTH} levels", TOO_DEEP)


def _no_constant(name: str) -> NoReturn:
    raise MalformedEvent(f"body is not JSON: {name} is not a JSON number", NOT_JSON)


def json_object(body: bytes) -> dict[str, Any]:
    """The body as a JSON object, read defensively (module docstring); MalformedEvent if not.
    Commands from other systems are read with it too (shared.commands)."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MalformedEvent(f"body is not JSON: it is not UTF-8 text (byte {exc.start})", NOT_JSON) from exc
    _check_depth(body)
    try:
        data = json.loads(text, parse_constant=_no_constant)
    except RecursionError as exc:  # _check_depth should make this unreachable; never a 5xx if not
        raise MalformedEvent(f"body is nested deeper than {MAX_DEPTH} levels", TOO_DEEP) from exc
    except ValueError as exc:
        if isinstance(exc, MalformedEvent):
            raise
        raise MalformedEvent(f"body is not JSON: {exc}", NOT_JSON) from exc
    # Strict UTF-8 decoding refused encoded surrogates, so only a "\uD800"-style escape can
    # make one; a string holding it cannot be stored or logged as UTF-8.
    if "\\u" in text:
        try:
            json.dumps(data, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError as exc:
            raise MalformedEvent("body has a string that is not Unicode text (a lone surrogate escape)",
                                 NOT_UNICODE) from exc
    if not isinstance(data, dict):
        raise MalformedEvent("body is not a JSON object", NOT_OBJECT)
    return data


def _fail(where: str, key: str, what: str) -> NoReturn:
    raise MalformedEvent(f"{where}{key} {what}")


def _name(data: dict[str, Any], key: str, where: str, *, mlflow: bool, required: bool = True) -> str:
    """A registered model name: non-blank printable text, at most ``MAX_NAME_CHARS``.

    MLflow also refuses '/' and ':' in names (``_validate_model_name``).
    """
    value = data.get(key)
    if value is None and not required:
        return ""
    if not isinstance(value, str) or not value.strip():
        _fail(where, key, "must be a non-empty string")
    if len(value) > MAX_NAME_CHARS:
        _fail(where, key, f"is longer than {MAX_NAME_CHARS} characters")
    if not value.isprintable():
        _fail(where, key, "has control or other non-printable characters")
    if mlflow and ("/" in value or ":" in value):
        _fail(where, key, "has '/' or ':', which MLflow model names cannot contain")
    return value


def _version(data: dict[str, Any], key: str, where: str, *, required: bool) -> str | None:
    """A model version: MLflow and Databricks send the number as a string; an integer is read too."""
    value = data.get(key)
    if value is None and not required:
        return None
    if isinstance(value, int) and not isinstance(value, bool) and 0 < value < 10**10:
        return str(value)
    if not isinstance(value, str) or not _VERSION.fullmatch(value):
        _fail(where, key, "must be a non-empty string of digits: a version number from 1, at most 10 digits")
    return value


def _alias(data: dict[str, Any], key: str, where: str, *, required: bool) -> str | None:
    """An alias as MLflow allows it (``_validate_model_alias_name`` and ``..._reserved``)."""
    value = data.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value:
        _fail(where, key, "must be a non-empty string")
    if len(value) > MAX_ALIAS_CHARS:
        _fail(where, key, f"is longer than {MAX_ALIAS_CHARS} characters")
    if not _ALIAS.fullmatch(value):
        _fail(where, key, "may only contain letters, digits, underscores and dashes")
    if value.lower() == "latest" or _VERSION_ALIAS.fullmatch(value):
        _fail(where, key, "is a name MLflow reserves ('latest' or v<number>)")
    return value


def _occurred_at(data: dict[str, Any], key: str) -> str:
    """When the registry says it happened: only part of the event identity, never interpreted."""
    value = data.get(key)
    if value is None:
        return ""
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < MAX_EPOCH_MS:
        return str(value)
    if isinstance(value, str) and len(value) <= MAX_TIMESTAMP_CHARS and value.isprintable():
        return value
    _fail("", key, f"must be ISO-8601 text or epoch milliseconds, at most {MAX_TIMESTAMP_CHARS} characters")


def _word(data: dict[str, Any], key: str, pattern: re.Pattern[str], shape: str) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not pattern.fullmatch(value):
        _fail("", key, f"must be {shape}")
    return value


def from_mlflow(body: bytes) -> RegistryEvent:
    data = json_object(body)
    entity = _word(data, "entity", _KIND_PART, "a lower-case name such as model_version")
    action = _word(data, "action", _KIND_PART, "a lower-case name such as created")
    payload = data.get("data")
    if not isinstance(payload, dict):
        raise MalformedEvent("data must be an object")
    kind = f"{entity}.{action}"
    # mlflow.webhooks.types: every model_version* payload names its version except an
    # alias deletion, which names only the model and the alias.
    needs_version = kind.startswith("model_version") and kind != "model_version_alias.deleted"
    # Model and prompt payloads name their subject; others (budget_policy.exceeded) name
    # none, and are recorded as ignored rather than refused.
    needs_name = entity.startswith(("registered_model", "model_version", "prompt"))
    return RegistryEvent(
        source="mlflow",
        kind=kind,
        model=_name(payload, "name", "data.", mlflow=True, required=needs_name),
        version=_version(payload, "version", "data.", required=needs_version),
        alias=_alias(payload, "alias", "data.", required=kind.startswith("model_version_alias")),
        occurred_at=_occurred_at(data, "timestamp"),
    )


def from_databricks(body: bytes) -> RegistryEvent:
    data = json_object(body)
    event = _word(data, "event", _DATABRICKS_EVENT, "an upper-case event name such as MODEL_VERSION_CREATED")
    kind = _DATABRICKS_KINDS.get(event, event.lower())
    return RegistryEvent(
        source="databricks",
        kind=kind,
        model=_name(data, "model_name", "", mlflow=False),
        version=_version(data, "version", "", required=kind.startswith("model_version")),
        alias=None,
        occurred_at=_occurred_at(data, "event_timestamp"),
    )
