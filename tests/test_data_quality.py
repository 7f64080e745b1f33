"""Data quality monitoring (data profiling) of the local workspace, and the app's reader of it,
through the real databricks-sdk over HTTP (Databricks, "Monitor metric tables",
https://docs.databricks.com/aws/en/lakehouse-monitoring/monitor-output).

An InferenceLog table with two daily windows and two model versions, and a baseline table;
the monitor's initial refresh computes the metric tables, which are read back with SQL (the
Statement Execution API) and checked against scipy on the same rows, and through
``shared.monitoring.lakehouse``. Tests poll refreshes with ``get_refresh``; the app never waits.
"""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd
import pytest
from databricks.sdk import WorkspaceClient
from databricks.sdk.errors import InvalidParameterValue, NotFound, ResourceAlreadyExists, ResourceDoesNotExist
from databricks.sdk.service import dataquality as dq
from scipy import stats
from scipy.spatial.distance import jensenshannon

from local.stack import WORKSPACE_TOKEN
from local.workspace import LocalWorkspace
from shared import statements
from shared.monitoring import lakehouse
from tests.sql_results import WAREHOUSE

DAY1 = pd.Timestamp("2026-11-30", tz="UTC")
DAY2 = pd.Timestamp("2026-12-01", tz="UTC")
ONE_DAY = dq.AggregationGranularity.AGGREGATION_GRANULARITY_1_DAY
REGRESSION = dq.InferenceProblemType.INFERENCE_PROBLEM_TYPE_REGRESSION
CLASSIFICATION = dq.InferenceProblemType.INFERENCE_PROBLEM_TYPE_CLASSIFICATION
ENDED = ("SUCCESS", "FAILED", "CANCELED")


# ---------------------------------------------------------------------------------- data and helpers
def inference_rows(rng: np.random.Generator) -> pd.DataFrame:
    """Per (day, version) a different number of rows; version 2 drifts on day 2 (x shifted, zone 'd' new)."""
    parts = []
    for day, version, n, shift in ((DAY1, "1", 120, 0.0), (DAY1, "2", 80, 0.0), (DAY2, "1", 150, 0.0),
                                   (DAY2, "2", 90, 0.9)):
        x = rng.normal(shift, 1.0 + shift / 2, n)
        zones = ["a", "b", "c", "d"] if shift else ["a", "b", "c"]
        probs = [0.2, 0.2, 0.2, 0.4] if shift else [0.5, 0.3, 0.2]
        prediction = 3.0 + 2.0 * x + rng.normal(0, 0.3, n)
        parts.append(pd.DataFrame({
            "ts": day + pd.to_timedelta(rng.integers(0, 86_400, n), unit="s"),
            "model_version": version,
            "x": x,
            "zone": rng.choice(zones, n, p=probs),
            "passengers": rng.integers(1, 5, n),
            "prediction": prediction,
            "label": prediction + rng.normal(0, 1.0 + shift, n),
        }))
    df = pd.concat(parts, ignore_index=True)
    df.loc[[3, 130, 250], "x"] = None  # NULLs are counted and left out of the distributions
    return df


def baseline_rows(rng: np.random.Generator) -> pd.DataFrame:
    n = 200
    frames = []
    for version in ("1", "2"):
        x = rng.normal(0.0, 1.0, n)
        frames.append(pd.DataFrame({
            "ts": DAY1 - pd.Timedelta(days=7) + pd.to_timedelta(rng.integers(0, 86_400, n), unit="s"),
            "model_version": version, "x": x, "zone": rng.choice(["a", "b", "c"], n, p=[0.5, 0.3, 0.2]),
            "passengers": rng.integers(1, 5, n), "prediction": 3.0 + 2.0 * x, "label": 3.0 + 2.0 * x,
        }))
    return pd.concat(frames, ignore_index=True)


def unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


def wait_refresh(w: WorkspaceClient, table_id: str, refresh_id: int, timeout: float = 60.0) -> dq.Refresh:
    deadline = time.monotonic() + timeout
    while True:
        refresh = w.data_quality.get_refresh("table", table_id, refresh_id)
        if refresh.state and refresh.state.value.removeprefix("MONITOR_REFRESH_STATE_") in ENDED:
            return refresh
        if time.monotonic() > deadline:
            raise AssertionError(f"refresh {refresh_id} still {refresh.state} after {timeout} s")
        time.sleep(0.1)


def sql(w: WorkspaceClient, statement: str) -> list[dict[str, Any]]:
    """Typed rows of a statement, through the app's Statement Execution client (waiting is the test's)."""
    cursor: dict[str, Any] = {}
    deadline = time.monotonic() + 60
    while True:
        try:
            result = statements.run(w, WAREHOUSE, statement, cursor, "q", time.monotonic() + 30)
            break
        except statements.StatementPending:
            assert time.monotonic() < deadline, statement
            time.sleep(0.1)
    names = [n for n, _ in result.columns]
    return [dict(zip(names, row, strict=True)) for row in statements.rows(w, result)]


def inference_config(output_schema_id: str, problem: dq.InferenceProblemType = REGRESSION,
                     baseline: str | None = None) -> dq.DataProfilingConfig:
    return dq.DataProfilingConfig(
        output_schema_id=output_schema_id, baseline_table_name=baseline,
        inference_log=dq.InferenceLogConfig(problem_type=problem, timestamp_column="ts", granularities=[ONE_DAY],
                                            prediction_column="prediction", model_id_column="model_version",
                                            label_column="label"))


def create_monitor(w: WorkspaceClient, table_id: str, config: dq.DataProfilingConfig) -> dq.Monitor:
    return w.data_quality.create_monitor(dq.Monitor(object_type="table", object_id=table_id,
                                                    data_profiling_config=config))


def initial_refresh(w: WorkspaceClient, table_id: str) -> dq.Refresh:
    refreshes = list(w.data_quality.list_refresh("table", table_id))
    assert len(refreshes) == 1, "creating a monitor queues one refresh"
    return wait_refresh(w, table_id, refreshes[0].refresh_id)


# ---------------------------------------------------------------------------------- scipy on the same rows
def bins(ref: np.ndarray, cur: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Counts per bin: the reference's deciles, deduplicated, open ends, right-closed (the documented bins)."""
    edges = np.unique(np.quantile(ref, np.arange(1, 10) / 10))
    cuts = [-np.inf, *edges, np.inf]
    count = lambda v: pd.cut(pd.Series(v), cuts, right=True).value_counts(sort=False).to_numpy()  # noqa: E731
    return count(ref), count(cur)


def categories(ref: pd.Series, cur: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Counts over the reference's categories plus one bucket for values it never saw."""
    known = sorted(ref.unique())
    r = [int((ref == k).sum()) for k in known] + [0]
    c = [int((cur == k).sum()) for k in known] + [int((~cur.isin(known)).sum())]
    return np.array(r), np.array(c)


def psi(r_counts: np.ndarray, c_counts: np.ndarray) -> float:
    r, c = r_counts / r_counts.sum(), c_counts / c_counts.sum()
    r, c = np.where(r == 0, 1e-4, r), np.where(c == 0, 1e-4, c)
    return float(np.sum((c - r) * np.log(c / r)))


# ---------------------------------------------------------------------------------- fixtures
@dataclass
class Monitored:
    ws: LocalWorkspace
    w: WorkspaceClient
    table: str
    table_id: str
    baseline: str
    rows: pd.DataFrame
    base: pd.DataFrame
    monitor: dq.Monitor
    refresh: dq.Refresh

    def drift_rows(self, where: str) -> list[dict[str, Any]]:
        drift = self.monitor.data_profiling_config.drift_metrics_table_name
        return sql(self.w, f"SELECT `column_name`, `drift_type`, `js_distance`, `ks_test`.`statistic` AS ks, "
                           "`ks_test`.`pvalue` AS ks_p, `wasserstein_distance` AS w1, "
                           "`population_stability_index` AS psi, `chi_squared_test`.`statistic` AS chi2, "
                           "`chi_squared_test`.`pvalue` AS chi2_p, `tv_distance` AS tv, "
                           f"`window_cmp`.`start` AS cmp_start FROM {statements.quote(drift)} WHERE {where}")


@pytest.fixture(scope="module")
def w(plat) -> WorkspaceClient:
    return WorkspaceClient(host=plat.workspace.url, token=WORKSPACE_TOKEN)


@pytest.fixture(scope="module")
def output_schema() -> str:
    return f"main.{unique('dq_out')}"


@pytest.fixture(scope="module")
def output_schema_id(plat, output_schema: str) -> str:
    return plat.workspace.data_quality.schema_id(output_schema)


@pytest.fixture(scope="module")
def monitored(plat, w: WorkspaceClient, output_schema_id: str) -> Iterator[Monitored]:
    ws = plat.workspace
    rng = np.random.default_rng(8)
    schema = unique("dq")
    table, baseline = f"main.{schema}.taxi_inference", f"main.{schema}.taxi_baseline"
    rows, base = inference_rows(rng), baseline_rows(rng)
    ws.catalog.create_table(table, rows)
    ws.catalog.create_table(baseline, base)
    table_id = w.tables.get(table).table_id
    monitor = create_monitor(w, table_id, inference_config(output_schema_id, baseline=baseline))
    refresh = initial_refresh(w, table_id)
    yield Monitored(ws, w, table, table_id, baseline, rows, base, monitor, refresh)


# ---------------------------------------------------------------------------------- monitors and refreshes
def test_creating_a_monitor_names_the_metric_tables_and_refreshes_once(monitored: Monitored,
                                                                       output_schema: str) -> None:
    m = monitored
    cfg = m.monitor.data_profiling_config
    out = output_schema
    assert m.monitor.object_id == m.table_id
    assert cfg.monitored_table_name == m.table
    assert cfg.profile_metrics_table_name == f"{out}.taxi_inference_profile_metrics"
    assert cfg.drift_metrics_table_name == f"{out}.taxi_inference_drift_metrics"
    assert cfg.monitor_version == 1 and cfg.status == dq.DataProfilingStatus.DATA_PROFILING_STATUS_PENDING
    assert m.refresh.state == dq.RefreshState.MONITOR_REFRESH_STATE_SUCCESS, m.refresh.message
    assert m.refresh.trigger == dq.RefreshTrigger.MONITOR_REFRESH_TRIGGER_MANUAL
    assert m.refresh.end_time_ms >= m.refresh.start_time_ms
    after = m.w.data_quality.get_monitor("table", m.table_id).data_profiling_config
    assert after.status == dq.DataProfilingStatus.DATA_PROFILING_STATUS_ACTIVE
    assert after.inference_log.model_id_column == "model_version" and after.baseline_table_name == m.baseline
    assert m.table_id in {x.object_id for x in m.w.data_quality.list_monitor()}


def test_metric_tables_have_the_documented_columns(monitored: Monitored) -> None:
    m = monitored
    cfg = m.monitor.data_profiling_config
    drift = {c.name: c.type_text for c in m.w.tables.get(cfg.drift_metrics_table_name).columns}
    profile = {c.name: c.type_text for c in m.w.tables.get(cfg.profile_metrics_table_name).columns}
    window = "struct<start:timestamp,end:timestamp>"
    test = "struct<statistic:double,pvalue:double>"
    assert drift["window"] == window and drift["window_cmp"] == window
    assert drift["ks_test"] == test and drift["chi_squared_test"] == test
    assert drift["non_null_columns_delta"] == "struct<added:int,missing:int>"
    for name in ("granularity", "model_version", "slice_key", "slice_value", "column_name", "data_type",
                 "drift_type"):
        assert drift[name] == "string", name
    for name in ("count_delta", "avg_delta", "percent_null_delta", "percent_zeros_delta", "percent_distinct_delta",
                 "js_distance", "wasserstein_distance", "population_stability_index", "tv_distance",
                 "l_infinity_distance"):
        assert drift[name] == "double", name
    assert drift["monitor_version"] == "bigint"
    assert profile["window"] == window and profile["quantiles"] == "array<double>"
    assert profile["frequent_items"] == "array<struct<item:string,count:bigint>>"
    for name in ("log_type", "granularity", "model_version", "slice_key", "slice_value", "column_name", "data_type"):
        assert profile[name] == "string", name
    for name in ("count", "num_nulls", "num_zeros", "num_nan", "distinct_count", "logging_table_commit_version",
                 "monitor_version"):
        assert profile[name] == "bigint", name
    for name in ("avg", "min", "max", "stddev", "median", "percent_null", "percent_distinct", "mean_squared_error",
                 "root_mean_squared_error", "mean_absolute_error", "r2_score"):
        assert profile[name] == "double", name
    assert "accuracy_score" not in profile, "a regression monitor has no classification metrics"


def test_profile_rows_count_each_window_version_and_column(monitored: Monitored) -> None:
    m = monitored
    profile = statements.quote(m.monitor.data_profiling_config.profile_metrics_table_name)
    rows = sql(m.w, f"SELECT `window`.`start` AS start, `window`.`end` AS stop, `model_version` AS v, `log_type`, "
                    f"`granularity`, `column_name`, `count` AS n, `num_nulls`, `avg`, `slice_key`, "
                    f"`root_mean_squared_error` AS rmse FROM {profile}")
    inputs = [r for r in rows if r["log_type"] == "INPUT"]
    assert {r["granularity"] for r in inputs} == {"1 day"} and all(r["slice_key"] is None for r in rows)
    assert {(r["start"], r["stop"]) for r in inputs} == {("2026-11-30T00:00:00.000Z", "2026-12-01T00:00:00.000Z"),
                                                          ("2026-12-01T00:00:00.000Z", "2026-12-02T00:00:00.000Z")}
    assert {r["v"] for r in inputs} == {"1", "2", "*"}
    assert {r["column_name"] for r in inputs} == {":table", "x", "zone", "passengers", "prediction", "label"}
    df = m.rows
    for (start, version), part in df.groupby([df.ts.dt.floor("D"), "model_version"]):
        stamp = start.strftime("%Y-%m-%dT%H:%M:%S.000Z")
        got = {r["column_name"]: r for r in inputs if r["start"] == stamp and r["v"] == version}
        assert got[":table"]["n"] == len(part) and got["x"]["n"] == len(part)
        assert got["x"]["num_nulls"] == int(part.x.isna().sum())
        assert got["x"]["avg"] == pytest.approx(part.x.mean())
        assert got[":table"]["rmse"] == pytest.approx(math.sqrt(((part.prediction - part.label) ** 2).mean()))
    everyone = {r["start"]: r["n"] for r in inputs if r["v"] == "*" and r["column_name"] == ":table"}
    assert sorted(everyone.values()) == sorted(df.groupby(df.ts.dt.floor("D")).size().tolist())
    baseline = {r["v"]: r["n"] for r in rows if r["log_type"] == "BASELINE" and r["column_name"] == ":table"}
    assert baseline == {"*": 400, "1": 200, "2": 200}
    assert all(r["start"] is None and r["granularity"] is None for r in rows if r["log_type"] == "BASELINE")


def test_drift_in_the_table_equals_scipy_on_the_same_rows(monitored: Monitored) -> None:
    m = monitored
    df, base = m.rows, m.base
    cur = df[(df.ts >= DAY2) & (df.model_version == "2")]
    prev = df[(df.ts < DAY2) & (df.model_version == "2")]
    ref = base[base.model_version == "2"]
    where = "`model_version` = '2' AND `window`.`start` = TIMESTAMP '2026-12-01 00:00:00' AND `slice_key` IS NULL"
    got = {(r["drift_type"], r["column_name"]): r for r in m.drift_rows(where)}
    for drift_type, reference in (("BASELINE", ref), ("CONSECUTIVE", prev)):
        x = got[(drift_type, "x")]
        r_x, c_x = reference.x.dropna().to_numpy(), cur.x.dropna().to_numpy()
        ks = stats.ks_2samp(c_x, r_x)
        assert x["ks"] == pytest.approx(ks.statistic, rel=1e-12) and x["ks_p"] == pytest.approx(ks.pvalue, rel=1e-9)
        assert x["w1"] == pytest.approx(stats.wasserstein_distance(c_x, r_x), rel=1e-12)
        r_bins, c_bins = bins(r_x, c_x)
        assert x["js_distance"] == pytest.approx(jensenshannon(r_bins, c_bins, base=2), rel=1e-12)
        assert x["psi"] == pytest.approx(psi(r_bins, c_bins), rel=1e-12)
        assert x["chi2"] is None
        zone = got[(drift_type, "zone")]
        r_cat, c_cat = categories(reference.zone, cur.zone)
        table = np.vstack([r_cat, c_cat])
        chi = stats.chi2_contingency(table[:, table.sum(axis=0) > 0])
        assert zone["chi2"] == pytest.approx(chi.statistic, rel=1e-12)
        assert zone["chi2_p"] == pytest.approx(chi.pvalue, rel=1e-9)
        assert zone["js_distance"] == pytest.approx(jensenshannon(r_cat, c_cat, base=2), rel=1e-12)
        assert zone["tv"] == pytest.approx(0.5 * np.abs(r_cat / r_cat.sum() - c_cat / c_cat.sum()).sum(), rel=1e-12)
        assert zone["ks"] is None
    assert got[("CONSECUTIVE", "x")]["cmp_start"] == "2026-11-30T00:00:00.000Z"
    assert got[("BASELINE", "x")]["cmp_start"] is None
    shifted, steady = got[("BASELINE", "x")], m.drift_rows(
        "`model_version` = '1' AND `drift_type` = 'BASELINE' AND `column_name` = 'x' "
        "AND `window`.`start` = TIMESTAMP '2026-12-01 00:00:00'")[0]
    assert shifted["ks"] > steady["ks"] and shifted["js_distance"] > steady["js_distance"]
    first = m.drift_rows("`drift_type` = 'CONSECUTIVE' AND `window`.`start` = TIMESTAMP '2026-11-30 00:00:00'")
    assert first == [], "the first window has no previous window to drift from"


# ---------------------------------------------------------------------------------- the app's reader
def test_read_windows_returns_each_versions_windows_and_never_mixes_versions(monitored: Monitored) -> None:
    m = monitored
    df = m.rows
    cursor: dict[str, Any] = {}
    deadline = time.monotonic() + 30
    profile, drift, model_column, monitor = lakehouse.monitor_tables(m.w, m.table)
    assert (profile, drift) == (m.monitor.data_profiling_config.profile_metrics_table_name,
                                m.monitor.data_profiling_config.drift_metrics_table_name)
    assert model_column == "model_version" and monitor.object_id == m.table_id
    for version in ("1", "2"):
        windows = lakehouse.read_windows(m.w, WAREHOUSE, m.table, model_id=version, drift_type="BASELINE",
                                         since=None, cursor=cursor, deadline=deadline)
        assert [(x.start, x.end) for x in windows] == [
            (datetime(2026, 11, 30, tzinfo=UTC), datetime(2026, 12, 1, tzinfo=UTC)),
            (datetime(2026, 12, 1, tzinfo=UTC), datetime(2026, 12, 2, tzinfo=UTC))]
        mine = df[df.model_version == version]
        for window, day in zip(windows, (DAY1, DAY2), strict=True):
            part = mine[(mine.ts >= day) & (mine.ts < day + pd.Timedelta(days=1))]
            assert window.counts[":table"] == len(part) and window.counts["zone"] == len(part)
            assert set(window.drift) == {"x", "zone", "passengers", "prediction", "label"}
            expected = stats.ks_2samp(part.x.dropna(), m.base[m.base.model_version == version].x)
            assert window.drift["x"]["ks_statistic"] == pytest.approx(expected.statistic, rel=1e-12)
            assert window.drift["zone"]["chi_squared_statistic"] is not None
            assert window.drift["zone"]["ks_statistic"] is None
            assert window.quality["root_mean_squared_error"] == pytest.approx(
                math.sqrt(((part.prediction - part.label) ** 2).mean()))
            assert window.quality["r2_score"] is not None and window.quality["accuracy_score"] is None
            assert set(window.drift["x"]) == {"js_distance", "ks_statistic", "ks_pvalue", "wasserstein_distance",
                                              "population_stability_index", "chi_squared_statistic",
                                              "chi_squared_pvalue", "tv_distance"}
    assert cursor == {}, "a finished statement leaves nothing in the cursor"
    consecutive = lakehouse.read_windows(m.w, WAREHOUSE, m.table, model_id="2", drift_type="CONSECUTIVE",
                                         since=None, cursor=cursor, deadline=deadline)
    assert [bool(x.drift) for x in consecutive] == [False, True]
    later = lakehouse.read_windows(m.w, WAREHOUSE, m.table, model_id="2", drift_type="CONSECUTIVE",
                                   since=datetime(2026, 12, 1, tzinfo=UTC), cursor=cursor, deadline=deadline)
    assert [x.start for x in later] == [datetime(2026, 12, 1, tzinfo=UTC)]
    assert later[0].drift == consecutive[1].drift
    assert lakehouse.read_windows(m.w, WAREHOUSE, m.table, model_id="3", drift_type="BASELINE", since=None,
                                  cursor=cursor, deadline=deadline) == []
    with pytest.raises(ValueError, match="'\\*'"):
        lakehouse.read_windows(m.w, WAREHOUSE, m.table, model_id="*", drift_type="BASELINE", since=None,
                               cursor=cursor, deadline=deadline)


def test_a_pending_statement_propagates_with_its_id_in_the_cursor(monitored: Monitored) -> None:
    m = monitored
    cursor: dict[str, Any] = {}
    m.ws.faults.statement_pending_seconds = 1.0
    try:
        with pytest.raises(statements.StatementPending) as pending:
            lakehouse.read_windows(m.w, WAREHOUSE, m.table, model_id="1", drift_type="BASELINE", since=None,
                                   cursor=cursor, deadline=time.monotonic())  # no time left: asynchronous mode
    finally:
        m.ws.faults.statement_pending_seconds = 0.0
    assert cursor["statements"] == {pending.value.key: pending.value.statement_id}
    deadline = time.monotonic() + 30
    while True:  # a later message polls the same statement
        try:
            windows = lakehouse.read_windows(m.w, WAREHOUSE, m.table, model_id="1", drift_type="BASELINE",
                                             since=None, cursor=cursor, deadline=time.monotonic())
            break
        except statements.StatementPending as again:
            assert again.statement_id == pending.value.statement_id and time.monotonic() < deadline
            time.sleep(0.1)
    assert len(windows) == 2 and cursor == {}


def test_classification_quality_on_the_table_rows(plat, w: WorkspaceClient, output_schema: str,
                                                 output_schema_id: str) -> None:
    ws = plat.workspace
    rng = np.random.default_rng(3)
    n = 160
    label = rng.choice(["cash", "card", "none"], n, p=[0.5, 0.4, 0.1])
    prediction = np.where(rng.random(n) < 0.7, label, rng.choice(["cash", "card", "none"], n))
    df = pd.DataFrame({"ts": DAY1 + pd.to_timedelta(rng.integers(0, 86_400, n), unit="s"), "model_version": "7",
                       "fare": rng.gamma(2.0, 5.0, n), "prediction": prediction, "label": label})
    table = f"main.{unique('dq')}.payments"
    ws.catalog.create_table(table, df)
    table_id = w.tables.get(table).table_id
    create_monitor(w, table_id, inference_config(output_schema_id, CLASSIFICATION))
    assert initial_refresh(w, table_id).state == dq.RefreshState.MONITOR_REFRESH_STATE_SUCCESS
    [window] = lakehouse.read_windows(w, WAREHOUSE, table, model_id="7", drift_type="CONSECUTIVE", since=None,
                                      cursor={}, deadline=time.monotonic() + 30)
    classes = sorted(set(label) | set(prediction))
    per_class = []
    for k in classes:
        tp = int(((prediction == k) & (label == k)).sum())
        precision = tp / max(int((prediction == k).sum()), 1)
        recall = tp / max(int((label == k).sum()), 1)
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_class.append((precision, recall, f1, int((label == k).sum())))
    macro = np.mean(per_class, axis=0)
    weights = np.array([c[3] for c in per_class]) / n
    assert window.quality["accuracy_score"] == pytest.approx(float((prediction == label).mean()))
    assert window.quality["precision"] == pytest.approx(macro[0])
    assert window.quality["recall"] == pytest.approx(macro[1])
    assert window.quality["f1_score"] == pytest.approx(macro[2])
    assert window.quality["root_mean_squared_error"] is None and window.drift == {}
    profile = statements.quote(f"{output_schema}.payments_profile_metrics")
    [row] = sql(w, f"SELECT `precision`.`weighted` AS p, `f1_score`.`weighted` AS f1 FROM {profile} "
                   "WHERE `column_name` = ':table' AND `model_version` = '7' AND `log_type` = 'INPUT'")
    assert row["p"] == pytest.approx(float(np.dot(weights, [c[0] for c in per_class])))
    assert row["f1"] == pytest.approx(float(np.dot(weights, [c[2] for c in per_class])))
    categorical = sql(w, f"SELECT `data_type`, `distinct_count` FROM {profile} WHERE `column_name` = 'prediction' "
                         "AND `model_version` = '7'")
    assert categorical == [{"data_type": "string", "distinct_count": len(set(prediction))}]


def test_request_refresh_queues_behind_the_running_one_and_reports_its_state(monitored: Monitored) -> None:
    m = monitored
    first = lakehouse.request_refresh(m.w, m.table)
    second = lakehouse.request_refresh(m.w, m.table)
    assert second > first > m.refresh.refresh_id
    assert lakehouse.refresh_state(m.w, m.table, first) in ("PENDING", "RUNNING", "SUCCESS")
    listed = [r.refresh_id for r in m.w.data_quality.list_refresh("table", m.table_id)]
    assert listed[:3] == [second, first, m.refresh.refresh_id], "newest first"
    done = wait_refresh(m.w, m.table_id, second)
    assert done.state == dq.RefreshState.MONITOR_REFRESH_STATE_SUCCESS
    assert lakehouse.refresh_state(m.w, m.table, first) == "SUCCESS"
    assert wait_refresh(m.w, m.table_id, first).end_time_ms <= done.end_time_ms, "one at a time, in order"


def test_missing_monitors_tables_and_refreshes_raise_as_the_sdk_does(monitored: Monitored,
                                                                     output_schema_id: str) -> None:
    m = monitored
    plain = f"main.{unique('dq')}.unmonitored"
    m.ws.catalog.create_table(plain, m.rows.head(10))
    plain_id = m.w.tables.get(plain).table_id
    with pytest.raises(ResourceDoesNotExist):
        lakehouse.request_refresh(m.w, plain)
    with pytest.raises(ResourceDoesNotExist):
        lakehouse.monitor_tables(m.w, plain)
    with pytest.raises(NotFound):
        lakehouse.request_refresh(m.w, f"main.{unique('dq')}.missing")
    with pytest.raises(ResourceDoesNotExist):
        m.w.data_quality.get_refresh("table", m.table_id, 987654)
    with pytest.raises(ResourceDoesNotExist):
        create_monitor(m.w, str(uuid.uuid4()), inference_config(output_schema_id))
    with pytest.raises(ResourceAlreadyExists):
        create_monitor(m.w, m.table_id, inference_config(output_schema_id))
    with pytest.raises(ResourceDoesNotExist):
        create_monitor(m.w, plain_id, inference_config(str(uuid.uuid4())))
    bad = inference_config(output_schema_id)
    bad.inference_log.prediction_column = "no_such_column"
    with pytest.raises(InvalidParameterValue, match="no_such_column"):
        create_monitor(m.w, plain_id, bad)
    with pytest.raises(InvalidParameterValue):
        m.w.data_quality.update_monitor("table", m.table_id, m.monitor, update_mask="data_profiling_config.status")


def test_a_refresh_of_a_dropped_table_ends_failed(plat, w: WorkspaceClient, output_schema_id: str) -> None:
    ws = plat.workspace
    table = f"main.{unique('dq')}.dropped"
    ws.catalog.create_table(table, inference_rows(np.random.default_rng(1)))
    table_id = w.tables.get(table).table_id
    create_monitor(w, table_id, inference_config(output_schema_id))
    assert initial_refresh(w, table_id).state == dq.RefreshState.MONITOR_REFRESH_STATE_SUCCESS
    ws.catalog.drop_table(table)
    refresh = w.data_quality.create_refresh("table", table_id, dq.Refresh(object_type="table", object_id=table_id))
    done = wait_refresh(w, table_id, refresh.refresh_id)
    assert done.state == dq.RefreshState.MONITOR_REFRESH_STATE_FAILED
    assert "does not exist" in done.message
    config = w.data_quality.get_monitor("table", table_id).data_profiling_config
    assert config.latest_monitor_failure_message == done.message
    assert config.status == dq.DataProfilingStatus.DATA_PROFILING_STATUS_ACTIVE, "an earlier refresh succeeded"
    assert w.tables.exists(config.drift_metrics_table_name).table_exists, "the last metric tables are kept"


def test_update_cancel_and_delete(plat, w: WorkspaceClient, output_schema_id: str) -> None:
    ws = plat.workspace
    table = f"main.{unique('dq')}.updated"
    ws.catalog.create_table(table, inference_rows(np.random.default_rng(2)))
    table_id = w.tables.get(table).table_id
    monitor = create_monitor(w, table_id, inference_config(output_schema_id))
    initial_refresh(w, table_id)
    monitor.data_profiling_config.inference_log.granularities = [
        dq.AggregationGranularity.AGGREGATION_GRANULARITY_1_HOUR, ONE_DAY]
    updated = w.data_quality.update_monitor("table", table_id, monitor,
                                            update_mask="data_profiling_config.inference_log.granularities")
    assert updated.data_profiling_config.monitor_version == 2
    assert updated.data_profiling_config.inference_log.granularities[0].value.endswith("1_HOUR")
    ws.data_quality.refresh_pending_seconds = 2.0
    try:
        queued = w.data_quality.create_refresh("table", table_id, dq.Refresh(object_type="table", object_id=table_id))
        assert queued.state == dq.RefreshState.MONITOR_REFRESH_STATE_PENDING
        canceled = w.data_quality.cancel_refresh("table", table_id, queued.refresh_id).refresh
        assert canceled.state == dq.RefreshState.MONITOR_REFRESH_STATE_CANCELED
    finally:
        ws.data_quality.refresh_pending_seconds = 0.0
    refresh = w.data_quality.create_refresh("table", table_id, dq.Refresh(object_type="table", object_id=table_id))
    assert wait_refresh(w, table_id, refresh.refresh_id).state == dq.RefreshState.MONITOR_REFRESH_STATE_SUCCESS
    profile = statements.quote(updated.data_profiling_config.profile_metrics_table_name)
    grains = sql(w, f"SELECT DISTINCT `granularity`, `monitor_version` FROM {profile} WHERE `log_type` = 'INPUT'")
    assert sorted((g["granularity"], g["monitor_version"]) for g in grains) == [("1 day", 2), ("1 hour", 2)]
    w.data_quality.delete_monitor("table", table_id)
    with pytest.raises(ResourceDoesNotExist):
        w.data_quality.get_monitor("table", table_id)
    assert w.tables.exists(updated.data_profiling_config.profile_metrics_table_name).table_exists
