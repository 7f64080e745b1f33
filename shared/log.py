"""Structured logs: one JSON line per step, carrying the correlation id that caused it.

The correlation id is the webhook's delivery id or the queue message id that started the
chain; it travels inside every command and rollout message, so one rollout can be followed
from webhook to alias with a single filter. Azure Functions forwards ``logging`` records to
Application Insights, where the JSON message stays queryable. With telemetry on
(shared.telemetry), each :func:`correlated` block is also a span in the trace of its
correlation id, and each step's fields are attributes of the log record it exports.

Everything a step logs goes through :func:`shared.redaction.redact_value` first: a failure
reason that quotes a connection URL, a header or a token reaches the log masked.
"""

from __future__ import annotations

import contextvars
import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from shared import telemetry
from shared.redaction import redact, redact_value

_correlation: contextvars.ContextVar[str] = contextvars.ContextVar("correlation_id", default="-")
_logger = logging.getLogger("reactor")


def correlation_id() -> str:
    return _correlation.get()


@contextmanager
def correlated(cid: str) -> Iterator[None]:
    token = _correlation.set(cid or "-")
    try:
        with telemetry.unit(cid or "-"):
            yield
    finally:
        _correlation.reset(token)


def step(event: str, level: int = logging.INFO, **fields: Any) -> None:
    """Log one step as JSON: ``{"event": ..., "cid": ..., **fields}``, redacted.

    Field values are redacted recursively (secret-named fields masked whole); a value JSON
    cannot hold is logged as its ``str``, redacted too, since an exception's text may quote a
    URL with its password."""
    record = redact_value({"event": event, "cid": _correlation.get(), **fields})
    line = json.dumps(record, default=lambda v: redact(str(v)), separators=(",", ":"))
    if not telemetry.active():
        _logger.log(level, line)
        return
    telemetry.name_unit(event)
    # Prefixed: a field may share a name with a LogRecord attribute (``message``), which
    # ``extra`` may not overwrite.
    _logger.log(level, line, extra=telemetry.attributes(record))
