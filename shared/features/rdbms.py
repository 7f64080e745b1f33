"""Publishing a feature table to a third-party online store (MySQL/MariaDB, PostgreSQL).

Databricks publishes to third-party stores from a notebook; this app does it itself, in
steps that each stop after a time budget and hand back a cursor, so no function runs long
(docs/architecture.md principle 3). The warehouse does the filtering where the data is: the first copy
reads ``SELECT <columns> … VERSION AS OF <v> WHERE <keys> IS NOT NULL [QUALIFY latest per key]``
into a staging table of its own that then replaces the online table in one step; later syncs
read only the change feed (``table_changes``) since the version recorded in the store's own
sync watermark.

One writer per online table: a run claims the table in the store (``OnlineStore.claim``) and
renews the claim at every step; another writer meanwhile reports ``pending`` and writes
nothing. A claim expires CLAIM_SECONDS after its last renewal, so a writer that stopped
(crashed, or its cursor was dropped) blocks the table no longer than that; the run that takes
over removes its staging table.

Columns are named everywhere (the source's columns from Unity Catalog, in the SELECT and in
every INSERT), so their order never matters. Before a sync the source's columns and key are
compared with the online table's; any difference (new, dropped or retyped columns, another
key) is migrated by a full copy into a staging table of the new shape. A column the store
cannot hold fails the sync with its name.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from shared import statements as sql
from shared.features.failure import FeatureFailure
from shared.online_store import Column, InvalidIdentifier, OnlineStore, physical_name
from shared.policy import FeatureTable

CLAIM_SECONDS = 600.0  # far longer than a step plus the longest backoff between two steps
_META = ["_change_type", "_commit_version"]


def _not_null(table: FeatureTable) -> str:
    return " AND ".join(f"{sql.quote_ident(k)} IS NOT NULL" for k in table.primary_keys)


def snapshot_statement(table: FeatureTable, columns: list[str], version: int) -> str:
    cols = ", ".join(sql.quote_ident(c) for c in columns)
    stmt = f"SELECT {cols} FROM {sql.quote(table.source)} VERSION AS OF {int(version)} WHERE {_not_null(table)}"
    if table.timeseries_key:
        # Rows sharing a key: the latest by the timeseries key wins (Databricks synced tables).
        keys = ", ".join(sql.quote_ident(k) for k in table.primary_keys)
        stmt += (f" QUALIFY ROW_NUMBER() OVER (PARTITION BY {keys} ORDER BY {sql.quote_ident(table.timeseries_key)}"
                 " DESC) = 1")
    return stmt


def changes_statement(table: FeatureTable, columns: list[str], start: int, end: int) -> str:
    cols = ", ".join(sql.quote_ident(c) for c in [*columns, *_META])
    order = f", {sql.quote_ident(table.timeseries_key)}" if table.timeseries_key else ""
    return (f"SELECT {cols} FROM table_changes({sql.literal(sql.quote(table.source))}, {int(start)}, {int(end)}) "
            f"WHERE _change_type != 'update_preimage' AND {_not_null(table)} ORDER BY _commit_version{order}")


def sync(w: Any, warehouse_id: str, store: OnlineStore, table: FeatureTable, columns: list[Column], mode: str,
         cursor: dict[str, Any], *, now: float, deadline: float) -> tuple[str, str, dict[str, Any] | None]:
    """Advance the sync of one table by one step. Returns (state, what happened, cursor):
    ``ready``; ``progress`` (call again with the cursor); ``pending`` (another writer holds the
    table). Raises sql.StatementPending while a statement runs (``cursor`` keeps its id) and
    FeatureFailure when the sync cannot succeed as configured. ``now`` is wall-clock time (claims
    are compared across processes), ``deadline`` the step's monotonic one."""
    target = physical_name(table.online_name)
    try:
        wanted = store.schema_of(columns, table.primary_keys)
    except InvalidIdentifier as exc:
        raise FeatureFailure(f"{table.source}: {exc}, so the online store cannot hold it") from exc
    run = cursor.get("run")
    if run is None:
        version = sql.current_version(w, warehouse_id, table.source, cursor, deadline)
        state = store.sync_state(target)
        current = store.schema(target)
        drift = wanted.differences(current) if current else []
        if state and current and not drift and state["source_version"] >= version:
            return "ready", f"in sync at version {version}", None
        run = uuid.uuid4().hex[:16]
        held, other = store.claim(target, run, now, CLAIM_SECONDS)
        if not held:
            return "pending", f"{target} is being written by sync run {other}: waiting for it", None
        if other:
            store.drop_staging(other)  # the expired run's half-loaded table
        full = state is None or current is None or mode == "snapshot" or bool(drift)
        # The run keeps the columns it started with, whatever the source does meanwhile.
        cursor.update(run=run, version=version, full=full, start=None if full else state["source_version"] + 1,
                      columns=[[c.name, c.type] for c in columns], next=0, copied=0,
                      why=f"{target} has {'; '.join(drift)}: " if drift else "")
    elif not store.renew(target, run, now, CLAIM_SECONDS):
        # The claim expired and another run took over (and removed this run's staging table).
        return "pending", f"sync run {run} of {target} lost its claim: starting again", None
    try:
        return _copy(w, warehouse_id, store, table, target, mode, cursor, deadline)
    except (FeatureFailure, sql.StatementFailed):
        store.drop_staging(run)
        store.release(target, run)
        raise


def _copy(w: Any, warehouse_id: str, store: OnlineStore, table: FeatureTable, target: str, mode: str,
          cursor: dict[str, Any], deadline: float) -> tuple[str, str, dict[str, Any] | None]:
    from databricks.sdk.errors import NotFound

    columns = [Column(n, t) for n, t in cursor["columns"]]
    names = [c.name for c in columns]
    full, version, run = cursor["full"], cursor["version"], cursor["run"]
    staging = store.staging_table(run)
    expected = names if full else [*names, *_META]
    if "copy" in cursor:
        c = cursor["copy"]  # the names are the run's; only the result's types are kept (cursors stay small)
        result = sql.Result(c["statement_id"], list(zip(expected, c["types"], strict=True)), c["chunks"], c["rows"],
                            None)
    else:
        stmt = (snapshot_statement(table, names, version) if full else
                changes_statement(table, names, cursor["start"], version))
        result = sql.run(w, warehouse_id, stmt, cursor, "copy", deadline)
        got = [n for n, _ in result.columns]
        if got != expected:
            raise sql.StatementFailed(f"{table.source}: the warehouse answered columns {got}, not {expected}")
        cursor["copy"] = {"statement_id": result.statement_id, "types": [t for _, t in result.columns],
                          "chunks": result.chunk_count, "rows": result.row_count}
        if full:
            store.drop_table(staging)
            store.ensure_table(staging, columns, table.primary_keys)
    try:
        for index, rows in sql.chunks(w, result, cursor["next"]):
            if full:
                store.upsert(staging, names, rows, table.primary_keys)
            else:
                _apply_changes(store, target, names, rows, table.primary_keys)
            cursor["next"], cursor["copied"] = index + 1, cursor["copied"] + len(rows)
            if time.monotonic() > deadline and cursor["next"] < result.chunk_count:
                note = f"copied {cursor['next']} of {result.chunk_count} chunks of version {version}"
                return "progress", note, cursor
    except NotFound:
        # The result is kept one hour after success (Databricks REST API, "Execute a SQL statement",
        # https://docs.databricks.com/api/workspace/statementexecution/executestatement): select the rows again.
        del cursor["copy"]
        cursor["next"] = cursor["copied"] = 0
        return "progress", f"the result of statement {result.statement_id} expired: selecting the rows again", cursor
    if cursor["copied"] != result.row_count:
        raise sql.StatementFailed(f"{table.source}: read {cursor['copied']} of the {result.row_count} rows of "
                                  f"statement {result.statement_id}")
    if full:
        store.replace(target, staging)
    store.set_sync_state(target, version, mode)
    store.release(target, run)
    kind = f"full copy of {result.row_count} rows" if full else f"{result.row_count} changes"
    return "ready", f"{cursor['why']}{kind} to version {version}", None


def _apply_changes(store: OnlineStore, target: str, names: list[str], rows: list[list[Any]],
                   primary_keys: list[str]) -> None:
    """Apply a change feed in commit order: inserts and post-images upsert, deletes delete.
    Each row is the data columns ``names`` followed by _change_type and _commit_version."""
    n = len(names)
    key_idx = [names.index(k) for k in primary_keys]
    run: list[list[Any]] = []
    run_kind = None

    def flush() -> None:
        if not run:
            return
        if run_kind == "delete":
            store.delete(target, primary_keys, [[r[i] for i in key_idx] for r in run])
        else:
            store.upsert(target, names, [r[:n] for r in run], primary_keys)
        run.clear()

    for row in rows:
        this = "delete" if row[n] == "delete" else "upsert"
        if this != run_kind:
            flush()
            run_kind = this
        run.append(row)
    flush()
