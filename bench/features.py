"""Benchmark: publishing feature tables to online stores, and serving latency with feature lookup.

Everything runs on this machine against the local workspace (``local.workspace``), the real
databricks-sdk and the real database servers (PostgreSQL and MariaDB on loopback), in one run:

1. Publishing: one feature table (``--rows`` rows, default 1 M: an int64 key, three doubles, two
   int64s and a string) copied online, and then an incremental sync of ``--changes`` upserts
   (``ws.catalog.upsert_rows``: a Delta MERGE; nine tenths update existing keys, one tenth are new
   keys). Two methods, each on the stores it can write to:

   - the workspace's Online Feature Store pipeline (``feature_store.publish_table``, TRIGGERED;
     timed from the publish call until ``database.get_synced_database_table`` shows the source's
     version), into SQLite and PostgreSQL (one local workspace per ``online_store_url``);
   - the app's own third-party publisher (``shared.features.ensure`` with an ``rdbms`` store, one
     pass per step as the rollout's features step makes them, with the app's default 20 s step
     budget, until the table is ready; it reads the source through the SQL Statement Execution
     API in chunks, and a statement still running is polled again on the next pass) into SQLite,
     PostgreSQL and MariaDB.

   Reported: seconds, rows/s and the ratio to the fastest case; for the app publisher also the share
   of its time spent reading the source (the statement and its result chunks, over HTTP) and writing
   the store. The pipeline's provisioning delay (a fault setting, 0.1 s by default) is set to 0.

2. Endpoint latency through ``w.serving_endpoints.query`` with 1 and with 100 records per request:
   the taxi fare model without feature lookup (the client sends every feature) as the baseline,
   the taxi model with pickup/dropoff zone lookups (two tables) in the workspace's SQLite online
   store (published by its pipeline) and in PostgreSQL, and the Titanic model (one table, seven
   features) reading MariaDB. Cases take turns request by request after a warm-up.

Models live in a ``sqlite:///`` MLflow registry in a temporary directory. Every table created in
PostgreSQL and MariaDB is dropped at the end (staging tables of every copy run included), with
the sync watermarks and writer claims written there.
Prints Markdown tables; ``--write`` appends them to docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import platform
import random
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench.report import emit
from local import taxi, titanic
from local.services import ensure_mariadb, ensure_postgres
from local.stack import WORKSPACE_TOKEN
from local.workspace import LocalWorkspace
from local.workspace.online_catalog import OnlineTableRef
from shared.features import ensure
from shared.online_store import CLAIMS, SYNC_STATE, OnlineStore, physical_name
from shared.policy import Features, FeatureTable, RdbmsStore
from shared.workspace import _workspace_client

WAREHOUSE = "local-warehouse"
STORE = "bench-online"
STEP_BUDGET_SECONDS = 20.0  # the app's default FEATURE_STEP_BUDGET_SECONDS
PENDING_POLL_SECONDS = 0.1  # pause before the pass after one that found a statement still running
PENDING_TIMEOUT_SECONDS = 600.0  # an app publisher pending this long in a row fails the run
STORE_SETTING = "BENCH_FEATURES_URL"  # the app setting the rdbms store's connection_setting names
KEY = "customer_id"
TITANIC_ENV = "TITANIC_FEATURES_URL"


# ---------------------------------------------------------------------------------- data
def feature_frame(n: int, seed: int = 0) -> pd.DataFrame:
    """A customer feature table: int64 key + 3 doubles, 2 int64s and a short string."""
    rng = np.random.default_rng(seed)
    segments = np.array(["new", "casual", "regular", "loyal", "vip", "dormant"], dtype=object)
    return pd.DataFrame({
        KEY: np.arange(1, n + 1, dtype="int64"),
        "avg_order_value": np.round(rng.lognormal(3.5, 0.6, n), 2),
        "orders_30d": rng.poisson(2.0, n).astype("int64"),
        "days_since_last_order": rng.integers(0, 365, n).astype("int64"),
        "churn_score": np.round(rng.random(n), 4),
        "lifetime_value": np.round(rng.lognormal(6.0, 1.0, n), 2),
        "segment": segments[rng.integers(0, len(segments), n)],
    })


def changed_rows(frame: pd.DataFrame, k: int, seed: int = 1) -> list[dict[str, Any]]:
    """``k`` upserts: nine tenths update existing keys (new churn score and order count), the rest
    are new keys past the end of the table."""
    rng = np.random.default_rng(seed)
    n_new = k // 10
    updated = frame.iloc[np.sort(rng.choice(len(frame), k - n_new, replace=False))].copy()
    updated["churn_score"] = np.round(rng.random(len(updated)), 4)
    updated["orders_30d"] = updated["orders_30d"] + 1
    new = feature_frame(n_new, seed=seed + 1)
    new[KEY] = np.arange(len(frame) + 1, len(frame) + n_new + 1, dtype="int64")
    both = pd.concat([updated, new], ignore_index=True)
    return [{c: (v.item() if hasattr(v, "item") else v) for c, v in row.items()} for row in both.to_dict("records")]


# ---------------------------------------------------------------------------------- publishing
@dataclass
class Publish:
    method: str
    store: str
    full_s: float
    incr_s: float
    read_s: float | None = None  # app publisher: statement + result chunks (full copy)
    write_s: float | None = None  # app publisher: store upserts + replace (full copy)
    steps: int | None = None  # app publisher: ensure passes for the full copy


def _wait(what: str, cond: Callable[[], Any], timeout: float, every: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = cond()
        if got:
            return got
        time.sleep(every)
    raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")


def _synced_version(w: Any, online: str) -> int | None:
    status = w.database.get_synced_database_table(online).data_synchronization_status
    state = status.detailed_state.value if status and status.detailed_state else ""
    if "FAILED" in state:
        raise RuntimeError(f"{online}: {state}: {status.message}")
    last = status.last_sync if status else None
    info = last.delta_table_sync_info if last else None
    return info.delta_commit_version if info else None


def pipeline_publish(w: Any, source: str, online: str, version: int) -> float:
    """Seconds from ``publish_table`` until the online table holds ``version`` of the source."""
    from databricks.sdk.service import ml

    started = time.perf_counter()
    w.feature_store.publish_table(source, ml.PublishSpec(online_store=STORE, online_table_name=online,
                                                         publish_mode=ml.PublishSpecPublishMode.TRIGGERED))
    _wait(f"{online} at version {version}", lambda: _synced_version(w, online) == version, 600)
    return time.perf_counter() - started


def ensure_online_store(w: Any) -> None:
    from databricks.sdk.service import ml

    w.feature_store.create_online_store(ml.OnlineStore(name=STORE, capacity="CU_1"))
    _wait("the online store", lambda: w.feature_store.get_online_store(STORE).state.value == "AVAILABLE", 30)


class _Clock:
    """Adds the time spent in wrapped calls to ``spent``."""

    def __init__(self) -> None:
        self.spent = 0.0

    def wrap(self, fn: Callable[..., Any], when: Callable[..., bool] | None = None) -> Callable[..., Any]:
        """``fn`` timed (only the calls whose arguments ``when`` accepts, if given)."""
        def timed(*args: Any, **kwargs: Any) -> Any:
            if when is not None and not when(*args):
                return fn(*args, **kwargs)
            started = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.spent += time.perf_counter() - started
        return timed


def app_publish(w: Any, url: str, table: FeatureTable) -> tuple[float, float, float, int]:
    """One sync of ``table`` to the store at ``url`` through ``shared.features.ensure``, pass after
    pass until it is ready: (seconds, of which reading the source, of which writing the store,
    passes). ``ensure`` opens the store itself at every pass, so the store's upserts and replace are
    timed on the class, for the stores at ``url`` only."""
    features = Features(store=RdbmsStore(kind="rdbms", connection_setting=STORE_SETTING), publish_mode="triggered",
                        tables=[table])
    settings = {STORE_SETTING: url}
    read, write = _Clock(), _Clock()
    api = w.statement_execution
    saved = api.execute_statement, api.get_statement, api.get_statement_result_chunk_n
    saved_store = OnlineStore.upsert, OnlineStore.replace
    api.execute_statement, api.get_statement, api.get_statement_result_chunk_n = (read.wrap(f) for f in saved)
    OnlineStore.upsert, OnlineStore.replace = (write.wrap(f, lambda store, *_: store.url == url)
                                               for f in saved_store)
    runs: set[str] = set()  # copy runs seen, whose staging tables go if a run stops half-way
    try:
        started = time.perf_counter()
        cursors: dict[str, Any] = {}
        steps, pending_since = 0, None
        while True:
            (status,) = ensure(w, WAREHOUSE, features, settings, cursors, now=time.time(),
                               budget_seconds=STEP_BUDGET_SECONDS)
            steps += 1
            if status.state == "ready":
                return time.perf_counter() - started, read.spent, write.spent, steps
            if status.state == "failed" or status.cursor is None:  # no cursor: another writer's claim
                raise RuntimeError(f"{table.source} to {url}: {status.state}: {status.note}")
            runs.update([status.cursor["run"]] if "run" in status.cursor else [])
            cursors = {table.source: status.cursor}
            if status.state != "pending":
                pending_since = None
                continue
            # A statement still running (polled again on the next pass), or the store unreachable.
            pending_since = pending_since or time.monotonic()
            if time.monotonic() - pending_since > PENDING_TIMEOUT_SECONDS:
                raise TimeoutError(f"{table.source} to {url}: pending for {PENDING_TIMEOUT_SECONDS:.0f} s: "
                                   f"{status.note}")
            time.sleep(PENDING_POLL_SECONDS)
    finally:
        api.execute_statement, api.get_statement, api.get_statement_result_chunk_n = saved
        OnlineStore.upsert, OnlineStore.replace = saved_store
        if runs:
            with contextlib.suppress(Exception), OnlineStore(url) as store:
                for run in runs:
                    store.drop_staging(run)


def _check(url: str, physical: str, expected: int, changed: dict[str, Any] | None = None) -> None:
    with OnlineStore(url) as store:
        count = store.count(physical)
        assert count == expected, f"{url} {physical}: {count} rows, expected {expected}"
        if changed is not None:
            row = store.lookup(physical, [KEY], [(changed[KEY],)])[0]
            assert row is not None and abs(float(row["churn_score"]) - changed["churn_score"]) < 1e-9, row


def run_publishing(tmp: Path, registry: str, n: int, k: int, urls: dict[str, str], tag: str,
                   cleanup: contextlib.ExitStack) -> list[Publish]:
    frame = feature_frame(n)
    changes = changed_rows(frame, k)
    probe = changes[0]  # an updated key
    source = f"main.bench_{tag}.customer_features"
    pipeline_online = f"{source}_ofs"  # the app publisher writes <source>_online
    table = FeatureTable(source=source, primary_keys=[KEY])
    results: list[Publish] = []

    workspaces = {"SQLite": f"sqlite:///{tmp / 'ws-sqlite-online.sqlite'}", "PostgreSQL": urls["PostgreSQL"]}
    for store_name, store_url in workspaces.items():
        ws = LocalWorkspace(port=0, token=WORKSPACE_TOKEN, registry_uri=registry,
                            data_dir=tmp / f"ws-{store_name.lower()}", online_store_url=store_url)
        ws.faults.sync_provisioning_seconds = 0.0
        ws.faults.store_provisioning_seconds = 0.0
        ws.start()
        try:
            w = _workspace_client(ws.url, WORKSPACE_TOKEN, 20.0)
            ws.catalog.create_table(source, frame, primary_keys=[KEY], change_data_feed=True)
            ensure_online_store(w)
            cleanup.callback(_drop, store_url, physical_name(pipeline_online))
            full = pipeline_publish(w, source, pipeline_online, 0)
            _check(store_url, physical_name(pipeline_online), n)

            app: list[tuple[str, float, float, float, int]] = []
            if store_name == "SQLite":  # this workspace is also the source of the app publisher's copies
                for name, url in urls.items():
                    cleanup.callback(_drop, url, physical_name(table.online_name))
                    seconds, read_s, write_s, steps = app_publish(w, url, table)
                    _check(url, physical_name(table.online_name), n)
                    app.append((name, seconds, read_s, write_s, steps))

            version = ws.catalog.upsert_rows(source, changes)
            incr = pipeline_publish(w, source, pipeline_online, version)
            _check(store_url, physical_name(pipeline_online), n + k // 10, probe)
            results.append(Publish("workspace pipeline (publish_table)", store_name, full, incr))
            for name, seconds, read_s, write_s, steps in app:
                incr_app = app_publish(w, urls[name], table)[0]
                _check(urls[name], physical_name(table.online_name), n + k // 10, probe)
                results.append(Publish("app publisher (rdbms.sync)", name, seconds, incr_app, read_s, write_s,
                                       steps))
            with contextlib.suppress(Exception):
                w.feature_store.delete_online_table(pipeline_online)
        finally:
            ws.stop()
    return results


# ---------------------------------------------------------------------------------- serving
@dataclass
class Case:
    label: str
    lookup: str
    endpoint: str
    records: Callable[[int, random.Random], list[dict[str, Any]]]
    baseline: str  # the endpoint of the same model without lookup
    small: list[float]
    large: list[float]


def register_titanic_plain(registry: str, passengers: pd.DataFrame) -> str:
    """The Titanic pipeline registered without a feature spec: the client sends all seven features."""
    import mlflow
    import mlflow.sklearn
    from mlflow.models import infer_signature

    inputs = titanic.model_inputs(passengers)
    model = titanic.build_pipeline(0).fit(inputs, passengers[titanic.TARGET])
    with taxi.using_mlflow_uri(registry), mlflow.start_run(
            experiment_id=taxi._experiment_id("titanic_plain", None, registry)):
        info = mlflow.sklearn.log_model(
            model, name="model", signature=infer_signature(inputs, model.predict(inputs.head(50))),
            registered_model_name="titanic_plain", serialization_format="cloudpickle",
            pip_requirements=mlflow.sklearn.get_default_pip_requirements(include_cloudpickle=True))
    return str(info.registered_model_version)


def _create_ready(w: Any, name: str, model: str, env: dict[str, str] | None = None) -> None:
    from databricks.sdk.service.serving import EndpointCoreConfigInput, ServedEntityInput

    entity = ServedEntityInput(entity_name=model, entity_version="1", workload_size="Small",
                               scale_to_zero_enabled=False, environment_vars=env)
    w.serving_endpoints.create(name, config=EndpointCoreConfigInput(name=name, served_entities=[entity]))

    def ready() -> bool:
        ep = w.serving_endpoints.get(name)
        if ep.state.config_update.value == "IN_PROGRESS":
            return False
        assert ep.state.ready.value == "READY", ep.as_dict()
        return True

    _wait(f"endpoint {name}", ready, 60)


def run_serving(tmp: Path, registry: str, requests_per_case: int, urls: dict[str, str], tag: str,
                cleanup: contextlib.ExitStack) -> list[Case]:
    pickup_df, dropoff_df = taxi.make_zone_feature_tables(n=6000, seed=100)
    schema = f"main.bench_{tag}"
    pickup, dropoff = f"{schema}.pickup_zones", f"{schema}.dropoff_zones"
    pickup_pg, dropoff_pg = f"{schema}.pickup_zones_pg", f"{schema}.dropoff_zones_pg"
    passengers = titanic.make_passengers(n=891, seed=0)
    titanic_online = f"test.bench_{tag}.passengers_online"

    assert taxi.train_and_register(registry, model_name="taxi_plain", n=1500) == "1"
    assert taxi.train_and_register_with_features(registry, "taxi_zones", pickup, dropoff, pickup_df, dropoff_df,
                                                 n=1500) == "1"
    assert taxi.train_and_register_with_features(registry, "taxi_zones_pg", pickup_pg, dropoff_pg, pickup_df,
                                                 dropoff_df, n=1500) == "1"
    assert titanic.train_and_register(registry, "titanic", f"{schema}.passengers", TITANIC_ENV, titanic_online) == "1"
    assert register_titanic_plain(registry, passengers) == "1"

    ws = LocalWorkspace(port=0, token=WORKSPACE_TOKEN, registry_uri=registry, data_dir=tmp / "ws-serving")
    ws.faults.provisioning_seconds = 0.05
    ws.faults.sync_provisioning_seconds = 0.0
    ws.faults.store_provisioning_seconds = 0.0
    ws.start()
    try:
        w = _workspace_client(ws.url, WORKSPACE_TOKEN, 20.0)
        # Zone tables published by the workspace's own pipeline to its (SQLite) online store.
        ensure_online_store(w)
        for source, frame in ((pickup, pickup_df), (dropoff, dropoff_df)):
            ws.catalog.create_table(source, frame, primary_keys=[taxi.ZONE_KEY], change_data_feed=True)
            pipeline_publish(w, source, f"{source}_online", 0)
        # The same zone tables in PostgreSQL, registered in the online catalog.
        for source, frame in ((pickup_pg, pickup_df), (dropoff_pg, dropoff_df)):
            physical = taxi.publish_features(urls["PostgreSQL"], f"{source}_online", frame, [taxi.ZONE_KEY])
            cleanup.callback(_drop, urls["PostgreSQL"], physical)
            ws.online_catalog.register(OnlineTableRef(source, f"{source}_online", urls["PostgreSQL"], physical,
                                                      (taxi.ZONE_KEY,)))
        cleanup.callback(_drop, urls["MariaDB"], physical_name(titanic_online))
        titanic.publish_passengers(urls["MariaDB"], titanic_online, passengers)

        _create_ready(w, "taxi-plain", "taxi_plain")
        _create_ready(w, "taxi-zones", "taxi_zones")
        _create_ready(w, "taxi-zones-pg", "taxi_zones_pg")
        _create_ready(w, "titanic", "titanic", {TITANIC_ENV: urls["MariaDB"]})
        _create_ready(w, "titanic-plain", "titanic_plain")

        trips = taxi.make_trips(n=5000, seed=7)
        full = trips[taxi.FEATURES].to_dict("records")
        ids_only = trips[taxi.REQUEST_COLUMNS].to_dict("records")

        def sample(rows: list[dict[str, Any]]) -> Callable[[int, random.Random], list[dict[str, Any]]]:
            def pick(size: int, rng: random.Random) -> list[dict[str, Any]]:
                return [{c: (v.item() if hasattr(v, "item") else v) for c, v in r.items()}
                        for r in rng.sample(rows, size)]
            return pick

        def passenger_ids(size: int, rng: random.Random) -> list[dict[str, Any]]:
            return titanic.request_records(rng.sample(range(1, len(passengers) + 1), size))

        complete = titanic.model_inputs(passengers).dropna().to_dict("records")  # no NaN/None in the JSON
        cases = [
            Case("taxi (GBR, 120 trees)", "none: client sends 5 features", "taxi-plain", sample(full), "taxi-plain",
                 [], []),
            Case("taxi (GBR, 120 trees)", "2 zone tables, SQLite (workspace-published)", "taxi-zones",
                 sample(ids_only), "taxi-plain", [], []),
            Case("taxi (GBR, 120 trees)", "2 zone tables, PostgreSQL", "taxi-zones-pg", sample(ids_only),
                 "taxi-plain", [], []),
            Case("titanic (sklearn pipeline)", "none: client sends 7 features", "titanic-plain", sample(complete),
                 "titanic-plain", [], []),
            Case("titanic (sklearn pipeline)", "passengers table, MariaDB", "titanic", passenger_ids,
                 "titanic-plain", [], []),
        ]
        rng = random.Random(0)
        for i in range(-20, requests_per_case):  # the first 20 rounds are a warm-up
            for case in cases:
                for size, out in ((1, case.small), (100, case.large)):
                    records = case.records(size, rng)
                    started = time.perf_counter()
                    resp = w.serving_endpoints.query(case.endpoint, dataframe_records=records)
                    elapsed = (time.perf_counter() - started) * 1000
                    assert len(resp.predictions) == size, resp
                    if i >= 0:
                        out.append(elapsed)
        return cases
    finally:
        ws.stop()


# ---------------------------------------------------------------------------------- report
def _drop(url: str, physical: str) -> None:
    with OnlineStore(url) as store:
        store.drop_table(physical)
        for internal in (SYNC_STATE, CLAIMS):  # its watermark, and a claim a run that stopped left
            with contextlib.suppress(Exception):
                store.delete(internal, ["online_table"], [(physical,)])


def _pct(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] if len(values) > 1 else values[0]


def _rate(rows: int, seconds: float) -> str:
    return f"{rows / seconds:,.0f}".replace(",", " ")


def _share(part: float | None, whole: float) -> str:
    return "n/a" if part is None else f"{100 * part / whole:.0f} %"


def report(publishes: list[Publish], cases: list[Case], n: int, k: int, requests_per_case: int,
           minutes: float) -> str:
    stamp = f"{datetime.now(UTC):%Y-%m-%d}, {platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}"
    fastest_full = min(p.full_s for p in publishes)
    fastest_incr = min(p.incr_s for p in publishes)
    rows = f"{n:,}".replace(",", " ")
    changes = f"{k:,}".replace(",", " ")
    lines = [
        f"### Publishing features online ({stamp}, {rows} rows of int64 key + 6 columns, then {changes} "
        "upserts; stores on loopback)",
        "",
        "| method | store | full copy s | rows/s | vs fastest | reading source | writing store | "
        f"{changes} upserts s | rows/s | vs fastest |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for p in publishes:
        lines.append(
            f"| {p.method} | {p.store} | {p.full_s:.1f} | {_rate(n, p.full_s)} | {p.full_s / fastest_full:.2f}x | "
            f"{_share(p.read_s, p.full_s)} | {_share(p.write_s, p.full_s)} | {p.incr_s:.2f} | {_rate(k, p.incr_s)} | "
            f"{p.incr_s / fastest_incr:.2f}x |")
    steps = ", ".join(f"{p.store} {p.steps}" for p in publishes if p.steps is not None)
    lines += [
        "",
        f"App publisher steps for the full copy (`features.ensure` passes, {STEP_BUDGET_SECONDS:.0f} s budget each, "
        f"counting passes that found a statement still running): {steps}. Reading source / "
        "writing store: shares of the full copy's time in the Statement Execution calls (the local warehouse runs "
        "in-process, so its JSON encoding counts here) and in the store's upserts and final replace.",
        "",
        f"### Endpoint latency with feature lookup ({stamp}, {requests_per_case} requests per case after "
        "20 warm-up rounds, sequential, SDK over HTTP on loopback)",
        "",
        "| model | features from | records per request | p50 ms | p99 ms | p50 vs same model, no lookup |",
        "|---|---|---:|---:|---:|---:|",
    ]
    by_endpoint = {c.endpoint: c for c in cases}
    for size in (1, 100):
        for case in cases:
            values = case.small if size == 1 else case.large
            base = by_endpoint[case.baseline]
            base_p50 = statistics.median(base.small if size == 1 else base.large)
            lines.append(f"| {case.label} | {case.lookup} | {size} | {statistics.median(values):.2f} | "
                         f"{_pct(values, 99):.2f} | {statistics.median(values) / base_p50:.2f}x |")
    lines += ["", f"Whole run: {minutes:.1f} min."]
    return "\n".join(lines) + "\n"


@contextlib.contextmanager
def _state_table_kept(urls: dict[str, str]) -> Iterator[None]:
    """Drop the stores' sync watermark and writer claim tables at the end if this run created them
    and left them empty."""
    existed = {}
    for name, url in urls.items():
        with OnlineStore(url) as store:
            existed[name] = {t for t in (SYNC_STATE, CLAIMS) if _has_table(store, t)}
    try:
        yield
    finally:
        for name, url in urls.items():
            for internal in {SYNC_STATE, CLAIMS} - existed[name]:
                with OnlineStore(url) as store, contextlib.suppress(Exception):
                    if _has_table(store, internal) and store.count(internal) == 0:
                        store.drop_table(internal)


def _has_table(store: OnlineStore, table: str) -> bool:
    try:
        store.count(table)
        return True
    except Exception:
        return False


def run(n: int, k: int, requests_per_case: int) -> str:
    began = time.monotonic()
    urls = {"SQLite": "", "PostgreSQL": ensure_postgres(), "MariaDB": ensure_mariadb()}
    tag = uuid.uuid4().hex[:8]
    with tempfile.TemporaryDirectory(prefix="bench-features-") as tmp_name:
        tmp = Path(tmp_name)
        urls["SQLite"] = f"sqlite:///{tmp / 'app-online.sqlite'}"
        registry = f"sqlite:///{tmp / 'mlflow.db'}"
        with _state_table_kept({k_: v for k_, v in urls.items() if k_ != "SQLite"}), \
                contextlib.ExitStack() as cleanup:
            publishes = run_publishing(tmp, registry, n, k, urls, tag, cleanup)
            cases = run_serving(tmp, registry, requests_per_case, urls, tag, cleanup)
    return report(publishes, cases, n, k, requests_per_case, (time.monotonic() - began) / 60)


def main() -> None:
    logging.basicConfig(level=logging.ERROR)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows of the feature table")
    parser.add_argument("--changes", type=int, default=10_000, help="upserts for the incremental sync")
    parser.add_argument("-n", type=int, default=200, help="requests per serving case and size")
    parser.add_argument("--write", action="store_true", help="append the tables to docs/benchmarks.md")
    args = parser.parse_args()
    emit(run(args.rows, args.changes, args.n), args.write)


if __name__ == "__main__":
    main()
