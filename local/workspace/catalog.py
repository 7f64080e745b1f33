"""Unity Catalog tables of the local workspace, backed by local Delta tables (``deltalake``).

A managed table ``catalog.schema.table`` lives in ``<data_dir>/uc/<catalog>/<schema>/<table>/``
as a real Delta table; what Unity Catalog keeps beside the data (table id, creator, comment and
the informational ``PRIMARY KEY`` constraint with its ``TIMESERIES`` column) is in a sidecar
``<table>.table.json`` next to that directory, never inside it (``VACUUM`` would not know it).

REST (Databricks "Unity Catalog API: Tables", ``w.tables`` in databricks-sdk 0.156.0):

- ``GET /api/2.1/unity-catalog/tables/{full_name}`` -> ``TableInfo``: MANAGED, DELTA, columns as
  ``ColumnInfo`` (``type_name``/``type_text``/``type_json``/``position``/``nullable``), the Delta
  table properties (``delta.enableChangeDataFeed`` when set, reader/writer versions) and
  ``table_constraints: [{"primary_key_constraint": {...}}]``. A missing table is
  ``404 TABLE_DOES_NOT_EXIST`` "Table '<name>' does not exist." [INF: the code is one of the
  Databricks error codes (it is in the Go SDK's ErrorCode enum); the SDK classes it by status as
  ``NotFound``].
- ``GET /api/2.1/unity-catalog/tables/{full_name}/exists`` -> ``{"table_exists": bool}``.
- ``GET /api/2.1/unity-catalog/tables?catalog_name=&schema_name=`` -> ``ListTablesResponse``
  ("table_constraints are not returned by ListTables queries", SDK docstring).

Local tooling (tests and the demo; not REST): ``create_table``, ``append_rows`` (a Delta append,
as ``INSERT INTO`` commits), ``upsert_rows`` (a Delta MERGE keyed by the primary key, so the change
data feed records ``update_preimage`` / ``update_postimage``), ``delete_rows`` (a MERGE ... WHEN
MATCHED DELETE), ``set_properties``, ``version``, ``read``, ``drop_table``. Names are
case-insensitive and stored in lower case, as Unity Catalog does [INF]; each part is a plain
identifier here. Catalogs and schemas are not objects of their own: a table's directories are
made when it is created.

Like Spark on Databricks, ``create_table`` stores timezone-naive timestamps as ``TIMESTAMP``
(UTC) rather than ``TIMESTAMP_NTZ``: ``spark.createDataFrame(pandas_df)`` does the same with the
default ``spark.sql.timestampType``. Primary-key constraints are informational and not enforced
(Databricks "Constraints on Databricks": PK/FK constraints are informational), so a key column may
hold NULLs; syncing to an online store drops those rows.
"""

from __future__ import annotations

import json
import re
import shutil
import threading
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from databricks.sdk.service import catalog as sdk

from .errors import ApiError, invalid_parameter
from .web import Request, Response, Router

# Unity Catalog object names (Databricks SQL reference "Names"): at most 255 characters, none of
# '.', ' ', '/', the ASCII control characters or DELETE; stored lowercase.
_PART = re.compile(r"^[^. /\x00-\x1f\x7f]{1,255}$")
CDF_PROPERTY = "delta.enableChangeDataFeed"
SIDECAR = ".table.json"
METASTORE_ID = str(uuid.uuid5(uuid.NAMESPACE_URL, "local-workspace/metastore"))


class DeltaSqlError(Exception):
    """An error Databricks raises from the SQL engine: ``[ERROR_CLASS] message SQLSTATE: xxxxx``."""

    def __init__(self, error_class: str, message: str, sql_state: str):
        self.error_class = error_class
        self.sql_state = sql_state
        self.detail = message
        super().__init__(f"[{error_class}] {message} SQLSTATE: {sql_state}")


def table_not_found(full_name: str) -> ApiError:
    return ApiError(404, "TABLE_DOES_NOT_EXIST", f"Table '{full_name}' does not exist.")


def quoted(full_name: str) -> str:
    return ".".join(f"`{p}`" for p in full_name.split("."))


def not_found_sql(full_name: str) -> DeltaSqlError:
    """Databricks' TABLE_OR_VIEW_NOT_FOUND text (as a recorded API exchange shows it)."""
    return DeltaSqlError(
        "TABLE_OR_VIEW_NOT_FOUND",
        f"The table or view {quoted(full_name)} cannot be found. Verify the spelling and correctness of the "
        "schema and catalog.\nIf you did not qualify the name with a schema, verify the current_schema() output, "
        "or qualify the name with the correct schema and catalog.\nTo tolerate the error on drop use DROP VIEW "
        "IF EXISTS or DROP TABLE IF EXISTS.",
        "42P01",
    )


@dataclass
class TableMeta:
    """What Unity Catalog keeps about a table beside its Delta log (the sidecar file)."""

    table_id: str
    created_at: int  # epoch ms
    created_by: str
    primary_key: list[str] | None = None  # child_columns of the PRIMARY KEY constraint (timeseries included)
    timeseries_key: str | None = None
    comment: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def online_keys(self) -> list[str]:
        """The key of the table's rows online: the primary key without its TIMESERIES column."""
        return [c for c in self.primary_key or [] if c != self.timeseries_key]


def _delta_type_text(t: Any) -> str:
    """Spark SQL type text of an Arrow type, as Unity Catalog shows it (``bigint``, ``decimal(5,2)``...)."""
    import pyarrow as pa

    if pa.types.is_boolean(t):
        return "boolean"
    if pa.types.is_int8(t):
        return "tinyint"
    if pa.types.is_int16(t):
        return "smallint"
    if pa.types.is_int32(t):
        return "int"
    if pa.types.is_integer(t):
        return "bigint"
    if pa.types.is_float16(t) or pa.types.is_float32(t):
        return "float"
    if pa.types.is_floating(t):
        return "double"
    if pa.types.is_decimal(t):
        return f"decimal({t.precision},{t.scale})"
    if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t):
        return "string"
    if pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_binary_view(t):
        return "binary"
    if pa.types.is_date(t):
        return "date"
    if pa.types.is_timestamp(t):
        return "timestamp" if t.tz else "timestamp_ntz"
    if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_list_view(t):
        return f"array<{_delta_type_text(t.value_type)}>"
    if pa.types.is_map(t):
        return f"map<{_delta_type_text(t.key_type)},{_delta_type_text(t.item_type)}>"
    if pa.types.is_struct(t):
        return "struct<" + ",".join(f"{f.name}:{_delta_type_text(f.type)}" for f in t) + ">"
    return "string"


_TYPE_NAMES = {
    "boolean": "BOOLEAN", "tinyint": "BYTE", "smallint": "SHORT", "int": "INT", "bigint": "LONG", "float": "FLOAT",
    "double": "DOUBLE", "string": "STRING", "binary": "BINARY", "date": "DATE", "timestamp": "TIMESTAMP",
    "timestamp_ntz": "TIMESTAMP_NTZ",
}


def _type_name(text: str) -> str:
    base = text.split("<", 1)[0].split("(", 1)[0]
    return _TYPE_NAMES.get(base, {"decimal": "DECIMAL", "array": "ARRAY", "map": "MAP", "struct": "STRUCT"}.get(base,
                                                                                                              "STRING"))


def _json_type(text: str) -> str:
    """Spark's JSON type name for ``type_json`` (``long`` for bigint, ``integer`` for int, ...)."""
    return {"bigint": "long", "int": "integer", "tinyint": "byte", "smallint": "short"}.get(text, text)


def rfc3339_ms(epoch_ms: float) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(epoch_ms / 1000.0, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class UnityCatalog:
    """Local Unity Catalog tables on Delta. Thread-safe: writes to one table are serialized."""

    def __init__(self, root: Path | str, *, user: str = "local-user@localhost"):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.user = user
        self._guard = threading.Lock()
        self._locks: dict[str, threading.RLock] = {}
        self._commit_ms: dict[tuple[str, int], int] = {}

    # ------------------------------------------------------------------ names and files
    @staticmethod
    def normalize(full_name: Any) -> str:
        """``Cat.Sch.Tbl`` -> ``cat.sch.tbl``; ValueError unless three Unity Catalog names."""
        if not isinstance(full_name, str):
            raise ValueError(f"a table name must be a string, got {type(full_name).__name__}")
        parts = [p.strip("`") for p in full_name.strip().split(".")]
        if len(parts) != 3 or not all(_PART.match(p) for p in parts):
            raise ValueError(f"{full_name!r} is not a three-part name catalog.schema.table of Unity Catalog names")
        return ".".join(p.lower() for p in parts)

    def path(self, full_name: str) -> Path:
        cat, sch, tbl = self.normalize(full_name).split(".")
        return self.root / cat / sch / tbl

    def _sidecar(self, full_name: str) -> Path:
        p = self.path(full_name)
        return p.with_name(p.name + SIDECAR)

    def _lock(self, full_name: str) -> threading.RLock:
        with self._guard:
            return self._locks.setdefault(full_name, threading.RLock())

    def exists(self, full_name: str) -> bool:
        try:
            return (self.path(full_name) / "_delta_log").is_dir()
        except ValueError:
            return False

    def require(self, full_name: str) -> str:
        """The normalized name of an existing table; 404 TABLE_DOES_NOT_EXIST otherwise."""
        try:
            name = self.normalize(full_name)
        except ValueError as exc:
            raise invalid_parameter(f"Invalid table name: {exc}.") from exc
        if not self.exists(name):
            raise table_not_found(name)
        return name

    def catalogs(self) -> set[str]:
        return {p.name for p in self.root.iterdir() if p.is_dir()} if self.root.is_dir() else set()

    def list_tables(self, catalog: str | None = None, schema: str | None = None) -> list[str]:
        names = []
        for log in sorted(self.root.glob("*/*/*/_delta_log")):
            tbl = log.parent
            name = f"{tbl.parent.parent.name}.{tbl.parent.name}.{tbl.name}"
            if (catalog is None or tbl.parent.parent.name == catalog.lower()) and (
                    schema is None or tbl.parent.name == schema.lower()):
                names.append(name)
        return names

    def meta(self, full_name: str) -> TableMeta:
        name = self.normalize(full_name)
        try:
            raw = json.loads(self._sidecar(name).read_text())
            return TableMeta(**raw)
        except (OSError, ValueError, TypeError):
            # A Delta table written by something else: give it a stable id and no constraint.
            return TableMeta(table_id=str(uuid.uuid5(uuid.NAMESPACE_URL, f"local-uc/{name}")), created_at=0,
                             created_by=self.user)

    def _write_meta(self, full_name: str, meta: TableMeta) -> None:
        path = self._sidecar(full_name)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(asdict(meta), indent=1))
        tmp.replace(path)

    def _commit_properties(self) -> Any:
        from deltalake import CommitProperties

        return CommitProperties(custom_metadata={"userName": self.user})

    # ------------------------------------------------------------------ reading
    def delta(self, full_name: str, version: int | None = None) -> Any:
        from deltalake import DeltaTable

        return DeltaTable(str(self.path(full_name)), version=version)

    def version(self, full_name: str) -> int:
        return int(self.delta(self.require(full_name)).version())

    def arrow_schema(self, full_name: str) -> Any:
        import pyarrow as pa

        return pa.schema(self.delta(full_name).schema().to_arrow())

    def dataset(self, full_name: str, version: int | None = None) -> Any:
        """The table (at ``version``) as a pyarrow dataset, for DuckDB and the sync pipelines."""
        return self.delta(full_name, version).to_pyarrow_dataset()

    def read(self, full_name: str, version: int | None = None) -> Any:
        return self.dataset(self.require(full_name), version).to_table()

    def properties(self, full_name: str) -> dict[str, str]:
        dt = self.delta(full_name)
        props = dict(dt.metadata().configuration or {})
        protocol = dt.protocol()
        props.setdefault("delta.minReaderVersion", str(protocol.min_reader_version))
        props.setdefault("delta.minWriterVersion", str(protocol.min_writer_version))
        return props

    def cdf_enabled(self, full_name: str) -> bool:
        conf = self.delta(full_name).metadata().configuration or {}
        return str(conf.get(CDF_PROPERTY, "false")).lower() == "true"

    def primary_key(self, full_name: str) -> tuple[list[str], str | None] | None:
        """``(child_columns, timeseries column)`` of the table's PRIMARY KEY constraint, or None."""
        meta = self.meta(full_name)
        return (list(meta.primary_key), meta.timeseries_key) if meta.primary_key else None

    def history(self, full_name: str, limit: int | None = None) -> list[dict[str, Any]]:
        """Commit infos, newest first (``DESCRIBE HISTORY``)."""
        entries = self.delta(full_name).history(limit)
        for e in entries:
            if "version" in e and "timestamp" in e:
                self._commit_ms[(full_name, int(e["version"]))] = int(e["timestamp"])
        return entries

    def commit_timestamp_ms(self, full_name: str, version: int) -> int | None:
        key = (full_name, int(version))
        if key not in self._commit_ms:
            self.history(full_name)
        return self._commit_ms.get(key)

    def changes(self, full_name: str, start: int | str, end: int | str | None = None) -> Any:
        """``table_changes(name, start[, end])``: the change data feed as an Arrow table with
        ``_change_type``, ``_commit_version`` (LONG) and ``_commit_timestamp`` (TIMESTAMP).

        Errors follow Delta on Databricks ("Use Delta Lake change data feed on Databricks"):
        a range that reaches a version written without CDF -> ``DELTA_MISSING_CHANGE_DATA``; an
        empty or inverted range -> ``DELTA_INVALID_CDC_RANGE`` [INF: texts recalled]. A start or
        end given as a timestamp string selects versions by commit time. An end past the latest
        version reads to the latest version [INF].
        """
        import pyarrow as pa
        import pyarrow.compute as pc
        from deltalake.exceptions import DeltaError

        dt = self.delta(full_name)
        latest = int(dt.version())
        kwargs: dict[str, Any] = {}
        if isinstance(start, str):
            kwargs["starting_timestamp"] = start
        else:
            if start < 0:
                raise DeltaSqlError("DELTA_INVALID_CDC_RANGE", f"CDC range from start {start} was invalid.", "22003")
            if start > latest:
                raise DeltaSqlError(
                    "DELTA_INVALID_CDC_RANGE",
                    f"Provided Start version({start}) for reading change data is invalid. Start version cannot be "
                    f"greater than the latest version of the table({latest}).", "22003")
            kwargs["starting_version"] = start
        if isinstance(end, str):
            kwargs["ending_timestamp"] = end
        elif end is not None:
            if not isinstance(start, str) and end < start:
                raise DeltaSqlError("DELTA_INVALID_CDC_RANGE",
                                    f"CDC range from start {start} to end {end} was invalid. End cannot be before "
                                    "start.", "22003")
            kwargs["ending_version"] = min(end, latest)
        if not isinstance(start, str) and not isinstance(end, str):
            stop = latest if end is None else min(end, latest)
            gap = self._version_without_cdf(full_name, start, stop)
            if gap is not None:
                raise _missing_change_data(start, stop, gap)
        try:
            table = pa.table(dt.load_cdf(**kwargs))
        except DeltaError as exc:
            m = re.search(r"version:? (\d+)", str(exc))
            if m and "change data" in str(exc).lower():
                raise _missing_change_data(start, end if end is not None else latest, int(m.group(1))) from exc
            raise DeltaSqlError("DELTA_INVALID_CDC_RANGE", str(exc), "22003") from exc
        columns, names = [], []
        for name, col in zip(table.column_names, table.columns, strict=True):
            t = col.type
            if pa.types.is_string_view(t) or pa.types.is_large_string(t):
                col = pc.cast(col, pa.string())
            elif name == "_commit_version":
                col = pc.cast(col, pa.int64())
            elif name == "_commit_timestamp":
                col = pc.cast(col, pa.timestamp("us", "UTC"))
            columns.append(col)
            names.append(name)
        return pa.table(columns, names=names)

    def _version_without_cdf(self, full_name: str, start: int, end: int) -> int | None:
        """The first version in [start, end] committed while change data feed was off, or None.

        Reads the table configuration at ``start``, then the ``metaData`` actions of the commit
        files ``_delta_log/<version>.json`` up to ``end`` (Delta protocol, "Change Metadata").
        """
        conf = dict(self.delta(full_name, start).metadata().configuration or {})
        log = self.path(full_name) / "_delta_log"
        for v in range(start, end + 1):
            if v > start:
                commit = log / f"{v:020d}.json"
                try:
                    lines = commit.read_text().splitlines()
                except OSError:
                    conf = dict(self.delta(full_name, v).metadata().configuration or {})
                    lines = []
                for line in lines:
                    if '"metaData"' in line:
                        conf = dict(json.loads(line)["metaData"].get("configuration") or {})
            if str(conf.get(CDF_PROPERTY, "false")).lower() != "true":
                return v
        return None

    # ------------------------------------------------------------------ local tooling: writes
    def create_table(
        self,
        full_name: str,
        data: Any,
        primary_keys: Sequence[str] | None = None,
        timeseries_key: str | None = None,
        change_data_feed: bool = False,
        *,
        comment: str | None = None,
        replace: bool = False,
    ) -> int:
        """Create a managed Delta table from a pandas DataFrame or pyarrow Table; returns its version (0).

        ``primary_keys`` become the PRIMARY KEY constraint; a ``timeseries_key`` is added to it as
        its TIMESERIES column (``PRIMARY KEY (id, ts TIMESERIES)``), as Feature Engineering does for
        time-series feature tables. ``change_data_feed`` sets ``delta.enableChangeDataFeed``.
        ``replace`` replaces an existing table as ``CREATE OR REPLACE TABLE`` does: a new version
        (an overwrite commit, history kept, same table id) with the new data, schema, properties
        and constraint; returns that version.
        """
        from deltalake import write_deltalake

        name = self.normalize(full_name)
        table = _arrow(data)
        columns = set(table.column_names)
        keys = list(primary_keys or [])
        if timeseries_key is not None and timeseries_key not in keys:
            keys.append(timeseries_key)
        missing = [k for k in keys if k not in columns]
        if missing:
            raise ValueError(f"primary key column(s) {missing} are not columns of {name}: {sorted(columns)}")
        with self._lock(name):
            path = self.path(name)
            meta = TableMeta(table_id=str(uuid.uuid4()), created_at=int(time.time() * 1000), created_by=self.user,
                             primary_key=keys or None, timeseries_key=timeseries_key, comment=comment)
            if self.exists(name):
                if not replace:
                    raise ValueError(f"table {name} already exists")
                old = self.meta(name)
                meta.table_id, meta.created_at, meta.created_by = old.table_id, old.created_at, old.created_by
                write_deltalake(str(path), table, mode="overwrite", schema_mode="overwrite",
                                configuration={CDF_PROPERTY: "true" if change_data_feed else "false"},
                                commit_properties=self._commit_properties())
            else:
                path.parent.mkdir(parents=True, exist_ok=True)
                config = {CDF_PROPERTY: "true"} if change_data_feed else None
                write_deltalake(str(path), table, mode="error", name=name.split(".")[-1], description=comment,
                                configuration=config, commit_properties=self._commit_properties())
            self._write_meta(name, meta)
            return self.version(name)

    def append_rows(self, full_name: str, data: Any) -> int:
        """``INSERT INTO``: one Delta append commit of ``data`` (a pyarrow Table or pandas DataFrame
        with the table's schema); returns the new version."""
        from deltalake import write_deltalake

        name = self.require(full_name)
        table = _arrow(data)
        with self._lock(name):
            write_deltalake(str(self.path(name)), table, mode="append", commit_properties=self._commit_properties())
            return int(self.delta(name).version())

    def upsert_rows(self, full_name: str, rows: Iterable[dict[str, Any]]) -> int:
        """MERGE ``rows`` into the table by its primary key (update matched, insert the rest);
        returns the new version. Several rows with one key: the last one wins."""
        import pyarrow as pa

        name = self.require(full_name)
        keys = self._merge_keys(name)
        with self._lock(name):
            schema = self.arrow_schema(name)
            rows = list(rows)
            unknown = sorted({k for r in rows for k in r} - set(schema.names))
            if unknown:
                raise ValueError(f"unknown column(s) {unknown} for {name}: {schema.names}")
            latest: dict[tuple, dict[str, Any]] = {}
            for r in rows:
                latest[tuple(r.get(k) for k in keys)] = r
            if not latest:
                return self.version(name)
            source = pa.Table.from_pylist(list(latest.values()), schema=schema)
            dt = self.delta(name)
            (dt.merge(source, _match(keys), source_alias="s", target_alias="t",
                      commit_properties=self._commit_properties())
             .when_matched_update_all().when_not_matched_insert_all().execute())
            return int(self.delta(name).version())

    def delete_rows(self, full_name: str, keys: Iterable[Any]) -> int:
        """Delete the rows whose primary key is in ``keys`` (dicts, tuples in key order, or scalars
        for a one-column key) with a MERGE ... WHEN MATCHED DELETE; returns the new version."""
        import pyarrow as pa

        name = self.require(full_name)
        pk = self._merge_keys(name)
        records = []
        for k in keys:
            if isinstance(k, dict):
                records.append({c: k.get(c) for c in pk})
            elif isinstance(k, (tuple, list)):
                records.append(dict(zip(pk, k, strict=True)))
            else:
                records.append({pk[0]: k})
        with self._lock(name):
            if not records:
                return self.version(name)
            schema = self.arrow_schema(name)
            source = pa.Table.from_pylist(records, schema=pa.schema([schema.field(c) for c in pk]))
            dt = self.delta(name)
            (dt.merge(source, _match(pk), source_alias="s", target_alias="t",
                      commit_properties=self._commit_properties())
             .when_matched_delete().execute())
            return int(self.delta(name).version())

    def set_properties(self, full_name: str, properties: dict[str, str], unset: Sequence[str] = ()) -> int:
        """``ALTER TABLE ... SET/UNSET TBLPROPERTIES``: a real Delta metadata commit. Change data is
        recorded from the commit that enables ``delta.enableChangeDataFeed`` on."""
        name = self.require(full_name)
        with self._lock(name):
            dt = self.delta(name)
            props = {str(k): str(v) for k, v in properties.items()}
            for key in unset:
                props[key] = "false" if key == CDF_PROPERTY else ""
            if props:
                dt.alter.set_table_properties(props, raise_if_not_exists=False,
                                              commit_properties=self._commit_properties())
            return int(self.delta(name).version())

    def drop_table(self, full_name: str) -> None:
        name = self.normalize(full_name)
        with self._lock(name):
            shutil.rmtree(self.path(name), ignore_errors=True)
            self._sidecar(name).unlink(missing_ok=True)
            self._commit_ms = {k: v for k, v in self._commit_ms.items() if k[0] != name}

    def _merge_keys(self, name: str) -> list[str]:
        pk = self.primary_key(name)
        if pk is None:
            raise ValueError(f"table {name} has no primary key constraint: upserts and deletes are keyed by it")
        return pk[0]

    # ------------------------------------------------------------------ REST
    def register(self, router: Router) -> None:
        p = "/api/2.1/unity-catalog/tables"
        router.add("GET", p, self._list_rest)
        router.add("GET", p + "/{full_name}", self._get_rest)
        router.add("GET", p + "/{full_name}/exists", self._exists_rest)

    def table_info(self, full_name: str, *, constraints: bool = True) -> sdk.TableInfo:
        name = self.require(full_name)
        cat, sch, tbl = name.split(".")
        meta = self.meta(name)
        schema = self.arrow_schema(name)
        columns = []
        for i, f in enumerate(schema):
            text = _delta_type_text(f.type)
            columns.append(sdk.ColumnInfo(
                name=f.name, position=i, nullable=f.nullable, type_text=text,
                type_name=sdk.ColumnTypeName(_type_name(text)),
                type_json=json.dumps({"name": f.name, "type": _json_type(text), "nullable": f.nullable,
                                      "metadata": {}}, separators=(",", ":")),
            ))
        table_constraints = None
        if constraints and meta.primary_key:
            table_constraints = [sdk.TableConstraint(primary_key_constraint=sdk.PrimaryKeyConstraint(
                name=f"{tbl}_pk", child_columns=list(meta.primary_key),
                timeseries_columns=[meta.timeseries_key] if meta.timeseries_key else None))]
        history = self.history(name, 1)
        updated_at = int(history[0]["timestamp"]) if history else meta.created_at
        return sdk.TableInfo(
            catalog_name=cat, schema_name=sch, name=tbl, full_name=name, table_type=sdk.TableType.MANAGED,
            data_source_format=sdk.DataSourceFormat.DELTA, storage_location=self.path(name).resolve().as_uri(),
            columns=columns, properties=self.properties(name), table_constraints=table_constraints,
            table_id=meta.table_id, comment=meta.comment, owner=meta.created_by, created_at=meta.created_at or None,
            created_by=meta.created_by, updated_at=updated_at, updated_by=self.user, metastore_id=METASTORE_ID,
        )

    def _get_rest(self, req: Request, full_name: str) -> Response:
        return Response(body=self.table_info(full_name).as_dict())

    def _exists_rest(self, req: Request, full_name: str) -> Response:
        return Response(body=sdk.TableExistsResponse(table_exists=self.exists(full_name)).as_dict())

    def _list_rest(self, req: Request) -> Response:
        catalog = (req.query.get("catalog_name") or [None])[0]
        schema = (req.query.get("schema_name") or [None])[0]
        if not catalog or not schema:
            raise invalid_parameter("catalog_name and schema_name are required.")
        tables = [self.table_info(n, constraints=False) for n in self.list_tables(catalog, schema)]
        return Response(body=sdk.ListTablesResponse(tables=tables).as_dict())


def _missing_change_data(start: Any, end: Any, version: int) -> DeltaSqlError:
    return DeltaSqlError(
        "DELTA_MISSING_CHANGE_DATA",
        f"Error getting change data for range [{start} , {end}] as change data was not recorded for version "
        f"[{version}]. If you've enabled change data feed on this table, use `DESCRIBE HISTORY` to see when it was "
        "first enabled. Otherwise, to start recording change data, use `ALTER TABLE table_name SET TBLPROPERTIES "
        "(delta.enableChangeDataFeed=true)`.", "0AKDC")


def _match(keys: Sequence[str]) -> str:
    """The MERGE predicate on the key columns, names in backticks as deltalake quotes its own
    update and insert clauses (which leave a backtick inside a name unescaped: such names fail)."""
    def q(name: str) -> str:
        return "`" + name.replace("`", "``") + "`"

    return " AND ".join(f"t.{q(k)} = s.{q(k)}" for k in keys)


def _arrow(data: Any) -> Any:
    """A pyarrow Table from a pandas DataFrame or Arrow data; timestamps as Delta stores them:
    microseconds, and timezone-naive ones taken as UTC (see the module docstring)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if isinstance(data, pa.Table):
        table = data
    elif hasattr(data, "iloc"):  # pandas
        table = pa.Table.from_pandas(data, preserve_index=False)
    else:  # anything with the Arrow PyCapsule interface, or a dict of columns
        table = pa.table(data)
    columns = []
    for col in table.columns:
        t = col.type
        if pa.types.is_timestamp(t):
            col = pc.cast(col, pa.timestamp("us", t.tz or "UTC"), safe=False)
        elif pa.types.is_large_string(t) or pa.types.is_string_view(t):
            col = pc.cast(col, pa.string())
        columns.append(col)
    return pa.table(columns, names=table.column_names)
