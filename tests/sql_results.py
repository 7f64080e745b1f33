"""Reading a statement's result as the wire carries it: the real databricks-sdk against the
Statement Execution API (Databricks REST API, "Execute a SQL statement",
https://docs.databricks.com/api/workspace/statementexecution/executestatement), every value a string or null."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

WAREHOUSE = "local-warehouse"


@dataclass
class Result:
    types: dict[str, str]  # column -> manifest type_name (LONG, TIMESTAMP, ARRAY...)
    texts: dict[str, str]  # column -> manifest type_text (BIGINT, ARRAY<STRING>...)
    rows: list[dict[str, str | None]]

    def column(self, name: str) -> list[str | None]:
        return [r[name] for r in self.rows]


def query(w: Any, statement: str, **parameters: Any) -> Result:
    """Run ``statement`` synchronously (``:name`` markers bound from ``parameters`` as strings) and
    read every chunk; AssertionError with Databricks' message unless it SUCCEEDED."""
    from databricks.sdk.service.sql import ExecuteStatementRequestOnWaitTimeout, StatementParameterListItem

    params = [StatementParameterListItem(name=k, value=None if v is None else str(v)) for k, v in parameters.items()]
    resp = w.statement_execution.execute_statement(
        statement, WAREHOUSE, wait_timeout="30s", on_wait_timeout=ExecuteStatementRequestOnWaitTimeout.CANCEL,
        parameters=params or None)
    if resp.status.state.value != "SUCCEEDED":
        error = resp.status.error
        raise AssertionError(f"{resp.status.state.value}: {error.message if error else ''}\n{statement}")
    columns = resp.manifest.schema.columns or []
    names = [c.name for c in columns]
    rows: list[dict[str, str | None]] = []
    data = resp.result
    while data is not None:
        rows.extend(dict(zip(names, row, strict=True)) for row in data.data_array or [])
        if data.next_chunk_index is None:
            break
        data = w.statement_execution.get_statement_result_chunk_n(resp.statement_id, data.next_chunk_index)
    assert len(rows) == (resp.manifest.total_row_count or 0)
    return Result({c.name: c.type_name.value for c in columns}, {c.name: c.type_text for c in columns}, rows)
