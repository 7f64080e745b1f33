"""Inference tables of the local workspace: Unity Catalog Delta tables, delivered in batches.

What is captured follows Databricks, "Monitor served models using AI Gateway-enabled inference tables"
(https://docs.databricks.com/aws/en/ai-gateway/inference-tables): only an endpoint whose config enables an
inference table is captured, to ``<catalog>.<schema>.<prefix>_payload`` (the prefix defaults to
the endpoint name), a managed Delta table of ``ws.catalog``:

- AI Gateway (``ai_gateway.inference_table_config``): the columns of a real ``SHOW CREATE
  TABLE`` (a public dump of one): ``databricks_request_id STRING, request_date DATE (UTC), client_request_id
  STRING, request_time TIMESTAMP, status_code INT, sampling_fraction DOUBLE,
  execution_duration_ms BIGINT, request STRING, response STRING, logging_error_codes
  ARRAY<STRING>, served_entity_id STRING, requester STRING`` with
  ``delta.enableChangeDataFeed=true``. ``CLUSTER BY (request_date)`` is a layout choice, not
  emulated. ``requester`` is NULL for route-optimized endpoints.
- Legacy ``auto_capture_config`` (deprecated): ``client_request_id STRING, databricks_request_id
  STRING, date DATE, timestamp_ms BIGINT, status_code INT, sampling_fraction DOUBLE,
  execution_time_ms BIGINT, request STRING, response STRING, request_metadata
  MAP<STRING,STRING>`` with the keys ``endpoint_name``, ``model_name``, ``model_version`` (read
  by public notebooks; types [INF]).

``execution_duration_ms`` (``execution_time_ms``) is model inference time only, measured
around the scoring call. A request or response over ``MAX_PAYLOAD_CHARS`` is logged as NULL with
``MAX_REQUEST_SIZE_EXCEEDED`` / ``MAX_RESPONSE_SIZE_EXCEEDED`` in ``logging_error_codes``;
the legacy table has no such column and only gets the NULL [INF].

``system.serving.served_entities`` is a Delta table too, so that ``served_entity_id`` joins to
the entity and its version: one row per served entity each time a config becomes active.
Its columns are a subset of that system table as recalled, not verified [INF]:
``served_entity_id STRING, endpoint_name STRING, endpoint_id STRING, served_entity_name STRING,
entity_type STRING, entity_name STRING, entity_version STRING, endpoint_config_version INT,
change_time TIMESTAMP``. It exists from the first delivery on, as a system table always does.

Delivery is best effort on Databricks, "usually within an hour". Here rows are
buffered and a background thread appends them every ``delivery_seconds`` (1 s by default): one
Delta append per table per batch; a table is created when its inference table is enabled (at
the next delivery) or, at the latest, with its first rows. ``flush()`` delivers what is buffered
now and ``stop()`` flushes. A failed append keeps its rows for the next batch and is logged;
``flush()`` raises it. Catalogs and schemas are not objects of the local catalog, so they need
not exist beforehand.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from typing import Any

from .catalog import UnityCatalog

log = logging.getLogger("local.workspace.inference")

AI_GATEWAY = "AI_GATEWAY"
LEGACY = "AUTO_CAPTURE"
SERVED_ENTITIES_KIND = "SERVED_ENTITIES"
SERVED_ENTITIES = "system.serving.served_entities"

# Payloads larger than this are logged as NULL with MAX_REQUEST/RESPONSE_SIZE_EXCEEDED.
# The real limit is not documented; 1 MiB is a local choice [INF].
MAX_PAYLOAD_CHARS = 1024 * 1024


@cache
def schema(kind: str) -> Any:
    """The Arrow schema of each kind of table (Delta types: see the module docstring)."""
    import pyarrow as pa

    text, ts = pa.string(), pa.timestamp("us", "UTC")
    if kind == AI_GATEWAY:
        return pa.schema([
            ("databricks_request_id", text), ("request_date", pa.date32()), ("client_request_id", text),
            ("request_time", ts), ("status_code", pa.int32()), ("sampling_fraction", pa.float64()),
            ("execution_duration_ms", pa.int64()), ("request", text), ("response", text),
            ("logging_error_codes", pa.list_(text)), ("served_entity_id", text), ("requester", text),
        ])
    if kind == LEGACY:
        return pa.schema([
            ("client_request_id", text), ("databricks_request_id", text), ("date", pa.date32()),
            ("timestamp_ms", pa.int64()), ("status_code", pa.int32()), ("sampling_fraction", pa.float64()),
            ("execution_time_ms", pa.int64()), ("request", text), ("response", text),
            ("request_metadata", pa.map_(text, text)),
        ])
    if kind == SERVED_ENTITIES_KIND:
        return pa.schema([
            ("served_entity_id", text), ("endpoint_name", text), ("endpoint_id", text),
            ("served_entity_name", text), ("entity_type", text), ("entity_name", text), ("entity_version", text),
            ("endpoint_config_version", pa.int32()), ("change_time", ts),
        ])
    raise ValueError(f"unknown inference table kind {kind!r}")


@dataclass(frozen=True)
class CaptureTarget:
    """Where an endpoint's queries go: a normalized table name and the kind of its columns."""

    table: str
    kind: str


def capture_target(kind: str, config: Any, endpoint: str) -> CaptureTarget | None:
    """The target of an inference table config (``AiGatewayInferenceTableConfig`` or
    ``AutoCaptureConfigOutput``), or None when it is absent or not enabled. ValueError when an
    enabled config lacks its catalog or schema, or names are not Unity Catalog names."""
    if config is None or not config.enabled:
        return None
    if not config.catalog_name or not config.schema_name:
        raise ValueError("catalog_name and schema_name are required to enable an inference table")
    prefix = config.table_name_prefix or endpoint
    return CaptureTarget(UnityCatalog.normalize(f"{config.catalog_name}.{config.schema_name}.{prefix}_payload"), kind)


@dataclass
class InferenceRecord:
    """One answered query, as the serving path saw it."""

    databricks_request_id: str
    client_request_id: str | None
    request_time: datetime
    status_code: int
    execution_duration_ms: int | None
    request: str | None
    response: str | None
    served_entity_id: str | None
    requester: str | None
    endpoint_name: str
    model_name: str | None = None
    model_version: str | None = None
    sampling_fraction: float = 1.0

    def row(self, kind: str) -> dict[str, Any]:
        request, response, errors = self.request, self.response, []
        if request is not None and len(request) > MAX_PAYLOAD_CHARS:
            request = None
            errors.append("MAX_REQUEST_SIZE_EXCEEDED")
        if response is not None and len(response) > MAX_PAYLOAD_CHARS:
            response = None
            errors.append("MAX_RESPONSE_SIZE_EXCEEDED")
        when = self.request_time.astimezone(UTC)
        if kind == AI_GATEWAY:
            return {
                "databricks_request_id": self.databricks_request_id, "request_date": when.date(),
                "client_request_id": self.client_request_id, "request_time": when, "status_code": self.status_code,
                "sampling_fraction": self.sampling_fraction, "execution_duration_ms": self.execution_duration_ms,
                "request": request, "response": response, "logging_error_codes": errors,
                "served_entity_id": self.served_entity_id, "requester": self.requester,
            }
        metadata = {"endpoint_name": self.endpoint_name, "model_name": self.model_name,
                    "model_version": self.model_version}
        return {
            "client_request_id": self.client_request_id, "databricks_request_id": self.databricks_request_id,
            "date": when.date(), "timestamp_ms": int(when.timestamp() * 1000), "status_code": self.status_code,
            "sampling_fraction": self.sampling_fraction, "execution_time_ms": self.execution_duration_ms,
            "request": request, "response": response,
            "request_metadata": [(k, v) for k, v in metadata.items() if v is not None],
        }


@dataclass
class _Batch:
    kind: str
    rows: list[dict[str, Any]] = field(default_factory=list)


class DeliveryFailed(Exception):
    """Some tables could not be written; their rows are kept for the next delivery."""


class InferenceTables:
    """Buffers inference rows and served entities, and appends them to their Delta tables."""

    def __init__(self, catalog: UnityCatalog, delivery_seconds: float = 1.0):
        self.catalog = catalog
        self.delivery_seconds = delivery_seconds
        self._guard = threading.Lock()  # the buffers
        self._delivering = threading.Lock()  # one delivery at a time: a flush waits for the thread's batch
        self._pending: dict[str, _Batch] = {}
        self._halt = threading.Event()
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ buffering
    def _add(self, table: str, kind: str, rows: list[dict[str, Any]]) -> None:
        with self._guard:
            self._pending.setdefault(table, _Batch(kind)).rows.extend(rows)

    def enable(self, target: CaptureTarget) -> None:
        """The table of an inference table just enabled: created at the next delivery."""
        self._add(target.table, target.kind, [])

    def capture(self, target: CaptureTarget, record: InferenceRecord) -> None:
        self._add(target.table, target.kind, [record.row(target.kind)])

    def record_served_entities(self, rows: list[dict[str, Any]]) -> None:
        """The served entities of a config that became active (``system.serving.served_entities``)."""
        self._add(SERVED_ENTITIES, SERVED_ENTITIES_KIND, list(rows))

    def pending_rows(self) -> int:
        with self._guard:
            return sum(len(b.rows) for b in self._pending.values())

    # ------------------------------------------------------------------ delivery
    def flush(self) -> int:
        """Deliver everything buffered now; returns the number of rows appended. Raises
        DeliveryFailed (the rows stay buffered) when a table could not be written."""
        return self._deliver()

    def _deliver(self) -> int:
        with self._delivering:
            with self._guard:
                batches, self._pending = self._pending, {}
            delivered, failed = 0, []
            for table, batch in batches.items():
                try:
                    self._write(table, batch)
                    delivered += len(batch.rows)
                except Exception as exc:  # the rows must survive whatever the writer raised
                    log.exception("inference delivery to %s failed; %d row(s) kept for the next batch",
                                  table, len(batch.rows))
                    failed.append(f"{table}: {type(exc).__name__}: {exc}")
                    with self._guard:
                        later = self._pending.get(table)
                        batch.rows.extend(later.rows if later else [])
                        self._pending[table] = batch
            if failed:
                raise DeliveryFailed("; ".join(failed))
            return delivered

    def _write(self, table: str, batch: _Batch) -> None:
        import pyarrow as pa

        arrow_schema = schema(batch.kind)
        if not self.catalog.exists(table):
            self.catalog.create_table(table, arrow_schema.empty_table(), change_data_feed=batch.kind == AI_GATEWAY,
                                      comment=_COMMENTS[batch.kind])
        if batch.rows:
            self.catalog.append_rows(table, pa.Table.from_pylist(batch.rows, schema=arrow_schema))

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        """Start the delivery thread; the system table is created by its first delivery."""
        self._add(SERVED_ENTITIES, SERVED_ENTITIES_KIND, [])
        if self._thread is not None and self._thread.is_alive():
            return
        self._halt.clear()
        self._thread = threading.Thread(target=self._loop, name="inference-delivery", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._halt.wait(self.delivery_seconds):
            with contextlib.suppress(DeliveryFailed):  # logged per table; the rows go with the next batch
                self._deliver()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the thread and deliver what is left (a failure is logged, the rows stay buffered)."""
        self._halt.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        with contextlib.suppress(DeliveryFailed):
            self._deliver()


_COMMENTS = {
    AI_GATEWAY: "AI Gateway inference table of a serving endpoint (local workspace).",
    LEGACY: "Inference table (auto capture) of a serving endpoint (local workspace).",
    SERVED_ENTITIES_KIND: "Served entities of the serving endpoints, one row per entity and active config.",
}
