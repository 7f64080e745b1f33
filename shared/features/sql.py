"""SQL on the workspace through the Statement Execution API (reference databricks-api.md §4).

Heavy work runs where the data is (DESIGN.md principle 8): the warehouse filters and
deduplicates; only the rows an online store needs come back, chunk by chunk. Every value
arrives as a string (or null) and is converted by the manifest's ``type_name``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

_INTS = {"LONG", "INT", "SHORT", "BYTE"}
_FLOATS = {"DOUBLE", "FLOAT", "DECIMAL"}


class StatementFailed(RuntimeError):
    pass


@dataclass(frozen=True)
class Result:
    statement_id: str
    columns: list[tuple[str, str]]  # (name, type_name)
    chunk_count: int
    row_count: int
    first: Any  # the inline ResultData of chunk 0


def generic_type(type_name: str) -> str:
    """Manifest type → shared.online_store column type."""
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


def execute(w: Any, warehouse_id: str, statement: str, *, timeout: float = 120) -> Result:
    """Run ``statement`` and wait for it (the hybrid mode, then polling ``get_statement``)."""
    from databricks.sdk.service.sql import Disposition, Format, StatementState

    resp = w.statement_execution.execute_statement(statement, warehouse_id, wait_timeout="30s",
                                                   disposition=Disposition.INLINE, format=Format.JSON_ARRAY)
    deadline = time.monotonic() + timeout
    while resp.status.state in (StatementState.PENDING, StatementState.RUNNING):
        if time.monotonic() > deadline:
            w.statement_execution.cancel_execution(resp.statement_id)
            raise StatementFailed(f"statement did not finish in {timeout:.0f} s: {statement[:120]}")
        time.sleep(0.5)
        resp = w.statement_execution.get_statement(resp.statement_id)
    if resp.status.state != StatementState.SUCCEEDED:
        err = resp.status.error
        raise StatementFailed(f"{err.message if err else resp.status.state}")
    manifest = resp.manifest
    columns = [(c.name, c.type_name.value if c.type_name else "STRING") for c in manifest.schema.columns or []]
    return Result(resp.statement_id, columns, manifest.total_chunk_count or 0, manifest.total_row_count or 0,
                  resp.result)


def chunks(w: Any, result: Result, start: int = 0) -> Iterator[tuple[int, list[list[Any]]]]:
    """(chunk index, typed rows) from ``start`` on; chunks are fetched one at a time."""
    for index in range(start, result.chunk_count):
        data = result.first if index == 0 else w.statement_execution.get_statement_result_chunk_n(
            result.statement_id, index)
        rows = data.data_array or [] if data else []
        yield index, [[_convert(v, t) for v, (_, t) in zip(row, result.columns, strict=True)] for row in rows]


def quote(name: str) -> str:
    """A three-part name with each part quoted: `cat`.`sch`.`tbl`."""
    return ".".join(f"`{p.replace('`', '``')}`" for p in name.split("."))


def current_version(w: Any, warehouse_id: str, table: str) -> int:
    """The Delta table's latest commit version (``DESCRIBE HISTORY``)."""
    result = execute(w, warehouse_id, f"DESCRIBE HISTORY {quote(table)} LIMIT 1")
    names = [n for n, _ in result.columns]
    for _, rows in chunks(w, result):
        if rows:
            return int(rows[0][names.index("version")])
    raise StatementFailed(f"{table} has no history")
