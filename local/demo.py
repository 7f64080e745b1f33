"""The closed-loop demo: new model versions reach a serving endpoint with no person involved.

A real ``mlflow server`` sends signed webhooks to the real Function App (on the local host),
which rolls each version out to the local Databricks workspace through ``databricks-sdk``:

1. the taxi-fare model looks its pickup and dropoff zone features up by ID; version 1 is
   registered → the rollout turns on the feature tables' change data feed, creates the online
   store, publishes both tables and waits until they are in sync, then creates the endpoint,
   smoke-tests it with IDs-only requests, and points ``@Champion`` at 1;
2. a zone's features change in the source table → a ``publish_features`` command syncs them
   and the endpoint's predictions change with no redeploy;
3. version 2 goes out by canary while callers send trips: smoke-tested at 0% through its own
   served entity, then 10% and 50% of the traffic, each step's analysis (error rate, p95 latency,
   prediction shift against version 1 from the inference table) shown as it passes, then 100%,
   ``@Champion`` → 2 and version 1 removed;
4. version 3, whose model raises at predict time → its smoke query fails at 0% traffic, no caller
   is ever answered by it, and ``@Champion`` stays on 2; version 4 answers but its served entity
   errs on 30% of requests and adds 15 to its fares (local workspace faults) → its analysis fails
   at 10% and it is rolled back automatically, ``@Champion`` untouched;
5. monitoring closes the loop (``local/demo_loop.py``): traffic drifts, labels arrive late, the
   monitor retrains once, the retrained version 5 goes out by canary and becomes ``@Champion``, and
   its next window, against its own baseline, is ok.

It prints a timeline and a summary and exits 0 only if every expectation held.
Run with ``./dev demo``; ``./dev up`` (``--keep``) then leaves the stack running for a person to
try the status page and the ``reactor`` CLI against, until Ctrl-C (``local/keep.py``).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import logging
import os
import shutil
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from local.azurite import Azurite
from local.callers import Callers
from local.demo_loop import create_label_table, create_retraining_job, decisions, demo_policy, run_loop
from local.keep import try_it, until_interrupted
from local.stack import WEBHOOK_SECRET, WORKSPACE_TOKEN, app_settings, function_host, platform
from shared import journal, rollouts
from shared.delivery import store as analyses
from shared.monitoring.figures import figures_line
from shared.queues import COMMANDS_QUEUE, enqueue
from shared.settings import APP_ROOT
from shared.storage import open_queues, open_tables

MODEL = "taxi_fare"
ENDPOINT = "taxi-fare"
PICKUP = "main.taxi.pickup_zone_features"
DROPOFF = "main.taxi.dropoff_zone_features"


class Timeline:
    """Prints what happened, as it happens, from the app's own records."""

    def __init__(self, tables: Any) -> None:
        self.tables = tables
        self.decided = 0
        self.t0 = time.monotonic()
        self.seen: set[tuple[Any, ...]] = set()

    def say(self, who: str, text: str) -> None:
        print(f"[{time.monotonic() - self.t0:6.1f}s] {who:<9} {text}", flush=True)

    def poll(self) -> None:
        for rec in journal.list_records(self.tables):
            key = ("rec", rec["kind"], rec["id"], rec["status"])
            if key in self.seen:
                continue
            self.seen.add(key)
            ev = rec.get("event") or {}
            what = f"{ev.get('kind')} v{ev.get('version')}" if ev else (rec.get("command") or {}).get("command", "")
            outcome = rec.get("outcome")
            detail = rec.get("reason") or ("; ".join(outcome) if isinstance(outcome, list) else outcome or "")
            self.say(rec["kind"], f"{what} {rec['status']}" + (f": {detail}" if detail else ""))
        for row in rollouts.for_endpoint(self.tables, ENDPOINT):
            for h in row.get("history", []):
                key = ("step", row["id"], h["at"])
                if key in self.seen:
                    continue
                self.seen.add(key)
                self.say("rollout", f"v{row.get('version') or '?'} {h['step']}: {h['note']}")
        found = decisions(self.tables, ENDPOINT)
        for d in found[self.decided:]:
            window = d.get("window")
            start = time.strftime("%H:%M:%S", time.gmtime(window["start"])) if window else "-"
            self.say("monitor", f"v{d['version']} window {start}: {d['verdict']}: {d['reason']}")
            if d.get("figures") and d["verdict"] != "insufficient_data":
                self.say("", f"  {figures_line(d)}")
        self.decided = len(found)

    def wait(self, what: str, cond: Callable[[], bool], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.poll()
            if cond():
                return True
            time.sleep(0.2)
        self.poll()
        self.say("demo", f"gave up waiting for {what} after {timeout:.0f} s")
        return False


def _rollout_of(tables: Any, version: str) -> dict[str, Any] | None:
    rows = [r for r in rollouts.for_endpoint(tables, ENDPOINT) if r.get("version") == version]
    return rows[-1] if rows else None


def _ended(tables: Any, version: str) -> bool:
    row = _rollout_of(tables, version)
    return bool(row and row["status"] in rollouts.TERMINAL)


def _quietly(fn: Callable[..., str], *args: Any, **kwargs: Any) -> str:
    """MLflow prints run links and registration notes; the timeline says what matters."""
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        return fn(*args, **kwargs)


def run(data_dir: Path, storage: str = "sqlite", keep: bool = False, stack_only: bool = False, seed: int = 0) -> int:
    """The demo on SQLite, or on Azure Storage (Azurite, kept up until the summary is printed).

    With ``keep`` the stack stays up after the summary until Ctrl-C (``./dev up``); with
    ``stack_only`` the stack is set up (settings, policy, webhook, retraining job) but no version
    is registered. ``seed`` draws the monitoring half's client trips (local.demo_loop).
    """
    with contextlib.ExitStack() as stack:
        azure = stack.enter_context(Azurite()).connection_string if storage == "azurite" else None
        return _run(data_dir, azure, keep, stack_only, seed)


def _run(data_dir: Path, azure: str | None, keep: bool, stack_only: bool, seed: int) -> int:
    from mlflow import MlflowClient

    if data_dir.exists():
        shutil.rmtree(data_dir)
    data_dir.mkdir(parents=True)
    logging.basicConfig(filename=data_dir / "reactor.log", level=logging.INFO,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("mlflow").setLevel(logging.ERROR)
    checks: list[tuple[str, bool]] = []

    def expect(name: str, ok: bool) -> None:
        checks.append((name, ok))
        print(f"           {'✔' if ok else '✘'} {name}", flush=True)

    started = time.monotonic()
    print(f"ModelOps Reactor demo — data in {data_dir}", flush=True)
    with platform(data_dir) as plat:
        from databricks.sdk import WorkspaceClient

        job_id = create_retraining_job(WorkspaceClient(host=plat.workspace.url, token=WORKSPACE_TOKEN),
                                       "local-warehouse")
        create_label_table(plat.workspace.catalog)
        policy = demo_policy(APP_ROOT / "policy.yaml", data_dir / "policy.yaml", job_id)
        settings = app_settings(data_dir=data_dir, policy=policy, mlflow_url=plat.mlflow.url,
                                workspace_url=plat.workspace.url, watch_schedule="*/20 * * * * *", azure_storage=azure,
                                monitor_schedule="*/2 * * * * *")
        state = settings["REACTOR_STORAGE"]
        with function_host(settings) as host:
            tables, queues = open_tables(state, settings), open_queues(state, settings)
            tl = Timeline(tables)
            tl.say("demo", f"mlflow server {plat.mlflow.url}, workspace {plat.workspace.url}, host {host.url}")
            tl.say("demo", "state and queues in " + ("Azure Storage (Azurite, AzureWebJobsStorage)" if azure
                                                     else f"SQLite ({state.removeprefix('sqlite:///')})"))
            client = MlflowClient(plat.mlflow.url)
            client.create_webhook(name="modelops-reactor", url=f"{host.url}/api/registry/webhook",
                                  events=["model_version.created", "model_version_alias.created"],
                                  secret=WEBHOOK_SECRET)
            tl.say("demo", "webhook registered for model_version.created and model_version_alias.created")
            if not stack_only:
                _closed_loop(tl, expect, plat, host, tables, queues, client, job_id, seed)
            code = _summary(tables, checks, time.monotonic() - started, data_dir)
            if keep:
                until_interrupted(sys.stdout, try_it(
                    host_url=host.url, key=host.function_key, mlflow_url=plat.mlflow.url,
                    workspace_url=plat.workspace.url, settings=settings, data_dir=data_dir, model=MODEL,
                    environment="prod"))
            return code


def _closed_loop(tl: Timeline, expect: Callable[[str, bool], None], plat: Any, host: Any, tables: Any, queues: Any,
                 client: Any, job_id: int, seed: int) -> None:
    """Steps 1 to 5 of the module's docstring, each expectation reported through ``expect``."""
    from local.taxi import (
        make_zone_feature_tables,
        register_broken_version,
        request_records,
        train_and_register_with_features,
    )
    from shared.workspace import workspace_client

    w = workspace_client()

    def serving_version() -> str | None:
        """The version the endpoint serves alone (None while several are in its config)."""
        ep = w.serving_endpoints.get(ENDPOINT)
        versions = [e.entity_version for e in ep.config.served_entities] if ep.config else []
        return versions[0] if len(versions) == 1 else None

    def champion() -> str | None:
        return client.get_registered_model(MODEL).aliases.get("Champion")

    def predict(records: list[dict[str, Any]]) -> list[float]:
        return w.serving_endpoints.query(ENDPOINT, dataframe_records=records).predictions

    def predicts() -> bool:
        preds = predict(request_records(2))
        return len(preds) == 2 and all(p > 0 for p in preds)

    pickup_df, dropoff_df = make_zone_feature_tables()
    for table, frame in ((PICKUP, pickup_df), (DROPOFF, dropoff_df)):
        plat.workspace.catalog.create_table(table, frame, primary_keys=["zone_id"])
    tl.say("demo", f"feature tables {PICKUP} and {DROPOFF} written ({len(pickup_df)} zones; "
                   "change data feed off, nothing published)")
    trip = {"pickup_zone": int(pickup_df.zone_id.iloc[0]), "dropoff_zone": int(dropoff_df.zone_id.iloc[0]),
            "trip_distance": 3.0, "passenger_count": 1, "pickup_hour": 9}

    tl.say("demo", f"training and registering {MODEL} version 1 (zone features by ID)")
    v = _quietly(train_and_register_with_features, plat.mlflow.url, MODEL, PICKUP, DROPOFF, pickup_df,
                 dropoff_df, seed=1)
    ok = tl.wait(f"rollout of v{v}", lambda v=v: _ended(tables, v), 90)
    row = _rollout_of(tables, v) or {}
    expect(f"v{v} rollout done", ok and row.get("status") == "done")
    steps = [h["step"] for h in row.get("history", [])]
    expect(f"v{v}: features in sync before the endpoint was written",
           "features" in steps and "deploy" in steps and steps.index("features") < steps.index("deploy"))
    expect(f"endpoint serves v{v} and is READY",
           serving_version() == v and w.serving_endpoints.get(ENDPOINT).state.ready.value == "READY")
    expect(f"@Champion → v{v}", champion() == v)
    expect(f"v{v} answers IDs-only queries", predicts())
    before = predict([trip])[0]
    tl.say("client", f"{trip} → {before:.2f}")
    zone = pickup_df.iloc[0]
    # The zone now looks like the quietest, cheapest zone (say, the airport shuttle moved away).
    like = pickup_df.sort_values("avg_fare").iloc[0]
    changed = {"zone_id": int(zone.zone_id), "avg_fare": float(like.avg_fare),
               "trip_count": int(like.trip_count), "avg_distance": float(like.avg_distance)}
    plat.workspace.catalog.upsert_rows(PICKUP, [changed])
    tl.say("demo", f"pickup zone {changed['zone_id']} in the source: avg_fare {zone.avg_fare:.2f} → "
                   f"{changed['avg_fare']:.2f}, avg_distance {zone.avg_distance:.2f} → "
                   f"{changed['avg_distance']:.2f}; sending publish_features")
    enqueue(queues, COMMANDS_QUEUE, {"command": "publish_features", "model": MODEL, "table": PICKUP})
    ok = tl.wait("the change to reach predictions",
                 lambda: abs(predict([trip])[0] - before) > 1e-6, 30)
    tl.say("client", f"{trip} → {predict([trip])[0]:.2f}")
    expect("a source change shows up in predictions after the sync, with no redeploy", ok)

    with Callers(w, ENDPOINT) as callers:
        tl.say("client", "callers send trips to the endpoint from now on, one per request")
        tl.say("demo", f"training and registering {MODEL} version 2: it goes out by canary, 10% → 50% → "
                       "100%, each step judged against v1 from the inference table")
        v2 = _quietly(train_and_register_with_features, plat.mlflow.url, MODEL, PICKUP, DROPOFF, pickup_df,
                      dropoff_df, seed=2)
        ok = tl.wait(f"the canary of v{v2}", lambda: _ended(tables, v2), 120)
        row = _rollout_of(tables, v2) or {}
        runs = analyses.for_rollout(tables, ENDPOINT, row.get("id", ""))
        expect(f"v{v2} canary done", ok and row.get("status") == "done")
        # A step whose arms are still below min_requests is Inconclusive and extended (a slow
        # machine sends fewer requests per second), so each step's last run is its verdict.
        verdicts = {r["weight"]: r["phase"] for r in runs}
        expect(f"v{v2}'s analysis passed at 10% and at 50% (error rate, p95 latency, prediction shift)",
               verdicts == {10: "Successful", 50: "Successful"}
               and {r["phase"] for r in runs} <= {"Inconclusive", "Successful"})
        expect(f"endpoint serves v{v2} alone and @Champion → v{v2}", serving_version() == v2
               and champion() == v2)
        answered = callers.versions()
        expect(f"callers were answered by v1 and v{v2} during the canary", answered == {"1", v2})

        tl.say("demo", f"registering {MODEL} version 3, whose model raises at predict time")
        v3 = _quietly(register_broken_version, plat.mlflow.url, model_name=MODEL)
        ok = tl.wait(f"rollout of v{v3}", lambda: _ended(tables, v3), 90)
        row = _rollout_of(tables, v3) or {}
        expect(f"v{v3} failed its smoke query at 0% traffic",
               ok and row.get("status") == "failed" and "smoke query" in (row.get("reason") or "")
               and not row.get("took_traffic"))
        expect(f"no caller was ever answered by v{v3}", v3 not in callers.versions())
        expect("endpoint rolled back: v2 serves and @Champion still → v2",
               serving_version() == v2 and champion() == v2)

        tl.say("demo", f"registering {MODEL} version 4: it answers, but errs on 30% of requests and its "
                       "fares run 15 higher (faults the local workspace injects into its served entity)")
        v4 = _quietly(train_and_register_with_features, plat.mlflow.url, MODEL, PICKUP, DROPOFF, pickup_df,
                      dropoff_df, seed=4)
        plat.workspace.faults.entity_faults = {f"{MODEL}/{v4}": {"error_rate": 0.3, "bias": 15.0}}
        ok = tl.wait(f"the canary of v{v4}", lambda: _ended(tables, v4), 90)
        plat.workspace.faults.entity_faults = {}
        row = _rollout_of(tables, v4) or {}
        runs = analyses.for_rollout(tables, ENDPOINT, row.get("id", ""))
        expect(f"v{v4} failed its canary analysis at 10% and was rolled back automatically",
               ok and row.get("status") == "failed" and bool(runs) and runs[-1]["phase"] == "Failed"
               and {r["weight"] for r in runs} == {10} and "rolled back" in (row.get("reason") or ""))
        expect(f"endpoint serves v{v2} alone; @Champion untouched", serving_version() == v2
               and champion() == v2)
    expect("v2 still answers queries", predicts())
    tl.say("demo", f"retraining job {job_id} created; labels land in main.taxi.fare_labels")
    tl.say("demo", f"the clients' trips are drawn with seed {seed} (--seed draws others)")
    run_loop(tl, expect, ws=plat.workspace, w=w, tables=tables, queues=queues, host_url=host.url,
             endpoint=ENDPOINT, model=MODEL, champion=champion, serving_version=serving_version,
             ended=lambda v: _ended(tables, v), seed=seed)
    # Let the echo events (our own alias changes, a watcher tick) settle, then check the ledger.
    host.wait_idle(10)
    tl.poll()
    recs = journal.list_records(tables)
    open_recs = [r for r in recs if r["status"] not in journal.TERMINAL]
    expect("every accepted event and command reached a terminal state", not open_recs)
    per_version = [len([r for r in rollouts.for_endpoint(tables, ENDPOINT) if r.get("version") == v])
                   for v in ("1", "2", "3", "4", "5")]
    expect("exactly one rollout per version", per_version == [1, 1, 1, 1, 1])


def _summary(tables: Any, checks: list[tuple[str, bool]], elapsed: float, data_dir: Path) -> int:
    """The rollouts, records and monitor decisions the demo left; 0 only if every expectation held."""
    print("\nSummary")
    for row in rollouts.for_endpoint(tables, ENDPOINT):
        took = (row.get("finished_at") or row["updated_at"]) - row["created_at"]
        print(f"  v{row.get('version')}: {row['status']:<10} {took:5.1f}s  {row.get('reason') or ''}")
    by_status: dict[str, int] = {}
    for r in journal.list_records(tables):
        by_status[f"{r['kind']}/{r['status']}"] = by_status.get(f"{r['kind']}/{r['status']}", 0) + 1
    print(f"  records: {', '.join(f'{k} {n}' for k, n in sorted(by_status.items()))}")
    verdicts: dict[str, int] = {}
    for d in decisions(tables, ENDPOINT):
        verdicts[f"v{d['version']} {d['verdict']}"] = verdicts.get(f"v{d['version']} {d['verdict']}", 0) + 1
        if d.get("run"):
            run, rolled = d["run"], d.get("rollout") or {}
            print(f"  decision {d['id']}: retraining run {run.get('run_id')} {run.get('result', run.get('state'))}"
                  f" → v{rolled.get('version', '?')} {rolled.get('status', '')}")
    print(f"  monitor decisions: {', '.join(f'{k} {n}' for k, n in sorted(verdicts.items()))}")
    print(f"  structured log: {data_dir / 'reactor.log'}")
    passed = sum(ok for _, ok in checks)
    print(f"  {passed} of {len(checks)} expectations held in {elapsed:.0f} s")
    return 0 if passed == len(checks) else 1


def main() -> None:
    # The timeline is the demo's output; MLflow's own progress lines and third-party warnings
    # go to the log instead (they are set before mlflow is first imported).
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    warnings.simplefilter("ignore")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=APP_ROOT / ".local" / "demo")
    parser.add_argument("--storage", choices=("sqlite", "azurite"), default="sqlite",
                        help="where state and queues live: an SQLite file (default) or Azure Storage on Azurite")
    parser.add_argument("--keep", action="store_true",
                        help="leave the stack running after the demo, print the status page's URL and key and the "
                             "reactor commands to try, until Ctrl-C (what ./dev up does)")
    parser.add_argument("--stack-only", action="store_true",
                        help="set the stack up and register no model version (skips the demo's scenario)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the monitoring half's client trips")
    args = parser.parse_args()
    try:
        code = run(args.data_dir.resolve(), args.storage, keep=args.keep, stack_only=args.stack_only, seed=args.seed)
    except KeyboardInterrupt:  # Ctrl-C before the summary: the with blocks above have stopped the stack
        print("\ninterrupted; the stack is stopped", file=sys.stderr)
        code = 130
    sys.exit(code)


if __name__ == "__main__":
    main()
