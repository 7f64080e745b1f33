"""Data quality monitoring of the local workspace: data profiling monitors and their refreshes.

Follows ``w.data_quality`` in databricks-sdk 0.156.0 (``databricks/sdk/service/dataquality.py``,
https://github.com/databricks/databricks-sdk-py; the deprecated ``w.quality_monitors`` is not served):

- ``POST /api/data-quality/v1/monitors`` (body: the ``Monitor``), ``GET .../monitors``
  (``page_size``, ``page_token``; the SDK docstring calls it "(Unimplemented)", here it lists),
  ``GET``/``PATCH ?update_mask=``/``DELETE .../monitors/{object_type}/{object_id}``;
  ``POST``/``GET .../refreshes`` (create, list), ``GET .../refreshes/{refresh_id}``, ``POST
  .../refreshes/{refresh_id}/cancel`` (-> ``{"refresh": ...}``).
- ``object_type`` ``table`` with ``object_id`` the table's UUID (``TableInfo.table_id``). A
  ``schema`` monitor (anomaly detection) is 501 NOT_IMPLEMENTED here, as are the ``time_series``
  and ``snapshot`` profiles, ``slicing_exprs`` and ``custom_metrics``: only the InferenceLog
  profile of the whole table is computed (``local.workspace.data_profiling``).
- Create validates ``data_profiling_config``: ``output_schema_id`` is required; exactly one
  profile, ``inference_log`` with ``problem_type``, ``timestamp_column`` (a TIMESTAMP or DATE
  column), ``granularities`` (at least one), ``prediction_column`` and ``model_id_column`` that
  are columns of the table, and ``label_column`` if given; ``baseline_table_name`` must exist.
  Bad values are 400 INVALID_PARAMETER_VALUE, a missing table 404 RESOURCE_DOES_NOT_EXIST
  (``ResourceDoesNotExist``), a second monitor on one table 409 RESOURCE_ALREADY_EXISTS, and an
  unknown monitor 404 RESOURCE_DOES_NOT_EXIST [INF: codes and texts not recorded].
- The server fills ``monitored_table_name``, ``profile_metrics_table_name`` and
  ``drift_metrics_table_name`` (``{output_schema}.{table}_profile_metrics`` / ``_drift_metrics``),
  ``monitor_version`` (1, plus one per update [INF]) and ``status``:
  ``DATA_PROFILING_STATUS_PENDING`` until the first refresh ends, then ``..._ACTIVE``, or
  ``..._ERROR`` with ``latest_monitor_failure_message`` if that first refresh failed; a later failed
  refresh sets the message and leaves the status [INF].
- Update (PATCH) takes ``update_mask``, comma-separated paths under ``data_profiling_config``
  (``data_profiling_config.baseline_table_name``, ``data_profiling_config.inference_log.
  granularities``...; ``*`` for every updatable field); server-filled fields cannot be set.
  The result is validated as at create. ``schedule`` and ``notification_settings`` are kept and
  shown but nothing runs on a schedule locally (refreshes are created through the API).
- Delete removes the monitor and cancels its queued refreshes; "the metric tables and dashboard
  will not be deleted" (SDK docstring), nor are they here.

``output_schema_id`` [INF: the local workspace has no Schemas API]: a schema's id is
``uuid5(NAMESPACE_URL, "local-uc/schema/<catalog>.<schema>")``. An id resolves to a schema that
holds a table, or to one named through the local tooling ``ws.data_quality.schema_id("cat.sch")``
(which also makes an empty schema exist); any other id is 404 RESOURCE_DOES_NOT_EXIST.

Refreshes ("Creating a monitor triggers an initial refresh", as dbdemos' monitoring notebooks rely on,
https://github.com/databricks-demos/dbdemos-notebooks; legacy
``run_refresh``: "Queues a metric refresh ... The refresh will execute in the background"):
``create_monitor`` queues one, and ``create_refresh`` queues another behind the monitor's running
one (one at a time per monitor, in order). Each runs in a background thread:
``MONITOR_REFRESH_STATE_PENDING`` (for ``refresh_pending_seconds``, local tooling, default 0) ->
``..._RUNNING`` -> ``..._SUCCESS``, or ``..._FAILED`` with ``message`` (the monitored table was
dropped, a column is gone, ...). A refresh reads the table's current Delta snapshot and its
baseline, computes both metric tables with ``data_profiling.compute`` and replaces them in the
output schema. ``trigger`` is ``MONITOR_REFRESH_TRIGGER_MANUAL`` for both [INF];
``start_time_ms`` is when it was queued, ``end_time_ms`` when it ended; ids are integers
increasing across the workspace [INF]; listing is newest first. Cancel: a PENDING refresh is
``..._CANCELED`` at once, a RUNNING one stops before it writes (CANCELED); an ended one is
answered unchanged [INF]. Refresh threads are daemons: stopping the workspace cancels a running
refresh, and refreshes still queued run after the monitor's next ``create_refresh``.
"""

from __future__ import annotations

import copy
import logging
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from databricks.sdk.service import dataquality as sdk

from .catalog import UnityCatalog, table_not_found
from .errors import ApiError, already_exists, does_not_exist, invalid_parameter
from .web import Request, Response, Router

log = logging.getLogger("local.workspace.data_quality")

PENDING, RUNNING, SUCCESS, FAILED, CANCELED = "PENDING", "RUNNING", "SUCCESS", "FAILED", "CANCELED"
_ENDED = {SUCCESS, FAILED, CANCELED}
_PROFILES = ("inference_log", "time_series", "snapshot")
# Fields of data_profiling_config a client sets; the others are filled by the server.
UPDATABLE = ("output_schema_id", "baseline_table_name", *_PROFILES, "schedule", "notification_settings",
             "skip_builtin_dashboard", "warehouse_id", "assets_dir", "slicing_exprs", "custom_metrics")
_PAGE_MAX = 100
_PROBLEM_TYPES = {t.value for t in sdk.InferenceProblemType}
_GRANULARITIES = {g.value for g in sdk.AggregationGranularity}


def not_implemented(message: str) -> ApiError:
    return ApiError(501, "NOT_IMPLEMENTED", message)


def schema_uuid(full_schema: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"local-uc/schema/{full_schema}"))


@dataclass
class RefreshRecord:
    refresh_id: int
    object_id: str
    start_time_ms: int
    state: str = PENDING
    trigger: str = "MANUAL"
    end_time_ms: int | None = None
    message: str | None = None
    cancel: threading.Event = field(default_factory=threading.Event)

    def render(self) -> dict[str, Any]:
        body: dict[str, Any] = {"object_type": "table", "object_id": self.object_id, "refresh_id": self.refresh_id,
                                "state": f"MONITOR_REFRESH_STATE_{self.state}",
                                "trigger": f"MONITOR_REFRESH_TRIGGER_{self.trigger}",
                                "start_time_ms": self.start_time_ms}
        if self.end_time_ms is not None:
            body["end_time_ms"] = self.end_time_ms
        if self.message is not None:
            body["message"] = self.message
        return body


@dataclass
class MonitorRecord:
    object_id: str
    table: str  # the monitored table's full name
    config: dict[str, Any]  # data_profiling_config as set by the client, validated
    output_schema: str
    monitor_version: int = 1
    status: str = "PENDING"
    failure: str | None = None
    refreshes: list[RefreshRecord] = field(default_factory=list)
    worker: threading.Thread | None = None
    deleted: bool = False

    @property
    def metric_tables(self) -> tuple[str, str]:
        short = self.table.split(".")[-1]
        return f"{self.output_schema}.{short}_profile_metrics", f"{self.output_schema}.{short}_drift_metrics"

    def render(self) -> dict[str, Any]:
        profile, drift = self.metric_tables
        config = {**copy.deepcopy(self.config), "monitored_table_name": self.table,
                  "profile_metrics_table_name": profile, "drift_metrics_table_name": drift,
                  "monitor_version": self.monitor_version, "status": f"DATA_PROFILING_STATUS_{self.status}"}
        if self.failure is not None:
            config["latest_monitor_failure_message"] = self.failure
        return {"object_type": "table", "object_id": self.object_id, "data_profiling_config": config}


class DataQualityService:
    """Monitors keyed by table id; refreshes computed in background threads (module docstring)."""

    def __init__(self, catalog: UnityCatalog, *, stopping: threading.Event):
        self.catalog = catalog
        self._stopping = stopping
        self.refresh_pending_seconds = 0.0  # local tooling: how long a refresh waits PENDING before it runs
        self._lock = threading.Lock()
        self._monitors: dict[str, MonitorRecord] = {}
        self._schemas: dict[str, str] = {}  # schema id -> catalog.schema, named through schema_id()
        self._next_refresh = 1

    def register(self, router: Router) -> None:
        p = "/api/data-quality/v1/monitors"
        router.add("POST", p, self.create_monitor)
        router.add("GET", p, self.list_monitor)
        router.add("GET", p + "/{object_type}/{object_id}", self.get_monitor)
        router.add("PATCH", p + "/{object_type}/{object_id}", self.update_monitor)
        router.add("DELETE", p + "/{object_type}/{object_id}", self.delete_monitor)
        router.add("POST", p + "/{object_type}/{object_id}/refreshes", self.create_refresh)
        router.add("GET", p + "/{object_type}/{object_id}/refreshes", self.list_refresh)
        router.add("GET", p + "/{object_type}/{object_id}/refreshes/{refresh_id}", self.get_refresh)
        router.add("POST", p + "/{object_type}/{object_id}/refreshes/{refresh_id}/cancel", self.cancel_refresh)

    # ------------------------------------------------------------------ local tooling
    def schema_id(self, full_schema: str) -> str:
        """The id to pass as ``output_schema_id`` for ``catalog.schema`` (module docstring)."""
        parts = UnityCatalog.normalize(f"{full_schema}.t").split(".")[:2]
        name = ".".join(parts)
        sid = schema_uuid(name)
        with self._lock:
            self._schemas[sid] = name
        return sid

    def wait(self, object_id: str, refresh_id: int, timeout: float = 60.0) -> str:
        """Block until the refresh ends (for the demo); returns its state (``SUCCESS``...)."""
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                rec = self._monitors.get(object_id)
                found = next((r for r in rec.refreshes if r.refresh_id == refresh_id), None) if rec else None
                if found is None:
                    raise KeyError(f"no refresh {refresh_id} of monitor {object_id}")
                if found.state in _ENDED:
                    return found.state
            if time.monotonic() > deadline:
                raise TimeoutError(f"refresh {refresh_id} of monitor {object_id} is still {found.state}")
            time.sleep(0.05)

    # ------------------------------------------------------------------ lookups
    def _table_by_id(self, object_id: str) -> str:
        for name in self.catalog.list_tables():
            if self.catalog.meta(name).table_id == object_id:
                return name
        raise does_not_exist(f"Table with id '{object_id}' does not exist.")

    def _resolve_schema(self, schema_id: Any) -> str:
        if not isinstance(schema_id, str) or not schema_id:
            raise invalid_parameter("data_profiling_config.output_schema_id is required: the id of the schema "
                                    "where the metric tables are created.")
        with self._lock:
            known = dict(self._schemas)
        root = self.catalog.root
        for cat in root.iterdir() if root.is_dir() else []:
            for sch in cat.iterdir() if cat.is_dir() else []:
                if sch.is_dir():
                    known.setdefault(schema_uuid(f"{cat.name}.{sch.name}"), f"{cat.name}.{sch.name}")
        if schema_id not in known:
            raise does_not_exist(f"Schema with id '{schema_id}' does not exist.")
        return known[schema_id]

    @staticmethod
    def _object_type(object_type: str) -> None:
        if object_type == "schema":
            raise not_implemented("Schema monitors (anomaly detection) are not emulated by the local workspace; "
                                  "use object_type 'table' with a data_profiling_config.")
        if object_type != "table":
            raise invalid_parameter(f"Invalid object_type {object_type!r}: one of 'table', 'schema'.")

    def _monitor(self, object_type: str, object_id: str) -> MonitorRecord:
        self._object_type(object_type)
        rec = self._monitors.get(object_id)
        if rec is None:
            raise does_not_exist(f"Data quality monitor for table with id '{object_id}' does not exist.")
        return rec

    # ------------------------------------------------------------------ validation
    def _validate(self, table: str, config: Any) -> tuple[dict[str, Any], str]:
        """The client-set fields of a valid ``data_profiling_config`` and the output schema's name."""
        if not isinstance(config, dict):
            raise invalid_parameter("data_profiling_config is required for a table monitor.")
        config = {k: copy.deepcopy(v) for k, v in config.items() if k in UPDATABLE and v is not None}
        output_schema = self._resolve_schema(config.get("output_schema_id"))
        given = [p for p in _PROFILES if p in config]
        if len(given) != 1:
            raise invalid_parameter("Exactly one of data_profiling_config.inference_log, time_series or snapshot "
                                    "must be set.")
        if given[0] != "inference_log":
            raise not_implemented(f"The {given[0]} profile is not computed by the local workspace; use inference_log.")
        for name in ("slicing_exprs", "custom_metrics"):
            if config.get(name):
                raise not_implemented(f"data_profiling_config.{name} is not computed by the local workspace.")
        schema = self.catalog.arrow_schema(table)
        config["inference_log"] = self._inference_log(table, schema, config["inference_log"])
        baseline = config.get("baseline_table_name")
        if baseline is not None:
            try:
                name = UnityCatalog.normalize(baseline)
            except ValueError as exc:
                raise invalid_parameter(f"Invalid baseline_table_name: {exc}.") from exc
            if not self.catalog.exists(name):
                raise table_not_found(name)
            config["baseline_table_name"] = name
        schedule = config.get("schedule")
        if schedule is not None and not (isinstance(schedule, dict) and schedule.get("quartz_cron_expression")
                                         and schedule.get("timezone_id")):
            raise invalid_parameter("schedule needs quartz_cron_expression and timezone_id.")
        return config, output_schema

    @staticmethod
    def _inference_log(table: str, schema: Any, raw: Any) -> dict[str, Any]:
        import pyarrow as pa

        if not isinstance(raw, dict):
            raise invalid_parameter("data_profiling_config.inference_log must be an object.")
        problem = raw.get("problem_type")
        if problem not in _PROBLEM_TYPES:
            raise invalid_parameter(f"Invalid inference_log.problem_type {problem!r}: one of "
                                    f"{sorted(_PROBLEM_TYPES)}.")
        granularities = raw.get("granularities")
        if not isinstance(granularities, list) or not granularities:
            raise invalid_parameter("inference_log.granularities must list at least one granularity.")
        bad = [g for g in granularities if g not in _GRANULARITIES]
        if bad:
            raise invalid_parameter(f"Invalid inference_log.granularities {bad}: each one of {sorted(_GRANULARITIES)}.")
        columns = {f.name: f.type for f in schema}
        out: dict[str, Any] = {"problem_type": problem, "granularities": list(dict.fromkeys(granularities))}
        for key in ("timestamp_column", "prediction_column", "model_id_column", "label_column"):
            name = raw.get(key)
            if name is None and key == "label_column":
                continue
            if not isinstance(name, str) or name not in columns:
                raise invalid_parameter(f"inference_log.{key} {name!r} is not a column of table '{table}'.")
            out[key] = name
        t = columns[out["timestamp_column"]]
        if not (pa.types.is_timestamp(t) or pa.types.is_date(t)):
            raise invalid_parameter(f"inference_log.timestamp_column '{out['timestamp_column']}' must be a "
                                    "TIMESTAMP or DATE column.")
        return out

    # ------------------------------------------------------------------ monitors
    def create_monitor(self, req: Request) -> Response:
        body = req.json()
        object_type = body.get("object_type")
        self._object_type(object_type if isinstance(object_type, str) else "")
        object_id = body.get("object_id")
        if not isinstance(object_id, str) or not object_id:
            raise invalid_parameter("object_id is required: the table's table_id.")
        if body.get("anomaly_detection_config") is not None:
            raise invalid_parameter("anomaly_detection_config applies to schema monitors, not to tables.")
        table = self._table_by_id(object_id)
        config, output_schema = self._validate(table, body.get("data_profiling_config"))
        with self._lock:
            if object_id in self._monitors:
                raise already_exists(f"Data quality monitor for table '{table}' already exists.")
            rec = MonitorRecord(object_id, table, config, output_schema)
            self._monitors[object_id] = rec
            self._queue(rec)
            return Response(body=rec.render())

    def get_monitor(self, req: Request, object_type: str, object_id: str) -> Response:
        with self._lock:
            return Response(body=self._monitor(object_type, object_id).render())

    def list_monitor(self, req: Request) -> Response:
        size, offset = _paging(req, 100)
        with self._lock:
            ids = sorted(self._monitors)
            page = [self._monitors[i].render() for i in ids[offset:offset + size]]
        body: dict[str, Any] = {"monitors": page}
        if offset + size < len(ids):
            body["next_page_token"] = str(offset + size)
        return Response(body=body)

    def update_monitor(self, req: Request, object_type: str, object_id: str) -> Response:
        body = req.json()
        mask = (req.query.get("update_mask") or [""])[0]
        paths = [p.strip() for p in mask.split(",") if p.strip()]
        if not paths:
            raise invalid_parameter("update_mask is required, e.g. data_profiling_config.baseline_table_name.")
        with self._lock:
            rec = self._monitor(object_type, object_id)
            current = copy.deepcopy(rec.config)
        new = body.get("data_profiling_config") or {}
        if not isinstance(new, dict):
            raise invalid_parameter("data_profiling_config must be an object.")
        for path in paths:
            if path in ("*", "data_profiling_config"):
                current = {k: v for k, v in new.items() if k in UPDATABLE}
                continue
            parts = path.split(".")
            if parts[0] != "data_profiling_config" or len(parts) < 2 or parts[1] not in UPDATABLE:
                raise invalid_parameter(f"Cannot update {path!r}: the updatable fields are "
                                        f"{['data_profiling_config.' + f for f in UPDATABLE]} and their subfields.")
            _set_path(current, parts[1:], _get_path(new, parts[1:]))
        config, output_schema = self._validate(rec.table, current)
        with self._lock:
            rec = self._monitor(object_type, object_id)
            rec.config, rec.output_schema = config, output_schema
            rec.monitor_version += 1
            return Response(body=rec.render())

    def delete_monitor(self, req: Request, object_type: str, object_id: str) -> Response:
        now = _now_ms()
        with self._lock:
            rec = self._monitor(object_type, object_id)
            rec.deleted = True
            for r in rec.refreshes:
                _cancel(r, now)
            del self._monitors[object_id]
        return Response(body={})

    # ------------------------------------------------------------------ refreshes
    def create_refresh(self, req: Request, object_type: str, object_id: str) -> Response:
        req.json()  # the body is the Refresh; its fields are all set by the server
        with self._lock:
            rec = self._monitor(object_type, object_id)
            return Response(body=self._queue(rec).render())

    def list_refresh(self, req: Request, object_type: str, object_id: str) -> Response:
        size, offset = _paging(req, 25)
        with self._lock:
            refreshes = list(reversed(self._monitor(object_type, object_id).refreshes))
            page = [r.render() for r in refreshes[offset:offset + size]]
        body: dict[str, Any] = {"refreshes": page}
        if offset + size < len(refreshes):
            body["next_page_token"] = str(offset + size)
        return Response(body=body)

    def _refresh(self, object_type: str, object_id: str, refresh_id: str) -> RefreshRecord:
        rec = self._monitor(object_type, object_id)
        try:
            wanted = int(refresh_id)
        except ValueError as exc:
            raise invalid_parameter(f"refresh_id must be an integer, got {refresh_id!r}.") from exc
        for r in rec.refreshes:
            if r.refresh_id == wanted:
                return r
        raise does_not_exist(f"Refresh {refresh_id} of the monitor for table with id '{object_id}' does not exist.")

    def get_refresh(self, req: Request, object_type: str, object_id: str, refresh_id: str) -> Response:
        with self._lock:
            return Response(body=self._refresh(object_type, object_id, refresh_id).render())

    def cancel_refresh(self, req: Request, object_type: str, object_id: str, refresh_id: str) -> Response:
        with self._lock:
            r = self._refresh(object_type, object_id, refresh_id)
            _cancel(r, _now_ms())
            return Response(body={"refresh": r.render()})

    def _queue(self, rec: MonitorRecord) -> RefreshRecord:
        """Queue a refresh (the lock is held); the monitor's worker thread runs its refreshes in order."""
        r = RefreshRecord(self._next_refresh, rec.object_id, _now_ms())
        self._next_refresh += 1
        rec.refreshes.append(r)
        if rec.worker is None:
            rec.worker = threading.Thread(target=self._work, args=(rec,), name=f"dq-refresh-{rec.object_id[:8]}",
                                          daemon=True)
            rec.worker.start()
        return r

    def _work(self, rec: MonitorRecord) -> None:
        while True:
            with self._lock:
                r = next((x for x in rec.refreshes if x.state == PENDING), None)
                if r is None or rec.deleted or self._stopping.is_set():
                    rec.worker = None
                    return
            if self._stopping.wait(max(self.refresh_pending_seconds, 0.0)):
                with self._lock:
                    rec.worker = None
                return
            with self._lock:
                if r.state != PENDING:
                    continue  # canceled while it waited
                r.state = RUNNING
                table, config, version = rec.table, copy.deepcopy(rec.config), rec.monitor_version
                profile_table, drift_table = rec.metric_tables
            state, message = self._run(r, table, config, version, profile_table, drift_table)
            with self._lock:
                r.state, r.message, r.end_time_ms = state, message, _now_ms()
                if state == SUCCESS:
                    rec.status = "ACTIVE"
                elif state == FAILED:
                    rec.failure = message
                    if rec.status == "PENDING":  # the first refresh to end failed
                        rec.status = "ERROR"

    def _run(self, r: RefreshRecord, table: str, config: dict[str, Any], monitor_version: int,
             profile_table: str, drift_table: str) -> tuple[str, str | None]:
        """Compute and write both metric tables; returns (state, message)."""
        from . import data_profiling

        def check() -> None:
            if r.cancel.is_set() or self._stopping.is_set():
                raise data_profiling.Cancelled()

        try:
            name = self.catalog.require(table)
            version = self.catalog.version(name)
            primary = self.catalog.read(name, version)
            baseline_name = config.get("baseline_table_name")
            baseline = self.catalog.read(self.catalog.require(baseline_name)) if baseline_name else None
            il = config["inference_log"]
            spec = data_profiling.InferenceLog(il["problem_type"], il["timestamp_column"], tuple(il["granularities"]),
                                               il["prediction_column"], il["model_id_column"], il.get("label_column"))
            missing = [c for c in (spec.timestamp_column, spec.prediction_column, spec.model_id_column,
                                   spec.label_column) if c is not None and c not in primary.column_names]
            if missing:
                return FAILED, f"Column(s) {missing} of the monitor's inference_log are not in table '{name}'."
            check()
            profile, drift = data_profiling.compute(primary, baseline, spec, monitor_version=monitor_version,
                                                    commit_version=version, check=check)
            check()
            for target, data in ((profile_table, profile), (drift_table, drift)):
                self.catalog.create_table(target, data, replace=self.catalog.exists(target))
            return SUCCESS, None
        except data_profiling.Cancelled:
            return CANCELED, None
        except ApiError as exc:
            return FAILED, exc.message
        except Exception as exc:  # a refresh fails with a message; the workspace keeps serving
            log.warning("refresh %s of %s failed", r.refresh_id, table, exc_info=True)
            return FAILED, f"{type(exc).__name__}: {exc}"


def _now_ms() -> int:
    return int(time.time() * 1000)


def _paging(req: Request, default_size: int) -> tuple[int, int]:
    """``page_size`` (clamped to 1.._PAGE_MAX) and the offset that ``page_token`` carries."""
    try:
        size = int((req.query.get("page_size") or [str(default_size)])[0])
        offset = int((req.query.get("page_token") or ["0"])[0] or 0)
    except ValueError as exc:
        raise invalid_parameter("page_size and page_token must be integers.") from exc
    return min(max(size, 1), _PAGE_MAX), offset


def _cancel(r: RefreshRecord, now_ms: int) -> None:
    """Cancel a refresh: a PENDING one ends CANCELED now; a RUNNING one stops at its next check."""
    if r.state == PENDING:
        r.state, r.end_time_ms = CANCELED, now_ms
    r.cancel.set()


def _get_path(obj: Any, parts: list[str]) -> Any:
    for p in parts:
        if not isinstance(obj, dict):
            return None
        obj = obj.get(p)
    return obj


def _set_path(obj: dict[str, Any], parts: list[str], value: Any) -> None:
    for p in parts[:-1]:
        nxt = obj.get(p)
        if not isinstance(nxt, dict):
            nxt = obj[p] = {}
        obj = nxt
    if value is None:
        obj.pop(parts[-1], None)
    else:
        obj[parts[-1]] = copy.deepcopy(value)
