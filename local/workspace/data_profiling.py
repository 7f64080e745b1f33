"""What a data profiling refresh computes: the ``_profile_metrics`` and ``_drift_metrics`` tables.

Follows Databricks, "Monitor metric tables"
(https://docs.databricks.com/aws/en/lakehouse-monitoring/monitor-output) for an
InferenceLog monitor, computed with pandas, numpy and scipy on the table's rows. This is
deliberately not SQL: the app computes its own drift statistics with SQL aggregates
(``shared/drift``), so the two implementations of one definition check each other.

Rows. Every statistic is computed per window, per granularity and per model id, for the
whole table only (``slice_key`` and ``slice_value`` NULL; ``slicing_exprs`` are refused at
create). Each model id gets its rows, and ``'*'`` holds the rows of every model id together, as
mlops-stacks' ``model_id != '*'`` filter shows [3P]. The model-id column is named as the
monitor's ``model_id_column`` and holds the id as a string [INF: the source type is not kept].
Rows whose timestamp is NULL are in no window; rows whose model id is NULL count for ``'*'``
only [INF].

Windows [INF: the docs only say "based on the granularities and the timestamp column"]: fixed
granularities (5 and 30 minutes, 1 hour, 1 day, 1 to 4 weeks) are windows of that length aligned
to the Unix epoch, as Spark's ``window()`` aligns them (so weeks start on Thursday 00:00 UTC);
``1 month`` and ``1 year`` are calendar months and years in UTC. A window is ``[start, end)``.
``granularity`` holds the granularity as text: ``"5 minutes"``, ``"1 hour"``, ``"2 weeks"``...

Columns. Every column but the timestamp and model-id columns is profiled. Integer, floating and
decimal columns are numeric; the others (strings, booleans...) categorical, compared as strings
(Arrow's cast: ``true``/``false``, ``1``). For classification the prediction and label columns
are categorical whatever their type [INF]. NULLs are counted (``num_nulls``) and left out of
every distribution; NaN is counted (``num_nan``) and left out too.

Profile metrics, ``log_type`` ``INPUT`` for the monitored table and ``BASELINE`` (window
and granularity NULL) for the baseline table [3P]. Choices [INF unless said]:
``count`` counts the rows, NULLs included; ``percent_null``/``percent_nan``/``percent_zeros``
are percentages (0-100) of ``count``, ``percent_distinct`` of the non-null values;
``stddev`` is the sample standard deviation (Spark's ``stddev``), NULL below two values;
``quantiles`` are exact (linear interpolation, as ``percentile_cont``) at QUANTILES, and
``median`` is the 0.5 quantile; ``min``/``max``/``avg`` are for numeric columns only;
``min_length``/``max_length``/``avg_length`` for string columns only; ``frequent_items`` the
TOP_ITEMS most frequent values of a categorical column (count descending, then value);
``data_type`` is the column's Spark type text (``double``, ``string``); ``':table'`` rows carry
``count`` and ``non_null_columns`` (the profiled columns with at least one non-null value).

Model quality on ``':table'`` rows, over the rows where prediction and label are both
present; NULL when there are none or no ``label_column``. Classification: ``accuracy_score`` and
``precision``/``recall``/``f1_score`` as structs ``{macro, weighted}`` [3P: ``.weighted`` and
``.macro`` seen in real queries] over the union of label and predicted classes, a class with no
predictions (or no labels) scoring 0 (scikit-learn's ``zero_division=0``) [INF]. Regression:
``mean_squared_error``, ``root_mean_squared_error``, ``mean_absolute_error`` [INF: the docs'
spelling may be ``mean_average_error``, unverified] and ``r2_score`` (NULL when the
labels are constant). Only the columns of the monitor's problem type exist.

Drift metrics. ``CONSECUTIVE`` compares a window with the window just before it (its end
is this window's start), same granularity and model id, and exists only when that window has
rows [INF: "the previous time window", read as the adjacent one]; ``window_cmp`` is that window.
``BASELINE`` compares a window with the baseline table (``window_cmp`` NULL): for a model id,
with the baseline's rows of that model id when the baseline has the model-id column and such
rows, otherwise with the whole baseline; for ``'*'`` with the whole baseline [INF].
``count_delta``, ``avg_delta`` and the ``percent_*_delta`` are this window's value minus the
compared one's; ``':table'`` rows carry ``count_delta`` and ``non_null_columns_delta {added,
missing}``. How Databricks computes its distances is undocumented [gap]; here, with the earlier
window (CONSECUTIVE) or the baseline (BASELINE) as the reference ``r`` and this window as ``c``:

- numeric: ``ks_test {statistic, pvalue}`` = ``scipy.stats.ks_2samp`` (two-sided, ``method=
  'auto'``: exact p below 10 000 values); ``wasserstein_distance`` = ``scipy.stats.
  wasserstein_distance`` on the raw values (not normalized). Bins for the other distances are
  the reference's deciles (linear interpolation), deduplicated, with open ends: ``(-inf, e1],
  (e1, e2], ..., (ek, +inf)`` (right-closed, as DuckDB's ``histogram`` and ``x <= edge``).
- categorical: the reference's categories, with the values of ``c`` it never saw in one extra
  bucket; ``chi_squared_test {statistic, pvalue}`` = ``scipy.stats.chi2_contingency`` on the 2 x k
  table of counts (buckets empty on both sides dropped; Yates' correction when dof is 1, scipy's
  default; statistic 0 and p-value 1 when one bucket is left).
- both, over the bin or category proportions ``r_i``, ``c_i``: ``js_distance`` =
  ``scipy.spatial.distance.jensenshannon(r, c, base=2)`` (range [0, 1]);
  ``population_stability_index`` = sum (c_i - r_i) ln(c_i / r_i) with a zero proportion replaced
  by PSI_FLOOR on either side and no renormalization (Evidently's rule); ``tv_distance`` =
  ½ sum |c_i - r_i|; ``l_infinity_distance`` = max |c_i - r_i|.
- a side with no values: every distance NULL. The drift table has ``ks_test`` for numeric and
  ``chi_squared_test`` for categorical columns, and dbdemos offers JS, TV and L-inf for
  categorical ones [3P]; which kinds get JS, PSI, TV and L-inf on Databricks is not documented
  [gap], so here they are filled for both kinds, and each can be cross-checked.

Each refresh recomputes every window from the table's current snapshot and replaces both
tables [INF: Databricks recomputes incrementally; the content is the same].
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from scipy import stats
from scipy.spatial.distance import jensenshannon

from .catalog import _delta_type_text

TABLE = ":table"
ALL_MODELS = "*"
INPUT, BASELINE = "INPUT", "BASELINE"
CONSECUTIVE = "CONSECUTIVE"
CLASSIFICATION = "INFERENCE_PROBLEM_TYPE_CLASSIFICATION"
REGRESSION = "INFERENCE_PROBLEM_TYPE_REGRESSION"
QUANTILES = (0.0, 0.01, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 1.0)
DECILES = tuple(i / 10 for i in range(1, 10))
PSI_FLOOR = 1e-4
TOP_ITEMS = 10
_PREFIX = "AGGREGATION_GRANULARITY_"

_TS = pa.timestamp("us", "UTC")
_WINDOW = pa.struct([("start", _TS), ("end", _TS)])
_TEST = pa.struct([("statistic", pa.float64()), ("pvalue", pa.float64())])
_AVERAGES = pa.struct([("macro", pa.float64()), ("weighted", pa.float64())])
_ITEMS = pa.list_(pa.struct([("item", pa.string()), ("count", pa.int64())]))
_D = pa.float64()


class Cancelled(Exception):
    """The refresh was canceled (or the workspace is stopping) while it ran."""


@dataclass(frozen=True)
class InferenceLog:
    """The monitor's ``data_profiling_config.inference_log`` (enum values as on the wire)."""

    problem_type: str
    timestamp_column: str
    granularities: tuple[str, ...]
    prediction_column: str
    model_id_column: str
    label_column: str | None = None

    @property
    def classification(self) -> bool:
        return self.problem_type == CLASSIFICATION


def granularity_text(value: str) -> str:
    """``AGGREGATION_GRANULARITY_2_WEEKS`` -> ``"2 weeks"``, the text of the ``granularity`` column."""
    n, unit = value.removeprefix(_PREFIX).split("_", 1)
    return f"{int(n)} {unit.lower()}"


def _step(value: str) -> pd.Timedelta | pd.DateOffset:
    n, unit = granularity_text(value).split(" ")
    k = int(n)
    unit = unit.rstrip("s")
    if unit == "month":
        return pd.DateOffset(months=k)
    if unit == "year":
        return pd.DateOffset(years=k)
    return pd.Timedelta(**{{"minute": "minutes", "hour": "hours", "day": "days", "week": "weeks"}[unit]: k})


def _window_starts(ts: pd.Series, value: str) -> pd.Series:
    step = _step(value)
    if isinstance(step, pd.Timedelta):
        return ts.dt.floor(step)
    period = "M" if granularity_text(value).endswith(("month", "months")) else "Y"
    return ts.dt.tz_localize(None).dt.to_period(period).dt.start_time.dt.tz_localize("UTC").astype(ts.dtype)


# ---------------------------------------------------------------------------------- columns
@dataclass
class Column:
    """One column of a table, ready for statistics: NULL mask, and floats (numeric) or strings."""

    name: str
    data_type: str
    numeric: bool
    null: np.ndarray
    values: np.ndarray  # float64 (NaN where NULL) or object (None where NULL)
    string: bool = False

    @staticmethod
    def of(table: pa.Table, name: str, numeric: bool, data_type: str) -> Column:
        col = table.column(name)
        null = col.is_null().to_numpy(zero_copy_only=False)
        if numeric:
            values = pc.fill_null(pc.cast(col, pa.float64()), float("nan")).to_numpy(zero_copy_only=False)
        else:
            values = pc.cast(col, pa.string()).to_numpy(zero_copy_only=False)
        return Column(name, data_type, numeric, np.asarray(null, dtype=bool), values, data_type == "string")

    def present(self, idx: np.ndarray) -> np.ndarray:
        """The non-NULL, non-NaN values of the rows ``idx``."""
        v = self.values[idx][~self.null[idx]]
        return v[~np.isnan(v)] if self.numeric else v


def _is_numeric(t: pa.DataType) -> bool:
    return pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t)


def profiled_columns(schema: pa.Schema, spec: InferenceLog) -> list[tuple[str, bool, str]]:
    """(name, numeric, Spark type text) of every profiled column of the monitored table."""
    out = []
    for f in schema:
        if f.name in (spec.timestamp_column, spec.model_id_column):
            continue
        numeric = _is_numeric(f.type)
        if spec.classification and f.name in (spec.prediction_column, spec.label_column):
            numeric = False
        out.append((f.name, numeric, _delta_type_text(f.type)))
    return out


# ---------------------------------------------------------------------------------- profile metrics
def column_profile(col: Column, idx: np.ndarray) -> dict[str, Any]:
    n = len(idx)
    nulls = int(col.null[idx].sum())
    row: dict[str, Any] = {"count": n, "num_nulls": nulls, "data_type": col.data_type}
    non_null = n - nulls
    if col.numeric:
        raw = col.values[idx][~col.null[idx]]
        nan = int(np.isnan(raw).sum())
        x = raw[~np.isnan(raw)]
        row["num_nan"] = nan
        row["num_zeros"] = int((x == 0).sum())
        distinct = len(np.unique(x))
        if len(x):
            q = np.quantile(x, QUANTILES)
            row.update(avg=float(x.mean()), min=float(x.min()), max=float(x.max()),
                       stddev=float(x.std(ddof=1)) if len(x) > 1 else None,
                       quantiles=[float(v) for v in q], median=float(np.quantile(x, 0.5)))
        row["percent_nan"] = _percent(nan, n)
        row["percent_zeros"] = _percent(row["num_zeros"], n)
    else:
        s = col.values[idx][~col.null[idx]]
        counts = Counter(s.tolist())
        distinct = len(counts)
        row["frequent_items"] = [{"item": k, "count": c}
                                 for k, c in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:TOP_ITEMS]]
        if col.string and len(s):
            lengths = np.array([len(v) for v in s.tolist()])
            row.update(min_length=int(lengths.min()), max_length=int(lengths.max()), avg_length=float(lengths.mean()))
    row["distinct_count"] = distinct
    row["percent_null"] = _percent(nulls, n)
    row["percent_distinct"] = _percent(distinct, non_null)
    return row


def _percent(part: int, whole: int) -> float | None:
    return 100.0 * part / whole if whole else None


def quality(spec: InferenceLog, pred: Column, label: Column | None, idx: np.ndarray) -> dict[str, Any]:
    """Model-quality metrics of the rows ``idx`` (``':table'`` rows)."""
    names = (("accuracy_score", "precision", "recall", "f1_score") if spec.classification else
             ("mean_squared_error", "root_mean_squared_error", "mean_absolute_error", "r2_score"))
    empty: dict[str, Any] = dict.fromkeys(names)
    if label is None:
        return empty
    ok = ~pred.null[idx] & ~label.null[idx]
    sel = idx[ok]
    y, yhat = label.values[sel], pred.values[sel]
    if not spec.classification:
        keep = ~np.isnan(y) & ~np.isnan(yhat)
        y, yhat = y[keep], yhat[keep]
    if not len(y):
        return empty
    if spec.classification:
        from sklearn.metrics import precision_recall_fscore_support

        labels = sorted(set(y.tolist()) | set(yhat.tolist()))
        out: dict[str, Any] = {"accuracy_score": float(np.mean(y == yhat))}
        scores = {avg: precision_recall_fscore_support(y, yhat, labels=labels, average=avg, zero_division=0)[:3]
                  for avg in ("macro", "weighted")}
        for i, name in enumerate(("precision", "recall", "f1_score")):
            out[name] = {avg: float(scores[avg][i]) for avg in ("macro", "weighted")}
        return out
    err = yhat - y
    mse = float(np.mean(err ** 2))
    ss_tot = float(np.sum((y - y.mean()) ** 2))
    return {"mean_squared_error": mse, "root_mean_squared_error": math.sqrt(mse),
            "mean_absolute_error": float(np.mean(np.abs(err))),
            "r2_score": 1.0 - float(np.sum(err ** 2)) / ss_tot if ss_tot > 0 else None}


# ---------------------------------------------------------------------------------- drift metrics
def numeric_drift(ref: np.ndarray, cur: np.ndarray) -> dict[str, Any]:
    """KS, Wasserstein-1 and the binned distances of two samples of floats (module docstring)."""
    if not len(ref) or not len(cur):
        return {}
    ks = stats.ks_2samp(cur, ref)
    edges = np.unique(np.quantile(ref, DECILES))
    bins = len(edges) + 1
    r = np.bincount(np.searchsorted(edges, ref, side="left"), minlength=bins)
    c = np.bincount(np.searchsorted(edges, cur, side="left"), minlength=bins)
    return {"ks_test": {"statistic": float(ks.statistic), "pvalue": float(ks.pvalue)},
            "wasserstein_distance": float(stats.wasserstein_distance(cur, ref)), **distances(r, c)}


def categorical_drift(ref: Iterable[str], cur: Iterable[str]) -> dict[str, Any]:
    """Chi-square and the distances over the reference's categories plus one bucket for the unseen."""
    ref_counts, cur_counts = Counter(ref), Counter(cur)
    if not ref_counts or not cur_counts:
        return {}
    categories = sorted(ref_counts)
    r = np.array([ref_counts[k] for k in categories] + [0])
    c = np.array([cur_counts[k] for k in categories] + [sum(v for k, v in cur_counts.items() if k not in ref_counts)])
    table = np.vstack([r, c])
    table = table[:, table.sum(axis=0) > 0]
    chi = stats.chi2_contingency(table)
    return {"chi_squared_test": {"statistic": float(chi.statistic), "pvalue": float(chi.pvalue)}, **distances(r, c)}


def distances(ref_counts: np.ndarray, cur_counts: np.ndarray) -> dict[str, float]:
    """JS (base 2), PSI (zero proportions floored), TV and L-infinity between two count vectors."""
    r = ref_counts / ref_counts.sum()
    c = cur_counts / cur_counts.sum()
    rf, cf = np.where(r == 0, PSI_FLOOR, r), np.where(c == 0, PSI_FLOOR, c)
    diff = np.abs(c - r)
    return {"js_distance": float(jensenshannon(r, c, base=2)),
            "population_stability_index": float(np.sum((cf - rf) * np.log(cf / rf))),
            "tv_distance": float(0.5 * diff.sum()), "l_infinity_distance": float(diff.max())}


def _delta(cur: Any, ref: Any) -> float | None:
    return None if cur is None or ref is None else float(cur - ref)


def column_drift(cur_col: Column, cur_idx: np.ndarray, ref_col: Column, ref_idx: np.ndarray,
                 cur_profile: dict[str, Any], ref_profile: dict[str, Any]) -> dict[str, Any]:
    row: dict[str, Any] = {
        "data_type": cur_col.data_type,
        "count_delta": float(cur_profile["count"] - ref_profile["count"]),
        "avg_delta": _delta(cur_profile.get("avg"), ref_profile.get("avg")),
        "percent_null_delta": _delta(cur_profile.get("percent_null"), ref_profile.get("percent_null")),
        "percent_zeros_delta": _delta(cur_profile.get("percent_zeros"), ref_profile.get("percent_zeros")),
        "percent_distinct_delta": _delta(cur_profile.get("percent_distinct"), ref_profile.get("percent_distinct")),
    }
    ref, cur = ref_col.present(ref_idx), cur_col.present(cur_idx)
    if cur_col.numeric:
        row.update(numeric_drift(ref.astype(float), cur.astype(float)))
    else:
        row.update(categorical_drift(ref.tolist(), cur.tolist()))
    return row


# ---------------------------------------------------------------------------------- the refresh
@dataclass
class Side:
    """A table's profiled columns and its rows grouped by model id."""

    columns: dict[str, Column]
    models: np.ndarray  # the model id of each row as a string, None where NULL

    def rows_of(self, model: str) -> np.ndarray:
        if model == ALL_MODELS:
            return np.arange(len(self.models))
        return np.flatnonzero(self.models == model)


def _side(table: pa.Table, specs: list[tuple[str, bool, str]], model_id_column: str) -> Side:
    columns = {name: Column.of(table, name, numeric, dtype) for name, numeric, dtype in specs
               if name in table.column_names}
    if model_id_column in table.column_names:
        models = pc.cast(table.column(model_id_column), pa.string()).to_numpy(zero_copy_only=False)
    else:
        models = np.full(table.num_rows, None, dtype=object)
    return Side(columns, np.asarray(models, dtype=object))


def compute(primary: pa.Table, baseline: pa.Table | None, spec: InferenceLog, *, monitor_version: int,
            commit_version: int, check: Callable[[], None] = lambda: None) -> tuple[pa.Table, pa.Table]:
    """(profile metrics, drift metrics) of the monitored table and its baseline; ``check`` raises
    Cancelled to stop between windows."""
    mid = spec.model_id_column
    reserved = set(profile_schema("", []).names) | set(drift_schema("").names)
    if mid in reserved:
        raise ValueError(f"the model id column {mid!r} has the name of a metric table column")
    specs = profiled_columns(primary.schema, spec)
    cur = _side(primary, specs, spec.model_id_column)
    base = _side(baseline, specs, spec.model_id_column) if baseline is not None else None
    ts = pd.Series(pc.cast(primary.column(spec.timestamp_column), _TS).to_pandas())
    has_ts = ts.notna().to_numpy()
    common = {"monitor_version": monitor_version, "slice_key": None, "slice_value": None}
    profile_rows: list[dict[str, Any]] = []
    drift_rows: list[dict[str, Any]] = []

    def profile(side: Side, idx: np.ndarray) -> dict[str, dict[str, Any]]:
        out = {name: column_profile(col, idx) for name, col in side.columns.items()}
        pred = side.columns.get(spec.prediction_column)
        label = side.columns.get(spec.label_column) if spec.label_column else None
        non_null = sorted(n for n, p in out.items() if p["count"] > p["num_nulls"])
        out[TABLE] = {"count": len(idx), "non_null_columns": non_null, "data_type": None,
                      **(quality(spec, pred, label, idx) if pred is not None else {})}
        return out

    def emit_profile(profiles: dict[str, dict[str, Any]], keys: dict[str, Any]) -> None:
        for name in sorted(profiles):
            profile_rows.append({**common, **keys, "column_name": name, **profiles[name]})

    def emit_drift(cur_idx: np.ndarray, ref: Side, ref_idx: np.ndarray, cur_prof: dict[str, dict[str, Any]],
                   ref_prof: dict[str, dict[str, Any]], keys: dict[str, Any]) -> None:
        for name, col in cur.columns.items():
            if name in ref.columns:
                drift_rows.append({**common, **keys, "column_name": name,
                                   **column_drift(col, cur_idx, ref.columns[name], ref_idx, cur_prof[name],
                                                  ref_prof[name])})
        added = sorted(set(cur_prof[TABLE]["non_null_columns"]) - set(ref_prof[TABLE]["non_null_columns"]))
        missing = sorted(set(ref_prof[TABLE]["non_null_columns"]) - set(cur_prof[TABLE]["non_null_columns"]))
        drift_rows.append({**common, **keys, "column_name": TABLE, "data_type": None,
                           "count_delta": float(cur_prof[TABLE]["count"] - ref_prof[TABLE]["count"]),
                           "non_null_columns_delta": {"added": len(added), "missing": len(missing)}})

    base_models = [ALL_MODELS]
    baseline_profiles: dict[str, tuple[np.ndarray, dict[str, dict[str, Any]]]] = {}
    if base is not None:
        base_models += sorted({m for m in base.models.tolist() if m is not None})
        for m in base_models:
            idx = base.rows_of(m)
            baseline_profiles[m] = (idx, profile(base, idx))
            emit_profile(baseline_profiles[m][1], {"window": None, "granularity": None, "log_type": BASELINE,
                                                   "logging_table_commit_version": None, mid: m})

    for gran in spec.granularities:
        check()
        text, step = granularity_text(gran), _step(gran)
        starts = _window_starts(ts, gran)
        by_window: dict[tuple[pd.Timestamp, str], tuple[np.ndarray, dict[str, dict[str, Any]]]] = {}
        for start in sorted(starts[has_ts].unique()):
            in_window = np.flatnonzero(has_ts & (starts == start).to_numpy())
            models = [ALL_MODELS, *sorted({m for m in cur.models[in_window].tolist() if m is not None})]
            for m in models:
                idx = in_window if m == ALL_MODELS else in_window[cur.models[in_window] == m]
                by_window[(start, m)] = (idx, profile(cur, idx))
        for (start, m), (idx, prof) in by_window.items():
            check()
            window = {"start": start.to_pydatetime(), "end": (start + step).to_pydatetime()}
            keys = {"window": window, "granularity": text, mid: m}
            emit_profile(prof, {**keys, "log_type": INPUT, "logging_table_commit_version": commit_version})
            previous = by_window.get((start - step, m))
            if previous is not None:
                before = {"start": (start - step).to_pydatetime(), "end": start.to_pydatetime()}
                emit_drift(idx, cur, previous[0], prof, previous[1],
                           {**keys, "window_cmp": before, "drift_type": CONSECUTIVE})
            if base is not None:
                ref_idx, ref_prof = baseline_profiles.get(m) or baseline_profiles[ALL_MODELS]
                emit_drift(idx, base, ref_idx, prof, ref_prof, {**keys, "window_cmp": None, "drift_type": BASELINE})

    quality_fields = ([("accuracy_score", _D), ("precision", _AVERAGES), ("recall", _AVERAGES),
                       ("f1_score", _AVERAGES)] if spec.classification else
                      [("mean_squared_error", _D), ("root_mean_squared_error", _D), ("mean_absolute_error", _D),
                       ("r2_score", _D)])
    return (_table(profile_rows, profile_schema(mid, quality_fields)), _table(drift_rows, drift_schema(mid)))


def profile_schema(model_id_column: str, quality_fields: list[tuple[str, pa.DataType]]) -> pa.Schema:
    return pa.schema([
        ("window", _WINDOW), ("log_type", pa.string()), ("logging_table_commit_version", pa.int64()),
        ("monitor_version", pa.int64()), ("granularity", pa.string()), (model_id_column, pa.string()),
        ("slice_key", pa.string()), ("slice_value", pa.string()), ("column_name", pa.string()),
        ("data_type", pa.string()), ("count", pa.int64()), ("num_nulls", pa.int64()), ("avg", _D),
        ("quantiles", pa.list_(_D)), ("min", _D), ("max", _D), ("stddev", _D), ("num_zeros", pa.int64()),
        ("num_nan", pa.int64()), ("min_length", pa.int64()), ("max_length", pa.int64()), ("avg_length", _D),
        ("non_null_columns", pa.list_(pa.string())), ("frequent_items", _ITEMS), ("median", _D),
        ("distinct_count", pa.int64()), ("percent_nan", _D), ("percent_null", _D), ("percent_zeros", _D),
        ("percent_distinct", _D), *quality_fields,
    ])


def drift_schema(model_id_column: str) -> pa.Schema:
    return pa.schema([
        ("window", _WINDOW), ("window_cmp", _WINDOW), ("drift_type", pa.string()), ("granularity", pa.string()),
        (model_id_column, pa.string()), ("monitor_version", pa.int64()), ("slice_key", pa.string()),
        ("slice_value", pa.string()), ("column_name", pa.string()), ("data_type", pa.string()),
        ("count_delta", _D), ("avg_delta", _D), ("percent_null_delta", _D), ("percent_zeros_delta", _D),
        ("percent_distinct_delta", _D), ("non_null_columns_delta", pa.struct([("added", pa.int32()),
                                                                              ("missing", pa.int32())])),
        ("js_distance", _D), ("ks_test", _TEST), ("wasserstein_distance", _D), ("population_stability_index", _D),
        ("chi_squared_test", _TEST), ("tv_distance", _D), ("l_infinity_distance", _D),
    ])


def _table(rows: list[dict[str, Any]], schema: pa.Schema) -> pa.Table:
    return pa.Table.from_pylist([{f.name: r.get(f.name) for f in schema} for r in rows], schema=schema)
