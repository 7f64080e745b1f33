"""The operators' Azure Monitor workbook (infra/workbook.json, deployed by infra/main.bicep):
it charts exactly the metrics shared/telemetry.py creates, by attributes those metrics carry,
and every parameter its queries use is defined. What the exporter really sends for those
metrics is checked against :func:`dimensions` in tests/test_demo.py, over the demo's telemetry."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from shared import telemetry

ROOT = Path(__file__).resolve().parent.parent
WORKBOOK = ROOT / "infra" / "workbook.json"
_METRIC = re.compile(r'name == "(reactor\.[a-z_.]+)"')
_DIMENSION = re.compile(r"customDimensions\.([A-Za-z_]+)")


def _load() -> dict[str, Any]:
    return json.loads(WORKBOOK.read_text())


def queries() -> list[str]:
    """The KQL of every query item (type 3)."""
    return [i["content"]["query"] for i in _load()["items"] if i["type"] == 3]


def dimensions() -> dict[str, set[str]]:
    """Metric name → the customDimensions keys the workbook's queries on it read."""
    out: dict[str, set[str]] = {}
    for q in queries():
        for name in _METRIC.findall(q):
            out.setdefault(name, set()).update(_DIMENSION.findall(q))
    return out


def test_the_workbook_charts_every_metric_the_app_emits_and_no_other() -> None:
    assert set(dimensions()) == set(telemetry.INSTRUMENTS)
    assert all(q.count("(") == q.count(")") and q.count('"') % 2 == 0 for q in queries())


def test_every_metric_query_is_filtered_by_the_time_range_and_the_endpoint() -> None:
    for q in queries():
        assert "| where timestamp {TimeRange}" in q, q
        assert '"*" in ({Endpoint})' in q, q


def test_its_parameters_are_the_ones_its_queries_use() -> None:
    wb = _load()
    assert wb["version"] == "Notebook/1.0"
    names = [i["name"] for i in wb["items"]]
    assert len(names) == len(set(names))
    (params,) = [i for i in wb["items"] if i["type"] == 9]
    defined = {p["name"] for p in params["content"]["parameters"]}
    used = {m.split(":")[0] for q in queries() for m in re.findall(r"\{([A-Za-z]+(?::[a-z]+)?)\}", q)}
    assert used == defined == {"TimeRange", "Endpoint"}
    assert all(i["content"].get("timeContextFromParameter") == "TimeRange" for i in wb["items"] if i["type"] == 3)


def test_the_template_deploys_it_against_application_insights() -> None:
    bicep = (ROOT / "infra" / "main.bicep").read_text()
    block = bicep[bicep.index("resource workbook 'Microsoft.Insights/workbooks@"):]
    block = block[:block.index("\n}\n")]
    # Opened from the gallery, the workbook's queries run against its fallback resource: this one.
    deployed = "string(union(loadJsonContent('workbook.json'), { fallbackResourceIds: [appInsights.id] }))"
    assert f"serializedData: {deployed}" in block
    assert "sourceId: appInsights.id" in block
    assert "name: guid(" in block and "kind: 'shared'" in block
