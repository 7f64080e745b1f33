"""The SQL relations a monitor measures: one row per scored record of one serving version.

From the endpoint's AI Gateway payload table (Databricks, "Monitor served models using AI Gateway-enabled
inference tables", https://docs.databricks.com/aws/en/ai-gateway/inference-tables: ``request`` and
``response`` are the raw JSON; ``served_entity_id`` joins ``system.serving.served_entities`` for
the entity's version), each request's ``dataframe_records`` are exploded by position and paired
with ``predictions`` at the same position, which is how Model Serving answers a custom model
(``{"predictions": [...]}``, one per record). Only answered requests (status 200) carry
predictions; health figures read every request. Requests in another input format
(``dataframe_split``, ``inputs``) have no ``dataframe_records`` and are left out of the drift
figures (they still count in health).

Or from a processed table (``monitoring.source``): one row per prediction with its own
timestamp, version and prediction columns, as Lakehouse Monitoring's inference-log profile expects.

Every relation has the columns ``__ts`` (TIMESTAMP), ``__version`` (STRING), ``__request_key``
(STRING: what labels join on), ``__prediction``, and the watched columns under their own names;
numeric columns are DOUBLE and categorical ones STRING, so both sides of a comparison agree.
The text is Databricks SQL (``get_json_object``, ``json_array_length``, ``LATERAL explode``,
``sequence``: Databricks SQL reference, built-in functions); the local workspace runs it on DuckDB.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from shared.statements import literal, quote, quote_ident

SERVED_ENTITIES = "system.serving.served_entities"


@dataclass(frozen=True)
class Watched:
    name: str
    kind: str  # "numeric" | "categorical"


def typed(expr: str, kind: str) -> str:
    return f"CAST({expr} AS {'DOUBLE' if kind == 'numeric' else 'STRING'})"


def timestamp(epoch_seconds: float) -> str:
    """A TIMESTAMP literal in UTC (the session time zone of a SQL warehouse is UTC by default)."""
    return "TIMESTAMP " + literal(datetime.fromtimestamp(epoch_seconds, UTC).strftime("%Y-%m-%d %H:%M:%S"))


def _record(field: str) -> str:
    return f"get_json_object(p.request, concat({literal('$.dataframe_records[')}, r.pos, {literal('].' + field)}))"


@dataclass(frozen=True)
class Records:
    """A records relation whose version and time bounds go inside it, in the WHERE that reads the
    source rows: an engine that cannot push a filter through ``LATERAL explode`` (DuckDB, the
    local warehouse) would otherwise explode every request of the table to keep one window's."""

    head: str  # the relation's text up to its WHERE conditions
    tail: str  # what closes it
    ts: str  # the source rows' timestamp expression
    version: str  # and their version expression

    def sql(self, version: str | None = None, start: float | None = None, end: float | None = None) -> str:
        bounds = ([f"{self.version} = {literal(version)}"] if version is not None else []) + (
            [f"{self.ts} >= {timestamp(start)}"] if start is not None else []) + (
            [f"{self.ts} < {timestamp(end)}"] if end is not None else [])
        return self.head + "".join(f" AND {b}" for b in bounds) + self.tail


def _versions() -> str:
    return (f"(SELECT DISTINCT served_entity_id, CAST(entity_version AS STRING) AS entity_version "
            f"FROM {quote(SERVED_ENTITIES)})")


def payload_records(payload_table: str, columns: list[Watched], prediction_kind: str,
                    request_key: str = "client_request_id") -> Records:
    """Records of the payload table; ``request_key``: ``client_request_id`` or a record column."""
    n = "json_array_length(get_json_object(p.request, '$.dataframe_records'))"
    key = "p.client_request_id" if request_key == "client_request_id" else _record(request_key)
    cols = "".join(f", {typed(_record(c.name), c.kind)} AS {quote_ident(c.name)}" for c in columns)
    prediction = typed("get_json_object(p.response, concat('$.predictions[', r.pos, ']'))", prediction_kind)
    head = (f"(SELECT p.request_time AS __ts, se.entity_version AS __version, CAST({key} AS STRING) AS __request_key"
            f"{cols}, {prediction} AS __prediction "
            f"FROM {quote(payload_table)} AS p JOIN {_versions()} AS se ON se.served_entity_id = p.served_entity_id, "
            f"LATERAL explode(sequence(0, {n} - 1)) AS r(pos) "
            f"WHERE p.status_code = 200 AND {n} > 0")
    return Records(head, ")", "p.request_time", "se.entity_version")


def table_records(table: str, ts: str, version: str, prediction: str, request_key: str | None,
                  columns: list[Watched], prediction_kind: str) -> Records:
    """Records of a processed inference table (one row per prediction)."""
    key = f"CAST({quote_ident(request_key)} AS STRING)" if request_key else "CAST(NULL AS STRING)"
    cols = "".join(f", {typed(quote_ident(c.name), c.kind)} AS {quote_ident(c.name)}" for c in columns)
    head = (f"(SELECT {quote_ident(ts)} AS __ts, CAST({quote_ident(version)} AS STRING) AS __version, "
            f"{key} AS __request_key{cols}, {typed(quote_ident(prediction), prediction_kind)} AS __prediction "
            f"FROM {quote(table)} WHERE TRUE")
    return Records(head, ")", quote_ident(ts), f"CAST({quote_ident(version)} AS STRING)")


def window(records: Records, version: str, start: float, end: float, label: LabelJoin | None = None) -> str:
    """The records of ``version`` in [start, end), with the label joined when given."""
    where = (f"WHERE x.__version = {literal(version)} AND x.__ts >= {timestamp(start)} "
             f"AND x.__ts < {timestamp(end)}")
    inner = records.sql(version, start, end)
    if label is None:
        return f"(SELECT x.* FROM {inner} AS x {where})"
    return (f"(SELECT x.*, {typed('l.' + quote_ident(label.column), label.kind)} AS __label FROM {inner} AS x "
            f"JOIN {quote(label.table)} AS l ON CAST(l.{quote_ident(label.key)} AS STRING) = x.__request_key {where})")


@dataclass(frozen=True)
class LabelJoin:
    table: str
    key: str
    column: str
    kind: str


def baseline_table(table: str, columns: list[Watched], version_column: str | None, version: str,
                   prediction_column: str | None, label_column: str | None, prediction_kind: str) -> str:
    """The baseline table's rows (of ``version`` when it has a version column), shaped like a window."""
    cols = [f"{typed(quote_ident(c.name), c.kind)} AS {quote_ident(c.name)}" for c in columns]
    if prediction_column:
        cols.append(f"{typed(quote_ident(prediction_column), prediction_kind)} AS __prediction")
    if label_column:
        cols.append(f"{typed(quote_ident(label_column), prediction_kind)} AS __label")
    where = f" WHERE CAST({quote_ident(version_column)} AS STRING) = {literal(version)}" if version_column else ""
    return f"(SELECT {', '.join(cols)} FROM {quote(table)}{where})"


def health(payload_table: str, version: str, start: float, end: float) -> str:
    """Requests, server errors (5xx), client errors (4xx) and p95 model time of ``version`` in
    [start, end) (``execution_duration_ms`` is inference time only)."""
    return (f"SELECT count(*) AS requests, count_if(p.status_code >= 500) AS server_errors, "
            f"count_if(p.status_code >= 400 AND p.status_code < 500) AS client_errors, "
            f"percentile_cont(0.95) WITHIN GROUP (ORDER BY p.execution_duration_ms) AS p95_ms "
            f"FROM {quote(payload_table)} AS p JOIN {_versions()} AS se ON se.served_entity_id = p.served_entity_id "
            f"WHERE se.entity_version = {literal(version)} AND p.request_time >= {timestamp(start)} "
            f"AND p.request_time < {timestamp(end)}")


def row_counts(records: Records, version: str, since: float, window_seconds: int) -> str:
    """Rows of ``version`` per window since ``since``: where a first-window baseline can be found."""
    return (f"SELECT CAST(floor(unix_millis(x.__ts) / {window_seconds * 1000}) AS BIGINT) AS w, count(*) AS n "
            f"FROM {records.sql(version, since)} AS x "
            f"WHERE x.__version = {literal(version)} AND x.__ts >= {timestamp(since)} "
            f"GROUP BY 1 ORDER BY 1")
