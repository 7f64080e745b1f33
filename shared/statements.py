"""SQL on the workspace through the Statement Execution API (Databricks REST API, "Execute a SQL
statement", https://docs.databricks.com/api/workspace/statementexecution/executestatement).

Heavy work runs where the data is (docs/architecture.md principle 8): the warehouse filters, deduplicates
and aggregates; only the rows an online store needs, or a drift check's aggregates, come back.

No function waits on the platform (principle 3). A statement is submitted with a short
``wait_timeout`` (``"0s"`` or ``"5s"``-``"50s"``): 5 s while the step's budget has that
much left, else ``"0s"``, the asynchronous mode that answers PENDING at once. A statement still
PENDING or RUNNING raises StatementPending; its id stays in the caller's cursor, and a later
message polls it with ``get_statement`` rather than submitting it again. A statement CLOSED
(its result is kept one hour after success), CANCELED or forgotten (404, 12 hours after it
ended) is submitted again.

Results: chunk 0 is inline; the others are fetched with
``get_statement_result_chunk_n``, following ``next_chunk_index``, until the last one, and the
rows read are checked against ``manifest.total_row_count``. A manifest with ``truncated`` set is
refused: a partial result must never be copied as if it were the whole table. Every value
arrives as a string (or null) and is converted by the manifest's ``type_name``.

Names and literals as Databricks SQL reads them ("Identifiers", "STRING type"): identifiers
in backticks, a backtick inside doubled; string literals in single quotes with backslash and
quote escaped by a backslash (two adjacent quotes would be two literals, concatenated).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

_INTS = {"LONG", "INT", "SHORT", "BYTE"}
_FLOATS = {"DOUBLE", "FLOAT", "DECIMAL"}
_WAIT_SECONDS = 5  # the shortest wait_timeout above 0s that the API accepts


class StatementFailed(Exception):
    """A statement ended FAILED, or its result cannot be used (truncated, rows missing)."""


class StatementPending(Exception):
    """The statement has not finished; its id is in the cursor for the next message to poll."""

    def __init__(self, key: str, statement_id: str, state: str) -> None:
        super().__init__(f"{key} statement {statement_id} is {state}")
        self.key, self.statement_id, self.state = key, statement_id, state


@dataclass(frozen=True)
class Result:
    statement_id: str
    columns: list[tuple[str, str]]  # (name, type_name)
    chunk_count: int
    row_count: int
    first: Any  # the inline ResultData of chunk 0, or None when only the id is known


def generic_type(type_name: str) -> str:
    """Manifest (or Unity Catalog column) type → shared.online_store column type."""
    if type_name in _INTS:
        return "bigint"
    if type_name in _FLOATS:
        return "double"
    if type_name == "BOOLEAN":
        return "boolean"
    return "string"


def _convert(value: str | None, type_name: str) -> Any:
    if value is None:
        return None
    if type_name in _INTS:
        return int(value)
    if type_name in _FLOATS:
        return float(value)
    if type_name == "BOOLEAN":
        return value == "true"
    return value


def quote_ident(name: str) -> str:
    """A column (or any one-part) name: `na``me`."""
    return "`" + name.replace("`", "``") + "`"


def quote(full_name: str) -> str:
    """A three-part name with each part quoted: `cat`.`sch`.`tbl` (Unity Catalog names hold no '.')."""
    return ".".join(quote_ident(p) for p in full_name.split("."))


def literal(text: str) -> str:
    """A STRING literal: 'it\\'s'."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def run(w: Any, warehouse_id: str, statement: str, cursor: dict[str, Any], key: str, deadline: float) -> Result:
    """The finished result of ``statement``, submitted now or polled by the id kept in
    ``cursor["statements"][key]``. Raises StatementPending (the id is kept) while it runs,
    StatementFailed when it failed or its result was truncated. ``deadline`` (monotonic) is
    the step's: no time left means the asynchronous mode."""
    from databricks.sdk.errors import NotFound
    from databricks.sdk.service.sql import (
        Disposition,
        ExecuteStatementRequestOnWaitTimeout,
        Format,
        StatementState,
    )

    ids: dict[str, str] = cursor.setdefault("statements", {})
    resp = None
    if key in ids:
        try:
            resp = w.statement_execution.get_statement(ids[key])
        except NotFound:
            resp = None
        if resp is not None and resp.status.state in (StatementState.CLOSED, StatementState.CANCELED):
            resp = None
    if resp is None:
        wait = f"{_WAIT_SECONDS}s" if deadline - time.monotonic() >= _WAIT_SECONDS else "0s"
        resp = w.statement_execution.execute_statement(
            statement, warehouse_id, wait_timeout=wait, on_wait_timeout=ExecuteStatementRequestOnWaitTimeout.CONTINUE,
            disposition=Disposition.INLINE, format=Format.JSON_ARRAY)
        ids[key] = resp.statement_id
    state = resp.status.state
    if state in (StatementState.PENDING, StatementState.RUNNING):
        raise StatementPending(key, resp.statement_id, state.value)
    del ids[key]
    if not ids:
        del cursor["statements"]
    if state != StatementState.SUCCEEDED:
        err = resp.status.error
        raise StatementFailed(f"{err.message if err and err.message else state.value if state else 'no state'}: "
                              f"{statement[:200]}")
    manifest = resp.manifest
    if manifest.truncated:
        raise StatementFailed(f"the result of statement {resp.statement_id} was truncated "
                              f"({manifest.total_row_count} rows kept): {statement[:200]}")
    columns = [(c.name, c.type_name.value if c.type_name else "STRING") for c in manifest.schema.columns or []]
    return Result(resp.statement_id, columns, manifest.total_chunk_count or 0, manifest.total_row_count or 0,
                  resp.result)


def chunks(w: Any, result: Result, start: int = 0) -> Iterator[tuple[int, list[list[Any]]]]:
    """(chunk index, typed rows) from chunk ``start`` to the last, following ``next_chunk_index``;
    each chunk is fetched only when the one before it has been consumed."""
    if start >= result.chunk_count:
        return
    fetch = w.statement_execution.get_statement_result_chunk_n
    data = result.first if start == 0 and result.first is not None else fetch(result.statement_id, start)
    index = start
    while True:
        rows = data.data_array or []
        yield index, [[_convert(v, t) for v, (_, t) in zip(row, result.columns, strict=True)] for row in rows]
        if data.next_chunk_index is None:
            return
        index = data.next_chunk_index
        data = fetch(result.statement_id, index)


def rows(w: Any, result: Result) -> list[list[Any]]:
    """Every row of the result, all chunks read."""
    out = [row for _, part in chunks(w, result) for row in part]
    if len(out) != result.row_count:
        raise StatementFailed(f"statement {result.statement_id}: read {len(out)} of {result.row_count} rows")
    return out


def current_version(w: Any, warehouse_id: str, table: str, cursor: dict[str, Any], deadline: float) -> int:
    """The Delta table's latest commit version (``DESCRIBE HISTORY``)."""
    result = run(w, warehouse_id, f"DESCRIBE HISTORY {quote(table)} LIMIT 1", cursor, "version", deadline)
    names = [n for n, _ in result.columns]
    found = rows(w, result)
    if not found:
        raise StatementFailed(f"{table} has no history")
    return int(found[0][names.index("version")])
