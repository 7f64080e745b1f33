"""Benchmark: how fast the registry webhook answers, through HTTP on the local host.

Runs the real function_app on the local host (the queue functions disabled with the host's
``AzureWebJobs.<name>.Disabled`` setting, so only the webhook path is measured) and sends
signed MLflow 3 deliveries in one run, side by side: accepted (recorded + enqueued), ignored
(recorded), duplicate (redelivery of an accepted one) and rejected (bad signature).
Prints a Markdown table; ``--write`` appends it to docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import requests

from bench.report import emit
from local.stack import WEBHOOK_SECRET, function_host
from shared.signatures import mlflow_signature


def _post(session: requests.Session, url: str, body: bytes, delivery: str, secret: str) -> float:
    ts = str(int(time.time()))
    headers = {"Content-Type": "application/json", "X-MLflow-Delivery-Id": delivery, "X-MLflow-Timestamp": ts,
               "X-MLflow-Signature": mlflow_signature(secret, delivery, ts, body)}
    started = time.perf_counter()
    resp = session.post(url, data=body, headers=headers, timeout=30)
    elapsed = (time.perf_counter() - started) * 1000
    assert resp.status_code in (202, 401), resp.text
    return elapsed


def _pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] if len(values) > 1 else values[0]


def run(n: int) -> str:
    with tempfile.TemporaryDirectory() as tmp:
        policy = Path(tmp) / "policy.yaml"
        policy.write_text(json.dumps({"version": 1, "models": [{"name": "bench_model", "environments": {
            "prod": {"endpoint": "bench-endpoint"}}}]}))
        settings = {
            "REACTOR_STORAGE": f"sqlite:///{tmp}/reactor.db", "REACTOR_POLICY_FILE": str(policy),
            "MLFLOW_WEBHOOK_SECRET": WEBHOOK_SECRET, "REGISTRY_WATCH_SCHEDULE": "0 0 0 1 1 *",
            "REACTOR_REPAIR_SCHEDULE": "0 0 0 1 1 *",
            "REACTOR_MONITOR_SCHEDULE": "0 0 0 1 1 *",
            **{f"AzureWebJobs.{f}.Disabled": "true" for f in ("commands", "rollout", "commands_poison",
                                                               "rollout_poison", "registry_watcher", "repair")},
        }
        with function_host(settings) as host, requests.Session() as session:
            url = f"{host.url}/api/registry/webhook"

            def body(model: str, version: int) -> bytes:
                return json.dumps({"entity": "model_version", "action": "created", "timestamp": str(uuid.uuid4()),
                                   "data": {"name": model, "version": str(version + 1)}}).encode()

            for i in range(20):  # warm-up
                _post(session, url, body("bench_model", i), str(uuid.uuid4()), WEBHOOK_SECRET)
            cases: dict[str, list[float]] = {"accepted": [], "duplicate": [], "ignored": [], "rejected (401)": []}
            for i in range(n):
                first = str(uuid.uuid4())
                b = body("bench_model", i)
                cases["accepted"].append(_post(session, url, b, first, WEBHOOK_SECRET))
                cases["duplicate"].append(_post(session, url, b, first, WEBHOOK_SECRET))
                cases["ignored"].append(_post(session, url, body("other_model", i), str(uuid.uuid4()), WEBHOOK_SECRET))
                cases["rejected (401)"].append(_post(session, url, b, str(uuid.uuid4()), "wrong-secret"))
    base = statistics.median(cases["rejected (401)"])
    lines = [
        f"### Registry webhook latency ({datetime.now(UTC):%Y-%m-%d}, {platform.machine()}, "
        f"{platform.python_version()}, {n} deliveries per case, sequential, HTTP on loopback)",
        "",
        "| case | p50 ms | p99 ms | p50 vs rejected |",
        "|---|---:|---:|---:|",
    ]
    for name, values in cases.items():
        lines.append(f"| {name} | {statistics.median(values):.2f} | {_pct(values, 99):.2f} | "
                     f"{statistics.median(values) / base:.2f}x |")
    return "\n".join(lines) + "\n"


def main() -> None:
    logging.basicConfig(level=logging.ERROR)  # the rejected deliveries would each log a warning
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=300)
    parser.add_argument("--write", action="store_true", help="append the table to docs/benchmarks.md")
    args = parser.parse_args()
    emit(run(args.n), args.write)


if __name__ == "__main__":
    main()
