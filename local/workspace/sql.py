"""SQL Statement Execution API of the local workspace, run on DuckDB over the local Delta tables.

Follows ``w.statement_execution`` in databricks-sdk 0.156.0
(https://github.com/databricks/databricks-sdk-py) and Databricks,
"Statement Execution API" (https://docs.databricks.com/api/workspace/statementexecution) and "SQL language
reference" (https://docs.databricks.com/aws/en/sql/language-manual/):

- ``POST /api/2.0/sql/statements``: ``statement`` and ``warehouse_id`` are required (400
  BAD_REQUEST [3P]); ``wait_timeout`` is ``"0s"`` or ``"5s"``..``"50s"`` (default ``"10s"``,
  otherwise 400 INVALID_PARAMETER_VALUE with the recorded text [3P]); ``on_wait_timeout``
  CONTINUE or CANCEL; ``disposition`` INLINE only, with ``format`` JSON_ARRAY (the recorded 400
  otherwise [3P]; EXTERNAL_LINKS needs presigned storage URLs and is not emulated); named
  ``:param`` markers from ``parameters: [{name, value, type}]`` (no type: STRING; no value: NULL);
  ``row_limit`` and ``byte_limit`` truncate the result (``manifest.truncated``).
- ``"0s"`` answers PENDING with only ``statement_id`` and ``status`` at once; otherwise the call
  waits up to the timeout, then answers the result, or PENDING/RUNNING (CONTINUE), or CANCELED
  (CANCEL). The fault ``statement_pending_seconds`` keeps every statement PENDING that long
  first, as a starting warehouse does. ``GET /api/2.0/sql/statements/{id}`` polls; ``POST .../cancel`` cancels (``{}``).
- An execution error is HTTP 200 with ``state: FAILED`` and ``status.error`` ``{error_code:
  BAD_REQUEST, message: "[ERROR_CLASS] ... SQLSTATE: xxxxx"}`` plus ``status.sql_state``, and no
  manifest or result (a recorded API exchange). The error classes are Databricks' (TABLE_OR_VIEW_NOT_FOUND,
  UNRESOLVED_COLUMN, PARSE_SYNTAX_ERROR, UNBOUND_SQL_PARAMETER, DELTA_MISSING_CHANGE_DATA ...).
- Results: ``manifest.schema.columns`` with ``type_name`` (BIGINT is LONG, ...), ``type_text`` in
  upper case; every value of ``data_array`` is a string or null: booleans ``"true"``, doubles as
  Spark prints them (``"1.0"``, ``"NaN"``), timestamps ``"2024-01-02T03:04:05.123Z"`` (ms,
  truncated; TIMESTAMP_NTZ without the ``Z`` [INF]), binary base64, arrays/maps/structs JSON
  text with string leaves. Chunks hold at most 20 000 rows or about 8 MiB of JSON [INF: sizes
  not documented]; chunk 0 is inline; ``next_chunk_index`` / ``next_chunk_internal_link`` chain
  them; ``GET .../result/chunks/{n}`` answers any chunk, in any order. An out-of-range index is
  400 INVALID_PARAMETER_VALUE "The chunk_index N is out of bounds." [3P]; a chunk of a failed or
  canceled statement 404 NOT_FOUND [3P]. A statement is executed once: its Arrow result is kept
  and sliced per chunk.
- Lifetimes: results are CLOSED one hour after success, statements are forgotten 12 hours after
  they ended (404 NOT_FOUND for a well-formed unknown id, 400 for a non-UUID id [3P]). At most
  500 statements and about 1 GiB of results are kept; the oldest results are CLOSED first.

The dialect is DuckDB's, with what Databricks SQL needs for the app translated: backquoted
identifiers, double-quoted string literals, backslash escapes, ``:name`` markers, three-part
Unity Catalog names (each table registered as an Arrow dataset of its Delta snapshot; ``VERSION
AS OF n`` reads an older one), ``table_changes('cat.sch.tbl', start[, end])`` (the Delta change
data feed; the name inside the string is a multi-part identifier, backquoted parts allowed),
``DESCRIBE HISTORY t [LIMIT n]``, ``DESCRIBE [TABLE] t``, ``SHOW TBLPROPERTIES t`` and ``ALTER
TABLE t SET|UNSET TBLPROPERTIES (...)`` (real Delta metadata commits). Other writes and
DDL answer FAILED (``UNSUPPORTED_FEATURE``); the DuckDB connection has no file-system access.

Functions and literals whose DuckDB namesake means something else, or that DuckDB lacks, are
translated to mean what Databricks documents (each page named is in the Databricks SQL language
reference). Calls are renamed token by token (``_FUNCTIONS``) to a DuckDB function or to a macro
created on the statement's connection (``_MACROS``); the session time zone is UTC, Databricks
SQL's default ``TIMEZONE``:

- ``get_json_object(expr, path)`` ("get_json_object function"): DuckDB ``json_extract_string``,
  and NULL, not an error, when ``expr`` is not valid JSON; a path that matches nothing is NULL.
  Paths are ``$.key``, ``$.key[n]`` and their combinations; wildcards (``[*]``) are not emulated.
- ``json_array_length(expr)`` ("json_array_length function"): an INT, NULL unless ``expr`` is a
  valid JSON array (DuckDB's answers 0 for an object and fails on invalid JSON).
- ``sequence(start, stop[, step])`` ("sequence function"): both ends included; the default step
  is 1, or -1 when ``start > stop``, so ``sequence(0, -1)`` is ``[0, -1]``; a step that moves
  away from ``stop`` fails ``ILLEGAL_SEQUENCE_BOUNDARIES`` [INF: SQLSTATE]. Integers only.
- ``explode(array)`` ("explode table-valued generator function"): DuckDB ``unnest``, as a
  generator in FROM (``FROM t, LATERAL explode(t.a) AS r(x)``, correlated) or in SELECT; an empty
  or NULL array gives no row. Name its column (``AS r(x)``): the default name is DuckDB's
  (``unnest``), not ``col``.
- ``array(expr, ...)`` ("array function"): DuckDB ``list_value`` (``ARRAY(`` opens a subquery
  there).
- ``concat(expr, ...)`` ("concat function"): NULL when any argument is NULL (DuckDB's skips NULLs);
  ``a || b || ...``, numbers as their text; at most ``_CONCAT_ARGS`` arguments.
- ``ln(expr)`` ("ln function"): NULL for ``expr <= 0`` (DuckDB: -inf or NaN).
- ``unix_millis(ts)`` ("unix_millis function"): milliseconds since the epoch, a BIGINT, higher
  precision truncated (toward the past, as Spark's floor division; DuckDB's ``epoch_ms`` rounds).
- ``TIMESTAMP '...'`` literals and ``CAST(x AS TIMESTAMP)`` / ``x::TIMESTAMP`` ("TIMESTAMP type",
  "TIMESTAMP_NTZ type"): a Databricks TIMESTAMP is an instant, DuckDB's ``TIMESTAMPTZ``; a literal
  without an offset is in the session time zone (UTC); ``TIMESTAMP_NTZ`` is DuckDB's ``TIMESTAMP``.
- A 128-bit integer result (DuckDB's ``sum`` and ``count_if`` of integers) is a BIGINT ("sum
  aggregate function", "count_if aggregate function": BIGINT); one past its range fails
  ``ARITHMETIC_OVERFLOW``, as under ANSI mode.

DuckDB's own functions already mean what Databricks' do for ``CAST(x AS DOUBLE|STRING)``,
``coalesce``, ``abs``, ``sqrt`` (NaN below 0), ``power``, ``greatest`` and ``least`` (NULLs
skipped), ``stddev_pop``, ``avg``, ``min``, ``max``, ``count(DISTINCT ...)``, ``percentile_cont(p)
WITHIN GROUP (ORDER BY x)`` (exact, linear interpolation), the window functions ``SUM(x) OVER
(ORDER BY v ROWS UNBOUNDED PRECEDING)`` and ``LEAD``, ``WITH``, ``UNION ALL`` and ``CASE``.
Not emulated: ANSI mode's error on a division by zero (``DIVIDE_BY_ZERO`` on Databricks; DuckDB
answers NULL or infinity), and the element type of ``sequence`` (BIGINT here, the arguments'
type on Databricks).
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import re
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from databricks.sdk.service import sql as sdk

from .catalog import DeltaSqlError, UnityCatalog, not_found_sql, quoted
from .errors import ApiError, bad_request, invalid_parameter
from .faults import Faults
from .web import Request, Response, Router

log = logging.getLogger("local.workspace.sql")

CHUNK_ROWS = 20_000
CHUNK_BYTES = 8 * 1024 * 1024
MAX_STATEMENT_BYTES = 16 * 1024 * 1024
MAX_STATEMENTS = 500
RESULT_BYTES_CAP = 1024 * 1024 * 1024
RESULT_TTL_SECONDS = 3600.0
FORGET_AFTER_SECONDS = 12 * 3600.0
WAREHOUSE_SLOTS = 4

PENDING, RUNNING, SUCCEEDED = "PENDING", "RUNNING", "SUCCEEDED"
FAILED, CANCELED, CLOSED = "FAILED", "CANCELED", "CLOSED"
_TERMINAL = {SUCCEEDED, FAILED, CANCELED, CLOSED}
_WAIT = re.compile(r"^(\d+)s$")
_WAREHOUSE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_WRITES = {"INSERT", "UPDATE", "DELETE", "MERGE", "CREATE", "DROP", "TRUNCATE", "REPLACE", "COPY", "ATTACH",
           "DETACH", "INSTALL", "LOAD", "PRAGMA", "SET", "RESET", "EXPORT", "IMPORT", "USE", "CALL", "VACUUM",
           "OPTIMIZE", "RESTORE", "GRANT", "REVOKE", "COMMENT", "CHECKPOINT", "BEGIN", "COMMIT", "ROLLBACK"}


# ---------------------------------------------------------------------------------- tokens
_TOKEN = re.compile(
    r"""(?P<ws>\s+)
    |(?P<comment>--[^\n]*|/\*.*?\*/)
    |(?P<squote>'(?:[^'\\]|\\.|'')*')
    |(?P<dquote>"(?:[^"\\]|\\.|"")*")
    |(?P<bquote>`(?:[^`]|``)*`)
    |(?P<cast>::)
    |(?P<param>:[A-Za-z_][A-Za-z0-9_]*)
    |(?P<word>[A-Za-z_][A-Za-z0-9_$]*)
    |(?P<number>\d+(?:\.\d*)?(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?)
    |(?P<op>.)""",
    re.S | re.X,
)
# Databricks functions whose DuckDB namesake differs or is missing -> the DuckDB function or macro
# that means the same (see the module docstring; the macros are in _MACROS).
_FUNCTIONS = {
    "GET_JSON_OBJECT": "__dbx_get_json_object",
    "JSON_ARRAY_LENGTH": "__dbx_json_array_length",
    "SEQUENCE": "__dbx_sequence",
    "EXPLODE": "unnest",
    "CONCAT": "__dbx_concat",
    "LN": "__dbx_ln",
    "UNIX_MILLIS": "__dbx_unix_millis",
    "ARRAY": "list_value",
}
_CONCAT_ARGS = 32
# Created on a statement's connection when the statement calls them (a few ms each).
_MACROS = {
    # The JSON functions fail on invalid JSON and DuckDB may fold a CASE branch of constants before
    # its condition: invalid JSON becomes NULL before it reaches them.
    "__dbx_get_json_object": "(j, p) AS json_extract_string(CASE WHEN json_valid(j) THEN j END, p)",
    "__dbx_json_array_length": "(j) AS CAST(CASE WHEN json_type(CASE WHEN json_valid(j) THEN j END) = 'ARRAY'"
    " THEN json_array_length(CASE WHEN json_valid(j) THEN j END) END AS INTEGER)",
    "__dbx_sequence": "(a, b) AS generate_series(a, b, CASE WHEN a <= b THEN 1 ELSE -1 END),"
    " (a, b, s) AS CASE WHEN (s > 0 AND a <= b) OR (s < 0 AND a >= b) OR (s = 0 AND a = b)"
    " THEN CASE WHEN a = b THEN [CAST(a AS BIGINT)] ELSE generate_series(a, b, s) END"
    " ELSE error('[ILLEGAL_SEQUENCE_BOUNDARIES] Illegal sequence boundaries: ' || a || ' to ' || b || ' by ' || s)"
    " END",
    "__dbx_concat": "() AS '', " + ", ".join(
        "(" + ", ".join(f"a{k}" for k in range(n)) + ") AS " + (" || ".join(f"a{k}" for k in range(n)) if n > 1
                                                                else "a0 || ''")
        for n in range(1, _CONCAT_ARGS + 1)),
    "__dbx_ln": "(x) AS CASE WHEN x > 0 THEN ln(x) END",
    # Exact floor division of the microseconds (DuckDB's epoch_ms rounds to the nearest millisecond).
    "__dbx_unix_millis": "(ts) AS (epoch_us(ts) - (epoch_us(ts) % 1000 + 1000) % 1000) // 1000",
}
# Databricks type names in a cast or a typed literal -> DuckDB's (TIMESTAMP is an instant there).
_TYPES = {"TIMESTAMP": "TIMESTAMPTZ", "TIMESTAMP_LTZ": "TIMESTAMPTZ", "TIMESTAMP_NTZ": "TIMESTAMP"}
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "0": "\0", "b": "\b", "Z": "\x1a", "%": "\\%", "_": "\\_"}


@dataclass
class Tok:
    kind: str
    text: str

    @property
    def upper(self) -> str:
        return self.text.upper() if self.kind == "word" else ""

    @property
    def significant(self) -> bool:
        return self.kind not in ("ws", "comment")

    @property
    def ident(self) -> str | None:
        """The identifier this token names (a bare word or a backquoted name), else None."""
        if self.kind == "word":
            return self.text
        if self.kind == "bquote":
            return self.text[1:-1].replace("``", "`")
        return None


def tokenize(text: str) -> list[Tok]:
    return [Tok(m.lastgroup or "op", m.group()) for m in _TOKEN.finditer(text)]


def string_value(tok: Tok) -> str:
    """The value of a Spark SQL string literal ('...' or "..."), backslash escapes decoded."""
    body, quote = tok.text[1:-1], tok.text[0]
    out, i = [], 0
    while i < len(body):
        ch = body[i]
        if ch == "\\" and i + 1 < len(body):
            nxt = body[i + 1]
            out.append(_ESCAPES.get(nxt, nxt))
            i += 2
        elif ch == quote and i + 1 < len(body) and body[i + 1] == quote:
            out.append(quote)
            i += 2
        else:
            out.append(ch)
            i += 1
    return "".join(out)


def duck_string(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def duck_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


# ---------------------------------------------------------------------------------- results
def sql_type(t: Any) -> tuple[str, str, int | None, int | None]:
    """(type_name, type_text, precision, scale) of an Arrow result column, in Databricks' terms."""
    import pyarrow as pa

    if pa.types.is_dictionary(t):
        return sql_type(t.value_type)
    if pa.types.is_null(t):
        return "NULL", "VOID", None, None
    if pa.types.is_boolean(t):
        return "BOOLEAN", "BOOLEAN", None, None
    simple = [(pa.types.is_int8, "BYTE", "TINYINT"), (pa.types.is_int16, "SHORT", "SMALLINT"),
              (pa.types.is_uint8, "SHORT", "SMALLINT"), (pa.types.is_int32, "INT", "INT"),
              (pa.types.is_uint16, "INT", "INT"), (pa.types.is_int64, "LONG", "BIGINT"),
              (pa.types.is_uint32, "LONG", "BIGINT"), (pa.types.is_float16, "FLOAT", "FLOAT"),
              (pa.types.is_float32, "FLOAT", "FLOAT"), (pa.types.is_float64, "DOUBLE", "DOUBLE"),
              (pa.types.is_date, "DATE", "DATE")]
    for test, name, text in simple:
        if test(t):
            return name, text, None, None
    if pa.types.is_uint64(t):
        return "DECIMAL", "DECIMAL(20,0)", 20, 0
    if pa.types.is_decimal(t):
        return "DECIMAL", f"DECIMAL({t.precision},{t.scale})", t.precision, t.scale
    if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t):
        return "STRING", "STRING", None, None
    if pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_binary_view(t) or \
            pa.types.is_fixed_size_binary(t):
        return "BINARY", "BINARY", None, None
    if pa.types.is_timestamp(t):
        return "TIMESTAMP", "TIMESTAMP" if t.tz else "TIMESTAMP_NTZ", None, None
    if pa.types.is_interval(t) or pa.types.is_duration(t):
        return "INTERVAL", "INTERVAL", None, None
    if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t) or \
            pa.types.is_list_view(t):
        return "ARRAY", f"ARRAY<{sql_type(t.value_type)[1]}>", None, None
    if pa.types.is_map(t):
        return "MAP", f"MAP<{sql_type(t.key_type)[1]}, {sql_type(t.item_type)[1]}>", None, None
    if pa.types.is_struct(t):
        return "STRUCT", "STRUCT<" + ", ".join(f"{f.name}: {sql_type(f.type)[1]}" for f in t) + ">", None, None
    return "STRING", "STRING", None, None


def _leaf(v: Any) -> Any:
    """JSON text of nested values keeps string leaves (a recorded API exchange)."""
    if v is None:
        return None
    if isinstance(v, dict):
        return {str(k): _leaf(x) for k, x in v.items()}
    if isinstance(v, list) and all(isinstance(x, tuple) and len(x) == 2 for x in v) and v:
        return {str(k): _leaf(x) for k, x in v}  # an Arrow map comes back as (key, value) pairs
    if isinstance(v, (list, tuple)):
        return [_leaf(x) for x in v]
    return _scalar_text(v)


def _scalar_text(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return _spark_double(v)
    if isinstance(v, (bytes, bytearray)):
        return base64.b64encode(bytes(v)).decode("ascii")
    if isinstance(v, datetime):
        if v.tzinfo is not None:
            from datetime import UTC

            return v.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{v.microsecond // 1000:03d}Z"
        return v.strftime("%Y-%m-%dT%H:%M:%S.") + f"{v.microsecond // 1000:03d}"
    if isinstance(v, date):
        return v.isoformat()
    return str(v)


def _spark_double(v: float) -> str:
    if v != v:
        return "NaN"
    if v in (float("inf"), float("-inf")):
        return "Infinity" if v > 0 else "-Infinity"
    text = repr(v)
    if "e" in text:
        mant, exp = text.split("e")
        mant = mant if "." in mant else mant + ".0"
        return f"{mant}E{int(exp)}"
    return text


def text_column(col: Any) -> Any:
    """An Arrow column as the strings Databricks sends in ``data_array`` (nulls stay null)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    t = col.type
    if pa.types.is_dictionary(t):
        col = pc.cast(col, t.value_type)
        t = col.type
    if pa.types.is_null(t):
        return pa.nulls(len(col), pa.string())
    if pa.types.is_boolean(t) or pa.types.is_integer(t) or pa.types.is_decimal(t) or pa.types.is_date(t) or \
            pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t):
        return pc.cast(col, pa.string())
    if pa.types.is_floating(t):
        s = pc.cast(pc.cast(col, pa.float64()), pa.string())
        s = s.combine_chunks() if isinstance(s, pa.ChunkedArray) else s
        odd = pc.fill_null(pc.invert(pc.match_substring_regex(s, r"^-?[0-9]+\.[0-9]+$")), False)
        where = pc.indices_nonzero(odd)
        if len(where) == 0:
            return s
        fix = pc.take(s, where)  # only the few values Arrow and Spark print differently
        fix = pc.replace_substring_regex(fix, r"^(-?\d+)$", r"\1.0")  # Spark prints 1.0 where Arrow prints 1
        fix = pc.replace_substring_regex(fix, r"^(-?\d+)e", r"\1.0e")
        fix = pc.replace_substring_regex(fix, r"e\+?(-?)0*(\d)", r"E\1\2")  # 1e+20 -> 1.0E20
        fix = pc.replace_substring_regex(fix, r"^nan$", "NaN")
        fix = pc.replace_substring_regex(fix, r"^(-?)inf$", r"\1Infinity")
        return pc.replace_with_mask(s, odd, fix)
    if pa.types.is_timestamp(t):
        # Through the UTC instant as a naive millisecond timestamp: "YYYY-MM-DD HH:MM:SS.fff" -> ISO 8601.
        naive = pc.cast(pc.cast(col, pa.timestamp("ms", "UTC" if t.tz else None), safe=False), pa.timestamp("ms"))
        s = pc.replace_substring(pc.cast(naive, pa.string()), " ", "T", max_replacements=1)
        return pc.binary_join_element_wise(s, pa.scalar("Z"), "") if t.tz else s
    values = col.to_pylist()
    if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_map(t) or pa.types.is_struct(t) or \
            pa.types.is_fixed_size_list(t):
        texts = [None if v is None else json.dumps(_leaf(v), separators=(",", ":")) for v in values]
    else:
        texts = [None if v is None else _scalar_text(v) for v in values]
    return pa.array(texts, pa.string())


@dataclass
class Result:
    """A finished statement's result, already in text form, with its chunk boundaries."""

    columns: list[sdk.ColumnInfo]
    data: Any  # pyarrow.Table of string columns
    bounds: list[tuple[int, int]]  # [start, end) of each chunk
    truncated: bool

    @property
    def row_count(self) -> int:
        return self.data.num_rows if self.data is not None else 0

    @property
    def nbytes(self) -> int:
        return self.data.nbytes if self.data is not None else 0


def build_result(table: Any, row_limit: int | None = None, byte_limit: int | None = None) -> Result:
    """Convert once, measure each row's JSON size, cut chunks at CHUNK_ROWS rows or CHUNK_BYTES bytes."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    columns = []
    for i, f in enumerate(table.schema):
        name, text, precision, scale = sql_type(f.type)
        columns.append(sdk.ColumnInfo(name=f.name, position=i, type_name=sdk.ColumnInfoTypeName(name),
                                      type_text=text, type_precision=precision, type_scale=scale))
    truncated = False
    if row_limit is not None and table.num_rows > row_limit:
        table, truncated = table.slice(0, row_limit), True
    texts = pa.table([text_column(c) for c in table.columns], names=[f"c{i}" for i in range(table.num_columns)])
    n = texts.num_rows
    if n == 0 or texts.num_columns == 0:
        return Result(columns, texts if texts.num_columns else None, [], truncated)
    sizes = np.full(n, 2 + texts.num_columns, dtype=np.int64)  # brackets, commas / row separator
    for col in texts.columns:
        lengths = pc.fill_null(pc.add(pc.binary_length(col), 2), 4)  # "..." or null
        sizes += lengths.to_numpy(zero_copy_only=False).astype(np.int64)
    cumulative = np.concatenate(([0], np.cumsum(sizes)))
    if byte_limit is not None and cumulative[-1] > byte_limit:
        keep = int(np.searchsorted(cumulative, byte_limit, side="right")) - 1
        texts, n, truncated = texts.slice(0, keep), keep, True
        cumulative = cumulative[: keep + 1]
    bounds, start = [], 0
    while start < n:
        by_bytes = int(np.searchsorted(cumulative, cumulative[start] + CHUNK_BYTES, side="right")) - 1
        end = min(start + CHUNK_ROWS, n, max(by_bytes, start + 1))
        bounds.append((start, end))
        start = end
    return Result(columns, texts, bounds, truncated)


def chunk_rows(result: Result, index: int) -> list[list[str | None]]:
    start, end = result.bounds[index]
    part = result.data.slice(start, end - start)
    cols = [c.to_pylist() for c in part.columns]
    return [list(row) for row in zip(*cols, strict=True)]


# ---------------------------------------------------------------------------------- engine
@dataclass
class Plan:
    """A statement translated for DuckDB, or a statement the catalog answers itself."""

    sql: str | None = None
    views: dict[str, Callable[[], Any]] = field(default_factory=dict)  # view name -> Arrow data loader
    names: dict[str, str] = field(default_factory=dict)  # view name -> UC full name (for messages)
    params: set[str] = field(default_factory=set)
    macros: set[str] = field(default_factory=set)  # names in _MACROS the statement calls
    direct: Callable[[], Any] | None = None  # returns an Arrow table


class SqlEngine:
    """Translates Databricks SQL for DuckDB over the Unity Catalog tables and runs it."""

    def __init__(self, catalog: UnityCatalog):
        self.catalog = catalog

    # ---------------------------------------------------------------- names
    def _full_name(self, parts: list[str], default_catalog: str | None, default_schema: str | None) -> str | None:
        if len(parts) == 3:
            return ".".join(p.lower() for p in parts)
        if len(parts) == 2 and default_catalog:
            return f"{default_catalog}.{parts[0]}".lower() + "." + parts[1].lower()
        if len(parts) == 1 and default_catalog and default_schema:
            return f"{default_catalog}.{default_schema}.{parts[0]}".lower()
        return None

    def _require(self, parts: list[str], cat: str | None, sch: str | None) -> str:
        full = self._full_name(parts, cat, sch)
        if full is None or not self.catalog.exists(full):
            raise not_found_sql(full or ".".join(parts))
        return full

    @staticmethod
    def _dotted(toks: list[Tok], i: int) -> tuple[list[str], int]:
        """Identifier parts of a dotted name starting at ``toks[i]``; returns (parts, index after)."""
        parts = [toks[i].ident or ""]
        j = i + 1
        while j + 1 < len(toks) and toks[j].text == "." and toks[j + 1].ident is not None:
            parts.append(toks[j + 1].ident or "")
            j += 2
        return parts, j

    # ---------------------------------------------------------------- planning
    def plan(self, text: str, catalog: str | None = None, schema: str | None = None) -> Plan:
        toks = [t for t in tokenize(text) if t.kind != "comment"]
        sig = [t for t in toks if t.significant]
        while sig and sig[-1].text == ";":
            sig.pop()
        words = [t.upper for t in sig[:4]]
        if not sig:
            raise DeltaSqlError("PARSE_EMPTY_STATEMENT", "Syntax error, unexpected empty statement.", "42617")
        if any(t.text == ";" for t in sig):  # one statement per request
            raise DeltaSqlError("PARSE_SYNTAX_ERROR", "Syntax error at or near ';': the Statement Execution API runs "
                                "one statement per request.", "42601")
        if words[:2] == ["DESCRIBE", "HISTORY"]:
            return self._describe_history(sig[2:], catalog, schema)
        if words[:1] in (["DESCRIBE"], ["DESC"]):
            return self._describe_table(sig[1:], catalog, schema)
        if words[:2] == ["SHOW", "TBLPROPERTIES"]:
            full = self._require(self._dotted(sig, 2)[0], catalog, schema)
            return Plan(direct=lambda: self._properties_table(full))
        if words[:2] == ["ALTER", "TABLE"]:
            return self._alter(sig[2:], catalog, schema)
        if words[0] in _WRITES:
            raise DeltaSqlError(
                "UNSUPPORTED_FEATURE",
                f"{words[0]} is not supported by the local workspace: it runs queries, DESCRIBE HISTORY, DESCRIBE "
                "TABLE, SHOW TBLPROPERTIES and ALTER TABLE ... SET/UNSET TBLPROPERTIES.", "0A000")
        return self._query(toks, catalog, schema)

    def _query(self, toks: list[Tok], catalog: str | None, schema: str | None) -> Plan:
        plan = Plan()
        by_name: dict[tuple[str, int | None], str] = {}
        known_catalogs = self.catalog.catalogs()

        def view_for(full: str, version: int | None = None) -> str:
            key = (full, version)
            if key not in by_name:
                view = f"__uc_{len(by_name)}"
                by_name[key] = view
                plan.views[view] = lambda f=full, v=version: self._snapshot(f, v)
                plan.names[view] = full
            return by_name[key]

        # Names defined by WITH shadow tables of the default schema, as in Spark.
        sig = [t for t in toks if t.significant]
        ctes = {sig[k].ident.lower() for k in range(1, len(sig) - 2)
                if sig[k].ident and sig[k - 1].text.upper() in ("WITH", ",", "RECURSIVE")
                and sig[k + 1].upper == "AS" and sig[k + 2].text == "("}
        out: list[str] = []
        prev = ""  # the previous significant token, upper-cased
        opened: list[str] = []  # for each open parenthesis, the token before it (CAST, a function...)
        i = 0
        while i < len(toks):
            tok = toks[i]
            if tok.kind == "word" and tok.upper in _TYPES and _names_a_type(toks, i, prev, opened):
                out.append(_TYPES[tok.upper])
                prev = "TYPE"
                i += 1
                continue
            if tok.kind == "word" and prev != "." and tok.upper in _FUNCTIONS and _next_sig(toks, i + 1)[1] == "(":
                out.append(_FUNCTIONS[tok.upper])
                if _FUNCTIONS[tok.upper] in _MACROS:
                    plan.macros.add(_FUNCTIONS[tok.upper])
                prev = tok.upper
                i += 1
                continue
            if tok.kind in ("squote", "dquote"):
                out.append(duck_string(string_value(tok)))
            elif tok.kind == "param":
                plan.params.add(tok.text[1:])
                out.append("$" + tok.text[1:])
            elif tok.kind == "word" and tok.upper == "TABLE_CHANGES" and _next_sig(toks, i + 1)[1] == "(":
                view, i = self._table_changes(toks, _next_sig(toks, i + 1)[0], catalog, schema, plan)
                out.append(view)
                prev = ")"
                continue
            elif tok.ident is not None and prev != ".":
                parts, j = self._dotted(toks, i)
                after = _next_sig(toks, j)[1]
                is_table = after != "(" and not (len(parts) == 1 and parts[0].lower() in ctes) and (
                    (len(parts) == 3 and (prev in ("FROM", "JOIN") or parts[0].lower() in known_catalogs))
                    or (len(parts) < 3 and prev in ("FROM", "JOIN")))
                full = self._full_name(parts, catalog, schema) if is_table else None
                if is_table and len(parts) < 3 and (full is None or not self.catalog.exists(full)):
                    full = None  # a CTE or a DuckDB name: leave it to the engine
                elif is_table and (full is None or not self.catalog.exists(full)):
                    raise not_found_sql(full or ".".join(parts))
                if full is not None:
                    version, j = _version_as_of(toks, j)
                    out.append(view_for(full, version))
                    prev = "NAME"
                    i = j
                    continue
                out.append("".join(_ident_text(t) for t in toks[i:j]))
                prev = tok.upper if len(parts) == 1 and tok.kind == "word" else "NAME"
                i = j
                continue
            elif tok.kind == "bquote":
                out.append(duck_ident(tok.ident or ""))
            else:
                out.append(tok.text)
            if tok.text == "(":
                opened.append(prev)
            elif tok.text == ")" and opened:
                opened.pop()
            if tok.significant:
                prev = tok.upper or tok.text
            i += 1
        plan.sql = "".join(out)
        return plan

    def _snapshot(self, full: str, version: int | None) -> Any:
        """The table as an Arrow dataset, at ``version`` for ``VERSION AS OF`` (Delta time travel)."""
        if version is not None:
            latest = self.catalog.version(full)
            if not 0 <= version <= latest:
                raise DeltaSqlError("DELTA_VERSION_NOT_FOUND", f"Cannot time travel Delta table to version {version}. "
                                    f"Available versions: [0, {latest}].", "22003")
        return self.catalog.dataset(full, version)

    def _table_changes(self, toks: list[Tok], open_at: int, catalog: str | None, schema: str | None,
                       plan: Plan) -> tuple[str, int]:
        """``table_changes('cat.sch.tbl', start[, end])``; returns (view name, index after the call)."""
        args: list[Any] = []
        i = open_at + 1
        while i < len(toks) and toks[i].text != ")":
            t = toks[i]
            if t.kind in ("squote", "dquote"):
                args.append(string_value(t))
            elif t.kind == "number":
                args.append(int(float(t.text)))
            elif t.significant and t.text != ",":
                raise DeltaSqlError("INVALID_SQL_SYNTAX", "table_changes takes a table name as a string literal "
                                    "and versions or timestamps as literals.", "42000")
            i += 1
        if not 2 <= len(args) <= 3 or not isinstance(args[0], str):
            raise DeltaSqlError(
                "WRONG_NUM_ARGS.WITHOUT_SUGGESTION",
                f"The `table_changes` requires 2 or 3 parameters but the actual number is {len(args)}.", "42605")
        # The name is parsed as Spark parses a multi-part identifier: backquoted parts may hold anything.
        name_toks = [t for t in tokenize(args[0]) if t.significant]
        parts, end = self._dotted(name_toks, 0) if name_toks and name_toks[0].ident is not None else ([], 0)
        if not parts or end != len(name_toks):
            raise DeltaSqlError("INVALID_IDENTIFIER", f"The identifier {args[0]} is invalid.", "42602")
        full = self._require(parts, catalog, schema)
        view = f"__cdf_{len(plan.views)}"
        rng = args[1:]
        plan.views[view] = lambda: self.catalog.changes(full, *rng)
        plan.names[view] = full
        return view, i + 1

    def _describe_history(self, sig: list[Tok], catalog: str | None, schema: str | None) -> Plan:
        parts, j = self._dotted(sig, 0) if sig and sig[0].ident else ([], 0)
        if not parts:
            raise DeltaSqlError("PARSE_SYNTAX_ERROR", "Syntax error at or near end of input.", "42601")
        full = self._require(parts, catalog, schema)
        limit = None
        if j < len(sig) and sig[j].upper == "LIMIT" and j + 1 < len(sig) and sig[j + 1].kind == "number":
            limit = int(sig[j + 1].text)
        elif j < len(sig):
            raise DeltaSqlError("PARSE_SYNTAX_ERROR", f"Syntax error at or near '{sig[j].text}'.", "42601")
        return Plan(direct=lambda: self._history_table(full, limit))

    def _describe_table(self, sig: list[Tok], catalog: str | None, schema: str | None) -> Plan:
        while sig and sig[0].upper in ("TABLE", "EXTENDED", "FORMATTED"):
            sig = sig[1:]
        if not sig or sig[0].ident is None:
            raise DeltaSqlError("PARSE_SYNTAX_ERROR", "Syntax error at or near end of input.", "42601")
        full = self._require(self._dotted(sig, 0)[0], catalog, schema)
        return Plan(direct=lambda: self._columns_table(full))

    def _alter(self, sig: list[Tok], catalog: str | None, schema: str | None) -> Plan:
        if not sig or sig[0].ident is None:
            raise DeltaSqlError("PARSE_SYNTAX_ERROR", "Syntax error at or near end of input.", "42601")
        parts, j = self._dotted(sig, 0)
        full = self._require(parts, catalog, schema)
        action = [t.upper for t in sig[j:j + 2]]
        if action not in (["SET", "TBLPROPERTIES"], ["UNSET", "TBLPROPERTIES"]):
            raise DeltaSqlError("UNSUPPORTED_FEATURE", "The local workspace supports ALTER TABLE ... SET TBLPROPERTIES "
                                "and UNSET TBLPROPERTIES only.", "0A000")
        rest = sig[j + 2:]
        if action[0] == "UNSET" and [t.upper for t in rest[:2]] == ["IF", "EXISTS"]:
            rest = rest[2:]
        items = _property_list(rest, with_values=action[0] == "SET")
        if action[0] == "SET":
            return Plan(direct=lambda: self._empty(self.catalog.set_properties(full, dict(items))))
        return Plan(direct=lambda: self._empty(self.catalog.set_properties(full, {}, unset=[k for k, _ in items])))

    # ---------------------------------------------------------------- answers from the catalog
    @staticmethod
    def _empty(_: Any = None) -> Any:
        import pyarrow as pa

        return pa.table({})

    def _history_table(self, full: str, limit: int | None) -> Any:
        import pyarrow as pa

        entries = self.catalog.history(full, limit)
        def as_map(value: Any) -> list[tuple[str, str]] | None:
            if not isinstance(value, dict):
                return None
            return [(str(k), v if isinstance(v, str) else json.dumps(v)) for k, v in value.items()]

        str_map = pa.map_(pa.string(), pa.string())
        return pa.table({
            "version": pa.array([e.get("version") for e in entries], pa.int64()),
            "timestamp": pa.array([e.get("timestamp") for e in entries], pa.timestamp("ms", "UTC")),
            "userId": pa.array([e.get("userId") for e in entries], pa.string()),
            "userName": pa.array([e.get("userName") for e in entries], pa.string()),
            "operation": pa.array([e.get("operation") for e in entries], pa.string()),
            "operationParameters": pa.array([as_map(e.get("operationParameters")) for e in entries], str_map),
            "job": pa.nulls(len(entries), pa.string()),
            "notebook": pa.nulls(len(entries), pa.string()),
            "clusterId": pa.nulls(len(entries), pa.string()),
            "readVersion": pa.array([e.get("readVersion") for e in entries], pa.int64()),
            "isolationLevel": pa.array([e.get("isolationLevel") for e in entries], pa.string()),
            "isBlindAppend": pa.array([e.get("isBlindAppend") for e in entries], pa.bool_()),
            "operationMetrics": pa.array([as_map(e.get("operationMetrics")) for e in entries], str_map),
            "userMetadata": pa.array([e.get("userMetadata") for e in entries], pa.string()),
            "engineInfo": pa.array([e.get("engineInfo") for e in entries], pa.string()),
        })

    def _columns_table(self, full: str) -> Any:
        import pyarrow as pa

        from .catalog import _delta_type_text

        schema = self.catalog.arrow_schema(full)
        return pa.table({"col_name": [f.name for f in schema],
                         "data_type": [_delta_type_text(f.type) for f in schema],
                         "comment": pa.nulls(len(schema), pa.string())})

    def _properties_table(self, full: str) -> Any:
        import pyarrow as pa

        props = self.catalog.properties(full)
        return pa.table({"key": list(props), "value": list(props.values())})

    # ---------------------------------------------------------------- running
    def run(self, plan: Plan, params: dict[str, Any], on_connect: Callable[[Any], None]) -> Any:
        """Execute a plan; returns an Arrow table. Raises DeltaSqlError or duckdb.Error."""
        if plan.direct is not None:
            return plan.direct()
        import duckdb

        missing = sorted(plan.params - set(params))
        if missing:
            raise DeltaSqlError(
                "UNBOUND_SQL_PARAMETER",
                f"Found the unbound parameter: {missing[0]}. Please, fix `args` and provide a mapping of the "
                "parameter to either a SQL literal or collection constructor functions such as `map()`, `array()`, "
                "`struct()`.", "42P02")
        con = duckdb.connect(":memory:", config={"enable_external_access": False})
        try:
            on_connect(con)
            con.execute("SET TimeZone = 'UTC'")
            for macro in sorted(plan.macros):
                con.execute(f"CREATE MACRO {macro}{_MACROS[macro]}")
            for view, load in plan.views.items():
                con.register(view, load())
            rel = con.sql(plan.sql or "", params={k: params[k] for k in plan.params} or None)
            if rel is None:
                return self._empty()
            wide = [k for k, t in enumerate(rel.types) if str(t) in ("HUGEINT", "UHUGEINT")]
            return _as_bigint(rel.to_arrow_table(), wide)
        except duckdb.InterruptException:
            raise
        except duckdb.Error as exc:
            raise _from_duckdb(exc, plan.names) from exc
        finally:
            con.close()


def _names_a_type(toks: list[Tok], i: int, prev: str, opened: list[str]) -> bool:
    """Whether the word at ``toks[i]`` is a type: of a typed literal (``TIMESTAMP '...'``), after
    ``::``, or after the AS of a CAST (not a column alias such as ``SELECT t AS timestamp``)."""
    k = _next_sig(toks, i + 1)[0]
    literal = k < len(toks) and toks[k].kind in ("squote", "dquote")
    return literal or prev == "::" or (prev == "AS" and opened[-1:] in (["CAST"], ["TRY_CAST"]))


def _as_bigint(table: Any, positions: list[int]) -> Any:
    """DuckDB's 128-bit integers (Arrow decimal(38,0)) as Databricks' BIGINT; ARITHMETIC_OVERFLOW past it."""
    import pyarrow as pa
    import pyarrow.compute as pc

    for k in positions:
        try:
            column = pc.cast(table.column(k), pa.int64())
        except pa.ArrowInvalid as exc:
            raise DeltaSqlError("ARITHMETIC_OVERFLOW", f"{table.column_names[k]}: {exc}. The value is out of the "
                                "range of BIGINT.", "22003") from exc
        table = table.set_column(k, pa.field(table.column_names[k], pa.int64()), column)
    return table


def _next_sig(toks: list[Tok], i: int) -> tuple[int, str]:
    while i < len(toks) and not toks[i].significant:
        i += 1
    return (i, toks[i].text) if i < len(toks) else (i, "")


def _ident_text(tok: Tok) -> str:
    return duck_ident(tok.ident or "") if tok.kind == "bquote" else tok.text


def _version_as_of(toks: list[Tok], j: int) -> tuple[int | None, int]:
    """``VERSION AS OF n`` after a table name (Delta time travel)."""
    k1, w1 = _next_sig(toks, j)
    if w1.upper() != "VERSION":
        return None, j
    k2, w2 = _next_sig(toks, k1 + 1)
    k3, w3 = _next_sig(toks, k2 + 1)
    k4, _ = _next_sig(toks, k3 + 1)
    if w2.upper() == "AS" and w3.upper() == "OF" and k4 < len(toks) and toks[k4].kind == "number":
        return int(toks[k4].text), k4 + 1
    return None, j


def _property_list(sig: list[Tok], with_values: bool) -> list[tuple[str, str]]:
    """``('k' = 'v', k2 = true)`` or ``('k', 'k2')``."""
    if not sig or sig[0].text != "(":
        raise DeltaSqlError("PARSE_SYNTAX_ERROR", "Syntax error: expected '(' after TBLPROPERTIES.", "42601")
    items: list[tuple[str, str]] = []
    i = 1
    while i < len(sig) and sig[i].text != ")":
        if sig[i].text == ",":
            i += 1
            continue
        if sig[i].kind in ("squote", "dquote"):
            key, i = string_value(sig[i]), i + 1
        else:
            key_parts = []
            while i < len(sig) and (sig[i].ident is not None or sig[i].text == "."):
                key_parts.append(sig[i].ident or ".")
                i += 1
            key = "".join(key_parts)
        value = ""
        if with_values:
            if i < len(sig) and sig[i].text == "=":
                i += 1
            if i >= len(sig):
                break
            value = string_value(sig[i]) if sig[i].kind in ("squote", "dquote") else sig[i].text
            i += 1
        if not key:
            raise DeltaSqlError("PARSE_SYNTAX_ERROR", "Syntax error in the TBLPROPERTIES list.", "42601")
        items.append((key, value.lower() if value.upper() in ("TRUE", "FALSE") else value))
    return items


def _from_duckdb(exc: Exception, names: dict[str, str]) -> DeltaSqlError:
    """A DuckDB error in Databricks' words (error classes of the Databricks SQL error reference)."""
    import duckdb

    text = str(exc)
    for view, full in names.items():
        text = text.replace(view, quoted(full))
    first = text.split("\n", 1)[0]
    detail = first.split(": ", 1)[1] if ": " in first else first
    if isinstance(exc, duckdb.CatalogException):
        m = re.search(r"Table with name (\S+) does not exist", text)
        if m:
            return not_found_sql(m.group(1))
        m = re.search(r"(?:Scalar |Table )?Function with name (\S+) does not exist", text)
        if m:
            return DeltaSqlError("UNRESOLVED_ROUTINE",
                                 f"Cannot resolve routine `{m.group(1)}` on search path [`system`.`builtin`].", "42883")
    if isinstance(exc, duckdb.ParserException):
        return DeltaSqlError("PARSE_SYNTAX_ERROR", detail, "42601")
    if isinstance(exc, duckdb.BinderException):
        m = re.search(r'Referenced column "?([^"\s]+)"? not found', text)
        if m:
            return DeltaSqlError("UNRESOLVED_COLUMN.WITHOUT_SUGGESTION",
                                 f"A column, variable, or function parameter with name `{m.group(1)}` cannot be "
                                 "resolved.", "42703")
        return DeltaSqlError("DATATYPE_MISMATCH", detail, "42K09")
    if isinstance(exc, duckdb.ConversionException):
        return DeltaSqlError("CAST_INVALID_INPUT", detail, "22018")
    if isinstance(exc, (duckdb.OutOfRangeException,)):
        return DeltaSqlError("ARITHMETIC_OVERFLOW", detail, "22003")
    if isinstance(exc, duckdb.PermissionException):
        return DeltaSqlError("INSUFFICIENT_PERMISSIONS", detail, "42501")
    if isinstance(exc, duckdb.InvalidInputException):
        m = re.match(r"\[([A-Z_.]+)\] (.*)", detail)  # raised by a macro of _MACROS in Databricks' words
        if m:
            return DeltaSqlError(m.group(1), m.group(2), "22023")
        return DeltaSqlError("INVALID_PARAMETER_VALUE", detail, "22023")
    return DeltaSqlError("INTERNAL_ERROR", detail, "XX000")


_INT_TYPES = {"INT", "INTEGER", "BIGINT", "LONG", "SMALLINT", "SHORT", "TINYINT", "BYTE"}
_FLOAT_TYPES = {"DOUBLE", "FLOAT", "REAL"}


def parameter_value(value: Any, type_text: str | None) -> Any:
    """A parameter's Python value from its string ``value`` and Databricks ``type`` (STRING when absent)."""
    if value is None:
        return None
    kind = (type_text or "STRING").strip().upper()
    base = kind.split("(", 1)[0]
    text = str(value)
    try:
        if base in _INT_TYPES:
            return int(text)
        if base in _FLOAT_TYPES:
            return float(text)
        if base in ("DECIMAL", "NUMERIC", "DEC"):
            return Decimal(text)
        if base == "BOOLEAN":
            if text.lower() not in ("true", "false"):
                raise ValueError(text)
            return text.lower() == "true"
        if base == "DATE":
            return date.fromisoformat(text)
        if base in ("TIMESTAMP", "TIMESTAMP_NTZ", "TIMESTAMP_LTZ"):
            return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except (ValueError, InvalidOperation) as exc:
        raise DeltaSqlError("INVALID_PARAMETER_MARKER_VALUE.INVALID_VALUE_FOR_DATA_TYPE",
                            f"An invalid parameter mapping was provided: the value '{text}' cannot be cast to "
                            f"{kind}.", "22023") from exc
    return text


# ---------------------------------------------------------------------------------- service
@dataclass
class Statement:
    id: str
    plan: Plan | None
    params: dict[str, Any]
    row_limit: int | None
    byte_limit: int | None
    state: str = PENDING
    error: tuple[str, str, str | None] | None = None  # (error_code, message, sql_state)
    result: Result | None = None
    created: float = field(default_factory=time.time)
    finished: float | None = None
    done: threading.Event = field(default_factory=threading.Event)
    con: Any = None
    canceled: bool = False


class StatementService:
    """REST handlers and the warehouse: statements run in threads, a few at a time."""

    def __init__(self, catalog: UnityCatalog, *, lock: threading.RLock, stopping: threading.Event, faults: Faults):
        self.engine = SqlEngine(catalog)
        self.lock = lock
        self._faults = faults
        self._stopping = stopping
        self._statements: OrderedDict[str, Statement] = OrderedDict()
        self._slots = threading.BoundedSemaphore(WAREHOUSE_SLOTS)
        self._threads: set[threading.Thread] = set()

    def register(self, router: Router) -> None:
        p = "/api/2.0/sql/statements"
        router.add("POST", p, self.execute)
        router.add("POST", p + "/", self.execute)
        router.add("GET", p + "/{statement_id}", self.get)
        router.add("GET", p + "/{statement_id}/result/chunks/{chunk_index}", self.chunk)
        router.add("POST", p + "/{statement_id}/cancel", self.cancel)

    # ---------------------------------------------------------------- handlers
    def execute(self, req: Request) -> Response:
        body = req.json()
        statement, warehouse_id = body.get("statement"), body.get("warehouse_id")
        if not isinstance(statement, str) or not statement.strip():
            raise bad_request("statement is required: the SQL statement to execute.")
        if not isinstance(warehouse_id, str) or not warehouse_id:
            raise bad_request("warehouse_id is required: the id of the SQL warehouse to run the statement on.")
        if not _WAREHOUSE.match(warehouse_id):
            raise invalid_parameter(f"{warehouse_id} is not a valid endpoint id.")
        if len(statement.encode("utf-8")) > MAX_STATEMENT_BYTES:
            raise invalid_parameter("The statement exceeds the maximum size of 16 MiB.")
        wait = _wait_seconds(body.get("wait_timeout", "10s"))
        on_timeout = body.get("on_wait_timeout") or "CONTINUE"
        if on_timeout not in ("CONTINUE", "CANCEL"):
            raise invalid_parameter(f"Invalid on_wait_timeout {on_timeout!r}; expected CONTINUE or CANCEL.")
        disposition = body.get("disposition") or "INLINE"
        fmt = body.get("format") or "JSON_ARRAY"
        if disposition not in ("INLINE", "EXTERNAL_LINKS") or fmt not in ("JSON_ARRAY", "ARROW_STREAM", "CSV"):
            raise invalid_parameter(f"Invalid disposition {disposition!r} or format {fmt!r}.")
        if disposition == "INLINE" and fmt != "JSON_ARRAY":
            raise invalid_parameter(
                "Incompatible parameters: The format field must be JSON_ARRAY when the disposition field is INLINE.")
        if disposition == "EXTERNAL_LINKS":
            raise invalid_parameter("The local workspace answers statements with disposition INLINE only.")
        row_limit = _limit(body, "row_limit")
        byte_limit = _limit(body, "byte_limit")
        catalog, schema = body.get("catalog"), body.get("schema")
        if not isinstance(catalog, (str, type(None))) or not isinstance(schema, (str, type(None))):
            raise invalid_parameter("catalog and schema must be strings.")
        stmt = Statement(str(uuid.uuid4()), None, {}, row_limit, byte_limit)
        try:
            params = _parameters(body.get("parameters"))
            stmt.params = params
            stmt.plan = self.engine.plan(statement, catalog, schema)
        except DeltaSqlError as exc:
            self._fail(stmt, exc)
        with self.lock:
            self._expire()
            self._statements[stmt.id] = stmt
        if stmt.state == PENDING:
            thread = threading.Thread(target=self._run, args=(stmt,), name=f"statement-{stmt.id[:8]}", daemon=True)
            self._threads.add(thread)
            thread.start()
        if wait == 0:  # asynchronous mode: only the id and PENDING (a recorded API exchange)
            return Response(body={"statement_id": stmt.id, "status": {"state": PENDING}})
        if not stmt.done.wait(wait) and on_timeout == "CANCEL":
            self._cancel(stmt)
            stmt.done.wait(5)
        return Response(body=self._locked_response(stmt))

    def get(self, req: Request, statement_id: str) -> Response:
        with self.lock:
            self._expire()
            return Response(body=self._response(self._require(statement_id)))

    def chunk(self, req: Request, statement_id: str, chunk_index: str) -> Response:
        try:
            index = int(chunk_index)
        except ValueError as exc:
            raise invalid_parameter(f"Invalid chunk_index {chunk_index!r}.") from exc
        with self.lock:
            self._expire()
            stmt = self._require(statement_id)
            if stmt.state in (FAILED, CANCELED, CLOSED):
                raise ApiError(404, "NOT_FOUND", f"The result of statement {statement_id} is not available: the "
                               f"statement is {stmt.state}.")
            if stmt.state != SUCCEEDED or stmt.result is None:
                raise ApiError(400, "INVALID_STATE", f"Statement {statement_id} is {stmt.state}; its result is not "
                               "available yet.")
            result = stmt.result
        if not 0 <= index < len(result.bounds):
            raise invalid_parameter(f"The chunk_index {index} is out of bounds.")
        return Response(body=self._chunk_data(stmt.id, result, index).as_dict())

    def cancel(self, req: Request, statement_id: str) -> Response:
        with self.lock:
            stmt = self._require(statement_id)
        self._cancel(stmt)
        return Response(body={})

    # ---------------------------------------------------------------- execution
    def _run(self, stmt: Statement) -> None:
        import duckdb

        acquired = False
        try:
            # A warehouse that is starting (fault statement_pending_seconds): the statement waits PENDING.
            while (left := stmt.created + self._faults.statement_pending_seconds - time.time()) > 0:
                if stmt.canceled or self._stopping.wait(min(left, 0.05)):
                    return
            while not (acquired := self._slots.acquire(timeout=0.2)):
                if stmt.canceled or self._stopping.is_set():
                    return
            with self.lock:
                if stmt.canceled:
                    return
                stmt.state = RUNNING
            assert stmt.plan is not None

            def attach(con: Any) -> None:
                with self.lock:
                    if stmt.canceled:
                        # DuckDB clears a pending interrupt when a query starts: never start it.
                        raise duckdb.InterruptException("canceled before it started")
                    stmt.con = con

            table = self.engine.run(stmt.plan, stmt.params, attach)
            result = build_result(table, stmt.row_limit, stmt.byte_limit)
            with self.lock:
                stmt.con = None
                if not stmt.canceled:
                    stmt.result, stmt.state, stmt.finished = result, SUCCEEDED, time.time()
                    self._cap_results()
        except DeltaSqlError as exc:
            with self.lock:
                self._fail(stmt, exc)
        except duckdb.InterruptException:
            with self.lock:
                stmt.state, stmt.finished = CANCELED, time.time()
        except Exception as exc:  # a bug or an engine failure: the statement fails, the server lives on
            log.exception("statement %s failed unexpectedly", stmt.id)
            with self.lock:
                if not stmt.canceled:
                    stmt.state, stmt.finished = FAILED, time.time()
                    stmt.error = ("INTERNAL_ERROR", f"[INTERNAL_ERROR] {type(exc).__name__}: {exc}", "XX000")
        finally:
            with self.lock:
                stmt.con = None
            if acquired:
                self._slots.release()
            stmt.done.set()
            self._threads.discard(threading.current_thread())

    @staticmethod
    def _fail(stmt: Statement, exc: DeltaSqlError) -> None:
        if stmt.canceled:
            return
        stmt.state, stmt.finished = FAILED, time.time()
        stmt.error = ("BAD_REQUEST", str(exc), exc.sql_state)
        stmt.done.set()

    def _cancel(self, stmt: Statement) -> None:
        with self.lock:
            if stmt.state in _TERMINAL:
                return
            stmt.canceled = True
            stmt.state, stmt.finished = CANCELED, time.time()
            con = stmt.con
        if con is not None:
            # The query may be between attaching and starting, when DuckDB would drop one interrupt:
            # keep interrupting until the statement's thread is done.
            threading.Thread(target=self._interrupt_until_done, args=(stmt, con), daemon=True).start()

    @staticmethod
    def _interrupt_until_done(stmt: Statement, con: Any) -> None:
        for _ in range(100):
            with contextlib.suppress(Exception):  # the connection may have just closed
                con.interrupt()
            if stmt.done.wait(0.05):
                return

    def join(self, timeout: float = 5.0) -> None:
        """Cancel what runs (the workspace is stopping) and wait for the threads."""
        with self.lock:
            running = [s for s in self._statements.values() if s.state not in _TERMINAL]
        for stmt in running:
            self._cancel(stmt)
        deadline = time.monotonic() + timeout
        for thread in list(self._threads):
            thread.join(max(deadline - time.monotonic(), 0.0))

    # ---------------------------------------------------------------- bookkeeping (lock held)
    def _require(self, statement_id: str) -> Statement:
        try:
            uuid.UUID(statement_id)
        except ValueError as exc:
            raise invalid_parameter(f"'{statement_id}' is not a valid statement id.") from exc
        stmt = self._statements.get(statement_id)
        if stmt is None:
            raise ApiError(404, "NOT_FOUND", f"Statement {statement_id} not found.")
        return stmt

    def _expire(self) -> None:
        now = time.time()
        for sid, stmt in list(self._statements.items()):
            if stmt.finished is None:
                continue
            if now - stmt.finished > FORGET_AFTER_SECONDS:
                del self._statements[sid]
            elif stmt.state == SUCCEEDED and now - stmt.finished > RESULT_TTL_SECONDS:
                stmt.state, stmt.result = CLOSED, None
        while len(self._statements) > MAX_STATEMENTS:
            oldest = next((s for s in self._statements.values() if s.state in _TERMINAL), None)
            if oldest is None:
                break
            del self._statements[oldest.id]

    def _cap_results(self) -> None:
        kept = [s for s in self._statements.values() if s.state == SUCCEEDED and s.result is not None]
        total = sum(s.result.nbytes for s in kept if s.result)
        for stmt in kept[:-1]:  # never the newest
            if total <= RESULT_BYTES_CAP:
                break
            total -= stmt.result.nbytes if stmt.result else 0
            stmt.state, stmt.result = CLOSED, None

    # ---------------------------------------------------------------- wire format
    def _locked_response(self, stmt: Statement) -> dict[str, Any]:
        with self.lock:
            return self._response(stmt)

    def _response(self, stmt: Statement) -> dict[str, Any]:
        """``StatementResponse`` in the recorded member order: statement_id, status, manifest, result."""
        status = sdk.StatementStatus(state=sdk.StatementState(stmt.state))
        if stmt.state == FAILED and stmt.error is not None:
            code, message, sql_state = stmt.error
            status.error = sdk.ServiceError(error_code=sdk.ServiceErrorCode(code), message=message)
            status.sql_state = sql_state
        body: dict[str, Any] = {"statement_id": stmt.id, "status": status.as_dict()}
        if stmt.state == SUCCEEDED and stmt.result is not None:
            result = stmt.result
            body["manifest"] = sdk.ResultManifest(
                format=sdk.Format.JSON_ARRAY,
                schema=sdk.ResultSchema(column_count=len(result.columns), columns=result.columns),
                total_chunk_count=len(result.bounds),
                total_row_count=result.row_count,
                chunks=[sdk.BaseChunkInfo(chunk_index=i, row_offset=s, row_count=e - s)
                        for i, (s, e) in enumerate(result.bounds)] or None,
                truncated=result.truncated,
            ).as_dict()
            body["result"] = self._chunk_data(stmt.id, result, 0).as_dict() if result.bounds else {}
        return body

    @staticmethod
    def _chunk_data(statement_id: str, result: Result, index: int) -> sdk.ResultData:
        start, end = result.bounds[index]
        data = sdk.ResultData(chunk_index=index, row_offset=start, row_count=end - start,
                              data_array=chunk_rows(result, index))
        if index + 1 < len(result.bounds):
            data.next_chunk_index = index + 1
            data.next_chunk_internal_link = f"/api/2.0/sql/statements/{statement_id}/result/chunks/{index + 1}"
        return data


def _wait_seconds(value: Any) -> int:
    m = _WAIT.match(value) if isinstance(value, str) else None
    seconds = int(m.group(1)) if m else -1
    if seconds != 0 and not 5 <= seconds <= 50:
        raise invalid_parameter("The wait_timeout field must be 0 seconds (disables wait), or between 5 seconds and "
                                "50 seconds.")
    return seconds


def _limit(body: dict[str, Any], key: str) -> int | None:
    value = body.get(key)
    if value is None:
        return None
    try:
        number = int(value)  # the SDK sends int64 fields as numbers or numeric strings
    except (TypeError, ValueError) as exc:
        raise invalid_parameter(f"{key} must be an integer.") from exc
    if number < 0 or isinstance(value, bool):
        raise invalid_parameter(f"{key} must be a non-negative integer.")
    return number


def _parameters(raw: Any) -> dict[str, Any]:
    if raw is None:
        return {}
    if not isinstance(raw, list):
        raise invalid_parameter("parameters must be a list of {name, value, type} objects.")
    params: dict[str, Any] = {}
    for item in raw:
        if not isinstance(item, dict) or not isinstance(item.get("name"), str) or not _IDENT.match(item["name"]):
            raise invalid_parameter("Every parameter needs a name made of letters, digits and underscores.")
        params[item["name"]] = parameter_value(item.get("value"), item.get("type"))
    return params
