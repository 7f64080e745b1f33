"""Work that must not grow with history (issue 16, items 10 and 11): the repair sweep finds open
work by an index of it, retention deletes by a time-ordered index and keeps up with the
product's write rate, and one rollout's view reads that rollout's analysis runs only. Reads are
counted by bench.status_page.Counted around the real backends (SQLite, and Azurite where the
storage port is exercised directly)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from bench.status_page import Counted
from handlers import operators
from handlers.http_types import Request
from shared import rollouts
from shared.delivery import store as analyses
from tests.engine import ENDPOINT, MODEL, Driver


def test_one_rollouts_view_reads_its_own_analysis_runs_only(tmp_path: Path) -> None:
    d = Driver(tmp_path)
    d.registry.register()
    d.command({"command": "reconcile", "model": MODEL})
    d.run()
    (row,) = d.rollouts()
    for n in range(300):  # the endpoint's history: other rollouts' runs, before and after its own
        other = rollouts.rollout_id("history", str(n), "prod")
        for stage in (1, 2, 3):
            analyses.put(d.raw_tables, ENDPOINT, {"id": analyses.key(other, stage, 1), "rollout": other})
    own = [{"id": analyses.key(row["id"], stage, run), "rollout": row["id"]} for stage in (1, 2) for run in (1, 2)]
    for record in own:
        analyses.put(d.raw_tables, ENDPOINT, record)
    counted = Counted(d.deps.tables)
    resp = operators.list_rollouts(dataclasses.replace(d.deps, tables=counted),  # type: ignore[arg-type]
                                   Request("GET", b"", params={"endpoint": ENDPOINT, "rollout": row["id"]}))
    assert resp.status == 200 and resp.payload["analyses"] == own
    assert counted.entities == 1 + len(own), counted.entities  # the rollout row, then its runs
