"""Model quality over a window's labelled records, and custom aggregate metrics, by SQL pushdown.

Regression: RMSE and MAE. Classification: accuracy, and precision, recall and F1 of the
``positive_label`` or, without one, their macro averages over every class seen in the
predictions or the labels (the ``.macro`` members of Lakehouse Monitoring's profile table,
Databricks, "Monitor metric tables",
https://docs.databricks.com/aws/en/lakehouse-monitoring/monitor-output; a class never predicted has
precision 0, as scikit-learn's
``zero_division=0``). Only counts come back: one row for regression, one per class otherwise.

Custom metrics are SQL aggregates over the window's rows, written as for Lakehouse Monitoring's
``CUSTOM_METRIC_TYPE_AGGREGATE`` (Databricks, "Use custom metrics with Databricks Lakehouse
Monitoring", https://docs.databricks.com/aws/en/lakehouse-monitoring/custom-metrics): ``{{prediction_col}}`` and
``{{label_col}}`` stand for the prediction and the label.
"""

from __future__ import annotations

from typing import Any

from shared.monitoring.policy import LABEL_PLACEHOLDER
from shared.statements import quote_ident


def expand(template: str) -> str:
    return template.replace("{{prediction_col}}", "__prediction").replace(LABEL_PLACEHOLDER, "__label")


def aggregates_sql(relation: str, custom: dict[str, str]) -> str:
    """Row count and the custom aggregates over ``relation``."""
    cols = "".join(f", ({expand(sql)}) AS {quote_ident('custom_' + name)}" for name, sql in sorted(custom.items()))
    return f"SELECT count(*) AS n{cols} FROM {relation} AS w"


def regression_sql(relation: str) -> str:
    return ("SELECT count(*) AS n, sqrt(avg(power(__prediction - __label, 2))) AS rmse, "
            f"avg(abs(__prediction - __label)) AS mae FROM {relation} AS w WHERE __label IS NOT NULL")


def classification_sql(relation: str) -> str:
    labelled = f"(SELECT __prediction, __label FROM {relation} AS w WHERE __label IS NOT NULL)"
    return ("SELECT c.k AS class, count_if(l.__prediction = c.k AND l.__label = c.k) AS tp, "
            "count_if(l.__prediction = c.k AND l.__label <> c.k) AS fp, "
            "count_if(l.__prediction <> c.k AND l.__label = c.k) AS fn, count(l.__label) AS n, "
            "count_if(l.__prediction = l.__label) AS correct "
            f"FROM (SELECT DISTINCT __label AS k FROM {labelled} AS a UNION "
            f"SELECT DISTINCT __prediction AS k FROM {labelled} AS b WHERE __prediction IS NOT NULL) AS c "
            f"CROSS JOIN {labelled} AS l GROUP BY c.k ORDER BY c.k")


def _ratio(a: float, b: float) -> float:
    return a / b if b else 0.0


def classification(rows: list[list[Any]], positive_label: str | None) -> dict[str, float | None]:
    """(class, tp, fp, fn, n, correct) rows → accuracy, precision, recall, f1."""
    if not rows:
        return {"n": 0, "accuracy": None, "precision": None, "recall": None, "f1": None}
    n, correct = int(rows[0][4]), int(rows[0][5])
    per: dict[str, tuple[float, float, float]] = {}
    for cls, tp, fp, fn, *_ in rows:
        p, r = _ratio(tp, tp + fp), _ratio(tp, tp + fn)
        per[str(cls)] = (p, r, _ratio(2 * p * r, p + r))
    if positive_label is not None:
        p, r, f = per.get(positive_label, (0.0, 0.0, 0.0))
    else:
        p, r, f = (sum(v[i] for v in per.values()) / len(per) for i in range(3))
    return {"n": n, "accuracy": _ratio(correct, n), "precision": p, "recall": r, "f1": f}
