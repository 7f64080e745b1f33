"""Automatic feature lookup for served models that carry a feature spec.

What Databricks does (Azure Databricks docs, "Automatic feature lookup with MLflow models on
Databricks" and "Use features in online workflows" [DOC]): a model logged with
``FeatureEngineeringClient.log_model`` keeps the ``FeatureLookup``s of its training set; when a
scoring request comes in, Model Serving takes the lookup keys from the request, fetches the
features from the online store the feature tables were published to, joins them to the request
and scores the joined rows. The client sends only IDs (and whatever features are computed on the
client). Feature values sent in the request override the looked-up ones ("To override feature
values ... include the feature values as a part of the API payload" [DOC, same page]).

The local stand-in for that training-set metadata is our own JSON artifact, ``feature_spec.json``
at the root of the model's artifacts. It mirrors ``FeatureLookup`` (databricks-feature-engineering;
field names as in its Python API: ``table_name``, ``lookup_key``, ``feature_names``,
``rename_outputs``, ``default_values``) plus where each table lives online::

    {"lookups": [{"table_name": "cat.sch.zones",           # the Delta feature table
                  "lookup_key": ["pickup_zone"],           # request columns = the table's primary keys, in order
                  "feature_names": ["avg_fare", ...],      # null = every non-key column of the online row
                  "rename_outputs": {"avg_fare": "pickup_avg_fare"},
                  "default_values": {"pickup_avg_fare": 0.0},   # optional, by output name
                  "online_store": null}],
     "exclude_columns": ["pickup_zone"]}                   # dropped before the model sees the rows

``online_store`` says where the table is read at serving time:

- ``null``: a table Databricks published itself (Online Feature Store / Lakebase synced
  table). It is resolved through the workspace's online catalog
  (``online_catalog.OnlineCatalog``), at request time, as publishing may happen after deployment
  ("You can publish the feature table at any time prior to model deployment" [DOC]).
- ``{"connection_env": "TITANIC_FEATURES_URL", "online_table": "cat.sch.tbl_online",
  "primary_keys": [...]}``: a third-party online store (MySQL/MariaDB, PostgreSQL). The served
  entity gets the store's connection URL as an environment variable named ``connection_env``
  (``environment_vars`` of the served entity). On Databricks that value is a
  ``{{secrets/scope/key}}`` reference (docs: "Configure access to resources from model serving
  endpoints" [DOC]), and the third-party store specs of the Databricks feature-store client
  (``AzureMySqlSpec``, ``AmazonRdsMySqlSpec``, ...) are read with the secrets under their
  ``read_secret_prefix`` (``<prefix>-user``, ``<prefix>-password``) [INF: recollection]. The
  local workspace has no secret scopes: the variable must hold the URL itself
  (``mysql://user:pw@host:3306/db``, ``postgresql://...``, ``sqlite:///path``); a secret
  reference is refused with a clear message. ``online_table`` defaults to
  ``<table_name>_online`` (the app's policy default) and ``primary_keys`` to ``lookup_key``.

A key with no row in the online store (or a null key in the request): its features are null
(NaN in the pandas frame the model receives), unless the lookup gives ``default_values`` for them.
Null is also what a training-set join gives for a key without a feature row, as
``create_training_set`` joins the feature tables onto the label frame [INF: recollection, not
verified here; ``local.taxi.join_zone_features`` joins the same way]. ``default_values`` follows
``FeatureLookup(default_values=...)`` ("Support default values for feature lookups",
databricks-feature-engineering 0.12.1 release notes [DOC]; a default is keyed by "its output name
if it is renamed, otherwise its name in the feature table", Databricks SDK for JavaScript,
``features.v1.DefaultValue`` [DOC]); that a default also replaces a null stored value is [INF].
Whether such a row then scores is the model's business: MLflow's signature enforcement refuses NaN
in an integer (``long``) column, so models declare looked-up numeric features as ``double``, as
MLflow's own hint says ("Integer columns in Python cannot represent missing values ... declare
integer columns as doubles (float64)" [SRC mlflow/types/utils.py, mlflow/models/utils.py]). No
error is raised for a missing key [INF: Databricks does not document an error for it either].

Errors (chosen here; Databricks' statuses for these cases are not documented [INF]). None of them
is 429 or 503, which the SDK would retry for up to five minutes, and no message contains
"Unexpected error" (the SDK retries that too):

- the request lacks a lookup-key column, or is not tabular: ``400 BAD_REQUEST``;
- the served entity is misconfigured (the table is not published, the connection variable is
  missing or a secret reference, the online table's primary key does not match ``lookup_key``, a
  feature is not a column of the online table): ``500 INTERNAL_ERROR``. Retrying cannot help;
- the online store cannot be reached or refuses the query: ``502 BAD_GATEWAY``. Connecting is
  bounded by the store driver's connect timeout (10 s for MySQL/PostgreSQL, see
  ``shared.online_store``).

Connections: a small pool of idle ``OnlineStore`` connections per URL, shared by the request
threads (each connection is used by one thread at a time). A pooled connection that fails is
dropped and the lookup is retried once on a fresh one (a MariaDB ``wait_timeout`` or a restarted
store); a fresh connection that fails is an error. pandas is imported when a lookup runs.
"""

from __future__ import annotations

import contextlib
import json
import math
import re
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shared.online_store import OnlineStore, OnlineStoreError, physical_name, redact

from .errors import ApiError, bad_request

SPEC_FILE = "feature_spec.json"

_THREE_PART = re.compile(r"^[^.\s]+\.[^.\s]+\.[^.\s]+$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_SECRET_REF = re.compile(r"^\{\{\s*secrets/[^/]+/[^}]+\}\}$")


class FeatureSpecError(ValueError):
    """feature_spec.json is malformed; the model version cannot be deployed."""


def internal_error(message: str) -> ApiError:
    return ApiError(500, "INTERNAL_ERROR", message)


def bad_gateway(message: str) -> ApiError:
    return ApiError(502, "BAD_GATEWAY", message)


# ---------------------------------------------------------------------------------- the spec
@dataclass(frozen=True)
class ThirdPartyStore:
    connection_env: str
    online_table: str
    primary_keys: tuple[str, ...]


@dataclass(frozen=True)
class Lookup:
    table_name: str
    lookup_key: tuple[str, ...]
    feature_names: tuple[str, ...] | None  # None: every non-key column of the online row
    rename_outputs: Mapping[str, str] = field(default_factory=dict)
    default_values: Mapping[str, Any] = field(default_factory=dict)  # by output name
    online_store: ThirdPartyStore | None = None

    def output_name(self, feature: str) -> str:
        return self.rename_outputs.get(feature, feature)


@dataclass(frozen=True)
class FeatureSpec:
    lookups: tuple[Lookup, ...]
    exclude_columns: tuple[str, ...] = ()

    @staticmethod
    def load(model_dir: Path | str) -> FeatureSpec | None:
        """The spec saved with a model, or None when the model has none. Raises FeatureSpecError."""
        path = Path(model_dir) / SPEC_FILE
        if not path.exists():
            return None
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise FeatureSpecError(f"{SPEC_FILE} is not readable JSON: {exc}") from exc
        return FeatureSpec.parse(raw)

    @staticmethod
    def parse(raw: Any) -> FeatureSpec:
        if not isinstance(raw, dict) or not isinstance(raw.get("lookups"), list):
            raise FeatureSpecError(f'{SPEC_FILE} must be an object with a "lookups" list.')
        lookups = tuple(_parse_lookup(i, item) for i, item in enumerate(raw["lookups"]))
        exclude = raw.get("exclude_columns") or []
        if not isinstance(exclude, list) or not all(isinstance(c, str) and c for c in exclude):
            raise FeatureSpecError("exclude_columns must be a list of column names.")
        outputs: dict[str, str] = {}
        for lookup in lookups:
            for feature in lookup.feature_names or ():
                out = lookup.output_name(feature)
                if out in outputs:
                    raise FeatureSpecError(
                        f"Output column {out!r} comes from both {outputs[out]} and {lookup.table_name}:"
                        " rename one of them with rename_outputs."
                    )
                outputs[out] = lookup.table_name
        return FeatureSpec(lookups, tuple(exclude))

    def as_dict(self) -> dict[str, Any]:
        return {
            "lookups": [
                {
                    "table_name": lk.table_name,
                    "lookup_key": list(lk.lookup_key),
                    "feature_names": list(lk.feature_names) if lk.feature_names is not None else None,
                    "rename_outputs": dict(lk.rename_outputs),
                    "default_values": dict(lk.default_values),
                    "online_store": None
                    if lk.online_store is None
                    else {
                        "connection_env": lk.online_store.connection_env,
                        "online_table": lk.online_store.online_table,
                        "primary_keys": list(lk.online_store.primary_keys),
                    },
                }
                for lk in self.lookups
            ],
            "exclude_columns": list(self.exclude_columns),
        }


def _names(value: Any, what: str, *, allow_str: bool = False) -> tuple[str, ...]:
    if allow_str and isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value):
        raise FeatureSpecError(f"{what} must be a non-empty list of column names; got {value!r}.")
    if len(set(value)) != len(value):
        raise FeatureSpecError(f"{what} names a column twice: {value!r}.")
    return tuple(value)


def _parse_lookup(index: int, item: Any) -> Lookup:
    where = f"lookups[{index}]"
    if not isinstance(item, dict):
        raise FeatureSpecError(f"{where} must be an object.")
    table = item.get("table_name")
    if not isinstance(table, str) or not _THREE_PART.match(table):
        raise FeatureSpecError(f"{where}.table_name must be a catalog.schema.table name; got {table!r}.")
    keys = _names(item.get("lookup_key"), f"{where}.lookup_key", allow_str=True)
    features = item.get("feature_names")
    names = None if features is None else _names(features, f"{where}.feature_names", allow_str=True)
    rename = item.get("rename_outputs") or {}
    if not isinstance(rename, dict) or not all(isinstance(k, str) and isinstance(v, str) and v for k, v in
                                               rename.items()):
        raise FeatureSpecError(f"{where}.rename_outputs must map feature names to output names.")
    if names is not None and set(rename) - set(names):
        raise FeatureSpecError(f"{where}.rename_outputs renames features it does not look up: "
                               f"{sorted(set(rename) - set(names))}.")
    defaults = item.get("default_values") or {}
    if not isinstance(defaults, dict) or not all(
        v is None or isinstance(v, str | int | float | bool) for v in defaults.values()
    ):
        raise FeatureSpecError(f"{where}.default_values must map output names to scalar values.")
    store = item.get("online_store")
    online: ThirdPartyStore | None = None
    if store is not None:
        if not isinstance(store, dict):
            raise FeatureSpecError(f"{where}.online_store must be null or an object.")
        env = store.get("connection_env")
        if not isinstance(env, str) or not _ENV_NAME.match(env):
            raise FeatureSpecError(f"{where}.online_store.connection_env must be an environment variable name.")
        online_table = store.get("online_table") or f"{table}_online"
        if not isinstance(online_table, str) or not _THREE_PART.match(online_table):
            raise FeatureSpecError(f"{where}.online_store.online_table must be a catalog.schema.table name.")
        try:
            physical_name(online_table)
        except ValueError as exc:
            raise FeatureSpecError(f"{where}.online_store.online_table: {exc}") from exc
        pks = store.get("primary_keys")
        primary = keys if pks is None else _names(pks, f"{where}.online_store.primary_keys", allow_str=True)
        if len(primary) != len(keys):
            raise FeatureSpecError(f"{where}: lookup_key {list(keys)} does not match the primary keys "
                                   f"{list(primary)} of {online_table}.")
        online = ThirdPartyStore(env, online_table, primary)
    return Lookup(table, keys, names, dict(rename), dict(defaults), online)


# ---------------------------------------------------------------------------------- connections
class StorePool:
    """Idle ``OnlineStore`` connections by URL, for the request threads of one workspace."""

    def __init__(self, max_idle_per_url: int = 4):
        self.max_idle_per_url = max_idle_per_url
        self._idle: dict[str, list[OnlineStore]] = {}
        self._lock = threading.Lock()

    def lookup(self, url: str, table: str, primary_keys: Sequence[str], keys: Sequence[tuple]) -> list[dict | None]:
        """``OnlineStore.lookup`` on a pooled connection. Raises OnlineStoreError or ValueError (bad URL)."""
        store, reused = self._acquire(url)
        try:
            rows = store.lookup(table, primary_keys, keys)
        except OnlineStoreError:
            _close_quietly(store)
            if not reused:
                raise
            store = OnlineStore(url)  # the pooled connection had gone stale: one fresh attempt
            try:
                rows = store.lookup(table, primary_keys, keys)
            except BaseException:
                _close_quietly(store)
                raise
        except BaseException:
            _close_quietly(store)
            raise
        self._release(url, store)
        return rows

    def _acquire(self, url: str) -> tuple[OnlineStore, bool]:
        with self._lock:
            idle = self._idle.get(url)
            if idle:
                return idle.pop(), True
        return OnlineStore(url), False  # connect outside the lock

    def _release(self, url: str, store: OnlineStore) -> None:
        with self._lock:
            idle = self._idle.setdefault(url, [])
            if len(idle) < self.max_idle_per_url:
                idle.append(store)
                return
        _close_quietly(store)

    def idle_count(self, url: str) -> int:
        with self._lock:
            return len(self._idle.get(url, ()))

    def close(self) -> None:
        with self._lock:
            stores = [s for idle in self._idle.values() for s in idle]
            self._idle.clear()
        for store in stores:
            _close_quietly(store)


def _close_quietly(store: OnlineStore) -> None:
    with contextlib.suppress(Exception):  # closing a broken connection may fail too; it is gone either way
        store.close()


# ---------------------------------------------------------------------------------- the lookup
@dataclass
class LookupStats:
    tables: int = 0
    keys: int = 0  # distinct keys asked for, over all tables
    missing: int = 0  # of those, keys without a row
    seconds: float = 0.0

    def describe(self) -> str:
        return (f"feature lookup: {self.tables} table(s), {self.keys} key(s), {self.missing} without a row,"
                f" {self.seconds * 1000:.1f} ms")


def request_frame(payload: Mapping[str, Any]) -> tuple[Any, dict[str, Any] | None]:
    """The request rows as a pandas DataFrame, parsed by MLflow's scoring-server parser (no schema:
    the model's signature describes the joined rows, not the request), and the request's params."""
    import pandas as pd
    from mlflow.exceptions import MlflowException
    from mlflow.pyfunc import scoring_server

    data = {k: v for k, v in payload.items() if k in scoring_server.SUPPORTED_FORMATS}
    params = payload.get("params")
    try:
        parsed = scoring_server.infer_and_parse_data(data)
    except MlflowException as exc:
        raise bad_request(exc.message) from exc
    if isinstance(parsed, dict):
        try:
            parsed = pd.DataFrame(parsed)
        except (TypeError, ValueError) as exc:
            raise bad_request(f"Feature lookup needs tabular input with named columns: {exc}") from exc
    if not isinstance(parsed, pd.DataFrame):
        raise bad_request("Feature lookup needs tabular input with named columns (dataframe_split, "
                          f"dataframe_records, or instances/inputs as named columns); got {type(parsed).__name__}.")
    if params is not None and not isinstance(params, dict):
        raise bad_request(f"params must be a JSON object; got {type(params).__name__}.")
    return parsed, params


def augment(
    frame: Any,
    spec: FeatureSpec,
    *,
    catalog: Any,
    environment: Mapping[str, str],
    pool: StorePool,
    input_schema: Any = None,
    who: str = "the served entity",
) -> tuple[Any, LookupStats]:
    """Join the looked-up features to ``frame`` (row order and index kept) and drop the excluded
    columns. ``catalog`` resolves Databricks-published tables (``OnlineCatalog`` or None),
    ``environment`` is the served entity's ``environment_vars``; ``input_schema`` (the model's MLflow
    input schema) gives each output column its dtype so that a missing value stays representable.
    Raises ApiError (statuses in the module docstring)."""
    import pandas as pd

    started = time.perf_counter()
    stats = LookupStats()
    types = _schema_types(input_schema)
    added: dict[str, Any] = {}  # output column -> Series aligned with frame.index
    for lookup in spec.lookups:
        present = set(frame.columns) | set(added)
        wanted = None if lookup.feature_names is None else [
            f for f in lookup.feature_names if lookup.output_name(f) not in present  # sent: overrides
        ]
        if wanted == []:
            continue
        missing_keys = [k for k in lookup.lookup_key if k not in frame.columns]
        if missing_keys:
            raise bad_request(
                f"The request has no column {missing_keys} to look features up in {lookup.table_name}:"
                f" send the lookup key column(s) {list(lookup.lookup_key)}."
            )
        url, table, primary_keys = _locate(lookup, catalog, environment, who)
        keys = [tuple(_plain(v) for v in row) for row in frame[list(lookup.lookup_key)].itertuples(index=False)]
        distinct = list(dict.fromkeys(k for k in keys if not any(v is None for v in k)))
        try:
            rows = pool.lookup(url, table, primary_keys, distinct) if distinct else []
        except ValueError as exc:  # the URL itself is unusable (scheme, identifiers)
            raise internal_error(f"Cannot read {lookup.table_name} for {who}: {exc}") from exc
        except OnlineStoreError as exc:
            raise bad_gateway(
                f"The online store of {lookup.table_name} ({redact(url)}, table {table}) could not be read"
                f" for {who}: {exc}"
            ) from exc
        found = dict(zip(distinct, rows, strict=True))
        stats.tables += 1
        stats.keys += len(distinct)
        stats.missing += sum(1 for r in rows if r is None)
        features = wanted if wanted is not None else _all_features(rows, primary_keys, present, lookup)
        for feature in features:
            if any(r is not None and feature not in r for r in rows):
                raise internal_error(
                    f"Feature {feature!r} of {lookup.table_name} is not a column of its online table {table}"
                    f" (for {who})."
                )
            out = lookup.output_name(feature)
            default = lookup.default_values.get(out)
            values = []
            for key in keys:
                row = found.get(key)
                value = None if row is None else row.get(feature)
                if _is_null(value) and default is not None:
                    value = default
                values.append(value)
            added[out] = _column(values, frame.index, types.get(out))
    excluded = set(spec.exclude_columns)
    kept = frame[[c for c in frame.columns if c not in excluded]]
    looked_up = {name: column for name, column in added.items() if name not in excluded}
    joined = pd.concat([kept, pd.DataFrame(looked_up, index=frame.index)], axis=1) if looked_up else kept.copy()
    stats.seconds = time.perf_counter() - started
    return joined, stats


def _locate(lookup: Lookup, catalog: Any, environment: Mapping[str, str], who: str) -> tuple[str, str, tuple[str, ...]]:
    """(store URL, physical table, primary keys) of a lookup's online table."""
    if lookup.online_store is None:
        ref = catalog.resolve(lookup.table_name) if catalog is not None else None
        if ref is None:
            raise internal_error(
                f"Feature table {lookup.table_name} is not published to an online store, so {who} cannot look"
                " its features up. Publish it (feature_store.publish_table, or a synced table) and query again."
            )
        primary_keys = tuple(ref.primary_keys)
        if len(primary_keys) != len(lookup.lookup_key):
            raise internal_error(
                f"lookup_key {list(lookup.lookup_key)} of {lookup.table_name} does not match the primary keys"
                f" {list(primary_keys)} of its online table {ref.online_table} (for {who})."
            )
        return ref.store_url, ref.physical_table, primary_keys
    store = lookup.online_store
    url = environment.get(store.connection_env)
    if not url:
        raise internal_error(
            f"{who} has no environment variable {store.connection_env}, which holds the connection of the"
            f" online store of {lookup.table_name} ({store.online_table}). Set it in the served entity's"
            " environment_vars."
        )
    if _SECRET_REF.match(url.strip()):
        raise internal_error(
            f"Environment variable {store.connection_env} of {who} is a secret reference ({url.strip()}); the"
            " local workspace has no secret scopes: put the connection URL itself in environment_vars."
        )
    return url, physical_name(store.online_table), store.primary_keys


def _all_features(rows: list[dict | None], primary_keys: Sequence[str], present: Any, lookup: Lookup) -> list[str]:
    """feature_names null: every non-key column of the online rows that the request did not send."""
    columns: list[str] = []
    for row in rows:
        if row is not None:
            columns = [c for c in row if c not in primary_keys]
            break
    return [c for c in columns if lookup.output_name(c) not in present]


def _schema_types(input_schema: Any) -> dict[str, str]:
    if input_schema is None or not getattr(input_schema, "has_input_names", lambda: False)():
        return {}
    types: dict[str, str] = {}
    for spec in input_schema.inputs:
        name, kind = getattr(spec, "name", None), getattr(spec, "type", None)
        if name is not None and kind is not None:
            types[name] = getattr(kind, "name", str(kind))
    return types


def _column(values: list[Any], index: Any, kind: str | None) -> Any:
    import numpy as np
    import pandas as pd

    if kind in ("double", "float"):
        return pd.Series([np.nan if _is_null(v) else float(v) for v in values], index=index, dtype="float64")
    if kind in ("string", "boolean"):
        return pd.Series([np.nan if _is_null(v) else v for v in values], index=index, dtype=object)
    series = pd.Series(values, index=index)
    return series.infer_objects() if series.dtype == object else series


def _plain(value: Any) -> Any:
    """A key value as the DB driver wants it: numpy scalars unwrapped, NaN -> None, 3.0 -> 3."""
    if hasattr(value, "item") and not isinstance(value, str | bytes):
        value = value.item()
    if _is_null(value):
        return None
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _is_null(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))
