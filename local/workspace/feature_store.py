"""Online Feature Store API of the local workspace (``w.feature_store``).

Follows databricks-sdk 0.156.0 (``service/ml.py``: ``OnlineStore``, ``PublishSpec``,
``PublishTableResponse``) and Databricks "Databricks Online Feature Stores":

- ``POST /api/2.0/feature-store/online-stores`` (the body is the ``OnlineStore``): ``name`` and
  ``capacity`` (``CU_1``, ``CU_2``, ``CU_4``, ``CU_8``) are required, ``read_replica_count``
  defaults to 0 (at most 2 here [INF]); a taken name is 409 RESOURCE_ALREADY_EXISTS. The store
  answers ``STARTING`` and becomes ``AVAILABLE`` after ``faults.store_provisioning_seconds``;
  a name in ``faults.store_unavailable`` is held ``STOPPED``.
- ``GET``/``PATCH ?update_mask=``/``DELETE .../online-stores/{name}`` and ``GET
  .../online-stores`` (``page_size``, ``page_token``). An update of ``capacity``,
  ``read_replica_count`` or ``usage_policy_id`` puts the store in ``UPDATING`` for the
  provisioning delay [INF]. Deleting a store deletes the online tables published to it [INF].
- ``POST /api/2.0/feature-store/tables/{source}/publish`` with ``{"publish_spec": {...}}`` ->
  ``{online_table_name, pipeline_id}``. The source must exist (404 TABLE_DOES_NOT_EXIST) and carry
  a PRIMARY KEY constraint (``full_feature_name`` only helps views, which are not emulated);
  TRIGGERED and CONTINUOUS need the source's change data feed; the store must be AVAILABLE
  (400 INVALID_STATE). The online table is a synced table of the sync engine: its status is read
  with ``database.get_synced_database_table`` and its pipeline with ``w.pipelines``. Publishing an
  already published table again is idempotent: TRIGGERED starts a sync, SNAPSHOT a full copy, and
  a running CONTINUOUS pipeline is left alone (a failed one is restarted). Publishing another
  source to a taken online table name is 409 RESOURCE_ALREADY_EXISTS; changing the mode or the
  store of an online table is 400 INVALID_PARAMETER_VALUE [INF].
- ``DELETE /api/2.0/feature-store/online-tables/{name}`` drops the online table and its data.

The Online Feature Store is Lakebase: its online tables live in the workspace's online store
database (``online_store_url``) and report the store's name as their database instance and the
online table's catalog as the logical database ("also used as the Lakebase logical database
name", ``OnlineStoreConfig`` docstring).
"""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass
from typing import Any

from databricks.sdk.service import ml as sdk

from shared.online_store import physical_name

from .catalog import UnityCatalog, rfc3339_ms
from .errors import ApiError, already_exists, does_not_exist, invalid_parameter
from .faults import Faults
from .sync import SNAPSHOT, OnlineTableSpec, SyncEngine
from .web import Request, Response, Router

CAPACITIES = ("CU_1", "CU_2", "CU_4", "CU_8")
MAX_READ_REPLICAS = 2
UPDATABLE = ("capacity", "read_replica_count", "usage_policy_id")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]{0,62}$")  # Lakebase instance names [INF]
_PAGE_MAX = 100


def invalid_state(message: str) -> ApiError:
    return ApiError(400, "INVALID_STATE", message)


@dataclass
class StoreRecord:
    name: str
    capacity: str
    read_replica_count: int
    usage_policy_id: str | None
    created: float
    creator: str
    ready_at: float
    updating_until: float = 0.0


class FeatureStoreService:
    def __init__(self, *, lock: threading.RLock, faults: Faults, catalog: UnityCatalog, engine: SyncEngine,
                 user: str):
        self.lock = lock
        self.faults = faults
        self.catalog = catalog
        self.engine = engine
        self.user = user
        self._stores: dict[str, StoreRecord] = {}

    def register(self, router: Router) -> None:
        p = "/api/2.0/feature-store"
        router.add("POST", p + "/online-stores", self.create_store)
        router.add("GET", p + "/online-stores", self.list_stores)
        router.add("GET", p + "/online-stores/{name}", self.get_store)
        router.add("PATCH", p + "/online-stores/{name}", self.update_store)
        router.add("DELETE", p + "/online-stores/{name}", self.delete_store)
        router.add("POST", p + "/tables/{source_table_name}/publish", self.publish_table)
        router.add("DELETE", p + "/online-tables/{online_table_name}", self.delete_online_table)

    # ------------------------------------------------------------------ stores
    def state(self, rec: StoreRecord) -> str:
        if rec.name in set(self.faults.store_unavailable):
            return sdk.OnlineStoreState.STOPPED.value
        now = time.time()
        if now < rec.ready_at:
            return sdk.OnlineStoreState.STARTING.value
        if now < rec.updating_until:
            return sdk.OnlineStoreState.UPDATING.value
        return sdk.OnlineStoreState.AVAILABLE.value

    def _render(self, rec: StoreRecord) -> dict[str, Any]:
        return sdk.OnlineStore(
            name=rec.name, capacity=rec.capacity, read_replica_count=rec.read_replica_count,
            usage_policy_id=rec.usage_policy_id, creation_time=rfc3339_ms(rec.created * 1000), creator=rec.creator,
            state=sdk.OnlineStoreState(self.state(rec)),
        ).as_dict()

    def _require(self, name: str) -> StoreRecord:
        rec = self._stores.get(name)
        if rec is None:
            raise does_not_exist(f"Online store {name} does not exist.")
        return rec

    @staticmethod
    def _capacity(value: Any) -> str:
        if value not in CAPACITIES:
            raise invalid_parameter(f"Invalid capacity {value!r}: valid values are {', '.join(CAPACITIES)}.")
        return value

    @staticmethod
    def _replicas(value: Any) -> int:
        if value is None:
            return 0
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_READ_REPLICAS:
            raise invalid_parameter(f"read_replica_count must be an integer between 0 and {MAX_READ_REPLICAS}; "
                                    f"got {value!r}.")
        return value

    def create_store(self, req: Request) -> Response:
        body = req.json()
        name = body.get("name")
        if not isinstance(name, str) or not _NAME.match(name):
            raise invalid_parameter(f"Invalid online store name {name!r}: use 1 to 63 letters, digits and hyphens, "
                                    "starting with a letter or digit.")
        if body.get("capacity") is None:
            raise invalid_parameter("capacity is required: one of " + ", ".join(CAPACITIES) + ".")
        capacity = self._capacity(body.get("capacity"))
        replicas = self._replicas(body.get("read_replica_count"))
        now = time.time()
        with self.lock:
            if name in self._stores:
                raise already_exists(f"Online store {name} already exists.")
            rec = StoreRecord(name, capacity, replicas, body.get("usage_policy_id"), now, self.user,
                              now + max(self.faults.store_provisioning_seconds, 0.0))
            self._stores[name] = rec
            return Response(body=self._render(rec))

    def get_store(self, req: Request, name: str) -> Response:
        with self.lock:
            return Response(body=self._render(self._require(name)))

    def list_stores(self, req: Request) -> Response:
        try:
            size = int((req.query.get("page_size") or ["100"])[0])
            offset = int((req.query.get("page_token") or ["0"])[0] or 0)
        except ValueError as exc:
            raise invalid_parameter("page_size and page_token must be integers.") from exc
        size = min(max(size, 1), _PAGE_MAX)
        with self.lock:
            names = sorted(self._stores)
            page = [self._render(self._stores[n]) for n in names[offset:offset + size]]
        body: dict[str, Any] = {"online_stores": page}
        if offset + size < len(names):
            body["next_page_token"] = str(offset + size)
        return Response(body=body)

    def update_store(self, req: Request, name: str) -> Response:
        body = req.json()
        mask = (req.query.get("update_mask") or [""])[0]
        fields = [f.strip() for f in mask.split(",") if f.strip()]
        if fields == ["*"]:
            fields = list(UPDATABLE)
        if not fields:
            raise invalid_parameter("update_mask is required: the fields to update, such as capacity.")
        unknown = [f for f in fields if f not in UPDATABLE]
        if unknown:
            raise invalid_parameter(f"Cannot update {unknown}: the updatable fields are {list(UPDATABLE)}.")
        with self.lock:
            rec = self._require(name)
            state = self.state(rec)
            if state != sdk.OnlineStoreState.AVAILABLE.value:
                raise invalid_state(f"Online store {name} is {state}; it can be updated when it is AVAILABLE.")
            if "capacity" in fields:
                rec.capacity = self._capacity(body.get("capacity"))
            if "read_replica_count" in fields:
                rec.read_replica_count = self._replicas(body.get("read_replica_count"))
            if "usage_policy_id" in fields:
                rec.usage_policy_id = body.get("usage_policy_id")
            rec.updating_until = time.time() + max(self.faults.store_provisioning_seconds, 0.0)
            return Response(body=self._render(rec))

    def delete_store(self, req: Request, name: str) -> Response:
        with self.lock:
            self._require(name)
            del self._stores[name]
            tables = [t.spec.name for t in self.engine.tables() if t.spec.online_store == name]
        for table in tables:
            self.engine.delete(table, purge=True)
        return Response(body={})

    # ------------------------------------------------------------------ publishing
    def publish_table(self, req: Request, source_table_name: str) -> Response:
        body = req.json()
        raw = body.get("publish_spec")
        if not isinstance(raw, dict):
            raise invalid_parameter("publish_spec is required.")
        try:
            spec = sdk.PublishSpec.from_dict(raw)
        except (TypeError, ValueError, AttributeError) as exc:
            raise invalid_parameter(f"Invalid publish_spec: {exc}") from exc
        if not isinstance(spec.online_store, str) or not spec.online_store:
            raise invalid_parameter("publish_spec.online_store is required: the name of the online store.")
        if not isinstance(spec.online_table_name, str) or not spec.online_table_name:
            raise invalid_parameter("publish_spec.online_table_name is required: a three-part name.")
        if spec.publish_mode is None:
            allowed = [m.value for m in sdk.PublishSpecPublishMode]
            raise invalid_parameter(f"publish_spec.publish_mode is required; one of {allowed}, "
                                    f"got {raw.get('publish_mode')!r}.")
        mode = spec.publish_mode.value
        source = self.catalog.require(source_table_name)
        try:
            online = UnityCatalog.normalize(spec.online_table_name)
            physical = physical_name(online)
        except ValueError as exc:
            raise invalid_parameter(f"Invalid online_table_name: {exc}.") from exc
        with self.lock:
            rec = self._require(spec.online_store)
            state = self.state(rec)
        if state != sdk.OnlineStoreState.AVAILABLE.value:
            raise invalid_state(f"Online store {spec.online_store} is {state}; publish when it is AVAILABLE.")
        pk = self.catalog.primary_key(source)
        if pk is None:
            raise invalid_parameter(
                f"Source table {source} has no primary key constraint. Publishing needs one: add it with "
                f"ALTER TABLE {source} ADD CONSTRAINT {source.split('.')[-1]}_pk PRIMARY KEY (<key columns>).")
        if mode != SNAPSHOT and not self.catalog.cdf_enabled(source):
            raise invalid_parameter(
                f"publish_mode {mode} reads the change data feed of the source table, which is not enabled on "
                f"{source}. Run ALTER TABLE {source} SET TBLPROPERTIES (delta.enableChangeDataFeed = true), or "
                "publish with publish_mode SNAPSHOT.")
        existing = self.engine.table(online)
        if existing is not None:
            return self._republish(existing, source, spec.online_store, mode)
        if self.catalog.exists(online):
            raise already_exists(f"Table {online} already exists and is not an online table.")
        child_columns, timeseries = pk
        keys = [c for c in child_columns if c != timeseries]
        synced_spec = {
            "source_table_full_name": source, "primary_key_columns": keys, "scheduling_policy": mode,
            **({"timeseries_key": timeseries} if timeseries else {}),
        }
        table, _ = self.engine.create(OnlineTableSpec(
            name=online, source=source, primary_keys=keys, timeseries_key=timeseries, policy=mode, physical=physical,
            database_instance=spec.online_store, logical_database=online.split(".")[0], origin="feature_store",
            online_store=spec.online_store, spec=synced_spec))
        return Response(body=sdk.PublishTableResponse(online_table_name=online,
                                                      pipeline_id=table.pipeline_id).as_dict())

    def _republish(self, existing: Any, source: str, store: str, mode: str) -> Response:
        spec = existing.spec
        if spec.source != source:
            raise already_exists(f"Online table {spec.name} already exists and is published from {spec.source}.")
        if spec.online_store != store:
            raise invalid_parameter(f"Online table {spec.name} is in online store {spec.online_store}, not {store}.")
        if spec.policy != mode:
            raise invalid_parameter(f"Online table {spec.name} is published with publish_mode {spec.policy}; "
                                    f"it cannot change to {mode}. Delete the online table to publish it anew.")
        self.engine.trigger(existing.pipeline_id, cause="API_CALL", full_refresh=mode == SNAPSHOT,
                            strict=False)
        return Response(body=sdk.PublishTableResponse(online_table_name=spec.name,
                                                      pipeline_id=existing.pipeline_id).as_dict())

    def delete_online_table(self, req: Request, online_table_name: str) -> Response:
        name = online_table_name.lower()
        table = self.engine.table(name)
        if table is None or table.spec.origin != "feature_store":
            raise does_not_exist(f"Online table {online_table_name} does not exist.")
        self.engine.delete(name, purge=True)
        return Response(body={})

