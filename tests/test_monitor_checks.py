"""The monitor's check pass against the local workspace, through databricks-sdk's Statement
Execution API: baseline freezing, windows per version, figures against scipy, insufficient data,
late labels, cooldown, a failing statement, and the data quality monitor path.

A processed inference table (``monitoring.source``) holds hourly windows of two versions; the
pass is run with a chosen ``now``. Tests loop on ``Pending`` (the app re-enqueues instead)."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd
import pytest
from databricks.sdk import WorkspaceClient
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from local.stack import WORKSPACE_TOKEN
from shared.monitoring import check, decide, store
from shared.monitoring.policy import Check
from shared.monitoring.relations import Watched
from shared.policy import parse_policy
from shared.storage import open_tables

WAREHOUSE = "local-warehouse"
H = 3600
T0 = 1_764_547_200  # 2025-12-01T00:00Z, a window boundary


def _frame(rng: np.random.Generator, start: int, n: int, version: str, shift: float = 0.0) -> pd.DataFrame:
    x = rng.normal(10 + shift, 2 + shift / 4, n)
    zones = np.array(["a", "b", "c", "d"]) if shift else np.array(["a", "b", "c"])
    return pd.DataFrame({
        "ts": pd.to_datetime(start + rng.integers(0, H, n), unit="s", utc=True),
        "model_version": version,
        "request_id": [f"r-{uuid.uuid4().hex[:10]}" for _ in range(n)],
        "x": x,
        "zone": rng.choice(zones, n),
        "prediction": 2.0 * x + rng.normal(0, 1, n),
    })


@pytest.fixture(scope="module")
def data(plat) -> dict[str, Any]:
    rng = np.random.default_rng(7)
    schema = f"main.mon{uuid.uuid4().hex[:8]}"
    frames = [
        _frame(rng, T0, 400, "2"),                 # window 0: v2's baseline
        _frame(rng, T0 + H, 400, "2"),             # window 1: like the baseline
        _frame(rng, T0 + 2 * H, 400, "2", 6.0),    # window 2: drifted
        _frame(rng, T0 + 2 * H, 400, "3", 30.0),   # window 2, another version: must not count for v2
        _frame(rng, T0 + 3 * H, 20, "2", 6.0),     # window 3: too few rows
    ]
    table = pd.concat(frames, ignore_index=True)
    plat.workspace.catalog.create_table(f"{schema}.inference", table)
    labels = table[["request_id"]].assign(label=table["prediction"] + rng.normal(0, 2, len(table)))
    plat.workspace.catalog.create_table(f"{schema}.labels", labels)
    return {"schema": schema, "table": table}


def _env(schema: str, extra: str = "", *, delay: str | None = "5s", checks: str | None = None,
         drift: str = "") -> Any:
    """A monitored environment over ``schema``'s tables; ``delay`` None: no labels."""
    checks = checks or """
          - {metric: psi, of: features, threshold: 0.25}
          - {metric: ks, of: prediction, threshold: 0.2}
          - {metric: chi2, of: zone, threshold: 0.01}
          - {metric: rmse, threshold: 5}"""
    labels = "" if delay is None else \
        f"          labels: {{table: {schema}.labels, key: request_id, column: label, delay: {delay}}}\n"
    drift = f"          drift: {drift}\n" if drift else ""
    text = f"""
models:
  - name: m
    environments:
      prod:
        endpoint: ep-{uuid.uuid4().hex[:8]}
        retraining: {{job_id: 1}}
        monitoring:
          window: 1h
          columns: [x, zone]
          categorical: [zone]
          source: {{table: {schema}.inference, timestamp_column: ts, version_column: model_version,
                    prediction_column: prediction, request_id_column: request_id}}
{labels}          decision: {{windows: 1, violations: 1, min_rows: 100, cooldown: 1h}}
{drift}          checks:{checks}
{extra}"""
    return parse_policy(text).models[0].environments["prod"]


def _pass(plat, tables, env, now: float, version: str = "2", explicit=None, cursor=None) -> dict[str, Any] | None:
    w = WorkspaceClient(host=plat.workspace.url, token=WORKSPACE_TOKEN)
    cursor = {} if cursor is None else cursor
    for _ in range(200):
        ctx = check.Context(w=w, warehouse_id=WAREHOUSE, tables=tables, model="m", environment="prod", env=env,
                            cursor=cursor, now=now, deadline=time.monotonic() + 5,
                            columns_of=lambda v: [Watched("x", "numeric"), Watched("zone", "categorical")],
                            serving_since=lambda v: float(T0))
        try:
            return check.check_version(ctx, version, explicit)
        except check.Pending:
            time.sleep(0.05)
    raise AssertionError("the check never finished")


def _figure(decision: dict[str, Any], name: str) -> dict[str, Any]:
    return next(f for f in decision["figures"] if f["check"] == name)


@pytest.fixture
def tables(tmp_path):
    return open_tables(f"sqlite:///{tmp_path / 'state.db'}")


def test_the_first_full_window_is_the_baseline_and_a_like_window_is_ok(plat, data, tables):
    env = _env(data["schema"])
    got = _pass(plat, tables, env, now=T0 + 2 * H + 10)
    assert got is not None and got["verdict"] == decide.OK, got
    base = store.baseline(tables, env.endpoint, "2")
    assert base["kind"] == "window" and base["start"] == T0 and base["rows"] == 400
    assert got["window"] == {"start": T0 + H, "end": T0 + 2 * H}
    # Labels were due (5 s after the window's end): the window is complete, rmse measured.
    assert _figure(got, "rmse")["verdict"] == decide.OK and _figure(got, "rmse")["rows"] == 400


def test_a_drifted_window_violates_with_figures_equal_to_scipy_on_that_version_only(plat, data, tables):
    env = _env(data["schema"])
    _pass(plat, tables, env, now=T0 + 2 * H + 10)
    got = _pass(plat, tables, env, now=T0 + 3 * H + 10, cursor={})
    assert got["verdict"] == decide.VIOLATION and got.get("act") is True, got
    t = data["table"]
    ref = t[(t.model_version == "2") & (t.ts < pd.Timestamp(T0 + H, unit="s", tz="UTC"))]
    cur = t[(t.model_version == "2") & (t.ts >= pd.Timestamp(T0 + 2 * H, unit="s", tz="UTC"))
            & (t.ts < pd.Timestamp(T0 + 3 * H, unit="s", tz="UTC"))]
    ks = _figure(got, "ks(prediction)")
    assert ks["rows"] == 400  # version 3's rows in the same window are not counted
    assert ks["value"] == pytest.approx(stats.ks_2samp(ref.prediction, cur.prediction).statistic, abs=1e-12)
    table = pd.crosstab(pd.concat([ref.zone, cur.zone]), np.r_[np.zeros(len(ref)), np.ones(len(cur))])
    assert _figure(got, "chi2(zone)")["value"] == pytest.approx(stats.chi2_contingency(table.T.values)[1], rel=1e-6)
    assert _figure(got, "psi(x)")["verdict"] == decide.VIOLATION


def test_a_second_violation_within_the_cooldown_does_not_act(plat, data, tables):
    env = _env(data["schema"])
    _pass(plat, tables, env, now=T0 + 2 * H + 10)
    first = _pass(plat, tables, env, now=T0 + 3 * H + 10)
    assert first.get("act") is True
    again = _pass(plat, tables, env, now=T0 + 3 * H + 20, explicit=(T0 + 2 * H, T0 + 3 * H))
    assert again["verdict"] == decide.COOLDOWN and not again.get("act")
    assert store.state(tables, env.endpoint)["last_decision"] == first["id"]


def test_a_window_with_too_few_rows_is_insufficient_data(plat, data, tables):
    env = _env(data["schema"])
    _pass(plat, tables, env, now=T0 + 2 * H + 10)
    got = _pass(plat, tables, env, now=T0 + 4 * H + 10)
    assert got["window"]["start"] == T0 + 3 * H
    assert got["verdict"] == decide.INSUFFICIENT_DATA and not got.get("act")
    assert {f["verdict"] for f in got["figures"]} == {decide.INSUFFICIENT}


def test_performance_waits_for_late_labels_and_the_window_is_judged_again(plat, data, tables):
    env = _env(data["schema"], delay="2h")
    got = _pass(plat, tables, env, now=T0 + 2 * H + 10)
    assert _figure(got, "rmse")["verdict"] == decide.PENDING
    assert store.window(tables, env.endpoint, "2", T0 + H)["complete"] is False
    later = _pass(plat, tables, env, now=T0 + 4 * H + 10)
    assert later is not None
    assert store.window(tables, env.endpoint, "2", T0 + H)["complete"] is True


def test_a_missing_table_fails_the_check_with_the_reason(plat, data, tables):
    env = _env(data["schema"].replace("main.mon", "main.gone"))
    with pytest.raises(check.CheckFailed, match="TABLE_OR_VIEW_NOT_FOUND"):
        _pass(plat, tables, env, now=T0 + 2 * H + 10)
    assert store.baseline(tables, env.endpoint, "2") is None


def test_two_checks_of_one_window_at_once_act_once(plat, data, tables):
    """Two workers judge the drifted window at the same moment: one acts."""
    import threading

    env = _env(data["schema"])
    _pass(plat, tables, env, now=T0 + 2 * H + 10)
    got: list[dict[str, Any]] = []
    threads = [threading.Thread(target=lambda: got.append(_pass(plat, tables, env, now=T0 + 3 * H + 10)))
               for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # The slower one finds the window judged already (None), or decides it too and meets the cooldown.
    assert len(got) == 2
    acted = [d for d in got if d and d.get("act")]
    assert len(acted) == 1, got
    assert all(d is None or d is acted[0] or d["verdict"] == decide.COOLDOWN for d in got), got
    assert store.state(tables, env.endpoint)["last_decision"] == acted[0]["id"]


def test_the_figures_of_a_data_quality_monitor_are_judged_after_a_refresh_the_check_waits_for(plat, data, tables):
    """lakehouse_monitor: the check requests a refresh, looks at it again on later passes (Pending),
    then judges the monitor's CONSECUTIVE drift rows of the version's latest ended window."""
    from databricks.sdk.service import dataquality as dq

    w = WorkspaceClient(host=plat.workspace.url, token=WORKSPACE_TOKEN)
    table = f"{data['schema']}.inference"
    table_id = w.tables.get(table).table_id
    schema_id = plat.workspace.data_quality.schema_id(data["schema"])
    hourly = dq.AggregationGranularity.AGGREGATION_GRANULARITY_1_HOUR
    log = dq.InferenceLogConfig(problem_type=dq.InferenceProblemType.INFERENCE_PROBLEM_TYPE_REGRESSION,
                                timestamp_column="ts", granularities=[hourly], prediction_column="prediction",
                                model_id_column="model_version")
    w.data_quality.create_monitor(dq.Monitor(object_type="table", object_id=table_id, data_profiling_config=dq.
                                             DataProfilingConfig(output_schema_id=schema_id, inference_log=log)))
    monitor = f"          lakehouse_monitor: {{table: {table}, drift_type: CONSECUTIVE, refresh: true}}"
    env = _env(data["schema"], extra=monitor, checks="""
          - {metric: js, of: features, threshold: 0.2}
          - {metric: ks, of: prediction, threshold: 0.2}""")
    got = _pass(plat, tables, env, now=T0 + 3 * H + 10)
    assert got is not None and got["window"] == {"start": T0 + 2 * H, "end": T0 + 3 * H}, got
    assert got["verdict"] == decide.VIOLATION, got
    names = {f["check"] for f in got["figures"]}
    assert {"js(x)", "js(zone)", "ks(prediction)"} <= names, names
    assert {f["rows"] for f in got["figures"]} == {400}, got  # version 2's rows only, never version 3's


def test_default_columns_are_the_model_signatures_inputs(plat, tmp_path):
    """Without monitoring.columns: the MLmodel signature of the serving version, read from the
    registry; strings (and columns named categorical in the policy) are categories."""
    import json

    from mlflow import MlflowClient

    from handlers import monitor
    from handlers.deps import Deps
    from local.taxi import train_and_register
    from shared.settings import Settings

    model = f"sig_{uuid.uuid4().hex[:6]}"
    version = train_and_register(plat.mlflow.url, model_name=model, seed=1, n=200)
    policy = {"models": [{"name": model, "environments": {"prod": {
        "endpoint": f"ep-{uuid.uuid4().hex[:6]}", "inference_table": {"catalog": "c", "schema": "s"},
        "monitoring": {"categorical": ["pickup_zone"], "decision": {"action": "alert"},
                       "checks": [{"metric": "psi", "of": "features", "threshold": 0.2}]}}}}]}
    (tmp_path / "policy.json").write_text(json.dumps(policy))
    settings = Settings.from_env({"REACTOR_STORAGE": f"sqlite:///{tmp_path / 's.db'}",
                                  "REACTOR_POLICY_FILE": str(tmp_path / "policy.json"),
                                  "MLFLOW_REGISTRY_URI": plat.mlflow.url})
    deps = Deps(settings, open_tables(settings.storage), None, lambda: None, lambda: MlflowClient(plat.mlflow.url))
    got = monitor._signature_columns(deps, model, {"pickup_zone"})(version)
    assert got == [Watched("trip_distance", "numeric"), Watched("passenger_count", "numeric"),
                   Watched("pickup_hour", "numeric"), Watched("pickup_zone", "categorical"),
                   Watched("dropoff_zone", "numeric")]
    with pytest.raises(check.CheckFailed, match=r"monitoring\.columns"):
        monitor._signature_columns(deps, model, set())("99")


# ---------------------------------------------------------------------------------- binned drift
def _drift_figures(plat, data, tables, mode: str, ks: float, w1: float, exact_below: int = 0) -> dict[str, Any]:
    env = _env(data["schema"], delay=None, drift=f"{{mode: {mode}, exact_below: {exact_below}, cells: 16}}",
               checks=f"""
            - {{metric: ks, of: prediction, threshold: {ks!r}}}
            - {{metric: wasserstein, of: x, threshold: {w1!r}}}""")
    got = _pass(plat, tables, env, now=T0 + 3 * H + 10, explicit=(T0 + 2 * H, T0 + 3 * H))
    assert got is not None
    return {name: _figure(got, name) for name in ("ks(prediction)", "wasserstein(x)")}


def test_binned_figures_state_their_bound_and_every_verdict_is_the_exact_one(plat, data, tables):
    """Thresholds far from the figures, within their binned bound and at the exact value itself:
    binned and auto give the exact mode's verdict every time; a figure the bound leaves open is
    the exact one (no bound), a clear one keeps the binned value and states its bound."""
    exact = _drift_figures(plat, data, tables, "exact", 0.5, 0.5)
    binned = _drift_figures(plat, data, tables, "binned", 10.0, 10.0)
    for name, f in binned.items():
        assert f["bound"] is not None and f["bound"] > 0, f
        assert abs(f["value"] - exact[name]["value"]) <= f["bound"]
        assert exact[name]["bound"] is None
    ks, w1 = exact["ks(prediction)"]["value"], exact["wasserstein(x)"]["value"]
    kb, wb = binned["ks(prediction)"]["bound"], binned["wasserstein(x)"]["bound"]
    cases = [(ks * 0.5, w1 * 0.5), (ks, w1), (ks + kb / 2, w1 - wb / 2), (ks - kb / 3, w1 + wb / 3),
             (ks + 3 * kb, w1 + 3 * wb), (ks * (1 + 1e-12), w1 * (1 - 1e-12))]
    for ks_t, w1_t in cases:
        truth = _drift_figures(plat, data, tables, "exact", ks_t, w1_t)
        for mode in ("binned", "auto"):
            got = _drift_figures(plat, data, tables, mode, ks_t, w1_t)
            for name in got:
                assert got[name]["verdict"] == truth[name]["verdict"], (mode, ks_t, w1_t, name, got, truth)
                if got[name]["bound"] is None:  # recomputed exactly
                    assert got[name]["value"] == truth[name]["value"]
                else:
                    assert not decide.undecided(Check(metric="ks", of="x", threshold=got[name]["threshold"]),
                                                got[name]["value"], got[name]["bound"])
    # auto below exact_below: every figure is exact.
    small = _drift_figures(plat, data, tables, "auto", 10.0, 10.0, exact_below=10**6)
    assert all(f["bound"] is None and f["value"] == exact[n]["value"] for n, f in small.items())


@settings(max_examples=300, deadline=None)
@given(st.floats(0, 2), st.floats(0, 0.5), st.floats(0.01, 2), st.floats(0, 1), st.booleans(), st.booleans(),
       st.floats(-1, 1))
def test_property_a_decided_binned_verdict_is_the_verdict_of_every_value_within_its_bound(
        value, bound, threshold, clear_share, above, was_violating, where):
    check = Check(metric="ks", of="x", threshold=threshold, direction="above" if above else "below",
                  clear=threshold * clear_share if above else threshold + (2 - threshold) * clear_share)
    exact = value + where * bound
    if not decide.undecided(check, value, bound):
        binned = decide.judge(check, value, 1000, 1, was_violating=was_violating)
        truth = decide.judge(check, exact, 1000, 1, was_violating=was_violating)
        assert binned.verdict == truth.verdict


# ---------------------------------------------------------------------------------- payload windows
def _payload_rows(rng: np.random.Generator, entity: str, start: float, n: int, poison: bool = False) -> list[dict]:
    rows = []
    for _ in range(n):
        when = datetime.fromtimestamp(start + float(rng.integers(0, 60)), UTC)
        x = "\"not a number\"" if poison else repr(round(float(rng.normal(10, 2)), 3))
        rows.append({"databricks_request_id": f"req-{uuid.uuid4().hex}", "request_date": when.date(),
                     "client_request_id": f"c-{uuid.uuid4().hex[:8]}", "request_time": when, "status_code": 200,
                     "sampling_fraction": 1.0, "execution_duration_ms": 5,
                     "request": f'{{"dataframe_records": [{{"x": {x}}}]}}',
                     "response": f'{{"predictions": [{round(float(rng.normal(20, 4)), 3)}]}}',
                     "logging_error_codes": [], "served_entity_id": entity, "requester": "test@example.com"})
    return rows


def test_a_payload_window_statement_reads_only_the_window_rows(plat, tables, monkeypatch):
    """Every scan of the payload table in a window's statements (binned and exact drift: ``auto``
    below ``exact_below`` runs both; row count; health) has the window's time bounds (or the
    baseline window's) in the WHERE that reads the table, below the records' LATERAL explode,
    where the warehouse can skip the rest (as the canary analysis, ``shared.delivery.measure``);
    and rows outside those windows whose request cannot be read as a number are never evaluated
    (a statement that did would fail CAST_INVALID_INPUT)."""
    import pyarrow as pa

    from local.workspace.inference_table import AI_GATEWAY, schema
    from shared import statements
    from shared.monitoring.relations import timestamp
    from shared.statements import quote

    sent: list[tuple[str, str]] = []
    real_run = statements.run

    def recording_run(w, warehouse_id, statement, cursor, key, deadline):
        sent.append((key, statement))
        return real_run(w, warehouse_id, statement, cursor, key, deadline)

    monkeypatch.setattr(statements, "run", recording_run)
    rng = np.random.default_rng(5)
    tag = uuid.uuid4().hex[:8]
    endpoint, entity = f"ep-{tag}", f"e-{tag}"
    plat.workspace.inference.record_served_entities([{
        "served_entity_id": entity, "endpoint_name": endpoint, "endpoint_id": f"id-{tag}",
        "served_entity_name": f"m-1-{tag}", "entity_type": "CUSTOM_MODEL", "entity_name": "m", "entity_version": "1",
        "endpoint_config_version": 1, "change_time": datetime.fromtimestamp(T0 - 9 * H, UTC)}])
    plat.workspace.inference.flush()
    rows = (_payload_rows(rng, entity, T0 - 5 * H, 50, poison=True) + _payload_rows(rng, entity, T0, 150)
            + _payload_rows(rng, entity, T0 + H, 150) + _payload_rows(rng, entity, T0 + 2 * H, 50, poison=True))
    plat.workspace.catalog.create_table(f"main.pay{tag}.{endpoint}_payload",
                                        pa.Table.from_pylist(rows, schema=schema(AI_GATEWAY)))
    env = parse_policy(f"""
models:
  - name: m
    environments:
      prod:
        endpoint: {endpoint}
        retraining: {{job_id: 1}}
        inference_table: {{catalog: main, schema: pay{tag}}}
        monitoring:
          window: 1h
          columns: [x]
          decision: {{min_rows: 100}}
          drift: {{mode: auto}}
          checks:
            - {{metric: ks, of: prediction, threshold: 0.5}}
            - {{metric: psi, of: features, threshold: 0.5}}
            - {{metric: p95_latency_ms, threshold: 1000}}
""").models[0].environments["prod"]
    got = _pass(plat, tables, env, now=T0 + 2 * H + 120, version="1", explicit=(T0 + H, T0 + 2 * H))
    assert got is not None and got["verdict"] == decide.OK, got
    assert {f["check"]: f["rows"] for f in got["figures"]} == {
        "ks(prediction)": 150, "psi(x)": 150, "p95_latency_ms": 150}, got
    scans = quote(f"main.pay{tag}.{endpoint}_payload") + " AS p "
    bounded = [f"p.request_time >= {timestamp(a)} AND p.request_time < {timestamp(b)}"
               for a, b in ((T0, T0 + H), (T0 + H, T0 + 2 * H))]
    window = {key.rsplit(":", 1)[1]: text for key, text in sent if key.startswith(f"1:{T0 + H}:")}
    assert set(window) == {"binned", "drift", "agg", "health"}, sent
    for text in window.values():
        assert text.count(scans) == sum(text.count(b) for b in bounded) > 0, text
