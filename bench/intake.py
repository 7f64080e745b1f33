"""Benchmark: what one accepted webhook delivery costs before its 202, in process.

Side by side in one run: the webhook handler (signature check, parse, record, enqueue) on the
embedded SQLite backend and on Azure Storage (Azurite on loopback), and the baseline the
issue sets: an HMAC-SHA256 of the body plus one durable SQLite commit of one row, on the same
machine. For each: storage round trips per delivery (calls that reach the store, counted by a
wrapper around the real services), p50 latency and deliveries per second, sequential.
Prints a Markdown table; ``--write`` appends it to docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import logging
import platform
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.report import emit
from handlers import webhook
from handlers.deps import Deps
from handlers.http_types import Request
from local.azurite import Azurite
from local.stack import WEBHOOK_SECRET
from shared.settings import Settings
from shared.signatures import mlflow_signature
from shared.sqlite_db import SqliteDb
from shared.storage import open_queues, open_tables


class Counted:
    """Counts the calls that go to a real service (each is one round trip to the store)."""

    def __init__(self, inner: Any) -> None:
        self._inner, self.calls = inner, 0

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._inner, name)
        if not callable(attr):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            self.calls += 1
            return attr(*args, **kwargs)

        return call


def _deps(env: dict[str, str]) -> tuple[Deps, Counted, Counted]:
    settings = Settings.from_env(env)
    tables, queues = Counted(open_tables(settings.storage, env)), Counted(open_queues(settings.storage, env))
    deps = Deps(settings=settings, tables=tables, queues=queues, workspace=lambda: None,  # type: ignore[arg-type]
                registry=lambda: None)
    return deps, tables, queues


def _request(body: bytes) -> Request:
    delivery, ts = str(uuid.uuid4()), str(int(time.time()))
    return Request("POST", body, {"content-type": "application/json", "x-mlflow-delivery-id": delivery,
                                  "x-mlflow-timestamp": ts,
                                  "x-mlflow-signature": mlflow_signature(WEBHOOK_SECRET, delivery, ts, body)}, {})


def _body(i: int) -> bytes:
    return json.dumps({"entity": "model_version", "action": "created", "timestamp": f"2026-12-02T00:00:{i}Z",
                       "data": {"name": "bench_model", "version": str(i + 1)}}).encode()


def _time(n: int, one: Callable[[int], None]) -> list[float]:
    for i in range(20):  # warm-up
        one(10_000_000 + i)
    out = []
    for i in range(n):
        started = time.perf_counter()
        one(i)
        out.append((time.perf_counter() - started) * 1000)
    return out


def _webhook(env: dict[str, str], n: int) -> tuple[list[float], float]:
    deps, tables, queues = _deps(env)

    def one(i: int) -> None:
        answer = webhook.handle(deps, _request(_body(i)))
        assert answer.status == 202 and b"accepted" in answer.body, answer

    before = tables.calls + queues.calls
    times = _time(n, one)
    return times, (tables.calls + queues.calls - before) / (n + 20)


def _baseline(tmp: Path, n: int) -> list[float]:
    db = SqliteDb(str(tmp / "baseline.db"), "CREATE TABLE IF NOT EXISTS t (k TEXT PRIMARY KEY, v TEXT NOT NULL);")

    def one(i: int) -> None:
        body = _body(i)
        digest = hmac.new(WEBHOOK_SECRET.encode(), body, hashlib.sha256).hexdigest()
        with db.transaction() as conn:
            conn.execute("INSERT INTO t (k, v) VALUES (?, ?)", (uuid.uuid4().hex, digest))

    return _time(n, one)


def run(n: int) -> str:
    logging.getLogger("reactor").setLevel(logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp, Azurite() as az:
        policy = Path(tmp) / "policy.yaml"
        policy.write_text(json.dumps({"version": 1, "models": [{"name": "bench_model", "environments": {
            "prod": {"endpoint": "bench-endpoint"}}}]}))
        common = {"REACTOR_POLICY_FILE": str(policy), "MLFLOW_WEBHOOK_SECRET": WEBHOOK_SECRET}
        rows: list[tuple[str, list[float], float | None]] = []
        base = _baseline(Path(tmp), n)
        rows.append(("baseline: HMAC + one SQLite commit", base, None))
        sqlite_times, sqlite_trips = _webhook({**common, "REACTOR_STORAGE": f"sqlite:///{tmp}/reactor.db"}, n)
        rows.append(("webhook, SQLite", sqlite_times, sqlite_trips))
        azure_times, azure_trips = _webhook({**common, "REACTOR_STORAGE": "azure",
                                             "AzureWebJobsStorage": az.connection_string}, n)
        rows.append(("webhook, Azure Storage (Azurite)", azure_times, azure_trips))
    p50 = statistics.median(base)
    lines = [
        f"### Webhook intake in process ({datetime.now(UTC):%Y-%m-%d}, {platform.machine()}, "
        f"{platform.python_version()}, {n} accepted deliveries per case, sequential)",
        "",
        "| case | storage round trips per delivery | p50 ms | deliveries/s | p50 vs baseline |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, times, trips in rows:
        rate = len(times) / (sum(times) / 1000)
        lines.append(f"| {name} | {'n/a' if trips is None else f'{trips:.2f}'} | {statistics.median(times):.3f} | "
                     f"{rate:,.0f} | {statistics.median(times) / p50:.2f}x |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=2000)
    parser.add_argument("--write", action="store_true", help="append the table to docs/benchmarks.md")
    args = parser.parse_args()
    emit(run(args.n), args.write)


if __name__ == "__main__":
    main()
