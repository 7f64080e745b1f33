"""The canary analysis query (``shared.delivery.measure``) against the local workspace: a real
endpoint serving three versions, traffic through databricks-sdk, the AI Gateway payload table
flushed, and the statements run on the workspace's SQL (DuckDB over the Delta tables).

The model is a tiny pyfunc, prediction = x + offset, that answers 500 INTERNAL_ERROR (an
MlflowException with that code, which MLflow's scoring server passes through) for a record with
x < 0, so server errors come from the serving path itself. Version 1 is the champion, version 2
the same model, version 3 shifted by +3 and 50 ms slower. Every figure is checked against what
the test sent and received (the ``served-model-name`` header of each answer), the durations the
table recorded, numpy's deciles and scipy's KS D."""

from __future__ import annotations

import math
import random
import time
import uuid
from collections import Counter
from typing import Any

import numpy as np
import pytest
import requests
from databricks.sdk import WorkspaceClient
from databricks.sdk.service.serving import AiGatewayConfig, AiGatewayInferenceTableConfig
from scipy import stats

from local.stack import WORKSPACE_TOKEN
from local.taxi import using_mlflow_uri
from shared import statements
from shared.delivery.measure import Arm, Figures, measure
from shared.statements import quote
from tests.sql_results import WAREHOUSE, query
from tests.test_local_workspace import config, entity, settle

REQUESTS, RECORDS = 300, 4
ROUTES = {"1": 45, "2": 45, "3": 10}
MODELS = {"1": (0.0, 0.0), "2": (0.0, 0.0), "3": (3.0, 50.0)}  # version: (offset, pause ms)
ERRORS = {"1": 2, "2": 6}  # 500s sent to each version through its served-model route
BAD = {"2": 3}  # 400s (a body with two input fields)


def register(tracking_uri: str, model: str) -> None:
    import mlflow
    import pandas as pd
    from mlflow import MlflowClient
    from mlflow.models import infer_signature

    class Affine(mlflow.pyfunc.PythonModel):  # defined here: pickled by value, loaded by the workspace
        def __init__(self, offset: float, pause_ms: float) -> None:
            self.offset, self.pause_ms = offset, pause_ms

        def predict(self, context, model_input, params=None):
            from mlflow.exceptions import MlflowException
            from mlflow.protos.databricks_pb2 import INTERNAL_ERROR

            x = model_input["x"].to_numpy(dtype=float)
            if (x < 0).any():
                raise MlflowException("x < 0: an injected server error", error_code=INTERNAL_ERROR)
            time.sleep(self.pause_ms / 1000)
            return x + self.offset

    example = pd.DataFrame({"x": [1.0, 2.0]})
    experiment = MlflowClient(tracking_uri).create_experiment(f"measure-{model}")
    with using_mlflow_uri(tracking_uri):
        for version, (offset, pause_ms) in MODELS.items():
            with mlflow.start_run(experiment_id=experiment):
                info = mlflow.pyfunc.log_model(name="model", python_model=Affine(offset, pause_ms),
                                               registered_model_name=model, pip_requirements=["mlflow"],
                                               signature=infer_signature(example, example["x"].to_numpy()))
            assert str(info.registered_model_version) == version


@pytest.fixture(scope="module")
def w(plat) -> WorkspaceClient:
    return WorkspaceClient(host=plat.workspace.url, token=WORKSPACE_TOKEN)


@pytest.fixture(scope="module")
def sent(plat, w: WorkspaceClient) -> dict[str, Any]:
    """The endpoint, its traffic and what every answer said."""
    tag = uuid.uuid4().hex[:8]
    model, name = f"affine_{tag}", f"canary-{tag}"
    register(plat.mlflow.url, model)
    plat.workspace.reseed(5)
    w.serving_endpoints.create(name, config=config(*(entity(model, v) for v in ROUTES),
                                                   routes=[(f"{model}-{v}", p) for v, p in ROUTES.items()]),
                               ai_gateway=AiGatewayConfig(inference_table_config=AiGatewayInferenceTableConfig(
                                   catalog_name="main", schema_name="canary", enabled=True)))
    assert settle(w, name).state.ready.value == "READY"
    rng = random.Random(11)
    started = time.time()
    answered: dict[str, list[float]] = {v: [] for v in ROUTES}
    served: Counter[str] = Counter()
    for k in range(REQUESTS):
        records = [{"x": round(rng.uniform(0, 10), 3)} for _ in range(RECORDS)]
        got = w.serving_endpoints.query(name, dataframe_records=records, client_request_id=f"r-{k}")
        version = got.served_model_name.rsplit("-", 1)[1]
        served[version] += 1
        answered[version].extend(got.predictions)
    auth = {"Authorization": f"Bearer {WORKSPACE_TOKEN}"}
    for version, bodies in (*((v, [{"dataframe_records": [{"x": -1.0}]}] * n) for v, n in ERRORS.items()),
                            *((v, [{"dataframe_records": [{"x": 1.0}], "inputs": [1.0]}] * n) for v, n in BAD.items())):
        for body in bodies:
            r = requests.post(f"{plat.workspace.url}/serving-endpoints/{name}/served-models/{model}-{version}/"
                              "invocations", json=body, headers=auth, timeout=30)
            assert r.status_code == (500 if "inputs" not in body else 400), r.text
            served[version] += 1
    ended = time.time()
    plat.workspace.inference.flush()
    table = f"main.canary.{name}_payload"
    durations = query(w, f"SELECT se.entity_version AS v, p.execution_duration_ms AS ms FROM {quote(table)} AS p JOIN "
                         "system.serving.served_entities AS se ON se.served_entity_id = p.served_entity_id").rows
    return {"table": table, "start": math.floor(started), "end": math.floor(ended) + 1, "served": served,
            "answered": answered, "durations": durations}


def run(w: WorkspaceClient, sent: dict[str, Any], candidate: str, champion: str, start: float | None = None,
        end: float | None = None) -> Figures:
    return measure(w, WAREHOUSE, sent["table"], candidate, champion, sent["start"] if start is None else start,
                   sent["end"] if end is None else end, {}, time.monotonic() + 30)


def p95(sent: dict[str, Any], version: str) -> float:
    """percentile_cont(0.95) is numpy's default (linear) percentile, over the requests with a
    duration (a request refused before scoring has none)."""
    ms = [float(r["ms"]) for r in sent["durations"] if r["v"] == version and r["ms"] is not None]
    return float(np.percentile(ms, 95))


def shift(candidate: list[float], champion: list[float]) -> tuple[float, float]:
    """PSI on the champion's deciles (right-closed bins, open ends; an empty bin counts as a share
    of 1e-4, shared.drift.distances) and scipy's KS D."""
    edges = np.unique(np.quantile(champion, np.arange(1, 10) / 10))

    def shares(values: list[float]) -> np.ndarray:
        counts = np.bincount(np.searchsorted(edges, values, side="left"), minlength=len(edges) + 1)
        p = np.where(counts > 0, counts / len(values), 1e-4)
        return p / p.sum()

    ref, cur = shares(champion), shares(candidate)
    return float(np.sum((cur - ref) * np.log(cur / ref))), float(stats.ks_2samp(candidate, champion).statistic)


def test_each_arm_has_the_requests_errors_p95_and_predictions_its_version_answered(w, sent) -> None:
    got = run(w, sent, "2", "1")
    for arm, version in ((got.candidate, "2"), (got.champion, "1")):
        # 4xx are requests but not server errors; the 500s answered no prediction.
        assert arm == Arm(version, sent["served"][version], ERRORS[version], p95(sent, version),
                          len(sent["answered"][version])), version
    assert got.candidate.requests > 100 and got.champion.requests > 100  # the routes split 300 requests


def test_the_shift_is_psi_on_the_champion_deciles_and_ks_d(w, sent) -> None:
    got = run(w, sent, "3", "1")
    psi, ks = shift(sent["answered"]["3"], sent["answered"]["1"])
    assert got.psi == pytest.approx(psi, rel=1e-9) and got.ks == pytest.approx(ks, abs=1e-12)
    assert got.psi > 0.25 and got.ks > 0.2  # x + 3 against x on x ~ U(0, 10)
    assert got.candidate.predictions == len(sent["answered"]["3"]) and got.candidate.server_errors == 0
    assert got.candidate.p95_ms >= 50 > got.champion.p95_ms  # version 3 sleeps 50 ms per request


def test_an_identical_model_shifts_little_and_a_version_against_itself_not_at_all(w, sent) -> None:
    same = run(w, sent, "2", "1")
    psi, ks = shift(sent["answered"]["2"], sent["answered"]["1"])
    assert same.psi == pytest.approx(psi, rel=1e-9) and same.ks == pytest.approx(ks, abs=1e-12)
    assert same.psi < 0.1 and same.ks < 0.1  # two random halves of one model's traffic
    itself = run(w, sent, "1", "1")
    assert itself.psi == 0 and itself.ks == 0
    assert itself.candidate == itself.champion == same.champion


def test_a_window_without_traffic_has_no_requests_and_no_shift(w, sent) -> None:
    got = run(w, sent, "2", "1", start=sent["start"] - 7200, end=sent["start"] - 3600)
    assert got == Figures(Arm("2", 0, 0, None, 0), Arm("1", 0, 0, None, 0), None, None)
    unknown = run(w, sent, "9", "1")  # a version that served nothing: its side is empty
    assert unknown.candidate == Arm("9", 0, 0, None, 0) and unknown.psi is None and unknown.ks is None
    assert unknown.champion.requests == sent["served"]["1"]


def test_running_statements_are_polled_and_a_finished_one_is_never_submitted_again(plat, w, sent) -> None:
    """A starting warehouse keeps every statement PENDING; measure() is called again with the
    same cursor, as the next queue message would, until the figures are complete."""
    cursor: dict[str, Any] = {}
    ids: dict[str, set[str]] = {}
    calls = 0
    plat.workspace.faults.update({"statement_pending_seconds": 0.3})
    try:
        while True:
            calls += 1
            try:
                got = measure(w, WAREHOUSE, sent["table"], "2", "1", sent["start"], sent["end"], cursor,
                              time.monotonic())  # no time left: every statement is submitted asynchronously
                break
            except statements.StatementPending:
                for key, sid in cursor["statements"].items():
                    ids.setdefault(key, set()).add(sid)
                if calls == 1:
                    assert set(cursor["statements"]) == {"arms", "shift_ref"}  # both submitted before either ran
                time.sleep(0.05)
    finally:
        plat.workspace.faults.update({"statement_pending_seconds": 0.0})
    assert calls > 2 and {k: len(v) for k, v in ids.items()} == {"arms": 1, "shift_ref": 1, "shift": 1}
    assert cursor == {}  # nothing left over for the next measurement with this cursor
    assert got == run(w, sent, "2", "1")


def test_a_failed_statement_fails_the_measurement(w, sent) -> None:
    with pytest.raises(statements.StatementFailed, match="TABLE_OR_VIEW_NOT_FOUND"):
        measure(w, WAREHOUSE, sent["table"] + "_gone", "2", "1", sent["start"], sent["end"], {},
                time.monotonic() + 30)
