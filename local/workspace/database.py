"""Lakebase synced tables of the local workspace (``w.database``).

Follows databricks-sdk 0.156.0 (``service/database.py``: ``SyncedDatabaseTable``,
``SyncedTableSpec``, ``SyncedTableStatus``) and Databricks "Sync data from Unity Catalog tables
to a database instance":

- ``POST /api/2.0/database/synced_tables`` (the body is the bare ``SyncedDatabaseTable``; no
  waiter): ``name`` is a three-part name not taken by a table or another synced table (409
  RESOURCE_ALREADY_EXISTS); ``database_instance_name`` and ``logical_database_name`` are required
  in standard catalogs, which are the only kind here [SRC docstring]; any instance name is
  accepted, as database instances are not emulated. ``spec.source_table_full_name`` must exist
  (404 TABLE_DOES_NOT_EXIST); ``spec.primary_key_columns`` defaults to the source's PRIMARY KEY
  constraint and one of them is required [DOC]; ``spec.timeseries_key`` (default: the
  constraint's TIMESERIES column) breaks ties between rows of one key [DOC];
  ``spec.scheduling_policy`` is required and TRIGGERED/CONTINUOUS need the source's change data
  feed [DOC JS-SDK]; ``existing_pipeline_id`` bin-packs the table into that pipeline, whose
  policy must match [SRC docstring]. ``type_overrides`` and ``accelerated_sync`` are accepted and
  ignored. The answer is the table in ``SYNCED_TABLE_PROVISIONING``.
- ``GET /api/2.0/database/synced_tables/{name}``: the status of any online table, including the
  ones ``feature_store.publish_table`` created (they are synced tables too).
- ``PATCH .../synced_tables/{name}`` is ``501 NOT_IMPLEMENTED`` [FAKE: the Databricks CLI's fake
  workspace models the real API as having no update].
- ``DELETE .../synced_tables/{name}?purge_data=true`` also drops the PostgreSQL table; without
  ``purge_data`` the data stays [SRC docstring].
- ``GET /api/2.0/database/instances/{instance_name}/synced_tables`` lists the instance's tables
  (an Online Feature Store's tables list under the store's name).
"""

from __future__ import annotations

from typing import Any

from databricks.sdk.service import database as sdk

from shared.online_store import physical_name

from .catalog import UnityCatalog
from .errors import ApiError, already_exists, does_not_exist, invalid_parameter
from .sync import POLICIES, SNAPSHOT, OnlineTableSpec, SyncEngine
from .web import Request, Response, Router

_PAGE_MAX = 100


class DatabaseService:
    def __init__(self, *, catalog: UnityCatalog, engine: SyncEngine):
        self.catalog = catalog
        self.engine = engine

    def register(self, router: Router) -> None:
        p = "/api/2.0/database"
        router.add("POST", p + "/synced_tables", self.create)
        router.add("GET", p + "/synced_tables/{name}", self.get)
        router.add("PATCH", p + "/synced_tables/{name}", self.update)
        router.add("DELETE", p + "/synced_tables/{name}", self.delete)
        router.add("GET", p + "/instances/{instance_name}/synced_tables", self.list_for_instance)

    def create(self, req: Request) -> Response:
        body = req.json()
        try:
            table = sdk.SyncedDatabaseTable.from_dict(body)
        except (TypeError, ValueError, AttributeError) as exc:
            raise invalid_parameter(f"Invalid synced table: {exc}") from exc
        try:
            name = UnityCatalog.normalize(table.name)
            physical = physical_name(name)
        except ValueError as exc:
            raise invalid_parameter(f"Invalid synced table name: {exc}.") from exc
        for key, value in (("database_instance_name", table.database_instance_name),
                           ("logical_database_name", table.logical_database_name)):
            if not isinstance(value, str) or not value:
                raise invalid_parameter(f"{key} is required when creating a synced table in a standard catalog.")
        spec = table.spec
        raw_spec = body.get("spec")
        if spec is None or not isinstance(raw_spec, dict):
            raise invalid_parameter("spec is required: the source table, primary key and scheduling policy.")
        if not spec.source_table_full_name:
            raise invalid_parameter("spec.source_table_full_name is required.")
        source = self.catalog.require(spec.source_table_full_name)
        if spec.scheduling_policy is None:
            raise invalid_parameter(f"spec.scheduling_policy is required; one of {list(POLICIES)}, "
                                    f"got {raw_spec.get('scheduling_policy')!r}.")
        policy = spec.scheduling_policy.value
        if spec.existing_pipeline_id and spec.new_pipeline_spec:
            raise invalid_parameter("At most one of existing_pipeline_id and new_pipeline_spec may be given.")
        constraint = self.catalog.primary_key(source)
        timeseries = spec.timeseries_key or (constraint[1] if constraint else None)
        keys = list(spec.primary_key_columns or [c for c in (constraint[0] if constraint else []) if c != timeseries])
        if not keys:
            raise invalid_parameter(f"A primary key is required: set spec.primary_key_columns, or add a PRIMARY KEY "
                                    f"constraint to {source}.")
        columns = self.catalog.arrow_schema(source).names
        unknown = [c for c in [*keys, *([timeseries] if timeseries else [])] if c not in columns]
        if unknown:
            raise invalid_parameter(f"Column(s) {unknown} are not columns of {source}: {columns}.")
        if policy != SNAPSHOT and not self.catalog.cdf_enabled(source):
            raise invalid_parameter(
                f"scheduling_policy {policy} reads the change data feed of the source table, which is not enabled on "
                f"{source}. Run ALTER TABLE {source} SET TBLPROPERTIES (delta.enableChangeDataFeed = true), or use "
                "scheduling_policy SNAPSHOT.")
        if self.engine.table(name) is not None or self.catalog.exists(name):
            raise already_exists(f"Table {name} already exists.")
        echo = {**raw_spec, "source_table_full_name": source, "primary_key_columns": keys, "scheduling_policy": policy}
        if timeseries:
            echo["timeseries_key"] = timeseries
        _, created = self.engine.create(OnlineTableSpec(
            name=name, source=source, primary_keys=keys, timeseries_key=timeseries, policy=policy, physical=physical,
            database_instance=table.database_instance_name or "", logical_database=table.logical_database_name or "",
            origin="database", spec=echo), existing_pipeline_id=spec.existing_pipeline_id)
        return Response(body=created)

    def _require(self, name: str) -> Any:
        table = self.engine.table(name)
        if table is None:
            raise does_not_exist(f"Synced database table {name} does not exist.")
        return table

    def get(self, req: Request, name: str) -> Response:
        return Response(body=self.engine.synced_table(self._require(name)))

    def update(self, req: Request, name: str) -> Response:
        raise ApiError(501, "NOT_IMPLEMENTED", "Update Synced Database Table is not yet implemented.")

    def delete(self, req: Request, name: str) -> Response:
        self._require(name)
        purge = (req.query.get("purge_data") or ["false"])[0].lower() == "true"
        self.engine.delete(name, purge=purge)
        return Response(body={})

    def list_for_instance(self, req: Request, instance_name: str) -> Response:
        try:
            size = int((req.query.get("page_size") or ["100"])[0])
            offset = int((req.query.get("page_token") or ["0"])[0] or 0)
        except ValueError as exc:
            raise invalid_parameter("page_size and page_token must be integers.") from exc
        size = min(max(size, 1), _PAGE_MAX)
        tables = sorted((t for t in self.engine.tables() if t.spec.database_instance == instance_name),
                        key=lambda t: t.spec.name)
        body: dict[str, Any] = {"synced_tables": [self.engine.synced_table(t) for t in tables[offset:offset + size]]}
        if offset + size < len(tables):
            body["next_page_token"] = str(offset + size)
        return Response(body=body)
