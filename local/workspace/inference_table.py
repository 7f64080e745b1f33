"""Inference tables of the local workspace: one SQLite file, one ``<prefix>_payload`` table per endpoint.

Columns follow the AI Gateway inference table of Databricks (reference §1.7, from a real
``SHOW CREATE TABLE``): ``databricks_request_id, request_date, client_request_id, request_time,
status_code, sampling_fraction, execution_duration_ms, request, response, logging_error_codes,
served_entity_id, requester``. SQLite has no DATE/TIMESTAMP/ARRAY types, so ``request_date`` is an
ISO date (``YYYY-MM-DD``, UTC), ``request_time`` an ISO-8601 UTC timestamp with milliseconds
(``YYYY-MM-DDTHH:MM:SS.mmmZ``) and ``logging_error_codes`` a JSON array text.

``execution_duration_ms`` is model inference time only (reference §1.7), measured around the
scoring call. Delivery is synchronous here (Databricks delivers within about an hour).

A companion table ``served_entities`` stands in for ``system.serving.served_entities`` so that
``served_entity_id`` can be joined to the entity name and version. Its columns are a subset of
that system table as recalled, not verified [INF]: ``served_entity_id, endpoint_name, endpoint_id,
served_entity_name, entity_type, entity_name, entity_version, endpoint_config_version, change_time``.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

PAYLOAD_COLUMNS = (
    "databricks_request_id",
    "request_date",
    "client_request_id",
    "request_time",
    "status_code",
    "sampling_fraction",
    "execution_duration_ms",
    "request",
    "response",
    "logging_error_codes",
    "served_entity_id",
    "requester",
)

_PAYLOAD_DDL = """
CREATE TABLE IF NOT EXISTS {table} (
    databricks_request_id TEXT PRIMARY KEY,
    request_date TEXT NOT NULL,
    client_request_id TEXT,
    request_time TEXT NOT NULL,
    status_code INTEGER NOT NULL,
    sampling_fraction REAL NOT NULL,
    execution_duration_ms INTEGER,
    request TEXT,
    response TEXT,
    logging_error_codes TEXT NOT NULL,
    served_entity_id TEXT,
    requester TEXT
)
"""

_ENTITIES_DDL = """
CREATE TABLE IF NOT EXISTS served_entities (
    served_entity_id TEXT NOT NULL,
    endpoint_name TEXT NOT NULL,
    endpoint_id TEXT NOT NULL,
    served_entity_name TEXT NOT NULL,
    entity_type TEXT NOT NULL,
    entity_name TEXT,
    entity_version TEXT,
    endpoint_config_version INTEGER NOT NULL,
    change_time TEXT NOT NULL,
    PRIMARY KEY (served_entity_id, endpoint_config_version)
)
"""

# Payloads larger than this are logged as NULL with MAX_REQUEST/RESPONSE_SIZE_EXCEEDED (reference §1.7).
# The real limit is not documented in the reference; 1 MiB is a local choice [INF].
MAX_PAYLOAD_CHARS = 1024 * 1024


def payload_table_name(prefix: str) -> str:
    return f"{prefix}_payload"


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


@dataclass
class InferenceRecord:
    databricks_request_id: str
    client_request_id: str | None
    request_time: datetime
    status_code: int
    execution_duration_ms: int | None
    request: str | None
    response: str | None
    served_entity_id: str | None
    requester: str | None
    sampling_fraction: float = 1.0


class InferenceLog:
    """Writes inference rows; one lock serialises the writers of this process (SQLite allows one)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._known_tables: set[str] = set()
        with self._connect() as conn:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(_ENTITIES_DDL)

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        with closing(sqlite3.connect(self.path, timeout=30, isolation_level=None)) as conn:
            yield conn

    def write(self, table_prefix: str, record: InferenceRecord) -> None:
        table = payload_table_name(table_prefix)
        errors: list[str] = []
        request, response = record.request, record.response
        if request is not None and len(request) > MAX_PAYLOAD_CHARS:
            request = None
            errors.append("MAX_REQUEST_SIZE_EXCEEDED")
        if response is not None and len(response) > MAX_PAYLOAD_CHARS:
            response = None
            errors.append("MAX_RESPONSE_SIZE_EXCEEDED")
        when = record.request_time.astimezone(UTC)
        row = (
            record.databricks_request_id,
            when.date().isoformat(),
            record.client_request_id,
            when.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            record.status_code,
            record.sampling_fraction,
            record.execution_duration_ms,
            request,
            response,
            json.dumps(errors),
            record.served_entity_id,
            record.requester,
        )
        placeholders = ", ".join("?" for _ in PAYLOAD_COLUMNS)
        with self._lock, self._connect() as conn:
            if table not in self._known_tables:
                conn.execute(_PAYLOAD_DDL.format(table=quote_ident(table)))
                self._known_tables.add(table)
            conn.execute(
                f"INSERT INTO {quote_ident(table)} ({', '.join(PAYLOAD_COLUMNS)}) VALUES ({placeholders})", row
            )

    def record_served_entities(self, rows: list[dict[str, Any]]) -> None:
        """Add the served entities of a config that became active (served_entities table)."""
        if not rows:
            return
        with self._lock, self._connect() as conn:
            conn.executemany(
                "INSERT OR IGNORE INTO served_entities (served_entity_id, endpoint_name, endpoint_id,"
                " served_entity_name, entity_type, entity_name, entity_version, endpoint_config_version,"
                " change_time) VALUES (:served_entity_id, :endpoint_name, :endpoint_id, :served_entity_name,"
                " :entity_type, :entity_name, :entity_version, :endpoint_config_version, :change_time)",
                rows,
            )
