"""The local workspace against the real databricks-sdk, with real MLflow models.

A tiny registry (sqlite + local artifacts) holds ``lin`` v1 (y = 2a + b), ``lin`` v2
(y = 3a - b) and ``boom`` v1 (a pyfunc model that raises in predict). One LocalWorkspace serves
the whole module; every test uses its own endpoint names and resets the faults it changed.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path

import pytest
from databricks.sdk import WorkspaceClient
from databricks.sdk.core import Config
from databricks.sdk.errors import (
    BadRequest,
    InvalidParameterValue,
    NotFound,
    OperationFailed,
    ResourceAlreadyExists,
    ResourceConflict,
    ResourceDoesNotExist,
    Unauthenticated,
)
from databricks.sdk.service.serving import (
    AiGatewayInferenceTableConfig,
    DataframeSplitInput,
    EndpointCoreConfigInput,
    Route,
    ServedEntityInput,
    ServedModelInput,
    TrafficConfig,
)

from local.workspace import LocalWorkspace
from tests.sql_results import query

TOKEN = "test-token"
ROOT = Path(__file__).resolve().parents[1]
ROWS = DataframeSplitInput(columns=["a", "b"], data=[[1.0, 0.0], [2.0, 1.0]])
V1_PREDICTIONS = [2.0, 5.0]  # 2a + b
V2_PREDICTIONS = [3.0, 5.0]  # 3a - b


# ---------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Register lin/1, lin/2 and boom/1 in a sqlite MLflow registry; MLFLOW_TRACKING_URI is restored after."""
    import mlflow
    import numpy as np
    import pandas as pd
    from mlflow import MlflowClient
    from mlflow.models import infer_signature
    from sklearn.linear_model import LinearRegression

    root = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    saved = os.environ.get("MLFLOW_TRACKING_URI")
    os.environ["MLFLOW_TRACKING_URI"] = uri
    try:
        experiment_id = MlflowClient(tracking_uri=uri).create_experiment(
            "local-workspace-tests", artifact_location=(root / "artifacts").as_uri()
        )
        x = pd.DataFrame({"a": [0.0, 1.0, 2.0, 3.0, 4.0], "b": [1.0, 0.0, 1.0, 0.0, 2.0]})
        for coef in ([2.0, 1.0], [3.0, -1.0]):
            y = x.to_numpy() @ np.array(coef)
            with mlflow.start_run(experiment_id=experiment_id):
                mlflow.sklearn.log_model(
                    LinearRegression().fit(x, y),
                    name="model",
                    registered_model_name="lin",
                    input_example=x.head(2),
                    pip_requirements=["scikit-learn"],
                )

        class Boom(mlflow.pyfunc.PythonModel):
            def predict(self, context, model_input, params=None):
                raise ValueError("boom: the model refused these rows")

        with mlflow.start_run(experiment_id=experiment_id):
            mlflow.pyfunc.log_model(
                name="model",
                python_model=Boom(),
                registered_model_name="boom",
                signature=infer_signature(x, np.zeros(len(x))),
                pip_requirements=["mlflow"],
            )
        yield uri
    finally:
        if saved is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = saved


@pytest.fixture(scope="module")
def ws(registry: str, tmp_path_factory: pytest.TempPathFactory) -> LocalWorkspace:
    workspace = LocalWorkspace(
        host="127.0.0.1", port=0, token=TOKEN, registry_uri=registry, data_dir=tmp_path_factory.mktemp("ws")
    ).start()
    yield workspace
    workspace.stop()


@pytest.fixture(autouse=True)
def _reset_faults(request: pytest.FixtureRequest) -> None:
    if "ws" not in request.fixturenames:
        yield
        return
    workspace: LocalWorkspace = request.getfixturevalue("ws")
    workspace.faults.update(
        {"latency_ms": 0, "provisioning_seconds": 0.2, "fail_load": [], "rate_429": 0.0, "rate_503": 0.0}
    )
    yield
    workspace.faults.update(
        {"latency_ms": 0, "provisioning_seconds": 0.2, "fail_load": [], "rate_429": 0.0, "rate_503": 0.0}
    )


@pytest.fixture(scope="module")
def w(ws: LocalWorkspace) -> WorkspaceClient:
    return WorkspaceClient(host=ws.url, token=TOKEN)


def entity(model: str, version: str, name: str | None = None) -> ServedEntityInput:
    return ServedEntityInput(
        entity_name=model, entity_version=version, name=name, workload_size="Small", scale_to_zero_enabled=True
    )


def config(*entities: ServedEntityInput, routes: list[tuple[str, int]] | None = None) -> EndpointCoreConfigInput:
    traffic = None
    if routes is not None:
        traffic = TrafficConfig(routes=[Route(traffic_percentage=p, served_entity_name=n) for n, p in routes])
    return EndpointCoreConfigInput(name="unused", served_entities=list(entities), traffic_config=traffic)


def settle(w: WorkspaceClient, name: str, timeout: float = 20.0):
    """Poll faster than the SDK waiter (which sleeps 1-2 s between polls) until the update settles."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ep = w.serving_endpoints.get(name)
        if ep.state.config_update.value != "IN_PROGRESS":
            return ep
        time.sleep(0.05)
    raise AssertionError(f"{name} still IN_PROGRESS after {timeout}s")


def create_ready(w: WorkspaceClient, name: str, *entities: ServedEntityInput, routes=None):
    w.serving_endpoints.create(name, config=config(*entities, routes=routes))
    ep = settle(w, name)
    assert ep.state.ready.value == "READY", ep.as_dict()
    return ep


def raw(ws: LocalWorkspace, method: str, path: str, body: bytes | None = None, headers: dict | None = None):
    """A plain HTTP call, for what the SDK cannot send (bad bodies, missing auth). Returns (status, headers, text)."""
    req = urllib.request.Request(ws.url + path, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, dict(resp.headers), resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read().decode()


AUTH = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}


@pytest.fixture(scope="module")
def ready_endpoint(ws: LocalWorkspace, w: WorkspaceClient) -> str:
    """A READY endpoint serving lin/1, shared by read-only tests."""
    create_ready(w, "shared-lin", entity("lin", "1"))
    return "shared-lin"


# ---------------------------------------------------------------------------------- cross-cutting
def test_well_known_needs_no_auth_and_unknown_paths_are_404(ws: LocalWorkspace) -> None:
    status, _, text = raw(ws, "GET", "/.well-known/databricks-config")
    assert (status, json.loads(text)) == (200, {})
    status, _, text = raw(ws, "GET", "/api/2.0/nothing-here", headers=AUTH)
    assert status == 404
    assert json.loads(text)["error_code"] == "ENDPOINT_NOT_FOUND"


def test_auth_is_required_and_checked(ws: LocalWorkspace) -> None:
    status, _, text = raw(ws, "GET", "/api/2.0/serving-endpoints")
    assert status == 401
    assert json.loads(text)["error_code"] == "UNAUTHENTICATED"
    with pytest.raises(Unauthenticated):
        list(WorkspaceClient(host=ws.url, token="wrong-token").serving_endpoints.list())
    status, _, text = raw(
        ws, "GET", "/api/2.0/serving-endpoints", headers={**AUTH, "X-Databricks-Workspace-Id": "1234567890"}
    )
    assert status == 200
    assert "endpoints" in json.loads(text)


# ---------------------------------------------------------------------------------- lifecycle
def test_create_and_wait_reaches_ready_with_default_name_and_route(ws: LocalWorkspace, w: WorkspaceClient) -> None:
    ws.faults.provisioning_seconds = 0.5
    waiter = w.serving_endpoints.create("create-wait", config=config(entity("lin", "1")))
    first = waiter.response
    assert first.name == "create-wait"
    assert (first.state.ready.value, first.state.config_update.value) == ("NOT_READY", "IN_PROGRESS")
    assert first.config is None
    assert first.pending_config.config_version == 1
    assert first.pending_config.start_time > 0
    assert first.pending_config.served_entities[0].state.deployment.value == "DEPLOYMENT_CREATING"

    ep = waiter.result()  # the SDK's own waiter (wait_get_serving_endpoint_not_updating)
    assert (ep.state.ready.value, ep.state.config_update.value) == ("READY", "NOT_UPDATING")
    assert ep.pending_config is None
    assert ep.config.config_version == 1
    served = ep.config.served_entities[0]
    assert served.name == "lin-1"
    assert served.state.deployment.value == "DEPLOYMENT_READY"
    route = ep.config.traffic_config.routes[0]
    assert (route.served_entity_name, route.served_model_name, route.traffic_percentage) == ("lin-1", "lin-1", 100)
    listed = {e.name: e for e in w.serving_endpoints.list()}
    assert listed["create-wait"].config.served_entities[0].name == "lin-1"
    assert listed["create-wait"].state.ready.value == "READY"


def test_query_returns_predictions_and_served_model_name(w: WorkspaceClient, ready_endpoint: str) -> None:
    resp = w.serving_endpoints.query(ready_endpoint, dataframe_split=ROWS)
    assert resp.predictions == pytest.approx(V1_PREDICTIONS)
    assert resp.served_model_name == "lin-1"
    records = w.serving_endpoints.query(ready_endpoint, dataframe_records=[{"a": 3.0, "b": 1.0}])
    assert records.predictions == pytest.approx([7.0])


def test_update_config_goes_in_progress_then_not_updating_and_rejects_a_second_update(
    ws: LocalWorkspace, w: WorkspaceClient
) -> None:
    create_ready(w, "upd", entity("lin", "1"))
    ws.faults.provisioning_seconds = 1.0
    waiter = w.serving_endpoints.update_config("upd", served_entities=[entity("lin", "2")])
    during = waiter.response
    assert during.name == "upd"
    assert (during.state.ready.value, during.state.config_update.value) == ("READY", "IN_PROGRESS")
    assert during.pending_config.config_version == 2
    assert during.config.config_version == 1
    # The old config keeps serving while the update is in progress.
    assert w.serving_endpoints.query("upd", dataframe_split=ROWS).served_model_name == "lin-1"
    with pytest.raises(ResourceConflict):
        w.serving_endpoints.update_config("upd", served_entities=[entity("lin", "1")])

    ep = waiter.result()
    assert ep.state.config_update.value == "NOT_UPDATING"
    assert ep.config.config_version == 2
    assert [e.name for e in ep.config.served_entities] == ["lin-2"]
    resp = w.serving_endpoints.query("upd", dataframe_split=ROWS)
    assert (resp.served_model_name, resp.predictions) == ("lin-2", pytest.approx(V2_PREDICTIONS))


def test_failed_update_keeps_the_previous_config_serving(ws: LocalWorkspace, w: WorkspaceClient) -> None:
    create_ready(w, "fail-upd", entity("lin", "1"))
    ws.faults.fail_load = ["lin/2"]
    with pytest.raises(OperationFailed):
        w.serving_endpoints.update_config("fail-upd", served_entities=[entity("lin", "2")]).result()
    ep = w.serving_endpoints.get("fail-upd")
    assert (ep.state.ready.value, ep.state.config_update.value) == ("READY", "UPDATE_FAILED")
    assert ep.pending_config is None
    assert ep.config.config_version == 1
    assert [e.name for e in ep.config.served_entities] == ["lin-1"]
    resp = w.serving_endpoints.query("fail-upd", dataframe_split=ROWS)
    assert (resp.served_model_name, resp.predictions) == ("lin-1", pytest.approx(V1_PREDICTIONS))
    assert "fail_load" in w.serving_endpoints.build_logs("fail-upd", "lin-2").logs

    ws.faults.fail_load = []  # a later update may succeed; config versions keep counting up
    w.serving_endpoints.update_config("fail-upd", served_entities=[entity("lin", "2")])
    ep = settle(w, "fail-upd")
    assert (ep.state.config_update.value, ep.config.config_version) == ("NOT_UPDATING", 3)


def test_failed_create_is_not_ready_and_says_why(w: WorkspaceClient) -> None:
    with pytest.raises(OperationFailed):
        w.serving_endpoints.create("missing-version", config=config(entity("lin", "99"))).result()
    ep = w.serving_endpoints.get("missing-version")
    assert (ep.state.ready.value, ep.state.config_update.value) == ("NOT_READY", "UPDATE_FAILED")
    assert ep.pending_config is None
    served = ep.config.served_entities[0]
    assert served.state.deployment.value == "DEPLOYMENT_FAILED"
    assert "lin/99" in served.state.deployment_state_message
    with pytest.raises(BadRequest):
        w.serving_endpoints.query("missing-version", dataframe_split=ROWS)


def test_unity_catalog_name_and_legacy_served_models(w: WorkspaceClient) -> None:
    uc = w.serving_endpoints.create("uc-name", config=config(entity("main.default.model", "3"))).response
    assert uc.pending_config.served_entities[0].name == "model-3"
    legacy = w.serving_endpoints.create(
        "legacy",
        config=EndpointCoreConfigInput(
            name="legacy",
            served_models=[ServedModelInput(model_name="lin", model_version="1", scale_to_zero_enabled=True)],
        ),
    ).response
    assert legacy.pending_config.served_entities[0].name == "lin-1"
    assert legacy.pending_config.served_models[0].model_name == "lin"
    assert settle(w, "legacy").state.ready.value == "READY"


def test_missing_endpoint_is_resource_does_not_exist(w: WorkspaceClient) -> None:
    calls = [
        lambda: w.serving_endpoints.get("nope"),
        lambda: w.serving_endpoints.update_config("nope", served_entities=[entity("lin", "1")]),
        lambda: w.serving_endpoints.delete("nope"),
        lambda: w.serving_endpoints.query("nope", dataframe_split=ROWS),
    ]
    for call in calls:
        with pytest.raises(ResourceDoesNotExist) as info:
            call()
        assert isinstance(info.value, NotFound)


def test_duplicate_create_and_delete(w: WorkspaceClient) -> None:
    w.serving_endpoints.create("dup", config=config(entity("lin", "1")))
    with pytest.raises(ResourceAlreadyExists):
        w.serving_endpoints.create("dup", config=config(entity("lin", "1")))
    w.serving_endpoints.delete("dup")
    assert "dup" not in {e.name for e in w.serving_endpoints.list()}
    with pytest.raises(ResourceDoesNotExist):
        w.serving_endpoints.get("dup")


@pytest.mark.parametrize(
    ("name", "cfg"),
    [
        ("bad-sum", config(entity("lin", "1"), routes=[("lin-1", 90)])),
        ("bad-route", config(entity("lin", "1"), routes=[("lin-7", 100)])),
        ("no-traffic", config(entity("lin", "1"), entity("lin", "2"))),
        ("too-many", config(*[entity("lin", "1", name=f"e{i}") for i in range(11)], routes=[("e0", 100)])),
        ("bad-entity-name", config(entity("lin", "1", name="has space"))),
        ("dup-entity", config(entity("lin", "1"), entity("lin", "1"), routes=[("lin-1", 100)])),
        ("no-version", config(ServedEntityInput(entity_name="lin"))),
        ("bad.endpoint.name", config(entity("lin", "1"))),
    ],
)
def test_invalid_configs_are_rejected(w: WorkspaceClient, name: str, cfg: EndpointCoreConfigInput) -> None:
    with pytest.raises(InvalidParameterValue):
        w.serving_endpoints.create(name, config=cfg)
    assert name not in {e.name for e in w.serving_endpoints.list()}


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/api/2.0/serving-endpoints", b"{not json"),
        ("POST", "/api/2.0/serving-endpoints", b"[1, 2]"),
        ("POST", "/api/2.0/serving-endpoints", b'{"name": "x", "config": {"served_entities": "lin"}}'),
        ("POST", "/api/2.0/serving-endpoints", b'{"name": "x", "config": {"served_entities": [{"entity_name": 5}]}}'),
        ("PUT", "/api/2.0/serving-endpoints/shared-lin/config", b'{"traffic_config": {"routes": "all"}}'),
        ("PUT", "/api/2.0/serving-endpoints/shared-lin/config", b'{"traffic_config": {"routes": [{"x": 1}]}}'),
        ("POST", "/local/faults", b'{"rate_503": 7}'),
    ],
)
def test_bad_bodies_are_400_never_500(ws: LocalWorkspace, ready_endpoint: str, method: str, path: str, body: bytes):
    status, _, text = raw(ws, method, path, body=body, headers=AUTH)
    assert status == 400, text
    assert json.loads(text)["error_code"] in ("BAD_REQUEST", "INVALID_PARAMETER_VALUE")


# ---------------------------------------------------------------------------------- invocations
def test_malformed_invocation_bodies_are_400(ws: LocalWorkspace, w: WorkspaceClient, ready_endpoint: str) -> None:
    with pytest.raises(BadRequest, match="exactly one of the input fields"):
        w.serving_endpoints.query(ready_endpoint, dataframe_split=ROWS, inputs={"a": [1.0], "b": [0.0]})
    path = f"/serving-endpoints/{ready_endpoint}/invocations"
    for body in (b"{broken", b"[]", b'{"rows": [1]}'):
        status, _, text = raw(ws, "POST", path, body=body, headers=AUTH)
        assert status == 400, text
        assert json.loads(text)["error_code"] == "BAD_REQUEST"


def test_model_raising_at_predict_is_bad_request(w: WorkspaceClient) -> None:
    create_ready(w, "boom-ep", entity("boom", "1"))
    with pytest.raises(BadRequest, match="boom: the model refused these rows"):
        w.serving_endpoints.query("boom-ep", dataframe_split=ROWS)
    assert "boom" in w.serving_endpoints.logs("boom-ep", "boom-1").logs


def test_traffic_is_split_by_route_percentages(ws: LocalWorkspace, w: WorkspaceClient) -> None:
    ws.reseed(11)
    create_ready(w, "split", entity("lin", "1"), entity("lin", "2"), routes=[("lin-1", 70), ("lin-2", 30)])
    served = Counter(w.serving_endpoints.query("split", dataframe_split=ROWS).served_model_name for _ in range(60))
    assert set(served) == {"lin-1", "lin-2"}
    assert served["lin-1"] > served["lin-2"]
    w.serving_endpoints.update_config(
        "split", traffic_config=TrafficConfig(routes=[Route(traffic_percentage=100, served_entity_name="lin-2")])
    )
    ep = settle(w, "split")
    assert [e.name for e in ep.config.served_entities] == ["lin-1", "lin-2"]  # entities kept, traffic changed
    served = {w.serving_endpoints.query("split", dataframe_split=ROWS).served_model_name for _ in range(10)}
    assert served == {"lin-2"}


def test_every_invocation_is_logged_to_the_inference_table(ws: LocalWorkspace, w: WorkspaceClient) -> None:
    create_ready(w, "logged", entity("lin", "1"))
    w.serving_endpoints.put_ai_gateway("logged", inference_table_config=AiGatewayInferenceTableConfig(
        catalog_name="main", schema_name="serving", enabled=True))
    w.serving_endpoints.query("logged", dataframe_split=ROWS, client_request_id="req-42")
    with pytest.raises(BadRequest):
        w.serving_endpoints.query("logged", dataframe_split=ROWS, inputs=[1.0])
    ws.inference.flush()
    rows = query(w, "SELECT * FROM main.serving.logged_payload ORDER BY request_time").rows
    entities = query(w, "SELECT * FROM system.serving.served_entities WHERE endpoint_name = 'logged'").rows
    assert [r["status_code"] for r in rows] == ["200", "400"]
    ok, bad = rows
    assert set(ok) == {
        "databricks_request_id",
        "request_date",
        "client_request_id",
        "request_time",
        "status_code",
        "sampling_fraction",
        "execution_duration_ms",
        "request",
        "response",
        "served_entity_id",
        "requester",
        "logging_error_codes",
    }
    assert ok["client_request_id"] == "req-42"
    assert json.loads(ok["request"])["dataframe_split"]["columns"] == ["a", "b"]
    assert json.loads(ok["response"])["predictions"] == pytest.approx(V1_PREDICTIONS)
    assert ok["request_time"].startswith(ok["request_date"])
    assert int(ok["execution_duration_ms"]) >= 0
    assert ok["sampling_fraction"] == "1.0"
    assert json.loads(ok["logging_error_codes"]) == []
    assert [(e["served_entity_id"], e["entity_version"]) for e in entities] == [(ok["served_entity_id"], "1")]
    assert json.loads(bad["response"])["error_code"] == "BAD_REQUEST"


def test_openapi_document_describes_the_signature(w: WorkspaceClient, ready_endpoint: str) -> None:
    doc = json.loads(w.serving_endpoints.get_open_api(ready_endpoint).contents.read())
    assert doc["openapi"].startswith("3.")
    operation = doc["paths"][f"/serving-endpoints/{ready_endpoint}/invocations"]["post"]
    variants = operation["requestBody"]["content"]["application/json"]["schema"]["oneOf"]
    records = next(v for v in variants if "dataframe_records" in v["properties"])
    columns = records["properties"]["dataframe_records"]["items"]["properties"]
    assert columns == {"a": {"type": "number", "format": "double"}, "b": {"type": "number", "format": "double"}}


# ---------------------------------------------------------------------------------- faults
def test_503_is_retried_by_the_sdk_until_the_fault_clears(ws: LocalWorkspace, w: WorkspaceClient) -> None:
    ws.faults.rate_503 = 1.0
    before = ws.request_mark()
    timer = threading.Timer(1.0, lambda: setattr(ws.faults, "rate_503", 0.0))
    timer.start()
    try:
        started = time.monotonic()
        names = [e.name for e in w.serving_endpoints.list()]
    finally:
        timer.cancel()
    assert isinstance(names, list)
    assert time.monotonic() - started >= 0.9
    statuses = [s for m, p, s in ws.requests_since(before) if p == "/api/2.0/serving-endpoints"]
    assert statuses[0] == 503
    assert statuses[-1] == 200


def test_429_exhausts_a_short_retry_budget(ws: LocalWorkspace) -> None:
    ws.faults.rate_429 = 1.0
    client = WorkspaceClient(config=Config(host=ws.url, token=TOKEN, retry_timeout_seconds=1))
    with pytest.raises(TimeoutError):
        client.serving_endpoints.get("anything")
    status, headers, text = raw(ws, "GET", "/api/2.0/serving-endpoints", headers=AUTH)
    assert (status, headers.get("Retry-After"), json.loads(text)["error_code"]) == (429, "1", "REQUEST_LIMIT_EXCEEDED")


def test_faults_over_http(ws: LocalWorkspace, w: WorkspaceClient) -> None:
    status, _, text = raw(ws, "POST", "/local/faults", body=b'{"latency_ms": 300}', headers=AUTH)
    assert status == 200
    assert json.loads(text)["latency_ms"] == 300
    assert ws.faults.latency_ms == 300
    started = time.monotonic()
    list(w.serving_endpoints.list())
    assert time.monotonic() - started >= 0.3
    status, _, text = raw(ws, "GET", "/local/faults", headers=AUTH)
    assert json.loads(text)["latency_ms"] == 300
    assert raw(ws, "GET", "/local/faults")[0] == 401


# ---------------------------------------------------------------------------------- command line
def test_command_line_serves_until_sigterm(registry: str, tmp_path: Path) -> None:
    args = ["--port", "0", "--token", "cli-token", "--registry-uri", registry, "--data-dir", str(tmp_path / "ws")]
    proc = subprocess.Popen(
        [sys.executable, "-m", "local.workspace", *args, "--log-level", "WARNING"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        url = proc.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:")
        with urllib.request.urlopen(url + "/.well-known/databricks-config", timeout=10) as resp:
            assert json.loads(resp.read()) == {}
        client = WorkspaceClient(host=url, token="cli-token")
        assert list(client.serving_endpoints.list()) == []
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
