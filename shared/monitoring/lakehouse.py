"""What Databricks data profiling (Lakehouse Monitoring) computed for a monitored table, read back.

Through databricks-sdk only (``w.data_quality``, ``databricks/sdk/service/dataquality.py``, https://github.com/databricks/databricks-sdk-py;
the tables: Databricks, "Monitor metric tables", https://docs.databricks.com/aws/en/lakehouse-monitoring/monitor-output):

- ``w.tables.get(table).table_id`` is the monitor's ``object_id``; ``w.data_quality.get_monitor(
  "table", table_id)`` names the metric tables (``data_profiling_config.profile_metrics_table_name``,
  ``.drift_metrics_table_name``) and the InferenceLog's ``model_id_column``. The deprecated
  ``w.quality_monitors`` is not used.
- The metric tables are read with one statement through ``shared.statements``: never waited
  on; while it runs, ``StatementPending`` propagates with its id in the caller's cursor.
- Rows as mlops-stacks (https://github.com/databricks/mlops-stacks) and dbdemos (https://github.com/databricks-demos/dbdemos-notebooks)
  select them: the whole table
  (``slice_key IS NULL``), the monitored table's rows of the profile table (``log_type =
  'INPUT'``), one granularity, and the model-id column equal to the version asked for; the
  ``'*'`` rows (every model id together) are never read, so versions never mix. Quality comes
  from the ``column_name = ':table'`` profile rows (``precision``/``recall``/``f1_score`` through
  ``.macro``), drift from the other columns' rows of the drift table, counts from the
  profile rows' ``count``.
- A refresh is requested with ``w.data_quality.create_refresh`` and followed with
  ``get_refresh``: the caller re-enqueues on the state instead of waiting (docs/architecture.md principle 3).

Before a monitor's first refresh has written its metric tables there is nothing to read:
``read_windows`` returns no windows (``w.tables.exists``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from shared import statements

ALL_MODELS = "*"
DRIFT_TYPES = ("CONSECUTIVE", "BASELINE")
REFRESH_STATES = ("PENDING", "RUNNING", "SUCCESS", "FAILED", "CANCELED", "UNKNOWN")
# Our metric name -> its expression on the drift metrics table.
DRIFT_METRICS = {
    "js_distance": "`js_distance`",
    "ks_statistic": "`ks_test`.`statistic`",
    "ks_pvalue": "`ks_test`.`pvalue`",
    "wasserstein_distance": "`wasserstein_distance`",
    "population_stability_index": "`population_stability_index`",
    "chi_squared_statistic": "`chi_squared_test`.`statistic`",
    "chi_squared_pvalue": "`chi_squared_test`.`pvalue`",
    "tv_distance": "`tv_distance`",
}
# Model-quality metrics of the ':table' profile rows, by problem type.
CLASSIFICATION_QUALITY = {
    "accuracy_score": "`accuracy_score`",
    "f1_score": "`f1_score`.`macro`",
    "precision": "`precision`.`macro`",
    "recall": "`recall`.`macro`",
}
REGRESSION_QUALITY = {
    "root_mean_squared_error": "`root_mean_squared_error`",
    "mean_squared_error": "`mean_squared_error`",
    "mean_absolute_error": "`mean_absolute_error`",
    "r2_score": "`r2_score`",
}
QUALITY_METRICS = (*CLASSIFICATION_QUALITY, *REGRESSION_QUALITY)
TABLE = ":table"


@dataclass(frozen=True)
class LakehouseWindow:
    """One window of one model version: drift per column, quality, and row counts per column
    (``':table'``: the window's rows)."""

    start: datetime
    end: datetime
    drift: dict[str, dict[str, float | None]]
    quality: dict[str, float | None]
    counts: dict[str, int]


def granularity_text(value: str) -> str:
    """``AGGREGATION_GRANULARITY_1_DAY`` -> ``"1 day"``, as the metric tables' ``granularity`` holds it."""
    n, unit = value.removeprefix("AGGREGATION_GRANULARITY_").split("_", 1)
    return f"{int(n)} {unit.lower()}"


def _table_id(w: Any, table: str) -> str:
    return w.tables.get(table).table_id


def monitor_tables(w: Any, table: str) -> tuple[str, str, str | None, Any]:
    """(profile metrics table, drift metrics table, model-id column or None, the ``Monitor``) of
    the data profiling monitor on ``table``. Raises the SDK's NotFound for a missing table or
    monitor, ValueError for a monitor without data profiling."""
    monitor = w.data_quality.get_monitor("table", _table_id(w, table))
    config = monitor.data_profiling_config
    if config is None or not config.profile_metrics_table_name or not config.drift_metrics_table_name:
        raise ValueError(f"the monitor on {table} has no data profiling metric tables")
    model_id_column = config.inference_log.model_id_column if config.inference_log else None
    return config.profile_metrics_table_name, config.drift_metrics_table_name, model_id_column, monitor


def read_windows(w: Any, warehouse_id: str, table: str, *, model_id: str, drift_type: str,
                 since: datetime | None, cursor: dict[str, Any], deadline: float,
                 granularity: str | None = None) -> list[LakehouseWindow]:
    """The windows of ``model_id`` starting at or after ``since``, ordered by start, with the
    drift of ``drift_type`` (``CONSECUTIVE`` or ``BASELINE``; a window without such drift rows has
    an empty ``drift``). ``granularity`` (``"1 day"``) defaults to the monitor's first one."""
    if model_id == ALL_MODELS:
        raise ValueError("model id '*' aggregates every version; ask for one version")
    if drift_type not in DRIFT_TYPES:
        raise ValueError(f"drift_type must be one of {DRIFT_TYPES}, got {drift_type!r}")
    profile, drift, model_column, monitor = monitor_tables(w, table)
    log = monitor.data_profiling_config.inference_log
    if model_column is None or log is None:
        raise ValueError(f"the monitor on {table} is not an InferenceLog monitor: it has no model id column")
    if not all(w.tables.exists(t).table_exists for t in (profile, drift)):
        return []  # no refresh has written the metric tables yet
    gran = granularity or granularity_text(log.granularities[0].value)
    quality: dict[str, str] = {}
    if log.label_column:
        classification = log.problem_type is not None and log.problem_type.value.endswith("CLASSIFICATION")
        quality = CLASSIFICATION_QUALITY if classification else REGRESSION_QUALITY
    result = statements.run(w, warehouse_id, _statement(profile, drift, model_column, model_id, drift_type, gran,
                                                        since, quality),
                            cursor, f"lakehouse:{drift_type}:{model_id}", deadline)
    return _windows(statements.rows(w, result))


def _statement(profile: str, drift: str, model_column: str, model_id: str, drift_type: str, granularity: str,
               since: datetime | None, quality: dict[str, str]) -> str:
    where = (f"`slice_key` IS NULL AND `granularity` = {statements.literal(granularity)} "
             f"AND CAST({statements.quote_ident(model_column)} AS STRING) = {statements.literal(model_id)}")
    if since is not None:
        at = (since if since.tzinfo else since.replace(tzinfo=UTC)).astimezone(UTC)
        where += f" AND `window`.`start` >= TIMESTAMP '{at.strftime('%Y-%m-%d %H:%M:%S.%f')}'"
    null = "CAST(NULL AS DOUBLE)"
    q = ", ".join(f"{quality.get(name, null)} AS {statements.quote_ident(name)}" for name in QUALITY_METRICS)
    d = ", ".join(f"{expr} AS {statements.quote_ident(name)}" for name, expr in DRIFT_METRICS.items())
    keys = "`window`.`start` AS window_start, `window`.`end` AS window_end, `column_name`"
    return (f"SELECT 'profile' AS kind, {keys}, `count` AS n, {q}, {', '.join([null] * len(DRIFT_METRICS))} "
            f"FROM {statements.quote(profile)} WHERE `log_type` = 'INPUT' AND {where} "
            "UNION ALL "
            f"SELECT 'drift' AS kind, {keys}, CAST(NULL AS BIGINT) AS n, {', '.join([null] * len(QUALITY_METRICS))}, "
            f"{d} FROM {statements.quote(drift)} WHERE `drift_type` = {statements.literal(drift_type)} "
            f"AND `column_name` <> '{TABLE}' AND {where} "
            "ORDER BY window_start, kind, column_name")


def _number(value: Any) -> float | None:
    if value is None:
        return None
    number = float(value)
    return None if math.isnan(number) else number


def _windows(rows: list[list[Any]]) -> list[LakehouseWindow]:
    q_at = 5
    d_at = q_at + len(QUALITY_METRICS)
    found: dict[tuple[str, str], LakehouseWindow] = {}
    for row in rows:
        kind, start, end, column = row[:4]
        win = found.get((start, end))
        if win is None:
            win = found[(start, end)] = LakehouseWindow(_timestamp(start), _timestamp(end), {},
                                                        dict.fromkeys(QUALITY_METRICS), {})
        if kind == "profile":
            win.counts[column] = int(row[4]) if row[4] is not None else 0
            if column == TABLE:
                win.quality.update({name: _number(v) for name, v in zip(QUALITY_METRICS, row[q_at:d_at], strict=True)})
        else:
            win.drift[column] = {name: _number(v) for name, v in zip(DRIFT_METRICS, row[d_at:], strict=True)}
    return sorted(found.values(), key=lambda win: win.start)


def _timestamp(text: str) -> datetime:
    """A TIMESTAMP of a result (``2026-12-01T00:00:00.000Z``, as the Statement Execution API
    writes one), as an aware UTC datetime."""
    value = datetime.fromisoformat(text)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def request_refresh(w: Any, table: str) -> int:
    """Queue a refresh of the monitor on ``table`` (``create_refresh``); returns its id."""
    from databricks.sdk.service.dataquality import Refresh

    table_id = _table_id(w, table)
    refresh = w.data_quality.create_refresh("table", table_id, Refresh(object_type="table", object_id=table_id))
    return int(refresh.refresh_id)


def refresh_state(w: Any, table: str, refresh_id: int) -> str:
    """One of REFRESH_STATES for the refresh ``refresh_id`` of the monitor on ``table``."""
    refresh = w.data_quality.get_refresh("table", _table_id(w, table), refresh_id)
    state = refresh.state.value.removeprefix("MONITOR_REFRESH_STATE_") if refresh.state else "UNKNOWN"
    return state if state in REFRESH_STATES else "UNKNOWN"
