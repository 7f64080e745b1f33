"""The local host: runs the REAL triggers of a Function App module on one machine.

No Functions host, no Core Tools, no storage account: this module imports the app the way
the Python worker does, asks the ``azure-functions`` library what it declared, and serves
those triggers with the semantics the real host gives them. A key in brackets names the public
source of a rule:

- [library]: the ``azure-functions`` library (``azure/functions/decorators/function_app.py``,
  ``_http.py``, ``_queue.py``, ``timer.py``), https://github.com/Azure/azure-functions-python-library;
- [host.json]: Microsoft Learn, "host.json reference for Azure Functions 2.x and later",
  https://learn.microsoft.com/en-us/azure/azure-functions/functions-host-json;
- [queue trigger]: Microsoft Learn, "Azure Queue storage trigger for Azure Functions",
  https://learn.microsoft.com/en-us/azure/azure-functions/functions-bindings-storage-queue-trigger;
- [timer]: Microsoft Learn, "Timer trigger for Azure Functions",
  https://learn.microsoft.com/en-us/azure/azure-functions/functions-bindings-timer;
- [retries]: Microsoft Learn, "Azure Functions error handling and retries",
  https://learn.microsoft.com/en-us/azure/azure-functions/functions-bindings-error-pages;
- [connections]: Microsoft Learn, "Guidance for developing Azure Functions" (connections),
  https://learn.microsoft.com/en-us/azure/azure-functions/functions-reference;
- [worker]: the Python worker, https://github.com/Azure/azure-functions-python-worker;
- [troubleshooting]: Microsoft Learn, "Troubleshoot Python errors in Azure Functions",
  https://learn.microsoft.com/en-us/azure/azure-functions/recover-python-functions.

A rule with no key is this runner's own, derived from those sources.

Startup ([library])
    ``<app_dir>/local.settings.json`` ``Values`` go into ``os.environ`` (variables already
    set win; the ones we added are removed again by :meth:`LocalHost.stop`). The script
    (``function_app.py``, or the ``PYTHON_SCRIPT_FILE_NAME`` setting) is loaded from its file
    with ``importlib`` under a unique module name, so that several apps, or the same app
    twice, can run in one process; ``app_dir`` goes on ``sys.path`` so ``from shared...``
    works. Exactly one ``func.FunctionRegister`` must be at module level, and
    ``get_functions()`` is called once (it is not idempotent, [library]). Every function is
    checked before anything starts: trigger type (``httpTrigger``, ``timerTrigger``,
    ``queueTrigger``), other bindings (only ``http`` and ``queue`` outputs), parameter names
    against binding names ([library], [worker]), schedules, ``%SETTING%`` expressions. Anything
    unsupported or broken raises :class:`HostStartError`, as indexing fails in Azure ([troubleshooting]).

HTTP ([library])
    A ``ThreadingHTTPServer`` on 127.0.0.1, with Kestrel's listen backlog of 512 so that a
    burst of new connections is queued, not refused, serves ``/<routePrefix>/<route>`` (host.json
    ``extensions.http.routePrefix``, default ``api``). Route templates know ``{name}``,
    ``{name?}``, ``{name=default}``, ``{*rest}`` and the common constraints (``{id:int}``);
    literal segments win over parameters, as in ASP.NET routing. ``methods`` are enforced
    with 405 (the brief's choice; [I] the real host may answer 404). The function receives
    ``func.HttpRequest(method, url, headers, params, route_params, body)`` with the query
    string parsed (repeated keys joined with ``,``, [I] as the host's ``StringValues``). An
    exception in the function gives 500 with a short body. Request bodies are read from
    ``Content-Length`` or chunked transfer, capped at 100 MB (413). ``GET /admin/host/status``
    answers ``{"state": "Running", ...}`` for readiness checks, without a key ([I] Azure wants
    the master key there; this host keeps it open for readiness probes).

Keys and auth levels ([library])
    Each HTTP function's ``auth_level`` is enforced as in Azure, after routing and before the
    invocation (azure-functions-host's ``AuthenticationLevelHandler``,
    https://github.com/Azure/azure-functions-host): ANONYMOUS needs
    no key; FUNCTION takes a key of that function, a host key or the master key; ADMIN takes
    only the master key. The key is the ``x-functions-key`` header or, when that header is
    absent, the ``code`` query parameter. A request without a valid key gets 401 with an empty
    body. Keys are compared in constant time (``hmac.compare_digest``), and never logged: the
    request line is logged with ``code`` redacted. (Core Tools does not enforce auth levels
    locally; this host does, so that tests see what Azure does.)

    Azure keeps keys in the host's key store (``AzureWebJobsSecretStorageType``: blob storage
    by default, or files, Key Vault, Kubernetes secrets), never in app settings. Locally the
    key store is read from settings (``local.settings.json`` ``Values`` or the environment)
    named ``LocalKeyStore.<entry>``, where ``<entry>`` is the entry name the host reads from
    its Kubernetes/Container Apps key store (the host's ``ContainerAppsSecretsRepository``):
    ``host.master`` (the master key), ``host.function.<keyName>`` (host keys) and
    ``functions.<function>.<keyName>`` (keys of one function; the name is case-insensitive).
    As the host does when its key store is empty, a missing master key and a missing
    ``default`` host key are generated at start (random, never printed):
    :attr:`LocalHost.function_key` and :attr:`LocalHost.master_key` give them to callers.

Timers ([timer], [retries])
    NCRONTAB, six fields with seconds first (five-field accepted), via croniter with
    ``second_at_beginning=True``, in UTC. ``%NAME%`` schedules are read from the environment.
    TimeSpan schedules (``"01:00:00"``) are refused: they only work on a Dedicated plan.
    Each timer has its own thread and runs its invocations in that thread, so one timer
    never overlaps itself. A run that overruns the next occurrence fires once more at once
    (skipped occurrences coalesce) with ``past_due=False``. There is no schedule monitor
    (nothing persisted), so there is no startup catch-up and ``past_due`` is always False.
    ``run_on_startup`` runs the function once when the host starts. ``@app.retry`` policies
    (fixed or exponential) are honoured for timers, with ``context.retry_context``. An
    exception is logged, never fatal.

Queues ([host.json], [queue trigger], [connections])
    host.json ``extensions.queues``: batchSize (16, 1..32), newBatchThreshold (batchSize/2:
    the Consumption value, one "processor"), maxDequeueCount (5), visibilityTimeout (0),
    maxPollingInterval (1 min, as in the table; set it in host.json for fast local runs),
    messageEncoding (base64 | none). The trigger's ``connection`` names an app setting that
    selects the storage account ([connections]). With ``REACTOR_STORAGE=sqlite:///...`` every
    connection resolves to that one embedded backend, the local stand-in for an account;
    otherwise each connection is resolved as the Functions host resolves it
    (``shared.connections``) and served by Azure Storage, Azurite on this machine.

    One poller thread per queue function receives up to batchSize messages with a 10-minute
    visibility timeout and hands them to a thread pool; it fetches the next batch once no
    more than newBatchThreshold are in flight (so at most batchSize + newBatchThreshold run
    at once). The host renews the visibility of long runs; this one does not, so a function
    that runs more than 10 minutes would see its message come back. When the queue is empty
    the poller backs off exponentially with jitter from 100 ms to maxPollingInterval, and
    returns to fast polling after a message (or at once when this host itself writes to the
    queue through an output binding or a poison move, like the host's queue watcher).

    Per message: base64 that does not decode goes to ``<queue>-poison`` at once, raw, with
    "Message decoding has failed!"; ``dequeue_count > maxDequeueCount`` goes to poison
    without an invocation; the function gets ``azure.functions.queue.QueueMessage`` (or the
    body as ``str``/``bytes`` if the parameter is annotated so); success deletes the message;
    failure with ``dequeue_count < maxDequeueCount`` makes it visible again after
    visibilityTimeout; failure at maxDequeueCount copies the ORIGINAL wire text into
    ``<queue>-poison`` (a new message) and deletes the original. A queue whose name already
    ends in ``-poison`` (or whose poison name would exceed 63 characters) has no poison
    queue: failed messages stay invisible until the receive timeout ends. ``queue`` output
    bindings (``func.Out`` or ``$return``) are written, encoded per messageEncoding, only
    after the function succeeded. Retry policies do not apply to queues ([retries]).

Invocations
    Sync functions run in the thread of their trigger (HTTP request thread, timer thread,
    queue pool); ``async def`` functions run on one event loop thread, as the worker runs
    them on its loop ([library]). A ``context`` parameter gets a ``func.Context``. Each
    invocation logs one line on logger ``local.host``:
    ``Executed 'Functions.<name>' (Succeeded|Failed, Trigger=..., Id=..., Duration=Nms)``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import hmac
import importlib.util
import inspect
import itertools
import json
import logging
import os
import random
import re
import secrets
import signal
import socket
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import Enum
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import azure.functions as func
from azure.functions.decorators.core import BindingDirection
from azure.functions.queue import QueueMessage
from azure.functions.timer import TimerRequest
from croniter import croniter

from shared.connections import DEFAULT_CONNECTION
from shared.queues import POISON_SUFFIX, PopReceiptMismatch, QueueService, ReceivedMessage, decode_content

logger = logging.getLogger("local.host")

HTTP_TRIGGER = "httpTrigger"
TIMER_TRIGGER = "timerTrigger"
QUEUE_TRIGGER = "queueTrigger"
SUPPORTED_TRIGGERS = (HTTP_TRIGGER, TIMER_TRIGGER, QUEUE_TRIGGER)

MAX_REQUEST_BODY_BYTES = 100 * 1024 * 1024
"""Request body cap. [I] The Functions HTTP request limit is 100 MB (host ``maxRequestLength``)."""
RECEIVE_VISIBILITY_TIMEOUT = 600.0
"""The host receives queue messages with a 10-minute visibility timeout ([queue trigger])."""
MIN_POLLING_INTERVAL = 0.1
"""Queue back-off starts at 100 ms, the minimum ``maxPollingInterval`` ([host.json])."""
MAX_QUEUE_NAME_LENGTH = 63

_module_counter = itertools.count(1)


class HostStartError(RuntimeError):
    """The app cannot be hosted: what Azure reports as a failed indexing ([troubleshooting])."""


# ----------------------------------------------------------------------------------------
# Configuration: host.json, local.settings.json, app-setting expressions
# ----------------------------------------------------------------------------------------

_TIMESPAN = re.compile(r"^(?:(\d+)\.)?(\d{1,2}):(\d{1,2}):(\d{1,2})(?:\.(\d{1,7}))?$")


def parse_timespan(text: str) -> float:
    """Seconds in a .NET TimeSpan string ``[d.]hh:mm:ss[.fffffff]`` as host.json writes them."""
    match = _TIMESPAN.match(text.strip())
    if not match:
        raise ValueError(f"not a TimeSpan (expected [d.]hh:mm:ss[.fff]): {text!r}")
    days, hours, minutes, seconds, fraction = match.groups()
    if int(minutes) > 59 or int(seconds) > 59:
        raise ValueError(f"not a TimeSpan: {text!r}")
    total = int(days or 0) * 86400 + int(hours) * 3600 + int(minutes) * 60 + int(seconds)
    return total + (float(f"0.{fraction}") if fraction else 0.0)


def _ci_get(mapping: Mapping[str, Any] | None, key: str, default: Any = None) -> Any:
    """host.json keys are case-insensitive for the host."""
    if not isinstance(mapping, Mapping):
        return default
    for name, value in mapping.items():
        if name.lower() == key.lower():
            return value
    return default


@dataclass(frozen=True)
class QueuesOptions:
    """host.json ``extensions.queues`` ([host.json]), with the extension's defaults."""

    batch_size: int = 16
    new_batch_threshold: int = 8
    max_dequeue_count: int = 5
    visibility_timeout: float = 0.0
    max_polling_interval: float = 60.0
    message_encoding: str = "base64"

    @classmethod
    def from_host_json(cls, section: Mapping[str, Any] | None) -> QueuesOptions:
        section = section or {}
        try:
            batch_size = int(_ci_get(section, "batchSize", 16))
            threshold_raw = _ci_get(section, "newBatchThreshold")
            threshold = batch_size // 2 if threshold_raw is None else int(threshold_raw)
            max_dequeue = int(_ci_get(section, "maxDequeueCount", 5))
            visibility = parse_timespan(str(_ci_get(section, "visibilityTimeout", "00:00:00")))
            polling = parse_timespan(str(_ci_get(section, "maxPollingInterval", "00:01:00")))
        except (TypeError, ValueError) as exc:
            raise HostStartError(f"host.json extensions.queues: {exc}") from exc
        encoding = str(_ci_get(section, "messageEncoding", "base64")).lower()
        if not 1 <= batch_size <= 32:
            raise HostStartError(f"host.json extensions.queues.batchSize={batch_size}: must be 1..32")
        if threshold < 0:
            raise HostStartError(f"host.json extensions.queues.newBatchThreshold={threshold}: must be >= 0")
        if max_dequeue < 1:
            raise HostStartError(f"host.json extensions.queues.maxDequeueCount={max_dequeue}: must be >= 1")
        if polling < MIN_POLLING_INTERVAL:
            raise HostStartError("host.json extensions.queues.maxPollingInterval: must be at least 00:00:00.1")
        if encoding not in ("base64", "none"):
            raise HostStartError(f"host.json extensions.queues.messageEncoding={encoding!r}: base64 or none")
        return cls(batch_size, threshold, max_dequeue, visibility, polling, encoding)


@dataclass(frozen=True)
class HostConfig:
    route_prefix: str = "api"
    queues: QueuesOptions = field(default_factory=QueuesOptions)

    @classmethod
    def load(cls, path: Path) -> HostConfig:
        if not path.is_file():
            logger.warning("no host.json in %s: host defaults apply", path.parent)
            return cls()
        try:
            data = json.loads(path.read_text(encoding="utf-8-sig"))
        except (OSError, ValueError) as exc:
            raise HostStartError(f"cannot read {path}: {exc}") from exc
        extensions = _ci_get(data, "extensions", {})
        prefix = _ci_get(_ci_get(extensions, "http", {}), "routePrefix", "api")
        return cls(
            route_prefix=str(prefix if prefix is not None else "api").strip("/"),
            queues=QueuesOptions.from_host_json(_ci_get(extensions, "queues", {})),
        )


def read_local_settings(app_dir: Path) -> dict[str, Any]:
    """The parsed ``local.settings.json`` of ``app_dir`` ({} when there is none)."""
    path = app_dir / "local.settings.json"
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))
    except (OSError, ValueError) as exc:
        raise HostStartError(f"cannot read {path}: {exc}") from exc
    return data if isinstance(data, dict) else {}


_SETTING_EXPR = re.compile(r"%([^%]+)%")


def resolve_setting_expressions(value: str, what: str, env: Mapping[str, str] | None = None) -> str:
    """Replace ``%NAME%`` with the app setting NAME, as the host does for binding properties."""
    env = os.environ if env is None else env

    def lookup(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in env:
            raise HostStartError(f"{what}: app setting {name!r} (from {value!r}) is not set")
        return env[name]

    return _SETTING_EXPR.sub(lookup, value)


# ----------------------------------------------------------------------------------------
# Keys and auth levels (module doc: "Keys and auth levels")
# ----------------------------------------------------------------------------------------

KEY_SETTING_PREFIX = "LocalKeyStore."
KEY_HEADER = "x-functions-key"
KEY_QUERY_PARAMETER = "code"
DEFAULT_KEY_NAME = "default"
_AUTH_RANKS = {"anonymous": 0, "function": 1, "admin": 2}


def _auth_level_name(level: Any, function: str) -> str:
    """``anonymous``, ``function`` or ``admin`` from the trigger's ``auth_level`` (enum or any case)."""
    name = str(level.value if isinstance(level, Enum) else level or "function").lower()
    if name not in _AUTH_RANKS:
        raise HostStartError(f"function {function!r}: auth level {level!r} is not anonymous, function or admin")
    return name


@dataclass(frozen=True)
class HostKeys:
    """The local key store: master key, host keys and function keys, by key name.

    Values stay out of ``repr`` so that an assertion message or a log of this object shows
    no key.
    """

    master: str = field(repr=False)
    host: Mapping[str, str] = field(repr=False)
    functions: Mapping[str, Mapping[str, str]] = field(repr=False)  # lower-cased function name -> keys

    @classmethod
    def from_settings(cls, env: Mapping[str, str]) -> HostKeys:
        """Read ``LocalKeyStore.*`` settings; generate the master and ``default`` host key if absent."""
        master = ""
        host: dict[str, str] = {}
        functions: dict[str, dict[str, str]] = {}
        for setting, value in env.items():
            if not setting.lower().startswith(KEY_SETTING_PREFIX.lower()):
                continue
            entry = setting[len(KEY_SETTING_PREFIX) :]
            kind, _, rest = entry.partition(".")
            owner, _, key_name = rest.partition(".")
            if not value:
                # An empty key could never be presented (an empty key counts as none).
                raise HostStartError(f"key setting {setting!r} is empty")
            if entry.lower() == "host.master":
                master = value
            elif kind.lower() == "host" and owner.lower() == "function" and key_name:
                host[key_name] = value
            elif kind.lower() == "functions" and owner and key_name:
                functions.setdefault(owner.lower(), {})[key_name] = value
            else:
                raise HostStartError(
                    f"key setting {setting!r}: expected {KEY_SETTING_PREFIX}host.master,"
                    f" {KEY_SETTING_PREFIX}host.function.<keyName>"
                    f" or {KEY_SETTING_PREFIX}functions.<function>.<keyName>"
                )
        # The host creates the master key and a "default" host key when its store has none.
        master = master or secrets.token_urlsafe(40)
        host.setdefault(DEFAULT_KEY_NAME, secrets.token_urlsafe(40))
        return cls(master=master, host=host, functions=functions)

    def level_of(self, presented: str, function: str) -> str:
        """The auth level ``presented`` grants for ``function``: admin, function or anonymous."""
        given = presented.encode("utf-8")

        def matches(keys: list[str]) -> bool:
            # Every key is compared (a list, not a short-circuiting generator), each in
            # constant time, so the answer time says nothing about which key came close.
            return any([hmac.compare_digest(given, key.encode("utf-8")) for key in keys])

        if matches([self.master]):
            return "admin"
        if matches([*self.host.values(), *self.functions.get(function.lower(), {}).values()]):
            return "function"
        return "anonymous"

    def allows(self, required: str, presented: str | None, function: str) -> bool:
        """Whether a request presenting ``presented`` (None: no key) may call ``function``."""
        if required == "anonymous":
            return True
        granted = self.level_of(presented, function) if presented else "anonymous"
        return _AUTH_RANKS[granted] >= _AUTH_RANKS[required]


def presented_key(header: str | None, query: str) -> str | None:
    """The key a request presents: its (first) ``x-functions-key`` header, else its first ``code``."""
    if header is not None:  # the header wins even when the query also has a code, as in the host
        return header
    codes = [value for name, value in parse_qsl(query, keep_blank_values=True) if name == KEY_QUERY_PARAMETER]
    return codes[0] if codes else None


_CODE_IN_QUERY = re.compile(r"([?&]code=)[^&\s\"']*", re.IGNORECASE)


def redact_code(text: str) -> str:
    """``text`` with the value of any ``code`` query parameter replaced, for logging."""
    return _CODE_IN_QUERY.sub(r"\1<redacted>", text)


# ----------------------------------------------------------------------------------------
# HTTP route templates
# ----------------------------------------------------------------------------------------

_CONSTRAINTS = {
    "int": r"-?\d+",
    "long": r"-?\d+",
    "bool": r"(?:true|false)",
    "guid": r"[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}",
    "alpha": r"[A-Za-z]+",
    "double": r"-?\d+(?:\.\d+)?",
    "float": r"-?\d+(?:\.\d+)?",
    "decimal": r"-?\d+(?:\.\d+)?",
}
_PARAM = re.compile(r"\{([^{}]+)\}")
_PARAM_BODY = re.compile(r"^(\*{1,2})?(\w+)((?::[^:=?]+)*)(=[^?]*)?(\?)?$")


class RouteTemplate:
    """An ASP.NET-style route template as the Functions host reads ``route``.

    Literal segments match case-insensitively; ``{name}`` matches one segment, ``{name?}`` and
    ``{name=default}`` may be absent (last segments only), ``{*rest}`` takes the remainder.
    Constraints in ``_CONSTRAINTS`` are enforced; other constraints are accepted and ignored.
    """

    def __init__(self, template: str) -> None:
        self.template = template.strip("/")
        self.defaults: dict[str, str] = {}
        self.names: list[str] = []
        precedence: list[int] = []
        pattern = ""
        for segment in self.template.split("/") if self.template else []:
            whole = _PARAM.fullmatch(segment)
            body = _PARAM_BODY.match(whole.group(1)) if whole else None
            if whole and not body:
                raise ValueError(f"route {template!r}: bad parameter {segment!r}")
            if body and body.group(1):  # {*rest}: the remainder of the path, possibly empty
                name = body.group(2)
                self.names.append(name)
                pattern += rf"(?:/(?P<{name}>.*))?"
                precedence.append(5)
                break
            if body and (body.group(5) or body.group(4)):  # {name?} / {name=default}
                name = body.group(2)
                self.names.append(name)
                if body.group(4):
                    self.defaults[name] = body.group(4)[1:]
                pattern += rf"(?:/(?P<{name}>{self._value_regex(body.group(3))}))?"
                precedence.append(4)
                continue
            pattern += "/" + self._segment_regex(segment)
            precedence.append(0 if not whole else (2 if body.group(3) else 3))
        self.precedence = tuple(precedence)
        self._regex = re.compile(f"^{pattern}/?$" if pattern else "^/?$", re.IGNORECASE)

    @staticmethod
    def _value_regex(constraints: str | None) -> str:
        for name in (constraints or "").split(":"):
            if name.lower() in _CONSTRAINTS:
                return _CONSTRAINTS[name.lower()]
        return r"[^/]+"

    def _segment_regex(self, segment: str) -> str:
        out = ""
        pos = 0
        for match in _PARAM.finditer(segment):
            out += re.escape(segment[pos : match.start()])
            body = _PARAM_BODY.match(match.group(1))
            if not body or body.group(1) or body.group(5) or body.group(4):
                raise ValueError(f"route {self.template!r}: unsupported parameter {match.group(0)!r}")
            name = body.group(2)
            self.names.append(name)
            value = self._value_regex(body.group(3))
            out += rf"(?P<{name}>{value if value != r'[^/]+' else r'[^/]+?'})"
            pos = match.end()
        return out + re.escape(segment[pos:])

    def match(self, path: str) -> dict[str, str] | None:
        """Route parameters (percent-decoded) if ``path`` (after the prefix) matches."""
        found = self._regex.match(path)
        if not found:
            return None
        params = {}
        for name in self.names:
            value = found.group(name)
            if value is None:
                if name in self.defaults:
                    params[name] = self.defaults[name]
                continue
            params[name] = unquote(value)
        return params


# ----------------------------------------------------------------------------------------
# Invocation plumbing: Out and Context stand-ins
# ----------------------------------------------------------------------------------------


class _Out(func.Out):
    def __init__(self) -> None:
        self._value: Any = None

    def set(self, val: Any) -> None:
        self._value = val

    def get(self) -> Any:
        return self._value


class _RetryContext:
    """``context.retry_context`` (the library's RetryContext ABC is not exported)."""

    def __init__(self, retry_count: int, max_retry_count: int) -> None:
        self._retry_count = retry_count
        self._max_retry_count = max_retry_count

    @property
    def retry_count(self) -> int:
        return self._retry_count

    @property
    def max_retry_count(self) -> int:
        return self._max_retry_count

    @property
    def exception(self) -> Any:
        return None


class _TraceContext:
    """``context.trace_context``: a fresh W3C traceparent per invocation."""

    def __init__(self) -> None:
        self._parent = f"00-{uuid.uuid4().hex}-{uuid.uuid4().hex[:16]}-01"

    @property
    def trace_state(self) -> str:
        return ""

    @property
    def trace_parent(self) -> str:
        return self._parent

    @property
    def attributes(self) -> dict[str, str]:
        return {}


class _Context(func.Context):
    _thread_local = threading.local()

    def __init__(self, invocation_id: str, function_name: str, directory: str, retry: _RetryContext) -> None:
        self._invocation_id = invocation_id
        self._function_name = function_name
        self._directory = directory
        self._retry = retry
        self._trace = _TraceContext()

    @property
    def invocation_id(self) -> str:
        return self._invocation_id

    @property
    def thread_local_storage(self) -> Any:
        return self._thread_local

    @property
    def function_name(self) -> str:
        return self._function_name

    @property
    def function_directory(self) -> str:
        return self._directory

    @property
    def trace_context(self) -> Any:
        return self._trace

    @property
    def retry_context(self) -> Any:
        return self._retry


@dataclass(frozen=True)
class RetryPolicy:
    """``@app.retry`` ([retries]): fixed delay, or exponential between minimum and maximum."""

    strategy: str
    max_retry_count: int
    delay: float = 0.0
    minimum: float = 0.0
    maximum: float = float(2**31 - 1)

    def interval(self, attempt: int) -> float:
        if self.strategy == "fixed_delay":
            return self.delay
        # [I] doubling from the minimum, capped by the maximum.
        return min(self.maximum, self.minimum * (2 ** max(0, attempt - 1)))

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any], function: str) -> RetryPolicy:
        def hms(key: str, default: float) -> float:
            raw = settings.get(key)
            if raw in (None, ""):
                return default
            try:  # the worker parses these with strptime('%H:%M:%S'): under 24 h ([worker])
                parsed = time.strptime(str(raw), "%H:%M:%S")
            except ValueError as exc:
                raise HostStartError(f"{function}: retry {key}={raw!r} must be HH:MM:SS under 24 h") from exc
            return parsed.tm_hour * 3600 + parsed.tm_min * 60 + parsed.tm_sec

        try:
            count = int(settings.get("max_retry_count"))
        except (TypeError, ValueError) as exc:
            raise HostStartError(f"{function}: retry max_retry_count must be an integer") from exc
        return cls(
            strategy=str(settings.get("strategy")),
            max_retry_count=count,
            delay=hms("delay_interval", 0.0),
            minimum=hms("minimum_interval", 0.0),
            maximum=hms("maximum_interval", float(2**31 - 1)),
        )


@dataclass
class FunctionPlan:
    """What the host knows about one function after indexing."""

    name: str
    trigger_type: str
    trigger_arg: str
    user_function: Callable[..., Any]
    wants_context: bool
    trigger_annotation: Any
    queue_outputs: dict[str, str]  # binding arg name ("$return" allowed) -> queue name
    retry: RetryPolicy | None = None
    # HTTP
    route: RouteTemplate | None = None
    methods: frozenset[str] | None = None
    auth_level: str = "anonymous"
    # timer
    schedule: str = ""
    run_on_startup: bool = False
    # queue
    queue_name: str = ""
    connection: str = ""


def _method_name(method: Any) -> str:
    return str(method.value if isinstance(method, Enum) else method).upper()


def _plan_function(fn: Any) -> FunctionPlan:
    """Validate one indexed function the way the worker does ([library], [worker]) and plan it."""
    name = fn.get_function_name()
    trigger = fn.get_trigger()
    if trigger is None:
        raise HostStartError(f"function {name!r} has no trigger")
    if trigger.type not in SUPPORTED_TRIGGERS:
        raise HostStartError(
            f"function {name!r}: trigger type {trigger.type!r} is not supported by the local host"
            f" (supported: {', '.join(SUPPORTED_TRIGGERS)})"
        )
    user_function = fn.get_user_function()
    parameters = inspect.signature(user_function).parameters
    queue_outputs: dict[str, str] = {}
    binding_names = set()
    for binding in fn.get_bindings():
        if binding is trigger:
            binding_names.add(binding.name)
            continue
        if binding.type == "http" and binding.name == "$return" and trigger.type == HTTP_TRIGGER:
            continue
        direction = getattr(binding.direction, "value", binding.direction)  # the library gives the int
        if binding.type == "queue" and direction == BindingDirection.OUT.value:
            queue_outputs[binding.name] = resolve_setting_expressions(
                binding.queue_name, f"function {name!r} output {binding.name!r} queueName"
            )
            if binding.name != "$return":
                binding_names.add(binding.name)
            continue
        raise HostStartError(
            f"function {name!r}: binding {binding.name!r} of type {binding.type!r} is not supported by the local host"
        )
    declared = set(parameters) - {"context"}
    if declared - binding_names:
        raise HostStartError(
            f"function {name!r}: the following parameters are declared in Python but not in the function"
            f" definition (function.json or function decorators): {sorted(declared - binding_names)}"
        )
    if binding_names - declared:
        raise HostStartError(
            f"function {name!r}: the following parameters are declared in the function decorators but not"
            f" in Python: {sorted(binding_names - declared)}"
        )
    retry_settings = fn.get_settings_dict("retry_policy")
    retry = None
    if retry_settings:
        if trigger.type == TIMER_TRIGGER:
            retry = RetryPolicy.from_settings(retry_settings, name)
        else:  # [retries]: the host disables retry policies for these triggers
            logger.warning("function %r: retry policies are not supported for %s; ignored", name, trigger.type)
    plan = FunctionPlan(
        name=name,
        trigger_type=trigger.type,
        trigger_arg=trigger.name,
        user_function=user_function,
        wants_context="context" in parameters,
        trigger_annotation=parameters[trigger.name].annotation,
        queue_outputs=queue_outputs,
        retry=retry,
    )
    if trigger.type == HTTP_TRIGGER:
        try:
            plan.route = RouteTemplate(trigger.route if trigger.route is not None else name)
        except ValueError as exc:
            raise HostStartError(f"function {name!r}: {exc}") from exc
        plan.methods = frozenset(_method_name(m) for m in trigger.methods) if trigger.methods else None
        # get_functions() has applied the app's http_auth_level to routes that set none ([library]).
        plan.auth_level = _auth_level_name(trigger.auth_level, name)
    elif trigger.type == TIMER_TRIGGER:
        plan.schedule = _validate_schedule(
            resolve_setting_expressions(str(trigger.schedule), f"function {name!r} schedule"), name
        )
        plan.run_on_startup = bool(trigger.run_on_startup)
    else:
        plan.queue_name = resolve_setting_expressions(str(trigger.queue_name), f"function {name!r} queueName")
        plan.connection = str(trigger.connection or DEFAULT_CONNECTION)
    return plan


def _validate_schedule(expr: str, function: str) -> str:
    expr = " ".join(expr.split())
    if _TIMESPAN.match(expr):
        raise HostStartError(
            f"function {function!r}: TimeSpan schedule {expr!r} only works on a Dedicated plan; use NCRONTAB"
        )
    if len(expr.split(" ")) not in (5, 6) or not croniter.is_valid(expr, second_at_beginning=True):
        raise HostStartError(
            f"function {function!r}: schedule {expr!r} is not an NCRONTAB expression"
            " ({second} {minute} {hour} {day} {month} {day-of-week})"
        )
    return expr


def _utcnow() -> datetime:
    return datetime.now(UTC)


# ----------------------------------------------------------------------------------------
# The host
# ----------------------------------------------------------------------------------------


class LocalHost:
    """Hosts one Function App module: HTTP routes, timers and queue pollers (see module doc).

    >>> host = LocalHost(app_dir=Path("."), port=0).start()
    >>> host.url                       # "http://127.0.0.1:PORT"; routes under /api/
    >>> host.wait_idle(timeout=10)     # every trigger queue empty, nothing running
    >>> host.stop()
    """

    def __init__(
        self,
        app_dir: Path | str = ".",
        port: int = 7071,
        script: str | None = None,
        *,
        bind: str = "127.0.0.1",
        stop_timeout: float = 30.0,
        unique_module_name: bool = True,
    ) -> None:
        self.app_dir = Path(app_dir).resolve()
        self.port = port
        self.script = script
        self.bind = bind
        self.stop_timeout = stop_timeout
        self.unique_module_name = unique_module_name
        self.config = HostConfig()
        self.module: ModuleType | None = None
        self.app: func.FunctionRegister | None = None
        self.plans: list[FunctionPlan] = []
        self.keys: HostKeys | None = None
        self._started = False
        self._stopped = False
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._in_flight = 0
        self._generation = 0
        self._added_env: list[str] = []
        self._added_sys_path = False
        self._queue_services: dict[str, QueueService] = {}
        self._storage_urls: dict[str, str] = {}  # connection -> REACTOR_STORAGE-style URL, for the log
        self._server: _HttpServer | None = None
        self._server_thread: threading.Thread | None = None
        self._timers: list[_TimerRunner] = []
        self._pollers: list[_QueuePoller] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: threading.Thread | None = None

    # -- lifecycle --------------------------------------------------------------------------

    def start(self) -> LocalHost:
        """Load settings and the app, index it once, validate everything, start serving."""
        if self._started:
            raise RuntimeError("LocalHost.start() was already called")
        self._started = True
        try:
            self._load_settings()
            self.config = HostConfig.load(self.app_dir / "host.json")
            self._load_app()
            functions = self._index()
            self.keys = HostKeys.from_settings(os.environ)
            for plan in self.plans:
                if plan.trigger_type == QUEUE_TRIGGER or plan.queue_outputs:
                    self._queue_service(plan.connection or DEFAULT_CONNECTION)
            self._start_http()
            for plan in self.plans:
                if plan.trigger_type == TIMER_TRIGGER:
                    self._timers.append(_TimerRunner(self, plan))
                elif plan.trigger_type == QUEUE_TRIGGER:
                    self._pollers.append(_QueuePoller(self, plan))
            for worker in [*self._timers, *self._pollers]:
                worker.start()
        except BaseException:
            self.stop()
            raise
        self._log_functions(functions)
        return self

    def stop(self) -> None:
        """Stop polling and timers, wait (bounded) for running invocations, close the server."""
        if self._stopped:
            return
        self._stopped = True
        self._stopping.set()
        deadline = time.monotonic() + self.stop_timeout
        for poller in self._pollers:
            poller.wake()
        for worker in [*self._pollers, *self._timers]:
            worker.join(max(0.0, deadline - time.monotonic()))
        with self._idle:
            while self._in_flight and time.monotonic() < deadline:
                self._idle.wait(max(0.01, min(0.2, deadline - time.monotonic())))
            if self._in_flight:
                logger.warning("stopping with %d invocation(s) still running", self._in_flight)
        for poller in self._pollers:
            poller.shutdown()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server.close_connections()
            if self._server_thread is not None:
                self._server_thread.join(5)
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            if self._loop_thread is not None:
                self._loop_thread.join(5)
            if not self._loop.is_running():
                self._loop.close()
        for name in self._added_env:
            os.environ.pop(name, None)
        self._added_env.clear()
        if self._added_sys_path:
            with contextlib.suppress(ValueError):
                sys.path.remove(str(self.app_dir))
            self._added_sys_path = False
        if self.module is not None and self.unique_module_name:
            sys.modules.pop(self.module.__name__, None)
        logger.info("local host stopped")

    def __enter__(self) -> LocalHost:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the host is not started")
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def function_key(self) -> str:
        """The ``default`` host key: what a caller sends to call any FUNCTION-level function."""
        return self._started_keys().host[DEFAULT_KEY_NAME]

    @property
    def master_key(self) -> str:
        """The master key: the only key an ADMIN-level function takes."""
        return self._started_keys().master

    def _started_keys(self) -> HostKeys:
        if self.keys is None:
            raise RuntimeError("the host is not started")
        return self.keys

    @property
    def route_prefix(self) -> str:
        return self.config.route_prefix

    def wait_idle(self, timeout: float) -> bool:
        """True once every trigger queue has ``count() == 0`` and no invocation is running.

        Messages that are invisible (in flight, waiting for a retry, sent with a delay) still
        count, so a self-advancing rollout is idle only when it has finished. Timers firing
        later do not count. False when ``timeout`` seconds pass first.
        """
        deadline = time.monotonic() + timeout
        watched = sorted({(p.connection, p.queue_name) for p in self.plans if p.trigger_type == QUEUE_TRIGGER})
        while True:
            with self._lock:
                generation, running = self._generation, self._in_flight
            busy = running > 0
            if not busy:
                busy = any(self._queue_services[conn].count(name) for conn, name in watched)
            with self._lock:
                if not busy and self._in_flight == 0 and self._generation == generation:
                    return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)

    # -- startup steps ---------------------------------------------------------------------

    def _load_settings(self) -> None:
        """local.settings.json ``Values`` into os.environ, not overriding what is set."""
        values = read_local_settings(self.app_dir).get("Values") or {}
        if not isinstance(values, dict):
            raise HostStartError("local.settings.json: Values must be an object")
        for name, value in values.items():
            if name not in os.environ:
                os.environ[name] = "" if value is None else str(value)
                self._added_env.append(name)

    def _load_app(self) -> None:
        """Import the script from its file and find its single FunctionRegister ([library])."""
        script = self.script or os.environ.get("PYTHON_SCRIPT_FILE_NAME") or "function_app.py"
        path = self.app_dir / script
        if not path.is_file():
            raise HostStartError(f"script {path} does not exist")
        if str(self.app_dir) not in sys.path:
            sys.path.insert(0, str(self.app_dir))
            self._added_sys_path = True
        module_name = path.stem
        if self.unique_module_name:
            module_name = f"{path.stem}__local_host_{next(_module_counter)}"
        spec = importlib.util.spec_from_file_location(module_name, path)
        if spec is None or spec.loader is None:
            raise HostStartError(f"cannot load {path}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        try:
            spec.loader.exec_module(module)
        except Exception as exc:
            sys.modules.pop(module_name, None)
            raise HostStartError(f"Error in index_function_app: importing {path} failed: {exc!r}") from exc
        self.module = module
        apps = [value for value in vars(module).values() if isinstance(value, func.FunctionRegister)]
        if not apps:
            raise HostStartError(f"Could not find top level function app instances in {script}")
        if len(apps) > 1:
            raise HostStartError(f"More than one function app instances are defined in {script}")
        self.app = apps[0]

    def _index(self) -> list[Any]:
        assert self.app is not None
        try:
            functions = self.app.get_functions()
        except Exception as exc:
            raise HostStartError(f"Worker failed to index functions: {exc}") from exc
        plans = []
        for fn in functions:
            disabled = os.environ.get(f"AzureWebJobs.{fn.get_function_name()}.Disabled", "")
            if disabled.lower() in ("1", "true"):  # [I] the host's "disable a function" setting
                logger.info("function %s is disabled by app setting", fn.get_function_name())
                continue
            plans.append(_plan_function(fn))
        self.plans = plans
        return functions

    def _queue_service(self, connection: str) -> QueueService:
        """The queues behind a binding's ``connection`` (module doc, Queues).

        With ``REACTOR_STORAGE=sqlite:///...`` every connection maps to that file, the local
        stand-in for a storage account. Otherwise the connection is resolved exactly as the
        Functions host resolves it (shared.connections: ``AzureWebJobs<name>``, ``<name>``, then
        identity-based ``<name>__queueServiceUri`` / ``__accountName``) and served by Azure
        Storage (Azurite locally); a bad setting stops the start, as it stops the real host.
        """
        from shared.settings import Settings
        from shared.storage import open_queues, parse

        service = self._queue_services.get(connection)
        if service is not None:
            return service
        try:
            url = Settings.from_env().storage
            if parse(url).kind != "sqlite":
                url = f"azure:{connection}"
            service = self._queue_services[connection] = open_queues(url)
        except ValueError as exc:
            raise HostStartError(str(exc)) from exc
        self._storage_urls[connection] = url
        return service

    def _start_http(self) -> None:
        try:
            self._server = _HttpServer((self.bind, self.port), self)
        except OSError as exc:
            raise HostStartError(f"cannot listen on {self.bind}:{self.port}: {exc}") from exc
        self._server_thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.1}, name="local-host-http", daemon=True
        )
        self._server_thread.start()

    def _log_functions(self, functions: list[Any]) -> None:
        lines = []
        for plan in self.plans:
            if plan.trigger_type == HTTP_TRIGGER:
                assert plan.route is not None
                methods = ",".join(sorted(plan.methods)) if plan.methods else "ALL"
                lines.append(f"  {plan.name}: [{methods}] {self.http_base()}/{plan.route.template}")
            elif plan.trigger_type == TIMER_TRIGGER:
                lines.append(f"  {plan.name}: timerTrigger '{plan.schedule}'")
            else:
                lines.append(
                    f"  {plan.name}: queueTrigger '{plan.queue_name}' (connection {plan.connection!r}"
                    f" -> {self._storage_urls.get(plan.connection)})"
                )
        logger.info(
            "local host for %s running at %s; %d function(s) indexed:\n%s",
            self.app_dir,
            self.url,
            len(functions),
            "\n".join(lines),
        )

    def http_base(self) -> str:
        return f"{self.url}/{self.config.route_prefix}" if self.config.route_prefix else self.url

    # -- invocations -----------------------------------------------------------------------

    @contextlib.contextmanager
    def _activity(self) -> Iterator[None]:
        with self._lock:
            self._in_flight += 1
            self._generation += 1
        try:
            yield
        finally:
            with self._idle:
                self._in_flight -= 1
                self._idle.notify_all()

    def invoke(
        self,
        plan: FunctionPlan,
        trigger_value: Any,
        *,
        retry_count: int = 0,
        log_extra: str = "",
        convert: Callable[[Any], Any] | None = None,
    ) -> Any:
        """Run one invocation and log one line; the function's exception is re-raised.

        ``convert`` turns the return value into what the trigger needs (the HTTP response);
        when it fails, the invocation failed, as an output conversion error does in the host.
        """
        invocation_id = str(uuid.uuid4())
        outs = {name: _Out() for name in plan.queue_outputs if name != "$return"}
        kwargs: dict[str, Any] = {plan.trigger_arg: trigger_value, **outs}
        if plan.wants_context:
            max_retry = plan.retry.max_retry_count if plan.retry else 0
            kwargs["context"] = _Context(
                invocation_id, plan.name, str(self.app_dir), _RetryContext(retry_count, max_retry)
            )
        started = time.perf_counter()
        with self._activity():
            try:
                result = plan.user_function(**kwargs)
                if inspect.isawaitable(result):
                    result = self._run_coroutine(result)
                if convert is not None:
                    result = convert(result)
                self._write_outputs(plan, outs, result)
            except Exception as exc:
                logger.error(
                    "Executed 'Functions.%s' (Failed, Trigger=%s, Id=%s, Duration=%dms%s): %s: %s",
                    plan.name,
                    plan.trigger_type,
                    invocation_id,
                    (time.perf_counter() - started) * 1000,
                    log_extra,
                    type(exc).__name__,
                    exc,
                    exc_info=True,
                )
                raise
            logger.info(
                "Executed 'Functions.%s' (Succeeded, Trigger=%s, Id=%s, Duration=%dms%s)",
                plan.name,
                plan.trigger_type,
                invocation_id,
                (time.perf_counter() - started) * 1000,
                log_extra,
            )
        return result

    def _run_coroutine(self, awaitable: Any) -> Any:
        with self._lock:
            if self._loop is None:
                self._loop = asyncio.new_event_loop()
                self._loop_thread = threading.Thread(
                    target=self._loop.run_forever, name="local-host-asyncio", daemon=True
                )
                self._loop_thread.start()
            loop = self._loop

        async def run() -> Any:
            return await awaitable

        return asyncio.run_coroutine_threadsafe(run(), loop).result()

    def _write_outputs(self, plan: FunctionPlan, outs: Mapping[str, _Out], result: Any) -> None:
        """Queue output bindings, written after success ([library] QueueMessageOutConverter types)."""
        for name, queue in plan.queue_outputs.items():
            value = result if name == "$return" else outs[name].get()
            bodies = _queue_output_bodies(value, plan.name, name)
            if not bodies:
                continue
            queues = self._queue_service(plan.connection or DEFAULT_CONNECTION)
            for body in bodies:
                queues.send(queue, self.encode_message(body))
            self.wake_queue(queue)

    def encode_message(self, body: bytes) -> str:
        """Wire text for ``body`` under host.json messageEncoding ([queue trigger])."""
        if self.config.queues.message_encoding == "base64":
            return base64.b64encode(body).decode("ascii")
        return body.decode("utf-8")

    def wake_queue(self, queue: str) -> None:
        """Poll ``queue`` at once: this host just wrote to it (the host's queue watcher)."""
        for poller in self._pollers:
            if poller.queue_name == queue:
                poller.wake()

    # -- HTTP dispatch ---------------------------------------------------------------------

    def find_route(self, method: str, path: str) -> tuple[int, FunctionPlan | None, dict[str, str], list[str]]:
        """(status, plan, route params, allowed methods) for a request path."""
        prefix = "/" + self.config.route_prefix if self.config.route_prefix else ""
        if prefix:
            if not (path.lower() == prefix.lower() or path.lower().startswith(prefix.lower() + "/")):
                return 404, None, {}, []
            path = path[len(prefix) :]
        candidates = []
        for plan in self.plans:
            if plan.route is None:
                continue
            params = plan.route.match(path)
            if params is not None:
                candidates.append((plan.route.precedence, plan, params))
        if not candidates:
            return 404, None, {}, []
        candidates.sort(key=lambda item: item[0])
        allowed: set[str] = set()
        for _, plan, params in candidates:
            if plan.methods is None or method in plan.methods:
                return 200, plan, params, []
            allowed |= plan.methods
        return 405, None, {}, sorted(allowed)


def _queue_output_bodies(value: Any, function: str, binding: str) -> list[bytes]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value.encode("utf-8")]
    if isinstance(value, bytes | bytearray):
        return [bytes(value)]
    if isinstance(value, func.QueueMessage):
        return [value.get_body()]
    if isinstance(value, list | tuple):
        bodies = []
        for item in value:
            if isinstance(item, str):
                bodies.append(item.encode("utf-8"))
            elif isinstance(item, func.QueueMessage):
                bodies.append(item.get_body())
            else:
                raise TypeError(f"{function}: invalid data type in output queue message list: {type(item)}")
        return bodies
    raise TypeError(f"{function}: output binding {binding!r} cannot write a {type(value).__name__} to a queue")


# ----------------------------------------------------------------------------------------
# HTTP server
# ----------------------------------------------------------------------------------------


class _BodyTooLarge(Exception):
    pass


class _HttpServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    # socketserver's listen backlog is 5: a burst of new connections overflows the accept queue
    # and the kernel drops or resets the rest. The Functions host listens through Kestrel, whose
    # socket transport queues 512 pending connections by default (SocketTransportOptions.Backlog);
    # the kernel caps this at net.core.somaxconn.
    request_queue_size = 512

    def __init__(self, address: tuple[str, int], host: LocalHost) -> None:
        self.local_host = host
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        """Close idle keep-alive connections so their handler threads end."""
        with self._connections_lock:
            connections = list(self._connections)
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate writes; with Nagle on, a keep-alive client waits for
    # the delayed ACK (~40 ms) on every response. The Functions host does not add that.
    disable_nagle_algorithm = True
    server_version = "ModelOpsReactorLocalHost/1.0"
    timeout = 120  # idle keep-alive connections are closed after this many seconds
    server: _HttpServer

    def do_GET(self) -> None:
        self._dispatch()

    do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = do_GET

    def log_message(self, format: str, *args: Any) -> None:
        # The request line carries the query string, and a ``code`` there is a key.
        logger.debug("http %s - %s", self.address_string(), redact_code(format % args))

    def _dispatch(self) -> None:
        host = self.server.local_host
        method = self.command.upper()
        split = urlsplit(self.path)
        path = split.path or "/"
        if host._stopping.is_set():
            self._reply(503, b"The local host is stopping.", close=True)
            return
        if method == "GET" and path.rstrip("/") == "/admin/host/status":
            status = {"state": "Running", "functions": [p.name for p in host.plans]}
            self._reply(200, json.dumps(status).encode(), content_type="application/json")
            return
        status, plan, route_params, allowed = host.find_route(method, path)
        try:
            body = self._read_body()
        except _BodyTooLarge:
            self._reply(413, b"Request body too large.", close=True)
            return
        except ValueError as exc:
            self._reply(400, f"Bad request body: {exc}".encode(), close=True)
            return
        if status == 404:
            self._reply(404, b"Not Found.")
            return
        if status == 405:
            self._reply(405, b"Method Not Allowed.", extra=[("Allow", ", ".join(allowed))])
            return
        assert plan is not None
        keys = host._started_keys()
        if not keys.allows(plan.auth_level, presented_key(self.headers.get(KEY_HEADER), split.query), plan.name):
            logger.info(
                "Unauthorized: %s %s needs a valid key for 'Functions.%s' (auth level %s)",
                method, split.path, plan.name, plan.auth_level,
            )
            self._reply(401, b"")
            return
        headers: dict[str, str] = {}
        for name, value in self.headers.items():
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
        params: dict[str, str] = {}
        for name, value in parse_qsl(split.query, keep_blank_values=True):
            params[name] = f"{params[name]},{value}" if name in params else value
        host_header = self.headers.get("Host") or f"{self.server.server_address[0]}:{self.server.server_address[1]}"
        request = func.HttpRequest(
            method=method,
            url=f"http://{host_header}{self.path}",
            headers=headers,
            params=params,
            route_params=route_params,
            body=body,
        )
        try:
            status_code, response_headers, response_body = host.invoke(
                plan, request, log_extra=f", {method} {split.path}", convert=_http_response
            )
        except Exception:
            self._reply(500, b"Internal Server Error: the function raised an exception.")
            return
        self._write(status_code, response_headers, response_body)

    def _read_body(self) -> bytes:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            return self._read_chunked()
        length_header = self.headers.get("Content-Length")
        if not length_header:
            return b""
        try:
            length = int(length_header)
        except ValueError as exc:
            raise ValueError("invalid Content-Length") from exc
        if length < 0:
            raise ValueError("invalid Content-Length")
        if length > MAX_REQUEST_BODY_BYTES:
            raise _BodyTooLarge
        data = self.rfile.read(length)
        if len(data) != length:
            raise ValueError("body shorter than Content-Length")
        return data

    def _read_chunked(self) -> bytes:
        parts: list[bytes] = []
        total = 0
        while True:
            line = self.rfile.readline(65537)
            if not line:
                raise ValueError("truncated chunked body")
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError as exc:
                raise ValueError("bad chunk size") from exc
            if size == 0:
                break
            total += size
            if total > MAX_REQUEST_BODY_BYTES:
                raise _BodyTooLarge
            data = self.rfile.read(size)
            if len(data) != size:
                raise ValueError("truncated chunk")
            parts.append(data)
            self.rfile.readline()  # the CRLF after the chunk
        while True:  # trailers, up to the blank line
            line = self.rfile.readline(65537)
            if line in (b"", b"\r\n", b"\n"):
                break
        return b"".join(parts)

    def _reply(
        self,
        status: int,
        body: bytes,
        *,
        content_type: str = "text/plain; charset=utf-8",
        extra: list[tuple[str, str]] | None = None,
        close: bool = False,
    ) -> None:
        if close:
            self.close_connection = True
        self._write(status, [("Content-Type", content_type), *(extra or [])], body)

    def _write(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        self.send_response(status)
        for name, value in headers:
            if name.lower() not in ("content-length", "transfer-encoding", "connection"):
                self.send_header(name, value)
        no_body = self.command == "HEAD" or status in (204, 304) or 100 <= status < 200
        if status not in (204, 304):
            self.send_header("Content-Length", str(len(body)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if not no_body:
            self.wfile.write(body)


def _http_response(result: Any) -> tuple[int, list[tuple[str, str]], bytes]:
    """Status, headers and body from what an HTTP function returned ([library], HttpResponseConverter)."""
    if isinstance(result, func.HttpResponse):
        headers = list(result.headers.items())
        if not any(name.lower() == "content-type" for name, _ in headers):
            mimetype = result.mimetype
            headers.append(
                ("Content-Type", f"{mimetype}; charset={result.charset}" if mimetype.startswith("text/") else mimetype)
            )
        return int(result.status_code), headers, result.get_body() or b""
    if isinstance(result, str):
        return 200, [("Content-Type", "text/plain; charset=utf-8")], result.encode("utf-8")
    if result is None:  # [I] no response: the host answers 204
        return 204, [], b""
    raise TypeError(f"an HTTP function returned {type(result).__name__}; expected func.HttpResponse or str")


# ----------------------------------------------------------------------------------------
# Timers
# ----------------------------------------------------------------------------------------


class _TimerRunner:
    """One timer function: its own thread, so invocations never overlap ([timer] singleton)."""

    def __init__(self, host: LocalHost, plan: FunctionPlan) -> None:
        self.host = host
        self.plan = plan
        self.last: datetime | None = None
        self._thread = threading.Thread(target=self._run, name=f"timer-{plan.name}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def join(self, timeout: float) -> None:
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _next_after(self, moment: datetime) -> datetime:
        return croniter(self.plan.schedule, moment, second_at_beginning=True).get_next(datetime)

    def _run(self) -> None:
        stop = self.host._stopping
        if self.plan.run_on_startup:
            self._fire(self._next_after(_utcnow()))
        due = self._next_after(_utcnow())
        while not stop.is_set():
            while (delay := (due - _utcnow()).total_seconds()) > 0:
                if stop.wait(delay):
                    return
            following = self._next_after(due)
            self._fire(following)
            now = _utcnow()
            # An overrun fires once more right away (past_due stays False, [timer]); skipped
            # occurrences coalesce into that one run.
            due = following if following > now else now

    def _fire(self, following: datetime) -> None:
        now = _utcnow()
        status = {
            "Last": (self.last or now).isoformat(),
            "Next": following.isoformat(),
            "LastUpdated": now.isoformat(),
        }
        policy = self.plan.retry
        attempt = 0
        while True:
            timer = TimerRequest(past_due=False, schedule_status=status, schedule={"AdjustForDST": True})
            try:
                self.host.invoke(self.plan, timer, retry_count=attempt)
                break
            except Exception:  # logged by invoke; a failed run waits for the next occurrence
                if policy is None or (policy.max_retry_count != -1 and attempt >= policy.max_retry_count):
                    break
                attempt += 1
                if self.host._stopping.wait(policy.interval(attempt)):
                    break
        self.last = now


# ----------------------------------------------------------------------------------------
# Queues
# ----------------------------------------------------------------------------------------


class _QueuePoller:
    """One queue function: a polling thread and a pool of invocations ([host.json], [queue trigger])."""

    def __init__(self, host: LocalHost, plan: FunctionPlan) -> None:
        self.host = host
        self.plan = plan
        self.queues: QueueService = host._queue_service(plan.connection)
        self.options = host.config.queues
        self.queue_name = plan.queue_name
        poison = plan.queue_name + POISON_SUFFIX
        self.poison_queue: str | None = (
            None if plan.queue_name.endswith(POISON_SUFFIX) or len(poison) > MAX_QUEUE_NAME_LENGTH else poison
        )
        self._wake = threading.Event()
        self._cond = threading.Condition()
        self._in_flight = 0
        self._pool = ThreadPoolExecutor(
            max_workers=self.options.batch_size + self.options.new_batch_threshold,
            thread_name_prefix=f"queue-{plan.name}",
        )
        self._thread = threading.Thread(target=self._run, name=f"poller-{plan.name}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def wake(self) -> None:
        self._wake.set()
        with self._cond:
            self._cond.notify_all()

    def join(self, timeout: float) -> None:
        if self._thread.is_alive():
            self._thread.join(timeout)

    def shutdown(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=False)

    def _next_delay(self, previous: float | None) -> float:
        """Randomized exponential back-off from 100 ms to maxPollingInterval ([host.json])."""
        ceiling = self.options.max_polling_interval
        if previous is None:
            return min(MIN_POLLING_INTERVAL, ceiling)
        return min(ceiling, max(MIN_POLLING_INTERVAL, previous * 2 * random.uniform(0.8, 1.2)))

    def _run(self) -> None:
        stop = self.host._stopping
        delay: float | None = None
        while not stop.is_set():
            with self._cond:
                while self._in_flight > self.options.new_batch_threshold and not stop.is_set():
                    self._cond.wait(0.5)
            if stop.is_set():
                return
            try:
                messages = self.queues.receive(
                    self.queue_name,
                    max_messages=self.options.batch_size,
                    visibility_timeout=RECEIVE_VISIBILITY_TIMEOUT,
                )
            except Exception:
                logger.exception("receiving from queue %r failed", self.queue_name)
                messages = []
            if messages:
                delay = None
                with self._cond:
                    self._in_flight += len(messages)
                for message in messages:
                    self._pool.submit(self._process, message)
                continue
            delay = self._next_delay(delay)
            if self._wake.wait(delay):
                delay = None
            self._wake.clear()

    def _process(self, message: ReceivedMessage) -> None:
        try:
            with self.host._activity():
                self._handle(message)
        except Exception:
            logger.exception("handling message %s of queue %r failed", message.id, self.queue_name)
        finally:
            with self._cond:
                self._in_flight -= 1
                self._cond.notify_all()

    def _handle(self, message: ReceivedMessage) -> None:
        options = self.options
        if options.message_encoding == "base64":
            try:
                body = decode_content(message.content)
            except ValueError:
                logger.error(
                    "Message decoding has failed! Check MessageEncoding settings. MessageId=%s (queue %r)",
                    message.id,
                    self.queue_name,
                )
                self._to_poison(message)
                return
        else:
            body = message.content.encode("utf-8")
        if message.dequeue_count > options.max_dequeue_count:
            logger.warning(
                "Message %s of queue %r has DequeueCount %d > MaxDequeueCount %d; not invoking.",
                message.id,
                self.queue_name,
                message.dequeue_count,
                options.max_dequeue_count,
            )
            self._to_poison(message)
            return
        argument: Any = QueueMessage(
            id=message.id,
            body=body,
            dequeue_count=message.dequeue_count,
            insertion_time=message.insertion_time,
            expiration_time=message.expiration_time,
            time_next_visible=message.next_visible_time,
            pop_receipt=message.pop_receipt,
        )
        if self.plan.trigger_annotation in (str, "str"):
            argument = body.decode("utf-8")
        elif self.plan.trigger_annotation in (bytes, "bytes"):
            argument = body
        try:
            self.host.invoke(
                self.plan,
                argument,
                log_extra=f", Queue={self.queue_name}, MessageId={message.id}, DequeueCount={message.dequeue_count}",
            )
        except Exception:
            self._failed(message)
            return
        self._delete(message)

    def _failed(self, message: ReceivedMessage) -> None:
        if message.dequeue_count >= self.options.max_dequeue_count:
            if self.poison_queue is not None:
                logger.warning(
                    "Message has reached MaxDequeueCount of %d. Moving message to queue '%s'.",
                    self.options.max_dequeue_count,
                    self.poison_queue,
                )
            self._to_poison(message)
            return
        try:
            self.queues.update_visibility(
                self.queue_name, message.id, message.pop_receipt, self.options.visibility_timeout
            )
        except PopReceiptMismatch:
            logger.warning("message %s of queue %r was received again meanwhile", message.id, self.queue_name)

    def _to_poison(self, message: ReceivedMessage) -> None:
        """Copy the ORIGINAL wire text to the poison queue as a new message, delete the original."""
        if self.poison_queue is None:
            # [queue trigger]: no poison queue; leave it invisible (never re-released, no fast loop).
            logger.warning(
                "queue %r has no poison queue: message %s stays invisible until its visibility timeout ends",
                self.queue_name,
                message.id,
            )
            return
        self.queues.send(self.poison_queue, message.content)
        self.host.wake_queue(self.poison_queue)
        self._delete(message)

    def _delete(self, message: ReceivedMessage) -> None:
        try:
            self.queues.delete(self.queue_name, message.id, message.pop_receipt)
        except PopReceiptMismatch:
            logger.warning("message %s of queue %r was received again meanwhile", message.id, self.queue_name)


# ----------------------------------------------------------------------------------------
# Command line: python -m local.host --app-dir . --port 7071
# ----------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m local.host", description=__doc__.split("\n\n")[0])
    parser.add_argument("--app-dir", default=".", help="the Function App directory (host.json, function_app.py)")
    parser.add_argument(
        "--port", type=int, default=None, help="HTTP port (default: local.settings.json Host.LocalHttpPort, or 7071)"
    )
    parser.add_argument(
        "--script", default=None, help="script file (default: PYTHON_SCRIPT_FILE_NAME or function_app.py)"
    )
    parser.add_argument("--log-level", default="INFO", help="logging level (default INFO)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app_dir = Path(args.app_dir).resolve()
    port = args.port
    if port is None:
        try:
            port = int(_ci_get(read_local_settings(app_dir).get("Host"), "LocalHttpPort", 7071))
        except (HostStartError, TypeError, ValueError):
            port = 7071

    stop = threading.Event()

    def on_signal(signum: int, _frame: Any) -> None:
        logger.info("received %s, stopping", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    host = LocalHost(app_dir=app_dir, port=port, script=args.script, unique_module_name=False)
    try:
        host.start()
    except HostStartError as exc:
        logger.error("the local host cannot start: %s", exc)
        return 1
    try:
        while not stop.wait(0.5):
            pass
    finally:
        host.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
