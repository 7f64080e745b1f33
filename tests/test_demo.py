"""The closed-loop demo is the product's scenario test through the real stack: a real MLflow
server's signed webhooks, the Function App on the local host, the local workspace through
databricks-sdk (serving, Unity Catalog tables, SQL, the Jobs API). From a first version to drift,
retraining and the retrained version as Champion, every expectation it prints must hold.

It runs as the README's command does, in a process of its own, with Application Insights'
connection string pointing the real Azure Monitor exporter at a stand-in ingestion endpoint
(tests/ingestion.py): what the app would send to the portal is checked too. Every metric the
workbook charts arrives, with the attributes its queries read (tests/test_workbook.py), and
counts that match what the demo did; no secret is in any of it."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

from local.stack import HOST_KEY, WEBHOOK_SECRET, WORKSPACE_TOKEN
from shared import telemetry
from tests.ingestion import ingestion
from tests.test_workbook import dimensions

ROOT = Path(__file__).resolve().parent.parent


def test_the_demo_closes_the_loop_from_first_version_to_retrained_champion(tmp_path: Path) -> None:
    with ingestion() as sink:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("APPLICATIONINSIGHTS_", "OTEL_"))}
        env.update(APPLICATIONINSIGHTS_CONNECTION_STRING=sink.connection_string,
                   APPLICATIONINSIGHTS_STATSBEAT_DISABLED_ALL="true", APPLICATIONINSIGHTS_CONTROLPLANE_DISABLED="true",
                   OTEL_METRIC_EXPORT_INTERVAL="5000")
        done = subprocess.run([sys.executable, "-m", "local.demo", "--data-dir", str(tmp_path / "demo")], cwd=ROOT,
                              env=env, capture_output=True, text=True, timeout=900)
    out = done.stdout
    assert done.returncode == 0, out + done.stderr[-4000:]
    held = re.search(r"(\d+) of (\d+) expectations held", out)
    assert held and held.group(1) == held.group(2) and int(held.group(2)) >= 20, out

    for name, keys in dimensions().items():
        points = sink.metrics(name)
        assert points, f"{name} was never exported"
        assert all(keys <= set(p["properties"]) for p in points), (name, keys)
    # v1 and v2 done, v3 (smoke) and v4 (canary analysis) failed, the retrained version done.
    outcomes = _sums(sink.metrics(telemetry.ROLLOUT_DURATION), "outcome", field="count")
    assert outcomes["failed"] >= 2 and outcomes["done"] >= 3, outcomes
    analysis = sink.metrics(telemetry.ANALYSIS_RUNS)
    passed = {p["properties"]["weight"] for p in analysis if p["properties"]["phase"] == "Successful"}
    assert {"10", "50"} <= passed, analysis
    assert any(p["properties"]["phase"] == "Failed" and p["properties"]["weight"] == "10" for p in analysis), analysis
    drift = sink.metrics(telemetry.DRIFT_VALUE)
    assert any(p["properties"]["verdict"] == "violation" and p["properties"]["check"].startswith("psi(")
               for p in drift), drift
    verdicts = _sums(sink.metrics(telemetry.MONITOR_DECISIONS), "verdict")
    assert verdicts["violation"] >= 1 and verdicts["ok"] >= 1, verdicts
    results = _sums(sink.metrics(telemetry.RETRAINING_RUNS), "result")
    assert results["launched"] == 1 and results["SUCCESS"] == 1, results
    # The structured log reached the traces table with its fields as customDimensions.
    events = {m["properties"].get("reactor.event") for m in sink.messages()}
    assert {"webhook.accepted", "rollout.step", "monitor.decision"} <= events, sorted(map(str, events))[:40]
    everything = "\n".join(sink.bodies)
    for secret in (WEBHOOK_SECRET, WORKSPACE_TOKEN, HOST_KEY):
        assert secret not in everything, secret


def _sums(points: list[dict], key: str, field: str = "value") -> Counter[str]:
    total: Counter[str] = Counter()
    for p in points:
        total[p["properties"][key]] += int(p[field])
    return total
