"""Benchmark: what a repair sweep tick costs as the finished history grows, and what it does to
the operators' views while it runs.

Side by side in one run, on the embedded SQLite backend: a journal of 10,000 and one of 100,000
finished records (events and commands, inside the retention horizon, so none is due), each with
the same 20 open commands whose claims are held, and the endpoint's 10 rollouts and a day of
monitor decisions (bench.status_page's small history). For each: entities and pages a tick
reads (counted by bench.status_page.Counted around the real service), p50 time of a tick, and
p50 and p95 of ``shared.overview.status`` (``GET /api/status``) idle and while another thread
of the same process runs ticks back to back, as the Functions worker runs the timer beside
HTTP calls; ratio = large / small. Measured after the one-off migration of the records to the
journal's indexes (handlers/repair.py), whose ticks are counted. Prints a Markdown table; ``--write`` appends it to
docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import status_page
from bench.report import emit, machine
from bench.status_page import Counted
from handlers import repair
from handlers.deps import Deps
from shared import journal, overview
from shared.policy import load_policy
from shared.queues.sqlite import SqliteQueueService
from shared.settings import APP_ROOT, Settings
from shared.tables.sqlite import SqliteTableService

OPEN = 20


def seed(tables: SqliteTableService, finished: int) -> None:
    """``finished`` terminal records, half events and half commands, then ``OPEN`` open commands
    whose claims are held (the sweep reads them and leaves them)."""
    with tables.db.transaction():  # one commit: seeding 100,000 records one by one takes minutes
        for i in range(finished):
            kind = ("event", "command")[i % 2]
            journal.record(tables, kind, journal.key("bench", str(i)), "done", reason="history")
        for i in range(OPEN):
            journal.begin(tables, "command", journal.key("open", str(i)), now=time.time() + 10**9, claim_seconds=45)


def times(fn: Callable[[], Any], repeat: int) -> list[float]:
    took = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        took.append(time.perf_counter() - t0)
    return took


def p50(fn: Callable[[], Any], repeat: int) -> float:
    return statistics.median(times(fn, repeat))


def quantiles(took: list[float]) -> tuple[float, float]:
    """p50 and p95."""
    cuts = statistics.quantiles(took, n=20)
    return statistics.median(took), cuts[18]


def during(background: Callable[[], Any], fn: Callable[[], Any], repeat: int) -> list[float]:
    """Times of ``fn`` while another thread runs ``background`` over and over."""
    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            background()

    worker = threading.Thread(target=loop, daemon=True)
    worker.start()
    try:
        return times(fn, repeat)
    finally:
        stop.set()
        worker.join()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs=2, default=(10_000, 100_000))
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    policy_file = APP_ROOT / "policy.yaml"
    policy = load_policy(policy_file)
    mp = policy.model(status_page.MODEL)
    assert mp is not None, f"{status_page.MODEL} is not in policy.yaml"
    results: dict[int, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.sizes:
            path = Path(tmp) / f"{size}.db"
            tables = SqliteTableService(str(path))
            seed(tables, size)
            status_page.seed(tables, mp.environments[status_page.ENVIRONMENT].endpoint, 10, 24, time.time())
            settings = Settings.from_env({"REACTOR_STORAGE": f"sqlite:///{path}",
                                          "REACTOR_POLICY_FILE": str(policy_file), "MLFLOW_WEBHOOK_SECRET": "bench"})
            deps = Deps(settings, tables, SqliteQueueService(str(path)), lambda: None, lambda: None)
            migration = 0
            while not (mark := tables.get(repair.STATE, "repair", "indexes")) or not mark.data.get("done"):
                repair.tick(deps)  # the one-off migration to the journal's indexes, a page per tick
                migration += 1
            counted = Counted(tables)
            repair.tick(Deps(settings, counted, deps.queues, deps.workspace, deps.registry))  # type: ignore[arg-type]
            status: Callable[[], Any] = lambda t=tables: overview.status(t, policy)  # noqa: E731
            idle, busy = quantiles(times(status, 5 * args.repeat)), quantiles(
                during(lambda d=deps: repair.tick(d), status, 5 * args.repeat))
            results[size] = {"reads": counted.entities, "pages": counted.pages, "migration": migration,
                             "tick": p50(lambda d=deps: repair.tick(d), args.repeat),
                             "idle50": idle[0], "idle95": idle[1], "busy50": busy[0], "busy95": busy[1]}
    small, large = (results[s] for s in args.sizes)
    lines = [f"### Repair sweep tick as the finished history grows ({machine()}, SQLite)", "",
             f"`python -m bench.repair`: {OPEN} open commands beside {args.sizes[0]:,} and {args.sizes[1]:,} "
             f"finished records; entities and pages one tick reads, p50 of {args.repeat} ticks, and p50/p95 of "
             f"{5 * args.repeat} `overview.status` (`GET /api/status`) idle and while another thread runs ticks "
             "back to back; ratio = large / small.", "",
             f"| measure | {args.sizes[0]:,} finished | {args.sizes[1]:,} finished | ratio |",
             "|---|---:|---:|---:|"]
    for label, key, scale in (("ticks of the one-off index migration", "migration", 1),
                              ("entities read per tick", "reads", 1), ("pages read per tick", "pages", 1),
                              ("tick p50 (ms)", "tick", 1000), ("status p50 idle (ms)", "idle50", 1000),
                              ("status p95 idle (ms)", "idle95", 1000),
                              ("status p50 during ticks (ms)", "busy50", 1000),
                              ("status p95 during ticks (ms)", "busy95", 1000)):
        a, b = small[key] * scale, large[key] * scale
        fmt = "{:.0f}" if scale == 1 else "{:.2f}"
        lines.append(f"| {label} | {fmt.format(a)} | {fmt.format(b)} | {b / a if a else float('nan'):.2f}x |")
    emit("\n".join(lines) + "\n", args.write)


if __name__ == "__main__":
    main()
