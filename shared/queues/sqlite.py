"""SQLite queue backend: the embedded default, safe across processes (WAL, immediate txns).

Semantics follow Azure Storage Queues (see shared.queues): receive hides a message and
increments its dequeue count, delete needs the latest pop receipt, messages expire after
seven days as they do by default in Azure. Azure's name, size and visibility limits
(shared.azure_limits) hold here too.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime

from shared.azure_limits import MESSAGE_TTL_SECONDS, check_message, check_queue_name, check_visibility
from shared.queues import MAX_PEEK, PopReceiptMismatch, QueueService, ReceivedMessage
from shared.sqlite_db import SqliteDb

_SCHEMA = """
CREATE TABLE IF NOT EXISTS queue_messages (
    queue TEXT NOT NULL,
    id TEXT NOT NULL,
    content TEXT NOT NULL,
    inserted REAL NOT NULL,
    expires REAL NOT NULL,
    visible_at REAL NOT NULL,
    dequeue_count INTEGER NOT NULL DEFAULT 0,
    pop_receipt TEXT,
    seq INTEGER PRIMARY KEY AUTOINCREMENT
);
CREATE INDEX IF NOT EXISTS queue_messages_visible ON queue_messages (queue, visible_at);
CREATE UNIQUE INDEX IF NOT EXISTS queue_messages_id ON queue_messages (queue, id);
"""


def _ts(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, tz=UTC)


class SqliteQueueService(QueueService):
    def __init__(self, path: str, clock: Callable[[], float] = time.time) -> None:
        self.db = SqliteDb.open(path, _SCHEMA)
        # Visibility is judged by this clock, so a test can move time instead of waiting for it.
        self._clock = clock

    def send(self, queue: str, content: str, *, visibility_delay: float = 0.0) -> str:
        check_queue_name(queue)
        check_message(content)
        check_visibility(visibility_delay, "visibility delay")
        now = self._clock()
        message_id = str(uuid.uuid4())
        with self.db.transaction(savepoint=False) as conn:
            conn.execute(
                "INSERT INTO queue_messages (queue, id, content, inserted, expires, visible_at)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (queue, message_id, content, now, now + MESSAGE_TTL_SECONDS, now + max(0.0, visibility_delay)),
            )
        return message_id

    def receive(self, queue: str, *, max_messages: int, visibility_timeout: float) -> list[ReceivedMessage]:
        check_visibility(visibility_timeout)
        if not 1 <= max_messages <= MAX_PEEK:
            raise ValueError(f"max_messages is 1..{MAX_PEEK}, not {max_messages}")
        now = self._clock()
        out: list[ReceivedMessage] = []
        with self.db.transaction() as conn:
            conn.execute("DELETE FROM queue_messages WHERE queue = ? AND expires <= ?", (queue, now))
            rows = conn.execute(
                "SELECT id, content, inserted, expires, dequeue_count FROM queue_messages"
                " WHERE queue = ? AND visible_at <= ? ORDER BY visible_at, seq LIMIT ?",
                (queue, now, max_messages),
            ).fetchall()
            for message_id, content, inserted, expires, dequeue_count in rows:
                receipt = uuid.uuid4().hex
                visible_at = now + visibility_timeout
                conn.execute(
                    "UPDATE queue_messages SET visible_at = ?, dequeue_count = ?, pop_receipt = ?"
                    " WHERE queue = ? AND id = ?",
                    (visible_at, dequeue_count + 1, receipt, queue, message_id),
                )
                out.append(
                    ReceivedMessage(
                        id=message_id,
                        pop_receipt=receipt,
                        dequeue_count=dequeue_count + 1,
                        content=content,
                        insertion_time=_ts(inserted),
                        expiration_time=_ts(expires),
                        next_visible_time=_ts(visible_at),
                    )
                )
        return out

    def delete(self, queue: str, message_id: str, pop_receipt: str) -> None:
        with self.db.transaction(savepoint=False) as conn:
            cur = conn.execute(
                "DELETE FROM queue_messages WHERE queue = ? AND id = ? AND pop_receipt = ?",
                (queue, message_id, pop_receipt),
            )
            if cur.rowcount != 1:
                raise PopReceiptMismatch(f"{queue}/{message_id}")

    def update_visibility(self, queue: str, message_id: str, pop_receipt: str, visibility_timeout: float) -> str:
        check_visibility(visibility_timeout)
        receipt = uuid.uuid4().hex
        with self.db.transaction(savepoint=False) as conn:
            cur = conn.execute(
                "UPDATE queue_messages SET visible_at = ?, pop_receipt = ?"
                " WHERE queue = ? AND id = ? AND pop_receipt = ?",
                (self._clock() + visibility_timeout, receipt, queue, message_id, pop_receipt),
            )
            if cur.rowcount != 1:
                raise PopReceiptMismatch(f"{queue}/{message_id}")
        return receipt

    def count(self, queue: str) -> int:
        with self.db.transaction(savepoint=False) as conn:
            (n,) = conn.execute("SELECT COUNT(*) FROM queue_messages WHERE queue = ?", (queue,)).fetchone()
        return int(n)

    def peek(self, queue: str, max_messages: int = MAX_PEEK) -> list[ReceivedMessage]:
        now = self._clock()
        return self._select("queue = ? AND visible_at <= ? AND expires > ? ORDER BY visible_at, seq LIMIT ?",
                            (queue, now, now, max(1, min(max_messages, MAX_PEEK))))

    def all_messages(self, queue: str) -> list[ReceivedMessage]:
        """Every message, hidden ones too: only the embedded backend can show them (the test
        engine moves its clock to the next one that becomes visible)."""
        return self._select("queue = ? ORDER BY seq", (queue,))

    def _select(self, where: str, args: tuple[object, ...]) -> list[ReceivedMessage]:
        with self.db.transaction(savepoint=False) as conn:
            rows = conn.execute(
                f"SELECT id, content, inserted, expires, visible_at, dequeue_count FROM queue_messages WHERE {where}",
                args,
            ).fetchall()
        return [
            ReceivedMessage(mid, "", dq, content, _ts(ins), _ts(exp), _ts(vis))
            for mid, content, ins, exp, vis, dq in rows
        ]
