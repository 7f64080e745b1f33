"""Benchmark: the platform-independent overhead of a rollout, direct and canary side by side in
one run (issue: progressive delivery).

The real stack on this machine: the Function App on the local host (SQLite state and queues), a
real ``mlflow server`` sending signed webhooks, the local workspace (endpoint updates settle after
its ``provisioning_seconds``, 0.5 s), and callers sending trips the whole time. Each rollout is
timed from the webhook's POST to its terminal state, and split by its own history (each entry is
when a step's transition committed):

- *updating*: from each step that wrote the endpoint config (``deploy``, ``shift``, ``retire``,
  ``rollback``) to the commit of the ``wait_*`` step that saw it served;
- *bake*: from the commit that started a bake to the commit that ended it (the bake time and,
  before an analysis, the inference table's delivery delay: both set by the policy);
- *analysis*: the ``analyze`` steps (the SQL statements on the warehouse, and their polling);
- *overhead* = total - updating - bake: what the app adds (intake, queue hops, backoff, smoke
  queries, alias moves, analysis), the figure the issue asks for; and without the analysis.

Prints a Markdown table; ``--write`` appends it to docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import platform as host_platform
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.report import emit

_WRITES = {"deploy": "wait_deploy", "shift": "wait_shift", "retire": "wait_retire", "rollback": "wait_rollback"}


def split(row: dict[str, Any]) -> dict[str, float]:
    """Seconds spent updating, baking and analysing, from the rollout's history."""
    history = row["history"]
    out = {"updating": 0.0, "bake": 0.0, "analysis": 0.0}
    for i, h in enumerate(history):
        waiting = _WRITES.get(h["step"])
        if waiting:
            # The last wait_* entry before another step: when the write was seen served.
            j = i + 1
            while j + 1 < len(history) and history[j + 1]["step"] == waiting:
                j += 1
            if j < len(history) and history[j]["step"] == waiting:
                out["updating"] += history[j]["at"] - h["at"]
        if h["step"] == "wait_shift" and "baking" in h["note"]:
            end = next((x["at"] for x in history[i + 1:] if x["step"] == "bake" and "done" in x["note"]), h["at"])
            out["bake"] += end - h["at"]
        if h["step"] == "analyze" and i > 0:
            out["analysis"] += h["at"] - history[i - 1]["at"]
    return out


def policy(tag: str, strategy: dict[str, Any]) -> str:
    env = {"endpoint": f"bench-{tag}", "track": "latest", "aliases": ["Champion"], "wait_timeout_seconds": 120,
           "inference_table": {"catalog": "main", "schema": "monitoring", "prefix": f"bench_{tag}"},
           "smoke": [{"name": "one trip", "records": [{"trip_distance": 2.5, "passenger_count": 1, "pickup_hour": 9,
                                                       "pickup_zone": 3, "dropoff_zone": 7}],
                      "expect": {"prediction_type": "number", "min": 0}}],
           "strategy": strategy}
    return json.dumps({"version": 1, "models": [{"name": f"bench_{tag}", "environments": {"prod": env}}]})


STRATEGIES = {
    "direct": {"kind": "direct", "bake": "2s"},
    "canary": {"kind": "canary", "bake": "2s", "steps": [{"weight": 20, "bake": "3s"}, {"weight": 50, "bake": "3s"}],
               "analysis": {"delivery_delay": "1s", "min_requests": 10, "error_rate": {"margin": 0.3},
                            "latency": {"max_ratio": 20}, "prediction_shift": {"metric": "ks", "threshold": 0.9}}},
}


def run(rounds: int) -> list[dict[str, Any]]:
    from local.stack import platform

    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp, platform(Path(tmp) / "platform") as plat:
        for name, strategy in STRATEGIES.items():
            results.extend(_strategy(plat, Path(tmp) / name, name, strategy, rounds))
    return results


def _strategy(plat: Any, data: Path, name: str, strategy: dict[str, Any], rounds: int) -> list[dict[str, Any]]:
    from local.callers import Callers
    from local.stack import app_settings, function_host
    from local.taxi import train_and_register
    from shared.storage import open_tables
    from shared.workspace import workspace_client

    data.mkdir()
    (data / "policy.json").write_text(policy(name, strategy))
    settings = app_settings(data_dir=data, policy=data / "policy.json", mlflow_url=plat.mlflow.url,
                            workspace_url=plat.workspace.url, watch_schedule="0 0 0 1 1 *")
    model, endpoint = f"bench_{name}", f"bench-{name}"
    out = []
    with function_host(settings) as host:
        tables = open_tables(settings["REACTOR_STORAGE"], settings)
        def register(seed: int) -> str:
            # One at a time: the webhook's reconcile rolls out the latest version.
            with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
                return train_and_register(plat.mlflow.url, model_name=model, seed=seed, n=300)

        first = register(0)
        _deliver(host.url, model, first)  # the first version only creates the endpoint: not timed
        _ended(tables, endpoint, first)
        with Callers(workspace_client(), endpoint):
            for i in range(1, rounds + 1):
                v = register(i)
                t0 = _deliver(host.url, model, v)
                row = _ended(tables, endpoint, v)
                if row["status"] != "done":
                    raise SystemExit(f"{name}: version {v} ended {row['status']}: {row.get('reason')}")
                total = row["finished_at"] - t0
                parts = split(row)
                out.append({"strategy": name, "total": total, **parts,
                            "overhead": total - parts["updating"] - parts["bake"]})
    return out


def _deliver(url: str, model: str, version: str) -> float:
    """POST the signed webhook of a new version; when it was sent."""
    import requests

    from local.stack import WEBHOOK_SECRET
    from shared.signatures import mlflow_signature

    body = json.dumps({"entity": "model_version", "action": "created", "timestamp": f"2026-12-02T00:00:{version}Z",
                       "data": {"name": model, "version": version}}).encode()
    delivery, stamp = f"bench-{model}-{version}", str(int(time.time()))
    started = time.time()
    resp = requests.post(f"{url}/api/registry/webhook", data=body, timeout=30, headers={
        "Content-Type": "application/json", "X-MLflow-Delivery-Id": delivery, "X-MLflow-Timestamp": stamp,
        "X-MLflow-Signature": mlflow_signature(WEBHOOK_SECRET, delivery, stamp, body)})
    if resp.status_code != 202:
        raise SystemExit(f"the webhook answered {resp.status_code}: {resp.text}")
    return started


def _ended(tables: Any, endpoint: str, version: str) -> dict[str, Any]:
    from shared import rollouts

    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        rows = [r for r in rollouts.for_endpoint(tables, endpoint) if r.get("version") == version
                and r["status"] in rollouts.TERMINAL]
        if rows:
            return rows[-1]
        time.sleep(0.05)
    from shared import journal

    records = [(r["kind"], r["status"], r.get("reason") or r.get("outcome")) for r in journal.list_records(tables)]
    rows = [(r.get("version"), r["status"], r["step"]) for r in rollouts.for_endpoint(tables, endpoint)]
    raise SystemExit(f"{endpoint}: the rollout of version {version} did not end: rollouts {rows}, records {records}")


def table(results: list[dict[str, Any]], rounds: int) -> str:
    load = os.getloadavg()[0]
    head = (f"### Rollout overhead, direct vs canary (2026-12-02, {host_platform.machine()}, {os.cpu_count()} cores, "
            f"{sys.version.split()[0]}, local host + local workspace + mlflow server, {rounds} rollouts per strategy "
            f"under continuous callers, load average {load:.1f} at the end; run {datetime.now(UTC):%H:%M} UTC)\n\n")
    rows = ["| strategy | total s | endpoint updating s | bake s | analysis s | overhead s | overhead without "
            "analysis s | overhead vs direct |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    med = {}
    for name in STRATEGIES:
        got = [r for r in results if r["strategy"] == name]
        med[name] = {k: statistics.median(r[k] for r in got) for k in ("total", "updating", "bake", "analysis",
                                                                       "overhead")}
    for name, m in med.items():
        rows.append(f"| {name} | {m['total']:.2f} | {m['updating']:.2f} | {m['bake']:.2f} | {m['analysis']:.2f} | "
                    f"{m['overhead']:.2f} | {m['overhead'] - m['analysis']:.2f} | "
                    f"{m['overhead'] / med['direct']['overhead']:.2f}x |")
    note = ("\nMedians. Direct: 0% beside the champion, smoke, 100%, 2 s bake, old version removed (3 config writes). "
            "Canary: 20% and 50% steps of 3 s, each analysed after a 1 s delivery delay, then 100% and 2 s "
            "(5 config writes, 2 analyses of 3 statements each on the local warehouse).\n")
    return head + "\n".join(rows) + "\n" + note


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--write", action="store_true", help="append the table to docs/benchmarks.md")
    args = parser.parse_args(argv)
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    emit(table(run(args.rounds), args.rounds), args.write)
    return 0


if __name__ == "__main__":
    sys.exit(main())
