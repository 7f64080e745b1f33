"""Drift statistics by SQL pushdown (``shared.drift``) against scipy.

Every statement runs the way the app sends it: ``shared.statements.run`` through the real
databricks-sdk against the local workspace's Statement Execution API (DuckDB over Delta tables),
and the frozen baseline goes through JSON as the app stores it. scipy and numpy compute the same
metrics on the raw values: ``ks_2samp``, ``wasserstein_distance``, ``chi2_contingency``,
``jensenshannon(base=2)``, and PSI by its formula on the same frozen bins.
"""

from __future__ import annotations

import itertools
import json
import math
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from databricks.sdk import WorkspaceClient
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats
from scipy.spatial.distance import jensenshannon

from local.workspace import LocalWorkspace
from shared import statements
from shared.drift import (
    DRIFT_COLUMNS,
    Baseline,
    CategoricalBaseline,
    Column,
    ColumnDrift,
    NumericBaseline,
    baseline_sql,
    drift_metrics,
    drift_sql,
    freeze,
)
from shared.drift.baseline import TOP_CATEGORIES
from shared.drift.binned import BinnedDrift, binned_metrics, binned_sql, grid
from shared.drift.distances import PSI_EPSILON, chi2_contingency, js_distance, psi
from shared.drift.pvalues import chi2_sf, ks_pvalue

TOKEN = "drift-token"
WAREHOUSE = "drift-warehouse"
_ids = itertools.count()


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalWorkspace]:
    root = tmp_path_factory.mktemp("drift")
    with LocalWorkspace(token=TOKEN, registry_uri=f"sqlite:///{root / 'mlflow.db'}", data_dir=root / "ws") as workspace:
        yield workspace


@pytest.fixture(scope="module")
def w(ws: LocalWorkspace) -> WorkspaceClient:
    return WorkspaceClient(host=ws.url, token=TOKEN)


def query(w: WorkspaceClient, statement: str) -> list[list[Any]]:
    """The statement's rows as the app reads them (lists in column order)."""
    cursor: dict[str, Any] = {}
    while True:
        try:
            result = statements.run(w, WAREHOUSE, statement, cursor, "drift", time.monotonic() + 30)
        except statements.StatementPending:
            time.sleep(0.05)  # the test waits; the app polls on its next message
            continue
        return statements.rows(w, result)


class Check:
    """Two windows of one table (``side`` 0 = reference, 1 = current), frozen and compared."""

    def __init__(self, ws: LocalWorkspace, w: WorkspaceClient, columns: Sequence[Column],
                 ref: dict[str, Sequence[Any]], cur: dict[str, Sequence[Any]], top: int = TOP_CATEGORIES):
        self.columns = list(columns)
        self.w = w
        self.ref, self.cur = ref, cur
        table = f"main.drift.t{next(_ids)}"
        data: dict[str, Any] = {"side": pa.array([0] * _rows(ref) + [1] * _rows(cur), pa.int32())}
        for c in columns:
            values = list(ref[c.name]) + list(cur[c.name])
            data[c.name] = pa.array(values, pa.float64() if c.kind == "numeric" else pa.string())
        ws.catalog.create_table(table, pa.table(data))
        self.reference = f"(SELECT * FROM {table} WHERE side = 0)"
        self.current = f"(SELECT * FROM {table} WHERE side = 1)"
        frozen = freeze(query(w, baseline_sql(self.reference, columns, top)), columns)
        self.stored = json.dumps(frozen.to_dict())
        self.baseline = Baseline.from_dict(json.loads(self.stored))
        assert self.baseline == frozen
        self.rows = query(w, drift_sql(self.reference, self.current, columns, self.baseline))
        self.metrics = drift_metrics(self.rows, columns, self.baseline)

    def __getitem__(self, name: str) -> ColumnDrift:
        return self.metrics[name]


def _rows(side: dict[str, Sequence[Any]]) -> int:
    sizes = {len(v) for v in side.values()}
    assert len(sizes) == 1
    return sizes.pop()


# ---------------------------------------------------------------------------------- numpy/scipy side
def finite(values: Sequence[Any]) -> np.ndarray:
    a = np.array([np.nan if v is None else v for v in values], dtype=float)
    return a[np.isfinite(a)]


def bin_counts(values: np.ndarray, edges: Sequence[float]) -> np.ndarray:
    """Right-closed bins (-inf, e0], (e0, e1], ..., (e_last, inf), as the SQL buckets them."""
    return np.bincount(np.searchsorted(np.array(edges), values, side="left"), minlength=len(edges) + 1)


def category_counts(values: Sequence[Any], categories: Sequence[str]) -> np.ndarray:
    index = {c: i for i, c in enumerate(categories)}
    counts = np.zeros(len(categories) + 1, dtype=int)
    for v in values:
        if v is not None:
            counts[index.get(v, len(categories))] += 1
    return counts


def psi_numpy(r: np.ndarray, c: np.ndarray) -> float:
    """The documented rule: drop bins empty on both sides, replace 0 by 1e-4, renormalise."""
    keep = (r > 0) | (c > 0)
    p, q = r[keep] / r.sum(), c[keep] / c.sum()
    p, q = np.where(p > 0, p, PSI_EPSILON), np.where(q > 0, q, PSI_EPSILON)
    p, q = p / p.sum(), q / q.sum()
    return float(np.sum((q - p) * np.log(q / p)))


def close(a: float | None, b: float, rel: float = 1e-9, abs_: float = 1e-12) -> bool:
    return a is not None and math.isclose(a, b, rel_tol=rel, abs_tol=abs_)


def assert_numeric(check: Check, name: str) -> None:
    a, b = finite(check.ref[name]), finite(check.cur[name])
    m = check[name]
    base = check.baseline.columns[name]
    assert isinstance(base, NumericBaseline)
    assert (m.n_ref, m.n_cur) == (len(a), len(b))
    assert (m.nulls_ref, m.nulls_cur) == (len(check.ref[name]) - len(a), len(check.cur[name]) - len(b))
    assert close(base.std, float(np.std(a)))
    assert base.edges == tuple(sorted(set(base.edges)))
    np.testing.assert_allclose(base.edges, np.unique(np.quantile(a, np.arange(1, 10) / 10)), rtol=1e-12, atol=1e-12)
    ks = stats.ks_2samp(a, b)
    assert close(m.ks_d, float(ks.statistic), abs_=1e-12), (m.ks_d, ks.statistic)
    assert close(m.ks_p, float(ks.pvalue), rel=0, abs_=1e-12), (m.ks_p, ks.pvalue)
    w1 = stats.wasserstein_distance(a, b)
    assert close(m.wasserstein, w1), (m.wasserstein, w1)
    assert close(m.wasserstein_norm, w1 / max(float(np.std(a)), 0.001))
    rc, cc = bin_counts(a, base.edges), bin_counts(b, base.edges)
    assert close(m.psi, psi_numpy(rc, cc))
    assert close(m.js, float(jensenshannon(rc, cc, base=2)))
    assert m.chi2 is None and m.chi2_p is None


def assert_categorical(check: Check, name: str) -> tuple[np.ndarray, np.ndarray]:
    m = check[name]
    base = check.baseline.columns[name]
    assert isinstance(base, CategoricalBaseline)
    rc, cc = category_counts(check.ref[name], base.categories), category_counts(check.cur[name], base.categories)
    assert (m.n_ref, m.n_cur) == (rc.sum(), cc.sum())
    assert (m.nulls_ref, m.nulls_cur) == (check.ref[name].count(None), check.cur[name].count(None))
    keep = (rc > 0) | (cc > 0)
    expected = stats.chi2_contingency(np.array([rc[keep], cc[keep]]))
    assert close(m.chi2, float(expected.statistic)), (m.chi2, expected.statistic)
    assert close(m.chi2_p, float(expected.pvalue), abs_=1e-300), (m.chi2_p, expected.pvalue)
    assert close(m.psi, psi_numpy(rc, cc))
    assert close(m.js, float(jensenshannon(rc, cc, base=2)))
    assert m.ks_d is m.ks_p is m.wasserstein is m.wasserstein_norm is None
    return rc, cc


def normal(rng: np.random.Generator, n: int, loc: float = 0.0, scale: float = 1.0) -> list[float]:
    return [float(v) for v in rng.normal(loc, scale, n)]


# ---------------------------------------------------------------------------------- reference vectors
def test_reference_vectors_of_monitoring_md_section_6() -> None:
    assert math.isclose(js_distance([1, 0], [0.5, 0.5]), 0.557923045, abs_tol=1e-9)
    assert math.isclose(js_distance([1, 0], [0.5, 0.5]) * math.sqrt(math.log(2)), 0.464501404, abs_tol=1e-9)
    assert js_distance([1, 0, 0], [0, 1, 0]) == 1.0
    p, q = [0.1, 0.2, 0.3, 0.4], [0.15, 0.25, 0.25, 0.35]
    assert math.isclose(js_distance(p, q) ** 2, 0.0084839, abs_tol=1e-7)
    assert math.isclose(psi(p, q), 0.0472231, abs_tol=1e-7)
    stat, pvalue, dof = chi2_contingency([10, 20], [20, 10])  # Yates for dof 1, as scipy's default
    assert (math.isclose(stat, 5.4, rel_tol=1e-12), dof) == (True, 1)
    assert math.isclose(pvalue, stats.chi2_contingency([[10, 20], [20, 10]]).pvalue, rel_tol=1e-12)


# ---------------------------------------------------------------------------------- calibration
ZONES = 30  # local.taxi.N_ZONES: make_trips draws each trip's dropoff zone uniformly from 30


def _zone_counts(zones: np.ndarray) -> list[int]:
    return np.bincount(zones, minlength=ZONES).tolist()


def _false_alarms(ref_rows: Sequence[int], alpha: float, *, repeat: int = 1, runs: int = 3000) -> float:
    """Share of p < alpha for chi2(zone) of a baseline window against an independent 200-row
    window, both of the same uniform law (no drift); the baseline is ``ref_rows`` trips, each
    ``repeat`` times (seeded: the same number every run)."""
    rng = np.random.default_rng(20261208)
    alarms = 0
    for i in range(runs):
        ref = np.repeat(rng.integers(0, ZONES, ref_rows[i % len(ref_rows)]), repeat)
        cur = rng.integers(0, ZONES, 200)
        alarms += chi2_contingency(_zone_counts(ref), _zone_counts(cur))[1] < alpha
    return alarms / runs


def test_chi2_false_alarm_rate_of_independent_windows_stays_near_alpha() -> None:
    # The demo's windows: 30 zones, 200 rows judged against baselines of 150 to 1500 rows, so
    # many cells hold about 5 expected counts. The asymptotic test stays at (or a little under)
    # alpha there: 3000 runs put about 3 standard deviations inside each band.
    sizes = (150, 200, 400, 800, 1500)
    assert 0.035 <= _false_alarms(sizes, 0.05) <= 0.062
    assert 0.004 <= _false_alarms(sizes, 0.01) <= 0.016


def test_chi2_alarms_far_above_alpha_when_the_baseline_repeats_its_trips() -> None:
    # Why the demo's background callers never send a trip twice (local.taxi.trip_stream): a
    # window of 500 trips sent three times is no sample of 1500 trips, and the test, which
    # assumes independent rows, takes its chance deviations for evidence.
    assert _false_alarms((500,), 0.05, repeat=3, runs=1000) > 0.15


def test_psi_zero_rule_zero_in_reference_and_zero_in_current() -> None:
    ref, cur = np.array([50, 50, 0, 0]), np.array([40, 0, 60, 0])  # bin 2 empty in ref, bin 1 in cur, bin 3 in both
    assert math.isclose(psi(ref, cur), psi_numpy(ref, cur), rel_tol=1e-12)
    # The rule by hand: bin 3 dropped; 0 -> 1e-4, each side renormalised.
    r = np.array([0.5, 0.5, PSI_EPSILON]) / (1 + PSI_EPSILON)
    c = np.array([0.4, PSI_EPSILON, 0.6]) / (1 + PSI_EPSILON)
    assert math.isclose(psi(ref, cur), float(np.sum((c - r) * np.log(c / r))), rel_tol=1e-12)
    assert math.isclose(psi(ref, cur), psi(cur, ref), rel_tol=1e-12)  # symmetric
    assert psi([5, 5], [5, 5]) == 0.0
    assert math.isfinite(psi([1, 0], [0, 1]))


# ---------------------------------------------------------------------------------- numeric columns
def test_shifted_mean_and_changed_scale_match_scipy(ws: LocalWorkspace, w: WorkspaceClient) -> None:
    rng = np.random.default_rng(1)
    cols = [Column("same", "numeric"), Column("shifted", "numeric"), Column("scaled", "numeric")]
    ref = {"same": normal(rng, 3000), "shifted": normal(rng, 3000), "scaled": normal(rng, 3000, 5.0, 2.0)}
    cur = {"same": normal(rng, 2000), "shifted": normal(rng, 2000, 0.3), "scaled": normal(rng, 2000, 5.0, 3.0)}
    check = Check(ws, w, cols, ref, cur)
    for c in cols:
        assert_numeric(check, c.name)
    assert check["same"].ks_p > 0.01 and check["shifted"].ks_p < 1e-6
    assert check["same"].psi < 0.02 < 0.1 < check["shifted"].psi
    assert check["scaled"].wasserstein_norm > 0.2 > check["same"].wasserstein_norm


def test_ties_nulls_nans_and_infinities(ws: LocalWorkspace, w: WorkspaceClient) -> None:
    rng = np.random.default_rng(2)
    specials = [None, float("nan"), float("inf"), float("-inf")]

    def tied(n: int, loc: float) -> list[float | None]:
        values: list[float | None] = [round(float(v), 1) for v in rng.normal(loc, 1.0, n)]  # ~60 distinct values
        for i in rng.choice(n, 40, replace=False):
            values[i] = specials[i % 4]
        return values

    cols = [Column("x", "numeric"), Column("k", "numeric")]
    ref = {"x": tied(1500, 0.0), "k": [float(v) for v in rng.integers(0, 4, 1500)]}
    cur = {"x": tied(1200, 0.1), "k": [float(v) for v in rng.integers(0, 5, 1200)]}
    check = Check(ws, w, cols, ref, cur)
    assert_numeric(check, "x")
    assert_numeric(check, "k")
    assert (check["x"].nulls_ref, check["x"].nulls_cur) == (40, 40)
    # Four distinct reference values: the deciles collapse to at most four edges.
    k = check.baseline.columns["k"]
    assert isinstance(k, NumericBaseline) and len(k.edges) <= 4


def test_values_beyond_the_reference_fall_in_the_open_end_bins(ws: LocalWorkspace, w: WorkspaceClient) -> None:
    # Reference: five 0s and five 10s; deciles 0,0,0,0,5,10,10,10,10 -> edges (0, 5, 10): (0, 5] and
    # (10, inf) are empty in the reference. Current values land in both: PSI's zero-in-reference case.
    ref = {"x": [0.0] * 5 + [10.0] * 5}
    cur = {"x": [0.0, 10.0, 3.0, 5.0, 11.0, 1e9]}
    check = Check(ws, w, [Column("x", "numeric")], ref, cur)
    base = check.baseline.columns["x"]
    assert isinstance(base, NumericBaseline) and base.edges == (0.0, 5.0, 10.0)
    assert bin_counts(finite(cur["x"]), base.edges).tolist() == [1, 2, 1, 2]  # 5.0 is in (0, 5]: right-closed
    assert_numeric(check, "x")
    # Zero in the current: every current value in one reference bin.
    check = Check(ws, w, [Column("x", "numeric")], ref, {"x": [0.0, 0.0, 0.0]})
    assert_numeric(check, "x")
    assert check["x"].psi is not None and math.isfinite(check["x"].psi)


# ---------------------------------------------------------------------------------- categorical columns
def test_new_categories_and_nulls_match_chi2_contingency(ws: LocalWorkspace, w: WorkspaceClient) -> None:
    rng = np.random.default_rng(3)

    def draw(n: int, values: list[str | None], p: list[float]) -> list[str | None]:
        return [values[i] for i in rng.choice(len(values), n, p=p)]

    cols = [Column("zone", "categorical"), Column("same", "categorical")]
    ref = {"zone": draw(2000, ["a", "b", "c", None], [0.5, 0.3, 0.19, 0.01]),
           "same": draw(2000, ["x", "y", "z"], [0.2, 0.3, 0.5])}
    cur = {"zone": draw(1500, ["a", "b", "new1", "new2", None], [0.4, 0.3, 0.1, 0.15, 0.05]),
           "same": draw(1500, ["x", "y", "z"], [0.2, 0.3, 0.5])}
    check = Check(ws, w, cols, ref, cur)
    rc, cc = assert_categorical(check, "zone")
    assert_categorical(check, "same")
    zone = check.baseline.columns["zone"]
    assert isinstance(zone, CategoricalBaseline) and zone.categories == ("a", "b", "c")
    # "c" vanished (zero in the current); the two new values share the "other" bucket (zero in the reference).
    assert (rc[2], cc[2]) != (0, 0) and cc[2] == 0 and rc[3] == 0 and cc[3] == cur["zone"].count("new1") + \
        cur["zone"].count("new2")
    assert check["zone"].chi2_p < 1e-10 < 0.05 < check["same"].chi2_p


def test_binary_column_uses_yates_and_rare_values_pool_into_other(ws: LocalWorkspace, w: WorkspaceClient) -> None:
    rng = np.random.default_rng(4)
    flag = [Column("flag", "categorical")]
    check = Check(ws, w, flag, {"flag": list(rng.choice(["yes", "no"], 80))},
                  {"flag": list(rng.choice(["yes", "no"], 60))})
    assert_categorical(check, "flag")  # dof 1: chi2_contingency's default Yates correction
    # More distinct values than the top kept: the most frequent are frozen, the rest pooled.
    values = ["a"] * 9 + ["b"] * 8 + ["c"] * 7 + ["d"] * 2 + ["e"]
    cols = [Column("v", "categorical")]
    table_check = Check(ws, w, cols, {"v": values}, {"v": ["a", "d", "e", "f"] * 3}, top=3)
    base = table_check.baseline.columns["v"]
    assert isinstance(base, CategoricalBaseline)
    assert (base.categories, base.other, base.n) == (("a", "b", "c"), 3, 27)
    assert_categorical(table_check, "v")


def test_baseline_stays_small(ws: LocalWorkspace, w: WorkspaceClient) -> None:
    rng = np.random.default_rng(5)
    long_values = [f"{'v' * 300}{i}" for i in range(200)]  # 200 distinct 300-character categories per column
    cols = [Column(f"n{i}", "numeric") for i in range(6)] + [Column(f"c{i}", "categorical") for i in range(4)]
    ref: dict[str, list[Any]] = {f"n{i}": normal(rng, 1000) for i in range(6)}
    ref |= {f"c{i}": list(rng.choice(long_values, 1000)) for i in range(4)}
    cur = {k: v[:100] for k, v in ref.items()}
    check = Check(ws, w, cols, ref, cur)
    assert len(check.stored.encode()) < 40 * 1024
    for i in range(4):
        base = check.baseline.columns[f"c{i}"]
        assert isinstance(base, CategoricalBaseline) and 0 < len(base.categories) <= 50
        assert_categorical(check, f"c{i}")


# ---------------------------------------------------------------------------------- empty and tiny windows
def test_empty_or_all_null_windows_give_none_not_errors(ws: LocalWorkspace, w: WorkspaceClient) -> None:
    cols = [Column("x", "numeric"), Column("c", "categorical")]
    some = {"x": [1.0, 2.0, 3.0], "c": ["a", "b", "a"]}
    empty: dict[str, list[Any]] = {"x": [], "c": []}
    nulls = {"x": [None, float("nan")], "c": [None, None]}
    for ref, cur in ((some, empty), (empty, some), (empty, empty), (some, nulls)):
        check = Check(ws, w, cols, ref, cur)
        for c in cols:
            m = check[c.name]
            assert (m.n_ref, m.n_cur) == (len(finite(ref["x"])), len(finite(cur["x"])))
            values = [m.psi, m.js, m.ks_d, m.ks_p, m.wasserstein, m.wasserstein_norm, m.chi2, m.chi2_p]
            assert values == [None] * 8
    assert check["x"].nulls_cur == 2 and check["c"].nulls_cur == 2
    empty_base = Check(ws, w, cols, empty, some).baseline.columns["x"]
    assert isinstance(empty_base, NumericBaseline) and (empty_base.edges, empty_base.std) == ((), None)


def test_tiny_windows_match_scipy(ws: LocalWorkspace, w: WorkspaceClient) -> None:
    cols = [Column("x", "numeric"), Column("c", "categorical")]
    for ref, cur in (({"x": [1.0], "c": ["a"]}, {"x": [2.0], "c": ["b"]}),
                     ({"x": [1.0, 1.0], "c": ["a", "a"]}, {"x": [1.0], "c": ["a"]}),
                     ({"x": [0.5, 2.0, 2.0], "c": ["a", "b", "b"]}, {"x": [2.0, 7.0], "c": ["b", "a"]})):
        check = Check(ws, w, cols, ref, cur)
        assert_numeric(check, "x")
        assert_categorical(check, "c")


def test_rows_keyed_by_column_name_give_the_same_metrics(ws: LocalWorkspace, w: WorkspaceClient) -> None:
    rng = np.random.default_rng(6)
    cols = [Column("x", "numeric"), Column("c", "categorical")]
    check = Check(ws, w, cols, {"x": normal(rng, 50), "c": list(rng.choice(["a", "b"], 50))},
                  {"x": normal(rng, 40, 1.0), "c": list(rng.choice(["a", "b", "c"], 40))})
    keyed = [dict(zip(DRIFT_COLUMNS, row, strict=True)) for row in check.rows]
    assert drift_metrics(keyed, cols, check.baseline) == check.metrics
    assert len(check.rows) <= (10 + 1) + (3 + 1 + 1)  # bins + missing, categories + other + missing


# Only D is compared here; scipy's exact p sometimes gives up on these samples and warns.
@pytest.mark.filterwarnings("ignore:ks_2samp. Exact calculation unsuccessful:RuntimeWarning")
@settings(max_examples=25, deadline=None)
@given(st.lists(st.one_of(st.integers(-3, 3).map(float), st.floats(-50, 50)), min_size=1, max_size=40),
       st.lists(st.one_of(st.integers(-3, 3).map(float), st.floats(-50, 50)), min_size=1, max_size=40))
def test_property_sql_ks_and_w1_equal_scipy(ws: LocalWorkspace, w: WorkspaceClient, a: list[float],
                                            b: list[float]) -> None:
    check = Check(ws, w, [Column("x", "numeric")], {"x": a}, {"x": b})
    m = check["x"]
    assert m.ks_d is not None and math.isclose(m.ks_d, stats.ks_2samp(a, b).statistic, rel_tol=1e-9, abs_tol=1e-9)
    assert m.wasserstein is not None
    assert math.isclose(m.wasserstein, stats.wasserstein_distance(a, b), rel_tol=1e-9, abs_tol=1e-9)


# ---------------------------------------------------------------------------------- p-values
def test_ks_pvalue_matches_scipy_exact_and_asymptotic() -> None:
    rng = np.random.default_rng(7)
    sizes = [(1, 1), (1, 5), (7, 3), (40, 40), (100, 250), (300, 700), (999, 1000), (10000, 10000)]
    for n, m in sizes:
        for shift in (0.0, 0.05, 0.1, 0.3, 1.0):
            r = stats.ks_2samp(rng.normal(0, 1, n), rng.normal(shift, 1, m))
            p = ks_pvalue(float(r.statistic), n, m)
            assert abs(p - r.pvalue) <= 1e-12, (n, m, shift, p, r.pvalue)
    # Too costly to be exact here in pure Python (scipy still is): the asymptotic form, within 3e-3.
    for n, m in ((4999, 5000), (2000, 9000), (9999, 10000)):
        for shift in (0.0, 0.02, 0.04):
            r = stats.ks_2samp(rng.normal(0, 1, n), rng.normal(shift, 1, m))
            assert abs(ks_pvalue(float(r.statistic), n, m) - r.pvalue) <= 3e-3
    # Above 10 000 scipy is asymptotic, kstwo.sf(D, round(n*m/(n+m))): within 0.03/N absolute.
    for effective in (10, 50, 1000, 5000):
        for lam in np.linspace(0.3, 4.0, 25):
            d = float(lam / math.sqrt(effective))
            m = 20_000
            n = round(effective * m / (m - effective))
            assert round(n * m / (n + m)) == effective
            assert abs(ks_pvalue(d, n, m) - stats.kstwo.sf(d, effective)) <= 0.03 / effective
    assert ks_pvalue(0.0, 10, 10) == 1.0


def test_chi2_survival_matches_scipy() -> None:
    for dof in (1, 2, 3, 5, 10, 49, 100):
        for x in (*np.linspace(0.01, 4 * dof + 40, 60), 1e-6, 1000.0):
            expected = float(stats.chi2.sf(x, dof))
            assert math.isclose(chi2_sf(float(x), dof), expected, rel_tol=1e-11, abs_tol=1e-300), (dof, x)


def test_the_package_needs_no_numpy_scipy_or_pandas() -> None:
    code = ("import sys, shared.drift; heavy = {'numpy', 'scipy', 'pandas', 'pyarrow'} & "
            "{m.split('.')[0] for m in sys.modules}; assert not heavy, heavy")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[1])


# ---------------------------------------------------------------------------------- binned mode
def binned(check: Check, cells: int) -> dict[str, ColumnDrift]:
    return binned_metrics(query(check.w, binned_sql(check.reference, check.current, check.columns, check.baseline,
                                                    cells)), check.columns, check.baseline)


def assert_within_bounds(check: Check, got: dict[str, ColumnDrift]) -> None:
    """Binned figures: KS D and W1 within their stated bounds of scipy's exact values; PSI, JS,
    counts and the categorical figures exactly the exact mode's."""
    for c in check.columns:
        m, e = got[c.name], check[c.name]
        if c.kind == "categorical" or e.ks_d is None:
            assert m == e
            continue
        assert isinstance(m, BinnedDrift)
        a, b = finite(check.ref[c.name]), finite(check.cur[c.name])
        d, w1 = float(stats.ks_2samp(a, b).statistic), float(stats.wasserstein_distance(a, b))
        assert m.ks_bound is not None and abs(m.ks_d - d) <= m.ks_bound + 1e-12, (m.ks_d, m.ks_bound, d)
        assert m.wasserstein_bound is not None
        assert abs(m.wasserstein - w1) <= m.wasserstein_bound + 1e-9 * (1 + w1), (m.wasserstein, w1)
        assert (m.psi, m.js, m.n_ref, m.n_cur, m.nulls_ref, m.nulls_cur) == (e.psi, e.js, e.n_ref, e.n_cur,
                                                                             e.nulls_ref, e.nulls_cur)


@settings(max_examples=25, deadline=None)
@given(st.lists(st.one_of(st.integers(-3, 3).map(float), st.floats(-50, 50), st.floats(-1e6, 1e6)), min_size=1,
                max_size=80),
       st.lists(st.one_of(st.integers(-3, 3).map(float), st.floats(-50, 50), st.floats(-1e6, 1e6)), min_size=1,
                max_size=80),
       st.sampled_from([4, 16, 1000]))
def test_property_binned_ks_and_w1_lie_within_their_bounds_of_scipy(ws: LocalWorkspace, w: WorkspaceClient,
                                                                     a: list[float], b: list[float],
                                                                     cells: int) -> None:
    check = Check(ws, w, [Column("x", "numeric")], {"x": a}, {"x": b})
    assert_within_bounds(check, binned(check, cells))


def test_binned_on_drifted_ties_nulls_and_categories_within_bounds_in_one_grouped_scan(
        ws: LocalWorkspace, w: WorkspaceClient) -> None:
    rng = np.random.default_rng(4)
    cols = [Column("x", "numeric"), Column("t", "numeric"), Column("z", "categorical")]
    ref = {"x": [float(v) for v in rng.lognormal(1, 0.6, 3000)], "t": [float(v) for v in rng.integers(0, 5, 3000)],
           "z": [str(v) for v in rng.choice(["a", "b", "c"], 3000)]}
    cur = {"x": [float(v) for v in rng.lognormal(1.1, 0.7, 2500)] + [None, math.nan, math.inf] * 5,
           "t": [float(v) for v in rng.integers(1, 7, 2515)], "z": [str(v) for v in rng.choice(["a", "d"], 2515)]}
    check = Check(ws, w, cols, ref, cur)
    for cells in (8, 1000):
        got = binned(check, cells)
        assert_within_bounds(check, got)
    assert got["t"].ks_bound == 0 and got["t"].wasserstein_bound < 1e-9  # one value per group: exact
    statement = binned_sql(check.reference, check.current, cols, check.baseline)
    assert "ORDER BY" not in statement.upper() and " OVER " not in statement.upper()  # no sort, no window


def _groups_in_python(a: list[float], b: list[float], base: NumericBaseline, cells: int) -> list[dict[str, Any]]:
    """``binned_sql``'s rows for one column, grouped here instead of in the warehouse (the cell
    by the grid's formula, the decile by the right-closed edges)."""
    g = grid(base, cells)
    groups: dict[tuple[int, int], dict[str, Any]] = {}
    for side, values in ((1, a), (0, b)):
        for x in values:
            if g is None:
                cell = 0
            elif x < g.lo:
                cell = -1
            elif x > g.hi:
                cell = cells
            elif g.per_t == 0:
                cell = 0
            else:
                cell = min(cells - 1, max(0, math.floor((math.asinh((x - g.centre) * g.scale) - g.t_lo) * g.per_t)))
            decile = int(np.searchsorted(np.array(base.edges), x, side="left"))
            row = groups.setdefault((cell, decile), {"column_name": "x", "part": "bin", "key": None, "ref_value": 0,
                                                      "cur_value": 0, "cell": cell, "decile": decile,
                                                      "ref_sum": 0.0, "cur_sum": 0.0, "lo": x, "hi": x})
            row["ref_value" if side else "cur_value"] += 1
            row["ref_sum" if side else "cur_sum"] += x
            row["lo"], row["hi"] = min(row["lo"], x), max(row["hi"], x)
    return list(groups.values())


_values = st.lists(st.one_of(st.integers(-3, 3).map(float), st.floats(-50, 50), st.floats(-1e6, 1e6),
                             st.floats(0, 1e-3)), min_size=1, max_size=300)


@pytest.mark.filterwarnings("ignore:ks_2samp. Exact calculation unsuccessful:RuntimeWarning")
@settings(max_examples=300, deadline=None)
@given(_values, _values, st.sampled_from([4, 16, 1000]))
def test_property_binned_bounds_hold_on_many_samples(a: list[float], b: list[float], cells: int) -> None:
    """The bounds alone, on many more samples than the warehouse test: the groups are made in
    Python the way the statement makes them, the baseline from numpy's deciles."""
    qs = np.quantile(np.array(a), np.arange(1, 10) / 10)
    base = NumericBaseline(tuple(sorted({float(q) for q in qs})), float(np.std(a)), len(a), 0, min(a), max(a))
    m = binned_metrics(_groups_in_python(a, b, base, cells), [Column("x", "numeric")], Baseline({"x": base}))["x"]
    assert isinstance(m, BinnedDrift) and m.ks_bound is not None and m.wasserstein_bound is not None
    d, w1 = float(stats.ks_2samp(a, b).statistic), float(stats.wasserstein_distance(a, b))
    assert abs(m.ks_d - d) <= m.ks_bound + 1e-12
    assert abs(m.wasserstein - w1) <= m.wasserstein_bound + 1e-9 * (1 + w1)
    # KS D's bound: at most half the largest group's mass (the smaller of its two sides').
    assert m.ks_bound <= 0.5 * max(min(r["ref_value"] / len(a), r["cur_value"] / len(b))
                                   for r in _groups_in_python(a, b, base, cells)) + 1e-12
