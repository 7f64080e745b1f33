"""One contract for every storage backend: SQLite (the embedded default) and Azure Storage
(through Azurite, the real protocol). Each test runs against both; Azure's limits hold in both.

Azure counts visibility in whole seconds, so the timing tests wait a second or more.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator

import pytest

from shared.azure_limits import MAX_ENTITY_BYTES, EntityTooLarge, MessageTooLarge, StorageLimitError
from shared.queues import PopReceiptMismatch, QueueService, decode_content, encode_json, enqueue
from shared.storage import open_queues, open_tables
from shared.tables import ConcurrencyConflict, Entity, EntityExists, Op, RowRange, TableService

BACKENDS = ("sqlite", "azurite")


@pytest.fixture(params=BACKENDS)
def storage(request, tmp_path) -> Iterator[tuple[str, dict[str, str]]]:
    """(REACTOR_STORAGE, env) of a backend; Azurite is one per session (tests/conftest.py)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 's.db'}", {}
    else:
        yield "azure", {"AzureWebJobsStorage": request.getfixturevalue("azurite").connection_string}


@pytest.fixture
def queues(storage) -> QueueService:
    return open_queues(*storage)


@pytest.fixture
def tables(storage) -> TableService:
    return open_tables(*storage)


@pytest.fixture
def q() -> str:
    return f"work-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def t() -> str:
    return f"things{uuid.uuid4().hex[:12]}"


# ------------------------------------------------------------------------------------ queues
def test_messages_are_base64_json_on_the_wire(queues, q):
    enqueue(queues, q, {"a": 1})
    (m,) = queues.receive(q, max_messages=5, visibility_timeout=30)
    assert m.content == encode_json({"a": 1}) and json.loads(decode_content(m.content)) == {"a": 1}
    with pytest.raises(ValueError, match="not valid base64"):
        decode_content("{not base64}")


def test_receive_hides_and_counts_dequeues(queues, q):
    queues.send(q, "x")
    (m1,) = queues.receive(q, max_messages=1, visibility_timeout=1)
    assert m1.dequeue_count == 1
    assert queues.receive(q, max_messages=1, visibility_timeout=1) == []
    time.sleep(1.2)
    (m2,) = queues.receive(q, max_messages=1, visibility_timeout=30)
    assert m2.id == m1.id and m2.dequeue_count == 2
    with pytest.raises(PopReceiptMismatch):
        queues.delete(q, m1.id, m1.pop_receipt)
    queues.delete(q, m2.id, m2.pop_receipt)
    assert queues.count(q) == 0


def test_visibility_delay_on_send_and_peek_shows_only_visible_messages(queues, q):
    queues.send(q, "now")
    queues.send(q, "later", visibility_delay=1)
    assert queues.count(q) == 2
    assert [m.content for m in queues.peek(q)] == ["now"]
    (now,) = queues.receive(q, max_messages=5, visibility_timeout=30)
    assert now.content == "now" and queues.peek(q) == []
    time.sleep(1.2)
    assert [m.content for m in queues.receive(q, max_messages=5, visibility_timeout=30)] == ["later"]


def test_update_visibility_returns_a_new_receipt(queues, q):
    queues.send(q, "x")
    (m,) = queues.receive(q, max_messages=1, visibility_timeout=30)
    receipt = queues.update_visibility(q, m.id, m.pop_receipt, 0)
    assert receipt != m.pop_receipt
    with pytest.raises(PopReceiptMismatch):
        queues.update_visibility(q, m.id, m.pop_receipt, 0)
    assert len(queues.receive(q, max_messages=1, visibility_timeout=30)) == 1


def test_a_queue_nobody_sent_to_is_empty(queues, q):
    assert queues.count(q) == 0 and queues.peek(q) == []
    assert queues.receive(q, max_messages=32, visibility_timeout=30) == []


def test_concurrent_receivers_never_get_the_same_message(storage, q):
    producer = open_queues(*storage)
    for i in range(60):
        producer.send(q, str(i))
    seen: list[str] = []
    lock = threading.Lock()

    def worker() -> None:
        mine = open_queues(*storage)
        while got := mine.receive(q, max_messages=4, visibility_timeout=60):
            with lock:
                seen.extend(m.content for m in got)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert sorted(seen, key=int) == [str(i) for i in range(60)]


def test_queue_limits_hold(queues, q):
    queues.send(q, "x" * 65536)  # 64 KiB exactly fits
    with pytest.raises(MessageTooLarge):
        queues.send(q, "x" * 65537)
    with pytest.raises(StorageLimitError, match="7 days"):
        queues.send(q, "x", visibility_delay=7 * 24 * 3600 + 1)
    with pytest.raises(StorageLimitError, match="queue name"):
        queues.send("Bad_Queue", "x")
    with pytest.raises(StorageLimitError, match="queue name"):
        queues.send("a--b", "x")
    assert queues.count(q) == 1


# ------------------------------------------------------------------------------------ tables
def test_insert_conflicts_and_etag_concurrency(tables, t):
    e = tables.insert(t, "p", "r", {"n": 1})
    with pytest.raises(EntityExists):
        tables.insert(t, "p", "r", {"n": 2})
    e.data["n"] = 2
    e2 = tables.update(t, e)
    assert e2.etag != e.etag
    e.data["n"] = 3
    with pytest.raises(ConcurrencyConflict):
        tables.update(t, e)  # stale ETag
    assert tables.get(t, "p", "r").data == {"n": 2}
    tables.upsert(t, "p", "r2", {"n": 9, "k": "x"})
    assert [x.row_key for x in tables.query(t, "p")] == ["r", "r2"]
    assert [x.row_key for x in tables.query(t, "p", k="x")] == ["r2"]
    assert tables.get(t, "p", "missing") is None
    with pytest.raises(ConcurrencyConflict):
        tables.update(t, Entity("p", "gone", {"n": 1}, "*"))


def test_a_transaction_is_all_or_nothing(tables, t):
    a = tables.insert(t, "p", "a", {"n": 1})
    written = tables.transact(t, "p", [Op.update(a, {"n": 2}), Op.insert("b", {"n": 1})])
    assert written["a"].data == {"n": 2} and written["a"].etag != a.etag
    assert tables.get(t, "p", "a").etag == written["a"].etag
    # A stale ETag in one op: nothing of the transaction is written.
    with pytest.raises(ConcurrencyConflict):
        tables.transact(t, "p", [Op.insert("c", {"n": 1}), Op.update(a, {"n": 3})])
    assert tables.get(t, "p", "c") is None and tables.get(t, "p", "a").data == {"n": 2}
    with pytest.raises(EntityExists):
        tables.transact(t, "p", [Op("upsert", "d", {"n": 1}), Op.insert("b", {"n": 2})])
    assert tables.get(t, "p", "d") is None
    with pytest.raises(ValueError, match="more than once"):
        tables.transact(t, "p", [Op.insert("e", {}), Op.insert("e", {})])
    with pytest.raises(ValueError, match=r"1\.\.100"):
        tables.transact(t, "p", [Op.insert(f"x{i}", {}) for i in range(101)])
    tables.transact(t, "p", [Op.insert(f"x{i}", {"i": i}) for i in range(100)])
    assert len(tables.query(t, "p")) == 102
    tables.transact(t, "p", [Op.delete(tables.get(t, "p", "b"))])
    assert tables.get(t, "p", "b") is None


def test_delete_is_conditional_on_the_etag(tables, t):
    e = tables.insert(t, "p", "r", {"n": 1})
    tables.update(t, e)
    with pytest.raises(ConcurrencyConflict):
        tables.delete(t, e)
    tables.delete(t, tables.get(t, "p", "r"))
    assert tables.get(t, "p", "r") is None
    with pytest.raises(ConcurrencyConflict):
        tables.delete(t, Entity("p", "r", {}, "*"))  # gone


def test_paging_with_continuation_tokens_visits_each_entity_once(tables, t):
    for pk in ("p1", "p2"):
        tables.transact(t, pk, [Op.insert(f"r{i:02d}", {"i": i}) for i in range(25)])
    seen, token, pages = [], None, 0
    while True:
        page = tables.query_page(t, limit=10, continuation=token)
        seen += [(e.partition_key, e.row_key) for e in page.entities]
        pages += 1
        token = page.continuation
        if token is None:
            break
    assert len(seen) == 50 and len(set(seen)) == 50 and seen == sorted(seen)
    assert pages >= 5
    one = tables.query_page(t, "p2", limit=7)
    assert [e.row_key for e in one.entities] == [f"r{i:02d}" for i in range(7)] and one.continuation
    with pytest.raises(ValueError, match="continuation token"):
        tables.query_page(t, continuation="not a token")


def test_a_row_range_reads_only_its_rows_page_by_page(tables, t):
    """What the repair sweep's indexes and one rollout's analysis runs rely on: a range of row
    keys in one partition, paged, returns exactly its rows (a prefix ending in ``~`` included)."""
    keys = ["a", "r1~01~01", "r1~01~02", "r1~02~01", "r10~01~01", "r1\u00e9", "z"]
    tables.transact(t, "p", [Op.insert(k, {"k": k}) for k in keys])
    tables.insert(t, "q", "r1~01~01", {"k": "other partition"})
    seen, token, pages = [], None, 0
    while True:
        page = tables.query_page(t, "p", limit=2, continuation=token, rows=RowRange.prefix("r1~"))
        seen += [e.row_key for e in page.entities]
        pages, token = pages + 1, page.continuation
        if token is None:
            break
    assert seen == ["r1~01~01", "r1~01~02", "r1~02~01"] and pages == 2
    assert [e.row_key for e in tables.query(t, "p", rows=RowRange("r1~01~02", "r1~99"))] == ["r1~01~02", "r1~02~01"]
    assert tables.query_page(t, "p", rows=RowRange("b", "c")).entities == []
    with pytest.raises(ValueError, match="one partition"):
        tables.query_page(t, rows=RowRange("a", "b"))


def test_values_of_every_shape_round_trip(tables, t):
    data = {
        "text": "héllo ✓", "n": 7, "big": 2**53, "f": 0.25, "yes": True, "none": None,
        "nested": {"a": [1, {"b": None}], "c": "x"}, "list": [], "long": "y" * 100_000,
        "ctl": "a\x00b\x1f", "not an identifier": 1, "_x0": "looks like ours",
    }
    tables.insert(t, "p", "r", data)
    assert tables.get(t, "p", "r").data == data
    wide = {f"f{i}": i for i in range(400)}  # more fields than Azure has properties
    tables.upsert(t, "p", "wide", wide)
    assert tables.get(t, "p", "wide").data == wide


def test_table_limits_hold(tables, t):
    for bad in ("a/b", "a\\b", "a#b", "a?b", "a\x01b", "a\x7fb", "k" * 600):
        with pytest.raises(StorageLimitError):
            tables.insert(t, "p", bad, {})
        with pytest.raises(StorageLimitError):
            tables.upsert(t, bad, "r", {})
    with pytest.raises(EntityTooLarge):
        tables.insert(t, "p", "huge", {"blob": "z" * (MAX_ENTITY_BYTES // 2)})
    with pytest.raises(StorageLimitError, match="table name"):
        tables.insert("no_underscores", "p", "r", {})
    tables.insert(t, "p", "fits", {"blob": "z" * (MAX_ENTITY_BYTES // 2 - 1000)})
    assert tables.get(t, "p", "huge") is None and len(tables.get(t, "p", "fits").data["blob"]) > 500_000


# ------------------------------------------------------------------ one commit (SQLite only)
def test_sqlite_writes_to_tables_and_queues_can_share_one_commit(tmp_path, t, q):
    from shared.storage import one_commit

    url = f"sqlite:///{tmp_path / 'one.db'}"
    tables, queues = open_tables(url), open_queues(url)
    with one_commit(tables, queues):
        tables.insert(t, "p", "a", {"n": 1})
        queues.send(q, "work")
    assert tables.get(t, "p", "a") is not None and queues.count(q) == 1
    # A failure anywhere inside: neither the record nor the message is kept.
    with pytest.raises(MessageTooLarge), one_commit(tables, queues):
        tables.insert(t, "p", "b", {"n": 1})
        queues.send(q, "x" * 70_000)
    assert tables.get(t, "p", "b") is None and queues.count(q) == 1
    # A failed entity-group transaction inside is undone on its own; the rest commits.
    a = tables.get(t, "p", "a")
    with one_commit(tables, queues):
        with pytest.raises(ConcurrencyConflict):
            tables.transact(t, "p", [Op.insert("c", {}), Op.update(Entity("p", "a", {}, "stale"))])
        with pytest.raises(EntityExists):
            tables.insert(t, "p", "a", {"n": 2})
        tables.update(t, a)
    assert tables.get(t, "p", "c") is None and tables.get(t, "p", "a").etag != a.etag


def test_azure_storage_has_no_shared_commit(azurite):
    from contextlib import nullcontext

    from shared.storage import one_commit

    env = {"AzureWebJobsStorage": azurite.connection_string}
    assert isinstance(one_commit(open_tables("azure", env), open_queues("azure", env)), nullcontext)
