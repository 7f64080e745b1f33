"""Benchmark: what one run of the repair sweep's history retention reads as the history grows.

Side by side in one run, on the embedded SQLite backend: one endpoint (bench.status_page's) with
10,000 and with 100,000 finished rollouts, monitor decisions and judged windows inside their
retention horizons, beside the same ``DUE`` rollouts (each with an analysis run), decisions and
windows past them. For each: entities and pages one run of ``handlers.repair._expire_history``
reads (counted by bench.status_page.Counted around the real service), what it deleted, and its
time; ratio = large / small. Everything is written by the product's own writers
(``shared.rollouts.claim``/``finish``, ``shared.monitoring.store``), so the rows carry whatever
index those write. Prints a Markdown table; ``--write`` appends it to docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from bench import status_page
from bench.report import emit, machine
from bench.status_page import Counted
from handlers import repair
from handlers.deps import Deps
from shared import rollouts
from shared.delivery import store as analyses
from shared.monitoring import store as monitor_store
from shared.policy import load_policy
from shared.queues.sqlite import SqliteQueueService
from shared.settings import APP_ROOT, Settings
from shared.tables.sqlite import SqliteTableService

DUE = 50
DAY = 86400.0


def seed(tables: SqliteTableService, endpoint: str, kept: int, now: float) -> None:
    """``DUE`` rollouts, decisions and windows past their horizons, then ``kept`` of each inside."""
    with tables.db.transaction():  # one commit: seeding 100,000 of each one by one takes minutes
        for i in range(DUE + kept):
            at = now - (100 * DAY if i < DUE else DAY) + i
            rid = rollouts.rollout_id("bench", str(i), status_page.ENVIRONMENT)
            rollouts.claim(tables, endpoint, rid, {"model": status_page.MODEL, "version": str(i),
                                                   "target": {"served_entities": []}}, now=at)
            if i < DUE:
                analyses.put(tables, endpoint, {"id": analyses.key(rid, 1, 1), "rollout": rid, "finished_at": at})
            entity = rollouts.get(tables, endpoint, rid)
            assert entity is not None
            rollouts.finish(tables, entity, "", now=at, status="done", reason="history")
            at = now - (40 * DAY if i < DUE else DAY) + i
            monitor_store.record_decision(tables, endpoint, {"verdict": "ok"}, now=at)
            monitor_store.save_window(tables, endpoint, "1", at - 3600, {"start": at - 3600, "end": at})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs=2, default=(10_000, 100_000))
    parser.add_argument("--label", default="", help="what code ran, for the heading")
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    policy_file = APP_ROOT / "policy.yaml"
    mp = load_policy(policy_file).model(status_page.MODEL)
    assert mp is not None, f"{status_page.MODEL} is not in policy.yaml"
    endpoint = mp.environments[status_page.ENVIRONMENT].endpoint
    results: dict[int, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.sizes:
            path = Path(tmp) / f"{size}.db"
            tables = SqliteTableService(str(path))
            now = time.time()
            t0 = time.perf_counter()
            seed(tables, endpoint, size, now)
            seeded = time.perf_counter() - t0
            settings = Settings.from_env({"REACTOR_STORAGE": f"sqlite:///{path}",
                                          "REACTOR_POLICY_FILE": str(policy_file), "MLFLOW_WEBHOOK_SECRET": "bench"})
            counted = Counted(tables)
            deps = Deps(settings, counted, SqliteQueueService(str(path)), lambda: None, lambda: None)  # type: ignore[arg-type]
            t0 = time.perf_counter()
            deleted = repair._expire_history(deps, now)
            took = time.perf_counter() - t0
            results[size] = {"reads": counted.entities, "pages": counted.pages, "deleted": deleted,
                             "run": took * 1000, "seed": seeded}
    small, large = (results[s] for s in args.sizes)
    lines = [f"### History retention as the history grows{' (' + args.label + ')' if args.label else ''} "
             f"({machine()}, SQLite)", "",
             f"`python -m bench.retention`: one endpoint with {args.sizes[0]:,} and {args.sizes[1]:,} finished "
             f"rollouts, decisions and windows inside their horizons beside {DUE} of each past them (the rollouts "
             "with an analysis run each); one run of the sweep's history retention; ratio = large / small.", "",
             f"| measure | {args.sizes[0]:,} | {args.sizes[1]:,} | ratio |", "|---|---:|---:|---:|"]
    for label, key, fmt in (("entities read", "reads", "{:.0f}"), ("pages read", "pages", "{:.0f}"),
                            ("rows deleted (rollouts, decisions, windows)", "deleted", "{:.0f}"),
                            ("run (ms)", "run", "{:.1f}")):
        a, b = small[key], large[key]
        lines.append(f"| {label} | {fmt.format(a)} | {fmt.format(b)} | {b / a if a else float('nan'):.2f}x |")
    emit("\n".join(lines) + "\n", args.write)


if __name__ == "__main__":
    main()
