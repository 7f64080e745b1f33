"""Automatic feature lookup at serving time: the real databricks-sdk against a LocalWorkspace.

A sqlite MLflow registry holds three real models: ``taxi_plain`` (no feature spec),
``taxi_zones`` (trip features sent by the client + pickup/dropoff zone features looked up in a
SQLite online store that the workspace's online catalog knows) and ``titanic`` (every feature
looked up by PassengerId in MariaDB, a third-party store whose URL the served entity gets in
``environment_vars``). MariaDB must run on 127.0.0.1:3306 (root, no password, database ``test``);
it is started if it is down, never skipped. Each run uses its own MariaDB table and drops it.
"""

from __future__ import annotations

import json
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from databricks.sdk import WorkspaceClient
from databricks.sdk.errors import BadRequest, DatabricksError, InternalError
from databricks.sdk.service.serving import (
    AiGatewayInferenceTableConfig,
    DataframeSplitInput,
    EndpointCoreConfigInput,
    ServedEntityInput,
)

from local import taxi, titanic
from local.services import ensure_mariadb
from local.workspace import LocalWorkspace
from local.workspace.feature_lookup import FeatureSpec, FeatureSpecError, StorePool, augment
from local.workspace.online_catalog import OnlineCatalog, OnlineTableRef
from shared.online_store import OnlineStore, physical_name
from tests.sql_results import query

TOKEN = "test-token"
PICKUP = "main.taxi.pickup_zone_features"
DROPOFF = "main.taxi.dropoff_zone_features"
TITANIC_TABLE = "main.titanic.passengers"
ENV = "TITANIC_FEATURES_URL"


# ---------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def mariadb() -> str:
    """MariaDB on 127.0.0.1:3306, started if it is down; never skipped."""
    return ensure_mariadb()


@pytest.fixture(scope="module")
def zone_tables() -> tuple[pd.DataFrame, pd.DataFrame]:
    return taxi.make_zone_feature_tables(n=6000, seed=100)


@pytest.fixture(scope="module")
def titanic_online_table() -> str:
    return f"test.titanic.passengers_{uuid.uuid4().hex[:10]}"  # unique per run


@pytest.fixture(scope="module")
def passengers() -> pd.DataFrame:
    return titanic.make_passengers(seed=0)


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory, zone_tables, titanic_online_table: str) -> str:
    root = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    pickup_df, dropoff_df = zone_tables
    assert taxi.train_and_register(uri, model_name="taxi_plain", n=600) == "1"
    assert taxi.train_and_register_with_features(uri, "taxi_zones", PICKUP, DROPOFF, pickup_df, dropoff_df,
                                                 seed=0, n=1500) == "1"
    assert titanic.train_and_register(uri, "titanic", TITANIC_TABLE, ENV, titanic_online_table, seed=0) == "1"
    _register_bad_spec(uri, root)
    return uri


def _register_bad_spec(uri: str, root: Path) -> None:
    """``bad_spec`` v1: a real model whose feature_spec.json names a table without catalog and schema."""
    import mlflow
    from mlflow import MlflowClient
    from sklearn.linear_model import LinearRegression

    x = pd.DataFrame({"a": [0.0, 1.0, 2.0]})
    experiment_id = taxi._experiment_id("bad_spec", None, uri)
    with taxi.using_mlflow_uri(uri), mlflow.start_run(experiment_id=experiment_id):
        info = mlflow.sklearn.log_model(LinearRegression().fit(x, [0.0, 1.0, 2.0]), name="model",
                                        pip_requirements=["scikit-learn"])
        spec = {"lookups": [{"table_name": "zones", "lookup_key": ["a"], "feature_names": ["f"]}]}
        assert taxi.register_with_feature_spec(MlflowClient(uri, uri), info, spec, root, "bad_spec", None) == "1"


@pytest.fixture(scope="module")
def ws(registry: str, tmp_path_factory: pytest.TempPathFactory) -> LocalWorkspace:
    workspace = LocalWorkspace(
        host="127.0.0.1", port=0, token=TOKEN, registry_uri=registry, data_dir=tmp_path_factory.mktemp("ws")
    )
    workspace.faults.provisioning_seconds = 0.05
    workspace.start()
    yield workspace
    workspace.stop()


@pytest.fixture(scope="module")
def w(ws: LocalWorkspace) -> WorkspaceClient:
    return WorkspaceClient(host=ws.url, token=TOKEN)


@pytest.fixture(scope="module")
def zone_store(ws: LocalWorkspace, zone_tables, tmp_path_factory: pytest.TempPathFactory) -> str:
    """Both zone tables published to a SQLite online store and registered in the online catalog."""
    url = f"sqlite:///{tmp_path_factory.mktemp('online') / 'online.sqlite'}"
    for source, frame in zip((PICKUP, DROPOFF), zone_tables, strict=True):
        online = f"{source}_online"
        physical = taxi.publish_features(url, online, frame, [taxi.ZONE_KEY])
        ws.online_catalog.register(OnlineTableRef(source, online, url, physical, (taxi.ZONE_KEY,)))
    return url


@pytest.fixture(scope="module")
def titanic_store(mariadb: str, passengers: pd.DataFrame, titanic_online_table: str) -> str:
    physical = titanic.publish_passengers(mariadb, titanic_online_table, passengers)
    yield physical
    with OnlineStore(mariadb) as store:
        store.drop_table(physical)


def entity(model: str, version: str = "1", env: dict[str, str] | None = None) -> ServedEntityInput:
    return ServedEntityInput(entity_name=model, entity_version=version, workload_size="Small",
                             scale_to_zero_enabled=True, environment_vars=env)


def create_ready(w: WorkspaceClient, name: str, served: ServedEntityInput) -> None:
    w.serving_endpoints.create(name, config=EndpointCoreConfigInput(name=name, served_entities=[served]))
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        ep = w.serving_endpoints.get(name)
        if ep.state.config_update.value != "IN_PROGRESS":
            assert ep.state.ready.value == "READY", ep.as_dict()
            return
        time.sleep(0.05)
    raise AssertionError(f"{name} still updating")


def local_model(ws: LocalWorkspace, name: str):
    loaded = ws.models.cached(name, "1") or ws.models.load(name, "1")
    return loaded


def capture_inferences(w: WorkspaceClient, endpoint: str) -> None:
    """Enable the endpoint's AI Gateway inference table, ``main.serving.<endpoint>_payload``."""
    w.serving_endpoints.put_ai_gateway(endpoint, inference_table_config=AiGatewayInferenceTableConfig(
        catalog_name="main", schema_name="serving", enabled=True))


def payload_rows(ws: LocalWorkspace, w: WorkspaceClient, endpoint: str) -> list[dict[str, str | None]]:
    """The endpoint's inference table after a delivery, read through the Statement Execution API."""
    ws.inference.flush()
    return query(w, f"SELECT * FROM main.serving.`{endpoint}_payload` ORDER BY request_time").rows


@pytest.fixture(scope="module")
def taxi_endpoint(w: WorkspaceClient, zone_store: str) -> str:
    create_ready(w, "taxi_zones", entity("taxi_zones"))
    capture_inferences(w, "taxi_zones")
    return "taxi_zones"


@pytest.fixture(scope="module")
def titanic_endpoint(w: WorkspaceClient, titanic_store: str, mariadb: str) -> str:
    create_ready(w, "titanic", entity("titanic", env={ENV: mariadb}))
    capture_inferences(w, "titanic")
    return "titanic"


# ---------------------------------------------------------------------------------- taxi: published tables
def test_taxi_zone_features_are_looked_up_and_follow_the_online_store(
    ws: LocalWorkspace, w: WorkspaceClient, taxi_endpoint: str, zone_store: str, zone_tables
) -> None:
    pickup_df, dropoff_df = zone_tables
    records = taxi.request_records(n=6, seed=5)
    assert all(list(r) == taxi.REQUEST_COLUMNS for r in records)  # zone IDs + trip features only
    model = local_model(ws, "taxi_zones")
    assert model.feature_spec is not None
    assert [lk.table_name for lk in model.feature_spec.lookups] == [PICKUP, DROPOFF]

    def expected(pickup: pd.DataFrame) -> list[float]:
        joined = taxi.join_zone_features(pd.DataFrame(records), pickup, dropoff_df)
        return [float(p) for p in model.model.predict(joined[taxi.FEATURE_MODEL_INPUTS])]

    served = w.serving_endpoints.query(taxi_endpoint, dataframe_records=records)
    assert served.served_model_name == "taxi_zones-1"
    assert served.predictions == pytest.approx(expected(pickup_df))
    split = DataframeSplitInput(columns=taxi.REQUEST_COLUMNS, data=[list(r.values()) for r in records])
    assert w.serving_endpoints.query(taxi_endpoint, dataframe_split=split).predictions == served.predictions

    # The store changes: the zone of the first trip's pickup now looks like an airport zone.
    zone = records[0]["pickup_zone"]
    changed = pickup_df.copy()
    airport = pickup_df.loc[pickup_df[taxi.ZONE_KEY] == taxi.AIRPORT_ZONES[0], taxi.ZONE_FEATURES].iloc[0]
    changed.loc[changed[taxi.ZONE_KEY] == zone, taxi.ZONE_FEATURES] = [airport["avg_fare"] + 8.0, 40, 9.5]
    changed["trip_count"] = changed["trip_count"].astype("int64")
    taxi.publish_features(zone_store, f"{PICKUP}_online", changed[changed[taxi.ZONE_KEY] == zone],
                          [taxi.ZONE_KEY])
    try:
        after = w.serving_endpoints.query(taxi_endpoint, dataframe_records=records).predictions
        assert after == pytest.approx(expected(changed))
        for record, before_p, after_p in zip(records, served.predictions, after, strict=True):
            if record["pickup_zone"] == zone:
                assert after_p != pytest.approx(before_p), record
            else:
                assert after_p == pytest.approx(before_p), record
    finally:
        taxi.publish_features(zone_store, f"{PICKUP}_online", pickup_df[pickup_df[taxi.ZONE_KEY] == zone],
                              [taxi.ZONE_KEY])

    # The inference table keeps the client's request (IDs and trip features), not the joined rows.
    last = payload_rows(ws, w, taxi_endpoint)[-1]
    assert last["status_code"] == "200"
    assert json.loads(last["request"]) == {"dataframe_records": records}
    assert "feature lookup: 2 table(s)" in w.serving_endpoints.logs(taxi_endpoint, "taxi_zones-1").logs


def test_feature_values_sent_in_the_request_override_the_lookup(
    ws: LocalWorkspace, w: WorkspaceClient, taxi_endpoint: str, zone_tables
) -> None:
    pickup_df, dropoff_df = zone_tables
    record = taxi.request_records(n=1, seed=9)[0]
    overridden = {**record, "pickup_avg_fare": 55.0}
    model = local_model(ws, "taxi_zones").model
    joined = taxi.join_zone_features(pd.DataFrame([record]), pickup_df, dropoff_df)
    joined["pickup_avg_fare"] = 55.0
    served = w.serving_endpoints.query(taxi_endpoint, dataframe_records=[overridden]).predictions
    assert served == pytest.approx([float(model.predict(joined[taxi.FEATURE_MODEL_INPUTS])[0])])


# ---------------------------------------------------------------------------------- titanic: third-party store
def test_titanic_features_come_from_mariadb_and_a_missing_passenger_scores_on_nulls(
    ws: LocalWorkspace, w: WorkspaceClient, titanic_endpoint: str, passengers: pd.DataFrame, mariadb: str
) -> None:
    model = local_model(ws, "titanic").model
    ids = [3, 1, 700, 42, 3]
    served = w.serving_endpoints.query(titanic_endpoint, dataframe_records=titanic.request_records(ids))
    rows = passengers.set_index(titanic.KEY).loc[ids].reset_index()
    assert served.predictions == [int(p) for p in model.predict(titanic.model_inputs(rows))]
    assert set(served.predictions) <= {0, 1}

    # PassengerId 999999 has no row: its features are null (NaN), the model's imputers fill them in.
    missing = w.serving_endpoints.query(titanic_endpoint, dataframe_records=[{"PassengerId": 3},
                                                                             {"PassengerId": 999999}])
    nulls = pd.DataFrame({c: pd.Series([np.nan], dtype="float64" if c in titanic.NUMERIC else object)
                          for c in titanic.FEATURES})
    assert missing.predictions == [served.predictions[0], int(model.predict(nulls)[0])]
    assert "1 without a row" in w.serving_endpoints.logs(titanic_endpoint, "titanic-1").logs

    last = payload_rows(ws, w, titanic_endpoint)[-1]
    assert json.loads(last["request"]) == {"dataframe_records": [{"PassengerId": 3}, {"PassengerId": 999999}]}
    assert ws.serving.feature_stores.idle_count(mariadb) >= 1  # the connection is pooled, not reopened


def test_titanic_lookups_are_thread_safe_and_survive_a_dropped_connection(
    ws: LocalWorkspace, w: WorkspaceClient, titanic_endpoint: str, passengers: pd.DataFrame, mariadb: str
) -> None:
    model = local_model(ws, "titanic").model
    indexed = passengers.set_index(titanic.KEY)

    def expected(ids: list[int]) -> list[int]:
        return [int(p) for p in model.predict(titanic.model_inputs(indexed.loc[ids].reset_index()))]

    batches = [[1 + (7 * i + j) % 891 for j in range(1 + i % 5)] for i in range(24)]
    with ThreadPoolExecutor(max_workers=6) as pool:
        answers = list(pool.map(
            lambda ids: w.serving_endpoints.query(titanic_endpoint, dataframe_records=titanic.request_records(ids)),
            batches,
        ))
    for ids, answer in zip(batches, answers, strict=True):
        assert answer.predictions == expected(ids), ids
    assert 1 <= ws.serving.feature_stores.idle_count(mariadb) <= ws.serving.feature_stores.max_idle_per_url

    # MariaDB drops the pooled connections (wait_timeout, restart): the next lookup reconnects once.
    pooled = ws.serving.feature_stores._idle[mariadb]
    with OnlineStore(mariadb) as admin:
        for store in pooled:
            admin._run(f"KILL CONNECTION {int(store._conn.thread_id())}")
    assert w.serving_endpoints.query(titanic_endpoint, dataframe_records=[{"PassengerId": 5}]).predictions == \
        expected([5])


# ---------------------------------------------------------------------------------- errors
def test_a_table_that_is_not_published_is_a_clear_500(
    ws: LocalWorkspace, w: WorkspaceClient, taxi_endpoint: str
) -> None:
    ref = ws.online_catalog.resolve(DROPOFF)
    ws.online_catalog.forget(DROPOFF)
    try:
        started = time.monotonic()
        with pytest.raises(InternalError) as info:
            w.serving_endpoints.query(taxi_endpoint, dataframe_records=taxi.request_records(n=2))
        assert time.monotonic() - started < 5
        assert info.value.error_code == "INTERNAL_ERROR"
        assert f"Feature table {DROPOFF} is not published to an online store" in str(info.value)
    finally:
        ws.online_catalog.register(ref)
    assert len(w.serving_endpoints.query(taxi_endpoint, dataframe_records=taxi.request_records(n=2)).predictions) == 2


def test_missing_lookup_key_column_is_a_bad_request(w: WorkspaceClient, taxi_endpoint: str) -> None:
    records = [{k: v for k, v in r.items() if k != "dropoff_zone"} for r in taxi.request_records(n=2)]
    with pytest.raises(BadRequest, match="dropoff_zone"):
        w.serving_endpoints.query(taxi_endpoint, dataframe_records=records)


def test_connection_env_missing_secret_reference_or_unreachable_store(
    w: WorkspaceClient, titanic_store: str
) -> None:
    create_ready(w, "titanic_noenv", entity("titanic"))
    with pytest.raises(InternalError, match=f"no environment variable {ENV}"):
        w.serving_endpoints.query("titanic_noenv", dataframe_records=[{"PassengerId": 1}])

    create_ready(w, "titanic_secret", entity("titanic", env={ENV: "{{secrets/features/titanic-url}}"}))
    with pytest.raises(InternalError, match="secret reference"):
        w.serving_endpoints.query("titanic_secret", dataframe_records=[{"PassengerId": 1}])

    create_ready(w, "titanic_down", entity("titanic", env={ENV: "mysql://root@127.0.0.1:1/test"}))
    started = time.monotonic()
    with pytest.raises(DatabricksError) as info:
        w.serving_endpoints.query("titanic_down", dataframe_records=[{"PassengerId": 1}])
    assert time.monotonic() - started < 15  # answered, not retried by the SDK, no hang
    assert info.value.error_code == "BAD_GATEWAY"
    assert "could not be read" in str(info.value)


# ---------------------------------------------------------------------------------- no feature spec
def test_a_model_without_feature_spec_scores_exactly_as_before(ws: LocalWorkspace, w: WorkspaceClient) -> None:
    create_ready(w, "taxi_plain", entity("taxi_plain"))
    loaded = local_model(ws, "taxi_plain")
    assert loaded.feature_spec is None
    records = taxi.sample_records(n=5, seed=3)
    served = w.serving_endpoints.query("taxi_plain", dataframe_records=records)
    assert served.predictions == [float(p) for p in loaded.model.predict(pd.DataFrame(records))]
    assert "feature lookup" not in w.serving_endpoints.logs("taxi_plain", "taxi_plain-1").logs
    with pytest.raises(BadRequest):  # the model's own schema enforcement, as before
        w.serving_endpoints.query("taxi_plain", dataframe_records=[{"pickup_zone": 1}])


def test_a_malformed_feature_spec_fails_the_deployment_and_says_why(w: WorkspaceClient) -> None:
    w.serving_endpoints.create("bad_spec", config=EndpointCoreConfigInput(name="bad_spec",
                                                                          served_entities=[entity("bad_spec")]))
    deadline = time.monotonic() + 30
    while (ep := w.serving_endpoints.get("bad_spec")).state.config_update.value == "IN_PROGRESS":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert (ep.state.ready.value, ep.state.config_update.value) == ("NOT_READY", "UPDATE_FAILED")
    message = ep.config.served_entities[0].state.deployment_state_message
    assert "The feature spec of model bad_spec/1 is invalid" in message and "catalog.schema.table" in message


# ---------------------------------------------------------------------------------- the spec and the join
def test_feature_spec_validation_defaults_and_pool(tmp_path: Path) -> None:
    spec = FeatureSpec.parse(taxi.zone_feature_spec(PICKUP, DROPOFF))
    assert FeatureSpec.parse(spec.as_dict()) == spec
    for bad in (
        {},
        {"lookups": [{"table_name": "no_dots", "lookup_key": ["k"], "feature_names": ["f"]}]},
        {"lookups": [{"table_name": "a.b.c", "lookup_key": [], "feature_names": ["f"]}]},
        {"lookups": [{"table_name": "a.b.c", "lookup_key": ["k"], "feature_names": ["f"]},
                     {"table_name": "a.b.d", "lookup_key": ["k"], "feature_names": ["f"]}]},  # f twice
        {"lookups": [{"table_name": "a.b.c", "lookup_key": ["k"], "feature_names": ["f"],
                      "online_store": {"connection_env": "not a name"}}]},
    ):
        with pytest.raises(FeatureSpecError):
            FeatureSpec.parse(bad)

    url = f"sqlite:///{tmp_path / 'store.sqlite'}"
    frame = pd.DataFrame({"id": [2, 1, 3], "score": [1, 2, 3], "name": ["b", "a", "c"]})
    taxi.publish_features(url, "main.s.t_online", frame, ["id"])
    catalog = OnlineCatalog()
    catalog.register(OnlineTableRef("main.s.t", "main.s.t_online", url, physical_name("main.s.t_online"), ("id",)))
    spec = FeatureSpec.parse({"lookups": [{
        "table_name": "main.s.t", "lookup_key": "user", "feature_names": ["score", "name"],
        "rename_outputs": {"score": "user_score"}, "default_values": {"user_score": -1.0},
    }], "exclude_columns": ["user"]})
    pool = StorePool()
    request = pd.DataFrame({"user": [3, 9, 1, 3.0], "x": [0.5, 0.6, 0.7, 0.8]}, index=[10, 11, 12, 13])
    joined, stats = augment(request, spec, catalog=catalog, environment={}, pool=pool)
    assert list(joined.index) == [10, 11, 12, 13]  # request order and index kept
    assert list(joined.columns) == ["x", "user_score", "name"]
    assert joined["user_score"].tolist() == [3, -1.0, 2, 3]  # key 9 has no row: the default value
    assert joined["name"].iloc[[0, 2, 3]].tolist() == ["c", "a", "c"] and pd.isna(joined["name"].iloc[1])
    assert (stats.tables, stats.keys, stats.missing) == (1, 3, 1)
    assert pool.idle_count(url) == 1
    pool.close()
    assert pool.idle_count(url) == 0
