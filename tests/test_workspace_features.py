"""The local workspace's data plane through the real databricks-sdk over HTTP: Unity Catalog tables
on Delta, the SQL Statement Execution API on DuckDB, the Online Feature Store, Lakebase synced
tables and their sync pipelines, with online tables in SQLite and in PostgreSQL.

One workspace (SQLite online store) serves the module; every test uses its own table and store
names. The PostgreSQL test starts the local cluster when it is down and drops what it created.
"""

from __future__ import annotations

import sqlite3
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from databricks.sdk import WorkspaceClient
from databricks.sdk.errors import (
    BadRequest,
    InvalidParameterValue,
    InvalidState,
    NotFound,
    NotImplemented,
    ResourceAlreadyExists,
    ResourceConflict,
)
from databricks.sdk.service.database import (
    SyncedDatabaseTable,
    SyncedTableSchedulingPolicy,
    SyncedTableSpec,
    SyncedTableState,
)
from databricks.sdk.service.ml import OnlineStore, OnlineStoreState, PublishSpec, PublishSpecPublishMode
from databricks.sdk.service.pipelines import PipelineState
from databricks.sdk.service.sql import (
    ColumnInfoTypeName,
    StatementParameterListItem,
    StatementResponse,
    StatementState,
)

from local.services import ensure_postgres
from local.workspace import LocalWorkspace
from shared.online_store import OnlineStore as Store
from shared.online_store import physical_name

TOKEN = "features-token"
WAREHOUSE = "local0warehouse1"
ONLINE = SyncedTableState.SYNCED_TABLE_ONLINE_NO_PENDING_UPDATE


# ---------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalWorkspace]:
    root = tmp_path_factory.mktemp("features")
    workspace = LocalWorkspace(token=TOKEN, registry_uri=f"sqlite:///{root / 'mlflow.db'}", data_dir=root / "ws")
    workspace.faults.store_provisioning_seconds = 0.3
    workspace.faults.sync_provisioning_seconds = 0.05
    with workspace:
        yield workspace


@pytest.fixture(scope="module")
def w(ws: LocalWorkspace) -> WorkspaceClient:
    return WorkspaceClient(host=ws.url, token=TOKEN)


def unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


def wait_for(cond: Callable[[], Any], what: str, timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = cond()
        if last:
            return last
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}; last: {last!r}")


def features(n_dupes: bool = True) -> pd.DataFrame:
    """Entity 1 once, entity 2 twice (the later timestamp must win), one row with a NULL key."""
    return pd.DataFrame({
        "customer_id": pd.array([1, 2, 2, None, 3], dtype="Int64"),
        "ts": pd.to_datetime(["2024-01-01", "2024-01-01", "2024-01-05", "2024-01-02", "2024-01-03"]),
        "spend": [10.0, 20.0, 25.0, 99.0, 30.0],
        "segment": ["a", "b", "b2", "z", "c"],
        "active": [True, False, True, True, False],
    })


def available_store(w: WorkspaceClient) -> str:
    name = unique("store").replace("_", "-")
    w.feature_store.create_online_store(OnlineStore(name=name, capacity="CU_1"))
    wait_for(lambda: w.feature_store.get_online_store(name).state == OnlineStoreState.AVAILABLE, "store AVAILABLE")
    return name


def publish(w: WorkspaceClient, source: str, store: str, online: str, mode: PublishSpecPublishMode) -> str:
    res = w.feature_store.publish_table(source, PublishSpec(online_store=store, online_table_name=online,
                                                            publish_mode=mode))
    assert res.online_table_name == online and res.pipeline_id
    return res.pipeline_id


def synced(w: WorkspaceClient, name: str, state: SyncedTableState = ONLINE, version: int | None = None,
           timeout: float = 20.0) -> SyncedDatabaseTable:
    def ready() -> SyncedDatabaseTable | None:
        t = w.database.get_synced_database_table(name)
        status = t.data_synchronization_status
        if status.detailed_state != state:
            return None
        if version is not None and (status.last_sync is None or
                                    status.last_sync.delta_table_sync_info.delta_commit_version != version):
            return None
        return t

    return wait_for(ready, f"{name} in {state.value} at version {version}", timeout)


def sqlite_rows(ws: LocalWorkspace, online: str) -> list[tuple]:
    path = ws.online_store_url[len("sqlite:///"):]
    with closing(sqlite3.connect(path)) as con:
        return con.execute(f'SELECT customer_id, ts, spend, segment, active FROM "{physical_name(online)}" '
                           "ORDER BY customer_id").fetchall()


def run_sql(w: WorkspaceClient, statement: str, **kwargs: Any) -> StatementResponse:
    return w.statement_execution.execute_statement(statement, WAREHOUSE, wait_timeout="30s", **kwargs)


# ---------------------------------------------------------------------------------- Unity Catalog tables
def test_table_info_has_primary_key_constraint_and_cdf_property(ws: LocalWorkspace, w: WorkspaceClient) -> None:
    name = f"main.{unique('uc')}.customers"
    ws.catalog.create_table(name, features(), primary_keys=["customer_id"], timeseries_key="ts",
                            change_data_feed=True)
    info = w.tables.get(name)
    assert (info.catalog_name, info.full_name, info.table_type.value, info.data_source_format.value) == (
        "main", name, "MANAGED", "DELTA")
    assert info.storage_location.startswith("file://") and info.table_id
    assert [(c.name, c.type_name.value, c.type_text, c.position) for c in info.columns] == [
        ("customer_id", "LONG", "bigint", 0), ("ts", "TIMESTAMP", "timestamp", 1), ("spend", "DOUBLE", "double", 2),
        ("segment", "STRING", "string", 3), ("active", "BOOLEAN", "boolean", 4)]
    assert info.properties["delta.enableChangeDataFeed"] == "true"
    pk = info.table_constraints[0].primary_key_constraint
    assert pk.child_columns == ["customer_id", "ts"] and pk.timeseries_columns == ["ts"] and pk.name
    assert w.tables.exists(name).table_exists is True
    assert w.tables.exists(name + "_nope").table_exists is False
    with pytest.raises(NotFound) as err:
        w.tables.get(name + "_nope")
    assert err.value.error_code == "TABLE_DOES_NOT_EXIST" and name + "_nope" in str(err.value)


# ---------------------------------------------------------------------------------- SQL statements
def test_select_over_many_chunks_returns_every_row_as_strings(ws: LocalWorkspace, w: WorkspaceClient) -> None:
    name = f"main.{unique('sql')}.big"
    n = 45_000
    ws.catalog.create_table(name, pd.DataFrame({
        "id": range(n), "score": [i / 4 for i in range(n)], "label": [f"l{i % 7}" for i in range(n)],
        "flag": [i % 2 == 0 for i in range(n)],
        "at": pd.Timestamp("2024-01-02 03:04:05.123456") + pd.to_timedelta(range(n), unit="s"),
    }), primary_keys=["id"])
    resp = run_sql(w, f"SELECT * FROM `{name.replace('.', '`.`')}` ORDER BY id")
    assert resp.status.state == StatementState.SUCCEEDED
    m = resp.manifest
    assert [(c.name, c.type_name, c.position) for c in m.schema.columns] == [
        ("id", ColumnInfoTypeName.LONG, 0), ("score", ColumnInfoTypeName.DOUBLE, 1),
        ("label", ColumnInfoTypeName.STRING, 2), ("flag", ColumnInfoTypeName.BOOLEAN, 3),
        ("at", ColumnInfoTypeName.TIMESTAMP, 4)]
    assert m.total_row_count == n and m.total_chunk_count == 3 and len(m.chunks) == 3
    rows, chunk, index = [], resp.result, 0
    while True:
        assert chunk.chunk_index == index and chunk.row_offset == len(rows)
        rows.extend(chunk.data_array)
        if chunk.next_chunk_index is None:
            break
        assert chunk.next_chunk_internal_link.endswith(f"/result/chunks/{chunk.next_chunk_index}")
        index = chunk.next_chunk_index
        chunk = w.statement_execution.get_statement_result_chunk_n(resp.statement_id, index)
    assert len(rows) == n and [int(r[0]) for r in rows] == list(range(n))
    assert rows[1] == ["1", "0.25", "l1", "false", "2024-01-02T03:04:06.123Z"]
    assert rows[4] == ["4", "1.0", "l4", "true", "2024-01-02T03:04:09.123Z"]
    assert all(isinstance(v, str) for r in rows for v in r)
    # Chunks can be read again, in any order; one past the end is out of bounds.
    again = w.statement_execution.get_statement_result_chunk_n(resp.statement_id, 1)
    assert again.data_array[0][0] == "20000" and again.row_count == 20_000
    with pytest.raises(InvalidParameterValue, match="chunk_index 3 is out of bounds"):
        w.statement_execution.get_statement_result_chunk_n(resp.statement_id, 3)

    # Named parameters, the asynchronous mode (0s -> PENDING, then poll), aggregates.
    pending = w.statement_execution.execute_statement(
        f"SELECT count(*) AS n, max(id) AS top FROM {name} WHERE label = :label AND id < :limit", WAREHOUSE,
        wait_timeout="0s", parameters=[StatementParameterListItem(name="label", value="l3"),
                                       StatementParameterListItem(name="limit", value="100", type="INT")])
    assert pending.status.state == StatementState.PENDING and pending.manifest is None
    done = wait_for(lambda: (r := w.statement_execution.get_statement(pending.statement_id)).status.state
                    not in (StatementState.PENDING, StatementState.RUNNING) and r, "the statement")
    assert done.status.state == StatementState.SUCCEEDED and done.result.data_array == [["14", "94"]]


def test_failed_statement_is_http_200_with_state_failed(ws: LocalWorkspace, w: WorkspaceClient) -> None:
    resp = run_sql(w, "SELECT * FROM main.nowhere.missing_table")
    assert resp.status.state == StatementState.FAILED and resp.manifest is None and resp.result is None
    assert resp.status.error.error_code.value == "BAD_REQUEST"
    assert resp.status.error.message.startswith("[TABLE_OR_VIEW_NOT_FOUND] The table or view "
                                                "`main`.`nowhere`.`missing_table` cannot be found")
    assert resp.status.sql_state == "42P01"
    assert w.statement_execution.get_statement(resp.statement_id).status.state == StatementState.FAILED
    with pytest.raises(NotFound):
        w.statement_execution.get_statement_result_chunk_n(resp.statement_id, 0)
    bad = run_sql(w, "SELECT nope FROM (SELECT 1 AS a)")
    assert bad.status.error.message.startswith("[UNRESOLVED_COLUMN")
    assert run_sql(w, "SELECT 1; SELECT 2").status.error.message.startswith("[PARSE_SYNTAX_ERROR]")
    # A running statement can be canceled (DuckDB is interrupted).
    slow = w.statement_execution.execute_statement("SELECT count(*) FROM range(100000000000)", WAREHOUSE,
                                                   wait_timeout="0s")
    w.statement_execution.cancel_execution(slow.statement_id)
    wait_for(lambda: w.statement_execution.get_statement(slow.statement_id).status.state == StatementState.CANCELED,
             "the statement to be canceled")
    with pytest.raises(BadRequest):
        w.statement_execution.execute_statement("SELECT 1", "")
    with pytest.raises(InvalidParameterValue, match="between 5 seconds and 50 seconds"):
        w.statement_execution.execute_statement("SELECT 1", WAREHOUSE, wait_timeout="51s")


def test_a_starting_warehouse_keeps_statements_pending(ws: LocalWorkspace, w: WorkspaceClient) -> None:
    """Fault ``statement_pending_seconds``: "0s" answers PENDING at once and polling shows PENDING
    until the warehouse is up; a short wait_timeout answers PENDING with only the id when it
    passes first; a statement canceled while PENDING never runs."""
    ws.faults.statement_pending_seconds = 1.5
    try:
        started = time.monotonic()
        queued = w.statement_execution.execute_statement("SELECT 42 AS n", WAREHOUSE, wait_timeout="0s")
        assert queued.status.state == StatementState.PENDING and queued.manifest is None
        assert w.statement_execution.get_statement(queued.statement_id).status.state == StatementState.PENDING
        canceled = w.statement_execution.execute_statement("SELECT 1", WAREHOUSE, wait_timeout="0s")
        w.statement_execution.cancel_execution(canceled.statement_id)
        waited = w.statement_execution.execute_statement("SELECT 7 AS n", WAREHOUSE, wait_timeout="5s")
        assert waited.status.state == StatementState.SUCCEEDED and waited.result.data_array == [["7"]]
        assert 1.4 <= time.monotonic() - started < 5
        # The queued statement left PENDING with the waited one; the two run side by side, so it may
        # still be RUNNING here: a client polls until it ends, as the product does on its next pass.
        deadline = time.monotonic() + 5
        while (done := w.statement_execution.get_statement(queued.statement_id)).status.state in (
                StatementState.PENDING, StatementState.RUNNING) and time.monotonic() < deadline:
            assert done.status.state == StatementState.RUNNING
            time.sleep(0.02)
        assert done.status.state == StatementState.SUCCEEDED and done.result.data_array == [["42"]]
        assert done.manifest.truncated is False
        assert w.statement_execution.get_statement(canceled.statement_id).status.state == StatementState.CANCELED
    finally:
        ws.faults.statement_pending_seconds = 0.0


def test_table_changes_takes_a_quoted_multi_part_name(ws: LocalWorkspace, w: WorkspaceClient) -> None:
    name = f"main.{unique('q')}-s.t`x'y"
    ws.catalog.create_table(name, pd.DataFrame({"id": [1]}), primary_keys=["id"], change_data_feed=True)
    ws.catalog.upsert_rows(name, [{"id": 2}])
    quoted = ".".join("`" + p.replace("`", "``") + "`" for p in name.split("."))
    literal = "'" + quoted.replace("'", "\\'") + "'"
    resp = run_sql(w, f"SELECT id, _change_type FROM table_changes({literal}, 1, 1)")
    assert resp.status.state == StatementState.SUCCEEDED, resp.status
    assert resp.result.data_array == [["2", "insert"]]
    assert run_sql(w, f"SELECT id FROM {quoted} ORDER BY id").result.data_array == [["1"], ["2"]]
    bad = run_sql(w, "SELECT * FROM table_changes('`main`.`s` x', 1)")
    assert bad.status.error.message.startswith("[INVALID_IDENTIFIER]")


def test_table_changes_after_upsert_shows_update_postimage(ws: LocalWorkspace, w: WorkspaceClient) -> None:
    name = f"main.{unique('cdf')}.accounts"
    ws.catalog.create_table(name, pd.DataFrame({"id": [1, 2], "balance": [10.0, 20.0]}), primary_keys=["id"],
                            change_data_feed=True)
    v1 = ws.catalog.upsert_rows(name, [{"id": 2, "balance": 25.0}, {"id": 3, "balance": 30.0}])
    v2 = ws.catalog.delete_rows(name, [1])
    assert (v1, v2) == (1, 2) and ws.catalog.version(name) == 2
    resp = run_sql(w, f"SELECT id, balance, _change_type, _commit_version FROM table_changes('{name}', 1) "
                      "ORDER BY _commit_version, id, _change_type")
    assert resp.status.state == StatementState.SUCCEEDED, resp.status
    assert resp.result.data_array == [
        ["2", "25.0", "update_postimage", "1"], ["2", "20.0", "update_preimage", "1"], ["3", "30.0", "insert", "1"],
        ["1", "10.0", "delete", "2"]]
    assert {c.name: c.type_name for c in resp.manifest.schema.columns}["_commit_version"] == ColumnInfoTypeName.LONG
    catalog, schema, table = name.split(".")
    now = run_sql(w, "SELECT id FROM accounts ORDER BY id", catalog=catalog, schema=schema)
    assert now.result.data_array == [["2"], ["3"]]
    then = run_sql(w, f"SELECT id FROM {schema}.{table} VERSION AS OF 0 ORDER BY id", catalog=catalog)
    assert then.result.data_array == [["1"], ["2"]]
    assert run_sql(w, f"SELECT * FROM {name} VERSION AS OF 9").status.error.message.startswith(
        "[DELTA_VERSION_NOT_FOUND]")
    history = run_sql(w, f"DESCRIBE HISTORY {name} LIMIT 1")
    cols = [c.name for c in history.manifest.schema.columns]
    assert history.result.data_array[0][cols.index("version")] == "2"
    assert history.result.data_array[0][cols.index("operation")] == "MERGE"


def test_alter_tblproperties_turns_the_change_data_feed_on(ws: LocalWorkspace, w: WorkspaceClient) -> None:
    name = f"main.{unique('alter')}.t"
    ws.catalog.create_table(name, pd.DataFrame({"id": [1], "v": ["a"]}), primary_keys=["id"])
    assert "delta.enableChangeDataFeed" not in w.tables.get(name).properties
    off = run_sql(w, f"SELECT * FROM table_changes('{name}', 0)")
    assert off.status.state == StatementState.FAILED
    assert off.status.error.message.startswith("[DELTA_MISSING_CHANGE_DATA]")
    alter = run_sql(w, f"ALTER TABLE {name} SET TBLPROPERTIES ('delta.enableChangeDataFeed' = 'true')")
    assert alter.status.state == StatementState.SUCCEEDED
    assert w.tables.get(name).properties["delta.enableChangeDataFeed"] == "true"
    enabled_at = ws.catalog.version(name)
    changed = ws.catalog.upsert_rows(name, [{"id": 1, "v": "b"}])
    resp = run_sql(w, f"SELECT v, _change_type FROM table_changes('{name}', {enabled_at + 1}) ORDER BY _change_type")
    assert resp.result.data_array == [["b", "update_postimage"], ["a", "update_preimage"]]
    assert changed == enabled_at + 1
    before = run_sql(w, f"SELECT * FROM table_changes('{name}', {enabled_at - 1})")
    assert before.status.error.message.startswith("[DELTA_MISSING_CHANGE_DATA]")


# ---------------------------------------------------------------------------------- online stores
def test_online_store_lifecycle(ws: LocalWorkspace, w: WorkspaceClient) -> None:
    name = unique("shop").replace("_", "-")
    created = w.feature_store.create_online_store(OnlineStore(name=name, capacity="CU_2"))
    assert created.state == OnlineStoreState.STARTING and created.creator and created.read_replica_count == 0
    wait_for(lambda: w.feature_store.get_online_store(name).state == OnlineStoreState.AVAILABLE, "AVAILABLE")
    assert name in [s.name for s in w.feature_store.list_online_stores()]
    with pytest.raises(ResourceAlreadyExists):
        w.feature_store.create_online_store(OnlineStore(name=name, capacity="CU_1"))
    with pytest.raises(InvalidParameterValue, match="CU_1, CU_2, CU_4, CU_8"):
        w.feature_store.create_online_store(OnlineStore(name=unique("x").replace("_", "-"), capacity="CU_3"))
    updated = w.feature_store.update_online_store(name, OnlineStore(name=name, capacity="CU_4"), "capacity")
    assert updated.capacity == "CU_4" and updated.state == OnlineStoreState.UPDATING

    held = unique("held").replace("_", "-")
    ws.faults.store_unavailable = [held]
    try:
        w.feature_store.create_online_store(OnlineStore(name=held, capacity="CU_1"))
        time.sleep(ws.faults.store_provisioning_seconds + 0.2)
        assert w.feature_store.get_online_store(held).state == OnlineStoreState.STOPPED
        source = f"main.{unique('held')}.t"
        ws.catalog.create_table(source, features(), primary_keys=["customer_id"])
        with pytest.raises(InvalidState, match="STOPPED"):
            publish(w, source, held, source + "_online", PublishSpecPublishMode.SNAPSHOT)
    finally:
        ws.faults.store_unavailable = []
    w.feature_store.delete_online_store(name)
    with pytest.raises(NotFound):
        w.feature_store.get_online_store(name)


# ---------------------------------------------------------------------------------- publishing
def test_publish_needs_a_primary_key_and_the_change_data_feed(ws: LocalWorkspace, w: WorkspaceClient) -> None:
    store = available_store(w)
    no_pk = f"main.{unique('nopk')}.t"
    ws.catalog.create_table(no_pk, features(), change_data_feed=True)
    with pytest.raises(InvalidParameterValue) as err:
        publish(w, no_pk, store, no_pk + "_online", PublishSpecPublishMode.TRIGGERED)
    assert no_pk in str(err.value) and "primary key" in str(err.value)

    no_cdf = f"main.{unique('nocdf')}.t"
    ws.catalog.create_table(no_cdf, features(), primary_keys=["customer_id"], timeseries_key="ts")
    for mode in (PublishSpecPublishMode.TRIGGERED, PublishSpecPublishMode.CONTINUOUS):
        with pytest.raises(InvalidParameterValue, match=r"delta\.enableChangeDataFeed"):
            publish(w, no_cdf, store, no_cdf + "_online", mode)
    with pytest.raises(NotFound):
        publish(w, no_cdf + "_missing", store, no_cdf + "_x", PublishSpecPublishMode.SNAPSHOT)
    # SNAPSHOT copies in full and needs no change data feed.
    publish(w, no_cdf, store, no_cdf + "_online", PublishSpecPublishMode.SNAPSHOT)
    synced(w, no_cdf + "_online")
    assert len(sqlite_rows(ws, no_cdf + "_online")) == 3


def test_publish_copies_rows_keyed_without_null_keys_latest_timestamp_wins(
        ws: LocalWorkspace, w: WorkspaceClient) -> None:
    store = available_store(w)
    source = f"main.{unique('pub')}.customers"
    online = source + "_online"
    ws.catalog.create_table(source, features(), primary_keys=["customer_id"], timeseries_key="ts",
                            change_data_feed=True)
    pipeline_id = publish(w, source, store, online, PublishSpecPublishMode.TRIGGERED)
    table = synced(w, online, version=0)
    status = table.data_synchronization_status
    assert status.pipeline_id == pipeline_id and table.unity_catalog_provisioning_state.value == "ACTIVE"
    assert status.last_sync.sync_end_timestamp >= status.last_sync.sync_start_timestamp
    assert status.last_sync.delta_table_sync_info.delta_commit_timestamp.endswith("Z")
    assert table.spec.primary_key_columns == ["customer_id"] and table.spec.timeseries_key == "ts"
    assert table.effective_database_instance_name == store
    assert sqlite_rows(ws, online) == [
        (1, "2024-01-01T00:00:00.000000Z", 10.0, "a", 1),
        (2, "2024-01-05T00:00:00.000000Z", 25.0, "b2", 1),
        (3, "2024-01-03T00:00:00.000000Z", 30.0, "c", 0)]
    ref = ws.online_catalog.resolve(source)
    assert ref is not None and (ref.online_table, ref.physical_table, ref.primary_keys) == (
        online, physical_name(online), ("customer_id",))
    with closing(Store(ref.store_url)) as st:
        assert st.lookup(ref.physical_table, ["customer_id"], [(2,), (9,)])[0]["spend"] == 25.0
        assert st.sync_state(ref.physical_table)["source_version"] == 0
    assert w.pipelines.get(pipeline_id).state == PipelineState.IDLE
    assert online in [t.name for t in w.database.list_synced_database_tables(store)]


def test_source_changes_reach_the_online_table_on_publish_and_start_update(
        ws: LocalWorkspace, w: WorkspaceClient) -> None:
    store = available_store(w)
    source = f"main.{unique('inc')}.customers"
    online = source + "_online"
    ws.catalog.create_table(source, features(), primary_keys=["customer_id"], timeseries_key="ts",
                            change_data_feed=True)
    pipeline_id = publish(w, source, store, online, PublishSpecPublishMode.TRIGGERED)
    synced(w, online, version=0)
    ws.catalog.upsert_rows(source, [{"customer_id": 1, "ts": pd.Timestamp("2024-02-01"), "spend": 11.0,
                                     "segment": "a2", "active": True}])
    v = ws.catalog.delete_rows(source, [(3, pd.Timestamp("2024-01-03"))])
    # Publishing again triggers a sync; until then the online table keeps its old rows.
    assert [r[0] for r in sqlite_rows(ws, online)] == [1, 2, 3]
    assert publish(w, source, store, online, PublishSpecPublishMode.TRIGGERED) == pipeline_id
    synced(w, online, version=v)
    assert sqlite_rows(ws, online) == [(1, "2024-02-01T00:00:00.000000Z", 11.0, "a2", 1),
                                       (2, "2024-01-05T00:00:00.000000Z", 25.0, "b2", 1)]
    # Deleting the latest row of a key brings back the previous one (the timeseries tie-break).
    v = ws.catalog.delete_rows(source, [(2, pd.Timestamp("2024-01-05"))])
    update = w.pipelines.start_update(pipeline_id)
    assert update.update_id
    table = synced(w, online, version=v)
    assert table.data_synchronization_status.triggered_update_status.last_processed_commit_version == v
    assert [r[:3] for r in sqlite_rows(ws, online)][1] == (2, "2024-01-01T00:00:00.000000Z", 20.0)
    assert w.pipelines.get(pipeline_id).latest_updates[0].update_id == update.update_id
    with closing(Store(ws.online_store_url)) as st:
        assert st.sync_state(physical_name(online)) | {"synced_at": 0} == {
            "source_version": v, "synced_at": 0, "mode": "TRIGGERED"}


def test_continuous_publish_picks_up_a_change_without_a_trigger(ws: LocalWorkspace, w: WorkspaceClient) -> None:
    store = available_store(w)
    source = f"main.{unique('cont')}.customers"
    online = source + "_online"
    ws.catalog.create_table(source, features(), primary_keys=["customer_id"], change_data_feed=True)
    pipeline_id = publish(w, source, store, online, PublishSpecPublishMode.CONTINUOUS)
    continuous = SyncedTableState.SYNCED_TABLE_ONLINE_CONTINUOUS_UPDATE
    synced(w, online, state=continuous, version=0)
    # Without a timeseries key, duplicate keys in the source leave one of their rows online.
    assert [r[0] for r in sqlite_rows(ws, online)] == [1, 2, 3]
    v = ws.catalog.upsert_rows(source, [{"customer_id": 4, "ts": pd.Timestamp("2024-03-01"), "spend": 40.0,
                                         "segment": "d", "active": True}])
    table = synced(w, online, state=continuous, version=v)
    assert table.data_synchronization_status.continuous_update_status.last_processed_commit_version == v
    assert sqlite_rows(ws, online)[-1] == (4, "2024-03-01T00:00:00.000000Z", 40.0, "d", 1)
    assert w.pipelines.get(pipeline_id).state == PipelineState.RUNNING
    with pytest.raises(ResourceConflict):
        w.pipelines.start_update(pipeline_id)  # a running continuous pipeline has its update
    assert publish(w, source, store, online, PublishSpecPublishMode.CONTINUOUS) == pipeline_id  # a no-op


def test_sync_fail_fault_fails_the_pipeline_with_a_message(ws: LocalWorkspace, w: WorkspaceClient) -> None:
    store = available_store(w)
    source = f"main.{unique('fail')}.customers"
    online = source + "_online"
    ws.catalog.create_table(source, features(), primary_keys=["customer_id"], timeseries_key="ts",
                            change_data_feed=True)
    pipeline_id = publish(w, source, store, online, PublishSpecPublishMode.TRIGGERED)
    synced(w, online, version=0)
    ws.faults.sync_fail = [online]
    try:
        v = ws.catalog.upsert_rows(source, [{"customer_id": 1, "ts": pd.Timestamp("2024-05-01"), "spend": 1.0,
                                             "segment": "x", "active": True}])
        w.pipelines.start_update(pipeline_id)
        failed = synced(w, online, state=SyncedTableState.SYNCED_TABLE_ONLINE_PIPELINE_FAILED)
        status = failed.data_synchronization_status
        assert "sync_fail" in status.message and status.failed_status.last_processed_commit_version == 0
        assert status.last_sync.delta_table_sync_info.delta_commit_version == 0  # the last good sync
        pipeline = w.pipelines.get(pipeline_id)
        assert pipeline.state == PipelineState.FAILED and "sync_fail" in pipeline.cause

        never = f"main.{unique('never')}.t"
        ws.catalog.create_table(never, features(), primary_keys=["customer_id"])
        ws.faults.sync_fail = [online, never + "_online"]
        publish(w, never, store, never + "_online", PublishSpecPublishMode.SNAPSHOT)
        offline = synced(w, never + "_online", state=SyncedTableState.SYNCED_TABLE_OFFLINE_FAILED)
        assert offline.data_synchronization_status.last_sync is None
    finally:
        ws.faults.sync_fail = []
    w.pipelines.start_update(pipeline_id)  # a failed pipeline runs again when triggered
    synced(w, online, version=v)
    assert sqlite_rows(ws, online)[0][2] == 1.0


# ---------------------------------------------------------------------------------- synced tables
def test_standalone_synced_table_create_list_delete(ws: LocalWorkspace, w: WorkspaceClient) -> None:
    source = f"main.{unique('syn')}.events"
    ws.catalog.create_table(source, features())  # no constraint: the spec names the key
    name = f"main.{unique('syn')}.events_synced"
    spec = SyncedTableSpec(source_table_full_name=source, primary_key_columns=["customer_id"], timeseries_key="ts",
                           scheduling_policy=SyncedTableSchedulingPolicy.SNAPSHOT)
    instance = unique("instance")
    created = w.database.create_synced_database_table(SyncedDatabaseTable(
        name=name, database_instance_name=instance, logical_database_name="features", spec=spec))
    assert created.data_synchronization_status.detailed_state == SyncedTableState.SYNCED_TABLE_PROVISIONING
    assert created.unity_catalog_provisioning_state.value == "PROVISIONING"
    synced(w, name, version=0)
    assert [r[:3] for r in sqlite_rows(ws, name)] == [(1, "2024-01-01T00:00:00.000000Z", 10.0),
                                                      (2, "2024-01-05T00:00:00.000000Z", 25.0),
                                                      (3, "2024-01-03T00:00:00.000000Z", 30.0)]
    assert [t.name for t in w.database.list_synced_database_tables(instance)] == [name]
    with pytest.raises(ResourceAlreadyExists):
        w.database.create_synced_database_table(SyncedDatabaseTable(
            name=name, database_instance_name=instance, logical_database_name="features", spec=spec))
    with pytest.raises(InvalidParameterValue, match=r"delta\.enableChangeDataFeed"):
        w.database.create_synced_database_table(SyncedDatabaseTable(
            name=name + "_t", database_instance_name=instance, logical_database_name="features",
            spec=SyncedTableSpec(source_table_full_name=source, primary_key_columns=["customer_id"],
                                 scheduling_policy=SyncedTableSchedulingPolicy.TRIGGERED)))
    with pytest.raises(NotImplemented):
        w.database.update_synced_database_table(name, SyncedDatabaseTable(name=name), "spec")
    # A SNAPSHOT update re-copies: a key gone from the source goes from the online table.
    pipeline_id = created.data_synchronization_status.pipeline_id
    v = ws.catalog.create_table(source, features().iloc[:3], replace=True)
    assert v == 1
    w.pipelines.start_update(pipeline_id)
    synced(w, name, version=v)
    assert [r[:3] for r in sqlite_rows(ws, name)] == [(1, "2024-01-01T00:00:00.000000Z", 10.0),
                                                      (2, "2024-01-05T00:00:00.000000Z", 25.0)]
    w.database.delete_synced_database_table(name, purge_data=True)
    with pytest.raises(NotFound):
        w.database.get_synced_database_table(name)
    with pytest.raises(sqlite3.OperationalError, match="no such table"):
        sqlite_rows(ws, name)


# ---------------------------------------------------------------------------------- Lakebase = PostgreSQL
@pytest.fixture(scope="module")
def postgres() -> str:
    """PostgreSQL on 127.0.0.1:5432, started if it is down; never skipped."""
    return ensure_postgres()


def test_publish_to_a_postgresql_online_store(postgres: str, tmp_path: Path) -> None:
    import psycopg

    catalog = unique("pgtest")
    source, online = f"{catalog}.fs.customers", f"{catalog}.fs.customers_online"
    physical = physical_name(online)
    ws = LocalWorkspace(token=TOKEN, registry_uri=f"sqlite:///{tmp_path / 'mlflow.db'}", data_dir=tmp_path / "ws",
                        online_store_url=postgres)
    ws.faults.store_provisioning_seconds = 0.1
    ws.faults.sync_provisioning_seconds = 0.05
    try:
        with ws:
            w = WorkspaceClient(host=ws.url, token=TOKEN)
            ws.catalog.create_table(source, features(), primary_keys=["customer_id"], timeseries_key="ts",
                                    change_data_feed=True)
            store = available_store(w)
            pipeline_id = publish(w, source, store, online, PublishSpecPublishMode.TRIGGERED)
            synced(w, online, version=0)
            query = f'SELECT customer_id, ts, spend, segment, active FROM "{physical}" ORDER BY customer_id'
            with psycopg.connect(postgres) as con:
                rows = con.execute(query).fetchall()
            assert [(r[0], r[1].isoformat(), r[2], r[3], r[4]) for r in rows] == [
                (1, "2024-01-01T00:00:00+00:00", 10.0, "a", True),
                (2, "2024-01-05T00:00:00+00:00", 25.0, "b2", True),
                (3, "2024-01-03T00:00:00+00:00", 30.0, "c", False)]
            assert ws.online_catalog.resolve(source).store_url == postgres
            v = ws.catalog.upsert_rows(source, [{"customer_id": 3, "ts": pd.Timestamp("2024-06-01"),
                                                 "spend": 33.0, "segment": "c2", "active": True}])
            w.pipelines.start_update(pipeline_id)
            synced(w, online, version=v)
            with psycopg.connect(postgres) as con:
                assert con.execute(f'SELECT spend FROM "{physical}" WHERE customer_id = 3').fetchone() == (33.0,)
                state = con.execute('SELECT source_version, mode FROM "_feature_sync_state" WHERE online_table = %s',
                                    (physical,)).fetchone()
            assert state == (v, "TRIGGERED")
            w.feature_store.delete_online_table(online)
            with psycopg.connect(postgres) as con:
                assert con.execute("SELECT to_regclass(%s)", (f'"{physical}"',)).fetchone() == (None,)
    finally:
        with closing(Store(postgres)) as st:
            st.drop_table(physical)
            st.delete("_feature_sync_state", ["online_table"], [(physical,)])
