"""The SQLite backends keep the Azure Storage semantics the app relies on."""

import json
import threading
import time

import pytest

from shared.queues import PopReceiptMismatch, decode_content, encode_json, enqueue
from shared.queues.sqlite import SqliteQueueService
from shared.tables import ConcurrencyConflict, EntityExists
from shared.tables.sqlite import SqliteTableService


@pytest.fixture
def queues(tmp_path):
    return SqliteQueueService(str(tmp_path / "s.db"))


@pytest.fixture
def tables(tmp_path):
    return SqliteTableService(str(tmp_path / "s.db"))


def test_messages_are_base64_json_on_the_wire(queues):
    enqueue(queues, "q", {"a": 1})
    (m,) = queues.receive("q", max_messages=5, visibility_timeout=30)
    assert m.content == encode_json({"a": 1}) and json.loads(decode_content(m.content)) == {"a": 1}
    with pytest.raises(ValueError, match="not valid base64"):
        decode_content("{not base64}")


def test_receive_hides_and_counts_dequeues(queues):
    queues.send("q", "x")
    (m1,) = queues.receive("q", max_messages=1, visibility_timeout=0.2)
    assert m1.dequeue_count == 1
    assert queues.receive("q", max_messages=1, visibility_timeout=0.2) == []
    time.sleep(0.3)
    (m2,) = queues.receive("q", max_messages=1, visibility_timeout=30)
    assert m2.id == m1.id and m2.dequeue_count == 2
    with pytest.raises(PopReceiptMismatch):
        queues.delete("q", m1.id, m1.pop_receipt)
    queues.delete("q", m2.id, m2.pop_receipt)
    assert queues.count("q") == 0


def test_visibility_delay_on_send(queues):
    queues.send("q", "later", visibility_delay=0.3)
    assert queues.receive("q", max_messages=1, visibility_timeout=1) == []
    assert queues.count("q") == 1
    time.sleep(0.35)
    assert [m.content for m in queues.receive("q", max_messages=1, visibility_timeout=1)] == ["later"]


def test_update_visibility_returns_a_new_receipt(queues):
    queues.send("q", "x")
    (m,) = queues.receive("q", max_messages=1, visibility_timeout=30)
    receipt = queues.update_visibility("q", m.id, m.pop_receipt, 0)
    assert receipt != m.pop_receipt
    with pytest.raises(PopReceiptMismatch):
        queues.update_visibility("q", m.id, m.pop_receipt, 0)
    assert len(queues.receive("q", max_messages=1, visibility_timeout=30)) == 1


def test_concurrent_receivers_never_get_the_same_message(tmp_path):
    path = str(tmp_path / "s.db")
    producer = SqliteQueueService(path)
    for i in range(200):
        producer.send("q", str(i))
    seen: list[str] = []
    lock = threading.Lock()

    def worker():
        q = SqliteQueueService(path)
        while True:
            got = q.receive("q", max_messages=4, visibility_timeout=60)
            if not got:
                return
            with lock:
                seen.extend(m.content for m in got)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(seen, key=int) == [str(i) for i in range(200)]


def test_insert_conflicts_and_etag_concurrency(tables):
    e = tables.insert("t", "p", "r", {"n": 1})
    with pytest.raises(EntityExists):
        tables.insert("t", "p", "r", {"n": 2})
    e.data["n"] = 2
    e2 = tables.update("t", e)
    assert e2.etag != e.etag
    e.data["n"] = 3
    with pytest.raises(ConcurrencyConflict):
        tables.update("t", e)  # stale ETag
    assert tables.get("t", "p", "r").data == {"n": 2}
    tables.upsert("t", "p", "r2", {"n": 9, "k": "x"})
    assert [x.row_key for x in tables.query("t", "p")] == ["r", "r2"]
    assert [x.row_key for x in tables.query("t", "p", k="x")] == ["r2"]
    assert tables.get("t", "p", "missing") is None


def test_a_transaction_is_all_or_nothing(tables):
    from shared.tables import Op

    a = tables.insert("t", "p", "a", {"n": 1})
    written = tables.transact("t", "p", [Op.update(a, {"n": 2}), Op.insert("b", {"n": 1})])
    assert written["a"].data == {"n": 2} and written["a"].etag != a.etag
    # A stale ETag in one op: nothing of the transaction is written.
    with pytest.raises(ConcurrencyConflict):
        tables.transact("t", "p", [Op.insert("c", {"n": 1}), Op.update(a, {"n": 3})])
    assert tables.get("t", "p", "c") is None and tables.get("t", "p", "a").data == {"n": 2}
    with pytest.raises(EntityExists):
        tables.transact("t", "p", [Op("upsert", "d", {"n": 1}),
                                   Op.insert("b", {"n": 2})])
    assert tables.get("t", "p", "d") is None
    with pytest.raises(ValueError, match="more than once"):
        tables.transact("t", "p", [Op.insert("e", {}), Op.insert("e", {})])
    with pytest.raises(ValueError, match=r"1\.\.100"):
        tables.transact("t", "p", [Op.insert(f"x{i}", {}) for i in range(101)])
    tables.transact("t", "p", [Op.delete(tables.get("t", "p", "b"))])
    assert tables.get("t", "p", "b") is None


def test_delete_is_conditional_on_the_etag(tables):
    e = tables.insert("t", "p", "r", {"n": 1})
    tables.update("t", e)
    with pytest.raises(ConcurrencyConflict):
        tables.delete("t", e)
    tables.delete("t", tables.get("t", "p", "r"))
    assert tables.get("t", "p", "r") is None


def test_paging_with_continuation_tokens_visits_each_entity_once(tables):
    for pk in ("p1", "p2"):
        for i in range(25):
            tables.insert("t", pk, f"r{i:02d}", {"i": i})
    seen, token, pages = [], None, 0
    while True:
        page = tables.query_page("t", limit=10, continuation=token)
        seen += [(e.partition_key, e.row_key) for e in page.entities]
        pages += 1
        token = page.continuation
        if token is None:
            break
    assert pages == 5 and len(seen) == 50 and len(set(seen)) == 50 and seen == sorted(seen)
    assert [e.row_key for e in tables.query_page("t", "p2", limit=3).entities] == ["r00", "r01", "r02"]
    with pytest.raises(ValueError, match="continuation token"):
        tables.query_page("t", continuation="not-a-token")
