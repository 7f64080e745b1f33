"""The ``monitoring`` section of an environment in the policy file, validated like the rest.

What a monitor measures (per window of one serving version, never mixing versions), against
what baseline, with which thresholds, and what it does when they are crossed. The statistics
are those of ``shared.drift``; the decision rule (N-of-M windows,
a clear threshold below the alert threshold, a minimum row count, a cooldown) answers the
flapping and retraining-storm problems which neither Databricks template (mlops-stacks,
https://github.com/databricks/mlops-stacks; dbdemos,
https://github.com/databricks-demos/dbdemos-notebooks) guards against.

The ``databricks`` preset is the dbdemos MLOps end-to-end rule (``08_drift_detection.py``): a window
violates when Jensen-Shannon distance exceeds 0.19 on both
the prediction and the label, or when F1 is below 0.5 and |expected loss| exceeds 30; the
expected-loss SQL is the model's own, so the preset needs ``custom.expected_loss``.
Databricks' JS is computed in a base that it does not document; ours is base 2 (range [0, 1]).
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

_UC_PART = r"[^. /\x00-\x1f\x7f]{1,255}"
_UC_TABLE = rf"^{_UC_PART}\.{_UC_PART}\.{_UC_PART}$"
_COLUMN = r"^[^\x00-\x1f\x7f]{1,255}$"
_DURATION = re.compile(r"^([1-9][0-9]{0,5})([smhdw])$")
_DELAY = re.compile(r"^(0|[1-9][0-9]{0,5})([smhdw])$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}

DRIFT_METRICS = ("psi", "js", "ks", "wasserstein", "chi2")
PERFORMANCE_METRICS = ("rmse", "mae", "f1", "accuracy", "precision", "recall")
HEALTH_METRICS = ("error_rate", "p95_latency_ms", "request_count")
# Which way is bad, unless a check says otherwise: a distance or an error that grows, a score
# that falls. chi2 is judged on its p-value, so a small value is the violation.
LABEL_PLACEHOLDER = "{{label_col}}"
_BAD_BELOW = {"f1", "accuracy", "precision", "recall", "request_count", "chi2"}


def seconds(duration: str) -> int:
    """``30s``, ``15m``, ``1h``, ``1d``, ``2w`` (and, for a delay, ``0s``) → seconds."""
    m = _DELAY.match(duration)
    if not m:
        raise ValueError(f"{duration!r} is not a duration such as 30s, 15m, 1h, 1d or 1w")
    return int(m.group(1)) * _UNIT_SECONDS[m.group(2)]


Duration = Annotated[str, Field(pattern=_DURATION.pattern, description="e.g. 30s, 15m, 1h, 1d, 1w")]
Delay = Annotated[str, Field(pattern=_DELAY.pattern, description="e.g. 0s, 30s, 15m, 1h")]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class InferenceTable(_Strict):
    """Where the endpoint's AI Gateway inference table lives (``inference_table_config``; Databricks,
    "Monitor served models using AI Gateway-enabled inference tables",
    https://docs.databricks.com/aws/en/ai-gateway/inference-tables):
    ``<catalog>.<schema>.<prefix>_payload``."""

    catalog: str = Field(pattern=rf"^{_UC_PART}$")
    schema_name: str = Field(alias="schema", pattern=rf"^{_UC_PART}$")
    prefix: str | None = Field(None, pattern=r"^[A-Za-z0-9_-]{1,200}$", description="default: the endpoint name")

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    def payload_table(self, endpoint: str) -> str:
        return f"{self.catalog}.{self.schema_name}.{self.prefix or endpoint}_payload"


class Baseline(_Strict):
    """What a window is compared with: a Unity Catalog table (the training data; optionally
    filtered to the serving version by ``version_column``), or, without ``table``, the version's
    first serving window with at least ``decision.min_rows`` rows. Bin edges and categories are
    frozen from it once per version and stored."""

    table: str | None = Field(None, pattern=_UC_TABLE)
    version_column: str | None = Field(None, pattern=_COLUMN)
    prediction_column: str | None = Field(None, pattern=_COLUMN, description="the prediction in the baseline table")
    label_column: str | None = Field(None, pattern=_COLUMN, description="the label in the baseline table")

    @model_validator(mode="after")
    def _table_fields(self) -> Baseline:
        if self.table is None and (self.version_column or self.prediction_column or self.label_column):
            raise ValueError("version_column, prediction_column and label_column describe a baseline table: set table")
        return self


class Labels(_Strict):
    """Ground truth that arrives after the prediction: a Unity Catalog table joined to the
    requests by ``key`` (the label table's column) = ``request_key`` (the request's
    ``client_request_id``, or a column of the request's records)."""

    table: str = Field(pattern=_UC_TABLE)
    key: str = Field(pattern=_COLUMN)
    request_key: str = Field("client_request_id", pattern=_COLUMN)
    column: str = Field(pattern=_COLUMN, description="the label column")
    delay: Duration = Field("1h", description="how late labels may arrive: a window's performance is measured "
                            "once this much time has passed after its end")


class Check(_Strict):
    """One figure and its threshold. Drift metrics apply to ``of``: ``features`` (every watched
    column), ``prediction``, ``label`` or one column name. ``clear`` is the hysteresis threshold:
    a window that violated stays violating until the figure is back past ``clear`` (default: 80 %
    of the way from 0 to ``threshold``). ``group``: checks with the same group violate only together."""

    metric: Literal["psi", "js", "ks", "wasserstein", "chi2", "rmse", "mae", "f1", "accuracy", "precision",
                    "recall", "error_rate", "p95_latency_ms", "request_count", "custom"]
    # Not "on": YAML 1.1 reads a bare ``on`` key as the boolean true.
    of: str | None = Field(None, description="drift metrics: features, prediction, label or a column name")
    name: str | None = Field(None, pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,63}$", description="custom: its name in custom")
    threshold: float
    clear: float | None = None
    direction: Literal["above", "below"] | None = Field(None, description="which side of the threshold violates")
    absolute: bool = Field(False, description="compare |value| (e.g. |expected loss| > 30)")
    group: str | None = Field(None, max_length=64)

    @model_validator(mode="after")
    def _shape(self) -> Check:
        if self.metric in DRIFT_METRICS and not self.of:
            raise ValueError(f"a {self.metric} check needs 'of': features, prediction, label or a column")
        if self.metric not in DRIFT_METRICS and self.of:
            raise ValueError(f"'of' applies to drift metrics ({', '.join(DRIFT_METRICS)}), not {self.metric}")
        if (self.metric == "custom") != (self.name is not None):
            raise ValueError("'name' names a custom metric: give it with metric: custom, and only then")
        if self.clear is not None and (self.clear > self.threshold if self.bad_above else self.clear < self.threshold):
            raise ValueError(f"clear ({self.clear}) must be on the healthy side of threshold ({self.threshold})")
        return self

    @property
    def bad_above(self) -> bool:
        return self.direction == "above" if self.direction else self.metric not in _BAD_BELOW

    @property
    def clear_at(self) -> float:
        return self.clear if self.clear is not None else self.threshold * 0.8 if self.bad_above else (
            self.threshold + (1 - self.threshold) * 0.2 if self.metric == "chi2" else self.threshold * 1.2)

    @property
    def label(self) -> str:
        return f"{self.name or self.metric}" + (f"({self.of})" if self.of else "")


class Decision(_Strict):
    """When the figures call for action: at least ``violations`` of the last ``windows``
    windows violate, the newest among them (mlops-stacks' rule); a window with
    fewer than ``min_rows`` rows is insufficient data, never a violation; after an action,
    nothing more for ``cooldown``."""

    windows: int = Field(1, ge=1, le=50, description="M: how many of the latest windows are looked at")
    violations: int = Field(1, ge=1, le=50, description="N: how many of them must violate")
    min_rows: int = Field(100, ge=1)
    cooldown: Duration = "6h"
    action: Literal["retrain", "alert", "rollback"] = "retrain"
    rollback_within: Duration = Field("1d", description="rollback: only when the version began serving this recently")

    @model_validator(mode="after")
    def _n_of_m(self) -> Decision:
        if self.violations > self.windows:
            raise ValueError(f"violations ({self.violations}) cannot exceed windows ({self.windows})")
        return self


class Source(_Strict):
    """A processed inference table (one row per prediction) instead of the endpoint's payload table."""

    table: str = Field(pattern=_UC_TABLE)
    timestamp_column: str = Field(pattern=_COLUMN)
    version_column: str = Field(pattern=_COLUMN)
    prediction_column: str = Field(pattern=_COLUMN)
    request_id_column: str | None = Field(None, pattern=_COLUMN)


class LakehouseMonitor(_Strict):
    """Read what a Databricks data quality monitor computed on ``table`` (its drift and profile
    metric tables; Databricks, "Monitor metric tables",
    https://docs.databricks.com/aws/en/lakehouse-monitoring/monitor-output) instead of computing drift
    here."""

    table: str = Field(pattern=_UC_TABLE)
    drift_type: Literal["BASELINE", "CONSECUTIVE"] = "BASELINE"
    refresh: bool = Field(False, description="request a refresh before reading, and wait for it by re-enqueueing")


class Drift(_Strict):
    """How numeric drift figures are computed (``shared.drift``): ``exact`` sorts each numeric
    column's values in the warehouse (exact KS D and W1); ``binned`` makes one grouped scan, no
    sort, and states each KS D and W1 figure's error bound (``shared.drift.binned``); ``auto``
    takes the binned scan and recomputes exactly when the window and its reference hold fewer
    than ``exact_below`` values of a column. In the binned modes a verdict whose threshold (or
    clear threshold) lies within a figure's bound is recomputed exactly, so no verdict differs
    from the exact mode's. Label drift is always exact."""

    mode: Literal["exact", "binned", "auto"] = "auto"
    exact_below: int = Field(200_000, ge=0, description="auto: rows (reference + window) under which the "
                             "figures are computed exactly")
    cells: int = Field(1000, ge=4, le=1000, description="binned: fine cells per numeric column; fewer give a "
                       "smaller result and wider bounds, so more verdicts recomputed exactly")


class Monitoring(_Strict):
    preset: Literal["databricks"] | None = None
    window: Duration = "1h"
    problem: Literal["regression", "classification"] = "regression"
    positive_label: str | None = Field(None, description="classification: the positive class for f1/precision/recall "
                                       "(default: macro averages over the classes)")
    columns: list[Annotated[str, Field(pattern=_COLUMN)]] | None = Field(
        None, description="watched request columns; default: the model signature's inputs")
    categorical: list[Annotated[str, Field(pattern=_COLUMN)]] = Field(
        default_factory=list, description="columns compared as categories (default: strings and booleans)")
    prediction: Literal["numeric", "categorical"] | None = Field(
        None, description="default: numeric for regression, categorical for classification")
    baseline: Baseline = Field(default_factory=Baseline)
    source: Source | None = None
    labels: Labels | None = None
    custom: dict[Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")], str] = Field(
        default_factory=dict, description="custom aggregate metrics: name → SQL aggregate over the window's rows; "
        "{{prediction_col}} and {{label_col}} stand for the prediction and the label")
    checks: list[Check] = Field(default_factory=list)
    drift: Drift = Field(default_factory=Drift)
    decision: Decision = Field(default_factory=Decision)
    lakehouse_monitor: LakehouseMonitor | None = None

    @field_validator("custom")
    @classmethod
    def _aggregates(cls, v: dict[str, str]) -> dict[str, str]:
        for name, sql in v.items():
            if ";" in sql or not sql.strip():
                raise ValueError(f"{name}: one SQL aggregate expression, no ';'")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> Monitoring:
        checks = self.all_checks
        if not checks:
            raise ValueError("no checks: list some, or use preset: databricks")
        needs_labels = [c.label for c in checks if self.uses_labels(c)]
        if needs_labels and self.labels is None:
            raise ValueError(f"{', '.join(needs_labels)} need labels: add labels (table, key, column)")
        missing = sorted({c.name for c in checks if c.metric == "custom" and c.name not in self.custom})
        if missing:
            from shared.policy_problems import did_you_mean  # it imports this module

            raise ValueError(f"custom metric(s) {missing} have no SQL in custom"
                             + (" (the databricks preset needs custom.expected_loss)" if self.preset else "")
                             + did_you_mean(missing[0], sorted(self.custom)))
        kinds = {"regression": {"rmse", "mae"}, "classification": {"f1", "accuracy", "precision", "recall"}}
        wrong = [c.metric for c in checks if c.metric in PERFORMANCE_METRICS and c.metric not in kinds[self.problem]]
        if wrong:
            raise ValueError(f"{', '.join(wrong)} do not measure a {self.problem} model")
        if self.lakehouse_monitor and any(c.metric in ("custom", *HEALTH_METRICS) for c in checks):
            raise ValueError("with lakehouse_monitor, checks read the monitor's tables: custom and health metrics "
                             "are not among them")
        return self

    def uses_labels(self, check: Check) -> bool:
        """Measured on labelled rows only: performance, label drift, a custom metric of the label."""
        return (check.metric in PERFORMANCE_METRICS or check.of == "label"
                or (check.metric == "custom" and LABEL_PLACEHOLDER in self.custom.get(check.name or "", "")))

    @property
    def all_checks(self) -> list[Check]:
        if self.preset != "databricks":
            return list(self.checks)
        return [
            Check(metric="js", of="prediction", threshold=0.19, group="drift"),
            Check(metric="js", of="label", threshold=0.19, group="drift"),
            Check(metric="f1", threshold=0.5, group="performance"),
            Check(metric="custom", name="expected_loss", threshold=30, absolute=True, group="performance"),
            *self.checks,
        ]

    @property
    def window_seconds(self) -> int:
        return seconds(self.window)

    @property
    def prediction_kind(self) -> str:
        return self.prediction or ("numeric" if self.problem == "regression" else "categorical")


__all__ = ["Check", "Decision", "Drift", "InferenceTable", "Labels", "Monitoring", "seconds"]
