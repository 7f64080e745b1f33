"""Online features in the rollout, end to end: feature tables published and in sync before a
model serves; callers send only IDs. The real function_app on the local host, the real
databricks-sdk against the local workspace (Delta tables, SQL, Online Feature Store, synced
tables), MariaDB as the third-party online store."""

from __future__ import annotations

import time

import pytest

from local import taxi, titanic
from local.services import ensure_mariadb, ensure_postgres
from shared.online_store import OnlineStore, physical_name
from shared.queues import COMMANDS_QUEUE, enqueue
from shared.workspace import _workspace_client

WAREHOUSE = "local-warehouse"


def taxi_policy(store: dict, tables: list[str], **features):
    return lambda tag: {"features": {
        "store": store, "publish_mode": "triggered", "freshness_seconds": 3600,
        "tables": [{"source": t, "primary_keys": ["zone_id"]} for t in tables], **features,
    }}


def smoke_ids_only():
    return [{"name": "ids only", "records": taxi.request_records(2), "expect": {"prediction_type": "number", "min": 0}}]


def create_zone_tables(ws, tag: str, pickup_df, dropoff_df, *, primary_key: bool = True):
    pickup, dropoff = f"main.f{tag}.pickup_zone_features", f"main.f{tag}.dropoff_zone_features"
    keys = ["zone_id"] if primary_key else None
    ws.catalog.create_table(pickup, pickup_df, primary_keys=keys, change_data_feed=False)
    ws.catalog.create_table(dropoff, dropoff_df, primary_keys=keys, change_data_feed=False)
    return pickup, dropoff


def zone_app(make_app, store_name: str = "reactor-online", store: dict | None = None, **kw):
    """An app whose model looks zone features up from two tables named after the test's tag
    (an Online Feature Store named ``store_name`` unless another ``store`` is given)."""
    names: dict[str, str] = {}

    def fields(tag):
        names.update(store=store_name.format(tag=tag), pickup=f"main.f{tag}.pickup_zone_features",
                     dropoff=f"main.f{tag}.dropoff_zone_features")
        return taxi_policy(store or {"kind": "online_feature_store", "name": names["store"]},
                           [names["pickup"], names["dropoff"]])(tag)

    return make_app(model_fields=fields, smoke=smoke_ids_only(), **kw), names


def register_zone_model(app, pickup, dropoff, pickup_df, dropoff_df) -> str:
    v = taxi.train_and_register_with_features(app.plat.mlflow.url, app.model, pickup, dropoff, pickup_df, dropoff_df,
                                              n=400)
    app.registered.append(v)
    return v


def deploy(app, version: str) -> None:
    enqueue(app.queues, COMMANDS_QUEUE, {"command": "deploy", "model": app.model, "environment": "prod",
                                         "version": version})


def predict(app, records):
    return app.w.serving_endpoints.query(app.endpoint, dataframe_records=records).predictions


def test_features_are_published_before_the_model_serves_and_callers_send_ids(make_app, zones):
    pickup_df, dropoff_df = zones
    app, holder = zone_app(make_app)
    ws = app.plat.workspace
    create_zone_tables(ws, app.tag, pickup_df, dropoff_df)
    v = register_zone_model(app, holder["pickup"], holder["dropoff"], pickup_df, dropoff_df)
    deploy(app, v)
    row = app.wait_rollout_end(v, timeout=90)
    assert row["status"] == "done", row
    steps = [h["step"] for h in row["history"]]
    assert steps.index("features") < steps.index("deploy")
    notes = " ".join(h["note"] for h in row["history"] if h["step"] == "features")
    assert f"turned on the change data feed of {holder['pickup']}" in notes
    info = app.w.tables.get(holder["pickup"])
    assert info.properties["delta.enableChangeDataFeed"] == "true"
    synced = app.w.database.get_synced_database_table(f"{holder['pickup']}_online")
    assert synced.data_synchronization_status.detailed_state.value.startswith("SYNCED_TABLE_ONLINE")

    # A caller sends zone IDs and the trip's own features; the endpoint looks the rest up.
    trip = {"pickup_zone": int(pickup_df.zone_id.iloc[0]), "dropoff_zone": int(dropoff_df.zone_id.iloc[0]),
            "trip_distance": 3.0, "passenger_count": 1, "pickup_hour": 9}
    before = predict(app, [trip])[0]

    # A change to a source row shows up in predictions after the next sync.
    zone = dict(pickup_df.iloc[0])
    ws.catalog.upsert_rows(holder["pickup"], [{**{k: (int(v) if k in ("zone_id", "trip_count") else float(v))
                                                  for k, v in zone.items()}, "avg_fare": float(zone["avg_fare"]) * 4}])
    enqueue(app.queues, COMMANDS_QUEUE, {"command": "publish_features", "model": app.model,
                                         "table": holder["pickup"]})
    app.wait(lambda: abs(predict(app, [trip])[0] - before) > 1e-6, 30, "the changed feature to reach predictions")
    cmd = next(c for c in app.records("command") if c.get("command", {}).get("command") == "publish_features")
    assert cmd["status"] == "done" and "sync triggered" in " ".join(cmd["outcome"])


def test_lakebase_synced_tables_are_created_synced_and_refreshed(make_app, zones):
    pickup_df, dropoff_df = zones
    app, holder = zone_app(make_app, store={"kind": "synced_table", "database_instance": "reactor-db",
                                            "logical_database": "features"})
    ws = app.plat.workspace
    create_zone_tables(ws, app.tag, pickup_df, dropoff_df)
    v = register_zone_model(app, holder["pickup"], holder["dropoff"], pickup_df, dropoff_df)
    deploy(app, v)
    row = app.wait_rollout_end(v, timeout=90)
    assert row["status"] == "done", row
    synced = app.w.database.get_synced_database_table(f"{holder['dropoff']}_online")
    assert synced.spec.scheduling_policy.value == "TRIGGERED" and synced.spec.primary_key_columns == ["zone_id"]
    assert synced.data_synchronization_status.last_sync.delta_table_sync_info.delta_commit_version == 1
    zone = dropoff_df.iloc[0]
    ws.catalog.upsert_rows(holder["dropoff"], [{"zone_id": int(zone.zone_id), "avg_fare": 99.0,
                                                "trip_count": int(zone.trip_count),
                                                "avg_distance": float(zone.avg_distance)}])
    enqueue(app.queues, COMMANDS_QUEUE, {"command": "publish_features", "model": app.model})

    def synced_version():
        s = app.w.database.get_synced_database_table(f"{holder['dropoff']}_online").data_synchronization_status
        return s.last_sync.delta_table_sync_info.delta_commit_version == 2

    app.wait(synced_version, 30, "the synced table to reach the new source version")


def test_a_feature_table_without_a_primary_key_fails_the_rollout_and_leaves_no_endpoint(make_app, zones):
    pickup_df, dropoff_df = zones
    app, holder = zone_app(make_app)
    create_zone_tables(app.plat.workspace, app.tag, pickup_df, dropoff_df, primary_key=False)
    v = register_zone_model(app, holder["pickup"], holder["dropoff"], pickup_df, dropoff_df)
    deploy(app, v)
    row = app.wait_rollout_end(v)
    assert row["status"] == "failed"
    assert f"feature table {holder['pickup']} has no primary key constraint" in row["reason"]
    assert "endpoint untouched" in row["reason"]
    from databricks.sdk.errors import NotFound

    with pytest.raises(NotFound):
        app.w.serving_endpoints.get(app.endpoint)


def test_an_unavailable_store_makes_the_rollout_wait_then_fail_with_the_endpoint_untouched(make_app, zones):
    pickup_df, dropoff_df = zones
    app, holder = zone_app(make_app, "down-{tag}", wait_timeout_seconds=3)
    ws = app.plat.workspace
    ws.faults.store_unavailable = [holder["store"]]
    try:
        create_zone_tables(ws, app.tag, pickup_df, dropoff_df)
        v = register_zone_model(app, holder["pickup"], holder["dropoff"], pickup_df, dropoff_df)
        deploy(app, v)
        row = app.wait_rollout_end(v, timeout=60)
    finally:
        ws.faults.store_unavailable = []
    assert row["status"] == "failed"
    assert "features not ready after 3 s, endpoint untouched" in row["reason"]
    assert f"online store {holder['store']} is STOPPED" in row["reason"]
    waits = [h for h in row["history"] if h["step"] == "features"]
    assert len(waits) >= 2, "the rollout should have waited before failing"
    from databricks.sdk.errors import NotFound

    with pytest.raises(NotFound):
        app.w.serving_endpoints.get(app.endpoint)


def test_a_failing_sync_fails_the_rollout_with_the_reason(make_app, zones):
    pickup_df, dropoff_df = zones
    app, holder = zone_app(make_app)
    ws = app.plat.workspace
    ws.faults.sync_fail = [f"{holder['dropoff']}_online"]
    try:
        create_zone_tables(ws, app.tag, pickup_df, dropoff_df)
        v = register_zone_model(app, holder["pickup"], holder["dropoff"], pickup_df, dropoff_df)
        deploy(app, v)
        row = app.wait_rollout_end(v, timeout=60)
    finally:
        ws.faults.sync_fail = []
    assert row["status"] == "failed"
    assert f"sync of {holder['dropoff']}_online failed" in row["reason"]


def test_the_titanic_model_reads_a_third_party_store_the_app_publishes_to(make_app):
    url = ensure_mariadb()
    holder: dict[str, str] = {}

    def fields(tag):
        holder["table"] = f"main.t{tag}.passengers"
        return {"features": {"store": {"kind": "rdbms", "connection_setting": "TITANIC_FEATURES_URL"},
                             "publish_mode": "triggered",
                             "tables": [{"source": holder["table"], "primary_keys": ["PassengerId"]}]}}

    app = make_app(model_fields=fields, extra_settings={"TITANIC_FEATURES_URL": url},
                   served_entity={"environment_vars": {"TITANIC_FEATURES_URL": url}},
                   smoke=[{"name": "ids only", "records": [{"PassengerId": 1}, {"PassengerId": 2}],
                           "expect": {"prediction_type": "number", "min": 0, "max": 1}}])
    ws = app.plat.workspace
    passengers = titanic.make_passengers(n=300, seed=3)
    ws.catalog.create_table(holder["table"], titanic.feature_table(passengers), primary_keys=["PassengerId"])
    online = f"{holder['table']}_online"
    try:
        v = titanic.train_and_register(app.plat.mlflow.url, app.model, holder["table"], "TITANIC_FEATURES_URL",
                                       online, n=300)
        deploy(app, v)
        row = app.wait_rollout_end(v, timeout=90)
        assert row["status"] == "done", row
        assert "full copy of 300 rows" in " ".join(h["note"] for h in row["history"])
        with OnlineStore(url) as store:
            assert store.count(physical_name(online)) == 300
        preds = predict(app, titanic.request_records([1, 2, 3, 99999]))
        assert len(preds) == 4 and all(p in (0, 1) for p in preds)

        # The source changes; a publish_features command applies only the change feed.
        ws.catalog.delete_rows(holder["table"], [1])
        ws.catalog.upsert_rows(holder["table"], [{**titanic.feature_table(passengers).iloc[1].to_dict(),
                                                  "Fare": 512.0}])
        # Another writer holds the table for 3 s: the command waits by re-enqueueing, then copies.
        with OnlineStore(url) as store:
            assert store.claim(physical_name(online), "abcdef0123", time.time(), 3)[0]
        enqueue(app.queues, COMMANDS_QUEUE, {"command": "publish_features", "model": app.model})

        def publish_record(status):
            return next((c for c in app.records("command") if c.get("command", {}).get("command") ==
                         "publish_features" and c["status"] == status), None)

        waiting = app.wait(lambda: publish_record("running"), 15, "publish_features to wait for the other writer")
        assert "being written by sync run abcdef0123" in " ".join(waiting["outcome"])
        app.wait(lambda: publish_record("done"), 30, "publish_features to finish")
        with OnlineStore(url) as store:
            got = store.lookup(physical_name(online), ["PassengerId"], [(1,), (2,)])
        assert got[0] is None and got[1]["Fare"] == 512.0
    finally:
        with OnlineStore(url) as store:
            store.drop_table(physical_name(online))


def test_a_starting_warehouse_makes_the_features_step_wait_by_re_enqueueing(make_app):
    """Statements stay PENDING for 2 s and a step's budget leaves no time to wait on them: each
    features step submits or polls a statement and returns at once; the rollout waits by
    re-enqueueing and goes on when the statements finish."""
    url = ensure_mariadb()
    holder: dict[str, str] = {}

    def fields(tag):
        holder["table"] = f"main.c{tag}.passengers"
        return {"features": {"store": {"kind": "rdbms", "connection_setting": "TITANIC_FEATURES_URL"},
                             "tables": [{"source": holder["table"], "primary_keys": ["PassengerId"]}]}}

    app = make_app(model_fields=fields,
                   extra_settings={"TITANIC_FEATURES_URL": url, "FEATURE_STEP_BUDGET_SECONDS": "0"},
                   served_entity={"environment_vars": {"TITANIC_FEATURES_URL": url}},
                   smoke=[{"name": "ids only", "records": [{"PassengerId": 1}],
                           "expect": {"prediction_type": "number", "min": 0, "max": 1}}])
    ws = app.plat.workspace
    passengers = titanic.make_passengers(n=100, seed=4)
    ws.catalog.create_table(holder["table"], titanic.feature_table(passengers), primary_keys=["PassengerId"])
    online = f"{holder['table']}_online"
    ws.faults.statement_pending_seconds = 2.0
    try:
        v = titanic.train_and_register(app.plat.mlflow.url, app.model, holder["table"], "TITANIC_FEATURES_URL",
                                       online, n=100)
        deploy(app, v)
        row = app.wait_rollout_end(v, timeout=120)
    finally:
        ws.faults.statement_pending_seconds = 0.0
        with OnlineStore(url) as store:
            store.drop_table(physical_name(online))
    assert row["status"] == "done", row
    notes = [h["note"] for h in row["history"] if h["step"] == "features"]
    assert any("is PENDING: looking again later" in n for n in notes), notes
    assert "full copy of 100 rows" in " ".join(notes)


@pytest.mark.parametrize("store_url", ["sqlite", "postgresql", "mariadb"])
def test_the_rdbms_publisher_copies_in_time_bounded_steps_and_then_applies_changes(plat, tmp_path, store_url):
    """Publishing to each kind of store: a first copy larger than one result chunk, resumed from
    its cursor step after step, then only the change feed."""
    url = {"sqlite": lambda: f"sqlite:///{tmp_path}/online.sqlite", "postgresql": ensure_postgres,
           "mariadb": ensure_mariadb}[store_url]()
    import time
    import uuid

    import pandas as pd

    from local.stack import WORKSPACE_TOKEN
    from shared import features as feature_tables
    from shared.policy import Features

    w = _workspace_client(plat.workspace.url, WORKSPACE_TOKEN, 20.0)
    source = f"main.pub{uuid.uuid4().hex[:8]}.features"
    n = 45_000
    frame = pd.DataFrame({"id": range(n), "x": [float(i) for i in range(n)], "tag": [f"t{i % 7}" for i in range(n)]})
    plat.workspace.catalog.create_table(source, frame, primary_keys=["id"], change_data_feed=True)
    features = Features.model_validate({"store": {"kind": "rdbms", "connection_setting": "STORE_URL"},
                                        "tables": [{"source": source, "primary_keys": ["id"]}]})
    target = physical_name(features.tables[0].online_name)

    def step(cursor):
        [st] = feature_tables.ensure(w, WAREHOUSE, features, {"STORE_URL": url}, {source: cursor} if cursor else {},
                                     now=time.time(), budget_seconds=0)
        assert st.state != "failed", st.note
        if st.state == "pending":  # a statement still runs: the caller would come back after a backoff
            time.sleep(0.05)
        return st

    def until_ready():
        notes, st = [], step(None)
        while st.state != "ready":
            notes.append(st.note)
            st = step(st.cursor)
        return st, notes

    with OnlineStore(url) as store:
        try:
            st, notes = until_ready()
            # 45 000 rows arrive in 3 chunks; each step stops after one (a step waits on no statement).
            assert [n for n in notes if "chunks" in n] == ["copied 1 of 3 chunks of version 0",
                                                           "copied 2 of 3 chunks of version 0"], notes
            assert store.count(target) == n and st.note == f"full copy of {n} rows to version 0"
            plat.workspace.catalog.upsert_rows(source, [{"id": 7, "x": -1.0, "tag": "changed"},
                                                        {"id": n, "x": 1.0, "tag": "new"}])
            plat.workspace.catalog.delete_rows(source, [8])
            st, _ = until_ready()
            assert st.note.endswith("to version 2")
            rows = store.lookup(target, ["id"], [(7,), (8,), (n,)])
            assert rows[0]["tag"] == "changed" and rows[1] is None and rows[2]["x"] == 1.0
            assert store.count(target) == n
            assert until_ready()[0].note == "in sync at version 2"
        finally:
            store.drop_table(target)
