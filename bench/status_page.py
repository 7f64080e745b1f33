"""Benchmark: what the operators' views cost as the history grows.

Side by side in one run, on the embedded SQLite backend: a small history (10 rollouts, a day of
hourly monitor decisions) and the issue's large one (1,000 rollouts, a year of hourly decisions),
each rendering the status page's model view (first page of 50 rollouts, the newest 48 decisions
plotted), its overview, and ``shared.overview.status`` (the CLI's ``reactor status`` and ``GET
/api/status``). For each: entities read from storage (counted by a wrapper around the real
service), p50 time over the repetitions, and the large history's time as a ratio of the small
one's. Bounded queries mean the reads stay the same however long the history.
Prints a Markdown table; ``--write`` appends it to docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.report import emit
from handlers.pages import model as model_page
from handlers.pages import overview as overview_page
from shared import overview, rollouts
from shared.monitoring import store as monitor_store
from shared.monitoring.decide import Figure
from shared.policy import load_policy
from shared.settings import APP_ROOT
from shared.tables import Entity, Page, RowRange, TableService
from shared.tables.sqlite import SqliteTableService

HOUR = 3600.0
MODEL, ENVIRONMENT = "taxi_fare", "prod"


class Counted:
    """The real service, counting the entities its reads return and the pages read; writes pass
    through. tests/test_status_page.py asserts its counts."""

    query = TableService.query  # pages through self.query_page, so every page is counted

    def __init__(self, inner: TableService) -> None:
        self.inner, self.entities, self.pages = inner, 0, 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def get(self, table: str, partition_key: str, row_key: str) -> Entity | None:
        self.entities += 1
        return self.inner.get(table, partition_key, row_key)

    def query_page(self, table: str, partition_key: str | None = None, *, limit: int = 1000,
                   continuation: str | None = None, rows: RowRange | None = None) -> Page:
        got = self.inner.query_page(table, partition_key, limit=limit, continuation=continuation, rows=rows)
        self.entities, self.pages = self.entities + len(got.entities), self.pages + 1
        return got


def seed(tables: TableService, endpoint: str, n_rollouts: int, n_hours: int, now: float) -> None:
    for i in range(n_rollouts):
        rid = rollouts.rollout_id("bench", str(i), ENVIRONMENT)
        at = now - (n_rollouts - i) * 600
        rollouts.claim(tables, endpoint, rid, {"model": MODEL, "environment": ENVIRONMENT, "version": str(i + 1),
                                               "target": {"served_entities": []}}, now=at)
        entity = rollouts.get(tables, endpoint, rid)
        assert entity is not None
        rollouts.finish(tables, entity, "", now=at + 60, status="failed" if i % 10 == 3 else "done",
                        reason=f"rollout {i}")
    for i in range(n_hours):
        end = now - (n_hours - i - 1) * HOUR
        figures = [Figure(f"psi({c})", 0.01 * (i % 30), 0.25, 0.2, "above", 500, "ok", f"psi({c})").as_dict()
                   for c in ("trip_distance", "pickup_zone", "pickup_hour")]
        monitor_store.record_decision(tables, endpoint, {
            "model": MODEL, "environment": ENVIRONMENT, "version": "1", "verdict": "ok", "reason": "no window violates",
            "action": None, "figures": figures, "window": {"start": end - HOUR, "end": end}, "windows": []}, now=end)


def timed(fn: Callable[[Any], Any], tables: TableService, repeat: int) -> float:
    took = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn(tables)
        took.append(time.perf_counter() - t0)
    return statistics.median(took)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    policy = load_policy(APP_ROOT / "policy.yaml")
    mp = policy.model(MODEL)
    assert mp is not None, f"{MODEL} is not in policy.yaml"
    endpoint = mp.environments[ENVIRONMENT].endpoint
    sizes = {"small (10 rollouts, 24 h)": (10, 24), "large (1,000 rollouts, 365 days)": (1000, 365 * 24)}
    views: dict[str, Callable[[TableService], Any]] = {
        "status page: model view": lambda t: model_page.render(t, policy, MODEL, ENVIRONMENT, limit=50,
                                                               continuation=None, older=None),
        "status page: overview": lambda t: overview_page.render(t, overview.status(t, policy)),
        "overview.status (CLI, /api/status)": lambda t: overview.status(t, policy),
    }
    results: dict[tuple[str, str], tuple[int, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for label, (n_rollouts, n_hours) in sizes.items():
            tables = SqliteTableService(str(Path(tmp) / f"{n_rollouts}.db"))
            seed(tables, endpoint, n_rollouts, n_hours, time.time())
            for view, fn in views.items():
                counted = Counted(tables)
                fn(counted)  # type: ignore[arg-type]
                results[(view, label)] = (counted.entities, timed(fn, tables, args.repeat))
    small, large = sizes
    lines = [f"### Operators' views as the history grows ({datetime.now(UTC):%Y-%m-%d}, {platform.node()}, "
             f"{platform.processor() or platform.machine()}, Python {platform.python_version()}, SQLite)", "",
             "`python -m bench.status_page`: entities read per render and p50 of "
             f"{args.repeat} renders; ratio = large / small.", "",
             "| view | reads, small | reads, large | p50 small (ms) | p50 large (ms) | ratio |",
             "|---|---:|---:|---:|---:|---:|"]
    for view in views:
        (rs, ts), (rl, tl) = results[(view, small)], results[(view, large)]
        lines.append(f"| {view} | {rs} | {rl} | {ts * 1000:.1f} | {tl * 1000:.1f} | {tl / ts:.2f}x |")
    emit("\n".join(lines) + "\n", args.write)


if __name__ == "__main__":
    main()
