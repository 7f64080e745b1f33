"""Traces, logs and metrics for Application Insights through OpenTelemetry (``azure-monitor-opentelemetry``).

Only with the app setting ``APPLICATIONINSIGHTS_CONNECTION_STRING``, the distro's own setting
(``configure_azure_monitor`` reads it by that name). The distro is configured once per process,
at the first handler call that reaches this module, and OpenTelemetry is imported then: never
while the worker indexes the app (cold start: Microsoft Learn, "Python developer reference for
Azure Functions", https://learn.microsoft.com/en-us/azure/azure-functions/functions-reference-python), never without
the setting. Without it every function here does nothing.

What is sent:

- a span per unit of work (a webhook delivery, a queue message, a timer tick: each
  :func:`shared.log.correlated` block), in the trace of its correlation id. Messages carry the
  correlation id, not a ``traceparent``, so the trace id is derived from it: the delivery, the
  reconcile it sends and every step of the rollouts that follow are one trace per event or
  command. The span is named for the family of the first step it logs (``webhook``,
  ``command``, ``rollout``, ``repair``, ``watcher``, ``poison``);
- a child span per rollout step (handlers/rollout.py) and per Model Serving call
  (shared/serving.py); the distro's ``requests`` instrumentation adds one per HTTP call;
- the ``reactor`` logger's records (``logger_name``), with shared.log's structured fields as
  attributes, inside the span that was current; only that logger, whose lines are redacted;
- metrics, each named by a constant below and charted by ``infra/workbook.json``, which reads
  them from ``customMetrics`` (the exporter sends a histogram as one point per export interval
  and attribute set: ``valueSum``, ``valueCount``, ``valueMin``, ``valueMax``; a counter as
  its increase, delta temporality; attributes land in ``customDimensions``):

  - ``reactor.rollout.duration``: histogram, seconds from a rollout's creation to its end, by
    ``outcome`` (shared.rollouts);
  - ``reactor.analysis.runs``: counter, an analysis run that reached a terminal phase, by
    ``phase``, ``strategy``, ``weight`` (handlers/rollout.py);
  - ``reactor.drift.value``: histogram, each figure of a monitor decision that has a value, by
    ``check`` (``psi(trip_distance)``), ``group``, ``verdict`` (shared/monitoring/store.py, where
    the decision is recorded);
  - ``reactor.monitor.decisions``: counter, a monitor decision by ``verdict`` (``failed``: a
    check that could not be made);
  - ``reactor.retraining.runs``: counter, a retraining command's outcome by ``result``
    (``launched``, the run's result state such as ``SUCCESS``, or why nothing was launched);

  all with ``model``, ``environment`` and ``endpoint`` where known. Counted where the record is
  written, so a step redelivered after a crash between its write and its acknowledgement may
  count twice: the tables are the record, the metrics a view for the portal.

Every attribute and status text goes through shared.redaction; exceptions are recorded by
this module, redacted, never by OpenTelemetry's own ``record_exception`` (it copies the text).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from shared.redaction import redact, redact_value

SETTING = "APPLICATIONINSIGHTS_CONNECTION_STRING"
CORRELATION_ID = "reactor.cid"  # the "cid" field of every structured log line
ROLLOUT_DURATION = "reactor.rollout.duration"
ANALYSIS_RUNS = "reactor.analysis.runs"
DRIFT_VALUE = "reactor.drift.value"
MONITOR_DECISIONS = "reactor.monitor.decisions"
RETRAINING_RUNS = "reactor.retraining.runs"
# name → (kind, unit, description): the instruments configure() creates.
INSTRUMENTS = {
    ROLLOUT_DURATION: ("histogram", "s", "time from a rollout's creation to its end, by outcome"),
    ANALYSIS_RUNS: ("counter", "1", "analysis runs that reached a terminal phase, by phase, strategy and weight"),
    DRIFT_VALUE: ("histogram", "1", "monitor figures (drift statistics, performance), by check and verdict"),
    MONITOR_DECISIONS: ("counter", "1", "monitor decisions, by verdict"),
    RETRAINING_RUNS: ("counter", "1", "retraining commands' outcomes, by result"),
}
LOGGER = "reactor"
_UNNAMED = "reactor"


@dataclass
class _Pipeline:
    tracer: Any
    record: dict[str, Any]  # metric name → its instrument's record (histogram) or add (counter)


@dataclass
class _Unit:
    span: Any
    named: bool = False


_lock = threading.Lock()
_pipeline: _Pipeline | None = None
_decided = False
_unit: ContextVar[_Unit | None] = ContextVar("reactor_unit", default=None)


def configure(connection_string: str, *, span_processors: Sequence[Any] = (), metric_readers: Sequence[Any] = (),
              log_record_processors: Sequence[Any] = ()) -> None:
    """Configure the distro for this process, once (OpenTelemetry's global providers can be
    set only once). The processors and readers are added beside the Azure Monitor exporters
    (``configure_azure_monitor``'s ``span_processors``, ``metric_readers`` and
    ``log_record_processors``): how a test reads what would be sent."""
    global _pipeline, _decided
    with _lock:
        if _pipeline is None:
            from azure.monitor.opentelemetry import configure_azure_monitor
            from opentelemetry import metrics, trace

            configure_azure_monitor(connection_string=connection_string, logger_name=LOGGER,
                                    span_processors=list(span_processors), metric_readers=list(metric_readers),
                                    log_record_processors=list(log_record_processors))
            logger = logging.getLogger(LOGGER)
            if logger.level == logging.NOTSET:
                # Steps log at INFO; the root logger's default (WARNING) would drop them from the export.
                logger.setLevel(logging.INFO)
            meter = metrics.get_meter(LOGGER)
            record = {name: meter.create_histogram(name, unit=unit, description=text).record if kind == "histogram"
                      else meter.create_counter(name, unit=unit, description=text).add
                      for name, (kind, unit, text) in INSTRUMENTS.items()}
            _pipeline = _Pipeline(trace.get_tracer(LOGGER), record)
        _decided = True


def _current() -> _Pipeline | None:
    """The pipeline, configured on the first call when the setting is present."""
    global _decided
    if not _decided:
        value = os.environ.get(SETTING, "").strip()
        if value:
            try:
                configure(value)
            except Exception as exc:  # telemetry never stops the work it observes
                logging.getLogger(LOGGER).warning(json.dumps({
                    "event": "telemetry.unavailable", "error": redact(f"{type(exc).__name__}: {exc}")}))
        _decided = True
    return _pipeline


def active() -> bool:
    return _current() is not None


def _value(value: Any) -> Any:
    # OpenTelemetry attributes hold primitives (and lists of them); anything else goes as JSON.
    if isinstance(value, bool | int | float | str):
        return value
    return redact(json.dumps(value, default=str, separators=(",", ":")))


def attributes(fields: Mapping[str, Any], prefix: str = "reactor.") -> dict[str, Any]:
    """Fields as attribute values, redacted (secret-named fields masked whole), None left out."""
    clean = redact_value(dict(fields))
    return {f"{prefix}{k}": _value(v) for k, v in clean.items() if v is not None}


def _failed(span: Any, exc: BaseException) -> None:
    from opentelemetry.trace import Status, StatusCode

    text = redact(f"{type(exc).__name__}: {exc}")
    span.set_status(Status(StatusCode.ERROR, text))
    span.add_event("exception", {"exception.type": type(exc).__name__, "exception.message": text})


def _parent(cid: str) -> Any:
    """A remote parent in the trace of ``cid``: every unit of work with that correlation id,
    in any process, joins the same trace (W3C trace ids need only be unique, and a hash of a
    unique id is)."""
    from opentelemetry import trace

    digest = hashlib.sha256(cid.encode()).digest()
    context = trace.SpanContext(int.from_bytes(digest[:16], "big") or 1, int.from_bytes(digest[16:24], "big") or 1,
                                is_remote=True, trace_flags=trace.TraceFlags(trace.TraceFlags.SAMPLED))
    return trace.set_span_in_context(trace.NonRecordingSpan(context))


@contextmanager
def unit(cid: str) -> Iterator[None]:
    """The span of one unit of work, in the trace of its correlation id (``-``: none known,
    so a trace of its own)."""
    pipeline = _current()
    if pipeline is None:
        yield
        return
    from opentelemetry.trace import SpanKind

    with pipeline.tracer.start_as_current_span(
            _UNNAMED, context=_parent(cid) if cid != "-" else None, kind=SpanKind.CONSUMER,
            attributes={CORRELATION_ID: redact(cid)}, record_exception=False, set_status_on_exception=False,
    ) as span:
        token = _unit.set(_Unit(span))
        try:
            yield
        except BaseException as exc:
            _failed(span, exc)
            raise
        finally:
            _unit.reset(token)


def name_unit(event: str) -> None:
    """Name the current unit of work for the family of its first step (``rollout.step``: rollout)."""
    current = _unit.get()
    if current is not None and not current.named:
        current.span.update_name(event.split(".", 1)[0])
        current.named = True


class Span:
    """A span as callers see it: attributes can be added (redacted)."""

    def __init__(self, span: Any = None) -> None:
        self._span = span

    def set(self, **fields: Any) -> None:
        if self._span is not None:
            self._span.set_attributes(attributes(fields))


_NO_SPAN = Span()


@contextmanager
def span(name: str, **fields: Any) -> Iterator[Span]:
    """A child span of whatever is current (a rollout step, a Databricks call)."""
    pipeline = _current()
    if pipeline is None:
        yield _NO_SPAN
        return
    with pipeline.tracer.start_as_current_span(name, attributes=attributes(fields), record_exception=False,
                                               set_status_on_exception=False) as current:
        try:
            yield Span(current)
        except BaseException as exc:
            _failed(current, exc)
            raise


def _measure(name: str, value: float, fields: Mapping[str, Any]) -> None:
    pipeline = _current()
    if pipeline is None:
        return
    pipeline.record[name](value, attributes(fields, prefix=""))


def rollout_ended(row: Mapping[str, Any]) -> None:
    """Record an ended rollout's duration with its outcome (``done``, ``failed``, ``superseded``)."""
    took = max(0.0, float(row["finished_at"]) - float(row["created_at"]))
    _measure(ROLLOUT_DURATION, took, {"outcome": row["status"], "model": row.get("model"),
                                      "environment": row.get("environment"), "endpoint": row.get("endpoint")})


def analysis_ended(record: Mapping[str, Any], *, strategy: str, model: str, environment: str, endpoint: str) -> None:
    """Count an analysis run (shared.delivery.store's record) that reached a terminal phase."""
    _measure(ANALYSIS_RUNS, 1, {"phase": record["phase"], "strategy": strategy, "weight": record.get("weight"),
                                "model": model, "environment": environment, "endpoint": endpoint})


def monitor_decided(decision: Mapping[str, Any]) -> None:
    """Count a recorded monitor decision and record each of its figures that has a value."""
    where = {"model": decision.get("model"), "environment": decision.get("environment"),
             "endpoint": decision.get("endpoint")}
    _measure(MONITOR_DECISIONS, 1, {**where, "verdict": decision["verdict"], "version": decision.get("version")})
    for f in decision.get("figures") or []:
        if f.get("value") is not None:
            _measure(DRIFT_VALUE, float(f["value"]), {**where, "check": f["check"], "group": f.get("group"),
                                                      "verdict": f["verdict"], "version": decision.get("version")})


def retraining_result(result: str, *, model: str, environment: str, endpoint: str) -> None:
    """Count a retraining command's outcome: ``launched``, the run's result, or why it was not launched."""
    _measure(RETRAINING_RUNS, 1, {"result": result, "model": model, "environment": environment, "endpoint": endpoint})
