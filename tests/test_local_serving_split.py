"""Traffic split and per-entity faults of the local workspace, through the real databricks-sdk over HTTP.

One endpoint serves two real versions of the taxi fare model (``local.taxi``, the registry of
``test_inference_capture``) at 10/90, plus version 2 again under another name at a 0% route: a
candidate kept loaded but out of the split (routes are "an integer between 0 and
100 inclusive", the SDK's ``Route`` docstring). Its inference table is on, so every answer can be read
back with the served entity that gave it (Databricks, "Monitor served models using AI Gateway-enabled inference tables",
https://docs.databricks.com/aws/en/ai-gateway/inference-tables).

The split draws from ``ServingService.reseed``'s generator and the injected entity errors from
``Faults.reseed``'s, so every count below is fixed by the seeds; the binomial bound says that the
split follows the routes, not that these seeds happen to pass.
"""

from __future__ import annotations

import json
import math
import uuid
from collections import Counter
from collections.abc import Iterator
from statistics import NormalDist
from typing import Any

import pytest
from databricks.sdk import WorkspaceClient
from databricks.sdk.errors import InternalError, InvalidParameterValue
from databricks.sdk.service.serving import AiGatewayConfig, QueryEndpointResponse

from local import taxi
from local.workspace import LocalWorkspace
from tests import test_inference_capture as capture_tests
from tests.sql_results import query
from tests.test_local_workspace import AUTH, entity, raw

# The registry (taxi_fare v1 and v2), workspace, client and fault reset of the inference capture tests.
registry = capture_tests.registry
ws = capture_tests.ws
w = capture_tests.w
_reset_faults = capture_tests._reset_faults

SMALL, LARGE, IDLE = "taxi_fare-1", "taxi_fare-2", "idle"
ROUTES = [(SMALL, 10), (LARGE, 90), (IDLE, 0)]
RECORDS = taxi.sample_records(n=3, seed=42)


@pytest.fixture(autouse=True)
def _no_entity_faults(request: pytest.FixtureRequest) -> Iterator[None]:
    if "ws" not in request.fixturenames:
        yield
        return
    faults = request.getfixturevalue("ws").faults
    faults.update({"entity_faults": {}})
    yield
    faults.update({"entity_faults": {}})


@pytest.fixture(scope="module")
def split(ws: LocalWorkspace, w: WorkspaceClient) -> str:
    """The 10/90/0 endpoint, captured to ``main.monitoring.<name>_payload``."""
    name = capture_tests.unique("split")
    capture_tests.create(w, name, capture_tests.fare("1"), capture_tests.fare("2"), entity("taxi_fare", "2", IDLE),
                         routes=ROUTES, ai_gateway=AiGatewayConfig(inference_table_config=capture_tests.gateway()))
    return name


def table(endpoint: str) -> str:
    return f"{capture_tests.CATALOG}.{capture_tests.SCHEMA}.{endpoint}_payload"


def served_model(w: WorkspaceClient, endpoint: str, served: str, request_id: str | None = None
                 ) -> QueryEndpointResponse:
    """POST /serving-endpoints/{name}/served-models/{served}/invocations: the SDK has no method for
    it, so it goes through the SDK's own client with the headers ``serving_endpoints.query`` sends."""
    body: dict[str, Any] = {"dataframe_records": RECORDS}
    if request_id is not None:
        body["client_request_id"] = request_id
    return QueryEndpointResponse.from_dict(w.api_client.do(
        "POST", f"/serving-endpoints/{endpoint}/served-models/{served}/invocations", body=body,
        response_headers=["served-model-name"],
        headers={"Accept": "application/json", "Content-Type": "application/json"}))


def served_names(w: WorkspaceClient, endpoint: str, n: int) -> list[str | None]:
    return [w.serving_endpoints.query(endpoint, dataframe_records=RECORDS).served_model_name for _ in range(n)]


def captured(w: WorkspaceClient, endpoint: str, request_ids: list[str]) -> list[dict[str, str | None]]:
    """Our rows of the payload table, each with the served entity (name and version) it names."""
    marks = ", ".join(f"'{r}'" for r in request_ids)
    return query(w, f"""SELECT p.client_request_id, p.status_code, p.execution_duration_ms, p.response,
                               se.served_entity_name, se.entity_version
                        FROM {table(endpoint)} AS p
                        JOIN system.serving.served_entities AS se ON se.served_entity_id = p.served_entity_id
                        WHERE p.client_request_id IN ({marks})""").rows


def binomial_interval(n: int, p: float, confidence: float) -> tuple[int, int]:
    """The central interval of Binomial(n, p) holding at least ``confidence`` of its mass: the
    largest ``lo`` with P(X < lo) <= (1 - confidence) / 2, the smallest ``hi`` with P(X > hi) below
    the same tail."""
    tail = (1 - confidence) / 2
    # In logs: comb(n, k) overflows a float long before n reaches the traffic of a test.
    pmf = [math.exp(math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)
                    + k * math.log(p) + (n - k) * math.log1p(-p)) for k in range(n + 1)]
    below, lo = 0.0, 0
    while below + pmf[lo] <= tail:
        below += pmf[lo]
        lo += 1
    above, hi = 0.0, n
    while above + pmf[hi] <= tail:
        above += pmf[hi]
        hi -= 1
    return lo, hi


def test_binomial_interval_matches_the_normal_approximation_where_it_holds() -> None:
    z = NormalDist().inv_cdf(0.9995)
    assert binomial_interval(10_000, 0.5, 0.999) == pytest.approx((5000 - z * 50, 5000 + z * 50), abs=2)
    assert binomial_interval(20, 0.5, 0.999) == (3, 17)  # P(X <= 2) = 211/2^20 < 0.0005 < P(X <= 3)


# ---------------------------------------------------------------------------------- the split
def test_a_zero_percent_route_is_accepted_and_echoed(w: WorkspaceClient, split: str) -> None:
    routes = w.serving_endpoints.get(split).config.traffic_config.routes
    assert [(r.served_entity_name, r.traffic_percentage) for r in routes] == ROUTES


def test_the_same_seed_routes_the_same_sequence(ws: LocalWorkspace, w: WorkspaceClient, split: str) -> None:
    runs = []
    for seed in (5, 5, 6):
        ws.reseed(seed)
        runs.append(served_names(w, split, 60))
    assert runs[0] == runs[1]
    assert runs[0] != runs[2]  # the seed, not a fixed pattern, decides
    assert set(runs[0]) == {SMALL, LARGE}


def test_shares_follow_the_routes_and_a_zero_route_gets_nothing(ws: LocalWorkspace, w: WorkspaceClient,
                                                                 split: str) -> None:
    n = 1000  # about 10 ms a query, nearly all of it MLflow scoring
    ws.reseed(2024)
    served = Counter(served_names(w, split, n))
    lo, hi = binomial_interval(n, 0.10, 0.999)
    assert lo <= served[SMALL] <= hi, (served, (lo, hi))
    assert served[SMALL] + served[LARGE] == n  # so IDLE, at 0%, was never chosen


def test_the_zero_route_entity_answers_on_its_own_route_and_is_captured_as_itself(
        ws: LocalWorkspace, w: WorkspaceClient, split: str) -> None:
    rid = f"idle-{uuid.uuid4().hex[:8]}"
    idle = served_model(w, split, IDLE, rid)
    large = served_model(w, split, LARGE)
    assert idle.served_model_name == IDLE
    assert idle.predictions == large.predictions  # the same model version under two names
    ws.inference.flush()
    [row] = captured(w, split, [rid])
    assert (row["served_entity_name"], row["entity_version"], row["status_code"]) == (IDLE, "2", "200")
    assert json.loads(row["response"])["predictions"] == idle.predictions


# ---------------------------------------------------------------------------------- entity faults
def test_entity_error_rate_fails_that_entity_only_and_is_captured_as_500(
        ws: LocalWorkspace, w: WorkspaceClient, split: str) -> None:
    ws.faults.update({"entity_faults": {"taxi_fare/1": {"error_rate": 1.0}}})
    ws.reseed(7)
    rids = [f"err-{uuid.uuid4().hex[:8]}-{k}" for k in range(60)]
    failed = []
    for rid in rids:
        try:
            w.serving_endpoints.query(split, dataframe_records=RECORDS, client_request_id=rid)
        except InternalError as exc:  # a 500 that the SDK does not retry (``retries.py``)
            assert f"Served entity {SMALL}" in str(exc)
            failed.append(rid)
    with pytest.raises(InternalError):
        served_model(w, split, SMALL)
    ws.inference.flush()
    rows = captured(w, split, rids)
    assert len(rows) == len(rids)
    assert {(r["served_entity_name"], r["status_code"]) for r in rows} == {(SMALL, "500"), (LARGE, "200")}
    assert sorted(r["client_request_id"] for r in rows if r["status_code"] == "500") == sorted(failed)
    error = json.loads(next(r["response"] for r in rows if r["status_code"] == "500"))
    assert error["error_code"] == "INTERNAL_ERROR" and SMALL in error["message"]
    assert "injected fault" in w.serving_endpoints.logs(split, SMALL).logs


def test_entity_error_rate_draws_from_the_seeded_generator(ws: LocalWorkspace, w: WorkspaceClient,
                                                           split: str) -> None:
    ws.faults.update({"entity_faults": {"taxi_fare/1": {"error_rate": 0.5}}})

    def outcomes() -> list[bool]:
        ws.faults.reseed(11)
        answered = []
        for _ in range(30):
            try:
                served_model(w, split, SMALL)
                answered.append(True)
            except InternalError:
                answered.append(False)
        return answered

    first = outcomes()
    assert first == outcomes()
    assert 0 < sum(first) < len(first)


def test_entity_bias_shifts_each_prediction_of_that_entity_exactly(ws: LocalWorkspace, w: WorkspaceClient,
                                                                   split: str) -> None:
    plain = {served: served_model(w, split, served).predictions for served in (SMALL, LARGE)}
    ws.faults.update({"entity_faults": {"taxi_fare/2": {"bias": 5.0}}})
    rid = f"bias-{uuid.uuid4().hex[:8]}"
    biased = served_model(w, split, LARGE, rid).predictions
    assert biased == [p + 5.0 for p in plain[LARGE]]
    assert served_model(w, split, SMALL).predictions == plain[SMALL]
    ws.inference.flush()
    [row] = captured(w, split, [rid])
    assert json.loads(row["response"])["predictions"] == biased  # the inference table sees what the client got


def test_entity_latency_is_slept_and_counted_in_execution_duration(ws: LocalWorkspace, w: WorkspaceClient,
                                                                   split: str) -> None:
    ws.faults.update({"entity_faults": {"taxi_fare/1": {"latency_ms": 50}}})
    slow = [f"slow-{uuid.uuid4().hex[:8]}-{k}" for k in range(5)]
    fast = [f"fast-{uuid.uuid4().hex[:8]}-{k}" for k in range(5)]
    for rid in slow:
        served_model(w, split, SMALL, rid)
    for rid in fast:
        served_model(w, split, LARGE, rid)
    ws.inference.flush()
    rows = captured(w, split, slow + fast)
    durations = {served: [int(r["execution_duration_ms"]) for r in rows if r["served_entity_name"] == served]
                 for served in (SMALL, LARGE)}
    assert len(durations[SMALL]) == len(durations[LARGE]) == 5
    assert min(durations[SMALL]) >= 50
    assert min(durations[LARGE]) < 50  # the other entity is not slowed down


def test_entity_faults_over_http_are_validated_and_echoed(ws: LocalWorkspace) -> None:
    body = {"entity_faults": {"taxi_fare/2": {"bias": -1.5, "latency_ms": 20}}}
    status, _, text = raw(ws, "POST", "/local/faults", body=json.dumps(body).encode(), headers=AUTH)
    assert status == 200, text
    assert json.loads(text)["entity_faults"] == {"taxi_fare/2": {"error_rate": 0.0, "latency_ms": 20.0, "bias": -1.5}}
    assert ws.faults.for_entity("taxi_fare", "2").bias == -1.5
    for bad in ({"taxi_fare": {}}, {"taxi_fare/2": {"error_rate": 1.5}}, {"taxi_fare/2": {"latency_ms": -1}},
                {"taxi_fare/2": {"bias": "high"}}, {"taxi_fare/2": {"slowness": 1}}, {"taxi_fare/2": 3}, ["x"]):
        status, _, text = raw(ws, "POST", "/local/faults", body=json.dumps({"entity_faults": bad}).encode(),
                              headers=AUTH)
        assert (status, json.loads(text)["error_code"]) == (400, "INVALID_PARAMETER_VALUE"), bad
    status, _, text = raw(ws, "POST", "/local/faults", body=b'{"entity_faults": {"m/1": {"bias": NaN}}}',
                          headers=AUTH)
    assert status == 400, text
    assert ws.faults.for_entity("taxi_fare", "2").bias == -1.5  # a refused update changes nothing


def test_route_percentages_outside_0_to_100_are_refused(w: WorkspaceClient) -> None:
    """The other side of "an integer between 0 and 100 inclusive" (the routes still sum to 100)."""
    name = capture_tests.unique("edge")
    with pytest.raises(InvalidParameterValue, match="between 0 and 100"):
        capture_tests.create(w, name, capture_tests.fare("1"), capture_tests.fare("2"),
                             routes=[("taxi_fare-1", -1), ("taxi_fare-2", 101)])
    assert name not in {e.name for e in w.serving_endpoints.list()}
