"""Benchmark: one canary analysis (``shared.delivery.measure.measure``) as the endpoint's payload
table grows.

The warehouse is the local workspace (``python -m local.workspace``, DuckDB over Delta tables) in
its own process, started afresh for each size, as in ``bench/drift.py``; this process is the
app's part (databricks-sdk, ``shared.statements``, ``shared.delivery.measure``) and only ever
receives aggregate rows. Timed: one ``measure()`` of the candidate against the champion over a
fixed 1 h window (12:00-13:00 UTC), its three statements polled as the app's next message would,
after one untimed statement (the arms of another hour), so the warehouse has opened the table's
files; then the monitor's statements for the champion's same window, binned and exact
(``timed_monitor_window``).

Data: an AI Gateway payload table (``local.workspace.inference_table.schema``, after
Databricks, "Monitor served models using AI Gateway-enabled inference tables",
https://docs.databricks.com/aws/en/ai-gateway/inference-tables) of ``--sizes`` rows, two served entities
(a canary at 10 %, the champion
at 90 %) over one day, appended in time order as the inference table receives them, in chunks of
at most 1 M rows. Each request is one taxi record in ``dataframe_records``; 99 % answer 200 with
one prediction, 0.5 % (candidate 1 %) 500, the rest 400; execution times are gamma-distributed,
the candidate's a little slower and its predictions shifted by 0.3 (sd 5).

Prints a Markdown table; ``--write`` appends it to docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from bench.drift import TOKEN, WAREHOUSE, Warehouse, spaced
from bench.report import emit, machine
from local.workspace.catalog import UnityCatalog
from local.workspace.inference_table import AI_GATEWAY, SERVED_ENTITIES, SERVED_ENTITIES_KIND, schema

DAY = datetime(2026, 12, 1, tzinfo=UTC).timestamp()
WINDOW = (DAY + 12 * 3600, DAY + 13 * 3600)
WARM_UP = (DAY + 3 * 3600, DAY + 4 * 3600)
CHUNK = 1_000_000
ENTITIES = {"e-champion": "1", "e-candidate": "2"}
CANDIDATE_SHARE = 0.1


def served_entities() -> pa.Table:
    when = pa.scalar(int(DAY * 1_000_000), pa.timestamp("us", "UTC"))
    rows = [{"served_entity_id": sid, "endpoint_name": "bench", "endpoint_id": "bench-id",
             "served_entity_name": f"taxi_fare-{v}", "entity_type": "CUSTOM_MODEL", "entity_name": "taxi_fare",
             "entity_version": v, "endpoint_config_version": 1, "change_time": when.as_py()}
            for sid, v in ENTITIES.items()]
    return pa.Table.from_pylist(rows, schema=schema(SERVED_ENTITIES_KIND))


def _text(*parts: Any) -> pa.Array:
    """Strings joined element-wise from literals and arrays (numbers cast to text)."""
    return pc.binary_join_element_wise(*(p if isinstance(p, str) else pc.cast(p, pa.string()) for p in parts), "")


def chunk(rng: np.random.Generator, first: int, n: int, t0: float, t1: float) -> pa.Table:
    """Rows ``first`` .. ``first + n`` of the payload table, their request times in [t0, t1), sorted."""
    candidate = rng.random(n) < CANDIDATE_SHARE
    draw = rng.random(n)
    status = np.where(draw < np.where(candidate, 0.01, 0.005), 500, np.where(draw < 0.01, 400, 200)).astype(np.int32)
    ok = status == 200
    ms = np.rint(rng.gamma(4.0, np.where(candidate, 3.3, 3.0), n)).astype(np.int64)
    ts = np.sort(rng.uniform(t0, t1, n))
    ids = pa.array(np.arange(first, first + n))
    prediction = pc.round(pa.array(rng.normal(15.0, 5.0, n) + np.where(candidate, 0.3, 0.0)), 4)
    record = _text('{"dataframe_records": [{"trip_distance": ', pc.round(pa.array(rng.lognormal(1.0, 0.6, n)), 2),
                   ', "passenger_count": ', pa.array(rng.integers(1, 5, n)), ', "pickup_hour": ',
                   pa.array(rng.integers(0, 24, n)), ', "pickup_zone": ', pa.array(rng.integers(1, 40, n)),
                   ', "dropoff_zone": ', pa.array(rng.integers(1, 40, n)), '}], "client_request_id": "c-', ids, '"}')
    answer = pc.if_else(pa.array(ok), _text('{"predictions": [', prediction, "]}"),
                        pa.array(np.where(status == 500, '{"error_code": "INTERNAL_ERROR", "message": "boom"}',
                                          '{"error_code": "BAD_REQUEST", "message": "bad input"}')))
    when = pa.array((ts * 1_000_000).astype(np.int64), pa.timestamp("us", "UTC"))
    columns = {
        "databricks_request_id": _text("req-", ids), "request_date": pc.cast(when, pa.date32()),
        "client_request_id": _text("c-", ids), "request_time": when, "status_code": pa.array(status),
        "sampling_fraction": pa.array(np.ones(n)),
        "execution_duration_ms": pa.array(ms, mask=status == 400),  # refused before scoring: no model time
        "request": record, "response": answer,
        "logging_error_codes": pa.array([[]] * n, pa.list_(pa.string())),
        "served_entity_id": pa.array(np.where(candidate, "e-candidate", "e-champion")),
        "requester": pa.array(["bench@example.com"] * n),
    }
    return pa.table(columns, schema=schema(AI_GATEWAY))


def write_payload(catalog: UnityCatalog, table: str, rows: int, seed: int) -> float:
    """The table of ``rows`` rows over the day; seconds taken."""
    started = time.perf_counter()
    rng = np.random.default_rng(seed)
    parts = -(-rows // CHUNK)
    for k in range(parts):
        first, n = k * CHUNK, min(CHUNK, rows - k * CHUNK)
        data = chunk(rng, first, n, DAY + 86400 * k / parts, DAY + 86400 * (k + 1) / parts)
        if k == 0:
            catalog.create_table(table, data, change_data_feed=True)
        else:
            catalog.append_rows(table, data)
    return time.perf_counter() - started


def poll(call: Callable[[], Any]) -> Any:
    """``call()`` again every 20 ms while a statement runs, as the app's next message would."""
    from shared import statements

    while True:
        try:
            return call()
        except statements.StatementPending:
            time.sleep(0.02)


def timed_measure(w: Any, table: str) -> tuple[float, Any]:
    """One measure() over ``WINDOW``; (seconds, figures)."""
    from shared.delivery.measure import measure

    cursor: dict[str, Any] = {}
    started = time.perf_counter()
    got = poll(lambda: measure(w, WAREHOUSE, table, "2", "1", *WINDOW, cursor, time.monotonic() + 60))
    return time.perf_counter() - started, got


def timed_monitor_window(w: Any, table: str, mode: str) -> tuple[float, int]:
    """The monitor's statements for the champion's ``WINDOW`` (``shared.monitoring.check``:
    drift of a request column, a categorical one and the prediction against the window before,
    in ``mode`` binned or exact; the row count; health), all submitted before any is awaited,
    as the check pass does; the baseline freeze before it is untimed. (seconds, window rows)."""
    from shared import drift, statements
    from shared.drift import binned
    from shared.monitoring import performance, relations
    from shared.monitoring.relations import Watched

    watched = [Watched("trip_distance", "numeric"), Watched("pickup_zone", "categorical")]
    records = relations.payload_records(table, watched, "numeric")
    reference = relations.window(records, "1", WINDOW[0] - 3600, WINDOW[0])
    current = relations.window(records, "1", *WINDOW)
    cols = [drift.Column(c.name, c.kind) for c in watched] + [drift.Column("__prediction", "numeric")]
    cursor: dict[str, Any] = {}
    frozen = drift.freeze(statements.rows(w, poll(lambda: statements.run(
        w, WAREHOUSE, drift.baseline_sql(reference, cols), cursor, "baseline", time.monotonic() + 60))), cols)
    texts = {"drift": binned.binned_sql(reference, current, cols, frozen) if mode == "binned"
             else drift.drift_sql(reference, current, cols, frozen),
             "agg": performance.aggregates_sql(current, {}), "health": relations.health(table, "1", *WINDOW)}
    started = time.perf_counter()
    done: dict[str, Any] = {}
    while len(done) < len(texts):
        for key, text in texts.items():
            if key not in done:
                with contextlib.suppress(statements.StatementPending):
                    done[key] = statements.rows(w, statements.run(w, WAREHOUSE, text, cursor, key, time.monotonic()))
        if len(done) < len(texts):
            time.sleep(0.02)  # stands in for the queue's next message, which polls the statements
    return time.perf_counter() - started, int(done["agg"][0][0])


def warm_up(w: Any, table: str) -> None:
    """The arms statement of another hour, so the fresh warehouse has opened the table's files."""
    from shared import statements
    from shared.delivery.measure import arms_sql

    cursor: dict[str, Any] = {}
    poll(lambda: statements.run(w, WAREHOUSE, arms_sql(table, "2", "1", *WARM_UP), cursor, "warm-up",
                                time.monotonic() + 60))


def main(argv: list[str] | None = None) -> int:
    from databricks.sdk import WorkspaceClient

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000,1000000,10000000", help="payload table rows, comma-separated")
    parser.add_argument("--generation-budget", type=float, default=600.0,
                        help="seconds: a size whose generation would take longer (10x the size before) is skipped")
    parser.add_argument("--write", action="store_true", help="append the table to docs/benchmarks.md")
    args = parser.parse_args(argv)
    sizes = sorted(int(s) for s in args.sizes.split(","))
    started = time.perf_counter()
    load = os.getloadavg()[0]
    results: list[dict[str, Any]] = []
    skipped: list[int] = []
    with tempfile.TemporaryDirectory(prefix="bench-analysis-") as tmp:
        root = Path(tmp) / "ws"
        catalog = UnityCatalog(root / "uc")
        catalog.create_table(SERVED_ENTITIES, served_entities())
        for n in sizes:
            if results and results[-1]["generate_s"] * n / results[-1]["rows"] > args.generation_budget:
                skipped.append(n)
                continue
            table = f"main.bench.payload_{n}"
            print(f"[bench] {spaced(n)} rows ...", file=sys.stderr, flush=True)
            generate_s = write_payload(catalog, table, n, seed=n)
            wh = Warehouse(root)
            try:
                w = WorkspaceClient(host=wh.url, token=TOKEN)
                warm_up(w, table)
                seconds, figures = timed_measure(w, table)
                analysis_peak = wh.peak_mib()
                monitor = {mode: timed_monitor_window(w, table, mode) for mode in ("binned", "exact")}
                results.append({"rows": n, "generate_s": generate_s, "measure_s": seconds, "figures": figures,
                                "warehouse_peak_mib": analysis_peak, "monitor": monitor,
                                "monitor_peak_mib": wh.peak_mib()})
            finally:
                wh.stop()
            catalog.drop_table(table)
    emit(section(results, skipped, load, time.perf_counter() - started), args.write)
    return 0


def section(results: list[dict[str, Any]], skipped: list[int], load: float, total_s: float) -> str:
    import duckdb

    base = results[0]["measure_s"]
    out = [
        f"### Canary analysis query ({machine()}, DuckDB {duckdb.__version__}, one `measure()` over a 1 h window "
        f"of a one-day AI Gateway "
        f"payload table, canary at 10 %, load average {load:.1f} at the start)",
        "",
        "| payload rows | rows in the window (candidate / champion) | measure s | vs 10 000 rows | payload rows/s | "
        "warehouse peak RSS MiB | PSI | KS D |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        f = r["figures"]
        out.append(
            f"| {spaced(r['rows'])} | {spaced(f.candidate.requests)} / {spaced(f.champion.requests)} | "
            f"{r['measure_s']:.2f} | {r['measure_s'] / base:.1f}x | {spaced(round(r['rows'] / r['measure_s']))} | "
            f"{r['warehouse_peak_mib']:.0f} | {f.psi:.4f} | {f.ks:.4f} |")
    out += ["", "The monitor's window of the same table (`shared.monitoring.check`: drift of `trip_distance`, "
            "`pickup_zone` and the prediction against the hour before, the row count and health, of the champion's "
            "1 h window; the three statements submitted before any is awaited; the baseline freeze untimed):", "",
            "| payload rows | rows in the window | binned s | exact s | binned vs 10 000 rows | "
            "warehouse peak RSS MiB (whole run) |", "|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        (b_s, n_window), (e_s, _) = r["monitor"]["binned"], r["monitor"]["exact"]
        out.append(f"| {spaced(r['rows'])} | {spaced(n_window)} | {b_s:.2f} | {e_s:.2f} | "
                   f"{b_s / results[0]['monitor']['binned'][0]:.1f}x | {r['monitor_peak_mib']:.0f} |")
    out += ["", "Generating the tables (numpy and pyarrow, Delta appends of 1 M rows): "
            + ", ".join(f"{spaced(r['rows'])} rows {r['generate_s']:.0f} s" for r in results) + "."]
    if skipped:
        out.append(f"Skipped (generation would exceed the budget): {', '.join(spaced(n) for n in skipped)} rows.")
    out += ["", f"Whole run: {total_s / 60:.1f} min."]
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    sys.exit(main())
