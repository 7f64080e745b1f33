"""The app's publisher to third-party online stores (``shared.features.ensure`` with an ``rdbms``
store), against the local workspace over HTTP through the real databricks-sdk and real SQLite,
PostgreSQL and MariaDB stores: one writer per online table, source schema changes, names that
need quoting, and steps that never wait on the warehouse.

Every step runs with a zero budget, as a step whose time is up: one result chunk per step, and
statements submitted in the asynchronous mode (``wait_timeout="0s"``).
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pandas as pd
import pytest
from databricks.sdk import WorkspaceClient

from local.services import ensure_mariadb, ensure_postgres
from local.workspace import LocalWorkspace
from shared import features as feature_tables
from shared import statements as sql
from shared.features import rdbms
from shared.online_store import Column, OnlineStore, OnlineStoreError, physical_name
from shared.policy import Features

TOKEN = "publisher-token"
WAREHOUSE = "local0warehouse1"
N = 45_000  # three result chunks of at most 20 000 rows


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalWorkspace]:
    root = tmp_path_factory.mktemp("publisher")
    with LocalWorkspace(token=TOKEN, registry_uri=f"sqlite:///{root / 'mlflow.db'}", data_dir=root / "ws") as workspace:
        yield workspace


@pytest.fixture(scope="module")
def w(ws: LocalWorkspace) -> WorkspaceClient:
    return WorkspaceClient(host=ws.url, token=TOKEN)


STORES: dict[str, Callable[[Any], str]] = {
    "sqlite": lambda tmp: f"sqlite:///{tmp}/online.sqlite",
    "postgresql": lambda tmp: ensure_postgres(),
    "mariadb": lambda tmp: ensure_mariadb(),
}


@pytest.fixture
def tables() -> Iterator[list[tuple[str, str]]]:
    """Online tables a test creates in a shared server; dropped with their watermark and claim."""
    made: list[tuple[str, str]] = []
    yield made
    for url, online in made:
        with OnlineStore(url) as store:
            store.drop_table(physical_name(online))
            for internal in ("_feature_sync_state", "_feature_sync_claims"):
                with contextlib.suppress(OnlineStoreError):  # a store where no sync ran lacks it
                    store.delete(internal, ["online_table"], [(physical_name(online),)])


def store_url(kind: str, tmp_path: Any) -> str:
    return STORES[kind](tmp_path)


def features_for(sources: list[str], mode: str = "triggered", **table: Any) -> Features:
    return Features.model_validate({"store": {"kind": "rdbms", "connection_setting": "STORE_URL"},
                                    "publish_mode": mode,
                                    "tables": [{"source": s, "primary_keys": ["id"], **table} for s in sources]})


class Writer:
    """One caller of ``ensure`` (a rollout, or a publish_features command) with its own cursor."""

    def __init__(self, w: WorkspaceClient, features: Features, url: str) -> None:
        self.w, self.features, self.url = w, features, url
        self.cursors: dict[str, Any] = {}
        self.seconds: list[float] = []

    def step(self, now: float | None = None) -> list[feature_tables.TableStatus]:
        started = time.monotonic()
        statuses = feature_tables.ensure(self.w, WAREHOUSE, self.features, {"STORE_URL": self.url}, self.cursors,
                                         now=time.time() if now is None else now, budget_seconds=0)
        self.seconds.append(time.monotonic() - started)
        self.cursors = {st.source: st.cursor for st in statuses if st.cursor}
        return statuses

    def settle(self, now: float | None = None) -> feature_tables.TableStatus:
        """Step until the (one) table is past waiting on a statement; the pause stands for the backoff."""
        while True:
            [st] = self.step(now)
            if not (st.state == "pending" and "statement" in st.note):
                return st
            time.sleep(0.05)

    def until_ready(self, now: float | None = None) -> list[feature_tables.TableStatus]:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            statuses = self.step(now)
            assert not [st for st in statuses if st.state == "failed"], statuses
            if all(st.state == "ready" for st in statuses):
                return statuses
            if all(st.state == "pending" for st in statuses):
                time.sleep(0.05)
        raise AssertionError(f"not ready after 60 s: {statuses}")


def big_source(ws: LocalWorkspace, name: str) -> str:
    frame = pd.DataFrame({"id": range(N), "x": [float(i) for i in range(N)], "tag": [f"t{i % 7}" for i in range(N)]})
    ws.catalog.create_table(name, frame, primary_keys=["id"], change_data_feed=True)
    return name


# ---------------------------------------------------------------------------------- one writer per online table
@pytest.mark.parametrize("kind", list(STORES))
def test_two_full_copies_of_one_table_never_interleave(ws, w, tmp_path, tables, kind: str) -> None:
    """Two callers (two environments of a model, or publish_features during a rollout) copy the
    same table: the second one waits while the first one writes, and every row arrives."""
    url = store_url(kind, tmp_path)
    source = big_source(ws, f"main.two{uuid.uuid4().hex[:8]}.features")
    features = features_for([source], mode="snapshot")
    tables.append((url, features.tables[0].online_name))
    a, b = Writer(w, features, url), Writer(w, features, url)
    assert a.settle().note == "copied 1 of 3 chunks of version 0"
    assert a.settle().note == "copied 2 of 3 chunks of version 0"
    waiting = b.settle()
    assert waiting.state == "pending" and "is being written by sync run" in waiting.note, waiting
    assert waiting.cursor is None
    done = a.settle()
    assert (done.state, done.note) == ("ready", f"full copy of {N} rows to version 0")
    after = b.settle()
    assert (after.state, after.note) == ("ready", "in sync at version 0")
    target = physical_name(features.tables[0].online_name)
    with OnlineStore(url) as store:
        assert store.count(target) == N
        got = store.lookup(target, ["id"], [(0,), (20_000,), (N - 1,)])
        assert [r["x"] for r in got] == [0.0, 20_000.0, float(N - 1)]
        assert not store.claim(target, "0" * 16, time.time(), 1)[1], "the finished run released its claim"


def test_a_writer_that_stopped_blocks_the_table_only_until_its_claim_expires(ws, w, tmp_path, tables) -> None:
    url = store_url("sqlite", tmp_path)
    source = big_source(ws, f"main.crash{uuid.uuid4().hex[:8]}.features")
    features = features_for([source])
    tables.append((url, features.tables[0].online_name))
    target = physical_name(features.tables[0].online_name)
    crashed, other = Writer(w, features, url), Writer(w, features, url)
    assert crashed.settle().state == "progress"
    run = crashed.cursors[source]["run"]
    with OnlineStore(url) as store:
        assert store.schema(OnlineStore.staging_table(run)) is not None
    now = time.time()
    assert other.settle(now).state == "pending"
    assert other.settle(now + rdbms.CLAIM_SECONDS - 5).state == "pending"
    later = now + rdbms.CLAIM_SECONDS + 1
    [done] = other.until_ready(later)
    assert done.note == f"full copy of {N} rows to version 0"
    with OnlineStore(url) as store:
        assert store.count(target) == N
        assert store.schema(OnlineStore.staging_table(run)) is None, "the run that took over removed its staging"
    # The stopped writer comes back with its old cursor: it has lost the table and starts again.
    [back] = crashed.step(later + 1)
    assert back.state == "pending" and "lost its claim" in back.note and back.cursor is None
    [again] = Writer(w, features, url).until_ready(later + 2)
    assert again.note == "in sync at version 0"


# ---------------------------------------------------------------------------------- source schema changes
@pytest.mark.parametrize("kind", list(STORES))
def test_reordered_source_columns_keep_their_values(ws, w, tmp_path, tables, kind: str) -> None:
    url = store_url(kind, tmp_path)
    source = f"main.order{uuid.uuid4().hex[:8]}.features"
    ws.catalog.create_table(source, pd.DataFrame({"id": [1, 2], "a": [1.0, 2.0], "b": [10.0, 20.0]}),
                            primary_keys=["id"])
    features = features_for([source], mode="snapshot")
    tables.append((url, features.tables[0].online_name))
    Writer(w, features, url).until_ready()
    # Made anew with its columns in another order (a Delta overwrite would keep the old order),
    # then one commit, so that its version passes the one copied.
    ws.catalog.drop_table(source)
    ws.catalog.create_table(source, pd.DataFrame({"id": [1, 2], "b": [11.0, 21.0], "a": [1.5, 2.5]}),
                            primary_keys=["id"])
    ws.catalog.upsert_rows(source, [{"id": 2, "b": 21.0, "a": 2.5}])
    [st] = Writer(w, features, url).until_ready()
    assert st.note == "full copy of 2 rows to version 1"
    with OnlineStore(url) as store:
        rows = store.lookup(physical_name(features.tables[0].online_name), ["id"], [(1,), (2,)])
    assert [(r["a"], r["b"]) for r in rows] == [(1.5, 11.0), (2.5, 21.0)]


@pytest.mark.parametrize("kind", list(STORES))
def test_new_and_dropped_source_columns_rebuild_the_online_table(ws, w, tmp_path, tables, kind: str) -> None:
    url = store_url(kind, tmp_path)
    source = f"main.evolve{uuid.uuid4().hex[:8]}.features"
    ws.catalog.create_table(source, pd.DataFrame({"id": [1, 2], "a": [1.0, 2.0], "b": ["x", "y"]}),
                            primary_keys=["id"], change_data_feed=True)
    features = features_for([source])
    online = features.tables[0].online_name
    tables.append((url, online))
    Writer(w, features, url).until_ready()
    ws.catalog.create_table(source, pd.DataFrame({"id": [1, 2, 3], "a": [1.0, 2.0, 3.0], "c": [7, 8, 9]}),
                            primary_keys=["id"], change_data_feed=True, replace=True)
    [st] = Writer(w, features, url).until_ready()
    target = physical_name(online)
    assert st.note == (f"{target} has new columns ['c']; dropped columns ['b']: full copy of 3 rows to version 1")
    with OnlineStore(url) as store:
        assert set(store.schema(target).columns) == {"id", "a", "c"}
        assert [r["c"] for r in store.lookup(target, ["id"], [(1,), (3,)])] == [7, 9]
    # The rebuilt table goes on with the change feed.
    ws.catalog.upsert_rows(source, [{"id": 2, "a": 2.5, "c": 80}])
    [st] = Writer(w, features, url).until_ready()
    assert st.note == "1 changes to version 2"
    with OnlineStore(url) as store:
        assert store.lookup(target, ["id"], [(2,)])[0]["c"] == 80


@pytest.mark.parametrize(("kind", "limit"), [("postgresql", "63 bytes"), ("mariadb", "at most 64")])
def test_a_column_the_store_cannot_hold_fails_the_sync_naming_it(ws, w, tmp_path, tables, kind: str,
                                                                  limit: str) -> None:
    url = store_url(kind, tmp_path)
    source = f"main.wide{uuid.uuid4().hex[:8]}.features"
    long = "feature_" + "x" * 62
    ws.catalog.create_table(source, pd.DataFrame({"id": [1], long: [1.0]}), primary_keys=["id"])
    features = features_for([source])
    tables.append((url, features.tables[0].online_name))
    writer = Writer(w, features, url)
    [st] = writer.step()
    while st.state == "pending":
        [st] = writer.step()
    assert st.state == "failed" and long in st.note and limit in st.note, st


# ---------------------------------------------------------------------------------- names that need quoting
@pytest.mark.parametrize("kind", list(STORES))
def test_names_with_quotes_backticks_and_spaces_reach_every_store(ws, w, tmp_path, tables, kind: str) -> None:
    url = store_url(kind, tmp_path)
    source = f"main.q-{uuid.uuid4().hex[:8]}.t`b'l\"x"
    # No '"' or '`' in column names: the local catalog's MERGE (deltalake) cannot take them; every SQL
    # statement and store can (the table name here, and the test below).
    key, ts, value = "k-e'y 1", "t's", "v al"
    ws.catalog.create_table(source, pd.DataFrame({
        key: [1, 2, 2], ts: pd.to_datetime(["2024-01-01", "2024-01-01", "2024-01-02"]), value: [1.0, 2.0, 3.0]}),
        primary_keys=[key], timeseries_key=ts, change_data_feed=True)
    features = Features.model_validate({"store": {"kind": "rdbms", "connection_setting": "STORE_URL"},
                                        "tables": [{"source": source, "primary_keys": [key, ts],
                                                    "timeseries_key": ts}]})
    online = features.tables[0].online_name
    tables.append((url, online))
    [st] = Writer(w, features, url).until_ready()
    assert st.note == "full copy of 3 rows to version 0"
    ws.catalog.upsert_rows(source, [{key: 1, ts: pd.Timestamp("2024-01-01"), value: 10.0}])
    ws.catalog.delete_rows(source, [(2, pd.Timestamp("2024-01-01"))])
    [st] = Writer(w, features, url).until_ready()
    assert st.note.endswith("changes to version 2")
    with OnlineStore(url) as store:
        target = physical_name(online)
        assert store.count(target) == 2
        [row] = store.lookup(target, [key], [(1,)])
        assert row[value] == 10.0


@pytest.mark.parametrize("kind", list(STORES))
def test_every_dialect_quotes_the_names_it_is_given(tmp_path, kind: str) -> None:
    url = store_url(kind, tmp_path)
    name = f"quoted_{uuid.uuid4().hex[:8]}"
    staging = OnlineStore.staging_table(uuid.uuid4().hex[:16])
    columns = [Column('k"e`y', "string"), Column("v'a l", "double"), Column("`", "bigint"), Column('"', "boolean")]
    names = [c.name for c in columns]
    with OnlineStore(url) as store:
        try:
            store.ensure_table(name, columns, [names[0]])
            store.upsert(name, names, [("a", 1.0, 1, True), ("b", 2.0, 2, False)], [names[0]])
            store.ensure_table(staging, columns, [names[0]])
            store.upsert(staging, names, [("a", 5.0, 5, False)], [names[0]])
            store.replace(name, staging)
            assert store.schema(name) == store.schema_of(columns, [names[0]])
            assert store.schema(staging) is None
            [row, gone] = store.lookup(name, [names[0]], [("a",), ("b",)])
            assert (row["v'a l"], row["`"], bool(row['"']), gone) == (5.0, 5, False, None)
            store.delete(name, [names[0]], [("a",)])
            assert store.count(name) == 0
        finally:
            store.drop_table(name)
            store.drop_table(staging)


def test_names_differing_only_in_punctuation_get_their_own_online_tables(ws, w, tmp_path, tables) -> None:
    url = store_url("sqlite", tmp_path)
    tag = uuid.uuid4().hex[:8]
    sources = [f"c{tag}.s__t.u", f"c{tag}__s.t.u", f"c{tag}.s.x-y", f"c{tag}.s.x_y"]
    for i, source in enumerate(sources):
        ws.catalog.create_table(source, pd.DataFrame({"id": [i], "n": [i]}), primary_keys=["id"])
    features = features_for(sources)
    tables.extend((url, t.online_name) for t in features.tables)
    Writer(w, features, url).until_ready()
    with OnlineStore(url) as store:
        for i, t in enumerate(features.tables):
            target = physical_name(t.online_name)
            assert store.count(target) == 1 and store.lookup(target, ["id"], [(i,)])[0]["n"] == i, t.source


@pytest.mark.parametrize("kind", ["postgresql", "mariadb"])
def test_long_names_fit_the_store(ws, w, tmp_path, tables, kind: str) -> None:
    url = store_url(kind, tmp_path)
    source = f"main.s{uuid.uuid4().hex[:8]}{'s' * 100}.{'t' * 200}"
    ws.catalog.create_table(source, pd.DataFrame({"id": [1], "n": [5]}), primary_keys=["id"])
    features = features_for([source])
    online = features.tables[0].online_name
    tables.append((url, online))
    Writer(w, features, url).until_ready()
    assert len(physical_name(online)) <= 63
    with OnlineStore(url) as store:
        assert store.lookup(physical_name(online), ["id"], [(1,)])[0]["n"] == 5


# ---------------------------------------------------------------------------------- no step waits on the warehouse
def test_a_starting_warehouse_never_holds_a_step(ws, w, tmp_path, tables) -> None:
    """Statements stay PENDING for 2 s: every step returns at once, pending with the statement's
    id in its cursor; later steps poll that statement instead of submitting another."""
    url = store_url("sqlite", tmp_path)
    source = f"main.cold{uuid.uuid4().hex[:8]}.features"
    ws.catalog.create_table(source, pd.DataFrame({"id": [1, 2], "n": [1, 2]}), primary_keys=["id"])
    features = features_for([source])
    tables.append((url, features.tables[0].online_name))
    writer = Writer(w, features, url)
    ws.faults.statement_pending_seconds = 2.0
    ws.request_log.clear()
    try:
        [first] = writer.step()
        assert writer.seconds[0] < 1.0, "the step waited on the warehouse"
        assert first.state == "pending" and "PENDING" in first.note, first
        statement_id = first.cursor["statements"]["cdf"]
        [st] = writer.until_ready()
    finally:
        ws.faults.statement_pending_seconds = 0.0
    assert st.note.endswith("full copy of 2 rows to version 1")
    assert max(writer.seconds) < 1.0, writer.seconds
    requests = list(ws.request_log)
    submitted = [r for r in requests if r[:2] == ("POST", "/api/2.0/sql/statements")]
    assert len(submitted) == 3, "the ALTER, the version and the copy, each submitted once"
    assert ("GET", f"/api/2.0/sql/statements/{statement_id}", 200) in requests


def test_results_are_read_whole_and_a_truncated_one_is_refused(ws, w) -> None:
    source = big_source(ws, f"main.read{uuid.uuid4().hex[:8]}.features")
    deadline = time.monotonic() + 30
    cursor: dict[str, Any] = {}
    result = None
    while result is None:
        try:
            result = sql.run(w, WAREHOUSE, f"SELECT id FROM {sql.quote(source)} ORDER BY id", cursor, "all", deadline)
        except sql.StatementPending:
            time.sleep(0.05)
    assert result.chunk_count == 3 and cursor == {}
    assert [r[0] for r in sql.rows(w, result)] == list(range(N))
    # A statement someone submitted with a row limit: its manifest says truncated.
    limited = w.statement_execution.execute_statement(f"SELECT id FROM {sql.quote(source)}", WAREHOUSE,
                                                      wait_timeout="30s", row_limit=10)
    assert limited.manifest.truncated is True
    with pytest.raises(sql.StatementFailed, match="truncated"):
        sql.run(w, WAREHOUSE, "SELECT 1", {"statements": {"copy": limited.statement_id}}, "copy", deadline)
