"""Feature tables published online and in sync before a model serves (issue: online features).

For every feature table of a model: the source must exist with a primary key constraint;
the change data feed is turned on when the publish mode reads it (TRIGGERED, CONTINUOUS);
the online store must exist and be available; the table is published (idempotent:
publishing again only makes sure it is in sync); then it is ready when the online copy holds
the source's latest Delta version, or was synced within the policy's freshness bound.

Stores (Databricks, "Databricks Online Feature Stores",
https://docs.databricks.com/aws/en/machine-learning/feature-store/online-feature-store):
a Databricks Online Feature Store (``feature_store.publish_table``), a Lakebase synced table
(``database.create_synced_database_table``; sync triggered with ``pipelines.start_update``),
or a third-party RDBMS that the app publishes to itself (``shared.features.rdbms``). Status of
the Databricks-side online tables comes from ``database.get_synced_database_table``.

A table's cursor carries what a later pass needs: the ids of statements still running on the
warehouse (``shared.statements``) and, for an RDBMS store, the copy run under way.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from shared import statements as sql
from shared.features import rdbms
from shared.features.failure import FeatureFailure
from shared.online_store import Column
from shared.policy import Features, FeatureTable, OnlineFeatureStore, RdbmsStore

__all__ = ["FeatureFailure", "TableStatus", "check_source", "ensure"]

_ONLINE = {"SYNCED_TABLE_ONLINE", "SYNCED_TABLE_ONLINE_NO_PENDING_UPDATE", "SYNCED_TABLE_ONLINE_CONTINUOUS_UPDATE",
           "SYNCED_TABLE_ONLINE_TRIGGERED_UPDATE", "SYNCED_TABLE_ONLINE_UPDATING_PIPELINE_RESOURCES"}
_IDLE = {"SYNCED_TABLE_ONLINE", "SYNCED_TABLE_ONLINE_NO_PENDING_UPDATE"}
_FAILED = {"SYNCED_TABLE_OFFLINE_FAILED", "SYNCED_TABLE_ONLINE_PIPELINE_FAILED"}


@dataclass(frozen=True)
class TableStatus:
    source: str
    state: str  # ready | pending (wait) | progress (more work now) | failed
    note: str
    cursor: dict[str, Any] | None = None


def check_source(w: Any, warehouse_id: str, table: FeatureTable, mode: str, cursor: dict[str, Any],
                 deadline: float) -> tuple[list[Column], list[str]]:
    """The source exists, has the primary key the policy names, and (unless SNAPSHOT) a change
    data feed, which is turned on here if it is off. Returns its columns (Unity Catalog's, in
    table order) and what was changed."""
    from databricks.sdk.errors import NotFound

    try:
        info = w.tables.get(table.source)
    except NotFound as exc:
        raise FeatureFailure(f"feature table {table.source} does not exist") from exc
    keys = [list(c.primary_key_constraint.child_columns or []) for c in info.table_constraints or []
            if c.primary_key_constraint]
    if not keys:
        wanted = ", ".join(sql.quote_ident(k) for k in table.primary_keys)
        raise FeatureFailure(f"feature table {table.source} has no primary key constraint; add one: "
                             f"ALTER TABLE {sql.quote(table.source)} ADD CONSTRAINT pk PRIMARY KEY ({wanted})")
    if keys[0] != list(table.primary_keys):
        raise FeatureFailure(f"feature table {table.source}: its primary key is {keys[0]}, the policy says "
                             f"{list(table.primary_keys)}")
    columns = [Column(c.name, sql.generic_type(c.type_name.value if c.type_name else "STRING"))
               for c in sorted(info.columns or [], key=lambda c: c.position or 0)]
    props = info.properties or {}
    if mode != "snapshot" and str(props.get("delta.enableChangeDataFeed", "")).lower() != "true":
        sql.run(w, warehouse_id, f"ALTER TABLE {sql.quote(table.source)} SET TBLPROPERTIES "
                "(delta.enableChangeDataFeed = true)", cursor, "cdf", deadline)
        return columns, [f"turned on the change data feed of {table.source}"]
    return columns, []


def _parse_time(text: str | None) -> float | None:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() if text else None


def _online_status(w: Any, table: FeatureTable, source_version: int, features: Features, now: float,
                   retrigger, refresh: bool) -> TableStatus:
    from databricks.sdk.errors import NotFound

    try:
        synced = w.database.get_synced_database_table(table.online_name)
    except NotFound:
        return TableStatus(table.source, "missing", "not published yet")
    status = synced.data_synchronization_status
    state = status.detailed_state.value if status and status.detailed_state else None
    if state in _FAILED:
        return TableStatus(table.source, "failed", f"sync of {table.online_name} failed: {status.message or state}")
    last = status.last_sync if status else None
    version = last.delta_table_sync_info.delta_commit_version if last and last.delta_table_sync_info else None
    synced_at = _parse_time(last.sync_end_timestamp) if last else None
    if state in _ONLINE and version is not None and version >= source_version:
        return TableStatus(table.source, "ready", f"{table.online_name} holds version {version}")
    if state in _ONLINE and not refresh and synced_at is not None and now - synced_at <= features.freshness_seconds:
        return TableStatus(table.source, "ready", f"{table.online_name} synced {now - synced_at:.0f} s ago")
    if state in _IDLE and features.publish_mode != "continuous":
        retrigger(status)
        return TableStatus(table.source, "pending", f"{table.online_name} at version {version}, source at "
                                                    f"{source_version}: sync triggered")
    return TableStatus(table.source, "pending", f"{table.online_name} is {state}")


def _databricks_table(w: Any, warehouse_id: str, features: Features, table: FeatureTable, cursor: dict[str, Any],
                      now: float, deadline: float, refresh: bool) -> TableStatus:
    from databricks.sdk.errors import NotFound
    from databricks.sdk.service import database, ml

    store = features.store
    mode = features.publish_mode.upper()
    if isinstance(store, OnlineFeatureStore):
        try:
            online = w.feature_store.get_online_store(store.name)
        except NotFound:
            w.feature_store.create_online_store(ml.OnlineStore(name=store.name, capacity=store.capacity))
            return TableStatus(table.source, "pending", f"created online store {store.name}")
        state = online.state.value if online.state else None
        if state != "AVAILABLE":
            return TableStatus(table.source, "pending", f"online store {store.name} is {state}")

        def publish(_status: Any = None) -> None:
            w.feature_store.publish_table(table.source, ml.PublishSpec(
                online_store=store.name, online_table_name=table.online_name,
                publish_mode=ml.PublishSpecPublishMode(mode)))
    else:
        def publish(status: Any = None) -> None:
            if status is not None and status.pipeline_id:
                w.pipelines.start_update(status.pipeline_id)
                return
            w.database.create_synced_database_table(database.SyncedDatabaseTable(
                name=table.online_name, database_instance_name=store.database_instance,
                logical_database_name=store.logical_database,
                spec=database.SyncedTableSpec(
                    source_table_full_name=table.source, primary_key_columns=list(table.primary_keys),
                    timeseries_key=table.timeseries_key,
                    scheduling_policy=database.SyncedTableSchedulingPolicy(mode))))

    source_version = sql.current_version(w, warehouse_id, table.source, cursor, deadline)
    status = _online_status(w, table, source_version, features, now, publish, refresh)
    if status.state == "missing":
        try:
            publish()
        except NotFound as exc:
            raise FeatureFailure(str(exc)) from exc
        return TableStatus(table.source, "pending", f"published {table.source} to {table.online_name}")
    return status


def ensure(w: Any, warehouse_id: str, features: Features, settings: Mapping[str, str],
           cursors: Mapping[str, Any], *, now: float, budget_seconds: float,
           only: str | None = None, refresh: bool = False) -> list[TableStatus]:
    """One pass over the model's feature tables (or the one named ``only``). Never waits: a
    statement that has not finished within the step makes its table ``pending`` with the
    statement's id in the cursor, and the next pass looks at it again. ``now``: wall-clock
    time; ``budget_seconds``: how long this pass may copy rows and wait on statements.
    ``refresh``: bring every online copy to the source's latest version, however fresh it is."""
    from databricks.sdk.errors import BadRequest, InvalidParameterValue, InvalidState

    deadline = time.monotonic() + budget_seconds
    out: list[TableStatus] = []
    for table in features.tables:
        if only and table.source != only:
            continue
        cursor: dict[str, Any] = copy.deepcopy(cursors.get(table.source) or {})
        notes: list[str] = []
        try:
            columns, notes = check_source(w, warehouse_id, table, features.publish_mode, cursor, deadline)
            if isinstance(features.store, RdbmsStore):
                status = _rdbms_table(w, warehouse_id, features, table, columns, settings, cursor, now, deadline)
            else:
                status = _databricks_table(w, warehouse_id, features, table, cursor, now, deadline, refresh)
        except sql.StatementPending as exc:
            status = TableStatus(table.source, "pending", f"{exc}: looking again later", cursor)
        except (FeatureFailure, sql.StatementFailed) as exc:
            status, notes = TableStatus(table.source, "failed", str(exc)), []
        except (BadRequest, InvalidParameterValue, InvalidState) as exc:
            # The platform refused the publish itself (no key, no change feed, store state).
            status, notes = TableStatus(table.source, "failed", f"{table.source}: {exc}"), []
        if notes:
            status = TableStatus(status.source, status.state, "; ".join([*notes, status.note]), status.cursor)
        out.append(status)
    return out


def _rdbms_table(w: Any, warehouse_id: str, features: Features, table: FeatureTable, columns: list[Column],
                 settings: Mapping[str, str], cursor: dict[str, Any], now: float, deadline: float) -> TableStatus:
    from shared.online_store import OnlineStore, OnlineStoreError, redact

    assert isinstance(features.store, RdbmsStore)
    name = features.store.connection_setting
    url = settings.get(name)
    if not url:
        raise FeatureFailure(f"app setting {name} (the online store's connection) is not set")
    try:
        with OnlineStore(url) as store:
            state, note, after = rdbms.sync(w, warehouse_id, store, table, columns, features.publish_mode, cursor,
                                            now=now, deadline=deadline)
    except OnlineStoreError as exc:
        # A copy under way keeps its cursor (and its claim, until it expires) to resume from.
        return TableStatus(table.source, "pending", f"online store {redact(url)} unavailable: {exc}", cursor or None)
    return TableStatus(table.source, state, note, after)
