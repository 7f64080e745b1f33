"""Sync pipelines: Delta tables copied to online tables in a real database, with their status.

One engine serves both ways Databricks puts features online: Online Feature Store publishing
(``feature_store.publish_table``) and Lakebase synced tables
(``database.create_synced_database_table``). Each online table belongs to a
pipeline (``pipeline_id``); a pipeline is one background thread that syncs its tables, and
``/api/2.0/pipelines/{id}`` (``w.pipelines``: ``get``, ``start_update``, ``get_update``,
``list_updates``, ``stop``) shows and drives it. Every write to the online store goes through
``shared.online_store.OnlineStore``; every online table is registered in the workspace's
``OnlineCatalog`` so that serving endpoints resolve feature lookups to it.

Behaviour (Databricks "Sync data from Unity Catalog tables to a database instance" and "Publish
features to an online store";
https://docs.databricks.com/aws/en/oltp/sync-data/sync-table,
https://docs.databricks.com/aws/en/machine-learning/feature-store/online-feature-store):

- Initial snapshot: all rows of the source at its current version, keyed by the primary key;
  rows whose key columns are NULL are excluded; rows sharing a key are tie-broken by the
  timeseries key, the latest wins [DOC]. The physical table is ``physical_name(online table)``.
- SNAPSHOT: every update is a full copy (rows gone from the source are deleted online).
  TRIGGERED: an update reads the change data feed since the last synced version
  (``table_changes(source, last + 1)``): inserts and update postimages are upserted, deletes
  deleted. CONTINUOUS: the same, polled about every 0.5 s without a trigger. TRIGGERED and
  CONTINUOUS need ``delta.enableChangeDataFeed`` on the source [DOC JS-SDK].
- The watermark (source version, time, mode) is kept in the store itself
  (``OnlineStore.set_sync_state``) and shown as ``last_sync.delta_table_sync_info``.
- States (``SyncedTableState``): SYNCED_TABLE_PROVISIONING -> _PROVISIONING_PIPELINE_RESOURCES
  -> _PROVISIONING_INITIAL_SNAPSHOT -> _ONLINE_NO_PENDING_UPDATE (SNAPSHOT, TRIGGERED) or
  _ONLINE_CONTINUOUS_UPDATE (CONTINUOUS); _ONLINE_TRIGGERED_UPDATE while a triggered update
  runs; a failed update is _ONLINE_PIPELINE_FAILED, or _OFFLINE_FAILED when the initial snapshot
  failed. ``unity_catalog_provisioning_state`` is PROVISIONING until the online table exists,
  then ACTIVE (the UC entity is distinct from the pipeline state).
- A failed pipeline stays failed until it is triggered again (a publish, ``start_update``):
  no automatic retries [INF]. ``start_update`` while an update runs, or on a running continuous
  pipeline, is ``409 RESOURCE_CONFLICT`` ("If there is already an active update for the pipeline,
  the request will fail", SDK docstring; code [INF]); publishing again while an update runs
  queues one more update instead (publish is idempotent).
- Faults: ``sync_provisioning_seconds`` (pipeline resources), ``sync_fail`` (online table names
  whose syncs fail while they are listed).

Not emulated: schema changes of the source after the online table was created (new columns are
not copied), ``type_overrides``, pipeline event logs. Pipelines live in memory: a restarted
workspace has none (the online tables' data and watermarks stay in the store).
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from databricks.sdk.service import database as db
from databricks.sdk.service import pipelines as pl

from shared.online_store import SYNC_STATE, Column, OnlineStore

from .catalog import UnityCatalog, rfc3339_ms
from .errors import ApiError, conflict, does_not_exist
from .faults import Faults
from .online_catalog import OnlineCatalog, OnlineTableRef
from .sql import duck_ident
from .web import Request, Response, Router

log = logging.getLogger("local.workspace.sync")

SNAPSHOT, TRIGGERED, CONTINUOUS = "SNAPSHOT", "TRIGGERED", "CONTINUOUS"
POLICIES = (SNAPSHOT, TRIGGERED, CONTINUOUS)
POLL_SECONDS = 0.5
WRITE_BATCH = 50_000
MAX_UPDATES = 25

S = db.SyncedTableState
PROVISIONING = S.SYNCED_TABLE_PROVISIONING.value
PROVISIONING_RESOURCES = S.SYNCED_TABLE_PROVISIONING_PIPELINE_RESOURCES.value
INITIAL_SNAPSHOT = S.SYNCED_TABLE_PROVISIONING_INITIAL_SNAPSHOT.value
NO_PENDING = S.SYNCED_TABLE_ONLINE_NO_PENDING_UPDATE.value
TRIGGERED_UPDATE = S.SYNCED_TABLE_ONLINE_TRIGGERED_UPDATE.value
CONTINUOUS_UPDATE = S.SYNCED_TABLE_ONLINE_CONTINUOUS_UPDATE.value
PIPELINE_FAILED = S.SYNCED_TABLE_ONLINE_PIPELINE_FAILED.value
OFFLINE_FAILED = S.SYNCED_TABLE_OFFLINE_FAILED.value


class SyncFailure(Exception):
    """An update of one online table failed; the message becomes the table's status message."""


def generic_type(t: Any) -> str:
    """An Arrow (Delta) type -> an ``OnlineStore`` column type."""
    import pyarrow as pa

    if pa.types.is_boolean(t):
        return "boolean"
    if pa.types.is_integer(t):
        return "bigint"
    if pa.types.is_floating(t) or pa.types.is_decimal(t):
        return "double"
    if pa.types.is_timestamp(t):
        return "timestamp"
    return "string"


def now_rfc3339() -> str:
    return rfc3339_ms(time.time() * 1000)


@dataclass
class OnlineTableSpec:
    """What an online table is: its name, source, key, schedule, and where it came from."""

    name: str  # catalog.schema.table of the online (synced) table
    source: str
    primary_keys: list[str]  # the online key (a timeseries column is not part of it)
    timeseries_key: str | None
    policy: str  # SNAPSHOT | TRIGGERED | CONTINUOUS
    physical: str  # the table's name in the store
    database_instance: str
    logical_database: str
    origin: str  # "feature_store" or "database"
    online_store: str | None = None
    spec: dict[str, Any] = field(default_factory=dict)  # the SyncedTableSpec as created, echoed on GET


@dataclass
class SyncedTable:
    spec: OnlineTableSpec
    pipeline_id: str
    state: str = PROVISIONING
    message: str = "Provisioning the online table."
    uc_state: str = db.ProvisioningInfoState.PROVISIONING.value
    columns: list[Column] = field(default_factory=list)
    last_version: int | None = None
    last_commit_ms: int | None = None
    last_start: float | None = None
    last_end: float | None = None
    failed_version: int | None = None
    failed_at: float | None = None
    synced_rows: int = 0
    total_rows: int = 0
    deleted: bool = False


@dataclass
class Update:
    update_id: str
    cause: str
    full_refresh: bool
    created_ms: int
    state: str = pl.UpdateInfoState.QUEUED.value


@dataclass
class Pipeline:
    id: str
    name: str
    policy: str
    creator: str
    created_ms: int
    tables: list[SyncedTable] = field(default_factory=list)
    state: str = pl.PipelineState.STARTING.value
    cause: str | None = None
    updates: deque[Update] = field(default_factory=lambda: deque(maxlen=MAX_UPDATES))
    queued: deque[Update] = field(default_factory=deque)
    running: Update | None = None
    provisioned: bool = False
    stopped: bool = False  # a continuous pipeline stopped with pipelines.stop
    failed: bool = False
    deleted: bool = False
    wake: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None


class SyncEngine:
    """All online tables and their pipelines. State is guarded by the workspace lock, which is never
    held while data moves."""

    def __init__(self, *, catalog: UnityCatalog, online_catalog: OnlineCatalog, store_url: str,
                 lock: threading.RLock, faults: Faults, stopping: threading.Event, user: str):
        self.catalog = catalog
        self.online_catalog = online_catalog
        self.store_url = store_url
        self.lock = lock
        self.faults = faults
        self._stopping = stopping
        self.user = user
        self._tables: dict[str, SyncedTable] = {}
        self._pipelines: dict[str, Pipeline] = {}

    # ------------------------------------------------------------------ queries (lock held by caller or not)
    def table(self, name: str) -> SyncedTable | None:
        with self.lock:
            t = self._tables.get(name.lower())
            return t if t is not None and not t.deleted else None

    def tables(self) -> list[SyncedTable]:
        with self.lock:
            return [t for t in self._tables.values() if not t.deleted]

    def pipeline(self, pipeline_id: str) -> Pipeline | None:
        with self.lock:
            p = self._pipelines.get(pipeline_id)
            return p if p is not None and not p.deleted else None

    # ------------------------------------------------------------------ lifecycle
    def create(self, spec: OnlineTableSpec, existing_pipeline_id: str | None = None) -> tuple[SyncedTable, dict]:
        """Register a new online table and start (or join) its pipeline; returns at once with the
        table and its ``SyncedDatabaseTable`` as it was created (still PROVISIONING)."""
        with self.lock:
            if existing_pipeline_id:
                p = self._pipelines.get(existing_pipeline_id)
                if p is None or p.deleted:
                    raise does_not_exist(f"Pipeline {existing_pipeline_id} does not exist.")
                if p.policy != spec.policy:
                    raise ApiError(400, "INVALID_PARAMETER_VALUE",
                                   f"The scheduling policy {spec.policy} does not match the scheduling policy "
                                   f"{p.policy} of the existing pipeline {p.id}.")
            else:
                now = int(time.time() * 1000)
                p = Pipeline(id=str(uuid.uuid4()), name=f"Synced table pipeline for {spec.name}", policy=spec.policy,
                             creator=self.user, created_ms=now)
                self._pipelines[p.id] = p
            table = SyncedTable(spec=spec, pipeline_id=p.id)
            self._tables[spec.name] = table
            p.tables.append(table)
            created = self.synced_table(table)
            self._enqueue(p, "API_CALL", full_refresh=False, initial=True)
            self._ensure_thread(p)
            return table, created

    def trigger(self, pipeline_id: str, *, cause: str = "API_CALL", full_refresh: bool = False,
                strict: bool = True) -> str:
        """Start an update of a pipeline; returns its update id. ``strict``: 409 if one is active
        (``pipelines.start_update``); otherwise the update is queued behind it (a publish)."""
        with self.lock:
            p = self._pipelines.get(pipeline_id)
            if p is None or p.deleted:
                raise does_not_exist(f"The pipeline {pipeline_id} does not exist.")
            continuous_running = p.policy == CONTINUOUS and p.provisioned and not (p.failed or p.stopped)
            active = p.running is not None or p.queued
            if strict and (active or continuous_running):
                raise conflict(f"Pipeline {pipeline_id} has an active update; wait for it to finish or stop the "
                               "pipeline before starting a new one.")
            if not strict and continuous_running and not full_refresh:
                return p.updates[0].update_id if p.updates else ""
            if not strict and p.queued:
                return p.queued[-1].update_id  # coalesce: one more update is already waiting
            update = self._enqueue(p, cause, full_refresh=full_refresh, initial=False)
            p.stopped = False
            self._ensure_thread(p)
            return update.update_id

    def stop_pipeline(self, pipeline_id: str) -> None:
        with self.lock:
            p = self._pipelines.get(pipeline_id)
            if p is None or p.deleted:
                raise does_not_exist(f"The pipeline {pipeline_id} does not exist.")
            p.stopped = True
            p.queued.clear()
            p.wake.set()

    def delete(self, name: str, *, purge: bool) -> None:
        """Drop an online table from its pipeline (the pipeline goes when it has no table left);
        ``purge`` drops the physical table and its watermark too."""
        with self.lock:
            t = self._tables.get(name.lower())
            if t is None or t.deleted:
                raise does_not_exist(f"Synced table {name} does not exist.")
            t.deleted = True
            del self._tables[t.spec.name]
            p = self._pipelines.get(t.pipeline_id)
            thread = None
            if p is not None:
                p.tables = [x for x in p.tables if x is not t]
                if not p.tables:
                    p.deleted = True
                    del self._pipelines[p.id]
                    p.wake.set()
                    thread = p.thread
        ref = self.online_catalog.resolve(t.spec.source)
        if ref is not None and ref.online_table == t.spec.name:
            self.online_catalog.forget(t.spec.source)
            sibling = next((x for x in self.tables() if x.spec.source == t.spec.source and x.columns), None)
            if sibling is not None:  # another online table of the same source serves its lookups now
                self._register(sibling)
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=10)
        if purge:
            with contextlib.closing(OnlineStore(self.store_url)) as store:
                store.drop_table(t.spec.physical)
                with contextlib.suppress(Exception):  # no watermark table yet
                    store.delete(SYNC_STATE, ["online_table"], [(t.spec.physical,)])

    def resume(self) -> None:
        """Restart the threads of the pipelines (after the workspace was stopped and started again)."""
        with self.lock:
            for p in self._pipelines.values():
                self._ensure_thread(p)

    def join(self, timeout: float = 5.0) -> None:
        with self.lock:
            threads = [p.thread for p in self._pipelines.values() if p.thread is not None]
            for p in self._pipelines.values():
                p.wake.set()
        deadline = time.monotonic() + timeout
        for thread in threads:
            thread.join(max(deadline - time.monotonic(), 0.0))

    def _enqueue(self, p: Pipeline, cause: str, *, full_refresh: bool, initial: bool) -> Update:
        """Caller holds the lock."""
        update = Update(update_id=str(uuid.uuid4()), cause="API_CALL" if initial else cause,
                        full_refresh=full_refresh or initial, created_ms=int(time.time() * 1000))
        p.updates.appendleft(update)
        p.queued.append(update)
        p.failed = False
        p.wake.set()
        return update

    def _ensure_thread(self, p: Pipeline) -> None:
        """Caller holds the lock."""
        if p.thread is not None and p.thread.is_alive():
            return
        p.thread = threading.Thread(target=self._loop, args=(p,), name=f"sync-{p.id[:8]}", daemon=True)
        p.thread.start()

    # ------------------------------------------------------------------ the pipeline thread
    def _alive(self, p: Pipeline) -> bool:
        return not p.deleted and not self._stopping.is_set()

    def _loop(self, p: Pipeline) -> None:
        store: OnlineStore | None = None
        try:
            while self._alive(p):
                with self.lock:
                    update = p.queued.popleft() if p.queued else None
                    poll = (update is None and p.policy == CONTINUOUS and p.provisioned
                            and not (p.failed or p.stopped))
                    if update is None and not poll:
                        p.wake.clear()
                if update is None and not poll:
                    p.wake.wait(1.0)
                    continue
                if store is None:
                    store = self._provision(p)
                    if store is None:
                        continue
                if update is not None:
                    self._run_update(p, store, update)
                else:
                    self._poll(p, store)
                    p.wake.wait(POLL_SECONDS)
        except Exception:  # never let a pipeline thread die silently
            log.exception("pipeline %s stopped unexpectedly", p.id)
            with self.lock:
                p.state, p.failed, p.cause = pl.PipelineState.FAILED.value, True, "internal error"
        finally:
            if store is not None:
                with contextlib.suppress(Exception):
                    store.close()

    def _provision(self, p: Pipeline) -> OnlineStore | None:
        """PROVISIONING_PIPELINE_RESOURCES: wait the injected delay, connect to the store."""
        with self.lock:
            for t in p.tables:
                if t.last_version is None:
                    t.state, t.message = PROVISIONING_RESOURCES, "Provisioning the pipeline resources."
        if self._stopping.wait(max(self.faults.sync_provisioning_seconds, 0.0)):
            return None
        try:
            return OnlineStore(self.store_url)
        except Exception as exc:
            with self.lock:
                for update in p.queued:
                    update.state = pl.UpdateInfoState.FAILED.value
                p.queued.clear()
                p.state, p.failed, p.cause = pl.PipelineState.FAILED.value, True, str(exc)
                for t in p.tables:
                    t.state = OFFLINE_FAILED if t.last_version is None else PIPELINE_FAILED
                    t.message = f"The pipeline could not reach the online store: {exc}"
            return None

    def _run_update(self, p: Pipeline, store: OnlineStore, update: Update) -> None:
        with self.lock:
            p.running = update
            update.state = pl.UpdateInfoState.RUNNING.value
            p.state, p.cause = pl.PipelineState.RUNNING.value, None
            tables = list(p.tables)
        failures = []
        for t in tables:
            if not self._alive(p):
                break
            try:
                self._sync(p, store, t, full=update.full_refresh, poll=False)
            except Exception as exc:
                failures.append(str(exc))
                self._failed(t, exc)
        with self.lock:
            p.running = None
            p.provisioned = True
            if failures:
                update.state = pl.UpdateInfoState.FAILED.value
                p.state, p.failed, p.cause = pl.PipelineState.FAILED.value, True, failures[0]
            else:
                update.state = pl.UpdateInfoState.COMPLETED.value
                continuous = p.policy == CONTINUOUS and not p.stopped
                p.state = (pl.PipelineState.RUNNING if continuous else pl.PipelineState.IDLE).value

    def _poll(self, p: Pipeline, store: OnlineStore) -> None:
        """One round of a continuous pipeline: sync every table whose source moved on."""
        with self.lock:
            tables = list(p.tables)
        for t in tables:
            if not self._alive(p):
                return
            try:
                self._sync(p, store, t, full=False, poll=True)
            except Exception as exc:
                self._failed(t, exc)
                with self.lock:
                    p.state, p.failed, p.cause = pl.PipelineState.FAILED.value, True, str(exc)
                    if p.updates:
                        p.updates[0].state = pl.UpdateInfoState.FAILED.value

    def _failed(self, t: SyncedTable, exc: Exception) -> None:
        if not isinstance(exc, SyncFailure):
            log.warning("sync of %s failed: %s", t.spec.name, exc)
        with self.lock:
            t.failed_at = time.time()
            t.failed_version = t.last_version
            t.state = OFFLINE_FAILED if t.last_version is None else PIPELINE_FAILED
            t.message = f"The pipeline update failed: {exc}"

    # ------------------------------------------------------------------ one table
    def _sync(self, p: Pipeline, store: OnlineStore, t: SyncedTable, *, full: bool, poll: bool) -> None:
        spec = t.spec
        if spec.name in set(self.faults.sync_fail):
            raise SyncFailure(f"Failed to sync {spec.source} to {spec.name}: the pipeline update was aborted "
                              "(injected fault sync_fail).")
        if not self.catalog.exists(spec.source):
            raise SyncFailure(f"The source table {spec.source} does not exist any more.")
        version = self.catalog.version(spec.source)
        initial = t.last_version is None
        if poll and not initial and version <= (t.last_version or 0):
            return
        started = time.time()
        with self.lock:
            if initial:
                t.state, t.message = INITIAL_SNAPSHOT, f"Copying the initial snapshot of {spec.source}."
            elif p.policy != CONTINUOUS:
                t.state, t.message = TRIGGERED_UPDATE, f"Syncing {spec.source} up to version {version}."
        if initial:
            self._create_online_table(store, t)
        if initial or full or spec.policy == SNAPSHOT:
            self._full_copy(store, t, version, previous=None if initial else t.last_version)
        elif version > (t.last_version or 0):
            self._incremental(store, t, t.last_version or 0, version)
        store.set_sync_state(spec.physical, version, spec.policy)
        commit_ms = self.catalog.commit_timestamp_ms(spec.source, version)
        with self.lock:
            t.last_version, t.last_commit_ms = version, commit_ms
            t.last_start, t.last_end = started, time.time()
            if p.policy == CONTINUOUS and not p.stopped:
                t.state = CONTINUOUS_UPDATE
                t.message = f"Continuously syncing {spec.source}; last synced version {version}."
            else:
                t.state = NO_PENDING
                t.message = f"Online; last synced version {version} of {spec.source}."

    def _create_online_table(self, store: OnlineStore, t: SyncedTable) -> None:
        """The physical table, made anew, and its registration for feature lookups."""
        spec = t.spec
        schema = self.catalog.arrow_schema(spec.source)
        columns = [Column(f.name, generic_type(f.type)) for f in schema]
        store.drop_table(spec.physical)  # a new online table starts empty
        store.ensure_table(spec.physical, columns, spec.primary_keys)
        with self.lock:
            t.columns = columns
            t.uc_state = db.ProvisioningInfoState.ACTIVE.value
        self._register(t)

    def _register(self, t: SyncedTable) -> None:
        spec = t.spec
        self.online_catalog.register(OnlineTableRef(spec.source, spec.name, self.store_url, spec.physical,
                                                    tuple(spec.primary_keys)))

    def _full_copy(self, store: OnlineStore, t: SyncedTable, version: int, previous: int | None) -> None:
        """Upsert the latest row of every key at ``version``; on a re-copy, delete the keys that
        were there at ``previous`` and are gone now."""
        import duckdb

        spec = t.spec
        keys = ", ".join(duck_ident(k) for k in spec.primary_keys)
        not_null = " AND ".join(f"{duck_ident(k)} IS NOT NULL" for k in spec.primary_keys)
        con = duckdb.connect(":memory:", config={"enable_external_access": False})
        try:
            con.register("src", self.catalog.dataset(spec.source, version))
            rows = con.sql(_latest_sql("src", keys, not_null, spec.timeseries_key)).to_arrow_table()
            with self.lock:
                t.synced_rows, t.total_rows = 0, rows.num_rows
            self._write(store, t, rows)
            if previous is not None and previous != version:
                con.register("cur", rows.select(spec.primary_keys))
                try:
                    con.register("prev", self.catalog.dataset(spec.source, previous))
                    gone = con.sql(f"SELECT DISTINCT {keys} FROM prev WHERE {not_null} "
                                   f"ANTI JOIN cur USING ({keys})").to_arrow_table()
                except Exception:  # the previous version is gone (vacuumed): start the table afresh
                    store.drop_table(spec.physical)
                    store.ensure_table(spec.physical, t.columns, spec.primary_keys)
                    self._write(store, t, rows)
                    return
                store.delete(spec.physical, spec.primary_keys, _tuples(gone, spec.primary_keys))
        finally:
            con.close()

    def _incremental(self, store: OnlineStore, t: SyncedTable, last: int, version: int) -> None:
        """Apply the change data feed of versions ``last + 1 .. version``."""
        import duckdb
        import pyarrow.compute as pc

        spec = t.spec
        try:
            changes = self.catalog.changes(spec.source, last + 1, version)
        except Exception as exc:
            raise SyncFailure(f"Could not read the change data feed of {spec.source}: {exc}") from exc
        keys = ", ".join(duck_ident(k) for k in spec.primary_keys)
        not_null = " AND ".join(f"{duck_ident(k)} IS NOT NULL" for k in spec.primary_keys)
        con = duckdb.connect(":memory:", config={"enable_external_access": False})
        try:
            con.register("c", changes)
            if spec.timeseries_key is None:
                last_change = con.sql(
                    f"SELECT * EXCLUDE (__rn) FROM (SELECT *, row_number() OVER (PARTITION BY {keys} ORDER BY "
                    "_commit_version DESC, CASE WHEN _change_type = 'delete' THEN 0 ELSE 1 END DESC) AS __rn "
                    f"FROM c WHERE _change_type <> 'update_preimage' AND {not_null}) WHERE __rn = 1"
                ).to_arrow_table()
                is_delete = pc.equal(last_change["_change_type"], "delete")
                upserts = last_change.filter(pc.invert(is_delete)).select([c.name for c in t.columns])
                deletes = last_change.filter(is_delete).select(spec.primary_keys)
            else:
                # With a timeseries key the online row is the latest of each key in the source:
                # recompute the keys the changes touched from the source at ``version``.
                con.register("src", self.catalog.dataset(spec.source, version))
                con.sql(f"CREATE TEMP TABLE touched AS SELECT DISTINCT {keys} FROM c WHERE {not_null}")
                con.sql(f"CREATE TEMP TABLE src_touched AS SELECT * FROM src SEMI JOIN touched USING ({keys})")
                upserts = con.sql(_latest_sql("src_touched", keys, not_null, spec.timeseries_key)).to_arrow_table()
                con.register("latest", upserts.select(spec.primary_keys))
                deletes = con.sql(f"SELECT {keys} FROM touched ANTI JOIN latest USING ({keys})").to_arrow_table()
            with self.lock:
                t.synced_rows, t.total_rows = 0, upserts.num_rows
            self._write(store, t, upserts)
            store.delete(spec.physical, spec.primary_keys, _tuples(deletes, spec.primary_keys))
        finally:
            con.close()

    def _write(self, store: OnlineStore, t: SyncedTable, rows: Any) -> None:
        names = [c.name for c in t.columns]
        rows = rows.select(names)
        for start in range(0, rows.num_rows, WRITE_BATCH):
            part = rows.slice(start, WRITE_BATCH)
            store.upsert(t.spec.physical, names, _python_rows(part, store.dialect), t.spec.primary_keys)
            with self.lock:
                t.synced_rows += part.num_rows

    # ------------------------------------------------------------------ wire format
    def synced_table(self, t: SyncedTable) -> dict[str, Any]:
        """``SyncedDatabaseTable`` on the wire."""
        with self.lock:
            spec = t.spec
            status = db.SyncedTableStatus(detailed_state=db.SyncedTableState(t.state), message=t.message,
                                          pipeline_id=t.pipeline_id)
            if t.last_version is not None:
                status.last_sync = db.SyncedTablePosition(
                    delta_table_sync_info=db.DeltaTableSyncInfo(
                        delta_commit_version=t.last_version,
                        delta_commit_timestamp=rfc3339_ms(t.last_commit_ms) if t.last_commit_ms else None),
                    sync_start_timestamp=rfc3339_ms((t.last_start or 0) * 1000),
                    sync_end_timestamp=rfc3339_ms((t.last_end or 0) * 1000),
                )
            end = rfc3339_ms(t.last_end * 1000) if t.last_end else None
            progress = db.SyncedTablePipelineProgress(
                synced_row_count=t.synced_rows, total_row_count=t.total_rows,
                sync_progress_completion=(t.synced_rows / t.total_rows) if t.total_rows else None,
                provisioning_phase=db.ProvisioningPhase.PROVISIONING_PHASE_MAIN)
            if t.state in (PROVISIONING_RESOURCES, INITIAL_SNAPSHOT, PROVISIONING):
                status.provisioning_status = db.SyncedTableProvisioningStatus(
                    initial_pipeline_sync_progress=progress if t.state == INITIAL_SNAPSHOT else None)
            elif t.state == CONTINUOUS_UPDATE:
                status.continuous_update_status = db.SyncedTableContinuousUpdateStatus(
                    last_processed_commit_version=t.last_version, timestamp=end)
            elif t.state in (NO_PENDING, TRIGGERED_UPDATE):
                status.triggered_update_status = db.SyncedTableTriggeredUpdateStatus(
                    last_processed_commit_version=t.last_version, timestamp=end,
                    triggered_update_progress=progress if t.state == TRIGGERED_UPDATE else None)
            elif t.state in (PIPELINE_FAILED, OFFLINE_FAILED):
                status.failed_status = db.SyncedTableFailedStatus(
                    last_processed_commit_version=t.failed_version,
                    timestamp=rfc3339_ms(t.failed_at * 1000) if t.failed_at else None)
            return db.SyncedDatabaseTable(
                name=spec.name,
                database_instance_name=spec.database_instance,
                logical_database_name=spec.logical_database,
                effective_database_instance_name=spec.database_instance,
                effective_logical_database_name=spec.logical_database,
                spec=db.SyncedTableSpec.from_dict(spec.spec),
                data_synchronization_status=status,
                unity_catalog_provisioning_state=db.ProvisioningInfoState(t.uc_state),
            ).as_dict()

    def _pipeline_response(self, p: Pipeline) -> dict[str, Any]:
        return pl.GetPipelineResponse(
            pipeline_id=p.id,
            name=p.name,
            state=pl.PipelineState(p.state),
            cause=p.cause,
            health=pl.GetPipelineResponseHealth.UNHEALTHY if p.failed else pl.GetPipelineResponseHealth.HEALTHY,
            creator_user_name=p.creator,
            run_as_user_name=p.creator,
            last_modified=p.created_ms,
            latest_updates=[pl.UpdateStateInfo(update_id=u.update_id, state=pl.UpdateStateInfoState(u.state),
                                               creation_time=rfc3339_ms(u.created_ms)) for u in p.updates] or None,
            spec=pl.PipelineSpec(id=p.id, name=p.name, continuous=p.policy == CONTINUOUS, serverless=True),
        ).as_dict()

    # ------------------------------------------------------------------ REST: /api/2.0/pipelines
    def register(self, router: Router) -> None:
        p = "/api/2.0/pipelines/{pipeline_id}"
        router.add("GET", p, self._get_pipeline)
        router.add("POST", p + "/updates", self._start_update)
        router.add("GET", p + "/updates", self._list_updates)
        router.add("GET", p + "/updates/{update_id}", self._get_update)
        router.add("POST", p + "/stop", self._stop)

    def _require_pipeline(self, pipeline_id: str) -> Pipeline:
        p = self._pipelines.get(pipeline_id)
        if p is None or p.deleted:
            raise does_not_exist(f"The pipeline {pipeline_id} does not exist.")
        return p

    def _get_pipeline(self, req: Request, pipeline_id: str) -> Response:
        with self.lock:
            return Response(body=self._pipeline_response(self._require_pipeline(pipeline_id)))

    def _start_update(self, req: Request, pipeline_id: str) -> Response:
        """POST /api/2.0/pipelines/{id}/updates -> ``{"update_id"}``; ``full_refresh`` re-copies."""
        body = req.json()
        cause = body.get("cause") if body.get("cause") in {c.value for c in pl.StartUpdateCause} else "API_CALL"
        update_id = self.trigger(pipeline_id, cause=cause, full_refresh=bool(body.get("full_refresh")), strict=True)
        return Response(body=pl.StartUpdateResponse(update_id=update_id).as_dict())

    def _update_info(self, p: Pipeline, u: Update) -> pl.UpdateInfo:
        return pl.UpdateInfo(update_id=u.update_id, pipeline_id=p.id, state=pl.UpdateInfoState(u.state),
                             creation_time=u.created_ms, full_refresh=u.full_refresh,
                             cause=pl.UpdateInfoCause(u.cause) if u.cause in {c.value for c in pl.UpdateInfoCause}
                             else None)

    def _get_update(self, req: Request, pipeline_id: str, update_id: str) -> Response:
        with self.lock:
            p = self._require_pipeline(pipeline_id)
            u = next((u for u in p.updates if u.update_id == update_id), None)
            if u is None:
                raise does_not_exist(f"Update {update_id} of pipeline {pipeline_id} does not exist.")
            return Response(body=pl.GetUpdateResponse(update=self._update_info(p, u)).as_dict())

    def _list_updates(self, req: Request, pipeline_id: str) -> Response:
        with self.lock:
            p = self._require_pipeline(pipeline_id)
            updates = [self._update_info(p, u) for u in p.updates]
            return Response(body=pl.ListUpdatesResponse(updates=updates or None).as_dict())

    def _stop(self, req: Request, pipeline_id: str) -> Response:
        """POST .../stop: a continuous pipeline stops polling and goes IDLE; queued updates are dropped."""
        self.stop_pipeline(pipeline_id)
        with self.lock:
            p = self._require_pipeline(pipeline_id)
            if p.running is None:
                p.state = pl.PipelineState.IDLE.value
            for t in p.tables:
                if t.state == CONTINUOUS_UPDATE:
                    t.state, t.message = NO_PENDING, f"The pipeline is stopped; last synced version {t.last_version}."
        return Response(body={})


def _latest_sql(source: str, keys: str, not_null: str, timeseries_key: str | None) -> str:
    """Rows with a full key; with a timeseries key, only the latest row of each key."""
    if timeseries_key is None:
        return f"SELECT * FROM {source} WHERE {not_null}"
    ts = duck_ident(timeseries_key)
    return (f"SELECT * EXCLUDE (__rn) FROM (SELECT *, row_number() OVER (PARTITION BY {keys} ORDER BY {ts} DESC "
            f"NULLS LAST) AS __rn FROM {source} WHERE {not_null}) WHERE __rn = 1")


def _tuples(table: Any, names: list[str]) -> Iterator[tuple]:
    cols = [table[n].to_pylist() for n in names]
    return zip(*cols, strict=True)


def _python_rows(table: Any, dialect: str) -> Iterator[tuple]:
    """Rows as the store's driver wants them: timestamps as ISO text for SQLite, aware UTC datetimes
    for PostgreSQL, naive UTC for MySQL DATETIME; decimals as floats, dates as ISO text, nested
    values as JSON text, binary as base64."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from .sql import _leaf

    columns = []
    for col in table.columns:
        t = col.type
        if pa.types.is_timestamp(t):
            if dialect == "sqlite":  # ISO 8601 with microseconds; "Z" when the instant is UTC
                naive = pc.cast(pc.cast(col, pa.timestamp("us", "UTC" if t.tz else None)), pa.timestamp("us"))
                text = pc.replace_substring(pc.cast(naive, pa.string()), " ", "T", max_replacements=1)
                values = (pc.binary_join_element_wise(text, pa.scalar("Z"), "") if t.tz else text).to_pylist()
            else:
                utc = pc.cast(col, pa.timestamp("us", "UTC")) if t.tz else pc.assume_timezone(col, "UTC")
                values = utc.to_pylist()
                if dialect == "mysql":
                    values = [v.replace(tzinfo=None) if v is not None else None for v in values]
        elif pa.types.is_decimal(t):
            values = pc.cast(col, pa.float64()).to_pylist()
        elif pa.types.is_date(t) or pa.types.is_string_view(t) or pa.types.is_large_string(t):
            values = pc.cast(col, pa.string()).to_pylist()
        elif pa.types.is_binary(t) or pa.types.is_large_binary(t):
            values = [base64.b64encode(v).decode("ascii") if v is not None else None for v in col.to_pylist()]
        elif pa.types.is_nested(t):
            values = [json.dumps(_leaf(v), separators=(",", ":")) if v is not None else None
                      for v in col.to_pylist()]
        else:
            values = col.to_pylist()
        columns.append(values)
    return zip(*columns, strict=True)
