"""Publishing a feature table to a third-party online store (MySQL/MariaDB, PostgreSQL).

Databricks publishes to third-party stores from a notebook; this app does it itself, in
steps that each stop after a time budget and hand back a cursor, so no function runs long
(DESIGN.md principle 3). The warehouse does the filtering where the data is: the first copy
reads ``SELECT … WHERE <keys> IS NOT NULL [QUALIFY latest per key]`` into a staging table that
replaces the online table in one transaction; later syncs read only the change feed
(``table_changes``) since the version recorded in the store's own sync watermark.
"""

from __future__ import annotations

import time
from typing import Any

from shared.features import sql
from shared.online_store import Column, OnlineStore, physical_name
from shared.policy import FeatureTable

_META = {"_change_type", "_commit_version", "_commit_timestamp"}


def snapshot_statement(table: FeatureTable) -> str:
    not_null = " AND ".join(f"`{k}` IS NOT NULL" for k in table.primary_keys)
    stmt = f"SELECT * FROM {sql.quote(table.source)} WHERE {not_null}"
    if table.timeseries_key:
        # Rows sharing a key: the latest by the timeseries key wins (Databricks synced tables).
        keys = ", ".join(f"`{k}`" for k in table.primary_keys)
        stmt += f" QUALIFY ROW_NUMBER() OVER (PARTITION BY {keys} ORDER BY `{table.timeseries_key}` DESC) = 1"
    return stmt


def changes_statement(table: FeatureTable, start: int, end: int) -> str:
    order = f", `{table.timeseries_key}`" if table.timeseries_key else ""
    return (f"SELECT * FROM table_changes('{table.source}', {start}, {end}) "
            f"WHERE _change_type != 'update_preimage' ORDER BY _commit_version{order}")


def sync(w: Any, warehouse_id: str, store: OnlineStore, table: FeatureTable, mode: str,
         cursor: dict[str, Any] | None, budget_seconds: float) -> tuple[bool, dict[str, Any] | None, str]:
    """Advance the sync of one table. Returns (in sync, cursor to continue with, what happened)."""
    target = physical_name(table.online_name)
    if cursor is None:
        source_version = sql.current_version(w, warehouse_id, table.source)
        state = store.sync_state(target)
        if state and state["source_version"] >= source_version:
            return True, None, f"in sync at version {source_version}"
        full = state is None or mode == "snapshot"
        stmt = snapshot_statement(table) if full else changes_statement(table, state["source_version"] + 1,
                                                                         source_version)
        result = sql.execute(w, warehouse_id, stmt)
        cursor = {"statement_id": result.statement_id, "columns": result.columns, "chunks": result.chunk_count,
                  "rows": result.row_count, "next": 0, "version": source_version, "full": full}
        if full:
            columns = [Column(n, sql.generic_type(t)) for n, t in result.columns]
            store.ensure_table(target, columns, table.primary_keys)
            store.drop_table(target + "__staging")
            store.ensure_table(target + "__staging", columns, table.primary_keys)
        first = result
    else:
        first = sql.Result(cursor["statement_id"], [tuple(c) for c in cursor["columns"]], cursor["chunks"],
                           cursor["rows"], None)
    deadline = time.monotonic() + budget_seconds
    names = [n for n, _ in first.columns]
    start = cursor["next"]
    for index, rows in _chunks_from(w, first, start):
        if cursor["full"]:
            store.upsert(target + "__staging", names, rows, table.primary_keys)
        else:
            _apply_changes(store, target, names, rows, table.primary_keys)
        cursor["next"] = index + 1
        if time.monotonic() > deadline and cursor["next"] < cursor["chunks"]:
            return False, cursor, f"copied {cursor['next']} of {cursor['chunks']} chunks of version {cursor['version']}"
    if cursor["full"]:
        store.replace(target, target + "__staging")
    store.set_sync_state(target, cursor["version"], mode)
    kind = f"full copy of {cursor['rows']} rows" if cursor["full"] else f"{cursor['rows']} changes"
    return True, None, f"{kind} to version {cursor['version']}"


def _chunks_from(w: Any, result: sql.Result, start: int):
    if result.first is None and start == 0 and result.chunk_count:
        # A resumed cursor has no inline chunk 0: fetch it like the others.
        data = w.statement_execution.get_statement_result_chunk_n(result.statement_id, 0)
        result = sql.Result(result.statement_id, result.columns, result.chunk_count, result.row_count, data)
    return sql.chunks(w, result, start)


def _apply_changes(store: OnlineStore, target: str, names: list[str], rows: list[list[Any]],
                   primary_keys: list[str]) -> None:
    """Apply a change feed in commit order: inserts and post-images upsert, deletes delete."""
    kind = names.index("_change_type")
    data_cols = [i for i, n in enumerate(names) if n not in _META]
    cols = [names[i] for i in data_cols]
    key_idx = [names.index(k) for k in primary_keys]
    run: list[list[Any]] = []
    run_kind = None

    def flush() -> None:
        if not run:
            return
        if run_kind == "delete":
            store.delete(target, primary_keys, [[r[i] for i in key_idx] for r in run])
        else:
            store.upsert(target, cols, [[r[i] for i in data_cols] for r in run], primary_keys)
        run.clear()

    for row in rows:
        if any(row[i] is None for i in key_idx):
            continue
        this = "delete" if row[kind] == "delete" else "upsert"
        if this != run_kind:
            flush()
            run_kind = this
        run.append(row)
    flush()
