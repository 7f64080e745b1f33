"""Inference capture of the local workspace and the SQL the drift checks send, through the real
databricks-sdk over HTTP.

The workspace, its client and the endpoint helpers are those of ``test_local_workspace``; the
registry here holds two real versions of the taxi fare model (``local.taxi``), whose inputs are
the columns the monitoring spec's records relation reads. Inference tables follow Databricks, "Monitor
served models using AI Gateway-enabled inference tables",
https://docs.databricks.com/aws/en/ai-gateway/inference-tables; results are read as the Statement
Execution API sends them.
"""

from __future__ import annotations

import json
import time
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from databricks.sdk import WorkspaceClient
from databricks.sdk.errors import BadRequest, InvalidParameterValue
from databricks.sdk.service.serving import (
    AiGatewayConfig,
    AiGatewayInferenceTableConfig,
    AutoCaptureConfigInput,
)

from local import taxi
from local.workspace import LocalWorkspace, inference_table
from local.workspace.inference_table import DeliveryFailed
from tests import test_local_workspace as workspace_tests
from tests.sql_results import query
from tests.test_local_workspace import config, settle

# The workspace, its client and the fault reset of test_local_workspace; its ``ws`` reads the
# ``registry`` defined here (pytest resolves fixtures by name in the requesting module).
ws = workspace_tests.ws
w = workspace_tests.w
_reset_faults = workspace_tests._reset_faults

CATALOG, SCHEMA = "main", "monitoring"

# The records relation the app builds from a payload table, exactly as the monitoring spec writes it.
RECORDS_RELATION = """SELECT p.request_time AS __ts, se.entity_version AS __version, p.client_request_id AS __request_id,
       r.pos AS __pos, p.status_code AS __status,
       CAST(get_json_object(p.request, concat('$.dataframe_records[', r.pos, '].trip_distance')) AS DOUBLE) AS `trip_distance`,
       get_json_object(p.request, concat('$.dataframe_records[', r.pos, '].pickup_zone')) AS `pickup_zone`,
       CAST(get_json_object(p.response, concat('$.predictions[', r.pos, ']')) AS DOUBLE) AS __prediction
FROM main.monitoring.taxi_fare_payload AS p
JOIN (SELECT DISTINCT served_entity_id, entity_version FROM system.serving.served_entities) AS se
  ON se.served_entity_id = p.served_entity_id,
LATERAL explode(sequence(0, json_array_length(get_json_object(p.request, '$.dataframe_records')) - 1)) AS r(pos)
WHERE p.status_code = 200 AND json_array_length(get_json_object(p.request, '$.dataframe_records')) > 0"""  # noqa: E501


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> str:
    """taxi_fare v1 and v2 (two seeds) in a sqlite registry; read by ``ws`` of test_local_workspace."""
    root = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    for seed, version in ((0, "1"), (1, "2")):
        assert taxi.train_and_register(uri, model_name="taxi_fare", seed=seed, n=300,
                                       artifact_location=(root / "artifacts").as_uri()) == version
    return uri


def fare(version: str) -> Any:
    return workspace_tests.entity("taxi_fare", version)


def gateway(prefix: str | None = None, enabled: bool = True, schema: str = SCHEMA) -> AiGatewayInferenceTableConfig:
    return AiGatewayInferenceTableConfig(catalog_name=CATALOG, schema_name=schema, table_name_prefix=prefix,
                                         enabled=enabled)


def create(w: WorkspaceClient, name: str, *entities: Any, routes: list[tuple[str, int]] | None = None,
           ai_gateway: AiGatewayConfig | None = None, auto_capture: AutoCaptureConfigInput | None = None) -> None:
    cfg = config(*entities, routes=routes)
    cfg.auto_capture_config = auto_capture
    w.serving_endpoints.create(name, config=cfg, ai_gateway=ai_gateway)
    assert settle(w, name).state.ready.value == "READY"


def unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


def exists(w: WorkspaceClient, table: str) -> bool:
    return bool(w.tables.exists(table).table_exists)


# ---------------------------------------------------------------------------------- capture
def test_only_an_enabled_inference_table_captures(ws: LocalWorkspace, w: WorkspaceClient) -> None:
    name = unique("quiet")
    table = f"{CATALOG}.{SCHEMA}.{name}_payload"
    create(w, name, fare("1"))
    records = taxi.sample_records(n=2)
    w.serving_endpoints.query(name, dataframe_records=records, client_request_id="before")
    w.serving_endpoints.put_ai_gateway(name, inference_table_config=gateway(enabled=False))
    w.serving_endpoints.query(name, dataframe_records=records, client_request_id="disabled")
    ws.inference.flush()
    assert not exists(w, table)
    assert not [t for t in ws.catalog.list_tables() if name in t]  # captured nowhere

    w.serving_endpoints.put_ai_gateway(name, inference_table_config=gateway())
    ws.inference.flush()
    assert exists(w, table)  # created when enabled, before any traffic
    assert query(w, f"SELECT count(*) AS n FROM {table}").rows == [{"n": "0"}]
    w.serving_endpoints.query(name, dataframe_records=records, client_request_id="enabled")
    w.serving_endpoints.put_ai_gateway(name, inference_table_config=gateway(enabled=False))
    w.serving_endpoints.query(name, dataframe_records=records, client_request_id="after")
    ws.inference.flush()
    assert query(w, f"SELECT client_request_id FROM {table}").column("client_request_id") == ["enabled"]


def test_ai_gateway_rows_have_the_documented_columns_and_types(ws: LocalWorkspace, w: WorkspaceClient) -> None:
    name, prefix = unique("gw"), unique("gateway")
    table = f"{CATALOG}.{SCHEMA}.{prefix}_payload"
    create(w, name, fare("1"), ai_gateway=AiGatewayConfig(inference_table_config=gateway(prefix)))
    records = taxi.sample_records(n=2)
    before = datetime.now(UTC)
    served = w.serving_endpoints.query(name, dataframe_records=records, client_request_id="req-1")
    with pytest.raises(BadRequest):
        w.serving_endpoints.query(name, dataframe_records=records, inputs=[1.0])
    ws.inference.flush()

    result = query(w, f"SELECT * FROM {table} ORDER BY request_time")
    assert result.types == {
        "databricks_request_id": "STRING", "request_date": "DATE", "client_request_id": "STRING",
        "request_time": "TIMESTAMP", "status_code": "INT", "sampling_fraction": "DOUBLE",
        "execution_duration_ms": "LONG", "request": "STRING", "response": "STRING", "logging_error_codes": "ARRAY",
        "served_entity_id": "STRING", "requester": "STRING",
    }
    assert list(result.types) == list(inference_table.schema(inference_table.AI_GATEWAY).names)  # DDL order
    assert result.texts["logging_error_codes"] == "ARRAY<STRING>"
    assert result.texts["request_time"] == "TIMESTAMP"
    ok, bad = result.rows
    assert (ok["status_code"], bad["status_code"]) == ("200", "400")
    assert ok["client_request_id"] == "req-1" and bad["client_request_id"] is None
    assert json.loads(ok["request"]) == {"dataframe_records": records, "client_request_id": "req-1"}
    assert json.loads(ok["response"])["predictions"] == pytest.approx(served.predictions)
    assert json.loads(bad["response"])["error_code"] == "BAD_REQUEST"
    stamp = datetime.fromisoformat(ok["request_time"].replace("Z", "+00:00"))
    assert before - timedelta(seconds=1) <= stamp <= datetime.now(UTC)
    assert ok["request_time"].endswith("Z") and ok["request_date"] == stamp.date().isoformat()
    assert int(ok["execution_duration_ms"]) >= 0 and ok["sampling_fraction"] == "1.0"
    assert json.loads(ok["logging_error_codes"]) == []
    assert ok["requester"] == ws.user
    assert len({ok["databricks_request_id"], bad["databricks_request_id"]}) == 2
    info = w.tables.get(table)
    assert info.properties["delta.enableChangeDataFeed"] == "true"
    assert [(c.name, c.type_text) for c in info.columns][:4] == [
        ("databricks_request_id", "string"), ("request_date", "date"), ("client_request_id", "string"),
        ("request_time", "timestamp")]


def test_rows_are_delivered_by_the_background_thread(ws: LocalWorkspace, w: WorkspaceClient) -> None:
    name = unique("bg")
    table = f"{CATALOG}.{SCHEMA}.{name}_payload"
    create(w, name, fare("1"), ai_gateway=AiGatewayConfig(inference_table_config=gateway()))
    for k in range(3):
        w.serving_endpoints.query(name, dataframe_records=taxi.sample_records(n=1), client_request_id=f"bg-{k}")
    deadline = time.monotonic() + 10 * ws.inference.delivery_seconds + 5
    while time.monotonic() < deadline:  # no flush: the thread delivers within about delivery_seconds
        if exists(w, table) and query(w, f"SELECT count(*) AS n FROM {table}").rows == [{"n": "3"}]:
            break
        time.sleep(0.1)
    else:
        raise AssertionError(f"{table} did not get its 3 rows from the delivery thread")
    history = query(w, f"DESCRIBE HISTORY {table}").column("operation")
    assert len(history) <= 4  # the create, then one append per batch (not one per row)


def test_legacy_auto_capture_rows_have_the_legacy_columns(ws: LocalWorkspace, w: WorkspaceClient) -> None:
    name, prefix = unique("legacy"), unique("cap")
    table = f"{CATALOG}.{SCHEMA}.{prefix}_payload"
    create(w, name, fare("2"), auto_capture=AutoCaptureConfigInput(catalog_name=CATALOG, schema_name=SCHEMA,
                                                                  table_name_prefix=prefix, enabled=True))
    served = w.serving_endpoints.query(name, dataframe_records=taxi.sample_records(n=2), client_request_id="old-1")
    ws.inference.flush()
    result = query(w, f"SELECT * FROM {table}")
    assert result.types == {
        "client_request_id": "STRING", "databricks_request_id": "STRING", "date": "DATE", "timestamp_ms": "LONG",
        "status_code": "INT", "sampling_fraction": "DOUBLE", "execution_time_ms": "LONG", "request": "STRING",
        "response": "STRING", "request_metadata": "MAP",
    }
    assert result.texts["request_metadata"] == "MAP<STRING, STRING>"
    [row] = result.rows
    assert json.loads(row["request_metadata"]) == {"endpoint_name": name, "model_name": "taxi_fare",
                                                   "model_version": "2"}
    assert (row["client_request_id"], row["status_code"]) == ("old-1", "200")
    assert json.loads(row["response"])["predictions"] == pytest.approx(served.predictions)
    when = datetime.fromtimestamp(int(row["timestamp_ms"]) / 1000, UTC)
    assert row["date"] == when.date().isoformat() and abs(datetime.now(UTC) - when) < timedelta(minutes=1)


def test_inference_table_configs_are_checked(ws: LocalWorkspace, w: WorkspaceClient) -> None:
    name = unique("checked")
    with pytest.raises(InvalidParameterValue, match="catalog_name and schema_name"):
        w.serving_endpoints.create(name, config=config(fare("1")), ai_gateway=AiGatewayConfig(
            inference_table_config=AiGatewayInferenceTableConfig(catalog_name=CATALOG, enabled=True)))
    create(w, name, fare("1"), ai_gateway=AiGatewayConfig(inference_table_config=gateway()))
    with pytest.raises(InvalidParameterValue, match="disable it before changing"):
        w.serving_endpoints.put_ai_gateway(name, inference_table_config=gateway(schema="elsewhere"))
    w.serving_endpoints.put_ai_gateway(name, inference_table_config=gateway(enabled=False))
    w.serving_endpoints.put_ai_gateway(name, inference_table_config=gateway(schema="elsewhere"))  # disabled first
    with pytest.raises(InvalidParameterValue, match="both"):
        w.serving_endpoints.update_config(name, served_entities=[fare("1")], auto_capture_config=AutoCaptureConfigInput(
            catalog_name=CATALOG, schema_name=SCHEMA, enabled=True))


def test_oversized_payloads_are_logged_as_null_with_error_codes(
    ws: LocalWorkspace, w: WorkspaceClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = unique("big")
    create(w, name, fare("1"), ai_gateway=AiGatewayConfig(inference_table_config=gateway()))
    monkeypatch.setattr(inference_table, "MAX_PAYLOAD_CHARS", 40)  # shorter than 3 records and their answer
    w.serving_endpoints.query(name, dataframe_records=taxi.sample_records(n=3), client_request_id="big")
    ws.inference.flush()
    [row] = query(w, f"SELECT request, response, logging_error_codes, status_code FROM {CATALOG}.{SCHEMA}."
                     f"{name}_payload").rows
    assert (row["request"], row["response"], row["status_code"]) == (None, None, "200")
    assert json.loads(row["logging_error_codes"]) == ["MAX_REQUEST_SIZE_EXCEEDED", "MAX_RESPONSE_SIZE_EXCEEDED"]


def test_a_failed_delivery_keeps_its_rows_for_the_next_batch(ws: LocalWorkspace, w: WorkspaceClient) -> None:
    name = unique("clash")
    table = f"{CATALOG}.{SCHEMA}.{name}_payload"
    # A table of another shape already has the payload table's name: every append to it fails.
    ws.catalog.create_table(table, {"something": ["else"]})
    create(w, name, fare("1"), ai_gateway=AiGatewayConfig(inference_table_config=gateway()))
    for k in range(2):
        w.serving_endpoints.query(name, dataframe_records=taxi.sample_records(n=1), client_request_id=f"kept-{k}")
    with pytest.raises(DeliveryFailed, match=table):
        ws.inference.flush()
    assert ws.inference.pending_rows() >= 2
    ws.catalog.drop_table(table)
    ws.inference.flush()
    kept = query(w, f"SELECT client_request_id FROM {table} ORDER BY client_request_id").column("client_request_id")
    assert kept == ["kept-0", "kept-1"]


# ---------------------------------------------------------------------------------- the records relation
def test_records_relation_has_one_row_per_record_across_two_versions(ws: LocalWorkspace, w: WorkspaceClient) -> None:
    """Two versions behind one endpoint whose payload table is main.monitoring.taxi_fare_payload;
    every request carries 3 records. The spec's query returns one row per record, with the
    version that served it, the record's values and the prediction it got."""
    name = unique("taxi-fare-ab")
    ws.reseed(3)
    create(w, name, fare("1"), fare("2"), routes=[("taxi_fare-1", 50), ("taxi_fare-2", 50)],
           ai_gateway=AiGatewayConfig(inference_table_config=gateway("taxi_fare")))
    started = datetime.now(UTC) - timedelta(seconds=1)
    sent: dict[str, tuple[str, list[dict[str, Any]], list[float]]] = {}
    for k in range(12):
        records = taxi.sample_records(n=3, seed=100 + k)
        rid = f"ab-{k}"
        served = w.serving_endpoints.query(name, dataframe_records=records, client_request_id=rid)
        sent[rid] = (served.served_model_name.rsplit("-", 1)[1], records, served.predictions)
    assert {v for v, _, _ in sent.values()} == {"1", "2"}
    with pytest.raises(BadRequest):  # a failed request is not a scored record
        w.serving_endpoints.query(name, dataframe_records=taxi.sample_records(n=3), inputs=[1.0])
    ws.inference.flush()

    entities = query(w, "SELECT * FROM system.serving.served_entities WHERE endpoint_name = :name "
                        "ORDER BY entity_version", name=name)
    assert entities.types == {
        "served_entity_id": "STRING", "endpoint_name": "STRING", "endpoint_id": "STRING",
        "served_entity_name": "STRING", "entity_type": "STRING", "entity_name": "STRING", "entity_version": "STRING",
        "endpoint_config_version": "INT", "change_time": "TIMESTAMP"}
    assert [(e["served_entity_name"], e["entity_name"], e["entity_version"], e["entity_type"],
             e["endpoint_config_version"]) for e in entities.rows] == [
        ("taxi_fare-1", "taxi_fare", "1", "CUSTOM_MODEL", "1"), ("taxi_fare-2", "taxi_fare", "2", "CUSTOM_MODEL", "1")]
    assert entities.rows[0]["endpoint_id"] == w.serving_endpoints.get(name).id

    result = query(w, RECORDS_RELATION)
    assert result.types == {"__ts": "TIMESTAMP", "__version": "STRING", "__request_id": "STRING", "__pos": "LONG",
                            "__status": "INT", "trip_distance": "DOUBLE", "pickup_zone": "STRING",
                            "__prediction": "DOUBLE"}
    ours = [r for r in result.rows if r["__request_id"] in sent]
    assert Counter(r["__request_id"] for r in ours) == {rid: 3 for rid in sent}
    for row in ours:
        version, records, predictions = sent[row["__request_id"]]
        pos = int(row["__pos"])
        assert row["__version"] == version and row["__status"] == "200"
        assert float(row["trip_distance"]) == records[pos]["trip_distance"]
        assert row["pickup_zone"] == str(records[pos]["pickup_zone"])  # categorical values compare as strings
        assert float(row["__prediction"]) == pytest.approx(predictions[pos], rel=1e-12)
        assert datetime.fromisoformat(row["__ts"].replace("Z", "+00:00")) >= started

    # A time window as the app writes it: TIMESTAMP literals (UTC) against request_time.
    since = started.strftime("%Y-%m-%d %H:%M:%S")
    later = (datetime.now(UTC) + timedelta(hours=1)).strftime("%Y-%m-%d %H:%M:%S")
    window = (f"SELECT count(*) AS n, count(DISTINCT x.__version) AS versions FROM ({RECORDS_RELATION}) AS x "
              "WHERE x.__ts >= TIMESTAMP '{}' AND x.__ts < TIMESTAMP '{}'")
    assert query(w, window.format(since, later)).rows == [{"n": str(3 * len(sent)), "versions": "2"}]
    assert query(w, window.format(later, later)).rows == [{"n": "0", "versions": "0"}]


# ---------------------------------------------------------------------------------- the dialect
def one(w: WorkspaceClient, statement: str) -> dict[str, str | None]:
    [row] = query(w, statement).rows
    return row


def test_get_json_object_and_json_array_length(w: WorkspaceClient) -> None:
    doc = """'{"dataframe_records": [{"x": 1.5, "z": "a b"}, {"x": 2, "z": null}], "predictions": [10.25, 3]}'"""
    row = one(w, f"""SELECT get_json_object({doc}, concat('$.dataframe_records[', 1, '].x')) AS x1,
                            get_json_object({doc}, '$.dataframe_records[0].z') AS z0,
                            get_json_object({doc}, '$.dataframe_records[1].z') AS z1,
                            get_json_object({doc}, '$.predictions[0]') AS p0,
                            get_json_object({doc}, '$.predictions[7]') AS missing,
                            get_json_object({doc}, '$.dataframe_records[0]') AS obj,
                            get_json_object('{{broken', '$.a') AS broken,
                            json_array_length(get_json_object({doc}, '$.dataframe_records')) AS n,
                            json_array_length('[1,2,3,{{"f1":1,"f2":[5,6]}},4]') AS nested,
                            json_array_length('{{"a": 1}}') AS object,
                            json_array_length('[1,2') AS invalid""")
    assert row == {"x1": "2", "z0": "a b", "z1": None, "p0": "10.25", "missing": None, "obj": '{"x":1.5,"z":"a b"}',
                   "broken": None, "n": "2", "nested": "5", "object": None, "invalid": None}
    assert query(w, "SELECT json_array_length('[1]') AS n").types == {"n": "INT"}


def test_sequence_and_explode_as_a_correlated_generator(w: WorkspaceClient) -> None:
    row = one(w, "SELECT sequence(1, 5) AS up, sequence(5, 1) AS down, sequence(0, -1) AS spark_descends, "
                 "sequence(1, 5, 2) AS stepped, sequence(3, 3, 0) AS single")
    assert {k: json.loads(v) for k, v in row.items()} == {
        "up": ["1", "2", "3", "4", "5"], "down": ["5", "4", "3", "2", "1"], "spark_descends": ["0", "-1"],
        "stepped": ["1", "3", "5"], "single": ["3"]}
    with pytest.raises(AssertionError, match="ILLEGAL_SEQUENCE_BOUNDARIES"):
        query(w, "SELECT sequence(5, 1, 2) AS s")
    rows = query(w, "SELECT t.id, r.pos FROM (VALUES (1, 3), (2, 0), (3, 1)) AS t(id, n), "
                    "LATERAL explode(sequence(0, t.n - 1)) AS r(pos) WHERE t.n > 0 ORDER BY t.id, r.pos").rows
    assert [(r["id"], r["pos"]) for r in rows] == [("1", "0"), ("1", "1"), ("1", "2"), ("3", "0")]
    empty = query(w, "SELECT r.x FROM (VALUES (1)) AS t(id), LATERAL explode(array()) AS r(x)").rows
    assert empty == []
    assert query(w, "SELECT explode(sequence(1, 3)) AS x").column("x") == ["1", "2", "3"]


def test_concat_ln_unix_millis_and_timestamp_literals(w: WorkspaceClient) -> None:
    row = one(w, "SELECT concat('$.x[', 2, '].y') AS path, concat('a', NULL, 'b') AS with_null, "
                 "ln(1) AS ln1, ln(0) AS ln0, ln(-1) AS ln_neg, "
                 "unix_millis(TIMESTAMP '1970-01-01 00:00:01.0019') AS truncated, "
                 "unix_millis(TIMESTAMP '1969-12-31 23:59:59.9995') AS before_epoch, "
                 "unix_millis(TIMESTAMP '2026-12-02 04:00:00') AS utc, "
                 "TIMESTAMP '2026-12-02 05:00:00+01:00' = TIMESTAMP '2026-12-02 04:00:00' AS same_instant, "
                 "CAST('2026-12-02 04:00:00' AS TIMESTAMP) AS cast_ts, TIMESTAMP '2026-12-02 04:00:00' AS literal")
    assert row == {"path": "$.x[2].y", "with_null": None, "ln1": "0.0", "ln0": None, "ln_neg": None,
                   "truncated": "1001", "before_epoch": "-1", "utc": "1796184000000", "same_instant": "true",
                   "cast_ts": "2026-12-02T04:00:00.000Z", "literal": "2026-12-02T04:00:00.000Z"}
    types = query(w, "SELECT unix_millis(TIMESTAMP '2026-12-02 04:00:00') AS ms, TIMESTAMP '2026-12-02 04:00:00' AS "
                     "ts, CAST('2026-12-02' AS TIMESTAMP_NTZ) AS ntz").texts
    assert types == {"ms": "BIGINT", "ts": "TIMESTAMP", "ntz": "TIMESTAMP_NTZ"}


def test_aggregates_and_windows_the_drift_checks_use(w: WorkspaceClient) -> None:
    values = "(VALUES (1, 'a'), (2, 'b'), (3, 'a'), (4, NULL), (5, 'b')) AS t(x, c)"
    result = query(w, f"""WITH s AS (SELECT x, c FROM {values})
        SELECT count_if(x > 2) AS over2, sum(x) AS total, avg(x) AS mean, stddev_pop(x) AS sd,
               percentile_cont(0.95) WITHIN GROUP (ORDER BY x) AS p95, count(DISTINCT c) AS categories,
               min(x) AS lo, max(x) AS hi, greatest(1, NULL, 3) AS g, least(2.5, NULL) AS l,
               abs(-2) AS a, sqrt(16) AS root, power(2, 10) AS pw, coalesce(NULL, 'x') AS co,
               CAST(7 AS STRING) AS s, CAST('2.5' AS DOUBLE) AS d,
               CASE WHEN sum(x) > 10 THEN 'big' ELSE 'small' END AS size
        FROM s""")
    assert result.rows == [{"over2": "3", "total": "15", "mean": "3.0", "sd": str(2 ** 0.5), "p95": "4.8",
                            "categories": "2", "lo": "1", "hi": "5", "g": "3", "l": "2.5", "a": "2", "root": "4.0",
                            "pw": "1024.0", "co": "x", "s": "7", "d": "2.5", "size": "big"}]
    assert (result.types["over2"], result.types["total"]) == ("LONG", "LONG")  # BIGINT, as on Databricks
    cumulative = query(w, f"""SELECT x, SUM(x) OVER (ORDER BY x ROWS UNBOUNDED PRECEDING) AS `running total`,
               LEAD(x) OVER (ORDER BY x) AS next FROM {values}
        UNION ALL SELECT 0, 0, 1 ORDER BY x""")
    assert [(r["x"], r["running total"], r["next"]) for r in cumulative.rows] == [
        ("0", "0", "1"), ("1", "1", "2"), ("2", "3", "3"), ("3", "6", "4"), ("4", "10", "5"), ("5", "15", None)]
    assert cumulative.types["running total"] == "LONG"
    with pytest.raises(AssertionError, match="ARITHMETIC_OVERFLOW"):
        query(w, "SELECT sum(x) AS s FROM (VALUES (9223372036854775807), (1)) AS t(x)")
